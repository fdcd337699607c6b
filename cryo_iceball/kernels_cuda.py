"""GPU kernels written with ``numba.cuda`` and launched on CuPy arrays.

CuPy arrays are passed straight to the kernels through ``__cuda_array_interface__``.  The
per-voxel arithmetic is the shared source of :mod:`cryo_iceball.kernels_scalar` (the same
as the numba CPU backend); the numpy reference is :mod:`cryo_iceball.kernels_numpy`.
Because the kernels are numba.cuda (not CuPy RawKernels), their logic is also exercised on
the CPU under ``NUMBA_ENABLE_CUDASIM=1`` (see ``tests/test_cryo_cuda_sim.py``); the real-GPU
parity test is marked ``gpu``.  Kernels compile on first use (cached factory).
"""

from __future__ import annotations

import functools

THREADS = (4, 8, 32)  # (k, j, i) block; i fastest for coalesced access


@functools.cache
def _kernels():
    from numba import cuda

    from cryo_iceball import kernels_scalar as ks

    dev = cuda.jit(device=True)
    temp_of_enthalpy = dev(ks.temp_of_enthalpy)
    enthalpy_of_temp = dev(ks.enthalpy_of_temp)
    liquid_fraction = dev(ks.liquid_fraction)
    slot_active = dev(ks.slot_active)

    @cuda.jit
    def temperature_pass(h, tissue, params, hold, hold_temp, temp, cond, tmin):
        k, j, i = cuda.grid(3)
        nk, nj, ni = h.shape
        if k >= nk or j >= nj or i >= ni:
            return
        tc = tissue[k, j, i]
        cf = params[tc, 0]
        cu = params[tc, 1]
        cm = params[tc, 2]
        ts = params[tc, 3]
        tl = params[tc, 4]
        hl = params[tc, 5]
        kf = params[tc, 6]
        ku = params[tc, 7]
        s = hold[k, j, i]
        if slot_active(s, hold_temp):
            t = hold_temp[s]
            h[k, j, i] = enthalpy_of_temp(t, cf, cu, cm, ts, tl, hl)
        else:
            t = temp_of_enthalpy(h[k, j, i], cf, cu, cm, ts, tl, hl)
        temp[k, j, i] = t
        t = temp[k, j, i]
        cond[k, j, i] = kf + liquid_fraction(t, ts, tl) * (ku - kf)
        if t < tmin[k, j, i]:
            tmin[k, j, i] = t

    @cuda.jit
    def update_pass(h, tissue, params, hold, hold_temp, couple_coef, couple_slot, temp, cond,
                    inv_h2, dt, arterial_c):  # fmt: skip
        k, j, i = cuda.grid(3)
        nk, nj, ni = h.shape
        if k >= nk or j >= nj or i >= ni:
            return
        if slot_active(hold[k, j, i], hold_temp):
            return
        ck = inv_h2[0]
        cj = inv_h2[1]
        ci = inv_h2[2]
        t = temp[k, j, i]
        kv = cond[k, j, i]
        r = 0.0
        if k > 0:
            r += 0.5 * (kv + cond[k - 1, j, i]) * (temp[k - 1, j, i] - t) * ck
        if k < nk - 1:
            r += 0.5 * (kv + cond[k + 1, j, i]) * (temp[k + 1, j, i] - t) * ck
        if j > 0:
            r += 0.5 * (kv + cond[k, j - 1, i]) * (temp[k, j - 1, i] - t) * cj
        if j < nj - 1:
            r += 0.5 * (kv + cond[k, j + 1, i]) * (temp[k, j + 1, i] - t) * cj
        if i > 0:
            r += 0.5 * (kv + cond[k, j, i - 1]) * (temp[k, j, i - 1] - t) * ci
        if i < ni - 1:
            r += 0.5 * (kv + cond[k, j, i + 1]) * (temp[k, j, i + 1] - t) * ci
        tc = tissue[k, j, i]
        ts = params[tc, 3]
        tl = params[tc, 4]
        kf = params[tc, 6]
        ku = params[tc, 7]
        phi = liquid_fraction(t, ts, tl)
        r += phi * (params[tc, 8] * (arterial_c - t) + params[tc, 9])
        cs = couple_slot[k, j, i]
        if slot_active(cs, hold_temp):
            tp = hold_temp[cs]
            kp = kf + liquid_fraction(tp, ts, tl) * (ku - kf)
            r += couple_coef[k, j, i] * 0.5 * (kv + kp) * (tp - t)
        h[k, j, i] += dt * r

    return temperature_pass, update_pass


def _blocks(shape):
    return tuple((n + b - 1) // b for n, b in zip(shape, THREADS))


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
