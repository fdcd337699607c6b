"""A synthetic follow-up CT: the planning CT as seen after the patient moved by a known rigid
transform, on a smaller field of view (so that no voxel of it is padding)."""

import math

import numpy as np

from brachycryo.core.grid import Grid
from brachycryo.followup.registration import LinearTransform, resample_onto


def rotation(axis, deg) -> np.ndarray:
    """Rodrigues' rotation matrix about ``axis`` by ``deg`` degrees."""
    a = np.asarray(axis, float) / np.linalg.norm(axis)
    t = math.radians(deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    return np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k


def grid_centre(grid: Grid) -> tuple[float, float, float]:
    c = grid.ijk_to_mm(np.array(grid.size_ijk) / 2.0 - 0.5).reshape(3)
    return (float(c[0]), float(c[1]), float(c[2]))


def inverse(t: LinearTransform) -> LinearTransform:
    inv = np.linalg.inv(t.matrix_3x3)
    return LinearTransform(
        tuple(inv.reshape(-1)), tuple(-inv @ np.asarray(t.translation_mm)), t.centre_mm
    )


def cropped(grid: Grid, n: int) -> Grid:
    """``grid`` less ``n`` voxels on every side (axis-aligned grids)."""
    origin = np.asarray(grid.origin_mm) + n * np.asarray(grid.spacing_mm)
    return Grid(tuple(s - 2 * n for s in grid.shape), tuple(origin), grid.spacing_mm)


def moved_ct(hu, grid: Grid, true: LinearTransform, fu_grid: Grid) -> np.ndarray:
    """The follow-up CT on ``fu_grid`` of a patient moved by ``true`` (planning -> follow-up):
    F(T(x)) = P(x), i.e. F at y is P at T^-1(y)."""
    fu, inside = resample_onto(hu, grid, fu_grid, inverse(true), linear=True)
    assert inside.all(), "the follow-up field of view must lie inside the planning CT"
    return fu
