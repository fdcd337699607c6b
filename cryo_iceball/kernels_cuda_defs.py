"""numba.cuda kernel definitions (module level, imported only by ``kernels_cuda._kernels``).

Defined at module level so that numba's CUDA simulator can swap in its fake ``cuda`` module
(it rewrites module globals, not closures).  ``cuda.jit`` compiles on first launch, so
importing this module compiles nothing.  See :mod:`brachycryo.cryo_iceball.kernels_cuda`.

The ``cuda.grid`` calls carry a ``type: ignore``: numba's stubs type an intrinsic as its
typing function ``(typingctx, ndim)`` that never returns (what calling it from CPython
does), not as the kernel-side call that numba types when it compiles the kernel.
"""

from __future__ import annotations

from numba import cuda

from brachycryo.cryo_iceball import kernels_scalar as ks

dev = cuda.jit(device=True)
temp_of_enthalpy = dev(ks.temp_of_enthalpy)
enthalpy_of_temp = dev(ks.enthalpy_of_temp)
liquid_fraction = dev(ks.liquid_fraction)
apparent_capacity = dev(ks.apparent_capacity)
slot_active = dev(ks.slot_active)


@cuda.jit
def temperature_pass(h, tissue, params, hold, hold_temp, temp, cond, tmin):
    # x (fastest threads) along i, the contiguous axis
    i, j, k = cuda.grid(3)  # type: ignore[call-arg, var-annotated]  # (see the module doc)
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
    cond[k, j, i] = kf + liquid_fraction(t, ts, tl, 0.0, 1.0) * (ku - kf)
    if t < tmin[k, j, i]:
        tmin[k, j, i] = t


@cuda.jit
def update_pass(h, tissue, params, hold, hold_temp, couple_coef, couple_slot, temp, cond,
                inv_h2, dt, arterial_c):  # fmt: skip
    # x (fastest threads) along i, the contiguous axis
    i, j, k = cuda.grid(3)  # type: ignore[call-arg, var-annotated]  # (see the module doc)
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
    phi = liquid_fraction(t, ts, tl, 0.0, 1.0)
    r += phi * (params[tc, 8] * (arterial_c - t) + params[tc, 9])
    cs = couple_slot[k, j, i]
    if slot_active(cs, hold_temp):
        tp = hold_temp[cs]
        kp = kf + liquid_fraction(tp, ts, tl, 0.0, 1.0) * (ku - kf)
        a = couple_coef[k, j, i] * 0.5 * (kv + kp)
        r += a * (tp - t)
        capp = apparent_capacity(t, params[tc, 0], params[tc, 1], params[tc, 2], ts, tl)
        r = r / (1.0 + dt * a / capp)
    h[k, j, i] += dt * r
