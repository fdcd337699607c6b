"""Seed selection as a mixed-integer linear programme (HiGHS through ``scipy.optimize.milp``).

The reference against which the default method of :mod:`brachycryo.planning.optimize` (LP guide +
greedy + local search) is judged, on the same matrices; also usable on small problems
(``[optimizer] method = "milp"``).  Model, on a subsample of the target points:

* ``x_n`` binary: candidate seed n is implanted; ``k_j`` binary: needle j is used,
  ``x_n <= k_j`` for the seeds of needle j, ``sum_j k_j <= max_needles``;
* ``y_m`` binary: target point m reaches its prescription, ``s A_m x >= Rx_m y_m``;
  ``sum_m f_m y_m >= V100_min`` per zone (f: the point's volume fraction of its zone):
  V100 exactly, on the sample points;
* OAR limits: Dmax on every point; D_vcc / Vx through the conditional value-at-risk
  (mean dose of the hottest v cm³ <= limit; Rockafellar and Uryasev, J Risk 2:21, 2000),
  which is conservative (an upper bound of D_vcc) and linear, as in the LP guide;
* excluded pairs (seed spacing on a needle): ``x_a + x_b <= 1``;
* minimise ``sum x + needle_weight * sum k``.

With a fixed background dose ``b`` (seeds already implanted) every dose above is
``b + s A x``: ``s A_m x >= (Rx_m - b_m) y_m`` (a point the background covers needs no
seed), Dmax ``s A_i x <= L - b_i``, and ``b_i`` enters the CVaR rows.

Linearised coverage models of this kind are the classic exact formulation of LDR seed
selection (Lee, Gallagher and Zaider, Med Phys 26:2311, 1999; D'Souza, Meyer and Shi,
Med Phys 31:2355, 2004).  HiGHS is given a time limit; the result states the MIP gap.  The
D90 goal is not modelled (it follows from V100 >= 90 % on the same points), so the
selection is checked on every sample point afterwards like any other.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from brachycryo.core.deadline import NO_LIMIT, WallClock
from brachycryo.core.errors import ConfigError
from brachycryo.planning.optimize import (
    OarConstraint,
    OarRows,
    SampledTargets,
    SeedSelection,
    TargetZone,
    exclusion_matrix,
    oar_lp_rows,
    sample_target_rows,
    zone_stats,
)

#: Branch-and-bound nodes allowed to HiGHS: a work limit, the same on every machine.
MILP_NODE_LIMIT = 20_000


@dataclass(frozen=True)
class MilpInfo:
    """Solver outcome: HiGHS status message, MIP gap (None without an incumbent), time."""

    status: str
    mip_gap: float | None
    objective: float | None
    time_s: float


def select_seeds_milp(
    zones: Sequence[TargetZone],
    oars: Sequence[OarConstraint],
    *,
    sk_u: float,
    needle: np.ndarray,
    exclusions: np.ndarray,
    max_needles: int,
    v100_min_pct: float = 95.0,
    needle_weight: float = 0.5,
    max_target_points: int = 1500,
    max_oar_points: int = 600,
    node_limit: int = MILP_NODE_LIMIT,
    time_limit_s: float | None = None,
    clock: WallClock = NO_LIMIT,
    seed: int = 0,
) -> tuple[SeedSelection, MilpInfo]:
    """Solve the seed-selection MILP (see the module docstring) within ``node_limit``
    branch-and-bound nodes (deterministic).

    ``time_limit_s`` is for references only (``benchmarks/plan_quality.py`` gives HiGHS a
    long time to report its best bound): what a time-limited solve returns depends on the
    machine, so planning never sets it.  ``clock`` fails the run when its optional
    ``max_wall_s`` passes (HiGHS is given the remaining time, and a solve it stops yields
    no result).
    """
    from scipy.optimize import Bounds, milp

    if not zones:
        raise ConfigError("no seed-target zone to optimise")
    t0 = time.perf_counter()
    needle = np.asarray(needle)
    targets = sample_target_rows(
        zones, sk_u=sk_u, max_points=max_target_points, rng=np.random.default_rng(seed)
    )
    layout = _Layout.of(
        n=int(zones[0].matrix.shape[1]),
        needles=np.unique(needle),
        n_points=targets.dose.shape[0],
        oar_blocks=oar_lp_rows(oars, sk_u=sk_u, max_points=max_oar_points),
    )
    cons = [
        *_coverage_constraints(layout, targets, n_zones=len(zones), v100_min_pct=v100_min_pct),
        *_needle_constraints(layout, needle, exclusions, max_needles=max_needles),
    ]
    oar_cons, lower = _oar_constraints(layout)
    cons += oar_cons
    n, nk, mt, nv = layout.n, layout.needles.size, layout.n_points, layout.n_vars
    cost = np.zeros(nv)
    cost[:n] = 1.0
    cost[n : n + nk] = needle_weight
    integrality = np.zeros(nv)
    integrality[: n + nk + mt] = 1
    upper = np.full(nv, np.inf)
    upper[: n + nk + mt] = 1.0
    res = milp(
        cost,
        constraints=cons,
        integrality=integrality,
        bounds=Bounds(lower, upper),
        options=_highs_options(node_limit, time_limit_s, clock),
    )
    clock.check("the MILP")
    elapsed = time.perf_counter() - t0
    gap = getattr(res, "mip_gap", None)
    info = MilpInfo(
        status=str(res.message),
        mip_gap=None if res.x is None or gap is None else float(gap),
        objective=None if res.x is None else float(res.fun),
        time_s=elapsed,
    )
    chosen = np.zeros(0, dtype=int) if res.x is None else np.nonzero(res.x[:n] > 0.5)[0]
    return _exact_selection(zones, oars, sk_u, needle, chosen, v100_min_pct, elapsed), info


def _highs_options(node_limit: int, time_limit_s: float | None, clock: WallClock) -> dict:
    options: dict = {"node_limit": int(node_limit), "disp": False}
    limits = [t for t in (time_limit_s, clock.remaining_s()) if t is not None]
    if limits:
        options["time_limit"] = max(min(limits), 1e-3)
    return options


@dataclass(frozen=True)
class _Layout:
    """Variables: x (n) | k (needles) | y (n_points) | per Dvcc/Vx OAR: t (1), z (M_o)."""

    n: int
    needles: np.ndarray  # the needle numbers in use, sorted
    n_points: int
    oar_blocks: list[OarRows]
    n_aux: int

    @classmethod
    def of(
        cls, *, n: int, needles: np.ndarray, n_points: int, oar_blocks: list[OarRows]
    ) -> _Layout:
        n_aux = sum(1 + b.dose.shape[0] for b in oar_blocks if b.constraint.kind != "dmax")
        return cls(n, needles, n_points, oar_blocks, n_aux)

    @property
    def n_vars(self) -> int:
        return self.n + self.needles.size + self.n_points + self.n_aux

    def padded(self, mat, start: int):
        """``mat`` as rows over all variables, its first column at ``start``."""
        from scipy import sparse

        mat = sparse.csr_matrix(mat)
        left = sparse.csr_matrix((mat.shape[0], start))
        right = sparse.csr_matrix((mat.shape[0], self.n_vars - start - mat.shape[1]))
        return sparse.hstack([left, mat, right], format="csr")


def _coverage_constraints(
    layout: _Layout, targets: SampledTargets, *, n_zones: int, v100_min_pct: float
) -> list[Any]:
    """s A x - (Rx - b) y >= 0 for every target point; sum_m f_m y_m >= V100_min per zone."""
    from scipy import sparse
    from scipy.optimize import LinearConstraint

    n, nk, mt, nv = layout.n, layout.needles.size, layout.n_points, layout.n_vars
    need = np.maximum(targets.prescription_gy - targets.background_gy, 0.0)
    cov = sparse.hstack(
        [sparse.csr_matrix(targets.dose), sparse.csr_matrix((mt, nk)),
         sparse.diags(-need), sparse.csr_matrix((mt, layout.n_aux))],
        format="csr",
    )  # fmt: skip
    cons = [LinearConstraint(cov, lb=0.0, ub=np.inf)]
    for zi in range(n_zones):
        row = np.zeros((1, nv))
        row[0, n + nk : n + nk + mt] = np.where(targets.zone == zi, targets.fraction, 0.0)
        cons.append(LinearConstraint(row, lb=v100_min_pct / 100.0, ub=np.inf))
    return cons


def _needle_constraints(
    layout: _Layout, needle: np.ndarray, exclusions: np.ndarray, *, max_needles: int
) -> list[Any]:
    """x_n - k_j <= 0 for the seeds of needle j; sum k <= max_needles; excluded pairs."""
    from scipy import sparse
    from scipy.optimize import LinearConstraint

    n, nk, nv = layout.n, layout.needles.size, layout.n_vars
    kj = np.searchsorted(layout.needles, needle)
    link = sparse.csr_matrix(
        (np.concatenate([np.ones(n), -np.ones(n)]),
         (np.concatenate([np.arange(n), np.arange(n)]), np.concatenate([np.arange(n), n + kj]))),
        shape=(n, nv),
    )  # fmt: skip
    budget = np.zeros((1, nv))
    budget[0, n : n + nk] = 1.0
    cons = [
        LinearConstraint(link, lb=-np.inf, ub=0.0),
        LinearConstraint(budget, lb=0, ub=max_needles),
    ]
    if len(np.asarray(exclusions).reshape(-1, 2)):
        e = exclusion_matrix(exclusions, n)
        cons.append(LinearConstraint(layout.padded(e, 0), lb=-np.inf, ub=1.0))
    return cons


def _oar_constraints(layout: _Layout) -> tuple[list[Any], np.ndarray]:
    """Dmax on every kept OAR point; for D_vcc / Vx, s A_i x - t - z_i <= 0 and
    t + (1/v) sum c_i z_i <= L (CVaR).  Also the variables' lower bounds (t is free)."""
    from scipy import sparse
    from scipy.optimize import LinearConstraint

    nv = layout.n_vars
    n = layout.n
    col = n + layout.needles.size + layout.n_points
    lower = np.zeros(nv)
    cons = []
    for blk in layout.oar_blocks:
        o, ao = blk.constraint, blk.dose
        if o.kind == "dmax":
            ub = o.limit_gy - blk.background_gy
            cons.append(LinearConstraint(layout.padded(ao, 0), lb=-np.inf, ub=ub))
            continue
        mo = ao.shape[0]
        # s A_i x - t - z_i <= -b_i ; t + (1/v) sum c_i z_i <= L
        blk_rows = sparse.hstack(
            [sparse.csr_matrix(ao), sparse.csr_matrix((mo, col - n)),
             sparse.csr_matrix(-np.ones((mo, 1))), -sparse.eye(mo, format="csr"),
             sparse.csr_matrix((mo, nv - col - 1 - mo))], format="csr",
        )  # fmt: skip
        cons.append(LinearConstraint(blk_rows, lb=-np.inf, ub=-blk.background_gy))
        row = np.zeros((1, nv))
        row[0, col] = 1.0
        row[0, col + 1 : col + 1 + mo] = blk.point_cc / blk.tail_cc
        cons.append(LinearConstraint(row, lb=-np.inf, ub=o.limit_gy))
        lower[col] = -np.inf
        col += 1 + mo
    return cons, lower


def _exact_selection(zones, oars, sk_u, needle, chosen, v100_min_pct, elapsed) -> SeedSelection:
    """The selection's goals and limits evaluated on every sample point."""
    coverage = {}
    # no seed chosen is a result only where the background (implanted seeds) may suffice
    met = chosen.size > 0 or any(z.background_gy is not None for z in zones)
    for z in zones:
        st = zone_stats(z.dose_gy(chosen, sk_u), z)
        coverage[z.name] = st
        met &= st["v100_pct"] >= v100_min_pct and st["d90_gy"] >= z.prescription_gy
    excess = {}
    for o in oars:
        d = o.dose_gy(chosen, sk_u)
        excess[f"{o.roi} {o.metric}"] = float(o.excess_cc(d))
        met &= o.excess_cc(d) <= o.allowed_cc() + 1e-9
    return SeedSelection(
        chosen=chosen,
        feasible=bool(met),
        coverage=coverage,
        oar_excess_cc=excess,
        binding=[] if met else ["see the MILP status"],
        n_needles=len(set(np.asarray(needle)[chosen].tolist())),
        time_s=elapsed,
    )
