"""numba CPU kernels (parallel over points / grid rows) built on
:mod:`brachycryo.dose_kernels.tg43_scalar`.

Compiled lazily: nothing is JIT-compiled at import; ``tg43_scalar.numba_kernels`` builds the
functions on first use (``cache=True`` keeps the machine code between runs).  The kernels
are defined in the same file as the scalar function they inline, because numba's on-disk
cache is invalidated only by changes to the file that defines the cached function: kept
apart, an edit of the scalar function would leave stale machine code in the cache.  The
only fast-math flag is ``contract`` (fused multiply-add, ``tg43_scalar._FASTMATH``): the
kernels must never turn a finite input into NaN or inf, which ``nnan``/``ninf`` could.
"""

from __future__ import annotations

import numpy as np

from brachycryo.dose_kernels.kernel_tables import KernelTables
from brachycryo.dose_kernels.tg43_scalar import numba_kernels

__all__ = ["grid_sum_numba", "matrix_points_numba", "points_sum_numba"]


def _cut2(cutoff_mm: float | None) -> float:
    return np.inf if cutoff_mm is None else float(cutoff_mm) ** 2


def _f64(a) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float64)


def points_sum_numba(points_mm, seed_pos_mm, seed_dir, weights, t: KernelTables, cutoff_mm, dtype):
    """Σ_s weights[s] · rate_s(point) for points (M, 3), in ``dtype``."""
    out = np.empty(points_mm.shape[0], dtype=dtype)
    numba_kernels().points_sum(
        _f64(np.asarray(points_mm, dtype=np.float64).reshape(-1, 3).T),
        _f64(seed_pos_mm),
        np.ascontiguousarray(seed_dir, dtype=dtype),
        _f64(weights),
        _cut2(cutoff_mm),
        out,
        t,
    )
    return out


def grid_sum_numba(origin_mm, axes_mm, shape, seed_pos_mm, seed_dir, weights, t, cutoff_mm, dtype):
    """Σ_s weights[s] · rate_s on the voxel centres origin + i·a_i + j·a_j + k·a_k."""
    out = np.empty(shape, dtype=dtype)
    numba_kernels().grid_sum(
        _f64(origin_mm),
        _f64(axes_mm),
        _f64(seed_pos_mm),
        np.ascontiguousarray(seed_dir, dtype=dtype),
        _f64(weights),
        _cut2(cutoff_mm),
        out,
        t,
    )
    return out


def matrix_points_numba(points_mm, seed_pos_mm, seed_dir, factor, t, cutoff_mm, dtype, out=None):
    """Matrix (M, N) of ``factor`` · rate per U of seed n at point m, in ``dtype``."""
    if out is None:
        out = np.empty((points_mm.shape[0], seed_pos_mm.shape[0]), dtype=dtype)
    numba_kernels().points_matrix(
        _f64(points_mm),
        _f64(np.asarray(seed_pos_mm, dtype=np.float64).T),
        np.ascontiguousarray(np.asarray(seed_dir).T, dtype=dtype),
        float(factor),
        _cut2(cutoff_mm),
        out,
        t,
    )
    return out
