"""Per-voxel arithmetic shared by the numba CPU and the numba.cuda GPU kernels.

Plain Python functions (nothing is compiled at import): :mod:`brachycryo.cryo_iceball.kernels_numba`
wraps them with ``numba.njit`` and :mod:`brachycryo.cryo_iceball.kernels_cuda` with
``numba.cuda.jit(device=True)``, so both backends run the same source.  The formulas are
those of :mod:`brachycryo.cryo_iceball.kernels_numpy` (the reference) and
:mod:`brachycryo.cryo_iceball.tissue`.

``zero`` and ``one`` are passed in rather than written as literals so that a caller can
keep the arithmetic in the arrays' precision (a float literal is float64 in numba and
would promote float32 arithmetic; see :mod:`brachycryo.cryo_iceball.kernels_numba`).
"""

from __future__ import annotations

import math


def temp_of_enthalpy(h, cf, cu, cm, ts, tl, hl):
    if h <= 0.0:
        return ts + h / cf
    if h >= hl:
        return tl + (h - hl) / cu
    return ts + h / cm


def enthalpy_of_temp(t, cf, cu, cm, ts, tl, hl):
    if t <= ts:
        return cf * (t - ts)
    if t >= tl:
        return hl + cu * (t - tl)
    return cm * (t - ts)


def apparent_capacity(t, cf, cu, cm, ts, tl):
    """dH/dT at ``t`` (J/m3/K): frozen, unfrozen or mushy (latent heat included)."""
    if t <= ts:
        return cf
    if t >= tl:
        return cu
    return cm


def liquid_fraction(t, ts, tl, zero, one):
    f = (t - ts) / (tl - ts)
    if f < zero:
        return zero
    if f > one:
        return one
    return f


def slot_active(slot, hold_temp):
    """True when ``slot`` >= 0 and its temperature is not NaN (boundary switched on)."""
    if slot < 0:
        return False
    return not math.isnan(hold_temp[slot])
