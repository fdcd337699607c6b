"""Seed selection under hard organ-at-risk limits: greedy construction + local search.

Problem (all doses total permanent-implant dose, Gy; candidates n with fixed strength s):

* choose a subset x of candidate seeds (at most one of every excluded pair: seeds on one
  needle closer than the seed spacing; at most ``max_needles`` needles);
* **hard**: every OAR limit holds on the OAR sample points (Dmax; Dvcc, i.e. at most v cm³
  above the limit; Vx, at most max_cc / max_pct above a dose);
* **goal**: V100 >= ``v100_min`` and D90 >= prescription in every seed-target zone (each
  zone with its own prescription, e.g. high-risk sub-zones);
* **then** minimise seeds, needles and hot spots (V150 / V200 of the target).

A fixed **background dose** ``b`` (the seeds already implanted, ``[case] implanted_plan``
with ``add_seeds = true``) may come with every target and OAR point
(``TargetZone.background_gy``, ``OarConstraint.background_gy``): the dose of a selection is
then ``b + s * A x`` everywhere (goals, limits, the LP guide, the MILP), so new seeds are
only placed where the implanted ones leave the goals unmet, and within what the implanted
ones leave of every OAR limit.

Method.  (0) LP guide: the linear relaxation (strengths in [0, 1], a penalised under-dose
slack per target point, OAR limits applied to every OAR point as a conservative point
limit, exclusions) solved by HiGHS (``scipy.optimize.linprog``) on a subsample of the
target points; its solution ranks the candidates and seeds the selection (x* >= 0.5, added
in order while the exact limits hold).  Hard OAR limits make a purely greedy build paint
itself into a corner: seeds placed early beside an OAR use up its dose budget and then
every further seed, however far, is blocked; the LP spreads the budget globally.
Greedy construction: repeatedly add the feasible candidate with the largest
volume-weighted under-dose reduction per cost (a new needle costs ``needle_weight``
seeds, dose pushed above 150 % costs ``hot_spot_weight``), where a candidate is feasible if
it keeps every OAR limit and every exclusion.  Then local search: (1) prune - remove seeds,
least useful first, while the goals still hold; (2) two-for-one - remove a seed and one
of the few seeds sharing most of its target points and add the free candidate that best
refills the under-dose when that meets every goal within the limits (a 1-opt
neighbourhood of the kind used by local-search seed planners, with exact incremental
dose updates); (3) swap - move a seed to a free candidate on the same or a used needle
when that lowers V150 without losing the goals.
The dose of a selection is exact on the sample points (``A @ x * s``), so every limit is
checked on the same points the plan is evaluated on.  ``benchmarks/plan_quality.py``
compares this with HiGHS MILP (``scipy.optimize.milp``) on the same matrices and with a
uniform peripheral loading baseline.

When the goals cannot be met the result says so (``feasible = False``), gives the best
coverage reached, and lists the binding constraints: the OAR limits (or the needle
budget, or the seed spacing) that blocked the candidates which would have raised
coverage.  OAR limits are never relaxed.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from brachycryo.core.deadline import NO_LIMIT, WallClock
from brachycryo.core.errors import ConfigError
from brachycryo.core.progress import ProgressCallback, report

#: HiGHS simplex iterations allowed to the LP guide: a work limit, the same on every machine
#: (the demo's LP guide needs a few thousand).  An LP that reaches it is logged and the
#: greedy construction starts from scratch - identically on every machine.
LP_MAX_ITERATIONS = 1_000_000
#: HiGHS dual simplex: serial and deterministic (same pivots, same solution, any machine).
LP_METHOD = "highs-ds"
#: Its pricing: Devex edge weights.  On the demo's LP guide they take about a quarter less
#: time than HiGHS's default (steepest edge, then Devex when it turns slow) for the same
#: optimum (Forrest and Goldfarb, Math Program 57:341, 1992, compare the two).
LP_DUAL_EDGE_WEIGHTS = "devex"
#: Lazy CVaR rows of the LP guide: each OAR block starts with its points of largest possible
#: dose up to this many times its tail volume (and at least ``LP_LAZY_MIN_POINTS``); points
#: are added while the CVaR over all points exceeds the reduced one by ``LP_LAZY_TOL_GY``.
LP_LAZY_START_TAILS = 1.0
LP_LAZY_MIN_POINTS = 16
LP_LAZY_TOL_GY = 1e-6
#: Re-solves before the lazy generation falls back to the full LP (it converges in a few).
LP_LAZY_MAX_ROUNDS = 8

#: Smallest hot-tail volume (cm³) of the OAR sparing objective (the tail of a Dmax limit).
SPARING_TAIL_MIN_CC = 0.1
#: Seeds per unit of sum_o CVaR_o / L_o in the LP for ``oar_sparing_weight = 1`` (where
#: the greedy divides a candidate's gain by ``1 + weight * its CVaR_o / L_o increase``).
LP_SPARING_SCALE = 8.0
#: Share of the V100 allowance the greedy leaves to the points the LP left coldest.
CONCEDE_FRACTION = 0.8
#: The greedy multiplies a candidate's gain by ``floor + x_lp``: completions the LP
#: half-chose come first.
LP_PREFERENCE_FLOOR = 0.25
#: Smallest LP value x* of a candidate the LP-ordered completion considers.
LP_COMPLETION_MIN_X = 0.05
#: The greedy stops (goals unmet, plan infeasible) when the last ``STALL_SEEDS`` seeds
#: together raised the zones' V100 (each capped at its goal) by less than
#: ``STALL_SEEDS * STALL_V100_PCT_PER_SEED``
#: percentage points: past that point seeds only pile dose (hot spots) beside what blocks.
STALL_SEEDS = 10
STALL_V100_PCT_PER_SEED = 0.05
#: Two-for-one seed reduction after pruning: passes over the seeds, partners tried per seed
#: (the seeds sharing most of its target points), candidates tried in their place.
REDUCE_ROUNDS = 3
REDUCE_PARTNERS = 4
REDUCE_TRIES = 4
#: A seed's "own" target points (two-for-one partners): where it gives this share of Rx.
OVERLAP_MIN_FRACTION = 0.1


@dataclass(frozen=True)
class OarConstraint:
    """A hard limit on an OAR's sample points.

    ``kind``: ``"dmax"`` (no point above ``limit_gy``), ``"dvcc"`` (at most ``volume_cc``
    cm³ above ``limit_gy``: D_vcc <= limit), ``"vx"`` (same, for a Vx limit).
    """

    roi: str
    metric: str
    kind: str
    limit_gy: float
    volume_cc: float
    matrix: np.ndarray  # (M_o, N) Gy per U
    point_cc: np.ndarray  # (M_o,) volume each point stands for
    #: (M_o,) fixed dose (Gy) at each point from sources the plan cannot change (seeds
    #: already implanted); None: none
    background_gy: np.ndarray | None = None

    def base_gy(self) -> np.ndarray:
        """The fixed dose at every point (zeros without a background)."""
        return _base(self.background_gy, self.point_cc.size)

    def dose_gy(self, chosen: np.ndarray, sk_u: float) -> np.ndarray:
        """The dose at every point of the candidates ``chosen`` at ``sk_u``, background
        included (float64)."""
        return _selection_dose(self.base_gy(), self.matrix, chosen, sk_u)

    def excess_cc(self, dose_gy: np.ndarray) -> np.ndarray:
        """Volume above the limit; for dmax the count of points above it (any -> violated)."""
        above = dose_gy > self.limit_gy * (1 + 1e-6)
        if self.kind == "dmax":
            return above.sum(axis=0).astype(float)
        return (above * self.point_cc.reshape((-1,) + (1,) * (above.ndim - 1))).sum(axis=0)

    def allowed_cc(self) -> float:
        return 0.0 if self.kind == "dmax" else self.volume_cc

    def tail_cc(self) -> float:
        """Volume of the hot tail whose mean dose is the sparing objective (>= 0.1 cm³)."""
        return max(self.volume_cc if self.kind != "dmax" else 0.0, SPARING_TAIL_MIN_CC)

    def tail(self, dose_gy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices and weights (summing to 1) of the hottest :meth:`tail_cc` of ``dose_gy``.

        ``weights @ dose_gy[indices]`` is the mean dose of that tail, the conditional
        value-at-risk (CVaR) of Rockafellar and Uryasev (J Risk 2:21, 2000), an upper
        bound of D_vcc.
        """
        n = self.point_cc.size
        if n == 0:
            return np.zeros(0, dtype=int), np.zeros(0)
        order = None
        cc_max = float(self.point_cc.max())
        k = int(np.ceil(self.tail_cc() / cc_max)) * 4 + 16 if cc_max > 0 else n
        if k < n:  # the hottest k points, sorted, when they hold the tail volume
            top = np.argpartition(dose_gy, n - k)[n - k :]
            top = top[np.argsort(dose_gy[top])[::-1]]
            if self.point_cc[top].sum() >= self.tail_cc():
                order = top
        if order is None:
            order = np.argsort(dose_gy)[::-1]
        cc = self.point_cc[order]
        cum = np.cumsum(cc)
        v = min(self.tail_cc(), float(cum[-1]))
        take = np.clip(v - (cum - cc), 0.0, cc)
        keep = take > 0
        return order[keep], (take[keep] / v if v > 0 else take[keep])

    def tail_mean_gy(self, dose_gy: np.ndarray) -> float:
        """The CVaR of :meth:`tail`: mean dose of the hottest :meth:`tail_cc`."""
        idx, w = self.tail(dose_gy)
        return float((w * dose_gy[idx]).sum())


