"""Probe placement: parallel probes whose lethal isotherm covers the core, clear of OARs.

Search with the empirical mode (:mod:`brachycryo.cryo_iceball.empirical`); verify the chosen
layout with the physics mode (:func:`brachycryo.cryo_iceball.bioheat.simulate`).  Probes are
parallel to ``direction``; their active zones are centred on the core's centroid along that
direction.  Candidate axis positions lie on a square lattice
(``candidate_step_mm``) in the plane across ``direction``.  For n = 1, 2, ... probes a greedy
choice (each added probe maximises the covered core; started from every candidate) and one
exchange pass pick the layout; the first n that meets every requirement wins:

* lethal isotherm (default -40 C) covers >= ``coverage_min`` (95 %) of the core;
* 0 C isotherm at least ``oar_margin_mm`` (5 mm) from every OAR (voxel centres);
* every pair of probes at least ``min_spacing_mm`` apart (10 mm); every probe within
  ``max_spacing_mm`` (20 mm) of another one; every probe inside the core and at most
  ``max_edge_distance_mm`` (10 mm) from its edge; at most ``max_probes``.

When no layout qualifies, :class:`~brachycryo.core.errors.InfeasiblePlanError` says what binds:
the OAR(s) the best layout without the OAR constraint would violate, the spacing/edge rule
if relaxing it makes the plan feasible, else ``max_probes``.  With entry points, each
candidate target is also tried along the track from each entry point (converging probes).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import ndimage

from brachycryo.core.errors import ConfigError, GeometryError, InfeasiblePlanError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.empirical import (
    DEFAULT_MERGE_EXPONENT,
    EmpiricalProbe,
    _probe_temperature,
    cooling_box,
)
from brachycryo.cryo_iceball.probes import Probe, ProbeModel


@dataclass(frozen=True)
class PlacementRules:
    lethal_isotherm_c: float = -40.0
    coverage_min: float = 0.95
    oar_margin_mm: float = 5.0
    min_spacing_mm: float = 10.0
    max_spacing_mm: float = 20.0
    max_edge_distance_mm: float | None = 10.0
    max_probes: int = 8
    candidate_step_mm: float = 2.5

    def __post_init__(self) -> None:
        if not 0 < self.coverage_min <= 1:
            raise ConfigError("coverage_min must be in (0, 1]", key="coverage_min")
        if self.min_spacing_mm > self.max_spacing_mm:
            raise ConfigError("min_spacing_mm exceeds max_spacing_mm", key="min_spacing_mm")
        if self.max_probes < 1 or self.candidate_step_mm <= 0:
            raise ConfigError("max_probes >= 1 and candidate_step_mm > 0 needed", key="max_probes")


@dataclass
class PlacementResult:
    probes: list[Probe]
    coverage: float
    oar_min_distance_mm: dict[str, float]
    method: str = "empirical"


def _basis(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(direction[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    e1 = np.cross(direction, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(direction, e1)


def _mask_key(mask: np.ndarray, sampling: tuple[float, ...]) -> bytes:
    """A key for a boolean mask's content, shape and voxel spacing."""
    h = hashlib.blake2b(np.packbits(mask).tobytes(), digest_size=20)
    h.update(repr((mask.shape, sampling)).encode())
    return h.digest()


def _edt(
    mask: np.ndarray, sampling: tuple[float, ...], cache: MutableMapping[bytes, np.ndarray]
) -> np.ndarray:
    """``distance_transform_edt(mask)`` (mm to the nearest False voxel), once per mask
    content in ``cache`` (read-only): the planner's approaches share OARs and cores."""
    key = _mask_key(mask, sampling)
    d = cache.get(key)
    if d is None:
        d = ndimage.distance_transform_edt(mask, sampling=sampling)
        d.flags.writeable = False
        cache[key] = d
    return d


def _voxel_centres(grid: Grid, cache: MutableMapping[bytes, np.ndarray]) -> np.ndarray:
    """``grid.voxel_centres_mm()``, once per grid in ``cache`` (read-only)."""
    key = hashlib.blake2b(repr(("centres", grid)).encode(), digest_size=20).digest()
    pts = cache.get(key)
    if pts is None:
        pts = grid.voxel_centres_mm()
        pts.flags.writeable = False
        cache[key] = pts
    return pts


