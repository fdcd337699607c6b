"""A simulated-annealing seed-selection reference of the kind clinical inverse planners use.

IPSA (inverse planning by simulated annealing; Lessard and Pouliot, Med Phys 28:773,
2001) minimises a penalty objective over dose points with simulated annealing.  This is
that method on the SAME matrices as the optimiser of :mod:`brachycryo.planning.optimize`
(``result.problem`` of ``make_plan(keep_problem=True)``), for ``benchmarks/plan_quality.py``:

* target points of zone z (prescription Rx_z): linear under-dose penalty
  ``w_under * cc/V_z * max(0, Rx_z - d)/Rx_z`` and over-dose penalty
  ``w_over * cc/V_z * max(0, d - over_factor * Rx_z)/Rx_z`` (IPSA's target D_min/D_max
  penalties, linear in dose beyond the threshold);
* OAR points: ``w_oar * cc/V_o * max(0, d - L)/L`` above the limit L; for a D_vcc or V_x
  limit the penalty applies only while more than the allowed volume is above L, so the
  allowed hot volume is honoured (IPSA has point penalties only; this keeps the reference
  on the same limits as ours);
* ``w_seed`` per seed and ``w_needle`` per needle used (the seed-count term that makes
  fewer seeds preferable; the needle term mirrors the optimiser's needle weight).

Moves: with probability ``p_shift`` a chosen seed is moved to the next or previous
candidate on its needle, otherwise a random candidate is switched on or off; a move that
breaks a seed-spacing exclusion pair or the ``max_needles`` limit is rejected.  Metropolis
acceptance with geometric cooling from T0 (set so an average uphill move is accepted with
probability 0.8 at the start) to ``T0 * t_final_ratio`` over a fixed iteration budget, a
seeded ``numpy`` generator: the result depends on the inputs and the seed only.

Seed weights: the trade-off between seed count and coverage is set by ``w_seed``; as a
planner tuning IPSA would, :func:`anneal_sweep` splits the budget over a few runs, raising
``w_seed`` after a run that meets the goals and lowering it after one that does not, and
keeps the fewest-seed selection that meets the goals and limits on the sample points (or,
when none does, the best coverage).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from brachycryo.planning.milp import _exact_selection
from brachycryo.planning.optimize import OarConstraint, SeedSelection, TargetZone


@dataclass(frozen=True)
class AnnealWeights:
    """Penalty weights (see the module docstring)."""

    w_under: float = 1.0
    w_over: float = 0.02
    over_factor: float = 2.0
    w_oar: float = 5.0
    w_seed: float = 2e-4
    w_needle: float = 1e-4


@dataclass
class AnnealResult:
    """The best selection found, its objective and the run's bookkeeping."""

    selection: SeedSelection
    objective: float
    iterations: int
    accepted: int
    time_s: float
    weights: AnnealWeights
    setup_s: float = 0.0  # building the transposed matrices, within time_s
    sweep: list[dict] = field(default_factory=list)


class _Problem:
    """Dense transposed matrices (candidate rows, contiguous) and per-point weights."""

    def __init__(self, zones, oars, sk_u: float, weights: AnnealWeights):
        cols, thr_lo, thr_hi, w_lo, w_hi = [], [], [], [], []
        for z in zones:
            cc = np.asarray(z.point_cc, dtype=np.float64)
            rx = float(z.prescription_gy)
            cols.append(np.asarray(z.matrix, dtype=np.float32))
            thr_lo.append(np.full(cc.size, rx))
            thr_hi.append(np.full(cc.size, weights.over_factor * rx))
            w_lo.append(weights.w_under * cc / cc.sum() / rx)
            w_hi.append(weights.w_over * cc / cc.sum() / rx)
        self.n_target = sum(c.shape[0] for c in cols)
        self.oar_slices: list[tuple[slice, OarConstraint]] = []
        start = self.n_target
        for o in oars:
            cc = np.asarray(o.point_cc, dtype=np.float64)
            cols.append(np.asarray(o.matrix, dtype=np.float32))
            thr_lo.append(np.full(cc.size, -np.inf))
            thr_hi.append(np.full(cc.size, o.limit_gy))
            w_lo.append(np.zeros(cc.size))
            w_hi.append(weights.w_oar * cc / max(cc.sum(), 1e-12) / o.limit_gy)
            self.oar_slices.append((slice(start, start + cc.size), o))
            start += cc.size
        self.at = np.ascontiguousarray((np.vstack(cols) * np.float32(sk_u)).T)  # (N, M) Gy
        self.thr_lo, self.thr_hi = np.concatenate(thr_lo), np.concatenate(thr_hi)
        self.w_lo, self.w_hi = np.concatenate(w_lo), np.concatenate(w_hi)
        self.oar_cc = np.zeros(self.at.shape[1])
        self.volume_term = np.zeros(self.at.shape[1], dtype=bool)  # D_vcc / V_x points
        for sl, o in self.oar_slices:
            self.oar_cc[sl] = o.point_cc
            self.volume_term[sl] = o.kind != "dmax"

    def penalty(self, dose: np.ndarray) -> float:
        """The dose part of the objective."""
        lo = self.w_lo * np.maximum(self.thr_lo - dose, 0.0)
        hi = self.w_hi * np.maximum(dose - self.thr_hi, 0.0)
        total = float(lo.sum())
        total += float(hi[: self.n_target].sum())
        for sl, o in self.oar_slices:
            if o.kind == "dmax" or o.excess_cc(dose[sl]) > o.allowed_cc() + 1e-9:
                total += float(hi[sl].sum())
        return total


