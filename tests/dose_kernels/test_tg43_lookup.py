"""The kernels' O(1) table lookup and polynomial exp against numpy (issue 22).

``locate`` must give ``searchsorted``'s interval for every value - at, just below and just above
every node, beyond both ends, on irregular tables with intervals 100× apart - in the dtype the
kernels use; ``exp_fast`` must agree with ``numpy.exp`` from the g_L tail's far end to above 1.
The functions run here as plain Python (the kernels compile the same source).
"""

from __future__ import annotations

import numpy as np
import pytest

from brachycryo.dose_kernels.kernel_tables import make_lookup, pack_tables
from brachycryo.dose_kernels.seed_model import list_seed_models, load_seed_model
from brachycryo.dose_kernels.tg43_scalar import exp_fast, locate


def _probe_values(nodes: np.ndarray, dt) -> np.ndarray:
    x = nodes.astype(dt)
    near = np.concatenate(
        [x, np.nextafter(x, dt(-np.inf)), np.nextafter(x, dt(np.inf)), 0.5 * (x[1:] + x[:-1])]
    )
    far = np.array([x[-1] * 2 + 7, x[-1] * 1e3], dtype=dt)
    return np.concatenate([near[near >= x[0]], far])


def _expected(v: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(nodes, v, side="right") - 1, 0, nodes.size - 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(4))
def test_locate_matches_searchsorted_on_irregular_tables(dtype, seed):
    rng = np.random.default_rng(seed)
    widths = rng.choice([0.05, 0.5, 5.0], size=12) * rng.uniform(1, 1.5, 12)
    nodes = np.concatenate([[rng.uniform(0, 3)], rng.uniform(0, 3) + np.cumsum(widths)])
    lk = make_lookup(nodes, np.dtype(dtype))
    x = nodes.astype(dtype)
    values = _probe_values(nodes, dtype)
    got = np.array([locate(v, lk.nodes, lk.cell, lk.inv_h) for v in values])
    np.testing.assert_array_equal(got, _expected(values, x))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("name", list_seed_models())
def test_locate_on_every_published_table(name, dtype):
    """g_L radii, F radii and angles of every shipped model (the nodes the kernels see)."""
    m = load_seed_model(name)
    for nodes in (m.gl_r_mm, m.f_r_mm, m.f_theta_deg):
        lk = make_lookup(np.asarray(nodes, float), np.dtype(dtype))
        values = _probe_values(np.asarray(nodes, float), dtype)
        got = np.array([locate(v, lk.nodes, lk.cell, lk.inv_h) for v in values])
        np.testing.assert_array_equal(got, _expected(values, np.asarray(nodes).astype(dtype)))


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 2e-14), (np.float32, 6e-7)])
def test_exp_fast_matches_numpy(dtype, rtol):
    t = pack_tables(load_seed_model("6711"), formalism="line", dtype=dtype)
    y = np.concatenate([np.linspace(-80.0, 5.0, 1501), [0.0, -1e-9, 1e-9, np.log(2.0)]])
    y = y.astype(dtype)
    got = np.array([exp_fast(v, t.exp_c) for v in y])
    assert got.dtype == dtype
    np.testing.assert_allclose(got, np.exp(y.astype(np.float64)), rtol=rtol, atol=0)
    assert exp_fast(dtype(-2000.0), t.exp_c) == 0
