"""The kernels' uniform-grid tables and polynomial exp against numpy (issue 22).

Every published table is resampled on a uniform grid holding all its nodes: the grid must hold
each node bit for bit, ``table_at`` must give ``numpy.interp``'s value at, just below and just
above every node, between nodes and beyond both ends, in the dtype the kernels use; a node set
that needs too fine a grid is refused; ``exp_fast`` must agree with ``numpy.exp`` from the g_L
tail's far end to above 1.  The functions run here as plain Python (the kernels compile the same
source).
"""

from __future__ import annotations

import numpy as np
import pytest

from brachycryo.core.errors import ConfigError
from brachycryo.dose_kernels.kernel_tables import pack_tables, uniform_grid
from brachycryo.dose_kernels.seed_model import list_seed_models, load_seed_model
from brachycryo.dose_kernels.tg43_numpy import _bilinear_f
from brachycryo.dose_kernels.tg43_scalar import anisotropy_at, exp_fast, table_at


def _probe_values(nodes: np.ndarray, dt) -> np.ndarray:
    x = nodes.astype(dt)
    near = np.concatenate(
        [x, np.nextafter(x, dt(-np.inf)), np.nextafter(x, dt(np.inf)), 0.5 * (x[1:] + x[:-1])]
    )
    far = np.array([x[0] - 1, x[-1] * 2 + 7], dtype=dt)
    return np.concatenate([near, far])


@pytest.mark.parametrize("name", list_seed_models())
def test_uniform_grids_hold_every_published_node(name):
    m = load_seed_model(name)
    for nodes in (m.gl_r_mm, m.f_r_mm, m.f_theta_deg, m.phi_an_table()[0]):
        x = np.asarray(nodes, float)
        grid = uniform_grid(x, "nodes")
        assert np.isin(x, grid).all()
        if x.size > 1:
            np.testing.assert_allclose(np.diff(grid), grid[1] - grid[0], rtol=1e-9)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list_seed_models())
def test_table_at_matches_numpy_interp(name, dtype):
    """ln g_L (log-linear tail beyond the table) and phi_an (held) of every shipped model."""
    m = load_seed_model(name)
    t = pack_tables(m, formalism="point", dtype=dtype)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    for nodes, vals, tables in (
        (t.gl_r_mm, t.gl_log, (t.gl_x, t.gl_v, t.gl_slope, t.gl_inv_h, t.gl_last)),
        (t.phi_r_mm, t.phi_an, (t.phi_x, t.phi_v, t.phi_slope, t.phi_inv_h, t.phi_last)),
    ):
        x, v = nodes.astype(float), vals.astype(float)
        probe = _probe_values(x, dtype)
        got = np.array([table_at(p, *tables) for p in probe])
        want = np.interp(probe.astype(float), x, v)
        tail = tables[2][-1]
        want = np.where(probe > x[-1], v[-1] + (probe - x[-1]) * float(tail), want)
        np.testing.assert_allclose(got, want, rtol=0, atol=tol * max(1.0, np.abs(v).max()))
        node_values = np.array([table_at(dtype(p), *tables) for p in nodes])
        np.testing.assert_array_equal(node_values, vals)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list_seed_models())
def test_anisotropy_at_is_the_published_f_at_nodes_and_bilinear_between(name, dtype):
    """F(r, θ) on the resampled grid: the published values bit for bit at every (r, θ) node,
    and the numpy reference's bilinear interpolation of the published table between nodes and
    beyond the table (clamped)."""
    t = pack_tables(load_seed_model(name), formalism="line", dtype=dtype)
    at_nodes = np.array([[anisotropy_at(r, th, t) for r in t.f_r_mm] for th in t.f_theta_deg])
    np.testing.assert_array_equal(at_nodes, t.f_table)
    r = _probe_values(t.f_r_mm.astype(float), dtype)
    th = np.clip(_probe_values(t.f_theta_deg.astype(float), dtype), 0, 90).astype(dtype)
    rr, tt = (a.ravel() for a in np.meshgrid(r, th))
    got = np.array([anisotropy_at(a, b, t) for a, b in zip(rr, tt, strict=True)])
    want = _bilinear_f(rr.astype(float), tt.astype(float), t)
    tol = 2e-6 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(t.f_table).max())


def test_nodes_needing_too_fine_a_grid_are_refused():
    with pytest.raises(ConfigError):
        uniform_grid(np.array([1.0, 1.0 + 1e-5, 1000.0]), "radii")


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 2e-14), (np.float32, 6e-7)])
def test_exp_fast_matches_numpy(dtype, rtol):
    t = pack_tables(load_seed_model("6711"), formalism="line", dtype=dtype)
    y = np.concatenate([np.linspace(-80.0, 5.0, 1501), [0.0, -1e-9, 1e-9, np.log(2.0)]])
    y = y.astype(dtype)
    got = np.array([exp_fast(v, t.exp_c) for v in y])
    assert got.dtype == dtype
    np.testing.assert_allclose(got, np.exp(y.astype(np.float64)), rtol=rtol, atol=0)
    assert exp_fast(dtype(-2000.0), t.exp_c) == 0
