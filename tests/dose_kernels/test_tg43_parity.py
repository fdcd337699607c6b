"""Parity of the TG-43 backends over every setting: numpy reference vs numba vs CUDA.

Settings: formalism (line, point) × cut-off (off, on) × dtype (float32, float64) ×
orientation (axis-aligned seeds and grid, oblique seeds and oblique grid), with points on
the seed axis, inside and at the tips of the active segment, at r → 0 and far away.
The CUDA kernel runs under numba's CUDA simulator in a subprocess (CI has no GPU); the
real-GPU parity is the ``gpu``-marked test.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from brachycryo.core.backend import cupy_unavailable_reason
from brachycryo.core.grid import Grid
from brachycryo.core.seeds import Seeds
from brachycryo.dose_kernels import dose_at_points, dose_on_grid, influence_matrix

REPO = Path(__file__).resolve().parents[2]
RTOL = 1e-5
CUTOFF_MM = 22.0
SETTINGS = list(
    itertools.product(("line", "point"), (None, CUTOFF_MM), ("float32", "float64"), (False, True))
)


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rx = np.array([[1, 0, 0], [0, cc, -sc], [0, sc, cc]])
    return rz @ ry @ rx


def case(oblique: bool, n_random: int = 40, seed: int = 7):
    """Seeds, test points (incl. on-axis, on-segment, r → 0) and a grid for one orientation."""
    rng = np.random.default_rng(seed)
    pos = np.array([[0.0, 0.0, 0.0], [6.0, -3.0, 2.0], [-4.0, 5.0, -7.0]])
    if oblique:
        dirs = rng.normal(size=(3, 3))
        dirs /= np.linalg.norm(dirs, axis=1)[:, None]
        rot = _rotation(0.4, -0.9, 1.3)
    else:
        dirs = np.tile([0.0, 0.0, 1.0], (3, 1))
        rot = np.eye(3)
    u = dirs[0]
    special = [
        pos[0],  # the seed centre
        pos[0] + 1e-7 * u,  # r -> 0 on the axis
        pos[0] + 1e-4 * np.cross(u, [1.0, 0, 0]),  # r -> 0 off axis
        pos[0] + 0.9 * u,  # on the axis inside the active segment
        pos[0] - 1.5 * u,  # at the tip of a 3 mm segment
        pos[0] + 1.8 * u,  # on the axis just beyond the tip
        pos[0] + 7.0 * u,  # on the axis
        pos[0] - 35.0 * u,  # far on the axis
        pos[1] + 2.2 * dirs[1],
    ]
    pts = np.vstack([special, rng.uniform(-30, 30, (n_random, 3))])
    grid = Grid(
        shape=(3, 4, 5),
        origin_mm=rot @ np.array([-6.0, -5.0, -4.0]),
        spacing_mm=(3.0, 2.5, 4.0),
        direction=rot.ravel(),
    )
    return Seeds(pos, [0.5, 0.8, 0.3], dirs), pts, grid


def away_from_cutoff(seeds: Seeds, pts: np.ndarray, cutoff: float | None) -> np.ndarray:
    """Points not within 1e-3 mm of a cut-off sphere (where the sum jumps)."""
    if cutoff is None:
        return np.ones(len(pts), bool)
    d = np.linalg.norm(pts[:, None, :] - seeds.positions_mm[None], axis=-1)
    return np.all(np.abs(d - cutoff) > 1e-3, axis=1)


def assert_parity(got: np.ndarray, ref: np.ndarray, what: str) -> None:
    assert np.all(np.isfinite(got)), what
    err = np.abs(got.astype(np.float64) - ref) / np.abs(ref)
    assert err.max() <= RTOL, f"{what}: max relative difference {err.max():.3g}"


@pytest.mark.parametrize(("formalism", "cutoff", "dtype", "oblique"), SETTINGS)
def test_numba_matches_numpy(formalism, cutoff, dtype, oblique):
    seeds, pts, grid = case(oblique)
    keep = away_from_cutoff(seeds, pts, cutoff)
    kw = dict(formalism=formalism, cutoff_mm=cutoff, model="6711", quantity="rate")
    ref = dose_at_points(seeds, pts, dtype=np.float64, backend="numpy", **kw)
    got = dose_at_points(seeds, pts, dtype=dtype, backend="numba", **kw)
    assert got.dtype == np.dtype(dtype)
    ok = keep & (ref > 0)
    assert_parity(got[ok], ref[ok], "points")
    assert np.all(got[~(ref > 0) & keep] == 0)
    gref = dose_on_grid(seeds, grid, dtype=np.float64, backend="numpy", **kw)
    ggot = dose_on_grid(seeds, grid, dtype=dtype, backend="numba", **kw)
    gkeep = away_from_cutoff(seeds, grid.voxel_centres_mm().reshape(-1, 3), cutoff)
    gkeep = gkeep.reshape(grid.shape) & (gref > 0)
    assert_parity(ggot[gkeep], gref[gkeep], "grid")
    mref = influence_matrix(
        seeds.positions_mm,
        seeds.directions,
        pts,
        "6711",
        backend="numpy",
        dtype=np.float64,
        cutoff_mm=cutoff,
        formalism=formalism,
    )
    mgot = influence_matrix(
        seeds.positions_mm,
        seeds.directions,
        pts,
        "6711",
        backend="numba",
        dtype=dtype,
        cutoff_mm=cutoff,
        formalism=formalism,
    )
    nz = mref > 0
    assert np.all(mgot[~nz & keep[:, None]] == 0)
    assert_parity(mgot[nz & keep[:, None]], mref[nz & keep[:, None]], "influence matrix")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_influence_matrix_times_strength_is_dose(backend):
    seeds, pts, _ = case(True)
    a = influence_matrix(
        seeds.positions_mm, seeds.directions, pts, "Best2301", backend=backend, dtype=np.float64
    )
    d = dose_at_points(seeds, pts, "Best2301", backend=backend, dtype=np.float64)
    np.testing.assert_allclose(a @ seeds.sk_u, d, rtol=1e-12)
    s = influence_matrix(
        seeds.positions_mm,
        seeds.directions,
        pts,
        "Best2301",
        backend=backend,
        dtype=np.float32,
        cutoff_mm=CUTOFF_MM,
        sparse=True,
    )
    dense = influence_matrix(
        seeds.positions_mm,
        seeds.directions,
        pts,
        "Best2301",
        backend=backend,
        dtype=np.float32,
        cutoff_mm=CUTOFF_MM,
    )
    assert s.format == "csc" and s.dtype == np.float32
    np.testing.assert_array_equal(s.toarray(), dense)


def test_influence_matrix_memory_guard_and_progress():
    from brachycryo.core.errors import ConfigError

    calls = []
    influence_matrix(
        [[0, 0, 0]],
        None,
        np.zeros((5, 3)) + 10,
        "6711",
        backend="numpy",
        progress=lambda f, msg: calls.append(f),
    )
    assert calls and calls[-1] == 1.0
    with pytest.raises(ConfigError, match="sparse=True"):
        influence_matrix([[0, 0, 0]] * 10, None, np.ones((10, 3)), "6711", max_bytes=100)
    with pytest.raises(ConfigError, match="cutoff_mm"):
        influence_matrix([[0, 0, 0]], None, np.ones((10, 3)), "6711", sparse=True)


CUDASIM_SCRIPT = r"""
import itertools, json, sys
import numpy as np
sys.path.insert(0, {repo!r})
from tests.dose_kernels.test_tg43_parity import SETTINGS, case, away_from_cutoff
from brachycryo.dose_kernels.kernel_tables import pack_tables
from brachycryo.dose_kernels.seed_model import load_seed_model
from brachycryo.dose_kernels import tg43_cuda, tg43_numpy
m = load_seed_model("6711")
worst = {{}}
for formalism, cutoff, dtype, oblique in SETTINGS:
    seeds, pts, grid = case(oblique, n_random=12)
    dt = np.dtype(dtype)
    t = pack_tables(m, formalism=formalism, dtype=dt)
    t64 = pack_tables(m, formalism=formalism, dtype=np.float64)
    args = (seeds.positions_mm, seeds.directions)
    ref = tg43_numpy.weighted_sum_points_numpy(pts, *args, seeds.sk_u, t64, cutoff)
    got = tg43_cuda.points_sum_cuda(pts, *args, seeds.sk_u, t, cutoff, dt, xp=np)
    keep = away_from_cutoff(seeds, pts, cutoff) & (ref > 0)
    e1 = float(np.max(np.abs(got[keep] - ref[keep]) / ref[keep]))
    axes = (grid.direction_matrix * np.asarray(grid.spacing_mm)[None, :]).T
    g = tg43_cuda.grid_sum_cuda(np.asarray(grid.origin_mm), axes, grid.shape, *args,
                                seeds.sk_u, t, cutoff, dt, xp=np)
    vox = grid.voxel_centres_mm().reshape(-1, 3)
    gref = tg43_numpy.weighted_sum_points_numpy(vox, *args, seeds.sk_u, t64, cutoff)
    gk = away_from_cutoff(seeds, vox, cutoff) & (gref > 0)
    e2 = float(np.max(np.abs(g.ravel()[gk] - gref[gk]) / gref[gk]))
    mat = tg43_cuda.matrix_points_cuda(pts, *args, 2.0, t, cutoff, dt, xp=np)
    mref = tg43_numpy.matrix_points_numpy(pts, *args, 2.0, t64, cutoff)
    nz = (mref > 0) & away_from_cutoff(seeds, pts, cutoff)[:, None]
    e3 = float(np.max(np.abs(mat[nz] - mref[nz]) / mref[nz]))
    zeros_ok = bool(np.all(mat[(mref == 0) & away_from_cutoff(seeds, pts, cutoff)[:, None]] == 0))
    finite = bool(np.all(np.isfinite(got)) and np.all(np.isfinite(g)) and np.all(np.isfinite(mat)))
    assert got.dtype == dt and g.dtype == dt and mat.dtype == dt
    worst[f"{{formalism}}-{{cutoff}}-{{dtype}}-{{oblique}}"] = [e1, e2, e3, zeros_ok, finite]
