"""Numba CPU kernels (parallel over grid segments) for the explicit enthalpy step.

Same arithmetic as the numpy reference :mod:`brachycryo.cryo_iceball.kernels_numpy`, using the
shared
scalar functions of :mod:`brachycryo.cryo_iceball.kernels_scalar`; the parity tests compare them.
Compilation is lazy (the factory is cached and runs on first use), ``cache=True``, no
fastmath (NaN marks an inactive boundary).

The step is laid out so that LLVM vectorises the two loops over every voxel.  Each choice
below was measured on the benchmark's CPU (``benchmarks/cryo_speed.py``); together they
made the step about 9 times faster than a direct per-voxel loop:

* **Segments of one tissue.**  The loops run over flat segments of one tissue class
  (:mod:`brachycryo.cryo_iceball.kernel_layout`) and read its properties as scalars.  Per-voxel
  reads
  from the property table compile to gathers, cost about seven times the arithmetic and
  keep the loop scalar.
* **Zero-based views.**  The inner loops index 1-D views from 0.  An index that might be
  negative makes numba emit a wrap-around test, which stops vectorisation.
* **The array's precision.**  ``zero``, ``half``, ``one``, ``dt`` and the arterial
  temperature are passed in the state's dtype, so float32 states compute in float32.
* **No arrays into helpers.**  Per-voxel helpers take scalars only.  Passing arrays to an
  inlined helper made one loop about ten times slower, and so did re-reading a value just
  stored.
* **Special voxels on the side.**  The dense loops skip held voxels and treat every other
  voxel as free and interior.  These voxels take the general per-voxel path of the
  reference, from an index list:
  - voxels with a hold slot (probes, vessels, the outer layer);
  - voxels coupled to a probe surface;
  - the two end voxels of every row, whose ``i -/+ 1`` neighbours the dense loop gets wrong.

  Their new enthalpy is computed before the dense update, from the old temperatures, and
  written after it.
* **Held voxels that do not change.**  A voxel held at the same temperature as in the last
  step already has that temperature, its enthalpy, conductivity and minimum, so it is
  skipped.  This is exact, and in practice it covers the fixed outer layer.
* **Outer faces.**  A voxel whose ``k`` or ``j`` neighbour lies outside the array uses
  itself instead.  That face term is then exactly zero, which is the reference's no-flux
  condition.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np

from brachycryo.cryo_iceball.kernel_layout import KernelLayout, kernel_layout

#: grids smaller than this run the serial variant (thread wake-up costs more than it saves)
PARALLEL_MIN_VOXELS = 200_000


# Set by ``_kernels`` on first use (numba is imported then, not at import of this module).
numba: Any
temp_of_enthalpy: Any
enthalpy_of_temp: Any
liquid_fraction: Any
apparent_capacity: Any
slot_active: Any
face_flux: Any


def _face_flux(kv, t, k_n, t_n, c, half):
    """Conduction into a voxel through one face (W/m3): k_face (T_n - T) / h^2."""
    return half * (kv + k_n) * (t_n - t) * c


@functools.cache
def _kernels(parallel: bool = True):
    # The helpers are module globals, not closure variables: numba's disk cache keys a
    # function on the pickled contents of its closure, and a dispatcher pickles with a
    # per-process id, so a closure over dispatchers missed the cache in every new process
    # (each run recompiled, about 30 s, and added a cache file).  ``variant`` below is the
    # one closure value: it keeps the serial and parallel kernels' cache entries apart.
    global numba, temp_of_enthalpy, enthalpy_of_temp, liquid_fraction, apparent_capacity
    global slot_active, face_flux
    import numba

    from brachycryo.cryo_iceball import kernels_scalar as ks

    jit = numba.njit(cache=True, inline="always", error_model="numpy")
    temp_of_enthalpy = jit(ks.temp_of_enthalpy)
    enthalpy_of_temp = jit(ks.enthalpy_of_temp)
    liquid_fraction = jit(ks.liquid_fraction)
    apparent_capacity = jit(ks.apparent_capacity)
    slot_active = jit(ks.slot_active)
    face_flux = jit(_face_flux)
    variant = bool(parallel)

    @numba.njit(parallel=parallel, cache=True, error_model="numpy")
    def step_kernel(h, tissue, params, hold, hold_temp, couple_coef, couple_slot, temp, cond,
                    tmin, inv_h2, dt, arterial_c, consts, seg_start, seg_tissue, seg_offsets,
                    special_index, special_kji, held_slot, special_h, held_last,
                    advance):  # fmt: skip
        if variant:  # (a compile-time constant; see above)
            pass
        nk, nj, ni = h.shape
        plane = nj * ni
        n_voxels = nk * plane
        n_held = held_slot.size
        zero, half, one = consts[0], consts[1], consts[2]
        ck, cj, ci = inv_h2[0], inv_h2[1], inv_h2[2]
        fh = h.reshape(-1)
        ft = temp.reshape(-1)
        fc = cond.reshape(-1)
        fm = tmin.reshape(-1)
        fo = hold.reshape(-1)
        fs = tissue.reshape(-1)
        # 1. T(H), k(T) and T_min of every voxel without a hold slot
        for q in numba.prange(seg_tissue.size):
            tc = seg_tissue[q]
            cf, cu, cm = params[tc, 0], params[tc, 1], params[tc, 2]
            ts, tl, hl = params[tc, 3], params[tc, 4], params[tc, 5]
            kf, dk = params[tc, 6], params[tc, 7] - params[tc, 6]
            lo, hi = seg_start[q], seg_start[q + 1]
            vh, vt, vc, vm, vo = fh[lo:hi], ft[lo:hi], fc[lo:hi], fm[lo:hi], fo[lo:hi]
            for n in range(hi - lo):
                free = vo[n] < 0
                t = temp_of_enthalpy(vh[n], cf, cu, cm, ts, tl, hl)
                c = kf + liquid_fraction(t, ts, tl, zero, one) * dk
                m = vm[n]
                vt[n] = t if free else vt[n]
                vc[n] = c if free else vc[n]
                vm[n] = min(m, t) if free else m
        # 2. the held voxels: the held temperature (and its H), or T(H) when switched off;
        #    nothing changes for a voxel held at the same temperature as in the last step
        for q in numba.prange(n_held):
            s = held_slot[q]
            th = hold_temp[s]
            if th == held_last[q]:
                continue
            v = special_index[q]
            tc = fs[v]
            cf, cu, cm = params[tc, 0], params[tc, 1], params[tc, 2]
            ts, tl, hl = params[tc, 3], params[tc, 4], params[tc, 5]
            if slot_active(s, hold_temp):
                t = th
                fh[v] = enthalpy_of_temp(t, cf, cu, cm, ts, tl, hl)
            else:
                t = temp_of_enthalpy(fh[v], cf, cu, cm, ts, tl, hl)
            ft[v] = t
            fc[v] = params[tc, 6] + liquid_fraction(t, ts, tl, zero, one) * (
                params[tc, 7] - params[tc, 6])  # fmt: skip
            if t < fm[v]:
                fm[v] = t
            held_last[q] = th
        if not advance:
            return
        # 3. new H of the special voxels not held this step (general path; written in 5)
        for q in numba.prange(special_index.size):
            if q < n_held and held_last[q] == held_last[q]:
                continue  # held
            v = special_index[q]
            k, j, i = special_kji[q, 0], special_kji[q, 1], special_kji[q, 2]
            t, kv = ft[v], fc[v]
            rate = zero
            if k > 0:
                rate += face_flux(kv, t, fc[v - plane], ft[v - plane], ck, half)
            if k < nk - 1:
                rate += face_flux(kv, t, fc[v + plane], ft[v + plane], ck, half)
            if j > 0:
                rate += face_flux(kv, t, fc[v - ni], ft[v - ni], cj, half)
            if j < nj - 1:
                rate += face_flux(kv, t, fc[v + ni], ft[v + ni], cj, half)
            if i > 0:
                rate += face_flux(kv, t, fc[v - 1], ft[v - 1], ci, half)
            if i < ni - 1:
                rate += face_flux(kv, t, fc[v + 1], ft[v + 1], ci, half)
            tc = fs[v]
            ts, tl, kf, ku = params[tc, 3], params[tc, 4], params[tc, 6], params[tc, 7]
            phi = liquid_fraction(t, ts, tl, zero, one)
            rate += phi * (params[tc, 8] * (arterial_c - t) + params[tc, 9])
            cs = couple_slot[k, j, i]
            if slot_active(cs, hold_temp):
                tp = hold_temp[cs]
                kp = kf + liquid_fraction(tp, ts, tl, zero, one) * (ku - kf)
                a = couple_coef[k, j, i] * half * (kv + kp)
                rate += a * (tp - t)
                capp = apparent_capacity(t, params[tc, 0], params[tc, 1], params[tc, 2], ts, tl)
                rate = rate / (one + dt * a / capp)
            special_h[q] = fh[v] + dt * rate
        # 4. H += dt dH/dt for every voxel without a hold slot, uncoupled and with both
        #    i-neighbours in its row; the others (special voxels) are replaced in 5
        for q in numba.prange(seg_tissue.size):
            lo = max(seg_start[q], 1)
            hi = min(seg_start[q + 1], n_voxels - 1)
            if hi <= lo:
                continue
            tc = seg_tissue[q]
            ts, tl, perf, qm = params[tc, 3], params[tc, 4], params[tc, 8], params[tc, 9]
            dkm, dkp = seg_offsets[q, 0], seg_offsets[q, 1]
            djm, djp = seg_offsets[q, 2], seg_offsets[q, 3]
            vh, vo, vt, vc = fh[lo:hi], fo[lo:hi], ft[lo:hi], fc[lo:hi]
            tkm, ckm = ft[lo + dkm : hi + dkm], fc[lo + dkm : hi + dkm]
            tkp, ckp = ft[lo + dkp : hi + dkp], fc[lo + dkp : hi + dkp]
            tjm, cjm = ft[lo + djm : hi + djm], fc[lo + djm : hi + djm]
            tjp, cjp = ft[lo + djp : hi + djp], fc[lo + djp : hi + djp]
            tim, cim = ft[lo - 1 : hi - 1], fc[lo - 1 : hi - 1]
            tip, cip = ft[lo + 1 : hi + 1], fc[lo + 1 : hi + 1]
            for n in range(hi - lo):
                t = vt[n]
                kv = vc[n]
                rate = zero
                rate += face_flux(kv, t, ckm[n], tkm[n], ck, half)
                rate += face_flux(kv, t, ckp[n], tkp[n], ck, half)
                rate += face_flux(kv, t, cjm[n], tjm[n], cj, half)
                rate += face_flux(kv, t, cjp[n], tjp[n], cj, half)
                rate += face_flux(kv, t, cim[n], tim[n], ci, half)
                rate += face_flux(kv, t, cip[n], tip[n], ci, half)
                phi = liquid_fraction(t, ts, tl, zero, one)
                rate += phi * (perf * (arterial_c - t) + qm)
                vh[n] += dt * rate if vo[n] < 0 else zero
        # 5.
        for q in numba.prange(special_index.size):
            if q < n_held and held_last[q] == held_last[q]:
                continue
            fh[special_index[q]] = special_h[q]

    return step_kernel


def _layout(state: dict) -> KernelLayout:
    """The state's :class:`KernelLayout` (built on the first step, kept in ``state``)."""
    lay = state.get("numba_layout")
    if lay is None:
        lay = kernel_layout(state["tissue"], state["hold"], state["couple_slot"], state["h"].dtype)
        state["numba_layout"] = lay
    return lay


