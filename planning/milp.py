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

import numpy as np

from brachycryo.core.errors import ConfigError
from brachycryo.planning.optimize import (
    OarConstraint,
    SeedSelection,
    TargetZone,
    _zone_stats,
    oar_lp_points,
)


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
    time_limit_s: float = 60.0,
    seed: int = 0,
) -> tuple[SeedSelection, MilpInfo]:
    """Solve the seed-selection MILP (see the module docstring) within ``time_limit_s``."""
    from scipy import sparse
    from scipy.optimize import Bounds, LinearConstraint, milp

    if not zones:
        raise ConfigError("no seed-target zone to optimise")
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    needle = np.asarray(needle)
    n = zones[0].matrix.shape[1]
    needles = np.unique(needle)
    nk = needles.size
    # sampled target points per zone
    t_rows, t_rx, t_zone, t_frac = [], [], [], []
    for zi, z in enumerate(zones):
        m = z.matrix.shape[0]
        idx = np.sort(rng.choice(m, min(m, max_target_points), replace=False))
        t_rows.append(sk_u * z.matrix[idx].astype(np.float64))
        t_rx.append(np.full(idx.size, z.prescription_gy))
        t_zone.append(np.full(idx.size, zi))
        t_frac.append(z.point_cc[idx] / z.point_cc[idx].sum())
    at = np.vstack(t_rows)
    rx = np.concatenate(t_rx)
    zone_of = np.concatenate(t_zone)
    frac = np.concatenate(t_frac)
    mt = at.shape[0]
    oar_blocks = []
    for o in oars:
        idx, tail_cc = oar_lp_points(o, max_oar_points)
        if idx.size:
            oar_blocks.append(
                (sk_u * o.matrix[idx].astype(np.float64), o.point_cc[idx], o, tail_cc)
            )
    n_aux = sum(1 + b[0].shape[0] for b in oar_blocks if b[2].kind != "dmax")
    # variables: x (n) | k (nk) | y (mt) | per Dvcc/Vx OAR: t (1), z (M_o)
    nv = n + nk + mt + n_aux
    cons = []

    def padded(mat, start: int) -> sparse.csr_matrix:
        mat = sparse.csr_matrix(mat)
        left = sparse.csr_matrix((mat.shape[0], start))
        right = sparse.csr_matrix((mat.shape[0], nv - start - mat.shape[1]))
        return sparse.hstack([left, mat, right], format="csr")

    # coverage: s A x - Rx y >= 0
    cov = sparse.hstack(
        [sparse.csr_matrix(at), sparse.csr_matrix((mt, nk)), sparse.diags(-rx),
         sparse.csr_matrix((mt, n_aux))], format="csr",
    )  # fmt: skip
    cons.append(LinearConstraint(cov, lb=0.0, ub=np.inf))
    for zi in range(len(zones)):
        row = np.zeros((1, nv))
        row[0, n + nk : n + nk + mt] = np.where(zone_of == zi, frac, 0.0)
        cons.append(LinearConstraint(row, lb=v100_min_pct / 100.0, ub=np.inf))
    # needles: x_n - k_j <= 0 ; sum k <= max_needles
    kj = np.searchsorted(needles, needle)
    link = sparse.csr_matrix(
        (np.concatenate([np.ones(n), -np.ones(n)]),
         (np.concatenate([np.arange(n), np.arange(n)]), np.concatenate([np.arange(n), n + kj]))),
        shape=(n, nv),
    )  # fmt: skip
    cons.append(LinearConstraint(link, lb=-np.inf, ub=0.0))
    budget = np.zeros((1, nv))
    budget[0, n : n + nk] = 1.0
    cons.append(LinearConstraint(budget, lb=0, ub=max_needles))
    ex = np.asarray(exclusions).reshape(-1, 2)
    if len(ex):
        e = sparse.csr_matrix(
            (np.ones(2 * len(ex)), (np.repeat(np.arange(len(ex)), 2), ex.reshape(-1))),
            shape=(len(ex), n),
        )
        cons.append(LinearConstraint(padded(e, 0), lb=-np.inf, ub=1.0))
    col = n + nk + mt
    lower = np.zeros(nv)
    for ao, cc, o, tail_cc in oar_blocks:
        if o.kind == "dmax":
            cons.append(LinearConstraint(padded(ao, 0), lb=-np.inf, ub=o.limit_gy))
            continue
        mo = ao.shape[0]
        # s A_i x - t - z_i <= 0 ; t + (1/v) sum c_i z_i <= L
        blk = sparse.hstack(
            [sparse.csr_matrix(ao), sparse.csr_matrix((mo, col - n)),
             sparse.csr_matrix(-np.ones((mo, 1))), -sparse.eye(mo, format="csr"),
             sparse.csr_matrix((mo, nv - col - 1 - mo))], format="csr",
        )  # fmt: skip
        cons.append(LinearConstraint(blk, lb=-np.inf, ub=0.0))
        row = np.zeros((1, nv))
        row[0, col] = 1.0
        row[0, col + 1 : col + 1 + mo] = cc / tail_cc
        cons.append(LinearConstraint(row, lb=-np.inf, ub=o.limit_gy))
        lower[col] = -np.inf
        col += 1 + mo
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
        options={"time_limit": float(time_limit_s), "disp": False},
    )
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


def _exact_selection(zones, oars, sk_u, needle, chosen, v100_min_pct, elapsed) -> SeedSelection:
    """The selection's goals and limits evaluated on every sample point."""
    coverage = {}
    met = chosen.size > 0
    for z in zones:
        st = _zone_stats(sk_u * z.matrix[:, chosen].astype(np.float64).sum(axis=1), z)
        coverage[z.name] = st
        met &= st["v100_pct"] >= v100_min_pct and st["d90_gy"] >= z.prescription_gy
    excess = {}
    for o in oars:
        d = sk_u * o.matrix[:, chosen].astype(np.float64).sum(axis=1)
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
