"""GPU kernels written with ``numba.cuda`` and launched on CuPy arrays.

CuPy arrays are passed straight to the kernels through ``__cuda_array_interface__``.  The
per-voxel arithmetic is the shared source of :mod:`brachycryo.cryo_iceball.kernels_scalar` (the same
as the numba CPU backend); the numpy reference is :mod:`brachycryo.cryo_iceball.kernels_numpy`.
Because the kernels are numba.cuda (not CuPy RawKernels), their logic is also exercised on
the CPU under ``NUMBA_ENABLE_CUDASIM=1`` (see ``tests/cryo_iceball/test_cryo_cuda_sim.py``);
the real-GPU parity test is marked ``gpu``.  Kernels compile on first use (cached factory).
"""

from __future__ import annotations

import functools

THREADS = (32, 8, 4)  # block along (i, j, k): x threads run along i (contiguous in memory)


@functools.cache
def _kernels():
    from brachycryo.cryo_iceball import kernels_cuda_defs as d

    return d.temperature_pass, d.update_pass


def _blocks(shape):
    """Blocks per grid dimension (x, y, z) = (i, j, k) for an array of shape (nk, nj, ni)."""
    nk, nj, ni = shape
    return tuple((n + b - 1) // b for n, b in zip((ni, nj, nk), THREADS, strict=True))


def step(state: dict, dt: float, arterial_c: float, hold_temp) -> None:
    """One step; arrays in ``state`` and ``hold_temp`` are device arrays (CuPy or numba)."""
    temperature_pass, update_pass = _kernels()
    s = state
    blocks = _blocks(s["h"].shape)
    temperature_pass[blocks, THREADS](s["h"], s["tissue"], s["params"], s["hold"], hold_temp,
                                      s["temp"], s["cond"], s["tmin"])  # fmt: skip
    update_pass[blocks, THREADS](s["h"], s["tissue"], s["params"], s["hold"], hold_temp,
                                 s["couple_coef"], s["couple_slot"], s["temp"], s["cond"],
                                 s["inv_h2"], dt, arterial_c)  # fmt: skip


def temperature_only(state: dict, hold_temp) -> None:
    """Refresh ``temp``/``cond``/``tmin`` from ``h`` without advancing time."""
    s = state
    kern = _kernels()[0]
    kern[_blocks(s["h"].shape), THREADS](s["h"], s["tissue"], s["params"], s["hold"], hold_temp,
                                         s["temp"], s["cond"], s["tmin"])  # fmt: skip
