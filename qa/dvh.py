"""Dose-volume histograms of structures (RTSTRUCT contours or masks) from a dose volume.

How a DVH is computed (:func:`dvh_from_roi`):

1. **Sampling lattice** (:func:`default_lattice`).  In-plane the lattice follows the dose
   grid's axes and spacing when the dose grid's slices are parallel to the contour planes,
   and the contour planes' own frame otherwise (any orientation); ``subdivide=m`` refines
   it ``m``-fold.  Along the contour normal its layers tile every contour's slab exactly
   (layer boundaries on the slab boundaries), so no sample straddles two slabs.  It is
   extended past the dose grid as far as the structure reaches: volume outside the dose
   grid is counted at 0 Gy and reported in :attr:`DVH.volume_outside_dose_cc`.
   ``sampling_grid=`` replaces it with any Grid (e.g. the CT grid).  Only the box around
   the structure is ever built.
2. **Occupancy.**  Each lattice voxel is split into ``supersample``³ sub-points (default
   4, i.e. 64; 2 for structures whose box exceeds 4 million voxels) tested with
   :func:`brachycryo.dicom_io.rasterize.roi_fraction` and its documented rules
   (README "Structures and volumes"): even-odd in-plane, slab rule between contour planes
   and the **end-cap convention** ``end_caps="full"`` (default: each contour stands for
   its whole CT slice, ``+-t/2`` around its plane) or ``"half"`` (the structure ends at
   its outermost contours).  A voxel with every sub-point inside counts whole, at the dose
   of its centre; a boundary voxel counts ``1/n³`` of its volume at the dose of each inside
   sub-point, so partial voxels carry the dose of the part the structure occupies.  Small
   structures (fewer than ``subpoint_limit`` sub-points) are sampled at every sub-point.
3. **Dose at the sampling points**: trilinear interpolation on the dose grid's index
   coordinates (positions mapped through the Grid transforms): three separable 1-D linear
   interpolations when the lattice has the dose grid's orientation, point by point
   otherwise (:mod:`brachycryo.qa.interp_kernels`, the interpolant of
   :func:`scipy.ndimage.map_coordinates` with order 1, each step ``a + w (b - a)``: a
   uniform dose is reproduced exactly, points on dose voxel centres get the stored value).
   Points within half a voxel outside the dose grid take the edge value; points further
   out get 0 Gy and count as outside.
4. **Histogram** (:func:`dvh_from_samples`).  Each sample spreads its volume uniformly
   over the dose range across its volume element (``|grad D| x element size``, central
   differences): a linear dose variation inside the element, which removes the steps a
   regular lattice leaves where a gradient runs along a lattice axis.  That interval is
   clipped to the doses the element takes: ``[min, max]`` of the interpolated dose at the
   element's centre and 8 corners (:func:`brachycryo.qa.interp_kernels.clip_intervals`).
   In a dose linear across the element the clip never acts (the corners span
   ``sum |g_a h_a| >= |grad D| h``); next to a seed, where the central difference spans
   orders of magnitude, the unclipped spread reached far past the dose the element holds
   (a target's Dmin at 0 Gy, a body's Dmax above the RTDOSE maximum).  Bins start at 0 Gy
   and are ``bin_width_gy`` wide (default: the largest power of ten <= max dose / 10 000,
   at most 0.01 Gy: 0.01 Gy for 100-1000 Gy seed implants, finer for lower doses; at most
   2 000 000 bins), and hold the exact integrals of the piecewise-linear cumulative.

Cumulative DVH values between bin edges are linear interpolations (dose spread uniformly
within a bin); the curve starts at the exact minimum dose (full volume) and ends at the exact
maximum dose (zero volume), so Dx read from it (:mod:`brachycryo.qa.metrics`) is never
snapped to a bin edge and D100 = Dmin, D0 = Dmax (the extremes of the samples' intervals).
This follows the DVH definitions of AAPM TG-137 (Nath et al., Med Phys 36:5310, 2009) and
the analytic DVH validation of Nelms et al. (Med Phys 42:4435, 2015).

**What the extremes can be** (:func:`dvh_from_roi`).  A sample's volume element is the
lattice voxel it stands for (interior voxels sampled at their centres) or the sub-voxel of
an inside sub-point; together they are the structure as rasterised, reaching at most half
a sub-voxel beyond the contours.  As every sample's interval lies within the doses its own
element takes,

* Dmin (= D100) >= the minimum and Dmax (= D0) <= the maximum of the trilinearly
  interpolated dose over those elements (any lattice orientation; to the rounding of the
  dose's precision), hence within the stored doses of the dose cells they overlap and
  never beyond the RTDOSE's own extremes;
* every Dx lies between Dmin and Dmax, and a dose uniform over the cells the structure
  reaches gives Dmin = Dmax = every Dx = that dose, exactly;
* volume outside the dose grid is a point at 0 Gy, and says so
  (:attr:`DVH.volume_outside_dose_cc`).

The mean dose is the volume-weighted mean of the intervals' midpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from brachycryo.core.errors import GeometryError, StructureError
from brachycryo.core.grid import Grid
from brachycryo.core.memory import check_allocation
from brachycryo.dicom_io.rasterize import (
    ContourStack,
    contour_stack,
    roi_fraction,
    roi_mask,
    roi_volume_cc,
)
from brachycryo.dicom_io.rtstruct import ROI
from brachycryo.qa.histogram_kernels import accumulate
from brachycryo.qa.interp_kernels import (
    clip_intervals,
    element_intervals,
    gradient_norm,
    lattice_intervals,
    layered_intervals,
    separable,
    trilinear,
)

_MAX_BINS = 2_000_000
#: Lattice voxels in a structure's box above which ``supersample=None`` means 2, not 4.
AUTO_SUPERSAMPLE_BOX_VOXELS = 1 << 22
_DEFAULT_MAX_BIN_WIDTH_GY = 0.01
_CC_PER_MM3 = 1e-3
#: a mask filling less than 1 / this of its box is sampled voxel by voxel, not on a lattice
_SPARSE_MASK_RATIO = 12


@dataclass(frozen=True, eq=False)
class DVH:
    """A differential DVH on regular dose bins, with exact min / max / mean dose.

    ``differential_cc[b]`` is the volume (cm³) whose dose lies in
    ``[bin_edges_gy[b], bin_edges_gy[b + 1])``.  ``volume_cc`` is the structure's volume
    (the sum of the bins), ``volume_outside_dose_cc`` the part of it outside the dose grid
    (counted at 0 Gy).  ``settings`` records how the DVH was computed.
    """

    name: str
    bin_edges_gy: np.ndarray
    differential_cc: np.ndarray
    dmin_gy: float
    dmax_gy: float
    dmean_gy: float
    volume_outside_dose_cc: float = 0.0
    settings: dict = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def volume_cc(self) -> float:
        return float(self.differential_cc.sum())

    @property
    def bin_width_gy(self) -> float:
        return float(self.bin_edges_gy[1] - self.bin_edges_gy[0])

    @property
    def cumulative_cc(self) -> np.ndarray:
        """Volume (cm³) receiving at least ``bin_edges_gy[b]``, shape ``(n_bins + 1,)``."""
        c = np.concatenate([np.cumsum(self.differential_cc[::-1])[::-1], [0.0]])
        return c

    def cumulative_curve(self) -> tuple[np.ndarray, np.ndarray]:
        """Nodes ``(dose_gy, volume_cc)`` of the piecewise-linear cumulative DVH.

        Dose increases strictly and volume decreases from ``volume_cc`` at ``dmin_gy`` to
        0 at ``dmax_gy``: the bin edges inside ``(dmin, dmax)`` plus the two exact ends.
        """
        edges = self.bin_edges_gy
        cum = self.cumulative_cc
        total = self.volume_cc
        if total <= 0 or not np.isfinite(self.dmin_gy):
            return np.array([0.0]), np.array([0.0])
        inner = (edges > self.dmin_gy) & (edges <= self.dmax_gy)
        if self.dmax_gy > self.dmin_gy:
            end = self.dmax_gy
            if inner.any() and edges[inner][-1] >= end:  # a point mass at dmax on an edge
                end = np.nextafter(end, np.inf)
            d = np.concatenate([[self.dmin_gy], edges[inner], [end]])
            v = np.concatenate([[total], cum[inner], [0.0]])
        else:  # every sample has the same dose: a step
            d = np.array([self.dmin_gy, np.nextafter(self.dmin_gy, np.inf)])
            v = np.array([total, 0.0])
        return d, np.minimum(v, total)


def default_bin_width_gy(dmax_gy: float) -> float:
    """Largest power of ten <= ``dmax_gy / 1e4``, at most 0.01 Gy (finer for low doses)."""
    if not np.isfinite(dmax_gy) or dmax_gy <= 0:
        return _DEFAULT_MAX_BIN_WIDTH_GY
    w = 10.0 ** np.floor(np.log10(dmax_gy / 1e4))
    w = min(max(float(w), 1e-9), _DEFAULT_MAX_BIN_WIDTH_GY)
    while dmax_gy / w > _MAX_BINS:
        w *= 10.0
    return w


def _suffix(a: np.ndarray) -> np.ndarray:
    return np.cumsum(a[::-1])[::-1]


def dvh_from_samples(
    dose_gy: np.ndarray,
    volume_cc: np.ndarray,
    *,
    spread_gy: np.ndarray | None = None,
    dose_range_gy: tuple[np.ndarray, np.ndarray] | None = None,
    name: str = "",
    bin_width_gy: float | None = None,
    volume_outside_dose_cc: float = 0.0,
    settings: dict | None = None,
    notes: tuple[str, ...] = (),
    backend: str = "auto",
) -> DVH:
    """Histogram dose samples weighted by the volume (cm³) each stands for.

    Without ``spread_gy`` each sample is a point mass at its dose.  With it, sample ``s``
    spreads its volume uniformly over ``[d_s - w_s/2, d_s + w_s/2]`` (clipped at 0 Gy):
    the dose range across the volume element it stands for when the dose varies linearly
    there (``w = |grad D| x element size``; a uniform of the same variance as the exact
    sum of three uniforms).  This removes the steps a regular lattice leaves in the DVH
    where the dose gradient runs along a lattice axis.  ``dose_range_gy = (lo, hi)``, doses
    that each sample's element takes (e.g. the dose at its corners), clips that interval to
    ``[min(lo_s, d_s), max(hi_s, d_s)]`` where the dose is not linear there (next to a seed
    the central difference spans orders of magnitude): no sample's volume then lies outside
    the doses its element takes, and the DVH's extremes stay within them.  The bins are
    exact integrals of the piecewise-linear cumulative (suffix sums of ramp functions).
    ``backend`` picks the accumulation (:mod:`brachycryo.qa.histogram_kernels`: ``"numpy"``
    reference, ``"numba"`` one-pass kernel; ``"auto"``: numba when importable).
    """
    d, w, sp, bounds = _checked_samples(dose_gy, volume_cc, spread_gy, dose_range_gy, name)
    c_lo, c_hi = (0.0, np.inf) if bounds is None else bounds
    lo, hi = clip_intervals(d, sp, c_lo, c_hi)
    return _dvh_from_intervals(
        lo,
        hi,
        w,
        name=name,
        bin_width_gy=bin_width_gy,
        volume_outside_dose_cc=volume_outside_dose_cc,
        settings=settings,
        notes=notes,
        backend=backend,
    )


def _checked_samples(dose_gy, volume_cc, spread_gy, dose_range_gy, name: str):
    """Flat dose, volume, spread and (lo, hi) range arrays; samples without volume dropped."""
    d = np.asarray(dose_gy).reshape(-1)
    if d.dtype not in (np.float32, np.float64):
        d = d.astype(np.float64)
    w = np.asarray(volume_cc, dtype=np.float64).reshape(-1)
    sp = np.zeros_like(d) if spread_gy is None else np.asarray(spread_gy, d.dtype).reshape(-1)
    bounds = (
        None
        if dose_range_gy is None
        else tuple(np.asarray(b, dtype=d.dtype).reshape(-1) for b in dose_range_gy)
    )
    sizes = [w.size, sp.size, *(() if bounds is None else (b.size for b in bounds))]
    if any(n != d.size for n in sizes):
        raise GeometryError(
            f"dose ({d.size}), volume, spread and range samples differ in number ({sizes})"
        )
    if d.size and w.min() <= 0:
        keep = w > 0
        d, w, sp = d[keep], w[keep], sp[keep]
        bounds = None if bounds is None else tuple(b[keep] for b in bounds)
    if d.size and not np.isfinite(d.sum() + sp.sum()):
        raise GeometryError(f"structure {name!r}: dose samples contain NaN or inf")
    if d.size and d.min() < 0:
        raise GeometryError(f"structure {name!r}: negative dose {d.min():g} Gy")
    return d, w, sp, bounds


def _dvh_from_intervals(
    lo: np.ndarray,
    hi: np.ndarray,
    w: np.ndarray,
    *,
    name: str,
    bin_width_gy: float | None,
    volume_outside_dose_cc: float = 0.0,
    settings: dict | None = None,
    notes: tuple[str, ...] = (),
    backend: str = "auto",
) -> DVH:
    """The DVH of samples spreading volumes ``w`` (cm³, > 0) over dose intervals [lo, hi]."""
    if lo.size and not np.isfinite(lo.sum() + hi.sum()):
        raise GeometryError(f"structure {name!r}: dose samples contain NaN or inf")
    if lo.size and lo.min() < 0:
        raise GeometryError(f"structure {name!r}: negative dose {lo.min():g} Gy")
    dmax_bound = float(hi.max()) if lo.size else 0.0
    width = float(bin_width_gy) if bin_width_gy is not None else default_bin_width_gy(dmax_bound)
    if not width > 0:
        raise GeometryError(f"bin_width_gy must be positive, got {bin_width_gy}")
    n_bins = int(np.floor(dmax_bound / width)) + 1
    if n_bins > _MAX_BINS:
        raise GeometryError(
            f"bin_width_gy {width:g} gives {n_bins} bins for a maximum of {dmax_bound:g} Gy "
            f"(at most {_MAX_BINS})"
        )
    edges = np.arange(n_bins + 1, dtype=np.float64) * width
    total = float(w.sum())
    if lo.size:
        point, a_hi, b_hi, a_lo, b_lo, dmin, dmax, mean_num = accumulate(
            lo, hi, w, width, n_bins, backend=backend
        )
    else:
        point = np.zeros(n_bins)
        a_hi = b_hi = a_lo = b_lo = np.zeros(n_bins + 1)
        dmin, dmax, mean_num = float("nan"), float("nan"), 0.0
    cum = np.concatenate([_suffix(point), [0.0]])
    cum += _suffix(a_hi) - edges * _suffix(b_hi)
    cum -= _suffix(a_lo) - edges * _suffix(b_lo)
    cum[0] = total
    diff = np.maximum(cum[:-1] - cum[1:], 0.0)
    return DVH(
        name=name,
        bin_edges_gy=edges,
        differential_cc=diff,
        dmin_gy=dmin,
        dmax_gy=dmax,
        dmean_gy=mean_num / total if total > 0 else float("nan"),
        volume_outside_dose_cc=float(volume_outside_dose_cc),
        settings=dict(settings or {}),
        notes=tuple(notes),
    )


def spread_widths_gy(dose_on_grid: np.ndarray) -> np.ndarray:
    """|grad D| x voxel size at each voxel of a sampled dose (central differences, Gy;
    :func:`brachycryo.qa.interp_kernels.gradient_norm`)."""
    return gradient_norm(np.asarray(dose_on_grid))


# ----------------------------------------------------------------------------- sampling
def refined_grid(grid: Grid, subdivide: int) -> Grid:
    """``grid`` with every voxel split into ``subdivide``³ sub-voxels (same extent)."""
    m = int(subdivide)
    if m < 1:
        raise GeometryError(f"subdivide must be >= 1, got {subdivide}")
    if m == 1:
        return grid
    sp = np.asarray(grid.spacing_mm) / m
    origin = grid.ijk_to_mm(np.full(3, (0.5 / m) - 0.5))
    nk, nj, ni = grid.shape
    return Grid((nk * m, nj * m, ni * m), tuple(origin), tuple(sp), grid.direction)


def contour_frame_grid(stack: ContourStack, spacing_mm: float) -> Grid:
    """A one-voxel grid in the frame of a ROI's contour planes (u, v, normal), to be extended.

    Used as the sampling lattice when the dose grid is oblique to the contours: the ROI is
    then rasterised exactly in its own planes and the dose interpolated (trilinear).
    """
    d = np.column_stack([stack.u, stack.v, stack.normal])
    return Grid((1, 1, 1), (0.0, 0.0, 0.0), (spacing_mm,) * 3, tuple(d.reshape(-1)))


def default_lattice(
    stack: ContourStack, dose_grid: Grid, *, subdivide: int = 1
) -> tuple[Grid, str]:
    """The sampling lattice of a ROI (a one-voxel Grid to be extended) and its description.

    In-plane it follows the dose grid (its axes and spacing / ``subdivide``) when the dose
    grid's slices are parallel to the contour planes, else the contour planes' own frame
    (:func:`contour_frame_grid`, spacing = smallest dose spacing / ``subdivide``).  Along
    the contour normal its layers tile the slab of every contour plane exactly: spacing
    ``t / m`` (``m`` the smallest whole number giving a spacing <= the dose grid's; even
    for ``end_caps="half"``), layer boundaries on the slab boundaries ``h_p +- t/2``, so
    no sub-voxel straddles two slabs.  Dose on this lattice is interpolated trilinearly.
    """
    m = int(subdivide)
    if m < 1:
        raise GeometryError(f"subdivide must be >= 1, got {subdivide}")
    parallel = abs(abs(float(dose_grid.slice_normal @ stack.normal)) - 1.0) < 1e-4
    if parallel:
        dirm = dose_grid.direction_matrix
        sp = np.asarray(dose_grid.spacing_mm, dtype=float) / m
        origin = np.asarray(dose_grid.origin_mm, dtype=float)
        name = "dose grid axes, slab-aligned layers"
    else:
        dirm = np.column_stack([stack.u, stack.v, stack.normal])
        sp = np.full(3, min(dose_grid.spacing_mm) / m)
        origin = np.zeros(3)
        name = "contour-plane frame, slab-aligned layers"
    col2 = dirm[:, 2]
    sign = 1.0 if float(col2 @ stack.normal) > 0 else -1.0
    t = float(stack.thickness_mm)
    n_layers = max(1, int(np.ceil(t / sp[2] - 1e-6)))
    if stack.end_caps == "half" and n_layers % 2:
        n_layers += 1
    sp[2] = t / n_layers
    boundary = sign * (float(stack.plane_offsets_mm[0]) - t / 2)
    z0 = float(origin @ col2)
    delta = (boundary + 0.5 * sp[2] - z0) % sp[2]
    origin = origin + delta * col2
    return Grid((1, 1, 1), origin, tuple(sp), tuple(dirm.reshape(-1))), name


def _lattice_box(lattice: Grid, corners_mm: np.ndarray, *, clip: bool) -> Grid | None:
    """The part of ``lattice`` (extended without bound unless ``clip``) around the corners."""
    ijk = lattice.mm_to_ijk(corners_mm)
    if not clip:  # the box's size comes from the ROI and the lattice spacing alone
        extent = np.ceil(ijk.max(axis=0)) - np.floor(ijk.min(axis=0)) + 3
        check_allocation(
            extent, _LATTICE_BYTES_PER_VOXEL, f"a DVH sampling lattice of {extent} voxels"
        )
    lo = np.floor(ijk.min(axis=0)).astype(int) - 1
    hi = np.ceil(ijk.max(axis=0)).astype(int) + 2
    if clip:
        lo = np.maximum(lo, 0)
        hi = np.minimum(hi, np.asarray(lattice.size_ijk))
        if np.any(hi <= lo):
            return None
    n = hi - lo
    return Grid(
        (int(n[2]), int(n[1]), int(n[0])),
        tuple(lattice.ijk_to_mm(lo.astype(float))),
        lattice.spacing_mm,
        lattice.direction,
    )


def _axis_weights(coord: np.ndarray, n: int):
    """Linear-interpolation indices and weights along one axis; ``inside`` = within the grid."""
    inside = (coord >= -0.5 - 1e-6) & (coord <= n - 0.5 + 1e-6)
    c = np.clip(coord, 0.0, n - 1.0)
    i0 = np.minimum(np.floor(c).astype(np.intp), n - 1)  # a node: weight 0, exact
    w = c - i0
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, w, inside


def _aligned_offsets(dose_grid: Grid, grid: Grid) -> tuple[np.ndarray, np.ndarray] | None:
    """(start, step) of ``grid``'s axes in dose index coordinates, if the orientations match."""
    if not np.allclose(dose_grid.direction_matrix, grid.direction_matrix, atol=1e-6):
        return None
    start = dose_grid.mm_to_ijk(np.asarray(grid.origin_mm))
    return start, np.asarray(grid.spacing_mm) / np.asarray(dose_grid.spacing_mm)