@dataclass(frozen=True)
class TargetZone:
    """A seed-target zone: its sample points, their volumes and the prescription."""

    name: str
    matrix: np.ndarray  # (M_t, N) Gy per U
    point_cc: np.ndarray
    prescription_gy: float
    #: (M_t,) fixed dose (Gy) at each point from seeds already implanted; None: none
    background_gy: np.ndarray | None = None

    def base_gy(self) -> np.ndarray:
        """The fixed dose at every point (zeros without a background)."""
        return _base(self.background_gy, self.point_cc.size)

    def dose_gy(self, chosen: np.ndarray, sk_u: float) -> np.ndarray:
        """The dose at every point of the candidates ``chosen`` at ``sk_u``, background
        included (float64)."""
        return _selection_dose(self.base_gy(), self.matrix, chosen, sk_u)


def _selection_dose(base: np.ndarray, matrix: np.ndarray, chosen: np.ndarray, sk_u: float):
    return base + sk_u * matrix[:, chosen].astype(np.float64).sum(axis=1)


def _base(background_gy: np.ndarray | None, n: int) -> np.ndarray:
    if background_gy is None:
        return np.zeros(n)
    return np.asarray(background_gy, dtype=np.float64).reshape(n)


@dataclass(frozen=True)
class SeedSelection:
    """The optimiser's result."""

    chosen: np.ndarray  # candidate indices
    feasible: bool
    coverage: dict[str, dict[str, float]]  # zone -> {v100_pct, d90_gy, v150_pct, v200_pct}
    oar_excess_cc: dict[str, float]
    binding: list[str] = field(default_factory=list)
    n_needles: int = 0
    iterations: int = 0
    time_s: float = 0.0
    log: list[str] = field(default_factory=list)
    #: the LP guide's solution x* (one value per candidate); None without an LP
    lp_x: np.ndarray | None = None


@dataclass(frozen=True)
class WarmStart:
    """An earlier selection of the same candidates to start from instead of the LP guide:
    its ``chosen`` seeds and its LP solution ``lp_x`` (the greedy's preference and the
    conceded points, as after the LP).  The grid check's raised rounds start here: a zone
    prescription raised by a fraction of a percent changes the LP only marginally, and its
    solution from scratch is the costliest step of a selection."""

    chosen: np.ndarray
    lp_x: np.ndarray | None


def _d90_gy(dose: np.ndarray, w: np.ndarray, total: float) -> float:
    """D90 of ``dose`` over points of volumes ``w`` (``total`` = ``w.sum()``)."""
    if w[0] == w.min() == w.max():  # equal volumes: D90 is an order statistic
        i90 = min(int(np.ceil(0.9 * w.size - 1e-9)) - 1, w.size - 1)
        k = w.size - 1 - max(i90, 0)
        return float(np.partition(dose, k)[k])
    order = np.argsort(dose)[::-1]
    cum = np.cumsum(w[order])
    i90 = int(np.searchsorted(cum, 0.9 * total))
    return float(dose[order[min(i90, order.size - 1)]])


def zone_stats(dose: np.ndarray, zone: TargetZone) -> dict[str, float]:
    """V100 / V150 / V200 (% of the sample points' volume) and D90 (Gy) of a zone's point
    doses ``dose`` at its prescription."""
    w = zone.point_cc
    total = float(w.sum())
    rx = zone.prescription_gy
    return {
        "v100_pct": 100.0 * float(w[dose >= rx].sum()) / total,
        "v150_pct": 100.0 * float(w[dose >= 1.5 * rx].sum()) / total,
        "v200_pct": 100.0 * float(w[dose >= 2.0 * rx].sum()) / total,
        "d90_gy": _d90_gy(dose, w, total),
    }


class _ZoneGoal:
    """The goal part of :func:`zone_stats` of one zone (the same numbers), its constants
    computed once: the search's inner loop asks it thousands of times."""

    def __init__(self, zone: TargetZone) -> None:
        w = zone.point_cc
        self.w = w
        self.total = float(w.sum())
        self.rx = zone.prescription_gy
        self.k: int | None = None
        if w[0] == w.min() == w.max():  # equal volumes: D90 is an order statistic
            i90 = min(int(np.ceil(0.9 * w.size - 1e-9)) - 1, w.size - 1)
            self.k = w.size - 1 - max(i90, 0)

    def __call__(self, dose: np.ndarray, v100_min: float) -> tuple[bool, float]:
        """(V100 >= ``v100_min`` and D90 >= prescription, V100 %)."""
        v100 = 100.0 * float(self.w[dose >= self.rx].sum()) / self.total
        if v100 < v100_min:
            return False, v100
        if self.k is None:
            return _d90_gy(dose, self.w, self.total) >= self.rx, v100
        return float(np.partition(dose, self.k)[self.k]) >= self.rx, v100


class _State:
    """A selection being built: chosen candidates and the dose they give every sample point."""

    def __init__(
        self,
        zones: list[TargetZone],
        oars: list[OarConstraint],
        sk_u: float,
        needle: np.ndarray,
        exclusions: np.ndarray,
        n: int,
    ) -> None:
        self.zones = zones
        self.oars = oars
        self.s = float(sk_u)
        self.needle = needle
        self.exclusions = exclusions
        self.x = np.zeros(n, dtype=bool)
        # the dose of the chosen seeds on top of the fixed background (implanted seeds)
        self.zone_dose = [z.base_gy() for z in zones]
        self.conceded = [np.zeros(z.matrix.shape[0], dtype=bool) for z in zones]
        self.oar_dose = [o.base_gy() for o in oars]
        self._status: tuple[float, list[tuple[bool, float]]] | None = None
        self.goals = [_ZoneGoal(z) for z in zones]
        # column-major copies: adding or removing a seed reads one column of each matrix
        cols: dict[int, np.ndarray] = {}
        for m in [z.matrix for z in zones] + [o.matrix for o in oars]:
            if id(m) not in cols:
                cols[id(m)] = np.asfortranarray(m)
        self.zone_cols = [cols[id(z.matrix)] for z in zones]
        self.oar_cols = [cols[id(o.matrix)] for o in oars]
        self.partners: list[list[int]] = [[] for _ in range(n)]
        for a, b in exclusions:
            self.partners[int(a)].append(int(b))
            self.partners[int(b)].append(int(a))

    def toggle(self, n: int, on: bool) -> None:
        sign = 1.0 if on else -1.0
        self.x[n] = on
        self._status = None
        for zd, col in zip(self.zone_dose, self.zone_cols, strict=True):
            zd += sign * self.s * col[:, n]
        for od, col in zip(self.oar_dose, self.oar_cols, strict=True):
            od += sign * self.s * col[:, n]

    def goals_met_with(self, n: int, v100_min: float) -> bool:
        """:meth:`goals_met` with candidate ``n`` added, without adding it (only the
        zones' doses are computed: a trial that misses the goals costs no OAR update)."""
        for zd, col, g in zip(self.zone_dose, self.zone_cols, self.goals, strict=True):
            if not g(zd + self.s * col[:, n], v100_min)[0]:
                return False
        return True

    def goals_met(self, v100_min: float) -> bool:
        if self._status is not None and self._status[0] == v100_min:
            return all(met for met, _ in self._status[1])
        return all(g(zd, v100_min)[0] for zd, g in zip(self.zone_dose, self.goals, strict=True))

    def zone_status(self, v100_min: float) -> list[tuple[bool, float]]:
        """Per zone: (goals met, V100 %); kept until the next :meth:`toggle`."""
        if self._status is None or self._status[0] != v100_min:
            status = [g(zd, v100_min) for zd, g in zip(self.zone_dose, self.goals, strict=True)]
            self._status = (v100_min, status)
        return list(self._status[1])

    def keeps(self, before: list[tuple[bool, float]], v100_min: float) -> bool:
        """True when no zone is worse than ``before`` (met stays met, V100 never drops
        for a zone that misses its goals)."""
        for (met0, v0), (met1, v1) in zip(before, self.zone_status(v100_min), strict=True):
            if (met0 and not met1) or (not met0 and v1 < v0 - 1e-9):
                return False
        return True

    def oar_ok(self) -> bool:
        return all(
            o.excess_cc(od) <= o.allowed_cc() + 1e-9
            for od, o in zip(self.oar_dose, self.oars, strict=True)
        )

    def needles_used(self) -> set[int]:
        return {int(k) for k in self.needle[self.x]}


