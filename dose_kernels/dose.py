"""TG-43U1 dose from I-125 seeds on a grid or at points: the public API.

Formalism (AAPM TG-43U1, Rivard et al., Med Phys 31:633, 2004):

* 2D line source (``formalism="line"``, TG-43U1 Eq. 1):
  Ḋ(r, θ) = S_K · Λ · [G_L(r, θ) / G_L(r₀, θ₀)] · g_L(r) · F(r, θ), r₀ = 1 cm, θ₀ = 90°,
  G_L = β / (L r sin θ) (Eq. 4), written β = atan2(L r sin θ, r² − L²/4) so that it is exact
  and smooth up to the axis, where it tends to 1 / (r² − L²/4).
* 1D point-source approximation (``formalism="point"``, TG-43U1 Eq. 11):
  Ḋ(r) = S_K · Λ · [G_L(r, θ₀) / G_L(r₀, θ₀)] · g_L(r) · φ_an(r).  This equals the
  point-source form of Eq. 10, S_K Λ (r₀/r)² g_P(r) φ_an(r), with g_P converted from g_L as
  TG-43U1 prescribes (Eq. 10 ↔ 11 conversion), so the g_L table serves both.

Interpolation and extrapolation (TG-43U1 recommendations on using the tables):

* g_L(r): log-linear interpolation between tabulated radii; below the first radius the
  nearest value g_L(r_min) is used; beyond the last radius ln g_L is continued linearly
  from the last two tabulated points (exponential fall-off).
* F(r, θ): bilinear in (r, θ); θ is folded about 90° (F(r, 180° − θ) = F(r, θ)); r is
  clamped to the tabulated radii (nearest-neighbour extrapolation).
* φ_an(r): linear in r, clamped to the table.

Near the source (documented rule, so that no NaN or inf appears anywhere):

* line: a point closer than ``min_distance_mm`` (default 0.5 mm, about the radius of an
  I-125 seed capsule) to the active line segment [−L/2, L/2] is evaluated at
  ``min_distance_mm`` from the segment, along the same direction from the nearest point of
  the segment; a point on the segment itself (closer than 1e-4 · ``min_distance_mm``, so
  that rounding cannot pick a direction at the tips) is moved perpendicular to the axis.
  Points at or beyond that distance - all tabulated transverse-axis radii, and the axis
  beyond the source tips - are untouched.
* point: r is replaced by max(r, ``min_distance_mm``).

Time and strength: Ḋ₀ per U is multiplied by S_K (U); ``quantity="rate"`` returns the
initial dose rate (Gy h⁻¹), ``"total"`` the total dose of a permanent implant,
D = Ḋ₀ · T½ / ln 2 (Gy), and :func:`dose_between` the dose delivered between two times
after implant, Ḋ₀ · (T½/ln 2) · (e^(−λ t₁) − e^(−λ t₂)).

Backends: ``"numpy"`` (reference, float64 internally), ``"numba"`` (parallel CPU),
``"cupy"`` (a numba.cuda kernel run on CuPy arrays), ``"auto"`` (cupy if a GPU is usable,
else numba); see :func:`brachycryo.core.backend.resolve_backend`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from brachycryo.core.backend import resolve_backend
from brachycryo.core.errors import ConfigError, GeometryError
from brachycryo.core.grid import Grid
from brachycryo.core.memory import check_allocation
from brachycryo.core.progress import ProgressCallback, report
from brachycryo.core.seeds import Seeds
from brachycryo.dose_kernels.kernel_tables import DEFAULT_MIN_DISTANCE_MM, KernelTables, pack_tables
from brachycryo.dose_kernels.seed_model import SeedModel, load_seed_model
from brachycryo.dose_kernels.tg43_numpy import weighted_sum_points_numpy

__all__ = [
    "dose_at_points",
    "dose_between",
    "dose_on_grid",
    "time_factor_h",
]

#: numpy reference: points per chunk (bounds its temporary memory).
_NUMPY_CHUNK = 1 << 18


def time_factor_h(model: SeedModel, quantity: str) -> float:
    """Hours that turn an initial dose rate (Gy/h) into ``quantity``: 1 for ``"rate"``,
    T½ / ln 2 for ``"total"`` (permanent implant, complete decay)."""
    if quantity == "rate":
        return 1.0
    if quantity == "total":
        return model.mean_life_h
    raise ConfigError(f"quantity must be 'total' or 'rate', got {quantity!r}", key="quantity")


def _between_factor_h(model: SeedModel, start_h: float, end_h: float | None) -> float:
    if not math.isfinite(start_h) or start_h < 0:
        raise ConfigError(f"start_h must be a finite time >= 0 h, got {start_h}", key="start_h")
    tau = model.mean_life_h
    if end_h is None or math.isinf(end_h):
        return tau * math.exp(-start_h / tau)
    if not end_h >= start_h:
        raise ConfigError(f"end_h ({end_h}) must not precede start_h ({start_h})", key="end_h")
    return tau * (math.exp(-start_h / tau) - math.exp(-end_h / tau))


def _check_cutoff(cutoff_mm: float | None) -> float | None:
    if cutoff_mm is None:
        return None
    c = float(cutoff_mm)
    if not (math.isfinite(c) and c > 0):
        raise ConfigError(
            f"cutoff_mm must be a positive distance, got {cutoff_mm}", key="cutoff_mm"
        )
    return c


def _prepare(seeds, model, formalism, dtype, min_distance_mm):
    if not isinstance(seeds, Seeds):
        raise GeometryError(
            f"seeds must be a brachycryo.core.seeds.Seeds, got {type(seeds).__name__}"
        )
    m = load_seed_model(model)
    t = pack_tables(m, formalism=formalism, dtype=dtype, min_distance_mm=min_distance_mm)
    return m, t, np.dtype(dtype)


def _points_sum(points, seeds: Seeds, weights, t: KernelTables, cutoff, dt, backend, progress):
    be = resolve_backend(backend)
    if be == "numpy":
        out = np.empty(points.shape[0], dtype=dt)
        n = points.shape[0]
        for a in range(0, n, _NUMPY_CHUNK):
            b = min(n, a + _NUMPY_CHUNK)
            out[a:b] = weighted_sum_points_numpy(
                points[a:b], seeds.positions_mm, seeds.directions, weights, t, cutoff
            )
            report(progress, b / n, "numpy TG-43")
        return out
    if be == "numba":
        from brachycryo.dose_kernels.tg43_numba import points_sum_numba

        out = points_sum_numba(points, seeds.positions_mm, seeds.directions, weights, t, cutoff, dt)
    else:
        from brachycryo.dose_kernels.tg43_cuda import points_sum_cuda

        out = points_sum_cuda(points, seeds.positions_mm, seeds.directions, weights, t, cutoff, dt)
    report(progress, 1.0, f"{be} TG-43")
    return out


def _points_array(points_mm) -> np.ndarray:
    p = np.asarray(points_mm, dtype=np.float64)
    if p.ndim == 0 or p.shape[-1] != 3:
        raise GeometryError(f"points_mm must have shape (..., 3), got {p.shape}")
    if not np.all(np.isfinite(p)):
        raise GeometryError("points_mm contains NaN or inf")
    return p


def dose_at_points(
    seeds: Seeds,
    points_mm: np.ndarray | Sequence[Sequence[float]],
    model: str | SeedModel,
    *,
    backend: str = "auto",
    formalism: str = "line",
    cutoff_mm: float | None = None,
    dtype: type | np.dtype = np.float64,
    quantity: str = "total",
    min_distance_mm: float = DEFAULT_MIN_DISTANCE_MM,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Dose (Gy, ``quantity="total"``) or dose rate (Gy/h, ``"rate"``) at points (..., 3) mm.

    Returns an array of shape ``points_mm.shape[:-1]`` in ``dtype``.  Seeds beyond
    ``cutoff_mm`` of a point do not contribute to it.  See the module docstring.
    """
    m, t, dt = _prepare(seeds, model, formalism, dtype, min_distance_mm)
    factor = time_factor_h(m, quantity)
    return _dose_at_points(seeds, points_mm, t, dt, factor, backend, cutoff_mm, progress)


