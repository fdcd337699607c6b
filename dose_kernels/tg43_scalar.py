"""The TG-43U1 dose rate of one seed at one point, as plain scalar Python functions.

These functions are compiled twice - by ``numba.njit`` for the CPU kernels (defined at the end of
this file, wrapped by :mod:`brachycryo.dose_kernels.tg43_numba`) and by
``numba.cuda.jit(device=True)`` for the GPU kernels (:mod:`brachycryo.dose_kernels.tg43_cuda`) -
so the two compiled backends cannot drift apart.  The numpy reference
(:mod:`brachycryo.dose_kernels.tg43_numpy`) is an independent vectorised implementation of the
same rules, and parity tests compare all of them.

Written for the compilers: branch-free (every ``a if c else b`` in the helpers is a select
once compiled) and without search loops - the form a vectorising compiler needs:

* no numpy calls, only ``math.sqrt`` and arithmetic, and no float literals in arithmetic (the
  constants arrive in the compute dtype with the tables, so float32 stays float32);
* table cells are found in O(1), by one multiply and a truncation: at table-build time
  (:func:`brachycryo.dose_kernels.kernel_tables.uniform_grid`) each published table is
  resampled on a uniform grid that contains every published node (step = the greatest common
  divisor of the node intervals), which leaves the piecewise-linear (bilinear for F) table
  unchanged - the values at the nodes are the published ones, bit for bit (:func:`cell_of`);
* interpolation is in slope form ``v[i] + (x − x[i])·slope[i]`` with the continuation beyond the
  last node as the last slope (the log-linear g_L tail, TG-43U1; zero slope = clamped), so a
  node gives its tabulated value exactly;
* ``exp`` is a polynomial after Cody-Waite reduction with 2^k built from selects on the bits
  of k (:func:`exp_fast`, no table), ``atan2`` a polynomial after octant reduction
  (:func:`atan2_nonneg`): libm calls would keep the loops scalar.

The physics is split in three steps that :func:`tg43_rate_per_u` (what the CUDA kernels
compile) composes per point and the CPU kernels run as three loops over a row of voxels:
the table-free geometry (:func:`line_geometry`, :func:`point_geometry`: arithmetic only, which
LLVM vectorises), the table reads (:func:`line_tables`, :func:`point_tables`: ln g_L and F or
φ_an, scalar loads) and ``norm · G · exp(ln g_L) · F`` (vectorised again), in the same order
of operations.  The helpers that take the table bundle are inlined at numba's IR level
(``inline="always"``): called as separate numba functions, every array argument is
reference-counted (atomic increments) around every call.  For the same reason the vectorised
loops get the polynomial constants as tuples, not arrays, and rows and tables are indexed
with unsigned integers: numba fixes up a possibly negative signed index on every access,
which keeps LLVM from vectorising.  ``benchmarks/tg43_speed.py`` records the measurements.

The formulas and the near-source rule are documented in :mod:`brachycryo.dose_kernels.dose`.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import numba
import numpy as np
from numba.extending import register_jitable
from numba.np.unsafe.ndarray import to_fixed_tuple

__all__ = [
    "ATAN_COEFFS",
    "EXP_DEGREE",
    "POW2_MAX_EXPONENT",
    "POW2_MIN_EXPONENT",
    "anisotropy_at",
    "atan2_nonneg",
    "atan_constants",
    "cell_of",
    "exp_constants",
    "exp_fast",
    "line_rate_per_u",
    "ln_gl_at",
    "numba_kernels",
    "point_rate_per_u",
    "table_at",
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

#: exp(f) for |f| <= ln2/2 by its Taylor polynomial of this degree: remainder
#: (ln2/2)^12/12! < 2e-15 relative.
EXP_DEGREE = 11
#: Bits of |k| in exp(y) = 2^k·exp(f): |k| <= -POW2_MIN_EXPONENT < 2^EXP_BITS.
EXP_BITS = 11
#: exp(y) = 2^k·exp(f) with k clamped to [POW2_MIN_EXPONENT, POW2_MAX_EXPONENT]; exp(y) below
#: 2^POW2_MIN_EXPONENT is 0 in both dtypes (float64 underflows below 2^-1074).
POW2_MIN_EXPONENT = -1100
POW2_MAX_EXPONENT = 126


#: 1 as an unsigned index (an unsigned index plus a signed literal would be a float in numba).
U1 = np.uintp(1)
#: Number of :func:`atan_constants` and of :func:`exp_constants`.
ATAN_N = len(ATAN_COEFFS) + 7
EXP_N = 7 + EXP_DEGREE + 1 + 3 * EXP_BITS


def atan_constants() -> tuple[float, ...]:
    """Constants of :func:`atan2_nonneg`: π/6, π/2, π, √3, tan(π/12), 1, then ATAN_COEFFS, 0."""
    return (
        math.pi / 6,
        math.pi / 2,
        math.pi,
        math.sqrt(3.0),
        math.tan(math.pi / 12),
        1.0,
        *ATAN_COEFFS,
        0.0,
    )


def exp_constants(float32: bool) -> tuple[float, ...]:
    """Constants of :func:`exp_fast` for the compute dtype.

    1/ln2; ln2 split Cody-Waite style into a head with trailing zero bits (so ``k·ln2_hi`` is
    exact for |k| < 2^11) and a tail; the round-to-nearest shifter 1.5·2^(p−1) (p = 24 or 53
    significand bits: ``(x + s) − s`` rounds x to an integer in that dtype without an int
    conversion); the clamp range of y; 0; 1/j! for j = 0 … EXP_DEGREE; then, for each bit b of
    |k| from EXP_BITS − 1 down to 0: 2^b, 2^(2^b) and 2^−(2^b) (2^(2^b) is 1 where 2^b exceeds
    POW2_MAX_EXPONENT: k never has that bit).

    2^−(2^b) is 0 where it would be subnormal in the dtype (2^−128 in float32, 2^−1024 in
    float64), so exp(y) is 0 below ~2^−127 (float32) or ~2^−1023 (float64).  A subnormal
    constant made every vectorised ``exp_fast`` of a negative argument slow: the select in
    :func:`_pow2_bit` comes after the multiply, so each call multiplied by 2^−128 in the
    lanes it discards, and a subnormal operand costs a microcode assist (~100 cycles on
    Intel; Intel 64 and IA-32 Architectures Optimization Reference Manual, "Floating-point
    exceptions", denormals).  Measured: the exp stage of the float32 grid kernel went from
    ~12 to ~3 ns per evaluation.
    """
    if float32:
        ln2_hi, ln2_lo, shifter = 0.693359375, -2.12194440e-4, 1.5 * 2.0**23
    else:
        ln2_hi, ln2_lo = 6.93147180369123816490e-01, 1.90821492927058770002e-10
        shifter = 1.5 * 2.0**52
    ln2 = math.log(2.0)
    # smallest normal exponent of the dtype: a smaller 2^-(2^b) would be subnormal
    min_normal = -126 if float32 else -1022
    bits: list[float] = []
    for b in range(EXP_BITS - 1, -1, -1):
        step = 2**b
        up = 2.0**step if step <= POW2_MAX_EXPONENT else 1.0
        bits += [float(step), up, 2.0**-step if -step >= min_normal else 0.0]
    return (
        1.0 / ln2,
        ln2_hi,
        ln2_lo,
        shifter,
        (POW2_MIN_EXPONENT + 1) * ln2,
        (POW2_MAX_EXPONENT - 1) * ln2,
        0.0,
        *(1.0 / math.factorial(j) for j in range(EXP_DEGREE + 1)),
        *bits,
    )


@register_jitable
def atan2_nonneg(y, x, c):
    """atan2(y, x) for y >= 0 and (y, x) != (0, 0), computed in the dtype of ``c``.

    Octant reduction to t = n / d = min(y, |x|) / max(y, |x|) in [0, 1]; t > tan(π/12) is
    mapped by atan(t) = π/6 + atan((√3 t − 1)/(t + √3)), computed as (√3 n − d)/(n + √3 d)
    so that one division serves both cases (numerator and denominator are selected first: a
    vectorised select evaluates both sides, and the divider is the slowest unit of the
    kernels' loops); then the odd polynomial ``ATAN_COEFFS``; finally atan2 = π/2 − a if
    y > |x|, and π − a if x < 0.  Branch-free (selects).
    """
    zero = c[14]
    ax = abs(x)
    big = y > ax
    num = ax if big else y
    den = y if big else ax
    red = num > c[4] * den
    t = (c[3] * num - den if red else num) / (num + c[3] * den if red else den)
    off = c[0] if red else zero
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
    a = c[1] - a if big else a
    return c[2] - a if x < zero else a


@register_jitable
def exp_fast(y, c):
    """exp(y) in the dtype of ``c`` (constants :func:`exp_constants`, an array or a tuple):
    y = k·ln2 + f, |f| <= ln2/2, exp(y) = 2^k · Σ f^j/j!, with 2^k the product of the exact
    powers 2^(±2^b) of the bits b of |k| (selects; no table read, so a loop over it
    vectorises).  Relative error a few ulp; 0 where exp(y) is subnormal (:func:`exp_constants`)."""
    y = min(max(y, c[4]), c[5])
    k = (y * c[0] + c[3]) - c[3]
    f = (y - k * c[1]) - k * c[2]
    p = c[18]
    p = p * f + c[17]
    p = p * f + c[16]
    p = p * f + c[15]
    p = p * f + c[14]
    p = p * f + c[13]
    p = p * f + c[12]
    p = p * f + c[11]
    p = p * f + c[10]
    p = p * f + c[9]
    p = p * f + c[8]
    p = p * f + c[7]
    # 2^k, bit by bit of |k| (unrolled: constant indices keep a tuple ``c`` in registers)
    neg = k < c[6]
    a = abs(k)
    q = c[7]
    a, q = _pow2_bit(a, q, neg, c[19], c[20], c[21])
    a, q = _pow2_bit(a, q, neg, c[22], c[23], c[24])
    a, q = _pow2_bit(a, q, neg, c[25], c[26], c[27])
    a, q = _pow2_bit(a, q, neg, c[28], c[29], c[30])
    a, q = _pow2_bit(a, q, neg, c[31], c[32], c[33])
    a, q = _pow2_bit(a, q, neg, c[34], c[35], c[36])
    a, q = _pow2_bit(a, q, neg, c[37], c[38], c[39])
    a, q = _pow2_bit(a, q, neg, c[40], c[41], c[42])
    a, q = _pow2_bit(a, q, neg, c[43], c[44], c[45])
    a, q = _pow2_bit(a, q, neg, c[46], c[47], c[48])
    a, q = _pow2_bit(a, q, neg, c[49], c[50], c[51])
    return p * q


@register_jitable
def _pow2_bit(a, q, neg, step, up, down):
    """One bit of 2^k in :func:`exp_fast`: if |k|'s remainder ``a`` holds ``step`` = 2^b,
    take it off and scale ``q`` by 2^(2^b) (``up``) or 2^−(2^b) (``down``, k < 0)."""
    has = a >= step
    return (a - step if has else a), (q * (down if neg else up) if has else q)


@register_jitable(inline="always")
def cell_of(v, x, inv_h, last):
    """Index of the uniform-grid cell holding v >= x[0], clamped to [0, last] (``last`` a
    float in the compute dtype); unsigned (``np.uintp``), so that the compiled table reads
    carry no negative-index fix-up.  A value within rounding of a grid point may land in the
    neighbouring cell, where the slope form gives the same value up to rounding (the table
    is continuous)."""
    return np.uintp(int(min((v - x[0]) * inv_h, last)))


@register_jitable(inline="always")
def table_at(v, x, values, slope, inv_h, last):
    """A piecewise-linear table in slope form on a uniform grid ``x``,
    ``values[c] + (v − x[c])·slope[c]``, at v (below the first node held at the first
    node; the last slope continues past the last)."""
    v = max(v, x[0])
    c = cell_of(v, x, inv_h, last)
    return values[c] + (v - x[c]) * slope[c]


@register_jitable(inline="always")
def anisotropy_at(r, theta_deg, t):
    """F(r, θ) of ``t`` (a ``kernel_tables.KernelTables``): bilinear on the uniform
    (θ, r) grid, r and θ clamped to the table."""
    r = max(r, t.f_x_r[0])
    theta_deg = min(max(theta_deg, t.f_x_t[0]), t.f_x_t[t.f_x_t.shape[0] - 1])
    ir = cell_of(r, t.f_x_r, t.f_r_inv_h, t.f_r_last)
    it = cell_of(theta_deg, t.f_x_t, t.f_t_inv_h, t.f_t_last)
    it1 = it + U1
    dr = r - t.f_x_r[ir]
    lo = t.f_grid[it, ir] + dr * t.f_slope_r[it, ir]
    hi = t.f_grid[it1, ir] + dr * t.f_slope_r[it1, ir]
    w = (theta_deg - t.f_x_t[it]) * t.f_t_inv_h
    return lo + w * (hi - lo)


@register_jitable(inline="always")
def ln_gl_at(r, t):
    """ln g_L(r): linear inside the table (g_L log-linear), ln g_L(r_min) below, the
    log-linear tail beyond; g_L = ``exp_fast(ln_gl_at(r, t), t.exp_c)``."""
    return table_at(r, t.gl_x, t.gl_v, t.gl_slope, t.gl_inv_h, t.gl_last)


@register_jitable(inline="always")
def line_geometry(dx, dy, dz, ux, uy, uz, t, atan_c):
    """The table-free part of the 2D line-source formalism (TG-43U1 Eq. 1, 4) at
    displacement d from the seed, ``(ux, uy, uz)`` the unit axis, ``t`` a
    ``kernel_tables.KernelTables`` in the compute dtype: ``(r, θ, G_L)`` after the
    near-source rule, θ in degrees folded about 90° (F(r, 180° − θ) = F(r, θ)).
    Arithmetic only, so the compiled loops over it vectorise; ``atan_c`` is ``t.atan_c``, or
    the same constants as a tuple (the CPU kernels: an array read in the loop would be
    reference-counted and keep it scalar)."""
    one = t.one
    hl = t.half_length_mm
    dmin = t.min_distance_mm
    # axial coordinate and distance from the axis (|d × u| keeps precision near the axis)
    z = dx * ux + dy * uy + dz * uz
    cx = dy * uz - dz * uy
    cy = dz * ux - dx * uz
    cz = dx * uy - dy * ux
    rho2 = cx * cx + cy * cy + cz * cz
    # near-source rule: at least min_distance from the active segment [-L/2, L/2]
    zc = min(max(z, -hl), hl)
    dzs = z - zc
    dseg = math.sqrt(rho2 + dzs * dzs)
    on_seg = dseg <= t.small_x * dmin
    s = dmin / (dmin if on_seg else dseg) if dseg < dmin else one
    rho = dmin if on_seg else math.sqrt(rho2) * s
    z = zc if on_seg else zc + dzs * s
    r2 = rho * rho + z * z
    r = math.sqrt(r2)
    # geometry function G_L = beta / (L r sin(theta)), beta = atan2(L rho, r^2 - L^2/4)
    d = r2 - hl * hl
    x = t.length_mm * rho
    beta = atan2_nonneg(x, d, atan_c)
    # one division for both cases (a select evaluates both sides: see atan2_nonneg)
    on_axis = x < t.small_x * d
    geom = (one if on_axis else beta) / (d if on_axis else x)
    # polar angle folded about 90 deg: F(r, 180 - theta) = F(r, theta)
    theta = atan2_nonneg(rho, abs(z), atan_c) * t.rad2deg
    return r, theta, geom


@register_jitable(inline="always")
def line_tables(r, theta_deg, t):
    """The table reads of the line formalism, ``(ln g_L(r), F(r, θ))``."""
    return ln_gl_at(r, t), anisotropy_at(r, theta_deg, t)


@register_jitable(inline="always")
def line_rate_per_u(dx, dy, dz, ux, uy, uz, t):
    """Dose rate per unit air-kerma strength (Gy h⁻¹ U⁻¹), 2D line-source formalism
    (TG-43U1 Eq. 1): Λ/G_L(r₀, θ₀) · G_L(r, θ) · g_L(r) · F(r, θ), from
    :func:`line_geometry` and :func:`line_tables` (the CPU kernels run the same three
    steps as separate loops, in this order of products)."""
    r, theta, geom = line_geometry(dx, dy, dz, ux, uy, uz, t, t.atan_c)
    lg, f = line_tables(r, theta, t)
    return t.norm * geom * exp_fast(lg, t.exp_c) * f


@register_jitable(inline="always")
def point_geometry(dx, dy, dz, t, atan_c):
    """The table-free part of the 1D formalism (TG-43U1 Eq. 11): ``(r, G_L(r, 90°))`` with
    r >= min_distance; arithmetic only (``atan_c`` as in :func:`line_geometry`)."""
    r = max(math.sqrt(dx * dx + dy * dy + dz * dz), t.min_distance_mm)
    hl = t.half_length_mm
    d = r * r - hl * hl
    x = t.length_mm * r
    return r, atan2_nonneg(x, d, atan_c) / x


@register_jitable(inline="always")
def point_tables(r, t):
    """The table reads of the 1D formalism, ``(ln g_L(r), φ_an(r))``."""
    aniso = table_at(r, t.phi_x, t.phi_v, t.phi_slope, t.phi_inv_h, t.phi_last)
    return ln_gl_at(r, t), aniso


@register_jitable(inline="always")
def point_rate_per_u(dx, dy, dz, ux, uy, uz, t):
    """Dose rate per unit air-kerma strength (Gy h⁻¹ U⁻¹), 1D formalism (TG-43U1 Eq. 11:
    G_L(r, 90°) with φ_an(r)); the axis ``(ux, uy, uz)`` is not used."""
    r, geom = point_geometry(dx, dy, dz, t, t.atan_c)
    lg, aniso = point_tables(r, t)
    return t.norm * geom * exp_fast(lg, t.exp_c) * aniso


@register_jitable
def tg43_rate_per_u(dx, dy, dz, ux, uy, uz, t):
    """Dose rate per U at displacement d from the seed, in the formalism ``t.line`` selects."""
    if t.line:
        return line_rate_per_u(dx, dy, dz, ux, uy, uz, t)
    return point_rate_per_u(dx, dy, dz, ux, uy, uz, t)


# --------------------------------------------------------------------------- CPU kernels
# Defined here, beside the functions they inline, so that numba's file-based cache is
# invalidated whenever those functions change (see brachycryo.dose_kernels.tg43_numba).
class _Kernels(NamedTuple):
    """The compiled CPU kernels; each fills its ``out`` argument."""

    points_sum: Callable[..., None]
    grid_sum: Callable[..., None]
    points_matrix: Callable[..., None]


#: Points per parallel task of ``points_sum`` and ``points_matrix``.
POINTS_BLOCK = 256
#: The one fast-math flag of the CPU kernels: ``contract`` lets LLVM fuse a·b + c into one
#: fused multiply-add (one rounding instead of two: never less accurate, and it cannot turn a
#: finite value into NaN or inf - the flags that could, ``nnan``/``ninf``/``afn``, stay off).
#: A table node still gives its tabulated value exactly: ``v + 0·slope`` is v in an FMA too.
#: The same lane does the same operations whatever the thread count (results stay
#: bit-identical on 1 and 2 threads).  Measured (grid, 100 seeds x 64^3, line float32, one
#: thread, CPU ns per evaluation): 16.3 -> 12.5; the geometry loop alone 7.5 -> 5.5.
_FASTMATH = {"contract"}


@register_jitable(inline="always")
def _tables_row(i0, i1, rb, ab, t):
    """The table stage of a row, for i in [i0, i1): ``rb[i], ab[i] ← ln g_L(rb[i]),
    F(rb[i], ab[i])`` (line) or ``ln g_L(rb[i]), φ_an(rb[i])`` (point).  Scalar code: the
    kernels' bundle of tables keeps LLVM from proving that these reads and the row's stores
    do not overlap, and a scalar load costs less than a gather anyway."""
    if t.line:
        for i in range(np.uintp(i0), np.uintp(i1)):
            rb[i], ab[i] = line_tables(rb[i], ab[i], t)
    else:
        for i in range(np.uintp(i0), np.uintp(i1)):
            rb[i], ab[i] = point_tables(rb[i], t)


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath=_FASTMATH)
def _points_sum(pts_t, spos, sdir, w, cut2, out, t):
    m = out.shape[0]
    n = spos.shape[0]
    dt = out.dtype
    zero = t.one - t.one
    norm = t.norm
    nblocks = (m + POINTS_BLOCK - 1) // POINTS_BLOCK
    for b in numba.prange(nblocks):
        # tuples (see line_geometry); the type: ignore as in tg43_cuda (an intrinsic's stub)
        ac = to_fixed_tuple(t.atan_c, ATAN_N)  # type: ignore[call-arg, var-annotated]
        ec = to_fixed_tuple(t.exp_c, EXP_N)
        a = b * POINTS_BLOCK
        nb = min(m, a + POINTS_BLOCK) - a
        acc = np.zeros(nb)
        rb = np.empty(nb, dtype=dt)
        ab = np.zeros(nb, dtype=dt)
        vb = np.empty(nb, dtype=dt)
        for s in range(n):
            sx, sy, sz = spos[s, 0], spos[s, 1], spos[s, 2]
            ux, uy, uz = sdir[s, 0], sdir[s, 1], sdir[s, 2]
            ws = w[s]
            if t.line:
                for q in range(nb):
                    dx = pts_t[0, a + q] - sx
                    dy = pts_t[1, a + q] - sy
                    dz = pts_t[2, a + q] - sz
                    r, th, g = line_geometry(
                        dt.type(dx), dt.type(dy), dt.type(dz), ux, uy, uz, t, ac
                    )
                    rb[q] = r
                    ab[q] = th
                    vb[q] = norm * g if dx * dx + dy * dy + dz * dz <= cut2 else zero
            else:
                for q in range(nb):
                    dx = pts_t[0, a + q] - sx
                    dy = pts_t[1, a + q] - sy
                    dz = pts_t[2, a + q] - sz
                    r, g = point_geometry(dt.type(dx), dt.type(dy), dt.type(dz), t, ac)
                    rb[q] = r
                    vb[q] = norm * g if dx * dx + dy * dy + dz * dz <= cut2 else zero
            _tables_row(0, nb, rb, ab, t)
            for q in range(nb):
                acc[q] += ws * (vb[q] * exp_fast(rb[q], ec) * ab[q])
        for q in range(nb):
            out[a + q] = acc[q]


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath=_FASTMATH)
def _grid_sum(origin, axes, spos, sdir, w, cut2, out, t):
    nk, nj, ni = out.shape
    n = spos.shape[0]
    dt = out.dtype
    zero = t.one - t.one
    norm = t.norm
    ax, ay, az = axes[0, 0], axes[0, 1], axes[0, 2]
    a2 = ax * ax + ay * ay + az * az
    for kj in numba.prange(nk * nj):
        # tuples (see line_geometry); the type: ignore as in tg43_cuda (an intrinsic's stub)
        ac = to_fixed_tuple(t.atan_c, ATAN_N)  # type: ignore[call-arg, var-annotated]
        ec = to_fixed_tuple(t.exp_c, EXP_N)
        k = kj // nj
        j = kj - k * nj
        bx = origin[0] + j * axes[1, 0] + k * axes[2, 0]
        by = origin[1] + j * axes[1, 1] + k * axes[2, 1]
        bz = origin[2] + j * axes[1, 2] + k * axes[2, 2]
        acc = np.zeros(ni)
        rb = np.empty(ni, dtype=dt)
        ab = np.zeros(ni, dtype=dt)
        vb = np.empty(ni, dtype=dt)
        for s in range(n):
            ox = bx - spos[s, 0]
            oy = by - spos[s, 1]
            oz = bz - spos[s, 2]
            ux, uy, uz = sdir[s, 0], sdir[s, 1], sdir[s, 2]
            ws = w[s]
            i0, i1 = 0, ni
            if cut2 < np.inf:
                # |o + i a|^2 <= cut2: i between the roots, widened by one voxel
                bq = ox * ax + oy * ay + oz * az
                disc = bq * bq - a2 * (ox * ox + oy * oy + oz * oz - cut2)
                if disc < 0.0:
                    continue
                sq = math.sqrt(disc)
                i0 = max(0, math.floor((-bq - sq) / a2) - 1)
                # kept >= i0 >= 0: the row loops below run over unsigned indices
                i1 = max(i0, min(ni, math.floor((-bq + sq) / a2) + 2))
            if t.line:
                for i in range(np.uintp(i0), np.uintp(i1)):
                    dx = ox + i * ax
                    dy = oy + i * ay
                    dz = oz + i * az
                    r, th, g = line_geometry(
                        dt.type(dx), dt.type(dy), dt.type(dz), ux, uy, uz, t, ac
                    )
                    rb[i] = r
                    ab[i] = th
                    vb[i] = norm * g if dx * dx + dy * dy + dz * dz <= cut2 else zero
            else:
                for i in range(np.uintp(i0), np.uintp(i1)):
                    dx = ox + i * ax
                    dy = oy + i * ay
                    dz = oz + i * az
                    r, g = point_geometry(dt.type(dx), dt.type(dy), dt.type(dz), t, ac)
                    rb[i] = r
                    vb[i] = norm * g if dx * dx + dy * dy + dz * dz <= cut2 else zero
            _tables_row(i0, i1, rb, ab, t)
            for i in range(np.uintp(i0), np.uintp(i1)):
                acc[i] += ws * (vb[i] * exp_fast(rb[i], ec) * ab[i])
        for i in range(ni):
            out[k, j, i] = acc[i]


@numba.njit(parallel=True, cache=True, error_model="numpy", fastmath=_FASTMATH)
def _points_matrix(pts, spos_t, sdir_t, factor, cut2, out, t):
    m, n = out.shape
    dt = out.dtype
    zero = t.one - t.one
    norm = t.norm
    nblocks = (m + POINTS_BLOCK - 1) // POINTS_BLOCK
    for b in numba.prange(nblocks):
        # tuples (see line_geometry); the type: ignore as in tg43_cuda (an intrinsic's stub)
        ac = to_fixed_tuple(t.atan_c, ATAN_N)  # type: ignore[call-arg, var-annotated]
        ec = to_fixed_tuple(t.exp_c, EXP_N)
        rb = np.empty(n, dtype=dt)
        ab = np.zeros(n, dtype=dt)
        vb = np.empty(n, dtype=dt)
        for p in range(b * POINTS_BLOCK, min(m, (b + 1) * POINTS_BLOCK)):
            px, py, pz = pts[p, 0], pts[p, 1], pts[p, 2]
            if t.line:
                for s in range(n):
                    dx = px - spos_t[0, s]
                    dy = py - spos_t[1, s]
                    dz = pz - spos_t[2, s]
                    ux, uy, uz = sdir_t[0, s], sdir_t[1, s], sdir_t[2, s]
                    r, th, g = line_geometry(
                        dt.type(dx), dt.type(dy), dt.type(dz), ux, uy, uz, t, ac
                    )
                    rb[s] = r
                    ab[s] = th
                    vb[s] = norm * g if dx * dx + dy * dy + dz * dz <= cut2 else zero
            else:
                for s in range(n):
                    dx = px - spos_t[0, s]
                    dy = py - spos_t[1, s]
                    dz = pz - spos_t[2, s]
                    r, g = point_geometry(dt.type(dx), dt.type(dy), dt.type(dz), t, ac)
                    rb[s] = r
                    vb[s] = norm * g if dx * dx + dy * dy + dz * dz <= cut2 else zero
            _tables_row(0, n, rb, ab, t)
            for s in range(n):
                out[p, s] = factor * (vb[s] * exp_fast(rb[s], ec) * ab[s])


@functools.cache
def numba_kernels() -> _Kernels:
    """The numba kernels (compiled on first call, cached on disk); the formalism is the
    bundle's ``line`` flag.

    The innermost loops run over the voxels of a grid row (grid), over a block of points
    (points sum), over the seeds (matrix rows, contiguous in memory): geometry (vectorised),
    table reads (scalar), exp and product (vectorised), accumulating in float64.  Each row or
    block is one thread's, with the seeds in a fixed order, so the thread count changes no
    bit of the result (tests/dose_kernels/test_tg43_threads.py).
    A seed-point pair beyond the cut-off contributes 0 (the pair is still computed); along a
    grid row, only the voxels whose row segment meets the cut-off sphere (±1 voxel) are
    visited.
    """
    return _Kernels(_points_sum, _grid_sum, _points_matrix)