def _feasible_adds(st: _State, max_needles: int, blocked: dict[str, int], gain: np.ndarray):
    """Mask of candidates that can be added; counts what blocks the useful ones."""
    ok = ~st.x
    for idx in np.nonzero(st.x)[0]:
        ok[st.partners[idx]] = False
    spacing_blocked = ~st.x & ~ok & (gain > 0)
    if spacing_blocked.any():
        blocked["seed spacing"] = blocked.get("seed spacing", 0) + int(spacing_blocked.sum())
    used = st.needles_used()
    if len(used) >= max_needles:
        new_needle = ~np.isin(st.needle, list(used))
        nb = ok & new_needle & (gain > 0)
        if nb.any():
            blocked["max_needles"] = blocked.get("max_needles", 0) + int(nb.sum())
        ok &= ~new_needle
    for od, o in zip(st.oar_dose, st.oars, strict=True):
        cand = np.nonzero(ok)[0]
        if cand.size == 0:
            break
        trial = od[:, None] + st.s * o.matrix[:, cand]
        bad = o.excess_cc(trial) > o.allowed_cc() + 1e-9
        if bad.any():
            useful = bad & (gain[cand] > 0)
            if useful.any():
                key = f"{o.roi} {o.metric}"
                blocked[key] = blocked.get(key, 0) + int(useful.sum())
            ok[cand[bad]] = False
    return ok


def _gain(
    st: _State,
    *,
    unmet_only: bool = False,
    v100_min: float = 0.0,
    among: np.ndarray | None = None,
) -> np.ndarray:
    """Volume-weighted under-dose reduction (cm³-equivalents) of adding each candidate.

    Points in ``st.conceded`` (the coldest part of the V100 allowance, chosen by the LP
    guide) do not count: chasing them is what piles seeds and hot spots beside the OARs.
    With ``unmet_only`` only zones that miss their goals count (construction: a zone that
    meets them needs no more seeds).  ``among`` (a mask): only those candidates' gains are
    computed (the same values), the others are 0.
    """
    total = np.zeros(st.x.size)
    cols = None if among is None else np.nonzero(among)[0]
    if cols is not None and cols.size == 0:
        return total
    met = [m for m, _ in st.zone_status(v100_min)] if unmet_only else [False] * len(st.zones)
    for zd, z, skip, ok in zip(st.zone_dose, st.zones, st.conceded, met, strict=True):
        if ok:
            continue
        deficit = np.maximum(z.prescription_gy - zd, 0.0)
        need = (deficit > 0) & ~skip
        if not need.any():
            continue
        rows = np.nonzero(need)[0]
        block = z.matrix[rows] if cols is None else z.matrix[np.ix_(rows, cols)]
        # sum_m w_m min(s A_mn, deficit_m) / (Rx W): one pass for the minimum, one
        # matrix-vector product for the weighted sum
        capped = np.minimum(st.s * block, deficit[need, None])
        part = (z.point_cc[need] / (z.prescription_gy * z.point_cc.sum())) @ capped
        if cols is None:
            total += part
        else:
            total[cols] += part
    return total


def _hot_cost(st: _State) -> np.ndarray:
    """Volume newly pushed above 150 % of the prescription by each candidate (fraction)."""
    total = np.zeros(st.x.size)
    for zd, z in zip(st.zone_dose, st.zones, strict=True):
        hot = 1.5 * z.prescription_gy
        cold = zd < hot
        if not cold.any():
            continue
        newly = (zd[cold, None] + st.s * z.matrix[cold]) >= hot
        total += (newly * z.point_cc[cold, None]).sum(axis=0) / z.point_cc.sum()
    return total


class _Stall:
    """Tracks the zones' V100 (capped at the goal) as seeds are added (``STALL_SEEDS``)."""

    def __init__(self) -> None:
        self.history: list[tuple[int, float]] = []

    def stalled(self, st: _State, v100_min_pct: float, log: list[str]) -> bool:
        n = int(st.x.sum())
        v = sum(min(v, v100_min_pct) for _, v in st.zone_status(v100_min_pct))
        if self.history and self.history[-1][0] == n:
            return False
        self.history.append((n, v))
        if len(self.history) <= STALL_SEEDS:
            return False
        n0, v0 = self.history[-1 - STALL_SEEDS]
        if v - v0 < (n - n0) * STALL_V100_PCT_PER_SEED:
            log.append(
                f"coverage stalled: the last {n - n0} seeds raised V100 by {v - v0:.2f} %; "
                "construction stopped"
            )
            return True
        return False


def _try_add(st: _State, cand: int, max_needles: int) -> bool:
    """Add ``cand`` when spacing, the needle budget and every OAR limit allow it."""
    if st.x[cand] or st.x[st.partners[cand]].any():
        return False
    used = st.needles_used()
    if len(used) >= max_needles and int(st.needle[cand]) not in used:
        return False
    st.toggle(cand, True)
    if not st.oar_ok():
        st.toggle(cand, False)
        return False
    return True


def _gain_of(st: _State, cand: int, v100_min: float) -> float:
    """:func:`_gain` of one candidate (zones that miss their goals only)."""
    total = 0.0
    met = [m for m, _ in st.zone_status(v100_min)]
    for zd, z, skip, ok in zip(st.zone_dose, st.zones, st.conceded, met, strict=True):
        if ok:
            continue
        need = (zd < z.prescription_gy) & ~skip
        if need.any():
            contrib = st.s * z.matrix[need, cand]
            gain = np.minimum(contrib, z.prescription_gy - zd[need]) / z.prescription_gy
            total += float(gain @ z.point_cc[need]) / float(z.point_cc.sum())
    return total


def _conceded_points(st: _State, x_lp: np.ndarray, v100_min_pct: float) -> list[np.ndarray]:
    """Per zone, the coldest points under the LP dose, up to ``CONCEDE_FRACTION`` of the
    V100 allowance (``100 - v100_min`` % of the volume), when they are under-dosed."""
    out = []
    for z in st.zones:
        dose = z.base_gy() + st.s * (z.matrix @ x_lp.astype(z.matrix.dtype)).astype(np.float64)
        order = np.argsort(dose, kind="stable")
        cum = np.cumsum(z.point_cc[order])
        allowance = CONCEDE_FRACTION * (1.0 - v100_min_pct / 100.0) * float(z.point_cc.sum())
        take = order[(cum <= allowance) & (dose[order] < z.prescription_gy)]
        mask = np.zeros(dose.size, dtype=bool)
        mask[take] = True
        out.append(mask)
    return out


