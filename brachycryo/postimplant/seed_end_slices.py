"""A single seed's position across thick CT slices, from the slices holding its two ends.

On thick slices (e.g. 3 mm) a seed (4.5 mm) crosses two or three slices, and its core is
clipped at the top of the stored range (3071 HU on 12-bit scanners).  The HU-weighted
centroid then weighs saturated interior slices against partial end slices and is pulled
towards slice boundaries (errors up to a third of a slice).  Here the seed's extent is
used instead:

* Its extent across slices, in slice units, is
  ``Lz = (L |a.n| + d sqrt(1 - (a.n)^2)) / t`` (nominal length L = 4.5 mm, diameter
  d = 0.8 mm, seed axis a, slice normal n, slice spacing t).  It crosses slices a..b; the
  slices strictly between are fully crossed, so the two end slices share the overlap
  ``R = Lz - (b - a - 1)`` (0 < R <= 2).
* The metal signal of a slice, ``S_k`` = sum over the seed's component voxels in that
  slice of HU above the edge threshold, grows nearly in proportion to the slice's
  overlap with the seed as long as no voxel of the slice is clipped (CT numbers are
  linear in attenuation).  The signal
  per unit overlap ``S1`` is calibrated on the implant itself: the median of
  ``(S_a + S_b) / R`` over seeds whose two end slices are both unclipped.
* End overlaps: both ends unclipped: ``o_a = R S_a / (S_a + S_b)``; one end unclipped:
  ``o = S / S1`` for it and ``R - o`` for the other (each within [0, 1]); both clipped:
  ``o_a = R W_a / (W_a + W_b)`` with the component's clipped signals W (a fallback that
  still leans the right way; W = S here).
* Centre (slice units): ``(a + b) / 2 + (o_b - o_a) / 2``; the seed moves along its own
  axis to get there.

Used only for seeds within 45 degrees of the slice normal (the usual needle direction);
others keep their centroid.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brachycryo.core.grid import Grid
from brachycryo.core.seed_capsule import SEED_DIAMETER_MM, SEED_LENGTH_MM

_MAX_TILT_DEG = 45.0


@dataclass(frozen=True)
class EndSlices:
    """What one seed's end slices show (slice indices absolute, along the grid's k)."""

    first_k: int
    last_k: int
    shared_overlap: float  # R, slice units
    signal_first: float  # S_a, sum of HU above the edge threshold (HU x voxels)
    signal_last: float
    clipped_first: bool
    clipped_last: bool
    weight_first: float  # W_a: the component's (clipped) signal in the slice
    weight_last: float
    cos_normal: float


def measure_end_slices(
    hu: np.ndarray,
    grid: Grid,
    voxel_k: np.ndarray,
    voxel_weight: np.ndarray,
    voxel_clipped: np.ndarray,
    mean_mm: np.ndarray,
    axis: np.ndarray,
) -> EndSlices | None:
    """Measure a single seed's end slices from its component's voxels (k index, signal
    weight, clipped flag); None when the method does not apply."""
    cos_n = float(abs(axis @ grid.slice_normal))
    if cos_n < np.cos(np.radians(_MAX_TILT_DEG)):
        return None
    t = grid.spacing_mm[2]
    lz = (SEED_LENGTH_MM * cos_n + SEED_DIAMETER_MM * np.sqrt(max(0.0, 1.0 - cos_n**2))) / t
    ks = np.rint(voxel_k).astype(int)
    k0 = int(ks.min())
    w = np.bincount(ks - k0, weights=voxel_weight)
    present = np.flatnonzero(w >= 0.02 * w.max())
    a, b = int(present.min()), int(present.max())
    shared = lz - (b - a - 1)
    if b == a or not 0.0 < shared <= 2.0:
        return None
    clipped = np.bincount(ks - k0, weights=voxel_clipped.astype(float), minlength=w.size) > 0
    s_a, s_b = float(w[a]), float(w[b])
    c_a, c_b = bool(clipped[a]), bool(clipped[b])
    return EndSlices(
        first_k=k0 + a,
        last_k=k0 + b,
        shared_overlap=float(shared),
        signal_first=s_a,
        signal_last=s_b,
        clipped_first=c_a,
        clipped_last=c_b,
        weight_first=float(w[a]),
        weight_last=float(w[b]),
        cos_normal=cos_n,
    )


def unit_overlap_signal(measures: list[EndSlices], *, min_seeds: int = 5) -> float | None:
    """Median metal signal per unit slice overlap, from seeds with both ends unclipped."""
    vals = [
        (m.signal_first + m.signal_last) / m.shared_overlap
        for m in measures
        if not m.clipped_first and not m.clipped_last and m.signal_first + m.signal_last > 0
    ]
    if len(vals) < min_seeds:
        return None
    return float(np.median(vals))


def refined_position(
    m: EndSlices, mean_mm: np.ndarray, axis: np.ndarray, grid: Grid, unit_signal: float | None
) -> np.ndarray:
    """The seed centre moved along its axis to where its end slices put it."""
    r = m.shared_overlap
    if not m.clipped_first and not m.clipped_last and m.signal_first + m.signal_last > 0:
        o_a = r * max(m.signal_first, 0.0) / (max(m.signal_first, 0.0) + max(m.signal_last, 0.0))
    elif unit_signal and not m.clipped_first:
        o_a = m.signal_first / unit_signal
    elif unit_signal and not m.clipped_last:
        o_a = r - m.signal_last / unit_signal
    else:
        o_a = r * m.weight_first / (m.weight_first + m.weight_last)
    o_a = float(np.clip(o_a, max(0.0, r - 1.0), min(1.0, r)))
    o_b = r - o_a
    centre_k = 0.5 * (m.first_k + m.last_k) + 0.5 * (o_b - o_a)
    now_k = float(grid.mm_to_ijk(mean_mm)[2])
    direction = axis if axis @ grid.slice_normal > 0 else -axis
    return mean_mm + direction * (centre_k - now_k) * grid.spacing_mm[2] / m.cos_normal
