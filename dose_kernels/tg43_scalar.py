"""The TG-43U1 dose rate of one seed at one point, as a plain scalar Python function.

This one function is compiled twice - by ``numba.njit`` for the CPU kernel
(:mod:`dose_kernels.tg43_numba`) and by ``numba.cuda.jit(device=True)`` for the GPU kernel
(:mod:`dose_kernels.tg43_cuda`) - so the two compiled backends cannot drift apart.  The
numpy reference (:mod:`dose_kernels.tg43_numpy`) is an independent vectorised
implementation of the same rules, and parity tests compare all of them.

It is written for the compilers: no numpy calls, only ``math``, and no float literals in
arithmetic (``one`` and the other constants arrive in the compute dtype, so float32 stays
float32).  The formulas and the near-source rule are documented in
:mod:`dose_kernels.dose`.
"""

from __future__ import annotations

import math

__all__ = ["tg43_rate_per_u"]


def tg43_rate_per_u(
    dx,
    dy,
    dz,
    ux,
    uy,
    uz,
    line,
    length_mm,
    half_length_mm,
    min_distance_mm,
    rad2deg,
    one,
    small_x,
    norm,
    gl_r,
    gl_log,
    gl_tail,
    f_r,
    f_t,
    f_tab,
    phi_r,
    phi,
):
    """Dose rate per unit air-kerma strength (Gy h⁻¹ U⁻¹) at displacement d from the seed.

    ``(dx, dy, dz)`` is the point minus the seed centre (mm), ``(ux, uy, uz)`` the unit axis.
    """
    # axial coordinate and distance from the axis (|d × u| keeps precision near the axis)
    z = dx * ux + dy * uy + dz * uz
    cx = dy * uz - dz * uy
    cy = dz * ux - dx * uz
    cz = dx * uy - dy * ux
    rho = math.sqrt(cx * cx + cy * cy + cz * cz)
    if line:
        # near-source rule: at least min_distance from the active segment [-L/2, L/2]
        zc = z
        if zc > half_length_mm:
            zc = half_length_mm
        if zc < -half_length_mm:
            zc = -half_length_mm
        dzs = z - zc
        dseg = math.sqrt(rho * rho + dzs * dzs)
        if dseg < min_distance_mm:
            if dseg > small_x * min_distance_mm:
                s = min_distance_mm / dseg
                rho = rho * s
                z = zc + dzs * s
            else:
                rho = min_distance_mm
                z = zc
        r2 = rho * rho + z * z
        r = math.sqrt(r2)
        # geometry function G_L = beta / (L r sin(theta)), beta = atan2(L rho, r^2 - L^2/4)
        d = r2 - half_length_mm * half_length_mm
        x = length_mm * rho
        if x < small_x * d:
            geom = one / d
        else:
            geom = math.atan2(x, d) / x
        # polar angle folded about 90 deg: F(r, 180 - theta) = F(r, theta)
        theta = math.atan2(rho, abs(z)) * rad2deg
        # F(r, theta): bilinear, r clamped to the table
        nr = f_r.shape[0]
        rr = r
        if rr < f_r[0]:
            rr = f_r[0]
        if rr > f_r[nr - 1]:
            rr = f_r[nr - 1]
        ir = 0
        ir1 = 0
        tr = one - one
        if nr > 1:
            lo = 0
            hi = nr - 1
            while hi - lo > 1:
                mid = (lo + hi) >> 1
                if f_r[mid] <= rr:
                    lo = mid
                else:
                    hi = mid
            ir = lo
            ir1 = hi
            tr = (rr - f_r[lo]) / (f_r[hi] - f_r[lo])
        nt = f_t.shape[0]
        tt_ = theta
        if tt_ > f_t[nt - 1]:
            tt_ = f_t[nt - 1]
        lo = 0
        hi = nt - 1
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if f_t[mid] <= tt_:
                lo = mid
            else:
                hi = mid
        tt = (tt_ - f_t[lo]) / (f_t[hi] - f_t[lo])
        f_lo = f_tab[lo, ir] + tr * (f_tab[lo, ir1] - f_tab[lo, ir])
        f_hi = f_tab[hi, ir] + tr * (f_tab[hi, ir1] - f_tab[hi, ir])
        aniso = f_lo + tt * (f_hi - f_lo)
    else:
        r = math.sqrt(rho * rho + z * z)
        if r < min_distance_mm:
            r = min_distance_mm
        # 1D formalism, TG-43U1 Eq. 11: G_L(r, 90 deg) with phi_an(r)
        d = r * r - half_length_mm * half_length_mm
        x = length_mm * r
        geom = math.atan2(x, d) / x
        n = phi_r.shape[0]
        if r <= phi_r[0]:
            aniso = phi[0]
        elif r >= phi_r[n - 1]:
            aniso = phi[n - 1]
        else:
            lo = 0
            hi = n - 1
            while hi - lo > 1:
                mid = (lo + hi) >> 1
                if phi_r[mid] <= r:
                    lo = mid
                else:
                    hi = mid
            aniso = phi[lo] + (r - phi_r[lo]) / (phi_r[hi] - phi_r[lo]) * (phi[hi] - phi[lo])
    # g_L(r): log-linear inside, g_L(r_min) below, log-linear tail beyond r_max
    n = gl_r.shape[0]
    if r <= gl_r[0]:
        lg = gl_log[0]
    elif r >= gl_r[n - 1]:
        lg = gl_log[n - 1] + (r - gl_r[n - 1]) * gl_tail
    else:
        lo = 0
        hi = n - 1
        while hi - lo > 1:
            mid = (lo + hi) >> 1
            if gl_r[mid] <= r:
                lo = mid
            else:
                hi = mid
        lg = gl_log[lo] + (r - gl_r[lo]) / (gl_r[hi] - gl_r[lo]) * (gl_log[hi] - gl_log[lo])
    return norm * geom * math.exp(lg) * aniso