def _oar_cost(st: _State) -> np.ndarray:
    """First-order increase of sum_o CVaR_o / L_o (hot-tail mean over limit) per candidate."""
    total = np.zeros(st.x.size)
    for od, o in zip(st.oar_dose, st.oars, strict=True):
        idx, w = o.tail(od)
        if idx.size:
            total += st.s * (w @ o.matrix[idx]) / o.limit_gy
    return total


def _oar_load(st: _State) -> float:
    """sum_o CVaR_o / L_o of the current selection (the OAR sparing objective)."""
    return sum(o.tail_mean_gy(od) / o.limit_gy for od, o in zip(st.oar_dose, st.oars))


def _construct(
    st,
    v100_min_pct,
    max_needles,
    needle_weight,
    hot_spot_weight,
    oar_sparing_weight,
    prefer,
    blocked,
    clock: WallClock,
    log,
    progress,
) -> int:
    """Greedy construction until the goals hold, coverage stalls or nothing can be added;
    returns the number of seeds added."""
    it = 0
    stall = _Stall()
    while not st.goals_met(v100_min_pct):
        clock.check("the greedy construction")
        if stall.stalled(st, v100_min_pct, log):
            break
        gain = _gain(st, unmet_only=True, v100_min=v100_min_pct)
        ok = _feasible_adds(st, max_needles, blocked, gain)
        ok &= gain > 1e-9
        if not ok.any():
            log.append("no feasible candidate raises coverage")
            break
        used = st.needles_used()
        cost = 1.0 + needle_weight * ~np.isin(st.needle, list(used))
        if oar_sparing_weight > 0:
            cost = cost * (1.0 + oar_sparing_weight * _oar_cost(st))
        score = gain * prefer / cost - hot_spot_weight * _hot_cost(st)
        score[~ok] = -np.inf
        best = int(np.argmax(score))
        st.toggle(best, True)
        it += 1
        v100 = min(v for _, v in st.zone_status(v100_min_pct))
        report(progress, min(0.8, 0.8 * v100 / max(v100_min_pct, 1e-9)), f"{st.x.sum()} seeds")
    return it


def _free_candidates(st, exclude: int, max_needles: int) -> np.ndarray:
    """Candidates that could be added now (spacing and needle budget), ``exclude`` aside."""
    free = ~st.x
    for idx in np.nonzero(st.x)[0]:
        free[st.partners[idx]] = False
    free[exclude] = False
    if len(st.needles_used()) >= max_needles:
        free &= np.isin(st.needle, list(st.needles_used()))
    return free


def _coverage_swaps(st, v100_min_pct, max_needles, clock: WallClock, log, max_rounds=2) -> bool:
    """Move single seeds while that raises the unmet zones' coverage (limits kept); True
    when any seed moved.  A seed whose neighbours on its needle block the candidate the
    greedy wants (the seed-spacing rule) is moved there if coverage gains."""

    def coverage():
        return sum(min(v, v100_min_pct) for _, v in st.zone_status(v100_min_pct))

    moved = 0
    for _ in range(max_rounds):
        improved = False
        current = coverage()
        for c in np.nonzero(st.x)[0]:
            clock.check("the coverage swaps")
            if st.goals_met(v100_min_pct):
                break
            st.toggle(int(c), False)
            free = _free_candidates(st, int(c), max_needles)
            gain = _gain(st, unmet_only=True, v100_min=v100_min_pct, among=free)
            gain[~free] = -np.inf
            best = None
            for cand in np.argsort(gain)[::-1][:8]:
                if not gain[cand] > 1e-9:
                    break
                st.toggle(int(cand), True)
                if st.oar_ok():
                    val = coverage()
                    if val > current + 1e-6 and (best is None or val > best[1]):
                        best = (int(cand), val)
                st.toggle(int(cand), False)
            if best is not None:
                st.toggle(best[0], True)
                current = best[1]
                improved = True
                moved += 1
            else:
                st.toggle(int(c), True)
        if not improved:
            break
    log.append(f"coverage swaps: {moved} seeds moved")
    return moved > 0


def select_seeds(
    zones: Sequence[TargetZone],
    oars: Sequence[OarConstraint],
    *,
    sk_u: float,
    needle: np.ndarray,
    exclusions: np.ndarray,
    max_needles: int,
    v100_min_pct: float = 95.0,
    needle_weight: float = 0.5,
    hot_spot_weight: float = 0.05,
    oar_sparing_weight: float = 25.0,
    lp_max_iterations: int = LP_MAX_ITERATIONS,
    guide: bool | WarmStart = True,
    reduce_seeds: bool = True,
    clock: WallClock = NO_LIMIT,
    progress: ProgressCallback | None = None,
) -> SeedSelection:
    """Choose seeds (see the module docstring); never violates an OAR limit.

    ``guide``: True, the LP guide; False, none (greedy construction from scratch); a
    :class:`WarmStart`, an earlier selection's seeds (added in index order where spacing,
    needles and every limit allow) and its LP solution instead of solving the LP.  The
    construction, pruning and local search follow in every case.

    Every step is bounded by counts (simplex iterations, candidates, swap rounds), never by
    elapsed time: the same problem gives the same selection on any machine under any load.
    ``clock`` only fails the run (:class:`~brachycryo.core.errors.WallClockLimitError`)
    when its optional ``max_wall_s`` has passed.
    """
    n = _check_problem(zones, oars)
    t0 = time.perf_counter()
    st = _State(list(zones), list(oars), sk_u, np.asarray(needle), exclusions, n)
    blocked: dict[str, int] = {}
    log: list[str] = []
    # -- LP guide and rounding
    prefer = np.ones(n)
    lp_x = None
    if isinstance(guide, WarmStart):
        prefer, lp_x = _warm_started(st, guide, v100_min_pct, max_needles, log)
    elif guide:
        prefer, lp_x = _lp_guided_start(
            st,
            v100_min_pct,
            max_needles,
            oar_sparing_weight,
            lp_max_iterations,
            clock,
            log,
            progress,
        )
    # -- greedy construction; when it stalls short of the goals, coverage swaps (a seed
    # moved where the spacing rule blocked the greedy) and one more construction
    it = 0
    for attempt in range(2):
        it += _construct(
            st, v100_min_pct, max_needles, needle_weight, hot_spot_weight, oar_sparing_weight,
            prefer, blocked, clock, log, progress,
        )  # fmt: skip
        if attempt or st.goals_met(v100_min_pct):
            break
        if not _coverage_swaps(st, v100_min_pct, max_needles, clock, log):
            break
    met = st.goals_met(v100_min_pct)
    it += _prune(st, v100_min_pct, oar_sparing_weight, clock)
    if met and reduce_seeds:
        it += _reduce_two_for_one(st, v100_min_pct, max_needles, clock, log)
    report(progress, 0.9, f"pruned to {st.x.sum()} seeds")
    if met:
        # -- swap: lower V150 by moving one seed at a time, goals and limits kept
        _swap_for_hot_spots(
            st, v100_min_pct, max_needles, clock, log,
            hot_spot_weight=hot_spot_weight, oar_sparing_weight=oar_sparing_weight,
        )  # fmt: skip
    report(progress, 1.0, f"{st.x.sum()} seeds")
    selection = _selection_of(st, met=met, blocked=blocked, iterations=it, t0=t0, log=log)
    return replace(selection, lp_x=lp_x)


def _warm_started(
    st: _State, warm: WarmStart, v100_min_pct: float, max_needles: int, log: list[str]
) -> tuple[np.ndarray, np.ndarray | None]:
    """Add the warm start's seeds to ``st`` (index order, where spacing, the needle budget
    and every limit allow); (the greedy's preference, the LP solution) as after the LP."""
    n = st.x.size
    added = sum(_try_add(st, int(c), max_needles) for c in np.sort(warm.chosen))
    log.append(f"warm start: {added} of {len(warm.chosen)} seeds of the previous selection")
    if warm.lp_x is None:
        return np.ones(n), None
    st.conceded = _conceded_points(st, warm.lp_x, v100_min_pct)
    return LP_PREFERENCE_FLOOR + warm.lp_x, warm.lp_x