def _dose_at_points(seeds, points_mm, t, dt, factor, backend, cutoff_mm, progress):
    p = _points_array(points_mm)
    cutoff = _check_cutoff(cutoff_mm)
    flat = p.reshape(-1, 3)
    weights = seeds.sk_u * factor
    if len(seeds) == 0 or flat.shape[0] == 0:
        return np.zeros(p.shape[:-1], dtype=dt)
    return _points_sum(flat, seeds, weights, t, cutoff, dt, backend, progress).reshape(p.shape[:-1])


def dose_on_grid(
    seeds: Seeds,
    grid: Grid,
    model: str | SeedModel,
    *,
    backend: str = "auto",
    formalism: str = "line",
    cutoff_mm: float | None = None,
    dtype: type | np.dtype = np.float32,
    quantity: str = "total",
    min_distance_mm: float = DEFAULT_MIN_DISTANCE_MM,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Dose (Gy) or dose rate (Gy/h) at every voxel centre of ``grid``, indexed [k, j, i].

    Voxel positions come from the grid transform (oblique grids are exact).  See the
    module docstring for formalism, near-source rule and time factors.
    """
    m, t, dt = _prepare(seeds, model, formalism, dtype, min_distance_mm)
    factor = time_factor_h(m, quantity)
    return _dose_on_grid(seeds, grid, t, dt, factor, backend, cutoff_mm, progress)


def _dose_on_grid(seeds, grid, t, dt, factor, backend, cutoff_mm, progress):
    if not isinstance(grid, Grid):
        raise GeometryError(f"grid must be a brachycryo Grid, got {type(grid).__name__}")
    cutoff = _check_cutoff(cutoff_mm)
    be = resolve_backend(backend)
    weights = seeds.sk_u * factor
    check_allocation(grid.shape, np.dtype(dt).itemsize, f"a TG-43 dose grid of {grid.shape} voxels")
    if len(seeds) == 0:
        return np.zeros(grid.shape, dtype=dt)
    axes = (grid.direction_matrix * np.asarray(grid.spacing_mm)[None, :]).T  # rows a_i, a_j, a_k
    origin = np.asarray(grid.origin_mm, dtype=np.float64)
    if be == "numpy":
        out = np.empty(grid.shape, dtype=dt)
        nk, nj, ni = grid.shape
        jj, ii = np.meshgrid(np.arange(nj), np.arange(ni), indexing="ij")
        for k in range(nk):
            ijk = np.stack([ii, jj, np.full_like(ii, k)], axis=-1).reshape(-1, 3)
            pts = grid.ijk_to_mm(ijk)
            out[k] = weighted_sum_points_numpy(
                pts, seeds.positions_mm, seeds.directions, weights, t, cutoff
            ).reshape(nj, ni)
            report(progress, (k + 1) / nk, "numpy TG-43")
        return out
    if be == "numba":
        from brachycryo.dose_kernels.tg43_numba import grid_sum_numba

        out = grid_sum_numba(
            origin, axes, grid.shape, seeds.positions_mm, seeds.directions, weights, t, cutoff, dt
        )
    else:
        from brachycryo.dose_kernels.tg43_cuda import grid_sum_cuda

        out = grid_sum_cuda(
            origin, axes, grid.shape, seeds.positions_mm, seeds.directions, weights, t, cutoff, dt
        )
    report(progress, 1.0, f"{be} TG-43")
    return out


def dose_between(
    seeds: Seeds,
    where: Grid | np.ndarray | Sequence[Sequence[float]],
    model: str | SeedModel,
    *,
    start_h: float,
    end_h: float | None = None,
    backend: str = "auto",
    formalism: str = "line",
    cutoff_mm: float | None = None,
    dtype: type | np.dtype = np.float32,
    min_distance_mm: float = DEFAULT_MIN_DISTANCE_MM,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """Dose (Gy) delivered between ``start_h`` and ``end_h`` hours after implant.

    ``where`` is a :class:`Grid` (result indexed [k, j, i]) or points (..., 3) mm.
    ``end_h=None`` means until complete decay.  D = Ḋ₀ (T½/ln 2)(e^(−λ t₁) − e^(−λ t₂)),
    λ = ln 2 / T½ (exponential decay of S_K, TG-43U1).
    """
    m, t, dt = _prepare(seeds, model, formalism, dtype, min_distance_mm)
    factor = _between_factor_h(m, float(start_h), None if end_h is None else float(end_h))
    if isinstance(where, Grid):
        return _dose_on_grid(seeds, where, t, dt, factor, backend, cutoff_mm, progress)
    return _dose_at_points(seeds, where, t, dt, factor, backend, cutoff_mm, progress)