def sample_dose_on_grid(
    dose_gy: np.ndarray, dose_grid: Grid, grid: Grid, *, method: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear dose at every voxel centre of ``grid``, and a mask of centres inside the dose grid.

    ``method`` is ``"separable"`` (grids of the same orientation: three 1-D linear
    interpolations along the dose grid's axes), ``"points"`` (any orientation: each centre
    on its own, :func:`brachycryo.qa.interp_kernels.trilinear`; ``"map_coordinates"``, the
    name of its former scipy implementation, is accepted) or ``"auto"``.  Both give the
    trilinear interpolant of :func:`scipy.ndimage.map_coordinates` (order 1) with
    constant-exact steps ``a + w (b - a)``; centres within half a voxel outside the dose grid
    take the edge value, centres further out get 0 and ``inside`` False.
    """
    values, inside = _interp_on_grid(dose_gy, dose_grid, grid, method)
    return np.where(inside, values, 0).astype(values.dtype, copy=False), inside


def _interp_on_grid(
    dose_gy: np.ndarray, dose_grid: Grid, grid: Grid, method: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_dose_on_grid` with the edge value (clamped coordinates) everywhere."""
    dose_grid.check_volume(dose_gy, "dose_gy")
    if method not in ("auto", "separable", "points", "map_coordinates"):
        raise GeometryError(f"method must be auto, separable or points, got {method!r}")
    aligned = _aligned_offsets(dose_grid, grid)
    if method == "separable" and aligned is None:
        raise GeometryError("separable interpolation needs grids of the same orientation")
    if aligned is not None and method in ("auto", "separable"):
        return _interp_separable(dose_gy, dose_grid, grid, *aligned)
    values, inside = _dose_at_points_clamped(
        dose_gy, dose_grid, grid.voxel_centres_mm().reshape(-1, 3)
    )
    return values.reshape(grid.shape), inside.reshape(grid.shape)


def _interp_separable(
    dose_gy: np.ndarray, dose_grid: Grid, grid: Grid, start: np.ndarray, step: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    axes = []
    for c in range(3):  # i, j, k
        coord = start[c] + step[c] * np.arange(grid.size_ijk[c])
        axes.append(_axis_weights(coord, dose_grid.size_ijk[c]))
    (i0, i1, wi, ini), (j0, j1, wj, inj), (k0, k1, wk, ink) = axes
    # crop the dose to the block the interpolation touches
    lo = [int(min(x0.min(), x1.min())) for x0, x1 in ((k0, k1), (j0, j1), (i0, i1))]
    hi = [int(max(x0.max(), x1.max())) + 1 for x0, x1 in ((k0, k1), (j0, j1), (i0, i1))]
    dose = np.asarray(dose_gy)[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    k0, k1 = k0 - lo[0], k1 - lo[0]
    j0, j1 = j0 - lo[1], j1 - lo[1]
    i0, i1 = i0 - lo[2], i1 - lo[2]
    # interpolate along k, then j, then i, each step a + w (b - a): exact for a constant
    # dose and on nodes, within [a, b] up to one rounding
    a = separable(dose, (k0, k1, wk), (j0, j1, wj), (i0, i1, wi))
    inside = ink[:, None, None] & inj[None, :, None] & ini[None, None, :]
    return a, inside


def sample_dose_at_points(
    dose_gy: np.ndarray, dose_grid: Grid, points_mm: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Trilinear dose at points (N, 3) in mm (:func:`brachycryo.qa.interp_kernels.trilinear`),
    0 beyond half a voxel outside the dose grid, and ``inside``."""
    values, inside = _dose_at_points_clamped(dose_gy, dose_grid, points_mm)
    return np.where(inside, values, 0).astype(values.dtype, copy=False), inside


def _dose_at_points_clamped(dose_gy, dose_grid: Grid, points_mm) -> tuple[np.ndarray, np.ndarray]:
    dose_grid.check_volume(dose_gy, "dose_gy")
    ijk = dose_grid.mm_to_ijk(np.asarray(points_mm, dtype=float).reshape(-1, 3))
    return _dose_at_dose_ijk(dose_gy, dose_grid, ijk[:, 0], ijk[:, 1], ijk[:, 2])


def _grid_to_dose_ijk(dose_grid: Grid, grid: Grid) -> np.ndarray:
    """The affine (3 x 4) from ``grid``'s continuous indices to ``dose_grid``'s."""
    return (np.linalg.inv(dose_grid.affine_mm) @ grid.affine_mm)[:3]


def _dose_ijk_of(
    dose_grid: Grid, grid: Grid, ijk: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dose-grid index coordinates (i, j, k columns) of continuous indices (N, 3) of ``grid``."""
    ijk = np.asarray(ijk, dtype=float).reshape(-1, 3)
    return _dose_cols_of(dose_grid, grid, ijk[:, 0], ijk[:, 1], ijk[:, 2])


def _affine_row(row: np.ndarray, cols: tuple[np.ndarray, ...]) -> np.ndarray:
    """``row[0] * i + row[1] * j + row[2] * k + row[3]`` summed left to right, zero terms
    skipped: the same values (up to the sign of a zero result), in a fraction of the passes
    when the grids share their orientation (two of the three products vanish)."""
    terms = [(c, col) for c, col in zip(row[:3].tolist(), cols, strict=True) if c != 0.0]
    offset = float(row[3])
    if not terms:
        return np.full(cols[0].shape, offset)
    coef, col = terms[0]
    if coef != 1.0:
        acc = coef * col  # a new array, updated in place (no temporaries)
    elif len(terms) == 1 and offset != 0.0:
        return col + offset
    else:
        acc = col.copy()
    for coef, col in terms[1:]:
        acc += col if coef == 1.0 else coef * col
    if offset != 0.0:
        acc += offset
    return acc


def _dose_cols_of(
    dose_grid: Grid, grid: Grid, i: np.ndarray, j: np.ndarray, k: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`_dose_ijk_of` on the i, j, k columns (float64 arrays of one shape)."""
    m = _grid_to_dose_ijk(dose_grid, grid)
    di, dj, dk = (_affine_row(m[a], (i, j, k)) for a in range(3))
    return di, dj, dk


def sample_dose_at_grid_ijk(
    dose_gy: np.ndarray, dose_grid: Grid, grid: Grid, ijk: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`sample_dose_at_points` at continuous indices (N, 3) of another grid.

    The two grids' affines are composed once, so no patient-mm array is built.
    """
    dose_grid.check_volume(dose_gy, "dose_gy")
    values, inside = _dose_at_dose_ijk(dose_gy, dose_grid, *_dose_ijk_of(dose_grid, grid, ijk))
    return np.where(inside, values, 0).astype(values.dtype, copy=False), inside


def _inside_dose_grid(dose_grid: Grid, i, j, k) -> np.ndarray:
    """Dose index coordinates within half a voxel of the dose grid's outermost centres."""
    inside = np.ones(np.shape(i), dtype=bool)
    for c, n in ((k, dose_grid.shape[0]), (j, dose_grid.shape[1]), (i, dose_grid.shape[2])):
        inside &= (c >= -0.5 - 1e-6) & (c <= n - 0.5 + 1e-6)
    return inside


def _dose_at_dose_ijk(dose_gy, dose_grid: Grid, i, j, k) -> tuple[np.ndarray, np.ndarray]:
    """Clamped trilinear dose at dose index coordinates, and ``inside`` (within half a voxel)."""
    return trilinear(np.asarray(dose_gy), i, j, k), _inside_dose_grid(dose_grid, i, j, k)


def _samples_to_dvh(
    fraction: np.ndarray,
    grid: Grid,
    dose_gy: np.ndarray,
    dose_grid: Grid,
    *,
    name: str,
    bin_width_gy: float | None,
    settings: dict,
    notes: list[str],
) -> DVH:
    nonzero = fraction > 0
    if not nonzero.any():
        raise StructureError("covers no sampling point of the dose grid", roi=name)
    aligned = _aligned_offsets(dose_grid, grid)
    if aligned is not None:
        dose, inside = sample_dose_on_grid(dose_gy, dose_grid, grid)
        d, ins = dose[nonzero], inside[nonzero]
    else:
        pts = grid.voxel_centres_mm()[nonzero]
        d, ins = sample_dose_at_points(dose_gy, dose_grid, pts)
    vol_cc = fraction[nonzero].astype(np.float64) * (grid.voxel_volume_mm3 * _CC_PER_MM3)
    outside_cc = float(vol_cc[~ins].sum())
    if outside_cc > 0:
        notes.append(
            f"{outside_cc:.3f} cc of {name!r} lies outside the dose grid (counted at 0 Gy)"
        )
    return dvh_from_samples(
        d,
        vol_cc,
        name=name,
        bin_width_gy=bin_width_gy,
        volume_outside_dose_cc=outside_cc,
        settings=settings,
        notes=tuple(notes),
    )


def _dose_on(dose_gy, dose_grid, grid, aligned):
    return sample_dose_on_grid(dose_gy, dose_grid, grid, method="auto" if aligned else "points")


class _Samples(NamedTuple):
    """DVH samples of a structure: each spreads its volume (cm³) over the dose interval
    ``[lo_gy, hi_gy]`` (:func:`brachycryo.qa.interp_kernels.clip_intervals`); ``inside``
    flags the samples inside the dose grid (the others are points at 0 Gy)."""

    lo_gy: np.ndarray
    hi_gy: np.ndarray
    volume_cc: np.ndarray
    inside: np.ndarray


def _joined(parts: list[_Samples]) -> _Samples:
    if not parts:
        z = np.zeros(0)
        return _Samples(z, z, z, np.zeros(0, dtype=bool))
    if len(parts) == 1:  # no copy
        return parts[0]
    lo, hi, vol, ins = (np.concatenate(x) for x in zip(*parts, strict=True))
    return _Samples(lo, hi, vol, ins)


def _corner_lattice(dose_gy: np.ndarray, dose_grid: Grid, grid: Grid) -> np.ndarray:
    """Clamped trilinear dose at the voxel corners of ``grid``, shape ``grid.shape + 1``."""
    nk, nj, ni = grid.shape
    corners = Grid(
        (nk + 1, nj + 1, ni + 1),
        tuple(grid.ijk_to_mm(np.full(3, -0.5))),
        grid.spacing_mm,
        grid.direction,
    )
    return _interp_on_grid(dose_gy, dose_grid, corners)[0]


def _voxel_samples(
    dose_gy, dose_grid: Grid, grid: Grid, mask: np.ndarray, d, ins, spread, vol_cc: float
) -> _Samples:
    """Samples at the ``mask`` voxels of ``grid`` (C order), each standing for its voxel:
    centre dose ``d``, inside flags ``ins``, spreads ``spread`` (arrays on ``grid``).

    The corner doses come from one interpolation on the voxel-corner lattice of the part of
    ``grid`` around the mask, or sample by sample where the mask fills little of it (a
    shell such as a skin contour)."""
    lo_ijk = [int(np.flatnonzero(mask.any(axis=ax))[0]) for ax in ((0, 1), (0, 2), (1, 2))]
    hi_ijk = [int(np.flatnonzero(mask.any(axis=ax))[-1]) + 1 for ax in ((0, 1), (0, 2), (1, 2))]
    sl = tuple(slice(a, b) for a, b in zip(lo_ijk[::-1], hi_ijk[::-1], strict=True))
    sub = grid.cropped(lo_ijk, hi_ijk)
    mask = mask[sl]
    n = int(np.count_nonzero(mask))
    if n * _SPARSE_MASK_RATIO < sub.n_voxels:
        kk, jj, ii = np.nonzero(mask)
        ijk = np.column_stack([ii, jj, kk]).astype(float)
        return _point_samples(dose_gy, dose_grid, sub, ijk, 0.5, spread[sl][mask], vol_cc)
    corners = _corner_lattice(dose_gy, dose_grid, sub)
    lo, hi = lattice_intervals(corners, mask, d[sl], spread[sl], ins[sl])
    return _Samples(lo, hi, np.full(n, vol_cc), ins[sl][mask])


def _point_samples(
    dose_gy,
    dose_grid: Grid,
    grid: Grid,
    ijk: np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray],
    half_voxels: float,
    spread,
    vol_cc,
) -> _Samples:
    """Samples at continuous indices ``ijk`` (N, 3, or a tuple of the i, j, k float64
    columns) of ``grid``, each standing for the box of ``half_voxels`` of ``grid``'s voxels
    either side of it (its volume element)."""
    cols = (
        _dose_cols_of(dose_grid, grid, *ijk)
        if isinstance(ijk, tuple)
        else _dose_ijk_of(dose_grid, grid, ijk)
    )
    ins = _inside_dose_grid(dose_grid, *cols)
    return _samples_at_dose_cols(dose_gy, dose_grid, grid, cols, ins, half_voxels, spread, vol_cc)


def _samples_at_dose_cols(
    dose_gy,
    dose_grid: Grid,
    grid: Grid,
    cols: tuple[np.ndarray, np.ndarray, np.ndarray],
    ins,
    half_voxels: float,
    spread,
    vol_cc,
) -> _Samples:
    """:func:`_point_samples` given the samples' dose index columns and inside flags."""
    half_edges = _grid_to_dose_ijk(dose_grid, grid)[:, :3] * half_voxels
    di, dj, dk = cols
    lo, hi = element_intervals(np.asarray(dose_gy), di, dj, dk, half_edges, spread, ins)
    return _Samples(lo, hi, np.full(lo.size, vol_cc), ins)


def _roi_samples(
    roi: ROI,
    box: Grid,
    dose_gy: np.ndarray,
    dose_grid: Grid,
    *,
    supersample: int,
    thickness_mm: float,
    end_caps: str,
    all_subpoints: bool,
    max_points: int = 1 << 23,
) -> _Samples:
    """Dose samples, their spreads (Gy), volumes (cm³), inside-dose-grid flags and element
    dose ranges on ``box``.

    The ROI is rasterised on ``box`` refined ``n``-fold (``n = supersample``; the sub-voxel
    centres are exactly the rasteriser's partial-volume sub-points) a few slices at a time.
    A voxel whose ``n³`` sub-points are all inside contributes its whole volume at the dose
    of its centre; a boundary voxel contributes ``1/n³`` of its volume at the dose of each
    sub-point inside, so partial voxels are weighted by where the ROI occupies them.  With
    ``all_subpoints`` every voxel is sampled at its sub-points (small structures).  Each
    sample's spread is the dose range across its element (:func:`spread_widths_gy`), its
    range that of the dose at the element's centre and 8 corners.
    """
    n = int(supersample)
    n3 = n**3
    nk, nj, ni = box.shape
    voxel_cc = box.voxel_volume_mm3 * _CC_PER_MM3
    chunk = max(1, int(max_points // max(1, nj * ni * n3)))
    out: list[_Samples] = []
    aligned = _aligned_offsets(dose_grid, box) is not None
    for k0 in range(0, nk, chunk):
        k1 = min(nk, k0 + chunk)
        sub = box.cropped((0, 0, k0), (ni, nj, k1))
        fine_grid = refined_grid(sub, n)
        inc = (
            roi_fraction(
                roi,
                fine_grid,
                supersample=1,
                slice_thickness_mm=thickness_mm,
                end_caps=end_caps,
            )
            > 0.5
        )
        if not inc.any():
            continue
        if all_subpoints:
            d, ins = _dose_on(dose_gy, dose_grid, fine_grid, aligned)
            spread = spread_widths_gy(d)
            out.append(
                _voxel_samples(dose_gy, dose_grid, fine_grid, inc, d, ins, spread, voxel_cc / n3)
            )
            continue
        count = inc.reshape(k1 - k0, n, nj, n, ni, n).sum(axis=(1, 3, 5))
        full = count == n3
        part = (count > 0) & ~full
        d_box, ins_box = _dose_on(dose_gy, dose_grid, sub, aligned)
        spread_box = spread_widths_gy(d_box)
        if full.any():
            out.append(
                _voxel_samples(dose_gy, dose_grid, sub, full, d_box, ins_box, spread_box, voxel_cc)
            )
        if part.any():
            # inside sub-points of the boundary voxels, as fine-grid indices
            part_fine = np.repeat(np.repeat(np.repeat(part, n, 0), n, 1), n, 2)
            kk, jj, ii = np.nonzero(inc & part_fine)
            ijk = np.column_stack([ii, jj, kk]).astype(float)
            spread = spread_box[kk // n, jj // n, ii // n] / n
            out.append(
                _point_samples(dose_gy, dose_grid, fine_grid, ijk, 0.5, spread, voxel_cc / n3)
            )
    return _joined(out)


def _plane_masks(
    roi: ROI,
    stack: ContourStack,
    box: Grid,
    planes: np.ndarray,
    n: int,
    *,
    thickness_mm: float,
    end_caps: str,
    max_pixels: int = 1 << 24,
) -> dict[int, np.ndarray]:
    """Even-odd masks of the given contour planes at the box's in-plane sub-point centres.

    Each mask is :func:`roi_mask` (``roi_fraction(supersample=1) > 0.5``) on a grid whose
    slices lie in contour planes, with the box's in-plane axes refined ``n``-fold, so its pixels are
    exactly the rasteriser's partial-volume sub-points.  Planes on a regular spacing are
    filled a group at a time (one grid, one slice per plane).  Shape ``(nj * n, ni * n)``.
    """
    _, nj, ni = box.shape
    col2 = box.direction_matrix[:, 2]
    sign = 1.0 if float(col2 @ stack.normal) > 0 else -1.0
    sp = np.asarray(box.spacing_mm) / np.array([n, n, 1.0])
    first = box.ijk_to_mm(np.array([0.5 / n - 0.5, 0.5 / n - 0.5, 0.0]))
    h = stack.plane_offsets_mm
    t = float(thickness_mm)
    per_call = max(1, max_pixels // (nj * n * ni * n))
    groups: list[list[int]] = []
    for p in (int(p) for p in np.sort(planes)):
        g = groups[-1] if groups else None
        if (
            g is not None
            and len(g) < per_call
            and abs((h[p] - h[g[0]]) / t - round((h[p] - h[g[0]]) / t)) < 1e-3
            and round((h[p] - h[g[-1]]) / t) <= 4
        ):
            g.append(p)
        else:
            groups.append([p])
    # the ROI's contours grouped once (the stack this lattice was laid on, when it is the
    # one these rasterisations would build)
    same_stack = stack if (stack.thickness_mm, stack.end_caps) == (t, end_caps) else None
    masks = {}
    for g in groups:
        steps = [round((h[p] - h[g[0]]) / t) for p in g]
        origin = first + (sign * h[g[0]] - float(first @ col2)) * col2
        grid = Grid(
            (steps[-1] + 1, nj * n, ni * n),
            origin,
            (sp[0], sp[1], t),
            tuple(np.column_stack([box.direction_matrix[:, :2], sign * stack.normal]).reshape(-1)),
        )
        mask = roi_mask(
            roi, grid, slice_thickness_mm=thickness_mm, end_caps=end_caps, stack=same_stack
        )
        for p, k in zip(g, steps, strict=True):
            masks[p] = mask[k]
    return masks


def _block_counts(blocks: np.ndarray) -> np.ndarray:
    """Set sub-points per voxel of contiguous (nj, ni, n, n) bool blocks, as int32.

    Each voxel's n² bytes (0 or 1) are read as machine words and their set bits counted
    (``np.bitwise_count``), a few passes instead of a strided reduction."""
    nj, ni, n, _ = blocks.shape
    raw = blocks.reshape(nj, ni, n * n).view(np.uint8)
    if not hasattr(np, "bitwise_count"):  # numpy < 2
        return raw.sum(axis=-1, dtype=np.int32)
    word = next(
        w for w in (np.uint64, np.uint32, np.uint16, np.uint8) if (n * n) % w().itemsize == 0
    )
    bits = np.bitwise_count(raw.view(word))
    count = bits[..., 0].astype(np.int32)
    for w in range(1, bits.shape[-1]):
        count += bits[..., w]
    return count


def _subpoint_index(fine: np.ndarray, n: int) -> np.ndarray:
    """``(fine + 0.5) / n - 0.5``: the voxel-index coordinate of fine (sub-point) index
    ``fine`` of an ``n``-fold refined axis, computed in place on one new array."""
    out = fine + 0.5
    out /= n
    out -= 0.5
    return out


def _inside_subpoints(
    blocks: np.ndarray, jj: np.ndarray, ii: np.ndarray, ab: tuple[np.ndarray, np.ndarray], spread
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """The set sub-points of voxels ``(jj, ii)`` in a plane's (nj, ni, n, n) ``blocks``, in
    the order (voxel, sub-point): fine i and j indices and the voxels' ``spread``; None if
    there are none.  ``ab``: each sub-point's in-voxel (a, b) offsets."""
    n = blocks.shape[-1]
    sel_v, sel_sub = np.nonzero(blocks[jj, ii].reshape(jj.size, n * n))
    if sel_v.size == 0:
        return None
    return ii[sel_v] * n + ab[1][sel_sub], jj[sel_v] * n + ab[0][sel_sub], spread[sel_v]


def _roi_samples_layered(
    roi: ROI,
    stack: ContourStack,
    box: Grid,
    dose_gy: np.ndarray,
    dose_grid: Grid,
    *,
    supersample: int,
    thickness_mm: float,
    end_caps: str,
    all_subpoints: bool,
) -> _Samples:
    """:func:`_roi_samples` for a box whose k axis is the contour normal (the default lattice).

    Every contour plane is filled once at the sub-point resolution (:func:`_plane_masks`);
    sub-point ``(s, a, b)`` of voxel ``(k, j, i)`` is inside when the mask of the plane whose
    slab holds sub-slice ``s`` of layer ``k`` is set at ``(j n + a, i n + b)``.
    """
    n = int(supersample)
    n3 = n**3
    nk, nj, ni = box.shape
    voxel_cc = box.voxel_volume_mm3 * _CC_PER_MM3
    sub = (np.arange(n) + 0.5) / n - 0.5
    kz = (np.arange(nk)[:, None] + sub[None, :]).reshape(-1)
    z = box.ijk_to_mm(np.column_stack([np.zeros_like(kz), np.zeros_like(kz), kz])) @ stack.normal
    plane_of = stack.plane_index(z).reshape(nk, n)
    used = np.unique(plane_of[plane_of >= 0])
    if used.size == 0:
        return _joined([])
    masks = _plane_masks(roi, stack, box, used, n, thickness_mm=thickness_mm, end_caps=end_caps)
    aligned = _aligned_offsets(dose_grid, box) is not None
    out: list[_Samples] = []
    d_box, ins_box = _dose_on(dose_gy, dose_grid, box, aligned)
    spread_box = spread_widths_gy(d_box)
    full3d = np.zeros(box.shape, dtype=bool)  # voxels with every sub-point inside
    # each plane's mask as (nj, ni, n, n) blocks: block [j, i] holds voxel (j, i)'s
    # sub-points (a, b) at fine pixel (j n + a, i n + b)
    blocks = {
        p: np.ascontiguousarray(m.reshape(nj, n, ni, n).transpose(0, 2, 1, 3))
        for p, m in masks.items()
    }
    counts2d = {p: _block_counts(b) for p, b in blocks.items()}
    aa, bb = (x.reshape(-1) for x in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    # the inside sub-points of the boundary voxels, in the order (k, s, voxel, sub-point),
    # as fine in-plane indices and their layer (k, s); coordinates are formed once at the end
    sub_fi: list[np.ndarray] = []
    sub_fj: list[np.ndarray] = []
    sub_ks: list[tuple[int, int, int]] = []  # (k, s, count)
    sub_spread: list[np.ndarray] = []
    for k in range(nk):
        ps = plane_of[k]
        valid = ps[ps >= 0]
        if valid.size == 0:
            continue
        count = counts2d[int(valid[0])].astype(np.int32)
        for p in valid[1:]:
            count += counts2d[int(p)]
        if all_subpoints:
            part = count > 0
        else:
            full3d[k] = count == n3
            part = (count > 0) & ~full3d[k]
        jj, ii = np.nonzero(part)
        if jj.size == 0:
            continue
        spread_k = spread_box[k][jj, ii]
        # the sub-slices of a layer mostly lie in one contour slab: one plane's inside
        # sub-points serve every sub-slice it holds (the same arrays, the same order)
        of_plane: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray] | None] = {}
        for s in range(n):
            p = int(ps[s])
            if p < 0:
                continue
            if p not in of_plane:
                of_plane[p] = _inside_subpoints(blocks[p], jj, ii, (aa, bb), spread_k)
            found = of_plane[p]
            if found is None:
                continue
            sub_fi.append(found[0])
            sub_fj.append(found[1])
            sub_ks.append((k, s, found[0].size))
            sub_spread.append(found[2])
    if full3d.any():
        out.append(
            _voxel_samples(dose_gy, dose_grid, box, full3d, d_box, ins_box, spread_box, voxel_cc)
        )
    if sub_fi:
        ks, ss, cnt = (np.array(x, dtype=np.int64) for x in zip(*sub_ks, strict=True))
        layer_k = ks.astype(np.float64) + sub[ss]
        spread = np.concatenate(sub_spread) / n
        out.append(
            _subpoint_samples(
                dose_gy,
                dose_grid,
                box,
                n,
                (np.concatenate(sub_fi), np.concatenate(sub_fj), layer_k, cnt),
                spread,
                voxel_cc / n3,
            )
        )
    return _joined(out)


def _subpoint_samples(
    dose_gy, dose_grid: Grid, box: Grid, n: int, where, spread, vol_cc: float
) -> _Samples:
    """Samples at sub-points of ``box`` refined ``n``-fold, ``where = (fi, fj, layer_k,
    count)``: fine in-plane indices, and the layers' k coordinates (box index units) with
    the number of sub-points in each (in the order of ``fi``)."""
    fi, fj, layer_k, cnt = where
    tables = _axis_tables(dose_grid, box, n, layer_k)
    if tables is None:  # the box's axes are not the dose grid's: the general mapping
        cols = (_subpoint_index(fi, n), _subpoint_index(fj, n), np.repeat(layer_k, cnt))
        return _point_samples(dose_gy, dose_grid, box, cols, 0.5 / n, spread, vol_cc)
    half = np.diag(_grid_to_dose_ijk(dose_grid, box)[:, :3] * (0.5 / n))
    lo, hi, ins = layered_intervals(
        np.asarray(dose_gy), tables, fi, fj, cnt, (half[0], half[1], half[2]), spread
    )
    return _Samples(lo, hi, np.full(lo.size, vol_cc), ins)


def _axis_tables(
    dose_grid: Grid, box: Grid, n: int, layer_k: np.ndarray
) -> tuple[tuple[np.ndarray, np.ndarray], ...] | None:
    """Per axis, the dose index coordinate and inside-dose-grid flag of every fine in-plane
    index (i, j) and of the layers ``layer_k``, when each dose axis depends on one box axis
    only (grids of one orientation); None otherwise.

    The values are those :func:`_dose_cols_of` and :func:`_inside_dose_grid` give the
    sub-points (the same operations on the same numbers), looked up instead of recomputed
    per sub-point."""
    m = _grid_to_dose_ijk(dose_grid, box)
    if np.count_nonzero(m[:, :3] - np.diag(np.diag(m[:, :3]))):
        return None
    _, nj, ni = box.shape
    fine_i = _subpoint_index(np.arange(ni * n), n)
    fine_j = _subpoint_index(np.arange(nj * n), n)
    out = []
    for a, x in enumerate((fine_i, fine_j, layer_k)):
        c = _affine_row(m[a], (x, x, x))  # only the diagonal term is non-zero
        size = dose_grid.shape[2 - a]
        out.append((c, (c >= -0.5 - 1e-6) & (c <= size - 0.5 + 1e-6)))
    return tuple(out)


#: Bytes per lattice voxel of the arrays the sampling holds on a ROI's box at once (dose
#: and inside flag, spread, the full-voxel mask, the corner dose lattice).
_LATTICE_BYTES_PER_VOXEL = 24


def _check_sampling_memory(roi: ROI, box: Grid, supersample: int) -> None:
    """Refuse (:class:`MemoryBudgetError`) a sampling whose arrays exceed the memory budget:
    the box-sized arrays, and the sub-point masks of the contour planes (one byte per
    sub-point of a plane, every plane of the box at once at most)."""
    nk, nj, ni = box.shape
    what = f"the DVH sampling of ROI {roi.name!r} ({box.shape} voxels, {supersample}^3 sub-points)"
    check_allocation(box.shape, _LATTICE_BYTES_PER_VOXEL, what)
    check_allocation((nk, nj * supersample, ni * supersample), 2, what)


def dvh_from_roi(
    roi: ROI,
    dose_gy: np.ndarray,
    dose_grid: Grid,
    *,
    supersample: int | None = None,
    subdivide: int = 1,
    sampling_grid: Grid | None = None,
    end_caps: str = "full",
    slice_thickness_mm: float | None = None,
    bin_width_gy: float | None = None,
    subpoint_limit: int = 1 << 22,
) -> DVH:
    """DVH of an RTSTRUCT ROI in ``dose_gy`` (indexed [k, j, i] on ``dose_grid``).

    See the module docstring for the method.  ``supersample`` sets the partial-volume
    sub-points per axis (default: 4, or 2 for a structure whose box exceeds
    :data:`AUTO_SUPERSAMPLE_BOX_VOXELS` lattice voxels - a body outline or skin, where the
    surface voxels hold a few % of the volume and 8 sub-points each place them well enough),
    ``subdivide`` refines the dose grid into a finer sampling lattice
    (dose interpolated trilinearly), ``sampling_grid`` replaces that lattice with any grid,
    ``end_caps`` and ``slice_thickness_mm`` are the rasteriser's (``slice_thickness_mm``
    defaults to the smallest spacing between the ROI's contour planes; give the CT slice
    spacing when known).  Interior voxels are sampled at their ``supersample``³ sub-points
    as well when the ROI holds fewer than ``subpoint_limit`` sub-points (small structures,
    where the dose spread within a voxel matters), at their centres otherwise.  Raises
    :class:`StructureError` naming the ROI when it cannot enclose a volume or covers no
    sampling point.
    """
    dose_grid.check_volume(dose_gy, "dose_gy")
    if supersample is not None and int(supersample) < 1:
        raise GeometryError(f"supersample must be >= 1, got {supersample}")
    stack = contour_stack(roi, slice_thickness_mm=slice_thickness_mm, end_caps=end_caps)
    if not np.isfinite(stack.thickness_mm):
        raise StructureError(
            "has a single contour plane: give slice_thickness_mm (the CT slice spacing)",
            roi=roi.name,
        )
    if sampling_grid is None:
        lattice, lattice_name = default_lattice(stack, dose_grid, subdivide=int(subdivide))
        box = _lattice_box(lattice, stack.bounds_mm(), clip=False)
        assert box is not None  # an unclipped box always exists
    else:
        if subdivide != 1:
            raise GeometryError("give either subdivide or sampling_grid, not both")
        box = _lattice_box(sampling_grid, stack.bounds_mm(), clip=True)
        lattice_name = "given grid"
        if box is None:
            raise StructureError("lies outside the sampling grid", roi=roi.name)
    if supersample is None:
        supersample = 4 if box.n_voxels <= AUTO_SUPERSAMPLE_BOX_VOXELS else 2
    _check_sampling_memory(roi, box, int(supersample))
    n_sub = roi_volume_cc(roi, stack=stack) / (
        box.voxel_volume_mm3 * _CC_PER_MM3 / int(supersample) ** 3
    )
    all_subpoints = n_sub <= subpoint_limit
    if abs(abs(float(box.slice_normal @ stack.normal)) - 1.0) < 1e-4:
        samples = _roi_samples_layered(
            roi,
            stack,
            box,
            dose_gy,
            dose_grid,
            supersample=int(supersample),
            thickness_mm=stack.thickness_mm,
            end_caps=end_caps,
            all_subpoints=all_subpoints,
        )
    else:
        samples = _roi_samples(
            roi,
            box,
            dose_gy,
            dose_grid,
            supersample=int(supersample),
            thickness_mm=stack.thickness_mm,
            end_caps=end_caps,
            all_subpoints=all_subpoints,
        )
    if samples.lo_gy.size == 0:
        raise StructureError("covers no sampling point of the dose grid", roi=roi.name)
    settings = {
        "supersample": int(supersample),
        "subdivide": int(subdivide),
        "sampling_grid": lattice_name,
        "sampling_spacing_mm": [float(v) for v in box.spacing_mm],
        "interior_dose": "sub-points" if all_subpoints else "voxel centres",
        "end_caps": end_caps,
        "slice_thickness_mm": float(stack.thickness_mm),
    }
    notes: list[str] = []
    outside_cc = float(samples.volume_cc[~samples.inside].sum())
    if outside_cc > 0:
        notes.append(
            f"{outside_cc:.3f} cc of {roi.name!r} lies outside the dose grid (counted at 0 Gy)"
        )
    return _dvh_from_intervals(
        samples.lo_gy,
        samples.hi_gy,
        samples.volume_cc,
        name=roi.name,
        bin_width_gy=bin_width_gy,
        volume_outside_dose_cc=outside_cc,
        settings=settings,
        notes=tuple(notes),
    )


def dvh_from_mask(
    mask: np.ndarray,
    mask_grid: Grid,
    dose_gy: np.ndarray,
    dose_grid: Grid,
    *,
    name: str = "mask",
    bin_width_gy: float | None = None,
) -> DVH:
    """DVH of a mask (bool, or occupancy fractions in [0, 1]) on ``mask_grid``.

    Each mask voxel stands for ``fraction x voxel volume``; the dose at its centre is the
    dose voxel's own value when the grids coincide, else trilinearly interpolated.
    """
    mask_grid.check_volume(mask, name)
    frac = np.asarray(mask, dtype=np.float32)
    if not np.all(np.isfinite(frac)) or frac.min(initial=0) < 0 or frac.max(initial=0) > 1:
        raise StructureError("mask values must be in [0, 1]", roi=name)
    return _samples_to_dvh(
        frac,
        mask_grid,
        dose_gy,
        dose_grid,
        name=name,
        bin_width_gy=bin_width_gy,
        settings={"sampling_grid": "mask grid"},
        notes=[],
    )


__all__ = [
    "DVH",
    "contour_frame_grid",
    "default_bin_width_gy",
    "default_lattice",
    "dvh_from_mask",
    "dvh_from_roi",
    "dvh_from_samples",
    "refined_grid",
    "sample_dose_at_grid_ijk",
    "sample_dose_at_points",
    "sample_dose_on_grid",
    "spread_widths_gy",
]