def _check_problem(zones: Sequence[TargetZone], oars: Sequence[OarConstraint]) -> int:
    """The number of candidates, after checking that every matrix has that many columns
    and one row per sample point."""
    if not zones:
        raise ConfigError("no seed-target zone to optimise")
    n = int(zones[0].matrix.shape[1])
    for z in zones:
        if z.matrix.shape[1] != n or z.matrix.shape[0] != z.point_cc.size:
            raise ConfigError(f"zone {z.name}: matrix and point volumes do not match")
    for o in oars:
        if o.matrix.shape[1] != n or o.matrix.shape[0] != o.point_cc.size:
            raise ConfigError(f"OAR {o.roi}: matrix and point volumes do not match")
    return n


def _lp_guided_start(
    st: _State,
    v100_min_pct: float,
    max_needles: int,
    oar_sparing_weight: float,
    lp_max_iterations: int,
    clock: WallClock,
    log: list[str],
    progress: ProgressCallback | None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Solve the LP guide and round its solution into ``st``; returns the greedy's
    preference of each candidate (``LP_PREFERENCE_FLOOR + x*``, or 1 without an LP) and
    the LP solution (None without one)."""
    x_lp = lp_relaxation(
        st.zones,
        st.oars,
        sk_u=st.s,
        exclusions=st.exclusions,
        v100_min_pct=v100_min_pct,
        oar_sparing_weight=oar_sparing_weight * LP_SPARING_SCALE,
        max_iterations=lp_max_iterations,
        clock=clock,
    )
    if x_lp is None:
        log.append(
            "LP relaxation found no solution within its work limit "
            f"({lp_max_iterations} simplex iterations); greedy construction from scratch"
        )
        return np.ones(st.x.size), None
    log.append(f"LP relaxation: sum x = {x_lp.sum():.1f}, {int((x_lp >= 0.5).sum())} >= 0.5")
    st.conceded = _conceded_points(st, x_lp, v100_min_pct)
    n_conc = sum(int(c.sum()) for c in st.conceded)
    log.append(f"{n_conc} target points left to the V100 allowance (coldest under LP)")
    _round_lp(st, x_lp, v100_min_pct, max_needles, log)
    report(progress, 0.3, f"LP rounding: {int(st.x.sum())} seeds")
    return LP_PREFERENCE_FLOOR + x_lp, x_lp


def _round_lp(
    st: _State, x_lp: np.ndarray, v100_min_pct: float, max_needles: int, log: list[str]
) -> None:
    """Rounding: x* >= 0.5 first; then, while the goals are unmet, the fractional rest in
    the LP's order (the LP has already traded coverage against OAR dose and seed count; a
    deficit-driven greedy would pile seeds near the OARs)."""
    order = np.argsort(-x_lp, kind="stable")
    for cand in order[x_lp[order] >= 0.5]:
        _try_add(st, int(cand), max_needles)
    n_half = int(st.x.sum())
    stall = _Stall()
    for cand in order[(x_lp[order] < 0.5) & (x_lp[order] >= LP_COMPLETION_MIN_X)]:
        if st.goals_met(v100_min_pct) or stall.stalled(st, v100_min_pct, log):
            break
        if _gain_of(st, int(cand), v100_min_pct) > 1e-9:
            _try_add(st, int(cand), max_needles)
    log.append(f"LP rounding: {n_half} seeds at x* >= 0.5, {int(st.x.sum())} after "
               "the LP-ordered completion")  # fmt: skip


def _prune(st: _State, v100_min_pct: float, oar_sparing_weight: float, clock: WallClock) -> int:
    """Remove seeds (least contribution first) while every zone that meets its goals still
    does and no zone that misses them loses coverage; returns the number removed."""
    removed = 0
    before = st.zone_status(v100_min_pct)
    changed = True
    while changed:
        clock.check("the pruning")
        changed = False
        chosen = np.nonzero(st.x)[0]
        # usefulness: the target dose a seed delivers, as a fraction of the prescribed
        # dose-volume, less its OAR sparing cost (seeds beside an OAR are tried first)
        useful = sum(
            st.s * (z.point_cc @ z.matrix[:, chosen]) / (z.prescription_gy * z.point_cc.sum())
            for z in st.zones
        )
        if oar_sparing_weight > 0:
            useful = useful / (1.0 + oar_sparing_weight * _oar_cost(st)[chosen])
        for c in chosen[np.argsort(useful, kind="stable")]:
            st.toggle(int(c), False)
            if st.keeps(before, v100_min_pct):
                changed = True
                removed += 1
            else:
                st.toggle(int(c), True)
    return removed


def _overlap_partners(st: _State, c: int, chosen: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` chosen seeds whose target dose overlaps most with seed ``c``'s: the sum,
    over the target points where ``c`` gives at least ``OVERLAP_MIN_FRACTION`` of the
    prescription, of the product of their doses (volume-weighted); the seeds that share
    the points ``c`` covers."""
    score = np.zeros(chosen.size)
    for z, col in zip(st.zones, st.zone_cols, strict=True):
        rx_per_u = z.prescription_gy / st.s
        pts = np.nonzero(col[:, c] >= OVERLAP_MIN_FRACTION * rx_per_u)[0]
        if pts.size == 0:
            continue
        wc = col[pts, c] * z.point_cc[pts] / (rx_per_u**2 * z.point_cc.sum())
        score += wc @ col[pts][:, chosen]
    score[chosen == c] = -np.inf
    top = np.argsort(-score, kind="stable")[:k]
    return chosen[top[np.isfinite(score[top]) & (score[top] > 0)]]


def _repair_with_one(st: _State, exclude: tuple[int, int], v100_min_pct: float, max_needles: int):
    """After two seeds were removed: the first of the ``REDUCE_TRIES`` free candidates with
    the largest gain on the unmet zones whose addition meets every goal within the limits,
    or None (the state is left as it was given)."""
    free = _free_candidates(st, exclude[0], max_needles)
    free[exclude[1]] = False
    gain = _gain(st, unmet_only=True, v100_min=v100_min_pct, among=free)
    gain[~free] = -np.inf
    for cand in np.argsort(-gain, kind="stable")[:REDUCE_TRIES]:
        if not gain[cand] > 1e-9:
            return None
        if not st.goals_met_with(int(cand), v100_min_pct):
            continue
        st.toggle(int(cand), True)
        if st.oar_ok():
            return int(cand)
        st.toggle(int(cand), False)
    return None


def _reduce_two_for_one(
    st: _State, v100_min_pct: float, max_needles: int, clock: WallClock, log: list[str]
) -> int:
    """Replace two seeds by one while every goal and limit holds (a count-bounded local
    search after pruning; returns the seeds saved).

    For each chosen seed c (least target dose first) and each of the ``REDUCE_PARTNERS``
    seeds sharing most of its target points, both are removed and the free candidates that
    best refill the under-dose are tried in their place.  Doses are updated exactly
    (one column added or subtracted per move); rounds, partners and tries are counts, so
    the search does the same work on any machine.
    """
    saved = 0
    for _ in range(REDUCE_ROUNDS):
        saved_round = 0
        chosen = np.nonzero(st.x)[0]
        useful = sum(st.s * (z.point_cc @ col[:, chosen]) for z, col in zip(st.zones, st.zone_cols))
        for c in chosen[np.argsort(useful, kind="stable")]:
            clock.check("the seed reduction")
            if not st.x[c]:
                continue
            now = np.nonzero(st.x)[0]
            for d in _overlap_partners(st, int(c), now, REDUCE_PARTNERS):
                st.toggle(int(c), False)
                st.toggle(int(d), False)
                if st.goals_met(v100_min_pct):  # both could go: keep the saving of two
                    saved_round += 2
                    break
                if _repair_with_one(st, (int(c), int(d)), v100_min_pct, max_needles) is not None:
                    saved_round += 1
                    break
                st.toggle(int(d), True)
                st.toggle(int(c), True)
        saved += saved_round
        if not saved_round:
            break
    log.append(f"two-for-one reduction: {saved} seeds saved")
    return saved