@dataclass
class _State:
    x: np.ndarray  # bool (N,)
    dose: np.ndarray  # (M,) Gy
    per_needle: np.ndarray  # seeds on each needle
    penalty: float


def _partners(exclusions: np.ndarray, n: int) -> list[np.ndarray]:
    ex = np.asarray(exclusions, dtype=int).reshape(-1, 2)
    both = np.concatenate([ex, ex[:, ::-1]])
    both = both[np.argsort(both[:, 0], kind="stable")]
    split = np.searchsorted(both[:, 0], np.arange(n + 1))
    return [both[split[i] : split[i + 1], 1] for i in range(n)]


def _neighbours(needle: np.ndarray, depth_mm: np.ndarray) -> np.ndarray:
    """(N, 2): the previous and next candidate on the same needle (-1 at the ends)."""
    out = np.full((needle.size, 2), -1, dtype=int)
    order = np.lexsort((depth_mm, needle))
    same = needle[order[1:]] == needle[order[:-1]]
    out[order[1:][same], 0] = order[:-1][same]
    out[order[:-1][same], 1] = order[1:][same]
    return out


class _Annealer:
    def __init__(self, prob: _Problem, needle, depth_mm, exclusions, max_needles, weights, rng):
        self.prob, self.w, self.rng = prob, weights, rng
        self.needle = np.asarray(needle, dtype=int)
        self.n = self.needle.size
        self.partners = _partners(exclusions, self.n)
        self.neigh = _neighbours(self.needle, np.asarray(depth_mm, dtype=float))
        self.max_needles = int(max_needles)

    def objective(self, st: _State) -> float:
        n_needles = int((st.per_needle > 0).sum())
        return st.penalty + self.w.w_seed * int(st.x.sum()) + self.w.w_needle * n_needles

    def _allowed_on(self, st: _State, j: int, ignore: int = -1) -> bool:
        p = self.partners[j]
        if np.any(st.x[p[p != ignore]]):
            return False
        k = self.needle[j]
        if st.per_needle[k] == 0 and (ignore < 0 or self.needle[ignore] != k):
            return int((st.per_needle > 0).sum()) < self.max_needles
        return True

    def propose(self, st: _State, p_shift: float) -> tuple[list[int], list[int]] | None:
        """(switched off, switched on) candidates of a random legal move, or None."""
        on = np.flatnonzero(st.x)
        if on.size and self.rng.random() < p_shift:
            j = int(on[self.rng.integers(on.size)])
            to = int(self.neigh[j, int(self.rng.integers(2))])
            if to < 0 or st.x[to] or not self._allowed_on(st, to, ignore=j):
                return None
            return [j], [to]
        j = int(self.rng.integers(self.n))
        if st.x[j]:
            return [j], []
        return ([], [j]) if self._allowed_on(st, j) else None

    def apply(self, st: _State, off: list[int], on: list[int]) -> _State:
        dose = st.dose.copy()
        x = st.x.copy()
        per = st.per_needle.copy()
        for j in off:
            dose -= self.prob.at[j]
            x[j] = False
            per[self.needle[j]] -= 1
        for j in on:
            dose += self.prob.at[j]
            x[j] = True
            per[self.needle[j]] += 1
        return _State(x, dose, per, self.prob.penalty(dose))


