"""Numba CPU kernels (parallel over slices) for the explicit enthalpy step.

Same arithmetic as the numpy reference :mod:`cryo_iceball.kernels_numpy`, using the shared
scalar functions of :mod:`cryo_iceball.kernels_scalar`.  Compilation is lazy (the factory
is cached and runs on first use), ``cache=True``, no fastmath (NaN marks an inactive
boundary).
"""

from __future__ import annotations

import functools

#: grids smaller than this run the serial variant (thread wake-up costs more than it saves)
PARALLEL_MIN_VOXELS = 200_000


@functools.cache
def _kernels(parallel: bool = True):
    import numba

    from cryo_iceball import kernels_scalar as ks

    jit = numba.njit(cache=True, inline="always", error_model="numpy")
    temp_of_enthalpy = jit(ks.temp_of_enthalpy)
    enthalpy_of_temp = jit(ks.enthalpy_of_temp)
    liquid_fraction = jit(ks.liquid_fraction)
    apparent_capacity = jit(ks.apparent_capacity)
    slot_active = jit(ks.slot_active)

    @numba.njit(parallel=parallel, cache=True, error_model="numpy")
    def temperature_pass(h, tissue, params, hold, hold_temp, temp, cond, tmin):
        nk, nj, ni = h.shape
        for kj in numba.prange(nk * nj):
            k = kj // nj
            j = kj - k * nj
            for i in range(ni):
                tc = tissue[k, j, i]
                cf, cu, cm = params[tc, 0], params[tc, 1], params[tc, 2]
                ts, tl, hl = params[tc, 3], params[tc, 4], params[tc, 5]
                kf, ku = params[tc, 6], params[tc, 7]
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

    @numba.njit(parallel=parallel, cache=True, error_model="numpy")
    def update_pass(h, tissue, params, hold, hold_temp, couple_coef, couple_slot, temp, cond,
                    inv_h2, dt, arterial_c):  # fmt: skip
        nk, nj, ni = h.shape
        ck, cj, ci = inv_h2[0], inv_h2[1], inv_h2[2]
        for kj in numba.prange(nk * nj):
            k = kj // nj
            j = kj - k * nj
            for i in range(ni):
                if slot_active(hold[k, j, i], hold_temp):
                    continue
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
                ts, tl, kf, ku = params[tc, 3], params[tc, 4], params[tc, 6], params[tc, 7]
                phi = liquid_fraction(t, ts, tl)
                r += phi * (params[tc, 8] * (arterial_c - t) + params[tc, 9])
                cs = couple_slot[k, j, i]
                if slot_active(cs, hold_temp):
                    tp = hold_temp[cs]
                    kp = kf + liquid_fraction(tp, ts, tl) * (ku - kf)
                    a = couple_coef[k, j, i] * 0.5 * (kv + kp)
                    r += a * (tp - t)
                    capp = apparent_capacity(t, params[tc, 0], params[tc, 1], params[tc, 2], ts, tl)
                    r = r / (1.0 + dt * a / capp)
                h[k, j, i] += dt * r

    return temperature_pass, update_pass


def _for(state: dict):
    """Parallel or serial kernels: ``state["parallel"]`` if set, else by grid size."""
    parallel = state.get("parallel")
    if parallel is None:
        parallel = state["h"].size >= PARALLEL_MIN_VOXELS
    return _kernels(bool(parallel))


def step(state: dict, dt: float, arterial_c: float, hold_temp) -> None:
    temperature_pass, update_pass = _for(state)
    s = state
    temperature_pass(s["h"], s["tissue"], s["params"], s["hold"], hold_temp, s["temp"], s["cond"],
                     s["tmin"])  # fmt: skip
    update_pass(s["h"], s["tissue"], s["params"], s["hold"], hold_temp, s["couple_coef"],
                s["couple_slot"], s["temp"], s["cond"], s["inv_h2"], dt, arterial_c)  # fmt: skip


def temperature_only(state: dict, hold_temp) -> None:
    """Refresh ``temp``/``cond``/``tmin`` from ``h`` without advancing time."""
    s = state
    _for(s)[0](s["h"], s["tissue"], s["params"], s["hold"], hold_temp, s["temp"], s["cond"],
                  s["tmin"])  # fmt: skip
