"""A synthetic planning CT and a follow-up CT made from it by a known smooth deformation.

The follow-up CT is the planning CT seen through a known map ``S`` (follow-up point ->
planning point): ``F(y) = P(S(y))`` with

    S(y) = c + R (y - c) + t + a * exp(-|y - b|^2 / (2 sigma^2)),

a rigid part (rotation ``R`` about ``c``, shift ``t``) and one Gaussian bump of amplitude
``a`` (mm) centred on ``b``.  ``S`` is invertible while ``|a| / (sigma sqrt(e)) < 1`` (the
largest gradient of the bump), which the constructor checks, so every planning structure
has a known follow-up shape ``{y : S(y) in structure}`` and a known landmark pair
``(S(y), y)`` for any follow-up point ``y``.

The CT is a smooth random texture (Gaussian-filtered noise, fixed seed) under a few
spheres of contrast: something a registration can lock onto everywhere, as real soft
tissue and bone give it.  Used by the follow-up tests (small grids) and the follow-up
speed benchmark (512 x 512 x 100).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brachycryo.core.errors import GeometryError
from brachycryo.core.grid import Grid


def rotation_matrix(axis: tuple[float, float, float], angle_deg: float) -> np.ndarray:
    """Rodrigues' rotation matrix about ``axis`` by ``angle_deg``."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    t = math.radians(angle_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


@dataclass(frozen=True)
class SmoothDeformation:
    """The follow-up -> planning map ``S`` of the module docstring (mm, LPS)."""

    centre_mm: tuple[float, float, float]
    rotation_axis: tuple[float, float, float] = (0.0, 0.0, 1.0)
    rotation_deg: float = 0.0
    shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bump_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bump_centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    bump_sigma_mm: float = 15.0

    def __post_init__(self) -> None:
        grad = float(np.linalg.norm(self.bump_mm)) / (self.bump_sigma_mm * math.sqrt(math.e))
        if not grad < 1.0:
            raise GeometryError(
                f"bump of {np.linalg.norm(self.bump_mm):.1f} mm over sigma "
                f"{self.bump_sigma_mm} mm folds space (gradient {grad:.2f} >= 1)"
            )

    def fu_to_plan(self, points_mm: np.ndarray) -> np.ndarray:
        """``S(y)`` for follow-up points (N, 3) -> planning points (N, 3)."""
        y = np.asarray(points_mm, dtype=float).reshape(-1, 3)
        c = np.asarray(self.centre_mm)
        r = rotation_matrix(self.rotation_axis, self.rotation_deg)
        d2 = np.sum((y - np.asarray(self.bump_centre_mm)) ** 2, axis=1)
        g = np.exp(-d2 / (2.0 * self.bump_sigma_mm**2))
        return c + (y - c) @ r.T + np.asarray(self.shift_mm) + g[:, None] * np.asarray(self.bump_mm)


def textured_ct(grid: Grid, *, seed: int = 7, texture_sigma_mm: float = 2.5) -> np.ndarray:
    """HU on ``grid``: soft tissue (40 HU) with a +-~60 HU smooth random texture, a denser
    sphere (bone-like, 600 HU) and a hypodense one (-60 HU) off the centre."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(grid.shape).astype(np.float32)
    sigma_vox = [texture_sigma_mm / s for s in grid.spacing_mm[::-1]]
    tex = ndimage.gaussian_filter(noise, sigma_vox)
    tex *= 60.0 / max(float(tex.std()), 1e-6)
    hu = 40.0 + tex
    pts = grid.voxel_centres_mm().reshape(*grid.shape, 3)
    lo, hi = grid.bounds_mm()
    centre, half = (lo + hi) / 2.0, (hi - lo) / 2.0
    for offset, radius_frac, value in (((0.45, -0.3, 0.2), 0.18, 600.0),
                                       ((-0.35, 0.4, -0.25), 0.2, -60.0)):  # fmt: skip
        c = centre + np.asarray(offset) * half
        r = radius_frac * float(half.min())
        hu = np.where(np.sum((pts - c) ** 2, axis=-1) <= r * r, hu + value, hu)
    return hu.astype(np.float32)


def warp(plan_hu: np.ndarray, plan_grid: Grid, fu_grid: Grid, s: SmoothDeformation) -> np.ndarray:
    """The follow-up CT ``F(y) = P(S(y))`` on ``fu_grid`` (trilinear; -1000 HU outside)."""
    y = fu_grid.voxel_centres_mm().reshape(-1, 3)
    ijk = plan_grid.mm_to_ijk(s.fu_to_plan(y))
    out = np.empty(y.shape[0], dtype=np.float32)
    chunk = 4_000_000
    for a in range(0, y.shape[0], chunk):
        c = ijk[a : a + chunk]
        out[a : a + chunk] = ndimage.map_coordinates(
            plan_hu, [c[:, 2], c[:, 1], c[:, 0]], order=1, mode="constant", cval=-1000.0
        )
    return out.reshape(fu_grid.shape)


def followup_sphere_mask(
    fu_grid: Grid, s: SmoothDeformation, centre_mm, radius_mm: float
) -> np.ndarray:
    """The follow-up image of the planning sphere (``|S(y) - centre| <= radius``) on
    ``fu_grid``, evaluated at voxel centres."""
    y = fu_grid.voxel_centres_mm().reshape(-1, 3)
    d = np.linalg.norm(s.fu_to_plan(y) - np.asarray(centre_mm), axis=1)
    return (d <= radius_mm).reshape(fu_grid.shape)
