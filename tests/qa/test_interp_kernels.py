"""The DVH sampling kernels (:mod:`brachycryo.qa.interp_kernels`): the trilinear interpolant
against scipy's, its exactness for a constant dose and its confinement to the cell's values,
the sample intervals' bounds, and numba against the numpy reference over every setting
(float32 / float64, boxes within one cell, across cell faces, touching nodes, oblique
elements, points beyond the grid's edge, grids one voxel thick)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import map_coordinates

from brachycryo.core.errors import BackendUnavailableError
from brachycryo.qa import interp_kernels as K
from brachycryo.qa.dvh import dvh_from_samples
from brachycryo.qa.metrics import dose_at_volume_pct, volume_at_dose_cc
from tests.qa.analytic_dvh import rotation

SHAPES = [(7, 8, 9), (1, 6, 5), (4, 1, 3), (3, 4, 1), (2, 2, 2)]
DTYPES = [np.float32, np.float64]


def _dose(rng, shape, dtype):
    return rng.uniform(0, 100, shape).astype(dtype)


def _points(rng, shape, n=400):
    """Index coordinates (i, j, k) inside, on nodes of, and up to 1.5 voxels beyond the grid."""
    nk, nj, ni = shape
    c = [rng.uniform(-1.5, m + 0.5, n) for m in (ni, nj, nk)]
    for a in range(3):  # a quarter of the coordinates on nodes
        sel = rng.uniform(size=n) < 0.25
        c[a][sel] = np.round(c[a][sel])
    return c


def _half_edges(rng, kind):
    if kind == "small box":
        return np.diag(rng.uniform(0.01, 0.3, 3))
    if kind == "voxel box":
        return np.diag([0.5, 0.5, rng.uniform(0.2, 0.5)])
    if kind == "large box":
        return np.diag(rng.uniform(0.3, 1.6, 3))
    return rotation((1.0, 2.0, 3.0), 25.0) @ np.diag(rng.uniform(0.1, 0.6, 3))


KINDS = ["small box", "voxel box", "large box", "oblique"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_trilinear_is_scipy_map_coordinates_order_1(shape, dtype):
    rng = np.random.default_rng(1)
    dose = _dose(rng, shape, dtype)
    i, j, k = _points(rng, shape)
    clamped = [np.clip(c, 0, n - 1) for c, n in ((k, shape[0]), (j, shape[1]), (i, shape[2]))]
    ref = map_coordinates(dose.astype(np.float64), clamped, order=1, prefilter=False)
    for backend in ("numpy", "numba"):
        got = K.trilinear(dose, i, j, k, backend=backend)
        assert got.dtype == dtype
        rtol = 1e-6 if dtype == np.float32 else 1e-12
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=1e-9)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_constant_dose_is_exact(dtype, backend):
    """57 Gy everywhere reads 57 Gy exactly (scipy's (1 - w) a + w b does not)."""
    rng = np.random.default_rng(2)
    dose = np.full((5, 6, 7), 57.0, dtype=dtype)
    i, j, k = _points(rng, dose.shape, 2000)
    assert np.all(K.trilinear(dose, i, j, k, backend=backend) == 57.0)
    for kind in KINDS:
        lo, hi = K.corner_range(dose, i, j, k, _half_edges(rng, kind), backend=backend)
        assert np.all(lo == 57.0) and np.all(hi == 57.0), kind
    tables = [(np.array([0, 1, 3]), np.array([1, 2, 4]), rng.uniform(0, 1, 3))] * 3
    assert np.all(K.separable(dose, *tables, backend=backend) == 57.0)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_interpolated_dose_never_leaves_its_cell(backend):
    """Every value lies within the 8 stored values of its cell (to one rounding), and a
    point on a node reads the node's value exactly."""
    rng = np.random.default_rng(3)
    dose = rng.lognormal(3, 2, (6, 7, 8))  # values over decades, as next to a seed
    i, j, k = _points(rng, dose.shape, 5000)
    v = K.trilinear(dose, i, j, k, backend=backend)
    cells = []
    for c, n in ((k, 6), (j, 7), (i, 8)):
        c0 = np.minimum(np.floor(np.clip(c, 0, n - 1)).astype(int), n - 2)
        cells.append((c0, c0 + 1))
    corners = np.stack(
        [dose[a, b, c] for a in cells[0] for b in cells[1] for c in cells[2]], axis=-1
    )
    ulp = 4e-16
    assert np.all(v >= corners.min(axis=-1) * (1 - ulp))
    assert np.all(v <= corners.max(axis=-1) * (1 + ulp))
    nodes = [rng.integers(0, n, 300) for n in (8, 7, 6)]  # i, j, k
    on_node = K.trilinear(dose, *(x.astype(float) for x in nodes), backend=backend)
    assert np.array_equal(on_node, dose[nodes[2], nodes[1], nodes[0]])


@given(
    st.integers(0, 2**31),
    st.sampled_from(SHAPES),
    st.sampled_from(DTYPES),
    st.sampled_from(KINDS),
)
@settings(max_examples=60, deadline=None)
def test_corner_range_numba_matches_numpy(seed, shape, dtype, kind):
    rng = np.random.default_rng(seed)
    dose = _dose(rng, shape, dtype)
    i, j, k = _points(rng, shape)
    e = _half_edges(rng, kind)
    ref = K.corner_range(dose, i, j, k, e, backend="numpy")
    got = K.corner_range(dose, i, j, k, e, backend="numba")
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    for a, b in zip(ref, got, strict=True):
        assert b.dtype == dtype
        np.testing.assert_allclose(b, a, rtol=rtol, atol=1e-9)
    # the corners themselves, one by one
    signs = np.array([(a, b, c) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], float)
    vals = np.stack(
        [K.trilinear_numpy(dose, *(np.array([i, j, k]) + (e @ s)[:, None])) for s in signs]
    )
    np.testing.assert_allclose(ref[0], vals.min(axis=0), rtol=rtol, atol=1e-9)
    np.testing.assert_allclose(ref[1], vals.max(axis=0), rtol=rtol, atol=1e-9)


@given(
    st.integers(0, 2**31),
    st.sampled_from(SHAPES),
    st.sampled_from(DTYPES),
    st.sampled_from(KINDS),
)
@settings(max_examples=60, deadline=None)
def test_element_intervals_bounds_and_parity(seed, shape, dtype, kind):
    """An interval is the linear spread clipped to the doses at the element's centre and
    corners; outside samples are points at 0 Gy; numba gives numpy's values."""
    rng = np.random.default_rng(seed)
    dose = _dose(rng, shape, dtype)
    i, j, k = _points(rng, shape)
    e = _half_edges(rng, kind)
    spread = np.where(rng.uniform(size=i.size) < 0.2, 0.0, rng.uniform(0, 150, i.size))
    inside = rng.uniform(size=i.size) < 0.9
    lo, hi = K.element_intervals(dose, i, j, k, e, spread, inside, backend="numpy")
    lo2, hi2 = K.element_intervals(dose, i, j, k, e, spread, inside, backend="numba")
    rtol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(lo2, lo, rtol=rtol, atol=1e-9)
    np.testing.assert_allclose(hi2, hi, rtol=rtol, atol=1e-9)
    d = K.trilinear_numpy(dose, i, j, k).astype(np.float64)
    c_lo, c_hi = K.corner_range_numpy(dose, i, j, k, e)
    tol = 1e-5 if dtype == np.float32 else 1e-12
    ins = inside
    assert np.all(lo[~ins] == 0) and np.all(hi[~ins] == 0)
    assert np.all(lo[ins] >= np.minimum(c_lo, d)[ins] - tol * 100)
    assert np.all(hi[ins] <= np.maximum(c_hi, d)[ins] + tol * 100)
    assert np.all(lo[ins] <= d[ins] + tol * 100) and np.all(hi[ins] >= d[ins] - tol * 100)
    # where the linear spread fits, it is kept
    fits = ins & (d - spread / 2 >= np.minimum(c_lo, d)) & (d + spread / 2 <= np.maximum(c_hi, d))
    np.testing.assert_allclose(hi[fits] - lo[fits], spread[fits], rtol=1e-5, atol=1e-3)


@given(st.integers(0, 2**31), st.sampled_from(SHAPES), st.sampled_from(DTYPES))
@settings(max_examples=40, deadline=None)
def test_layered_intervals_are_element_intervals_of_the_looked_up_columns(seed, shape, dtype):
    """Points given by per-axis tables and layer counts: numba and numpy give exactly
    ``element_intervals`` (numba) on the columns and flags formed from the tables."""
    rng = np.random.default_rng(seed)
    dose = _dose(rng, shape, dtype)
    nk, nj, ni = shape
    ci, cj = rng.uniform(-1.5, ni + 0.5, 11), rng.uniform(-1.5, nj + 0.5, 7)
    ck = rng.uniform(-1.5, nk + 0.5, 5)
    for c in (ci, cj, ck):  # some coordinates on nodes
        c[::3] = np.round(c[::3])
    tables = tuple((c, rng.uniform(size=c.size) < 0.9) for c in (ci, cj, ck))
    count = rng.integers(0, 40, ck.size)
    n = int(count.sum())
    fi, fj = rng.integers(0, ci.size, n), rng.integers(0, cj.size, n)
    half = tuple(float(h) for h in rng.uniform(0.01, 0.8, 3))
    spread = rng.uniform(0, 150, n).astype(dtype)
    cols = (ci[fi], cj[fj], np.repeat(ck, count))
    ins = tables[0][1][fi] & tables[1][1][fj] & np.repeat(tables[2][1], count)
    lo, hi = K.element_intervals(dose, *cols, np.diag(half), spread, ins, backend="numba")
    for backend in ("numba", "numpy"):
        lo2, hi2, ins2 = K.layered_intervals(
            dose, tables, fi, fj, count, half, spread, backend=backend
        )
        np.testing.assert_array_equal(ins2, ins)
        if backend == "numba":
            np.testing.assert_array_equal(lo2, lo)
            np.testing.assert_array_equal(hi2, hi)
        else:
            rtol = 1e-6 if dtype == np.float32 else 1e-12
            np.testing.assert_allclose(lo2, lo, rtol=rtol, atol=1e-9)
            np.testing.assert_allclose(hi2, hi, rtol=rtol, atol=1e-9)


@given(st.integers(0, 2**31), st.sampled_from(DTYPES), st.booleans())
@settings(max_examples=40, deadline=None)
def test_lattice_intervals_numba_matches_numpy(seed, dtype, strided):
    rng = np.random.default_rng(seed)
    shape = tuple(int(x) for x in rng.integers(1, 9, 3))
    corners = _dose(rng, tuple(n + 1 for n in shape), dtype)
    d = _dose(rng, shape, dtype)
    s = rng.uniform(0, 80, shape).astype(dtype)
    mask = rng.uniform(size=shape) < 0.6
    inside = rng.uniform(size=shape) < 0.9
    if strided:  # a crop of a larger lattice, read in place
        big = np.zeros(tuple(n + 2 for n in shape), dtype=dtype)
        big[1:-1, 1:-1, 1:-1] = d
        d = big[1:-1, 1:-1, 1:-1]
    ref = K.lattice_intervals(corners, mask, d, s, inside, backend="numpy")
    got = K.lattice_intervals(corners, mask, d, s, inside, backend="numba")
    for a, b in zip(ref, got, strict=True):
        assert a.dtype == b.dtype == dtype and a.size == np.count_nonzero(mask)
        np.testing.assert_array_equal(b, a)


@given(st.integers(0, 2**31), st.sampled_from(DTYPES))
@settings(max_examples=40, deadline=None)
def test_separable_and_gradient_numba_match_numpy(seed, dtype):
    rng = np.random.default_rng(seed)
    shape = tuple(int(x) for x in rng.integers(1, 8, 3))
    dose = _dose(rng, shape, dtype)
    tables = []
    for n in shape:
        m = int(rng.integers(1, 10))
        c = np.clip(rng.uniform(-0.5, n - 0.5, m), 0, n - 1)
        x0 = np.minimum(np.floor(c).astype(int), max(n - 2, 0))
        tables.append((x0, np.minimum(x0 + 1, n - 1), c - x0))
    rtol = 2e-6 if dtype == np.float32 else 1e-12
    a = K.separable(dose, *tables, backend="numpy")
    b = K.separable(dose, *tables, backend="numba")
    assert a.dtype == b.dtype == dtype
    np.testing.assert_allclose(b, a, rtol=rtol, atol=1e-4 if dtype == np.float32 else 1e-10)
    g1 = K.gradient_norm(dose, backend="numpy")
    g2 = K.gradient_norm(dose, backend="numba")
    assert g1.dtype == g2.dtype == dtype
    np.testing.assert_allclose(g2, g1, rtol=rtol, atol=1e-4 if dtype == np.float32 else 1e-10)


def test_no_gpu_implementation():
    dose = np.ones((2, 2, 2))
    with pytest.raises(BackendUnavailableError):
        K.trilinear(dose, [0.5], [0.5], [0.5], backend="cupy")
    with pytest.raises(BackendUnavailableError):
        K.corner_range(dose, [0.5], [0.5], [0.5], np.eye(3), backend="cupy")


def test_dose_range_clips_the_spread():
    """dvh_from_samples: a spread reaching past the element's dose range is cut to it (and
    the sample's own dose always belongs to that range)."""
    d, w, s = np.array([10.0, 10.0]), np.array([1.0, 1.0]), np.array([10.0, 10.0])
    dvh = dvh_from_samples(d, w, spread_gy=s, dose_range_gy=(np.array([8.0, 11.0]), [12.0, 10.5]))
    # sample 1 over [8, 12], sample 2 over [10, 10.5] (its range widened to hold 10 Gy)
    assert dvh.dmin_gy == 8.0 and dvh.dmax_gy == 12.0
    assert volume_at_dose_cc(dvh, 10.0) == pytest.approx(0.5 + 1.0)
    assert volume_at_dose_cc(dvh, 11.0) == pytest.approx(0.25)
    assert dose_at_volume_pct(dvh, 100) == 8.0
    assert dvh.dmean_gy == pytest.approx((10.0 + 10.25) / 2)
    free = dvh_from_samples(d, w, spread_gy=s)  # no range: [5, 15], as before
    assert free.dmin_gy == 5.0 and free.dmax_gy == 15.0


CACHE_PROBE = r"""
import json
import numpy as np
from brachycryo.qa import interp_kernels as K, interp_kernels_numba as N
d = np.ones((3, 4, 5), np.float32)
c = [np.array([0.5, 1.5])] * 3
K.trilinear_numba(d, *c)
K.corner_range_numba(d, *c, np.eye(3) * 0.2)
K.element_intervals_numba(d, *c, np.eye(3) * 0.2, np.ones(2), np.ones(2, bool))
m = np.ones((2, 3, 4), bool)
K.lattice_intervals_numba(np.ones((3, 4, 5), np.float32), m, d[:2, :3, :4], d[:2, :3, :4], m)
t = (np.array([0]), np.array([1]), np.array([0.5]))
K.separable_numba(d, t, t, t)
K.gradient_norm_numba(d)
tabs = ((np.array([0.5, 1.5]), np.ones(2, bool)),) * 3
K.layered_intervals(d, tabs, np.array([0, 1]), np.array([1, 0]), np.array([2]), (0.2,) * 3,
                    np.ones(2, np.float32), backend="numba")
names = ["points", "corners", "intervals", "lattice", "separable", "grad_norm", "layered"]
print(json.dumps({n: sum(getattr(N, n).stats.cache_misses.values()) for n in names}))
"""


def test_numba_kernels_load_from_the_disk_cache():
    """Each kernel compiles once per machine, not in every process: a second process finds
    every kernel in numba's cache (a kernel calling jitted helpers from a closure would
    miss it every time and spend about a second compiling on each CLI call)."""
    import json
    import subprocess
    import sys

    if K.numba_unavailable_reason() is not None:
        pytest.skip(K.numba_unavailable_reason())
    runs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", CACHE_PROBE], capture_output=True, text=True, check=True
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert all(v == 0 for v in runs[1].values()), runs
