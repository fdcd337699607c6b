"""The TG-43U1 dose rate of one seed at one point, as a plain scalar Python function.

This one function is compiled twice - by ``numba.njit`` for the CPU kernel
(:mod:`brachycryo.dose_kernels.tg43_numba`) and by ``numba.cuda.jit(device=True)`` for the GPU
kernel
(:mod:`brachycryo.dose_kernels.tg43_cuda`) - so the two compiled backends cannot drift apart.  The
numpy reference (:mod:`brachycryo.dose_kernels.tg43_numpy`) is an independent vectorised
implementation of the same rules, and parity tests compare all of them.

It is written for the compilers: no numpy calls, only ``math``, and no float literals in
arithmetic (``one`` and the other constants arrive in the compute dtype, so float32 stays
float32).  The formulas and the near-source rule are documented in
:mod:`brachycryo.dose_kernels.dose`.  The numba CPU kernels themselves (:func:`numba_kernels`) live
at
the end of this file, for the on-disk cache's sake (see :mod:`brachycryo.dose_kernels.tg43_numba`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

from numba.extending import register_jitable

__all__ = [
    "ATAN_COEFFS",
    "atan2_nonneg",
    "atan_constants",
    "interval",
    "numba_kernels",
    "tg43_rate_per_u",
]

#: atan(t) = t + t·z·Σ c_k z^k, z = t², for |t| <= tan(π/12): a degree-7 least-squares fit on
#: Chebyshev nodes made for this module (max relative error 2.2e-16 in float64, 1 ulp in
#: float32).  libm's atan2 costs ~25 ns per call on the CI CPU; this costs a few.
ATAN_COEFFS = (
    -0.33333333333332604,
    0.1999999999966283,
    -0.1428571422131966,
    0.1111110502596027,
    -0.09090598803722251,
    0.07683337325842667,
    -0.06518843749473635,
    0.04568063830281327,
)


def atan_constants() -> tuple[float, ...]:
    """Constants of :func:`atan2_nonneg`: π/6, π/2, π, √3, tan(π/12), 1, then ATAN_COEFFS."""
    return (
        math.pi / 6,
        math.pi / 2,
        math.pi,
        math.sqrt(3.0),
        math.tan(math.pi / 12),
        1.0,
        *ATAN_COEFFS,
    )


@register_jitable
def atan2_nonneg(y, x, c):
    """atan2(y, x) for y >= 0 and (y, x) != (0, 0), computed in the dtype of ``c``.

    Octant reduction to t = min(y, |x|) / max(y, |x|) in [0, 1]; t > tan(π/12) is mapped by
    atan(t) = π/6 + atan((√3 t − 1)/(t + √3)); then the odd polynomial ``ATAN_COEFFS``;
    finally atan2 = π/2 − a if y > |x|, and π − a if x < 0.
    """
    ax = abs(x)
    big = y > ax
    num = ax if big else y
    den = y if big else ax
    t = num / den
    off = c[5] - c[5]
    if t > c[4]:
        t = (c[3] * t - c[5]) / (t + c[3])
        off = c[0]
    z = t * t
    q = c[13]
    q = q * z + c[12]
    q = q * z + c[11]
    q = q * z + c[10]
    q = q * z + c[9]
    q = q * z + c[8]
    q = q * z + c[7]
    q = q * z + c[6]
    a = off + (t + t * (z * q))
    if big:
        a = c[1] - a
    if x < 0:
        a = c[2] - a
    return a


@register_jitable
def interval(v, nodes):
    """Index lo of the table interval holding v: nodes[lo] <= v < nodes[lo + 1], with
    0 <= lo <= n − 2 (binary search; v outside the table gives the end intervals)."""
    n = nodes.shape[0]
    if n < 2:
        return 0
    lo = 0
    hi = n - 1
    while hi - lo > 1:
        mid = (lo + hi) >> 1
        if nodes[mid] <= v:
            lo = mid
        else:
            hi = mid
    return lo


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
    atan_c,
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
            geom = atan2_nonneg(x, d, atan_c) / x
        # polar angle folded about 90 deg: F(r, 180 - theta) = F(r, theta)
        theta = atan2_nonneg(rho, abs(z), atan_c) * rad2deg
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
            ir = interval(rr, f_r)
            ir1 = ir + 1
            tr = (rr - f_r[ir]) / (f_r[ir1] - f_r[ir])
        nt = f_t.shape[0]
        tt_ = theta
        if tt_ > f_t[nt - 1]:
            tt_ = f_t[nt - 1]
        lo = interval(tt_, f_t)
        hi = lo + 1
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
        geom = atan2_nonneg(x, d, atan_c) / x
        n = phi_r.shape[0]
        if r <= phi_r[0]:
            aniso = phi[0]
        elif r >= phi_r[n - 1]:
            aniso = phi[n - 1]
        else:
            lo = interval(r, phi_r)
            hi = lo + 1
            aniso = phi[lo] + (r - phi_r[lo]) / (phi_r[hi] - phi_r[lo]) * (phi[hi] - phi[lo])
    # g_L(r): log-linear inside, g_L(r_min) below, log-linear tail beyond r_max
    n = gl_r.shape[0]
    if r <= gl_r[0]:
        lg = gl_log[0]
    elif r >= gl_r[n - 1]:
        lg = gl_log[n - 1] + (r - gl_r[n - 1]) * gl_tail
    else:
        lo = interval(r, gl_r)
        hi = lo + 1
        lg = gl_log[lo] + (r - gl_r[lo]) / (gl_r[hi] - gl_r[lo]) * (gl_log[hi] - gl_log[lo])
    return norm * geom * math.exp(lg) * aniso


# --------------------------------------------------------------------------- CPU kernels
# Defined here, beside the function they inline, so that numba's file-based cache is
# invalidated whenever that function changes (see brachycryo.dose_kernels.tg43_numba).
class _Kernels(NamedTuple):
    """The compiled CPU kernels; each fills its ``out`` argument (positional arrays)."""

    points_sum: Callable[..., None]
    grid_sum: Callable[..., None]
    points_matrix: Callable[..., None]


@functools.cache
def numba_kernels() -> _Kernels:
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
