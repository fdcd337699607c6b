"""A seed model packed into flat arrays and scalars for the compiled kernels.

Everything the per-point formula needs is precomputed here once, in float64, and then cast
to the compute dtype: tables in mm, ``ln g_L`` for log-linear interpolation, the slope
used to extrapolate ``ln g_L`` beyond the last radius, and the normalisation
``Λ / G_L(r₀, θ₀)`` (TG-43U1 Eq. 1, r₀ = 1 cm = 10 mm, θ₀ = 90°).
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import NamedTuple

import numpy as np

from brachycryo.core.errors import ConfigError
from brachycryo.dose_kernels.seed_model import SeedModel
from brachycryo.dose_kernels.tg43_scalar import (
    atan_constants,
    exp_constants,
)

__all__ = [
    "DEFAULT_MIN_DISTANCE_MM",
    "FORMALISMS",
    "R0_MM",
    "KernelTables",
    "UniformTable",
    "geometry_factor_line",
    "pack_tables",
    "uniform_grid",
]

#: Reference distance of TG-43 (1 cm), in mm.
R0_MM = 10.0
#: Points nearer than this to the active line segment (line formalism) or to the source
#: centre (point formalism) are evaluated at this distance; see :mod:`brachycryo.dose_kernels.dose`.
DEFAULT_MIN_DISTANCE_MM = 0.5
FORMALISMS = ("line", "point")
#: Below ``x = L·ρ < SMALL_X · (r² − L²/4)`` the line-source geometry function is evaluated
#: as its on-axis limit ``1 / (r² − L²/4)``; the relative difference there is < 4e-9.
SMALL_X = 1e-4


def geometry_factor_line(r_mm: float, theta_deg: float, length_mm: float) -> float:
    """G_L(r, θ) = β / (L r sin θ), TG-43U1 Eq. 4, with the on-axis limit 1/(r² − L²/4)."""
    rho = r_mm * math.sin(math.radians(theta_deg))
    z = r_mm * math.cos(math.radians(theta_deg))
    d = rho * rho + z * z - 0.25 * length_mm * length_mm
    x = length_mm * rho
    if x < SMALL_X * d:
        return 1.0 / d
    return math.atan2(x, d) / x


class UniformTable(NamedTuple):
    """A piecewise-linear table resampled on a uniform grid that contains every published
    node (see :func:`uniform_grid`), in slope form: ``values[c] + (v − x[c])·slope[c]`` on
    cell c = ⌊(v − x[0])·inv_h⌋ (clamped to ``last``).  Linear interpolation of a
    piecewise-linear function sampled on a finer grid holding all its breakpoints is the
    same function, so the values at the published nodes, and between them, are unchanged."""

    x: np.ndarray
    values: np.ndarray
    slope: np.ndarray
    inv_h: np.floating
    last: np.floating  # number of cells − 1, as a float (the cell index clamp)


class KernelTables(NamedTuple):
    """The one bundle of tables every backend takes, in the compute dtype (scalars as numpy
    scalars).  The first block is what the numpy reference reads (the tables as published);
    ``gl``, ``f``, ``phi``, ``atan_c``, and ``exp_c`` are the compiled kernels' forms
    of the same tables (:mod:`brachycryo.dose_kernels.tg43_scalar`)."""

    line: bool
    length_mm: np.floating
    half_length_mm: np.floating
    min_distance_mm: np.floating
    rad2deg: np.floating
    one: np.floating
    small_x: np.floating
    norm: np.floating  # Λ / G_L(r0, θ0), Gy h^-1 U^-1 mm^2
    gl_r_mm: np.ndarray
    gl_log: np.ndarray
    gl_tail_slope: np.floating  # d ln g_L / dr beyond the last radius (<= 0), per mm
    f_r_mm: np.ndarray
    f_theta_deg: np.ndarray
    f_table: np.ndarray
    phi_r_mm: np.ndarray
    phi_an: np.ndarray
    atan_c: np.ndarray  # constants of tg43_scalar.atan2_nonneg
    # ln g_L(r) in slope form on a uniform grid, the tail slope as the last slope
    # (tg43_scalar.table_at)
    gl_x: np.ndarray
    gl_v: np.ndarray
    gl_slope: np.ndarray
    gl_inv_h: np.floating
    gl_last: np.floating
    # F(r, theta) on a uniform (theta, r) grid (tg43_scalar.anisotropy_at)
    f_x_r: np.ndarray
    f_r_inv_h: np.floating
    f_r_last: np.floating
    f_x_t: np.ndarray
    f_t_inv_h: np.floating
    f_t_last: np.floating  # number of theta cells − 1 (the last theta node starts no cell)
    f_grid: np.ndarray  # (n_theta, n_r)
    f_slope_r: np.ndarray  # (n_theta, n_r), last column 0 (r clamped to the table)
    # phi_an(r) in slope form on a uniform grid, held constant beyond the table
    phi_x: np.ndarray
    phi_v: np.ndarray
    phi_slope: np.ndarray
    phi_inv_h: np.floating
    phi_last: np.floating
    exp_c: np.ndarray  # constants of tg43_scalar.exp_fast


def tail_slope_per_mm(model: SeedModel) -> float:
    """Slope of ln g_L(r) between the last two tabulated radii, clipped to <= 0.

    TG-43U1 recommends extrapolating g_L beyond the last tabulated radius from the last
    tabulated values (an exponential, i.e. log-linear, continuation); a rising tail in a
    user table is not extrapolated upwards (slope clipped to 0 = nearest neighbour).
    """
    r, g = model.gl_r_mm, model.gl
    slope = (math.log(g[-1]) - math.log(g[-2])) / (r[-1] - r[-2])
    return min(slope, 0.0)


#: Largest number of grid points per axis of a resampled table (:func:`uniform_grid`).
MAX_UNIFORM_POINTS = 20_000
#: Largest number of entries of the resampled F(r, θ) table.
MAX_UNIFORM_F_POINTS = 2_000_000


def uniform_grid(nodes: np.ndarray, what: str) -> np.ndarray:
    """A uniform grid from ``nodes[0]`` to ``nodes[-1]`` that contains every node: the step
    is the greatest common divisor of the node intervals (as decimal fractions, to 1e-6 of
    the unit); the grid points at the nodes are the nodes themselves, bit for bit.
    Published tables give steps of 0.5 mm or 1°; a table whose step would need more than
    :data:`MAX_UNIFORM_POINTS` points is refused with a :class:`ConfigError`."""
    x = np.asarray(nodes, dtype=np.float64)
    if x.size < 2:
        return x.copy()
    diffs = [Fraction(float(d)).limit_denominator(1_000_000) for d in np.diff(x)]
    step = diffs[0]
    for d in diffs[1:]:
        step = Fraction(
            math.gcd(step.numerator * d.denominator, d.numerator * step.denominator),
            step.denominator * d.denominator,
        )
    n = round((x[-1] - x[0]) / float(step)) + 1
    if not (0 < n <= MAX_UNIFORM_POINTS):
        raise ConfigError(
            f"the {what} nodes need a uniform grid of {n} points (step {float(step):g}); "
            f"at most {MAX_UNIFORM_POINTS} are supported",
            key=what,
        )
    grid = x[0] + float(step) * np.arange(n)
    idx = np.rint((x - x[0]) / float(step)).astype(np.intp)
    if np.any(np.abs(grid[idx] - x) > 1e-9 * max(1.0, abs(x[-1]))):
        raise ConfigError(f"the {what} nodes are not on a uniform grid", key=what)
    grid[idx] = x
    return grid


def _uniform_table(
    nodes: np.ndarray, values: np.ndarray, tail_slope: float, dt: np.dtype, what: str
) -> UniformTable:
    """``values`` (linear between ``nodes``, ``tail_slope`` beyond) on :func:`uniform_grid`."""
    grid = uniform_grid(nodes, what)
    v = np.interp(grid, np.asarray(nodes, float), np.asarray(values, float))
    slope = _slopes(grid, v, tail_slope) if grid.size > 1 else np.array([tail_slope])
    inv_h = 1.0 / (grid[1] - grid[0]) if grid.size > 1 else 0.0
    return UniformTable(
        np.ascontiguousarray(grid, dtype=dt),
        np.ascontiguousarray(v, dtype=dt),
        np.ascontiguousarray(slope, dtype=dt),
        dt.type(inv_h),
        dt.type(grid.size - 1),
    )


def _slopes(nodes: np.ndarray, values: np.ndarray, tail_slope: float) -> np.ndarray:
    """Per-interval slopes of a piecewise-linear table, ``tail_slope`` past the last node."""
    return np.append(np.diff(values) / np.diff(nodes), tail_slope)


def _resample_f(model: SeedModel) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """F(r, θ) on uniform r and θ grids holding the published nodes: the bilinear
    interpolation of the published table (linear in r along each published θ row, then
    linear in θ along each column), which bilinear interpolation on the finer grid
    reproduces exactly."""
    r = np.asarray(model.f_r_mm, float)
    th = np.asarray(model.f_theta_deg, float)
    tab = np.asarray(model.f_table, float)
    gr = uniform_grid(r, "F radii")
    gt = uniform_grid(th, "F angles")
    if gr.size * gt.size > MAX_UNIFORM_F_POINTS:
        raise ConfigError(
            f"the F(r, theta) table would need {gr.size * gt.size} points on a uniform grid; "
            f"at most {MAX_UNIFORM_F_POINTS} are supported",
            key="F table",
        )
    rows = np.array([np.interp(gr, r, row) for row in tab])  # (n_theta published, n_r fine)
    fine = np.array([np.interp(gt, th, col) for col in rows.T]).T  # (n_theta fine, n_r fine)
    if gt.size == 1:  # one angle: F constant in θ (two equal rows keep the kernel's θ cell)
        gt, fine = np.array([gt[0], gt[0] + 1.0]), np.vstack([fine, fine])
    return gr, gt, fine


def _slopes_r(r_mm: np.ndarray, f: np.ndarray) -> np.ndarray:
    """dF/dr per r interval of each θ row; 0 in the last column (r clamped to the table)."""
    slope = np.zeros_like(f)
    if r_mm.size > 1:
        slope[:, :-1] = np.diff(f, axis=1) / np.diff(r_mm)[None, :]
    return slope


def pack_tables(
    model: SeedModel,
    *,
    formalism: str,
    dtype: np.dtype | type,
    min_distance_mm: float = DEFAULT_MIN_DISTANCE_MM,
) -> KernelTables:
    """Pack ``model`` for the kernels in ``dtype`` (float32 or float64)."""
    dt = np.dtype(dtype)
    if dt not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ConfigError(f"dtype must be float32 or float64, got {dt}", key="dtype")
    if formalism not in FORMALISMS:
        raise ConfigError(
            f"formalism must be 'line' or 'point', got {formalism!r}", key="formalism"
        )
    if not (math.isfinite(min_distance_mm) and min_distance_mm > 0):
        raise ConfigError(
            f"min_distance_mm must be a positive number, got {min_distance_mm}",
            key="min_distance_mm",
        )
    line = formalism == "line"
    length = model.active_length_mm
    g0 = geometry_factor_line(R0_MM, 90.0, length)
    norm = model.dose_rate_constant_gy_per_h_per_u / g0
    phi_r: np.ndarray
    phi: np.ndarray
    if line:
        phi_r, phi = np.ones(1), np.ones(1)
    else:
        # the published table, or φ_an derived from F(r, θ) (model.phi_an_source says which)
        phi_r, phi = model.phi_an_table()

    def arr(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=dt)

    tail = tail_slope_per_mm(model)
    gl_u = _uniform_table(model.gl_r_mm, np.log(model.gl), tail, dt, "g_L radii")
    phi_u = _uniform_table(phi_r, phi, 0.0, dt, "phi_an radii")
    f_r, f_t, f_fine = _resample_f(model)

    return KernelTables(
        line=line,
        length_mm=dt.type(length),
        half_length_mm=dt.type(0.5 * length),
        min_distance_mm=dt.type(min_distance_mm),
        rad2deg=dt.type(180.0 / math.pi),
        one=dt.type(1.0),
        small_x=dt.type(SMALL_X),
        norm=dt.type(norm),
        gl_r_mm=arr(model.gl_r_mm),
        gl_log=arr(np.log(model.gl)),
        gl_tail_slope=dt.type(tail_slope_per_mm(model)),
        f_r_mm=arr(model.f_r_mm),
        f_theta_deg=arr(model.f_theta_deg),
        f_table=arr(model.f_table),
        phi_r_mm=arr(phi_r),
        phi_an=arr(phi),
        atan_c=arr(np.asarray(atan_constants())),
        gl_x=gl_u.x,
        gl_v=gl_u.values,
        gl_slope=gl_u.slope,
        gl_inv_h=gl_u.inv_h,
        gl_last=gl_u.last,
        f_x_r=arr(f_r),
        f_r_inv_h=dt.type(1.0 / (f_r[1] - f_r[0]) if f_r.size > 1 else 0.0),
        f_r_last=dt.type(f_r.size - 1),
        f_x_t=arr(f_t),
        f_t_inv_h=dt.type(1.0 / (f_t[1] - f_t[0]) if f_t.size > 1 else 0.0),
        f_t_last=dt.type(f_t.size - 2),
        f_grid=arr(f_fine),
        f_slope_r=arr(_slopes_r(f_r, f_fine)),
        phi_x=phi_u.x,
        phi_v=phi_u.values,
        phi_slope=phi_u.slope,
        phi_inv_h=phi_u.inv_h,
        phi_last=phi_u.last,
        exp_c=arr(np.asarray(exp_constants(dt == np.dtype(np.float32)))),
    )