def _selection_of(
    st: _State, *, met: bool, blocked: dict[str, int], iterations: int, t0: float, log: list[str]
) -> SeedSelection:
    """The :class:`SeedSelection` of the final state; when the goals are unmet, what blocked
    the useful candidates most often comes first in ``binding``."""
    coverage = {z.name: zone_stats(zd, z) for zd, z in zip(st.zone_dose, st.zones, strict=True)}
    oar_excess = {
        f"{o.roi} {o.metric}": float(o.excess_cc(od))
        for od, o in zip(st.oar_dose, st.oars, strict=True)
    }
    binding = []
    if not met:
        binding = [k for k, _ in sorted(blocked.items(), key=lambda kv: -kv[1])]
        if not binding:
            binding = ["candidate geometry (no candidate reaches the under-dosed points)"]
    return SeedSelection(
        chosen=np.nonzero(st.x)[0],
        feasible=met,
        coverage=coverage,
        oar_excess_cc=oar_excess,
        binding=binding,
        n_needles=len(st.needles_used()),
        iterations=iterations,
        time_s=time.perf_counter() - t0,
        log=log,
    )


def _swap_for_hot_spots(
    st, v100_min_pct, max_needles, clock: WallClock, log, *, hot_spot_weight: float,
    oar_sparing_weight: float, max_rounds: int = 3,
):  # fmt: skip
    """Move single seeds while that lowers hot spots and OAR dose, goals and limits kept.

    The objective is ``V150 (fraction, summed over zones) * w_h' + 0.1 w_o * sum_o CVaR_o / L_o``
    with ``w_h' = 1`` when hot-spot weighting is on; each chosen seed is taken out in turn
    and the few free candidates with the best gain-minus-OAR-cost score are tried in its
    place; the best improving swap is kept.
    """
    hot_w = 1.0 if hot_spot_weight > 0 else 0.0

    def objective():
        v150 = sum(zone_stats(zd, z)["v150_pct"] for zd, z in zip(st.zone_dose, st.zones))
        return hot_w * v150 / 100.0 + 0.1 * oar_sparing_weight * _oar_load(st)

    for _ in range(max_rounds):
        improved = False
        current = objective()
        for c in np.nonzero(st.x)[0]:
            clock.check("the hot-spot swaps")
            st.toggle(int(c), False)
            free = _free_candidates(st, int(c), max_needles)
            score = _gain(st, among=free)
            if oar_sparing_weight > 0:
                score = score / (1.0 + oar_sparing_weight * _oar_cost(st))
            score[~free] = -np.inf
            best_swap = None
            for cand in np.argsort(score)[::-1][:8]:
                if not np.isfinite(score[cand]):
                    break
                if not st.goals_met_with(int(cand), v100_min_pct):
                    continue
                st.toggle(int(cand), True)
                if st.oar_ok() and st.goals_met(v100_min_pct):
                    val = objective()
                    if val < current - 1e-6 and (best_swap is None or val < best_swap[1]):
                        best_swap = (int(cand), val)
                st.toggle(int(cand), False)
            if best_swap is not None:
                st.toggle(best_swap[0], True)
                current = best_swap[1]
                improved = True
            else:
                st.toggle(int(c), True)
        if not improved:
            return


def oar_lp_points(
    o: OarConstraint, max_points: int, *, sk_u: float = 1.0
) -> tuple[np.ndarray, float]:
    """The OAR points a linear model keeps, and the CVaR tail volume over them.

    Points that can get the most dose (the background plus all candidates on at ``sk_u``)
    first: ``max_points``, more when
    needed for twice the tail volume, so the hottest tail of any selection lies among them.
    The tail is capped at the kept volume (CVaR over more volume than exists is unbounded).
    """
    pts = np.nonzero(o.point_cc > 0)[0]
    if pts.size == 0:
        return pts, 0.0
    most = o.base_gy()[pts] + sk_u * o.matrix[pts].sum(axis=1, dtype=np.float64)
    order = pts[np.argsort(most, kind="stable")[::-1]]
    cum = np.cumsum(o.point_cc[order])
    n = max(max_points, int(np.searchsorted(cum, 2.0 * o.tail_cc())) + 1)
    idx = order[:n]
    return idx, min(o.tail_cc(), float(o.point_cc[idx].sum()))


def lp_relaxation(
    zones: Sequence[TargetZone],
    oars: Sequence[OarConstraint],
    *,
    sk_u: float,
    exclusions: np.ndarray,
    v100_min_pct: float = 95.0,
    max_target_points: int = 1000,
    max_oar_points: int = 600,
    under_dose_weight: float = 50.0,
    hot_weight: float = 0.5,
    oar_sparing_weight: float = 0.0,
    oar_headroom: float = 0.9,
    max_iterations: int = LP_MAX_ITERATIONS,
    clock: WallClock = NO_LIMIT,
    sparsify_fraction: float = 0.02,
    seed: int = 0,
) -> np.ndarray | None:
    """Solve the linear relaxation of the seed selection with HiGHS; x* in [0, 1] or None.

    minimise  sum_n x_n + w * sum_m f_m u_m / Rx_m + w_h * sum_m f_m h_m / Rx_m
                  + w_o * sum_o C_o / L_o
    s.t.      b_T + s * A_T x + u >= Rx      (target points; u >= 0 is the under-dose)
              b_T + s * A_T x - h <= 1.5 Rx  (h >= 0 is the dose above 150 %)
              s * A_O x <= r (L - b_O)       (Dmax limits: every OAR point)
              C_o <= L_o                 (Dvcc and Vx limits)
              x_a + x_b <= 1             (excluded pairs),  0 <= x <= 1,
    with b the fixed background dose (zero unless seeds are already implanted), f_m the
    volume fraction of point m and C_o = t_o + (1/v_o) sum_i c_i z_i,
    z_i >= b_O,i + s * A_O,i x - t_o, z >= 0, the conditional value-at-risk (mean dose of the
    hottest v_o cm³) in the linear form of Rockafellar and Uryasev (J Risk 2:21, 2000).
    C_o is an upper bound of D_vcc, so the Dvcc / Vx rows are conservative without the
    far more conservative "every point below L"; the same construction with a 0.1 cm³
    tail gives the OAR sparing term (weight ``w_o``, in seeds per limit) for every OAR.
    The under-dose weight ``w`` (seeds per fully under-dosed target) makes coverage
    dominate the seed count, as the clinical goal order requires.  V100 >= v100_min allows
    the coldest (100 - v100_min) % to stay under-dosed: a second solve drops the points
    with the largest under-dose of the first (up to 80 % of that allowance) so the LP does
    not spend seeds on points an OAR makes unreachable.  The Dmax rows carry a headroom
    ``r`` (default 0.9): rounding and the greedy completion add dose, and a limit met with
    no margin would block every further seed.  Target entries below ``sparsify_fraction``
    of the prescription are dropped from the LP (far seeds; the exact dose is used
    everywhere after the LP).  Exact reductions keep HiGHS's work down: Dmax rows no
    selection can bind are left out and the CVaR rows are generated lazily
    (:func:`_solve_lp_lazy`; the second solve starts from the first one's points).
    """
    problem = lp_problem(
        zones, oars, sk_u=sk_u, exclusions=exclusions, max_target_points=max_target_points,
        max_oar_points=max_oar_points, seed=seed,
    )  # fmt: skip
    options = _LpOptions(
        under_dose_weight=under_dose_weight,
        hot_weight=hot_weight,
        oar_sparing_weight=oar_sparing_weight,
        oar_headroom=oar_headroom,
        max_iterations=max_iterations,
        clock=clock,
        sparsify_fraction=sparsify_fraction,
    )
    rx_all, f_all = problem.prescription_gy, problem.fraction
    keep = np.ones(problem.dose.shape[0], dtype=bool)
    try:
        x, under, active = _solve_lp_lazy(problem, keep, options, None)
        if x is None or under is None:
            return None
        allowance = 0.8 * (1.0 - v100_min_pct / 100.0)
        order = np.argsort(under / rx_all)[::-1]
        cum = np.cumsum(f_all[order])
        drop = order[(cum <= allowance * f_all.sum()) & (under[order] > 1e-6)]
        if drop.size:
            keep[drop] = False
            x2, _, _ = _solve_lp_lazy(problem, keep, options, active)  # the CVaR points so far
            if x2 is not None:
                x = x2
    except ValueError:
        return None
    return x


