"""The probe search of ``cryo_iceball/placement.py`` as it was before the sparse fields
(commit 67c83eb): dense cooling fields on every evaluation voxel, each score recomputed on
all of them, each greedy path redone for every probe count, two distance transforms per OAR
and call.  Slow; kept as the reference the fast search must equal to the last bit
(``test_cryo_placement_fast.py``).  ``dense_min_temp`` is ``empirical_min_temp`` before
the cooling boxes, ``dense_probe_temperature`` ``_probe_temperature`` before its
isotherm shells were evaluated only where they apply."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from brachycryo.core.errors import GeometryError, InfeasiblePlanError
from brachycryo.cryo_iceball.placement import PlacementRules, _basis, _pairwise_ok
from brachycryo.cryo_iceball.probes import Probe


def dense_probe_temperature(points_mm, probe, emp):
    """``empirical._probe_temperature`` before its isotherm shells were evaluated on the
    voxels inside them only."""
    u = np.asarray(probe.direction)
    centre = probe.active_centre_mm()
    rel = points_mm - centre
    s = rel @ u
    rho = np.linalg.norm(rel - s[..., None] * u, axis=-1)
    ells = emp.ellipsoids
    q = [
        np.sqrt(
            (rho / (0.5 * e.width_mm)) ** 2 + ((s - e.centre_offset_mm) / (0.5 * e.length_mm)) ** 2
        )
        for e in ells
    ]
    temps = [e.temp_c for e in ells]
    if len(ells) >= 2:
        a_in, a_out = 0.5 * ells[-2].width_mm, 0.5 * ells[-1].width_mm
        slope = (temps[-1] - temps[-2]) / max(math.log(a_out / a_in), 1e-6)
    else:
        a_out = 0.5 * ells[-1].width_mm
        slope = (temps[-1] - emp.probe_temp_c) / max(math.log(a_out / emp.probe_radius_mm), 1e-6)
    with np.errstate(divide="ignore"):
        out = np.minimum(temps[-1] + slope * np.log(np.maximum(q[-1], 1.0)), emp.body_temp_c)
    for n in range(len(ells) - 2, -1, -1):
        qi, qo = q[n], q[n + 1]
        inside = qo <= 1.0
        w = np.clip((qi - 1.0) / np.maximum((qi - 1.0) + (1.0 - qo), 1e-12), 0.0, 1.0)
        out = np.where(inside, temps[n] + w * (temps[n + 1] - temps[n]), out)
    inner = q[0] <= 1.0
    out = np.where(inner, emp.probe_temp_c + (temps[0] - emp.probe_temp_c) * q[0], out)
    return out


def dense_min_temp(grid, probes, emp, merge_exponent=2.0):
    pts = grid.voxel_centres_mm()
    cooling = np.zeros(grid.shape, dtype=float)
    for probe in probes:
        c = np.maximum(emp.body_temp_c - dense_probe_temperature(pts, probe, emp), 0.0)
        if math.isinf(merge_exponent):
            np.maximum(cooling, c, out=cooling)
        else:
            cooling += c**merge_exponent
    if not math.isinf(merge_exponent):
        cooling **= 1.0 / merge_exponent
    return np.maximum(emp.body_temp_c - cooling, emp.probe_temp_c)


#: Memory the probe search may keep for the candidates' f**m terms (recomputed beyond it).
_MERGE_CACHE_BYTES = 256 * 2**20


class ReferenceSearch:
    """The dense search as it was before the sparse one (every field on every evaluation
    voxel, scores recomputed on all of them): the reference the fast path must equal."""

    def __init__(
        self, grid, core, oars, model, emp, direction, rules, merge_exponent, entries,
        candidate_ok=None, pair_ok=None, grid_cache=None,
    ):  # fmt: skip
        self.grid, self.core, self.rules = grid, core, rules
        self.model, self.emp, self.m = model, emp, merge_exponent
        pts = grid.voxel_centres_mm()
        core_pts = pts[core]
        centroid = core_pts.mean(axis=0)
        e1, e2 = _basis(direction)
        u1, u2 = (core_pts - centroid) @ e1, (core_pts - centroid) @ e2
        step = rules.candidate_step_mm
        a = np.arange(math.floor(u1.min() / step), math.ceil(u1.max() / step) + 1) * step
        b = np.arange(math.floor(u2.min() / step), math.ceil(u2.max() / step) + 1) * step
        sampling = tuple(grid.spacing_mm[x] for x in (2, 1, 0))
        inside_depth = ndimage.distance_transform_edt(core, sampling=sampling)
        cands: list[np.ndarray] = []
        dirs: list[np.ndarray] = []
        rule_ok: list[bool] = []
        for x in a:
            for y in b:
                c = centroid + x * e1 + y * e2
                ijk = np.round(grid.mm_to_ijk(c)).astype(int)
                if np.any(ijk < 0) or np.any(ijk >= np.asarray(grid.size_ijk)):
                    continue
                kji = (ijk[2], ijk[1], ijk[0])
                if not core[kji]:
                    continue
                edge_ok = (
                    rules.max_edge_distance_mm is None
                    or inside_depth[kji] <= rules.max_edge_distance_mm + 0.5 * step
                )
                for e in entries if entries is not None else [None]:
                    cands.append(c)
                    rule_ok.append(edge_ok)
                    dirs.append(direction if e is None else (e - c) / np.linalg.norm(e - c))
        if not cands:
            raise GeometryError("the core is smaller than the candidate lattice; reduce the step")
        half = model.active_length_mm / 2 + model.active_offset_mm
        probes = [Probe(model, tuple(c - half * u), tuple(u)) for c, u in zip(cands, dirs)]
        keep = [n for n, p in enumerate(probes) if candidate_ok is None or candidate_ok(p)]
        if not keep:
            raise InfeasiblePlanError(
                f"every one of the {len(probes)} candidate probe positions is refused by the "
                "planner's track check",
                binding=["probe tracks"],
            )
        self.cands = np.asarray(cands)[keep]
        self.rule_ok = np.asarray(rule_ok)[keep]
        self.probes = [probes[n] for n in keep]
        self._pair_ok = pair_ok
        self._pair_cache: dict[tuple[int, int], bool] = {}
        self._terms: dict[int, np.ndarray] = {}
        self.forbid_full = {}
        for name, m in oars.items():
            d = ndimage.distance_transform_edt(~m, sampling=sampling)
            self.forbid_full[name] = d < rules.oar_margin_mm
        self.dist_oar = {
            name: ndimage.distance_transform_edt(~m, sampling=sampling) for name, m in oars.items()
        }
        # Cooling fields are kept only where the search looks: the core (coverage) and the
        # OAR margins (violations); every other voxel cannot change a score.
        self.eval_mask = core.copy()
        for f in self.forbid_full.values():
            self.eval_mask |= f
        self.pts = pts
        eval_pts = pts[self.eval_mask]
        self.core_eval = core[self.eval_mask]
        self.forbid = {n: f[self.eval_mask] for n, f in self.forbid_full.items()}
        body = emp.body_temp_c
        self.fields = np.stack(
            [
                np.maximum(body - dense_probe_temperature(eval_pts, p, emp), 0.0).astype(np.float32)
                for p in self.probes
            ]
        )

    def temp(self, chosen: Sequence[int]) -> np.ndarray:
        f = self.fields[list(chosen)].astype(float)
        cool = f.max(axis=0) if math.isinf(self.m) else (f**self.m).sum(axis=0) ** (1 / self.m)
        return np.maximum(self.emp.body_temp_c - cool, self.emp.probe_temp_c)

    def merged(self, chosen: Sequence[int]) -> np.ndarray:
        """The probes' merged cooling before the 1/m root: sum of f**m (max for m = inf),
        accumulated in ``chosen``'s order, as :meth:`temp` sums (the same floats)."""
        acc = self._merge_term(chosen[0]).copy()
        for c in chosen[1:]:
            acc = self.merge_with(acc, c)
        return acc

    def merge_with(self, merged: np.ndarray, c: int) -> np.ndarray:
        """``merged`` with probe ``c`` added last (a new array)."""
        term = self._merge_term(c)
        return np.maximum(merged, term) if math.isinf(self.m) else merged + term

    def temp_of_merged(self, merged: np.ndarray) -> np.ndarray:
        """:meth:`temp` of a layout from its :meth:`merged` cooling (identical values)."""
        cool = merged if math.isinf(self.m) else merged ** (1 / self.m)
        return np.maximum(self.emp.body_temp_c - cool, self.emp.probe_temp_c)

    def _merge_term(self, c: int) -> np.ndarray:
        """f_c**m of candidate ``c`` (float64), computed once per candidate."""
        term = self._terms.get(c)
        if term is None:
            f = self.fields[c].astype(float)
            term = f if math.isinf(self.m) else f**self.m
            if (len(self._terms) + 1) * term.nbytes <= _MERGE_CACHE_BYTES:
                self._terms[c] = term
        return term

    def full_temp(self, chosen: Sequence[int]) -> np.ndarray:
        """The layout's temperature on the whole grid (for reporting)."""
        body = self.emp.body_temp_c
        f = np.stack(
            [np.maximum(body - dense_probe_temperature(self.pts, self.probes[c], self.emp), 0.0)
             for c in chosen]
        )  # fmt: skip
        cool = f.max(axis=0) if math.isinf(self.m) else (f**self.m).sum(axis=0) ** (1 / self.m)
        return np.maximum(body - cool, self.emp.probe_temp_c)

    def coverage(self, temp: np.ndarray) -> float:
        return float(
            np.count_nonzero(self.core_eval & (temp <= self.rules.lethal_isotherm_c))
        ) / float(np.count_nonzero(self.core_eval))

    def oar_violations(self, temp: np.ndarray) -> list[str]:
        ice = temp <= 0.0
        return [name for name, f in self.forbid.items() if np.any(ice & f)]

    def oar_distances(self, temp: np.ndarray) -> dict[str, float]:
        """Smallest distance (mm) from the 0 C isotherm to each OAR; ``temp`` on the full grid."""
        ice = temp <= 0.0
        return {n: float(d[ice].min()) if ice.any() else math.inf for n, d in self.dist_oar.items()}

    def spacing_ok(self, chosen: Sequence[int], new: int, *, rules: PlacementRules) -> bool:
        if not chosen:
            return True
        d = np.linalg.norm(self.cands[list(chosen)] - self.cands[new], axis=1)
        if not (d.min() >= rules.min_spacing_mm - 1e-9 and d.min() <= rules.max_spacing_mm):
            return False
        return all(self.tracks_ok(c, new) for c in chosen)

    def spacing_ok_all(
        self, chosen: Sequence[int], cands: np.ndarray, *, rules: PlacementRules
    ) -> list[bool]:
        """:meth:`spacing_ok` of every candidate of ``cands`` added to ``chosen`` (the same
        distances, computed for all candidates at once)."""
        d = np.linalg.norm(self.cands[cands][:, None] - self.cands[list(chosen)][None], axis=2)
        near = d.min(axis=1)
        ok = (near >= rules.min_spacing_mm - 1e-9) & (near <= rules.max_spacing_mm)
        return [
            bool(o) and all(self.tracks_ok(c, int(n)) for c in chosen)
            for o, n in zip(ok, cands, strict=True)
        ]

    def tracks_ok(self, a: int, b: int) -> bool:
        """The planner's check of two candidates' tracks together (``pair_ok``), cached."""
        if self._pair_ok is None or a == b:
            return True
        key = (min(a, b), max(a, b))
        if key not in self._pair_cache:
            self._pair_cache[key] = bool(self._pair_ok(self.probes[key[0]], self.probes[key[1]]))
        return self._pair_cache[key]

    def layout_ok(self, chosen: Sequence[int], rules: PlacementRules) -> bool:
        """Spacing rules and every pair's tracks (``pair_ok``) for a whole layout."""
        if not _pairwise_ok(self.cands[list(chosen)], rules):
            return False
        return all(self.tracks_ok(a, b) for i, a in enumerate(chosen) for b in chosen[i + 1 :])

    def search(self, n: int, *, use_oars: bool, rules: PlacementRules, use_edge: bool):
        """Multi-start greedy + one exchange pass; returns (chosen, coverage) or None."""
        allowed = np.nonzero(self.rule_ok if use_edge else np.ones(len(self.cands), bool))[0]
        if len(allowed) == 0:
            return None

        forbid_any = np.zeros(self.core_eval.size, dtype=bool)
        for f in self.forbid.values():
            forbid_any |= f

        def score_of(t):  # the same as: -1 on any oar_violations(t), else coverage(t)
            if use_oars and np.any((t <= 0.0) & forbid_any):
                return -1.0
            return self.coverage(t)

        def score(chosen):
            return score_of(self.temp(chosen))

        seeds = allowed if len(allowed) <= 40 else allowed[:: math.ceil(len(allowed) / 40)]
        best_layout, best_score = None, -1.0
        for seed in seeds:
            chosen = [int(seed)]
            merged = self.merged(chosen)  # the greedy adds probes last: sums kept, not redone
            while len(chosen) < n:
                pick, pick_s = None, -1.0
                spaced = self.spacing_ok_all(chosen, allowed, rules=rules)
                for c, ok in zip(allowed, spaced, strict=True):
                    if c in chosen or not ok:
                        continue
                    sc = score_of(self.temp_of_merged(self.merge_with(merged, int(c))))
                    if sc > pick_s:
                        pick, pick_s = int(c), sc
                if pick is None:
                    break
                chosen.append(pick)
                merged = self.merge_with(merged, pick)
            if len(chosen) < n or not self.layout_ok(chosen, rules):
                continue
            sc = score(chosen)
            if sc > best_score:
                best_layout, best_score = chosen, sc
        if best_layout is None or best_score < 0:
            return None
        chosen, cur = best_layout, best_score
        for pos in range(len(chosen)):  # exchange pass
            rest = chosen[:pos] + chosen[pos + 1 :]
            for c in allowed:
                if c in rest:
                    continue
                trial = [*rest[:pos], int(c), *rest[pos:]]
                if not self.layout_ok(trial, rules):
                    continue
                sc = score(trial)
                if sc > cur:
                    chosen, cur = trial, sc
        return chosen, cur