@functools.cache
def _constants(dtype: np.dtype) -> np.ndarray:
    """``zero, half, one`` in ``dtype`` (read-only; one array per dtype, not per step)."""
    consts = np.array([0.0, 0.5, 1.0], dtype=dtype)
    consts.flags.writeable = False
    return consts


def _run(state: dict, dt: float, arterial_c: float, hold_temp, advance: bool) -> None:
    s = state
    parallel = s.get("parallel")
    if parallel is None:
        parallel = s["h"].size >= PARALLEL_MIN_VOXELS
    lay = _layout(s)
    real = s["h"].dtype.type
    _kernels(bool(parallel))(
        s["h"], s["tissue"], s["params"], s["hold"], hold_temp, s["couple_coef"],
        s["couple_slot"], s["temp"], s["cond"], s["tmin"], s["inv_h2"], real(dt),
        real(arterial_c), _constants(s["h"].dtype), lay.seg_start, lay.seg_tissue, lay.seg_offsets,
        lay.special_index, lay.special_kji, lay.held_slot, lay.special_h, lay.held_last, advance,
    )  # fmt: skip


def step(state: dict, dt: float, arterial_c: float, hold_temp) -> None:
    _run(state, dt, arterial_c, hold_temp, True)


def temperature_only(state: dict, hold_temp) -> None:
    """Refresh ``temp``/``cond``/``tmin`` from ``h`` without advancing time."""
    _run(state, 0.0, 0.0, hold_temp, False)
