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
from brachycryo.dose_kernels.tg43_scalar import atan_constants

__all__ = [
    "DEFAULT_MIN_DISTANCE_MM",
    "FORMALISMS",
    "R0_MM",
    "KernelTables",
    "geometry_factor_line",
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


class KernelTables(NamedTuple):
    """Arguments shared by every backend, in the compute dtype (scalars as numpy scalars)."""

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

    def scalar_args(self) -> tuple:
        """The tables in the order the scalar kernel function takes them."""
        return (
            self.line,
            self.length_mm,
            self.half_length_mm,
            self.min_distance_mm,
            self.rad2deg,
            self.one,
            self.small_x,
            self.norm,
            self.gl_r_mm,
            self.gl_log,
            self.gl_tail_slope,
            self.f_r_mm,
            self.f_theta_deg,
            self.f_table,
            self.phi_r_mm,
            self.phi_an,
            self.atan_c,
        )


def tail_slope_per_mm(model: SeedModel) -> float:
    """Slope of ln g_L(r) between the last two tabulated radii, clipped to <= 0.

    TG-43U1 recommends extrapolating g_L beyond the last tabulated radius from the last
    tabulated values (an exponential, i.e. log-linear, continuation); a rising tail in a
    user table is not extrapolated upwards (slope clipped to 0 = nearest neighbour).
    """
    r, g = model.gl_r_mm, model.gl
    slope = (math.log(g[-1]) - math.log(g[-2])) / (r[-1] - r[-2])
    return min(slope, 0.0)


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
    )