def lp_problem(
    zones: Sequence[TargetZone],
    oars: Sequence[OarConstraint],
    *,
    sk_u: float,
    exclusions: np.ndarray,
    max_target_points: int,
    max_oar_points: int,
    seed: int = 0,
) -> _LpProblem:
    """The linear model's data: sampled target rows (``seed`` for the sampling), the OAR
    rows and the exclusion pairs, shared by the LP guide and the binding proof."""
    n = int(zones[0].matrix.shape[1])
    targets = sample_target_rows(
        zones, sk_u=sk_u, max_points=max_target_points, rng=np.random.default_rng(seed)
    )
    return _LpProblem(
        n=n,
        dose=targets.dose,
        prescription_gy=targets.prescription_gy,
        background_gy=targets.background_gy,
        fraction=targets.fraction / len(zones),
        oar_blocks=oar_lp_rows(oars, sk_u=sk_u, max_points=max_oar_points),
        exclusions=exclusion_matrix(exclusions, n),
    )


@dataclass(frozen=True)
class SampledTargets:
    """Target sample points of a linear model: a random subsample of each zone's points."""

    dose: np.ndarray  # (M, N) Gy of each candidate at the seed strength, float64
    prescription_gy: np.ndarray  # (M,) of each point's zone
    zone: np.ndarray  # (M,) index of each point's zone
    fraction: np.ndarray  # (M,) each point's volume fraction of its zone's sampled points
    background_gy: np.ndarray  # (M,) fixed dose of the implanted seeds (zeros: none)


def sample_target_rows(
    zones: Sequence[TargetZone], *, sk_u: float, max_points: int, rng: np.random.Generator
) -> SampledTargets:
    """At most ``max_points`` points of every zone (without replacement, in index order)."""
    rows, rx, zone_of, frac, base = [], [], [], [], []
    for zi, z in enumerate(zones):
        m = z.matrix.shape[0]
        idx = np.sort(rng.choice(m, min(m, max_points), replace=False))
        rows.append(sk_u * z.matrix[idx].astype(np.float64))
        rx.append(np.full(idx.size, z.prescription_gy))
        zone_of.append(np.full(idx.size, zi))
        frac.append(z.point_cc[idx] / z.point_cc[idx].sum())
        base.append(z.base_gy()[idx])
    return SampledTargets(
        dose=np.vstack(rows),
        prescription_gy=np.concatenate(rx),
        zone=np.concatenate(zone_of),
        fraction=np.concatenate(frac),
        background_gy=np.concatenate(base),
    )


@dataclass(frozen=True)
class OarRows:
    """The OAR points a linear model keeps (:func:`oar_lp_points`) for one constraint."""

    constraint: OarConstraint
    dose: np.ndarray  # (M_o, N) Gy of each candidate at the seed strength, float64
    point_cc: np.ndarray  # (M_o,)
    tail_cc: float
    background_gy: np.ndarray  # (M_o,) fixed dose of the implanted seeds (zeros: none)


def oar_lp_rows(oars: Sequence[OarConstraint], *, sk_u: float, max_points: int) -> list[OarRows]:
    """:class:`OarRows` of every constraint that has points (the points that can get the
    most dose with all candidates on, see :func:`oar_lp_points`)."""
    out = []
    for o in oars:
        idx, tail_cc = oar_lp_points(o, max_points, sk_u=sk_u)
        if idx.size:
            dose = sk_u * o.matrix[idx].astype(np.float64)
            out.append(OarRows(o, dose, o.point_cc[idx], tail_cc, o.base_gy()[idx]))
    return out


def exclusion_matrix(exclusions: np.ndarray, n: int):
    """Sparse (P, n) rows with a 1 at both candidates of each excluded pair (x_a + x_b <= 1)."""
    from scipy import sparse

    ex = np.asarray(exclusions).reshape(-1, 2)
    return sparse.csr_matrix(
        (np.ones(2 * len(ex)), (np.repeat(np.arange(len(ex)), 2), ex.reshape(-1))),
        shape=(len(ex), n),
    )


@dataclass(frozen=True)
class _LpProblem:
    n: int  # candidates
    dose: np.ndarray  # target rows (SampledTargets.dose)
    prescription_gy: np.ndarray
    background_gy: np.ndarray  # fixed dose of each target row (SampledTargets.background_gy)
    fraction: np.ndarray  # volume fraction of each point, summing to 1 over all zones
    oar_blocks: list[OarRows]
    exclusions: Any  # sparse (P, n)


@dataclass(frozen=True)
class _LpOptions:
    under_dose_weight: float
    hot_weight: float
    oar_sparing_weight: float
    oar_headroom: float
    max_iterations: int
    clock: WallClock
    sparsify_fraction: float
    seed_cost: float = 1.0  # 0: minimise the under-dose alone (the coverage bound)


def _lp_row_block(parts: list[tuple[int, Any]], nrows: int, n_var: int):
    """Sparse rows of ``n_var`` columns with each (start column, matrix) of ``parts``."""
    from scipy import sparse

    cols = []
    at_col = 0
    for start, mat in parts:
        if start > at_col:
            cols.append(sparse.csr_matrix((nrows, start - at_col)))
        cols.append(mat)
        at_col = start + mat.shape[1]
    if at_col < n_var:
        cols.append(sparse.csr_matrix((nrows, n_var - at_col)))
    return sparse.hstack(cols, format="csr")


def _solve_lp(
    problem: _LpProblem, keep: np.ndarray, opt: _LpOptions
) -> tuple[np.ndarray, np.ndarray] | tuple[None, None]:
    """Solve the LP of :func:`lp_relaxation` on the target points ``keep``: (x, u) or None."""
    x, under, _ = _solve_lp_lazy(problem, keep, opt, None)
    if x is None or under is None:
        return None, None
    return x, under


def _solve_lp_lazy(
    problem: _LpProblem, keep: np.ndarray, opt: _LpOptions, active: list[np.ndarray] | None
) -> tuple[np.ndarray | None, np.ndarray | None, list[np.ndarray]]:
    """:func:`_solve_lp` by lazy generation of the OAR CVaR points: (x, u, active points).

    Each OAR block's CVaR rows z_i >= b_i + s A_i x - t start on ``active`` (default: the
    points of largest possible dose, :func:`_initial_cvar_points`); after each solve, a
    block whose CVaR over all its points at x exceeds the reduced one gets the points of
    that full tail, and the LP is solved again until none does.  Exact: the reduced LP is a
    relaxation of the full one (rows and z_i >= 0 terms left out), and its optimum x with
    the full CVaR's t and z is feasible for the full LP at the same cost, hence optimal
    (the cutting-plane argument of Dantzig, Fulkerson and Johnson, Oper Res 2:393, 1954).
    Deterministic: the same rows in the same order on every run.
    """
    act = _initial_cvar_points(problem, opt) if active is None else active
    for _ in range(LP_LAZY_MAX_ROUNDS):
        x, under, cvar = _solve_lp_once(problem, keep, opt, act)
        if x is None or under is None:
            return None, None, act
        grown, added = _add_violated_cvar_points(problem, act, x, cvar, opt)
        if not added:
            return x, under, act
        act = grown
    # every point active: the full LP (the loop above adds at least one point a round)
    return (*_solve_lp_once(problem, keep, opt, _all_cvar_points(problem, opt))[:2], act)


def _cvar_needed(blk: OarRows, opt: _LpOptions) -> bool:
    """Whether a block's CVaR rows act on the LP: a Dvcc / Vx limit or the sparing term."""
    return blk.constraint.kind != "dmax" or opt.oar_sparing_weight > 0


def _all_cvar_points(problem: _LpProblem, opt: _LpOptions) -> list[np.ndarray]:
    return [
        np.arange(blk.dose.shape[0] if _cvar_needed(blk, opt) else 0) for blk in problem.oar_blocks
    ]


def _initial_cvar_points(problem: _LpProblem, opt: _LpOptions) -> list[np.ndarray]:
    """Each block's CVaR points to start with: those of largest possible dose (background
    plus every candidate on) up to ``LP_LAZY_START_TAILS`` times the tail volume (never less
    than the tail, which keeps the reduced CVaR bounded); none where the CVaR has no role
    (a Dmax block without the sparing term: its t and z are free of cost)."""
    out = []
    for blk in problem.oar_blocks:
        mo = blk.dose.shape[0]
        if not _cvar_needed(blk, opt):
            out.append(np.zeros(0, dtype=np.intp))
            continue
        most = blk.background_gy + blk.dose.sum(axis=1)
        order = np.argsort(most, kind="stable")[::-1]
        cum = np.cumsum(blk.point_cc[order])
        n = int(np.searchsorted(cum, LP_LAZY_START_TAILS * blk.tail_cc)) + 1
        out.append(np.sort(order[: min(mo, max(n, LP_LAZY_MIN_POINTS))]))
    return out


