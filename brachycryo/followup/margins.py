"""Geometry of a treated lesion on one grid: signed distances, the minimal ablative margin,
shell and zone coverage, zone volumes, and the RECIST longest axial diameter.

Everything here takes boolean masks on one :class:`~brachycryo.core.grid.Grid` (the
analysis grid, in the planning frame) and returns numbers in mm, cm³ or fractions.
Distances are exact Euclidean distance transforms between voxel centres with the grid's
spacing (``scipy.ndimage.distance_transform_edt(..., sampling=spacing)``), so anisotropic
voxels are handled; the resolution of every distance is one voxel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brachycryo.core.grid import Grid

#: The minimal ablative margin above which no local tumour progression was observed by
#: Laimer et al., Eur Radiol 35(2):1046-1056 (2025), doi:10.1007/s00330-024-10956-5: 4 mm
#: with Ablation-fit, 5 mm with SAFIR; the default threshold is the stricter 5 mm.
DEFAULT_MAM_THRESHOLD_MM = 5.0
#: The shells (mm) around the tumour whose coverage by the ablation zone is reported.
SHELL_WIDTHS_MM = (3.0, 5.0, 10.0)


def sampling_kji(grid: Grid) -> tuple[float, float, float]:
    """The grid's spacing in array order [k, j, i] (what ``distance_transform_edt`` takes)."""
    si, sj, sk = grid.spacing_mm
    return (sk, sj, si)


def signed_distance_mm(mask: np.ndarray, grid: Grid) -> np.ndarray:
    """Signed distance (mm) to the boundary of ``mask``: inside, + the distance from the voxel
    centre to the nearest voxel centre *outside*; outside, - the distance to the nearest
    voxel centre *inside*.  An empty mask is -inf everywhere, a full one +inf."""
    m = np.asarray(mask, dtype=bool)
    if not m.any():
        return np.full(m.shape, -np.inf)
    if m.all():
        return np.full(m.shape, np.inf)
    sp = sampling_kji(grid)
    inside = ndimage.distance_transform_edt(m, sampling=sp)
    outside = ndimage.distance_transform_edt(~m, sampling=sp)
    return np.where(m, inside, -outside)