print(json.dumps(worst))
"""


def test_cuda_kernel_matches_numpy_under_simulator():
    """The numba.cuda kernels (points, grid, matrix) over every setting, on the simulator."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(REPO))
    proc = subprocess.run(
        [sys.executable, "-c", CUDASIM_SCRIPT.format(repo=str(REPO))],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    worst = json.loads(proc.stdout.strip().splitlines()[-1])
    assert len(worst) == len(SETTINGS)
    for key, (e1, e2, e3, zeros_ok, finite) in worst.items():
        assert finite and zeros_ok, key
        assert max(e1, e2, e3) <= RTOL, f"{key}: {e1:.3g} {e2:.3g} {e3:.3g}"


_NO_GPU = cupy_unavailable_reason()


@pytest.mark.gpu
@pytest.mark.skipif(_NO_GPU is not None, reason=f"no CUDA device: {_NO_GPU}")
@pytest.mark.parametrize(("formalism", "cutoff", "dtype", "oblique"), SETTINGS)
def test_cupy_matches_numpy_on_gpu(formalism, cutoff, dtype, oblique):
    seeds, pts, grid = case(oblique)
    keep = away_from_cutoff(seeds, pts, cutoff)
    kw = dict(formalism=formalism, cutoff_mm=cutoff, model="6711", quantity="rate")
    ref = dose_at_points(seeds, pts, dtype=np.float64, backend="numpy", **kw)
    got = dose_at_points(seeds, pts, dtype=dtype, backend="cupy", **kw)
    ok = keep & (ref > 0)
    assert_parity(got[ok], ref[ok], "points")
    gref = dose_on_grid(seeds, grid, dtype=np.float64, backend="numpy", **kw)
    ggot = dose_on_grid(seeds, grid, dtype=dtype, backend="cupy", **kw)
    gkeep = away_from_cutoff(seeds, grid.voxel_centres_mm().reshape(-1, 3), cutoff)
    gkeep = gkeep.reshape(grid.shape) & (gref > 0)
    assert_parity(ggot[gkeep], gref[gkeep], "grid")
    mref = influence_matrix(
        seeds.positions_mm,
        seeds.directions,
        pts,
        "6711",
        backend="numpy",
        dtype=np.float64,
        cutoff_mm=cutoff,
        formalism=formalism,
    )
    mgot = influence_matrix(
        seeds.positions_mm,
        seeds.directions,
        pts,
        "6711",
        backend="cupy",
        dtype=dtype,
        cutoff_mm=cutoff,
        formalism=formalism,
    )
    nz = (mref > 0) & keep[:, None]
    assert_parity(mgot[nz], mref[nz], "influence matrix")


@pytest.mark.parametrize(("dtype", "rtol"), [(np.float64, 2e-15), (np.float32, 4e-7)])
def test_kernel_atan2_matches_numpy(dtype, rtol):
    """The kernels' polynomial atan2 (y >= 0) against numpy over all octants and extremes."""
    from brachycryo.dose_kernels.tg43_scalar import atan2_nonneg, atan_constants

    rng = np.random.default_rng(5)
    y = np.abs(rng.standard_cauchy(4000))
    x = rng.standard_cauchy(4000)
    y[:6], x[:6] = [0, 1, 1e-30, 5, 0, 2], [3, 0, -2, -1e-30, -2, 2]
    c = np.asarray(atan_constants(), dtype=dtype)
    got = np.array([atan2_nonneg(a, b, c) for a, b in zip(y.astype(dtype), x.astype(dtype))])
    ref = np.arctan2(y.astype(dtype).astype(float), x.astype(dtype).astype(float))
    assert got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=0)
