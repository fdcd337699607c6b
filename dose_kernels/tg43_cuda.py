"""CUDA kernels (``numba.cuda``) for the TG-43 dose, launched on CuPy device arrays.

The per-point formula is :func:`brachycryo.dose_kernels.tg43_scalar.tg43_rate_per_u`, compiled as a
CUDA device function - the same source the numba CPU kernels compile - so CPU and GPU
cannot drift; the tables travel as one ``KernelTables`` bundle (a tuple argument).  One
thread per voxel (or point, or matrix row), looping over the seeds.

Testing: the kernel logic runs on the CPU under numba's CUDA simulator
(``NUMBA_ENABLE_CUDASIM=1``, set before ``numba.cuda`` is imported) with numpy arrays as
"device" arrays (``xp=numpy``); on a machine with a GPU the same kernels run on CuPy arrays
(tests marked ``gpu``).  Kernels are built lazily, once per dtype, on first use; importing
this module imports ``numba.cuda`` but compiles nothing.

The ``cuda.grid`` calls carry a ``type: ignore``: numba's stubs type an intrinsic as its
typing function ``(typingctx, ndim)`` that never returns (what calling it from CPython
does), not as the kernel-side call that numba types when it compiles the kernel.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import ModuleType
from typing import NamedTuple, Protocol

import numpy as np
from numba import cuda  # a module global: the CUDA simulator swaps it in the kernels' globals

from brachycryo.dose_kernels.kernel_tables import KernelTables
from brachycryo.dose_kernels.tg43_scalar import tg43_rate_per_u

__all__ = ["grid_sum_cuda", "kernels", "matrix_points_cuda", "points_sum_cuda"]

THREADS_PER_BLOCK = 256


class _Launchable(Protocol):
    """A ``cuda.jit`` kernel: ``kernel[blocks, threads_per_block](*args)`` launches it."""

    def __getitem__(self, _blocks_threads: tuple[int, int], /) -> Callable[..., None]: ...


class _Kernels(NamedTuple):
    points_sum: _Launchable
    grid_sum: _Launchable
    points_matrix: _Launchable


@functools.cache
def kernels(dtype_name: str) -> _Kernels:
    """Build (once per process and dtype) the CUDA kernels for ``float32`` / ``float64``.

    ``t`` is the :class:`~brachycryo.dose_kernels.kernel_tables.KernelTables` bundle with its
    arrays on the device; the formalism branch (``t.line``) is uniform across a launch.
    """

    cast = np.float32 if dtype_name == "float32" else np.float64
    rate = cuda.jit(device=True)(tg43_rate_per_u)

    @cuda.jit
    def points_sum(pts, spos, sdir, w, cut2, out, t):
        p = cuda.grid(1)  # type: ignore[call-arg, var-annotated]  # (module doc)
        if p >= out.shape[0]:
            return
        acc = 0.0
        for s in range(spos.shape[0]):
            dx = pts[p, 0] - spos[s, 0]
            dy = pts[p, 1] - spos[s, 1]
            dz = pts[p, 2] - spos[s, 2]
            if dx * dx + dy * dy + dz * dz > cut2:
                continue
            v = rate(cast(dx), cast(dy), cast(dz), sdir[s, 0], sdir[s, 1], sdir[s, 2], t)
            acc += w[s] * v
        out[p] = cast(acc)

    @cuda.jit
    def grid_sum(origin, axes, nj, ni, spos, sdir, w, cut2, out, t):
        q = cuda.grid(1)  # type: ignore[call-arg, var-annotated]  # (module doc)
        if q >= out.shape[0]:
            return
        i = q % ni
        kj = q // ni
        j = kj % nj
        k = kj // nj
        px = origin[0] + j * axes[1, 0] + k * axes[2, 0] + i * axes[0, 0]
        py = origin[1] + j * axes[1, 1] + k * axes[2, 1] + i * axes[0, 1]
        pz = origin[2] + j * axes[1, 2] + k * axes[2, 2] + i * axes[0, 2]
        acc = 0.0
        for s in range(spos.shape[0]):
            dx = px - spos[s, 0]
            dy = py - spos[s, 1]
            dz = pz - spos[s, 2]
            if dx * dx + dy * dy + dz * dz > cut2:
                continue
            v = rate(cast(dx), cast(dy), cast(dz), sdir[s, 0], sdir[s, 1], sdir[s, 2], t)
            acc += w[s] * v
        out[q] = cast(acc)

    @cuda.jit
    def points_matrix(pts, spos, sdir, factor, cut2, out, t):
        p = cuda.grid(1)  # type: ignore[call-arg, var-annotated]  # (module doc)
        if p >= out.shape[0]:
            return
        for s in range(spos.shape[0]):
            dx = pts[p, 0] - spos[s, 0]
            dy = pts[p, 1] - spos[s, 1]
            dz = pts[p, 2] - spos[s, 2]
            if dx * dx + dy * dy + dz * dz > cut2:
                out[p, s] = cast(0.0)
                continue
            v = rate(cast(dx), cast(dy), cast(dz), sdir[s, 0], sdir[s, 1], sdir[s, 2], t)
            out[p, s] = cast(factor * v)

    return _Kernels(points_sum, grid_sum, points_matrix)


def _xp() -> ModuleType:
    import cupy

    return cupy


def _device_tables(t: KernelTables, xp: ModuleType) -> KernelTables:
    """The bundle with its arrays on the device (numpy arrays under the simulator)."""
    return t._replace(
        **{k: xp.asarray(v) for k, v in t._asdict().items() if isinstance(v, np.ndarray)}
    )


def _dev(a, dtype, xp: ModuleType):
    """A fresh writable C-contiguous copy on the device (the simulator copies args back)."""
    return xp.asarray(np.array(a, dtype=dtype, order="C"))


def _blocks(n: int) -> int:
    return max(1, (n + THREADS_PER_BLOCK - 1) // THREADS_PER_BLOCK)


def _host(a, xp: ModuleType) -> np.ndarray:
    return a if xp is np else xp.asnumpy(a)


def _cut2(cutoff_mm: float | None) -> float:
    return np.inf if cutoff_mm is None else float(cutoff_mm) ** 2


def points_sum_cuda(points_mm, seed_pos_mm, seed_dir, weights, t, cutoff_mm, dtype, *, xp=None):
    """Σ_s weights[s] · rate_s(point) on the GPU (``xp=numpy`` under the simulator)."""
    xp = _xp() if xp is None else xp
    dt = np.dtype(dtype)
    m = int(points_mm.shape[0])
    out = xp.empty(m, dtype=dt)
    if m:
        kernels(dt.name).points_sum[_blocks(m), THREADS_PER_BLOCK](
            _dev(points_mm, np.float64, xp),
            _dev(seed_pos_mm, np.float64, xp),
            _dev(seed_dir, dt, xp),
            _dev(weights, np.float64, xp),
            _cut2(cutoff_mm),
            out,
            _device_tables(t, xp),
        )
    return _host(out, xp)


def grid_sum_cuda(
    origin_mm, axes_mm, shape, seed_pos_mm, seed_dir, weights, t, cutoff_mm, dtype, *, xp=None
):
    """Σ_s weights[s] · rate_s on the voxel centres origin + i·a_i + j·a_j + k·a_k."""
    xp = _xp() if xp is None else xp
    dt = np.dtype(dtype)
    nk, nj, ni = (int(n) for n in shape)
    total = nk * nj * ni
    out = xp.empty(total, dtype=dt)
    kernels(dt.name).grid_sum[_blocks(total), THREADS_PER_BLOCK](
        _dev(origin_mm, np.float64, xp),
        _dev(axes_mm, np.float64, xp),
        nj,
        ni,
        _dev(seed_pos_mm, np.float64, xp),
        _dev(seed_dir, dt, xp),
        _dev(weights, np.float64, xp),
        _cut2(cutoff_mm),
        out,
        _device_tables(t, xp),
    )
    return _host(out, xp).reshape(nk, nj, ni)


def matrix_points_cuda(points_mm, seed_pos_mm, seed_dir, factor, t, cutoff_mm, dtype, *, xp=None):
    """Matrix (M, N) of ``factor`` · rate per U of seed n at point m, on the GPU."""
    xp = _xp() if xp is None else xp
    dt = np.dtype(dtype)
    m = int(points_mm.shape[0])
    out = xp.empty((m, int(seed_pos_mm.shape[0])), dtype=dt)
    if m and out.shape[1]:
        kernels(dt.name).points_matrix[_blocks(m), THREADS_PER_BLOCK](
            _dev(points_mm, np.float64, xp),
            _dev(seed_pos_mm, np.float64, xp),
            _dev(seed_dir, dt, xp),
            float(factor),
            _cut2(cutoff_mm),
            out,
            _device_tables(t, xp),
        )
    return _host(out, xp)
