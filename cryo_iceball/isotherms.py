"""Isotherm masks and their measures: volume, principal axes, distance to organs at risk."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brachycryo.core.grid import Grid


def isotherm_key(temp_c: float) -> str:
    """Key of an isotherm in summary.json: the temperature as a string ("0", "-20", "-2.5")."""
    return f"{float(temp_c) + 0.0:g}"


def volume_ml(mask: np.ndarray, grid: Grid) -> float:
    return float(np.count_nonzero(mask)) * grid.voxel_volume_mm3 * 1e-3


@dataclass(frozen=True)
class PrincipalAxes:
    """Equivalent ellipsoid of a mask: full axis lengths (short, middle, long) and directions.

    ``axes_mm[n]`` is the full length of the ellipsoid with the mask's volume-weighted second
    moments: ``2 sqrt(5 lambda_n)`` with ``lambda_n`` the eigenvalues of the covariance of
    the filled region (voxel-centre covariance plus each voxel's own ``h^2/12``), exact for a
    solid ellipsoid.  ``directions[:, n]`` is the unit vector (LPS) of axis ``n``.
    """

    axes_mm: tuple[float, float, float]
    directions: np.ndarray
    centroid_mm: np.ndarray


def principal_axes(mask: np.ndarray, grid: Grid) -> PrincipalAxes:
    grid.check_volume(mask, "mask")
    idx = np.argwhere(mask)
    if len(idx) == 0:
        return PrincipalAxes((0.0, 0.0, 0.0), np.eye(3), np.full(3, np.nan))
    pts = grid.ijk_to_mm(idx[:, ::-1].astype(float))
    centroid = pts.mean(axis=0)
    rel = pts - centroid
    cov = rel.T @ rel / len(pts)
    m = grid.direction_matrix
    cov = cov + m @ np.diag(np.asarray(grid.spacing_mm) ** 2 / 12.0) @ m.T
    lam, vec = np.linalg.eigh(cov)
    l0, l1, l2 = (float(2.0 * math.sqrt(5.0 * max(v, 0.0))) for v in lam)
    return PrincipalAxes((l0, l1, l2), vec, centroid)


def min_distance_mm(mask: np.ndarray, other: np.ndarray, grid: Grid) -> float:
    """Smallest centre-to-centre distance between a voxel of ``mask`` and one of ``other``.

    0 when they overlap; ``inf`` when either is empty.  Needs an axis-aligned grid or any
    orthonormal one (distances are taken in index space scaled by the spacing).
    """
    grid.check_volume(mask, "mask")
    grid.check_volume(other, "other")
    if not np.any(mask) or not np.any(other):
        return math.inf
    if np.any(mask & other):
        return 0.0
    sampling = tuple(grid.spacing_mm[a] for a in (2, 1, 0))
    dist = ndimage.distance_transform_edt(~other, sampling=sampling)
    return float(dist[mask].min())
