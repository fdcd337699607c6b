"""The LP guide's reductions (Dmax rows that cannot bind, lazy CVaR points) keep its optimum."""

import numpy as np
import pytest
import scipy.optimize

from brachycryo.dose_kernels import influence_matrix
from brachycryo.planning import optimize as opt


@pytest.fixture(scope="module")
def lp():
    g = np.arange(-12, 13, 2.0)
    pts = np.stack(np.meshgrid(g, g, g, indexing="ij"), -1).reshape(-1, 3)
    target = pts[np.linalg.norm(pts, axis=1) <= 12]
    xs = np.arange(-8, 9, 4.0)
    cands = np.array([(x, y, z) for x in xs for y in xs for z in np.arange(-10, 11, 5.0)
                      if x * x + y * y + z * z <= 12**2])  # fmt: skip
    dirs = np.tile([0, 0, 1.0], (len(cands), 1))
    gs = np.arange(-10, 11, 2.0)
    slab = np.stack(np.meshgrid([15.0, 17.0], gs, gs, indexing="ij"), -1).reshape(-1, 3)
    cord = np.array([[0.0, 40.0, z] for z in np.arange(-6, 7, 2.0)])  # far: cannot bind
    near = np.array([[0.0, -15.0, z] for z in np.arange(-6, 7, 2.0)])
    a = {k: influence_matrix(cands, dirs, p, "6711", backend="numpy")
         for k, p in (("t", target), ("slab", slab), ("cord", cord), ("near", near))}  # fmt: skip
    cc = {k: np.full(a[k].shape[0], 0.008) for k in a}
    oars = [
        opt.OarConstraint("Slab", "D0.3cc", "dvcc", 60.0, 0.3, a["slab"], cc["slab"]),
        opt.OarConstraint("Cord", "Dmax", "dmax", 40.0, 0.0, a["cord"], cc["cord"]),
        opt.OarConstraint("Near", "Dmax", "dmax", 70.0, 0.0, a["near"], cc["near"]),
    ]
    zone = opt.TargetZone("T", a["t"], cc["t"], 100.0)
    problem = opt.lp_problem([zone], oars, sk_u=0.6, exclusions=np.zeros((0, 2), dtype=int),
                             max_target_points=400, max_oar_points=600)  # fmt: skip
    options = opt._LpOptions(
        under_dose_weight=50.0, hot_weight=0.5, oar_sparing_weight=200.0, oar_headroom=0.9,
        max_iterations=opt.LP_MAX_ITERATIONS, clock=opt.NO_LIMIT, sparsify_fraction=0.02,
    )  # fmt: skip
    return problem, options


def _objectives(monkeypatch):
    funs: list[float] = []
    linprog = scipy.optimize.linprog

    def recording(*args, **kwargs):
        res = linprog(*args, **kwargs)
        funs.append(float(res.fun))
        return res

    monkeypatch.setattr(scipy.optimize, "linprog", recording)
    return funs


def test_lazy_cvar_points_give_the_full_lp_optimum(lp, monkeypatch):
    problem, options = lp
    keep = np.ones(problem.dose.shape[0], dtype=bool)
    funs = _objectives(monkeypatch)
    full = opt._all_cvar_points(problem, options)
    x_full, _, _ = opt._solve_lp_once(problem, keep, options, full)
    x, _, active = opt._solve_lp_lazy(problem, keep, options, None)
    assert x_full is not None and x is not None
    assert len(funs) >= 3  # the first reduced LP left out a point of the tail: a second round
    assert funs[-1] == pytest.approx(funs[0], rel=1e-7, abs=1e-7)  # same optimum
    assert sum(a.size for a in active) < sum(a.size for a in full)  # fewer rows
    x_again, _, _ = opt._solve_lp_lazy(problem, keep, options, None)
    assert x_again is not None and np.array_equal(x, x_again)  # deterministic


def test_dmax_rows_that_cannot_bind_are_left_out_and_hold(lp):
    problem, options = lp
    cord, near = problem.oar_blocks[1], problem.oar_blocks[2]
    n_var = problem.n + 10
    empty = np.zeros(0, dtype=np.intp)
    rows_cord, _, _ = opt._lp_oar_rows(cord, empty, problem.n, n_var, options.oar_headroom)
    rows_near, _, _ = opt._lp_oar_rows(near, empty, problem.n, n_var, options.oar_headroom)
    assert rows_cord == [] and sum(r.shape[0] for r in rows_near) > 0
    keep = np.ones(problem.dose.shape[0], dtype=bool)
    x, _ = opt._solve_lp(problem, keep, options)
    assert x is not None
    for blk in (cord, near):  # every Dmax row, kept or not, holds at the optimum
        limit = options.oar_headroom * blk.constraint.limit_gy
        assert np.all(blk.dose @ x <= limit * (1 + 1e-7) + 1e-7)