def minimal_ablative_margin_mm(tumour: np.ndarray, ablation: np.ndarray, grid: Grid) -> float:
    """The minimal ablative margin (MAM, mm) of ``tumour`` in ``ablation``.

    ``MAM = min over tumour voxels x of s_A(x)``, with ``s_A`` the signed distance to the
    ablation zone's boundary (:func:`signed_distance_mm`).  When the tumour lies inside the
    ablation zone this is the smallest distance from the tumour to tissue outside the
    ablation zone - the shortest tumour-surface-to-ablation-surface distance, the 3D MAM of
    ablation-confirmation software (Laimer et al., Eur Radiol 2025); when part of the tumour
    lies outside, it is minus the depth of the deepest tumour voxel outside (negative: the
    zone missed tumour).  Resolution: one voxel.  Distances run between voxel centres, which
    lie inside the tumour and outside the zone, so a tumour inside the zone reads up to one
    voxel *too large* (spheres on a 1 mm grid: +0.06 to +0.41 mm; flat faces along the grid:
    up to +1 voxel) and a protruding one slightly too deep.
    """
    t = np.asarray(tumour, dtype=bool)
    if not t.any():
        return float("nan")
    return float(signed_distance_mm(ablation, grid)[t].min())


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face neighbour outside it (or on the array's edge)."""
    m = np.asarray(mask, dtype=bool)
    return m & ~ndimage.binary_erosion(m, border_value=0)


def surface_margins_mm(tumour: np.ndarray, ablation: np.ndarray, grid: Grid) -> np.ndarray:
    """The signed distance (mm, :func:`signed_distance_mm` of ``ablation``) at each surface
    voxel of ``tumour``: the local ablative margin over the tumour surface (+ inside the
    ablation zone, - outside), as the margin histograms of ablation-confirmation software
    show it (Laimer et al., Eur Radiol 2025)."""
    return signed_distance_mm(ablation, grid)[surface_voxels(tumour)]


#: Width (mm) of the bins of the surface-margin histogram.
HISTOGRAM_BIN_MM = 1.0


def margin_histogram(
    margins_mm: np.ndarray, bin_mm: float = HISTOGRAM_BIN_MM
) -> tuple[np.ndarray, np.ndarray]:
    """(bin edges mm, counts) of the finite ``margins_mm`` in ``bin_mm`` bins on multiples of
    ``bin_mm``; empty arrays when none is finite."""
    v = np.asarray(margins_mm, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return np.zeros(0), np.zeros(0, dtype=int)
    lo = np.floor(v.min() / bin_mm) * bin_mm
    hi = (np.floor(v.max() / bin_mm) + 1.0) * bin_mm
    edges = np.arange(round((hi - lo) / bin_mm) + 1) * bin_mm + lo
    counts, _ = np.histogram(v, bins=edges)
    return edges, counts


def shell_mask(tumour: np.ndarray, grid: Grid, width_mm: float) -> np.ndarray:
    """Voxels outside ``tumour`` within ``width_mm`` of it (the margin shell)."""
    t = np.asarray(tumour, dtype=bool)
    outside = ndimage.distance_transform_edt(~t, sampling=sampling_kji(grid))
    return (~t) & (outside <= width_mm)


def covered_fraction(region: np.ndarray, cover: np.ndarray) -> float:
    """Fraction of the voxels of ``region`` inside ``cover`` (NaN for an empty region)."""
    r = np.asarray(region, dtype=bool)
    n = int(np.count_nonzero(r))
    return float("nan") if n == 0 else float(np.count_nonzero(r & cover)) / n


def volume_cc(mask: np.ndarray, grid: Grid) -> float:
    return float(np.count_nonzero(mask)) * grid.voxel_volume_mm3 / 1000.0


@dataclass(frozen=True)
class ZoneSplit:
    """Volume (cm³) of a structure in the core, in the margin (seed target, not core) and
    outside both."""

    core_cc: float
    margin_cc: float
    outside_cc: float

    @property
    def total_cc(self) -> float:
        return self.core_cc + self.margin_cc + self.outside_cc

    def fractions(self) -> tuple[float, float, float]:
        t = self.total_cc
        if t == 0:
            return (float("nan"),) * 3
        return (self.core_cc / t, self.margin_cc / t, self.outside_cc / t)


def zone_split(mask: np.ndarray, core: np.ndarray, margin: np.ndarray, grid: Grid) -> ZoneSplit:
    """``mask`` split by zone; the core wins where the two zones overlap."""
    m = np.asarray(mask, dtype=bool)
    in_core = m & core
    in_margin = m & margin & ~core
    return ZoneSplit(
        volume_cc(in_core, grid),
        volume_cc(in_margin, grid),
        volume_cc(m & ~in_core & ~in_margin, grid),
    )


def zone_at(ijk_kji: tuple[int, int, int], core: np.ndarray, margin: np.ndarray) -> str:
    """``"core"``, ``"margin"`` or ``"outside"`` for one voxel (index [k, j, i])."""
    if core[ijk_kji]:
        return "core"
    if margin[ijk_kji]:
        return "margin"
    return "outside"


def centroid_voxel(mask: np.ndarray) -> tuple[int, int, int]:
    """The voxel (index [k, j, i]) nearest the centroid of ``mask``."""
    k, j, i = np.rint(np.argwhere(mask).mean(axis=0)).astype(int)
    return (int(k), int(j), int(i))


def closest_voxel_to(mask: np.ndarray, target: np.ndarray, grid: Grid) -> tuple[int, int, int]:
    """The voxel of ``mask`` closest to ``target`` (a voxel inside ``target`` when they
    overlap; ties go to the first in array order)."""
    dist = ndimage.distance_transform_edt(~np.asarray(target, bool), sampling=sampling_kji(grid))
    k, j, i = np.unravel_index(np.where(mask, dist, np.inf).argmin(), mask.shape)
    return (int(k), int(j), int(i))


def longest_diameter_mm(planes_xy: Sequence[np.ndarray]) -> float:
    """RECIST 1.1 longest diameter (Eisenhauer et al., Eur J Cancer 45:228, 2009): the
    largest in-plane distance between two points of the lesion's outline over its axial
    planes.  ``planes_xy`` holds the (N, 2) outline points of each plane."""
    best = 0.0
    for pts in planes_xy:
        p = np.asarray(pts, dtype=float).reshape(-1, 2)
        if len(p) < 2:
            continue
        d = np.sqrt(((p[:, None, :] - p[None, :, :]) ** 2).sum(axis=-1))
        best = max(best, float(d.max()))
    return best
