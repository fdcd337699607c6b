"""numba CPU kernels (parallel over points / grid rows) built on :mod:`dose_kernels.tg43_scalar`.

Compiled lazily: nothing is JIT-compiled at import; :func:`kernels` builds the functions on
first use (``cache=True`` keeps the machine code between runs).  No ``fastmath``: the
kernels must never turn a finite input into NaN or inf.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from dose_kernels.kernel_tables import KernelTables
from dose_kernels.tg43_scalar import tg43_rate_per_u

__all__ = ["grid_sum_numba", "kernels", "matrix_points_numba", "points_sum_numba"]


class _Kernels(NamedTuple):
    points_sum: object
    grid_sum: object
    points_matrix: object


@functools.cache
def kernels() -> _Kernels:
    """Compile (once per process, cached on disk) and return the numba kernels."""
    import numba

    rate = numba.njit(cache=True, inline="always", error_model="numpy")(tg43_rate_per_u)

    @numba.njit(parallel=True, cache=True, error_model="numpy")
    def points_sum(
        pts,
        spos,
        sdir,
        w,
        cut2,
        out,
        line,
        ln,
        hl,
        dmin,
        r2d,
        one,
        sx,
        norm,
        gr,
        gl,
        gt,
        fr,
        ft,
        ftab,
        pr,
        ph,
        ac,
    ):
        m = pts.shape[0]
        n = spos.shape[0]
        dt = out.dtype
        for p in numba.prange(m):
            acc = 0.0
            for s in range(n):
                dx = pts[p, 0] - spos[s, 0]
                dy = pts[p, 1] - spos[s, 1]
                dz = pts[p, 2] - spos[s, 2]
                if dx * dx + dy * dy + dz * dz > cut2:
                    continue
                v = rate(
                    dt.type(dx),
                    dt.type(dy),
                    dt.type(dz),
                    sdir[s, 0],
                    sdir[s, 1],
                    sdir[s, 2],
                    line,
                    ln,
                    hl,
                    dmin,
                    r2d,
                    one,
                    sx,
                    norm,
                    gr,
                    gl,
                    gt,
                    fr,
                    ft,
                    ftab,
                    pr,
                    ph,
                    ac,
                )
                acc += w[s] * v
            out[p] = acc

    @numba.njit(parallel=True, cache=True, error_model="numpy")
    def grid_sum(
        origin,
        axes,
        spos,
        sdir,
        w,
        cut2,
        out,
        line,
        ln,
        hl,
        dmin,
        r2d,
        one,
        sx,
        norm,
        gr,
        gl,
        gt,
        fr,
        ft,
        ftab,
        pr,
        ph,
        ac,
    ):
        nk, nj, ni = out.shape
        n = spos.shape[0]
        dt = out.dtype
        for kj in numba.prange(nk * nj):
            k = kj // nj
            j = kj - k * nj
            bx = origin[0] + j * axes[1, 0] + k * axes[2, 0]
            by = origin[1] + j * axes[1, 1] + k * axes[2, 1]
            bz = origin[2] + j * axes[1, 2] + k * axes[2, 2]
            for i in range(ni):
                px = bx + i * axes[0, 0]
                py = by + i * axes[0, 1]
                pz = bz + i * axes[0, 2]
                acc = 0.0
                for s in range(n):
                    dx = px - spos[s, 0]
                    dy = py - spos[s, 1]
                    dz = pz - spos[s, 2]
                    if dx * dx + dy * dy + dz * dz > cut2:
                        continue
                    v = rate(
                        dt.type(dx),
                        dt.type(dy),
                        dt.type(dz),
                        sdir[s, 0],
                        sdir[s, 1],
                        sdir[s, 2],
                        line,
                        ln,
                        hl,
                        dmin,
                        r2d,
                        one,
                        sx,
                        norm,
                        gr,
                        gl,
                        gt,
                        fr,
                        ft,
                        ftab,
                        pr,
                        ph,
                        ac,
                    )
                    acc += w[s] * v
                out[k, j, i] = acc

    @numba.njit(parallel=True, cache=True, error_model="numpy")
    def points_matrix(
        pts,
        spos,
        sdir,
        factor,
        cut2,
        out,
        line,
        ln,
        hl,
        dmin,
        r2d,
        one,
        sx,
        norm,
        gr,
        gl,
        gt,
        fr,
        ft,
        ftab,
        pr,
        ph,
        ac,
    ):
        m = pts.shape[0]
        n = spos.shape[0]
        dt = out.dtype
        for p in numba.prange(m):
            for s in range(n):
                dx = pts[p, 0] - spos[s, 0]
                dy = pts[p, 1] - spos[s, 1]
                dz = pts[p, 2] - spos[s, 2]
                if dx * dx + dy * dy + dz * dz > cut2:
                    out[p, s] = 0
                    continue
                v = rate(
                    dt.type(dx),
                    dt.type(dy),
                    dt.type(dz),
                    sdir[s, 0],
                    sdir[s, 1],
                    sdir[s, 2],
                    line,
                    ln,
                    hl,
                    dmin,
                    r2d,
                    one,
                    sx,
                    norm,
                    gr,
                    gl,
                    gt,
                    fr,
                    ft,
                    ftab,
                    pr,
                    ph,
                    ac,
                )
                out[p, s] = factor * v

    return _Kernels(points_sum, grid_sum, points_matrix)


def _cut2(cutoff_mm: float | None) -> float:
    return np.inf if cutoff_mm is None else float(cutoff_mm) ** 2


def points_sum_numba(points_mm, seed_pos_mm, seed_dir, weights, t: KernelTables, cutoff_mm, dtype):
    """Σ_s weights[s] · rate_s(point) for points (M, 3), in ``dtype``."""
    out = np.empty(points_mm.shape[0], dtype=dtype)
    kernels().points_sum(
        np.ascontiguousarray(points_mm, dtype=np.float64),
        np.ascontiguousarray(seed_pos_mm, dtype=np.float64),
        np.ascontiguousarray(seed_dir, dtype=dtype),
        np.ascontiguousarray(weights, dtype=np.float64),
        _cut2(cutoff_mm),
        out,
        *t.scalar_args(),
    )
    return out


def grid_sum_numba(origin_mm, axes_mm, shape, seed_pos_mm, seed_dir, weights, t, cutoff_mm, dtype):
    """Σ_s weights[s] · rate_s on the voxel centres origin + i·a_i + j·a_j + k·a_k."""
    out = np.empty(shape, dtype=dtype)
    kernels().grid_sum(
        np.ascontiguousarray(origin_mm, dtype=np.float64),
        np.ascontiguousarray(axes_mm, dtype=np.float64),
        np.ascontiguousarray(seed_pos_mm, dtype=np.float64),
        np.ascontiguousarray(seed_dir, dtype=dtype),
        np.ascontiguousarray(weights, dtype=np.float64),
        _cut2(cutoff_mm),
        out,
        *t.scalar_args(),
    )
    return out


def matrix_points_numba(points_mm, seed_pos_mm, seed_dir, factor, t, cutoff_mm, dtype, out=None):
    """Matrix (M, N) of ``factor`` · rate per U of seed n at point m, in ``dtype``."""
    if out is None:
        out = np.empty((points_mm.shape[0], seed_pos_mm.shape[0]), dtype=dtype)
    kernels().points_matrix(
        np.ascontiguousarray(points_mm, dtype=np.float64),
        np.ascontiguousarray(seed_pos_mm, dtype=np.float64),
        np.ascontiguousarray(seed_dir, dtype=dtype),
        float(factor),
        _cut2(cutoff_mm),
        out,
        *t.scalar_args(),
    )
    return out