def anneal(
    zones: Sequence[TargetZone],
    oars: Sequence[OarConstraint],
    *,
    sk_u: float,
    needle: np.ndarray,
    depth_mm: np.ndarray,
    exclusions: np.ndarray,
    max_needles: int,
    iterations: int,
    weights: AnnealWeights = AnnealWeights(),
    v100_min_pct: float = 95.0,
    p_shift: float = 0.3,
    t_final_ratio: float = 1e-4,
    seed: int = 0,
) -> AnnealResult:
    """IPSA-style simulated annealing of the seed selection (see the module docstring);
    the best state visited is returned, evaluated on every sample point."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    prob = _Problem(zones, oars, sk_u, weights)
    ann = _Annealer(prob, needle, depth_mm, exclusions, max_needles, weights, rng)
    n_needles_all = int(np.max(ann.needle)) + 1 if ann.n else 0
    dose0 = np.zeros(prob.at.shape[1])
    st = _State(np.zeros(ann.n, dtype=bool), dose0, np.zeros(n_needles_all, dtype=int), 0.0)
    st.penalty = prob.penalty(dose0)
    cost = ann.objective(st)
    setup_s = time.perf_counter() - t0
    t_start = _initial_temperature(ann, st, cost, p_shift)
    alpha = t_final_ratio ** (1.0 / max(iterations, 1))
    best, best_cost, temp, accepted = st, cost, t_start, 0
    for _ in range(iterations):
        move = ann.propose(st, p_shift)
        temp *= alpha
        if move is None:
            continue
        new = ann.apply(st, *move)
        new_cost = ann.objective(new)
        delta = new_cost - cost
        if delta <= 0 or rng.random() < np.exp(-delta / temp):
            st, cost = new, new_cost
            accepted += 1
            if cost < best_cost:
                best, best_cost = st, cost
    elapsed = time.perf_counter() - t0
    chosen = np.flatnonzero(best.x)
    sel = _exact_selection(list(zones), list(oars), sk_u, ann.needle, chosen, v100_min_pct, elapsed)
    return AnnealResult(sel, best_cost, iterations, accepted, elapsed, weights, setup_s)


def _initial_temperature(ann: _Annealer, st: _State, cost: float, p_shift: float) -> float:
    """T0 at which the mean uphill change of 100 random first moves is accepted with p 0.8."""
    ups = []
    probe = np.random.default_rng(12345)
    saved, ann.rng = ann.rng, probe
    for _ in range(100):
        move = ann.propose(st, p_shift)
        if move is not None:
            d = ann.objective(ann.apply(st, *move)) - cost
            if d > 0:
                ups.append(d)
    ann.rng = saved
    mean_up = float(np.mean(ups)) if ups else 1e-3
    return -mean_up / np.log(0.8)


def _rank(sel: SeedSelection, v100_min_pct: float) -> tuple:
    """Feasible first, then fewer seeds; otherwise the best minimum zone coverage."""
    if sel.feasible:
        return (0, sel.chosen.size, 0.0)
    worst = min((c["v100_pct"] for c in sel.coverage.values()), default=0.0)
    oar_ok = all(v <= 0 for v in sel.oar_excess_cc.values())
    return (1, 0 if oar_ok else 1, -worst)


def anneal_sweep(
    zones: Sequence[TargetZone],
    oars: Sequence[OarConstraint],
    *,
    iterations: int,
    runs: int = 4,
    w_seed_start: float = 5e-5,
    v100_min_pct: float = 95.0,
    **kwargs,
) -> AnnealResult:
    """:func:`anneal` with the budget split over ``runs`` runs whose seed weight is tuned
    as a planner tunes IPSA: doubled after a run that meets the goals and limits on the
    sample points (fewer seeds), divided by 3 after one that does not (more coverage).
    The best by :func:`_rank` is returned, every run summarised in ``sweep``."""
    done = []
    each = max(iterations // runs, 1)
    w_seed = w_seed_start
    for i in range(runs):
        r = anneal(
            zones, oars, iterations=each, weights=AnnealWeights(w_seed=w_seed),
            v100_min_pct=v100_min_pct, seed=i, **kwargs,
        )  # fmt: skip
        done.append(r)
        w_seed = w_seed * 2.0 if r.selection.feasible else w_seed / 3.0
    best = min(done, key=lambda r: _rank(r.selection, v100_min_pct))
    best.sweep = [
        {
            "w_seed": r.weights.w_seed,
            "iterations": r.iterations,
            "accepted": r.accepted,
            "n_seeds": int(r.selection.chosen.size),
            "feasible_on_sample_points": r.selection.feasible,
            "min_zone_v100_pct": min(c["v100_pct"] for c in r.selection.coverage.values()),
            "time_s": round(r.time_s, 1),
        }
        for r in done
    ]
    best.time_s = sum(r.time_s for r in done)
    best.iterations = sum(r.iterations for r in done)
    return best
