"""A seed model packed into flat arrays and scalars for the compiled kernels.

Everything the per-point formula needs is precomputed here once, in float64, and then cast
to the compute dtype: tables in mm, ``ln g_L`` for log-linear interpolation, the slope
used to extrapolate ``ln g_L`` beyond the last radius, and the normalisation
``Λ / G_L(r₀, θ₀)`` (TG-43U1 Eq. 1, r₀ = 1 cm = 10 mm, θ₀ = 90°).
"""

from __future__ import annotations

import math
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
    "Lookup",
    "geometry_factor_line",
    "make_lookup",
    "pack_tables",
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


class Lookup(NamedTuple):
    """O(1) interval search in a sorted node list, branch-free (see :func:`make_lookup`).

    ``nodes`` ends with a +inf sentinel; ``cell[c]`` is the interval index of the left end of
    the uniform cell ``c`` of width ``1 / inv_h`` starting at ``nodes[0]``.
    """

    nodes: np.ndarray
    cell: np.ndarray  # uintp (unsigned: a compiled index needs no negative-index fix-up)
    inv_h: np.floating


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
    # ln g_L(r) in slope form, the tail slope as the last slope (tg43_scalar.table_at)
    gl_nodes: np.ndarray  # gl_r_mm and a +inf sentinel (Lookup.nodes)
    gl_cell: np.ndarray
    gl_inv_h: np.floating
    gl_slope: np.ndarray
    # F(r, theta) (tg43_scalar.anisotropy_at)
    f_r_nodes: np.ndarray
    f_r_cell: np.ndarray
    f_r_inv_h: np.floating
    f_t_nodes: np.ndarray
    f_t_cell: np.ndarray
    f_t_inv_h: np.floating
    f_slope_r: np.ndarray  # (n_theta, n_r), last column 0 (r clamped to the table)
    f_inv_dtheta: np.ndarray  # (n_theta,), last entry 0 (theta clamped to the table)
    # phi_an(r) in slope form, held constant beyond the table
    phi_nodes: np.ndarray
    phi_cell: np.ndarray
    phi_inv_h: np.floating
    phi_slope: np.ndarray
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


#: Cell width of a :class:`Lookup` as a fraction of the narrowest node interval (< 1/2, so that
#: two neighbouring cells never hold two nodes, with a margin for float32 rounding).
_CELLS_PER_INTERVAL = 2.5


def make_lookup(nodes: np.ndarray, dt: np.dtype) -> Lookup:
    """The O(1) interval lookup of :func:`brachycryo.dose_kernels.tg43_scalar.locate` for
    strictly increasing ``nodes``: cells of width h = (narrowest interval)/2.5 from nodes[0];
    ``cell[c]`` = index of the interval holding nodes[0] + c·h (computed in float64)."""
    x = np.asarray(nodes, dtype=np.float64)
    padded = np.append(x, np.inf).astype(dt)
    if x.size < 2:
        return Lookup(padded, np.zeros(1, dtype=np.uintp), dt.type(0.0))
    h = float(np.min(np.diff(x))) / _CELLS_PER_INTERVAL
    n_cells = math.ceil((x[-1] - x[0]) / h) + 2
    left = x[0] + h * np.arange(n_cells)
    cell = np.clip(np.searchsorted(x, left, side="right") - 1, 0, x.size - 1).astype(np.uintp)
    return Lookup(padded, cell, dt.type(1.0 / h))


def _slopes(nodes: np.ndarray, values: np.ndarray, tail_slope: float) -> np.ndarray:
    """Per-interval slopes of a piecewise-linear table, ``tail_slope`` past the last node."""
    return np.append(np.diff(values) / np.diff(nodes), tail_slope)


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

    gl_at = make_lookup(model.gl_r_mm, dt)
    fr_at = make_lookup(model.f_r_mm, dt)
    ft_at = make_lookup(model.f_theta_deg, dt)
    phi_at = make_lookup(phi_r, dt)

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
        gl_nodes=gl_at.nodes,
        gl_cell=gl_at.cell,
        gl_inv_h=gl_at.inv_h,
        gl_slope=arr(_slopes(model.gl_r_mm, np.log(model.gl), tail_slope_per_mm(model))),
        f_r_nodes=fr_at.nodes,
        f_r_cell=fr_at.cell,
        f_r_inv_h=fr_at.inv_h,
        f_t_nodes=ft_at.nodes,
        f_t_cell=ft_at.cell,
        f_t_inv_h=ft_at.inv_h,
        f_slope_r=arr(_slopes_r(np.asarray(model.f_r_mm, float), np.asarray(model.f_table, float))),
        f_inv_dtheta=arr(np.append(1.0 / np.diff(model.f_theta_deg), 0.0)),
        phi_nodes=phi_at.nodes,
        phi_cell=phi_at.cell,
        phi_inv_h=phi_at.inv_h,
        phi_slope=arr(_slopes(np.asarray(phi_r, float), np.asarray(phi, float), 0.0)),
        exp_c=arr(np.asarray(exp_constants(dt == np.dtype(np.float32)))),
    )