def _add_violated_cvar_points(
    problem: _LpProblem,
    active: list[np.ndarray],
    x: np.ndarray,
    cvar: list[tuple[float, float]],
    opt: _LpOptions,
) -> tuple[list[np.ndarray], bool]:
    """``active`` grown where the reduced CVaR at ``x`` (``cvar``: t and t + sum_i c_i z_i / v
    over the active points) falls short of the CVaR over every point: by the points of that
    full tail and those left out above t.  For a block with no cost (no sparing term) where
    the full CVaR still meets the limit, the full LP's t and z are as feasible: none added."""
    grown, added = [], False
    for blk, act, (t_red, c_red) in zip(problem.oar_blocks, active, cvar, strict=True):
        if act.size == 0:  # no CVaR rows (a Dmax block without the sparing term)
            grown.append(act)
            continue
        dose = blk.background_gy + blk.dose @ x
        tail, c_full = _cvar_tail(dose, blk.point_cc, blk.tail_cc)
        bound = c_red if opt.oar_sparing_weight > 0 else blk.constraint.limit_gy
        missing = np.setdiff1d(np.union1d(tail, np.nonzero(dose - t_red > LP_LAZY_TOL_GY)[0]), act)
        # no point missing: the reduced CVaR at x is the full one (the same hottest tail)
        if c_full <= bound + LP_LAZY_TOL_GY or missing.size == 0:
            grown.append(act)
            continue
        added = True
        grown.append(np.union1d(act, missing))
    return grown, added


def _cvar_tail(dose: np.ndarray, point_cc: np.ndarray, tail_cc: float) -> tuple[np.ndarray, float]:
    """Indices of the hottest ``tail_cc`` of ``dose`` and its mean dose (the CVaR of
    Rockafellar and Uryasev, J Risk 2:21, 2000, over the points given)."""
    order = np.argsort(dose, kind="stable")[::-1]
    cc = point_cc[order]
    cum = np.cumsum(cc)
    take = np.clip(tail_cc - (cum - cc), 0.0, cc)
    keep = take > 0
    return order[keep], float(take[keep] @ dose[order[keep]]) / tail_cc


def _solve_lp_once(
    problem: _LpProblem, keep: np.ndarray, opt: _LpOptions, active: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float]]] | tuple[None, None, list]:
    """One HiGHS solve with the CVaR rows of the points ``active``: (x, u, and each block's
    t and CVaR t + sum_i c_i z_i / v over those points)."""
    from scipy import sparse
    from scipy.optimize import linprog

    n = problem.n
    at, rx, f = problem.dose[keep], problem.prescription_gy[keep], problem.fraction[keep]
    base = problem.background_gy[keep]
    at = np.where(at >= opt.sparsify_fraction * rx[:, None], at, 0.0)
    mt = at.shape[0]
    at_s = sparse.csr_matrix(at)
    # variable layout: x (n) | u (mt) | h (mt) | per OAR block: t (1), z (active points)
    n_oar = sum(1 + act.size for act in active)
    n_var = n + 2 * mt + n_oar
    eye = sparse.eye(mt, format="csr")
    rows = [
        _lp_row_block([(0, -at_s), (n, -eye)], mt, n_var),
        _lp_row_block([(0, at_s), (n + mt, -eye)], mt, n_var),
    ]
    b = [base - rx, 1.5 * rx - base]  # the seeds add to the fixed background dose
    cost = np.zeros(n_var)
    cost[:n] = opt.seed_cost
    cost[n : n + mt] = opt.under_dose_weight * n * f / rx
    cost[n + mt : n + 2 * mt] = opt.hot_weight * n * f / rx
    bounds: list[tuple[float | None, float | None]] = [(0.0, 1.0)] * n + [(0.0, None)] * (2 * mt)
    col = n + 2 * mt
    t_cols = []
    for blk, act in zip(problem.oar_blocks, active, strict=True):
        blk_rows, blk_b, cvar = _lp_oar_rows(blk, act, col, n_var, opt.oar_headroom)
        rows += blk_rows
        b += blk_b
        cost += opt.oar_sparing_weight * cvar / blk.constraint.limit_gy
        bounds += [(None, None)] + [(0.0, None)] * act.size
        t_cols.append(col)
        col += 1 + act.size
    n_ex = problem.exclusions.shape[0]
    if n_ex:
        rows.append(_lp_row_block([(0, problem.exclusions)], n_ex, n_var))
        b.append(np.ones(n_ex))
    res = linprog(
        cost,
        A_ub=sparse.vstack(rows).tocsc(),
        b_ub=np.concatenate(b),
        bounds=bounds,
        method=LP_METHOD,
        options=_highs_options(opt),
    )
    opt.clock.check("the LP guide")  # a HiGHS time limit that fired is the clock's, not a result
    if res.x is None:
        return None, None, []
    tails = [
        (
            float(res.x[c]),
            float(res.x[c] + (blk.point_cc[act] / blk.tail_cc) @ res.x[c + 1 : c + 1 + act.size]),
        )
        for c, blk, act in zip(t_cols, problem.oar_blocks, active, strict=True)
    ]
    return np.clip(res.x[:n], 0.0, 1.0), res.x[n : n + mt], tails


def _highs_options(opt: _LpOptions) -> dict[str, Any]:
    """HiGHS limits: a simplex iteration count (deterministic); a time limit only as the
    optional safety net, whose firing fails the run."""
    options: dict[str, Any] = {
        "maxiter": int(opt.max_iterations),
        "simplex_dual_edge_weight_strategy": LP_DUAL_EDGE_WEIGHTS,
    }
    remaining_s = opt.clock.remaining_s()
    if remaining_s is not None:
        options["time_limit"] = max(remaining_s, 1e-3)
    return options


def _lp_oar_rows(
    blk: OarRows, active: np.ndarray, col: int, n_var: int, oar_headroom: float
) -> tuple[list[Any], list[np.ndarray], np.ndarray]:
    """The rows (with right-hand sides) of one OAR block whose variables t, z start at
    ``col``, and its CVaR as a cost row: z_i >= s A_i x - t for the points ``active``
    (:func:`_solve_lp_lazy`); then every point below ``oar_headroom`` times the limit
    (Dmax), or CVaR <= limit (Dvcc, Vx).

    A Dmax row whose dose with every candidate on, sum_j max(s A_ij, 0), stays within its
    right-hand side holds for every x in [0, 1]^n and is left out (exact).
    """
    from scipy import sparse

    o = blk.constraint
    ma = active.size
    # z_i >= bg_i + s A_i x - t  <=>  s A_i x - t - z_i <= -bg_i
    rows = []
    b = []
    if ma:
        rows.append(
            _lp_row_block([(0, sparse.csr_matrix(blk.dose[active])),
                           (col, sparse.csr_matrix(-np.ones((ma, 1)))),
                           (col + 1, -sparse.eye(ma, format="csr"))], ma, n_var)
        )  # fmt: skip
        b.append(-blk.background_gy[active])
    cvar = np.zeros(n_var)
    if ma:
        cvar[col] = 1.0
        cvar[col + 1 : col + 1 + ma] = blk.point_cc[active] / blk.tail_cc
    if o.kind == "dmax":
        # the headroom applies to what the seeds may add above the background
        rhs = oar_headroom * np.maximum(o.limit_gy - blk.background_gy, 0.0)
        can_bind = np.nonzero(np.maximum(blk.dose, 0.0).sum(axis=1) > rhs)[0]
        if can_bind.size:
            rows.append(_lp_row_block([(0, sparse.csr_matrix(blk.dose[can_bind]))],
                                      can_bind.size, n_var))  # fmt: skip
            b.append(rhs[can_bind])
    else:
        rows.append(sparse.csr_matrix(cvar.reshape(1, -1)))
        b.append(np.array([o.limit_gy]))
    return rows, b, cvar