class _Search:
    """Per-candidate cooling fields (kept sparse: the voxels each probe cools) and the
    constraint checks.

    Scores equal those of the dense formulation (``tests/cryo_iceball/placement_reference.py``
    keeps it) to the last bit: a candidate's field is evaluated only within
    :func:`~brachycryo.cryo_iceball.empirical.cooling_box` of it (it is exactly zero
    outside), merged sums are accumulated in the same order, and a voxel a candidate does
    not cool keeps the temperature (and the covered/iced flags) of the layout without it.
    """

    def __init__(
        self, grid, core, oars, model, emp, direction, rules, merge_exponent, entries,
        candidate_ok=None, pair_ok=None, grid_cache=None,
    ):  # fmt: skip
        self.grid, self.core, self.rules = grid, core, rules
        self.model, self.emp, self.m = model, emp, merge_exponent
        cache = {} if grid_cache is None else grid_cache
        pts = _voxel_centres(grid, cache)
        core_pts = pts[core]
        centroid = core_pts.mean(axis=0)
        e1, e2 = _basis(direction)
        u1, u2 = (core_pts - centroid) @ e1, (core_pts - centroid) @ e2
        step = rules.candidate_step_mm
        a = np.arange(math.floor(u1.min() / step), math.ceil(u1.max() / step) + 1) * step
        b = np.arange(math.floor(u2.min() / step), math.ceil(u2.max() / step) + 1) * step
        sampling = tuple(grid.spacing_mm[x] for x in (2, 1, 0))
        inside_depth = _edt(core, sampling, cache)
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
        self.dist_oar = {name: _edt(~m, sampling, cache) for name, m in oars.items()}
        self.forbid_full = {n: d < rules.oar_margin_mm for n, d in self.dist_oar.items()}
        # Cooling fields are kept only where the search looks: the core (coverage) and the
        # OAR margins (violations); every other voxel cannot change a score.
        self.eval_mask = core.copy()
        for f in self.forbid_full.values():
            self.eval_mask |= f
        self.pts = pts
        self.core_eval = core[self.eval_mask]
        self.n_core = int(np.count_nonzero(self.core_eval))
        self.forbid = {n: f[self.eval_mask] for n, f in self.forbid_full.items()}
        self.forbid_any = np.zeros(self.core_eval.size, dtype=bool)
        for f in self.forbid.values():
            self.forbid_any |= f
        self._init_fields(pts[self.eval_mask])
        t_none = float(self.temp_of_merged(np.zeros(1))[0])
        self._uncooled_counts = t_none <= max(rules.lethal_isotherm_c, 0.0)
        self._greedy_paths: dict[tuple, tuple[list[int], bool]] = {}
        self._scores: dict[tuple, float] = {}

    def _init_fields(self, eval_pts: np.ndarray) -> None:
        """Each candidate's nonzero cooling on the evaluation voxels, as sparse terms.

        ``sup[c]``: (voxel indices, f**m in float64) where candidate ``c`` cools (f > 0;
        ``f`` in float32, as the dense fields were); ``sup_core[c]`` and ``sup_forbid[c]``
        the same restricted to core voxels and to OAR-margin voxels."""
        lut = np.full(self.grid.shape, -1, dtype=np.int32)
        lut[self.eval_mask] = np.arange(len(eval_pts))
        body = self.emp.body_temp_c
        self.sup: list[tuple[np.ndarray, np.ndarray]] = []
        self.sup_core: list[tuple[np.ndarray, np.ndarray]] = []
        self.sup_forbid: list[tuple[np.ndarray, np.ndarray]] = []
        for p in self.probes:
            idx = lut[cooling_box(self.grid, p, self.emp)].ravel()
            idx = idx[idx >= 0]
            f = np.maximum(body - _probe_temperature(eval_pts[idx], p, self.emp), 0.0)
            f = f.astype(np.float32)
            keep = f > 0
            idx, f64 = idx[keep], f[keep].astype(float)
            term = f64 if math.isinf(self.m) else f64**self.m
            self.sup.append((idx, term))
            on_core, on_forbid = self.core_eval[idx], self.forbid_any[idx]
            self.sup_core.append((idx[on_core], term[on_core]))
            self.sup_forbid.append((idx[on_forbid], term[on_forbid]))

    def _merge(self, merged: np.ndarray, term: np.ndarray) -> np.ndarray:
        return np.maximum(merged, term) if math.isinf(self.m) else merged + term

    def merged(self, chosen: Sequence[int]) -> np.ndarray:
        """The probes' merged cooling before the 1/m root on every evaluation voxel: sum of
        f**m (max for m = inf), accumulated in ``chosen``'s order (the same floats as a
        dense sum; 0 + t = t and max(0, t) = t for t >= 0)."""
        acc = np.zeros(self.core_eval.size)
        for c in chosen:
            idx, term = self.sup[c]
            acc[idx] = self._merge(acc[idx], term)
        return acc

    def temp(self, chosen: Sequence[int]) -> np.ndarray:
        return self.temp_of_merged(self.merged(chosen))

    def temp_of_merged(self, merged: np.ndarray) -> np.ndarray:
        """The temperature of a layout from its :meth:`merged` cooling."""
        cool = merged if math.isinf(self.m) else merged ** (1 / self.m)
        return np.maximum(self.emp.body_temp_c - cool, self.emp.probe_temp_c)

    def full_temp(self, chosen: Sequence[int]) -> np.ndarray:
        """The layout's temperature on the whole grid (for reporting)."""
        body = self.emp.body_temp_c
        cool = np.zeros(self.grid.shape)
        for c in chosen:
            box = cooling_box(self.grid, self.probes[c], self.emp)
            f = np.maximum(body - _probe_temperature(self.pts[box], self.probes[c], self.emp), 0.0)
            cool[box] = self._merge(cool[box], f if math.isinf(self.m) else f**self.m)
        if not math.isinf(self.m):
            cool = cool ** (1 / self.m)
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

    def _cooled(self, chosen: Sequence[int]) -> np.ndarray:
        """Indices of the evaluation voxels ``chosen`` cools; every voxel when a voxel
        without cooling would count (body temperature at or below the lethal or 0 C
        isotherm), else the others are neither covered nor iced."""
        if self._uncooled_counts:
            return np.arange(self.core_eval.size)
        mark = np.zeros(self.core_eval.size, dtype=bool)
        for c in chosen:
            mark[self.sup[c][0]] = True
        return np.flatnonzero(mark)

    def score(self, chosen: Sequence[int], use_oars: bool) -> float:
        """-1 when the layout's 0 C isotherm enters an OAR margin (``use_oars``), else its
        core coverage; cached per layout (order included: it orders the sums)."""
        key = (tuple(chosen), use_oars)
        if key not in self._scores:
            on = self._cooled(chosen)
            t = self.temp_of_merged(self.merged(chosen)[on])
            if use_oars and np.any(self.forbid_any[on] & (t <= 0.0)):
                self._scores[key] = -1.0
            else:
                covered = self.core_eval[on] & (t <= self.rules.lethal_isotherm_c)
                self._scores[key] = float(np.count_nonzero(covered)) / float(self.n_core)
        return self._scores[key]

    def _flags(self, chosen: Sequence[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Merged cooling, covered core voxels and iced OAR-margin voxels of ``chosen``."""
        merged = self.merged(chosen)
        on = self._cooled(chosen)
        t = self.temp_of_merged(merged[on])
        covered = np.zeros(merged.size, dtype=bool)
        iced = np.zeros(merged.size, dtype=bool)
        covered[on] = self.core_eval[on] & (t <= self.rules.lethal_isotherm_c)
        iced[on] = self.forbid_any[on] & (t <= 0.0)
        return merged, covered, iced

    def _score_added(self, flags, c: int, use_oars: bool) -> float:
        """:meth:`score` of the layout of ``flags`` (:meth:`_flags`) with ``c`` added last:
        only the voxels ``c`` cools change."""
        merged, covered, iced, n_covered, n_iced = flags
        if use_oars:
            idx, term = self.sup_forbid[c]
            if n_iced > np.count_nonzero(iced[idx]):
                return -1.0
            if np.any(self.temp_of_merged(self._merge(merged[idx], term)) <= 0.0):
                return -1.0
        idx, term = self.sup_core[c]
        t = self.temp_of_merged(self._merge(merged[idx], term))
        n = n_covered - np.count_nonzero(covered[idx])
        n += np.count_nonzero(t <= self.rules.lethal_isotherm_c)
        return float(n) / float(self.n_core)

    def _greedy(
        self, seed: int, n: int, allowed: np.ndarray, *, use_oars: bool, rules: PlacementRules,
        use_edge: bool,
    ) -> list[int]:  # fmt: skip
        """The greedy layout of up to ``n`` probes started from ``seed``: each added probe
        maximises the score (the first best).  A path does not depend on ``n`` (it is the
        prefix of a longer one), so each is extended from where the last call left it."""
        key = (seed, use_oars, use_edge, rules)
        chosen, stuck = self._greedy_paths.get(key, ([seed], False))
        if len(chosen) >= n or stuck:
            return chosen[:n]
        chosen = list(chosen)
        merged, covered, iced = self._flags(chosen)
        lethal = self.rules.lethal_isotherm_c
        while len(chosen) < n:
            flags = (merged, covered, iced, np.count_nonzero(covered), np.count_nonzero(iced))
            pick, pick_s = None, -1.0
            spaced = self.spacing_ok_all(chosen, allowed, rules=rules)
            for c, ok in zip(allowed, spaced, strict=True):
                if c in chosen or not ok:
                    continue
                sc = self._score_added(flags, int(c), use_oars)
                if sc > pick_s:
                    pick, pick_s = int(c), sc
            if pick is None:
                stuck = True
                break
            chosen.append(pick)
            idx, term = self.sup[pick]
            merged[idx] = self._merge(merged[idx], term)
            idx = self.sup_core[pick][0]
            covered[idx] = self.temp_of_merged(merged[idx]) <= lethal
            idx = self.sup_forbid[pick][0]
            iced[idx] = self.temp_of_merged(merged[idx]) <= 0.0
        self._greedy_paths[key] = (chosen, stuck)
        return chosen[:n]  # a copy: the memo keeps its own

    def spacing_ok_all(
        self, chosen: Sequence[int], cands: np.ndarray, *, rules: PlacementRules
    ) -> list[bool]:
        """The spacing rules and the tracks (``pair_ok``) of every candidate of ``cands``
        added to ``chosen``."""
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
        seeds = allowed if len(allowed) <= 40 else allowed[:: math.ceil(len(allowed) / 40)]
        best_layout, best_score = None, -1.0
        for seed in seeds:
            chosen = self._greedy(
                int(seed), n, allowed, use_oars=use_oars, rules=rules, use_edge=use_edge
            )
            if len(chosen) < n or not self.layout_ok(chosen, rules):
                continue
            sc = self.score(chosen, use_oars)
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
                sc = self.score(trial, use_oars)
                if sc > cur:
                    chosen, cur = trial, sc
        return chosen, cur


def _pairwise_ok(pos: np.ndarray, rules: PlacementRules) -> bool:
    if len(pos) < 2:
        return True
    d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.min(axis=1)
    return bool(d.min() >= rules.min_spacing_mm - 1e-9 and np.all(nearest <= rules.max_spacing_mm))


def place_probes(
    grid: Grid,
    core_mask: np.ndarray,
    oar_masks: dict[str, np.ndarray],
    model: ProbeModel,
    empirical: EmpiricalProbe,
    *,
    direction: Sequence[float] = (0.0, 0.0, 1.0),
    entry_points_mm: Sequence[Sequence[float]] | None = None,
    rules: PlacementRules | None = None,
    merge_exponent: float = DEFAULT_MERGE_EXPONENT,
    best_effort: bool = False,
    candidate_ok: Callable[[Probe], bool] | None = None,
    pair_ok: Callable[[Probe, Probe], bool] | None = None,
    grid_cache: MutableMapping[bytes, np.ndarray] | None = None,
) -> PlacementResult:
    """Choose the number and positions of probes (see the module docstring).

    Parallel probes along ``direction`` by default (each probe's axis tip -> handle, i.e.
    pointing back out along its track; a planner passes the reverse of its insertion
    direction); with ``entry_points_mm`` every candidate
    target point is also tried from each entry point (the probe runs from its target toward
    the entry point, so tracks converge), and ``direction`` is ignored.

    With ``best_effort`` (debulking the core of a zoned lesion, where seeds treat what the
    ice does not reach) a layout that misses ``coverage_min`` is returned, the one of at
    most ``max_probes`` probes with the best coverage that keeps the OAR margins, instead
    of an :class:`InfeasiblePlanError`.

    ``candidate_ok`` (a planner's check of a candidate probe's whole track, e.g. clear of
    no-go structures and implanted seeds) removes the candidates it refuses before the
    search; when it refuses them all, :class:`InfeasiblePlanError` (binding "probe tracks").
    ``pair_ok`` (the planner's check of two probes' tracks together, e.g. converging tracks
    that would share a skin entry) is applied to every pair the search puts in one layout.
    ``grid_cache``: a dict the caller shares between calls on one grid (e.g. the
    approaches of a plan) to compute the voxel centres and each OAR's and core's distance
    map once.
    """
    rules = rules or PlacementRules()
    grid.check_volume(core_mask, "core_mask")
    core = np.asarray(core_mask, dtype=bool)
    if not core.any():
        raise GeometryError("the core mask is empty")
    oars = {}
    for name, m in oar_masks.items():
        grid.check_volume(m, f"OAR {name}")
        oars[name] = np.asarray(m, dtype=bool)
    d = np.asarray(direction, dtype=float)
    if d.shape != (3,) or np.linalg.norm(d) < 1e-9:
        raise GeometryError(f"direction must be a non-zero 3-vector, got {direction}")
    d = d / np.linalg.norm(d)
    entries = None
    if entry_points_mm is not None:
        entries = np.asarray(entry_points_mm, dtype=float).reshape(-1, 3)
        if len(entries) == 0 or not np.all(np.isfinite(entries)):
            raise GeometryError("entry_points_mm must be finite (x, y, z) points")
        centroid = grid.voxel_centres_mm()[core].mean(axis=0)
        mean_dir = entries.mean(axis=0) - centroid
        if np.linalg.norm(mean_dir) < 1e-6:
            raise GeometryError("the entry points surround the core's centroid")
        d = mean_dir / np.linalg.norm(mean_dir)  # lattice plane across the mean track
    s = _Search(
        grid, core, oars, model, empirical, d, rules, merge_exponent, entries, candidate_ok,
        pair_ok, grid_cache,
    )  # fmt: skip

    best_seen = {"coverage": 0.0}
    best_layout: list[int] | None = None
    for n in range(1, rules.max_probes + 1):
        found = s.search(n, use_oars=True, rules=rules, use_edge=True)
        if found is None:
            continue
        chosen, cov = found
        if cov > best_seen["coverage"] + 1e-3:
            best_layout = list(chosen)
            best_seen = {"coverage": cov, "n_probes": n,
                         "positions_mm": s.cands[chosen].round(2).tolist()}  # fmt: skip
        if cov >= rules.coverage_min:
            t = s.full_temp(chosen)
            return PlacementResult(
                probes=[s.probes[c] for c in chosen],
                coverage=cov,
                oar_min_distance_mm=s.oar_distances(t),
            )

    if best_effort and best_layout is not None:
        t = s.full_temp(best_layout)
        return PlacementResult(
            probes=[s.probes[c] for c in best_layout],
            coverage=best_seen["coverage"],
            oar_min_distance_mm=s.oar_distances(t),
            method="empirical (best effort)",
        )
    # infeasible: find what binds
    binding: list[str] = []
    for n in range(1, rules.max_probes + 1):
        found = s.search(n, use_oars=False, rules=rules, use_edge=True)
        if found and found[1] >= rules.coverage_min:
            binding = s.oar_violations(s.temp(found[0])) or ["oar_margin_mm"]
            break
    if not binding:
        relaxed = replace(rules, min_spacing_mm=0.0, max_spacing_mm=math.inf)
        for label, use_edge, rules_tried in (
            ("max_edge_distance_mm", False, rules),
            ("min_spacing_mm/max_spacing_mm", True, relaxed),
        ):
            for n in range(1, rules.max_probes + 1):
                found = s.search(n, use_oars=True, rules=rules_tried, use_edge=use_edge)
                if found and found[1] >= rules.coverage_min:
                    binding = [label]
                    break
            if binding:
                break
    if not binding:
        binding = ["max_probes"]
    raise InfeasiblePlanError(
        f"no layout of <= {rules.max_probes} {model.model} probes covers "
        f"{100 * rules.coverage_min:.0f} % of the core with the {rules.lethal_isotherm_c:g} C "
        f"isotherm while keeping the 0 C isotherm {rules.oar_margin_mm:g} mm from the OARs; "
        f"binding: {', '.join(binding)} (best coverage {100 * best_seen['coverage']:.1f} %)",
        binding=binding,
        best=best_seen,
    )
