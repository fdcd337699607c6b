"""The one geometry type of the project: a regular 3D voxel grid in patient coordinates.

Conventions (see DESIGN.md):

* Positions are DICOM patient coordinates (LPS), in millimetres.
* A volume on a grid is a numpy array indexed ``[k, j, i]`` = ``[slice, row, column]``
  (numpy / SimpleITK order, commonly written ``[z, y, x]``); ``Grid.shape`` is that array's
  shape ``(n_slices, n_rows, n_columns)``.
* Index vectors are written ``ijk`` = (column, row, slice), the order of ITK and of the
  DICOM direction cosines.  ``spacing_mm`` is in the same ``ijk`` order: (spacing along a
  row = PixelSpacing[1], spacing down a column = PixelSpacing[0], slice spacing).
* ``direction`` is a 3x3 matrix whose *columns* are the unit vectors of the i, j and k axes
  in patient coordinates.  For an image series: column 0 = ImageOrientationPatient[0:3]
  (row direction), column 1 = ImageOrientationPatient[3:6] (column direction), column 2 =
  the direction in which slices are stacked.  Oblique and decubitus orientations are
  carried exactly; nothing assumes an axis-aligned grid.
* ``origin_mm`` is the centre of voxel ``[0, 0, 0]``.

The mapping is ``p_mm = origin_mm + direction @ (spacing_mm * ijk)``, the affine used by
ITK and by DICOM PS3.3 C.7.6.2.1.1 (Image Position and Orientation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import ArrayLike

from brachycryo.core.errors import GeometryError
from brachycryo.core.memory import check_allocation

_ORTHONORMAL_TOL = 1e-4


def _as_triplet(values: ArrayLike, name: str, *, positive: bool) -> tuple[float, float, float]:
    arr = np.asarray(values, dtype=float).reshape(-1)
    if arr.shape != (3,):
        raise GeometryError(f"{name} must have 3 values, got {arr.size}")
    if not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name} contains NaN or inf: {arr.tolist()}")
    if positive and not np.all(arr > 0):
        raise GeometryError(f"{name} must be positive, got {arr.tolist()}")
    return (float(arr[0]), float(arr[1]), float(arr[2]))


def _as_spacing_triplet(spacing_mm: float | Sequence[float]) -> tuple[float, float, float]:
    """One spacing for all three axes, or three (i, j, k), checked positive."""
    sp = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    return _as_triplet(sp, "spacing_mm", positive=True)


@dataclass(frozen=True)
class Grid:
    """A regular voxel grid: shape ``(nk, nj, ni)``, ``origin_mm``, ``spacing_mm`` (ijk), direction.

    Instances are immutable and hashable; compare two grids with :meth:`same_as` to allow
    for floating-point noise.
    """

    shape: tuple[int, int, int]
    origin_mm: tuple[float, float, float]
    spacing_mm: tuple[float, float, float]
    direction: tuple[float, ...] = field(default=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0))

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in np.asarray(self.shape).reshape(-1))
        if len(shape) != 3 or min(shape) < 1:
            raise GeometryError(f"grid shape must be 3 positive integers, got {self.shape}")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(
            self, "origin_mm", _as_triplet(self.origin_mm, "origin_mm", positive=False)
        )
        object.__setattr__(
            self, "spacing_mm", _as_triplet(self.spacing_mm, "spacing_mm", positive=True)
        )
        d = np.asarray(self.direction, dtype=float)
        if d.size != 9 or not np.all(np.isfinite(d)):
            raise GeometryError(f"direction must be 9 finite numbers (3x3), got {self.direction}")
        d = d.reshape(3, 3)
        if not np.allclose(d.T @ d, np.eye(3), atol=_ORTHONORMAL_TOL):
            raise GeometryError(
                "direction matrix is not orthonormal (columns must be unit vectors at right "
                f"angles; a tilted gantry or skewed grid is not supported): {d.tolist()}"
            )
        object.__setattr__(self, "direction", tuple(float(v) for v in d.reshape(-1)))

    # ------------------------------------------------------------------ constructors
    @classmethod
    def from_bounds(
        cls,
        lower_mm: Sequence[float],
        upper_mm: Sequence[float],
        spacing_mm: float | Sequence[float],
    ) -> Grid:
        """Axis-aligned grid whose voxel centres cover the box [lower_mm, upper_mm].

        The box is centred: the grid extends symmetrically past the box where the box size
        is not a whole number of voxels.
        """
        lo = np.asarray(_as_triplet(lower_mm, "lower_mm", positive=False))
        hi = np.asarray(_as_triplet(upper_mm, "upper_mm", positive=False))
        spacing = _as_spacing_triplet(spacing_mm)
        sp = np.asarray(spacing)
        if np.any(hi < lo):
            raise GeometryError(f"upper_mm {hi.tolist()} below lower_mm {lo.tolist()}")
        counts = np.floor((hi - lo) / sp + 1e-9) + 1
        # a grid no array can be made on (e.g. bounds from a seed at 1e30 mm) is refused here,
        # before its voxel counts overflow an integer
        check_allocation(counts, 1, f"a grid of {counts[::-1]} voxels")
        n = counts.astype(int)
        centre = (lo + hi) / 2.0
        origin = centre - (n - 1) * sp / 2.0
        return cls(
            shape=(int(n[2]), int(n[1]), int(n[0])),
            origin_mm=_as_triplet(origin, "origin_mm", positive=False),
            spacing_mm=spacing,
        )

    # ------------------------------------------------------------------ properties
    @property
    def direction_matrix(self) -> np.ndarray:
        """3x3 array; column c is the unit vector of index axis c (i, j, k) in LPS."""
        return np.asarray(self.direction, dtype=float).reshape(3, 3)

    @property
    def size_ijk(self) -> tuple[int, int, int]:
        """Number of voxels along (i, j, k) = (columns, rows, slices)."""
        return (self.shape[2], self.shape[1], self.shape[0])

    @property
    def slice_normal(self) -> np.ndarray:
        """Unit vector of the k (slice) axis in patient coordinates."""
        return self.direction_matrix[:, 2].copy()

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing_mm))

    @property
    def n_voxels(self) -> int:
        return int(np.prod(self.shape))

    @property
    def affine_mm(self) -> np.ndarray:
        """4x4 matrix mapping homogeneous (i, j, k, 1) to (x, y, z, 1) in mm."""
        a = np.eye(4)
        a[:3, :3] = self.direction_matrix * np.asarray(self.spacing_mm)[None, :]
        a[:3, 3] = self.origin_mm
        return a

    def is_axis_aligned(self, tol: float = 1e-6) -> bool:
        """True when the direction matrix is the identity (HFS-like, no obliquity)."""
        return bool(np.allclose(self.direction_matrix, np.eye(3), atol=tol))

    # ------------------------------------------------------------------ transforms
    def ijk_to_mm(self, ijk: np.ndarray | Sequence[float]) -> np.ndarray:
        """Continuous (i, j, k) indices, shape (..., 3), to patient positions in mm."""
        ijk = np.asarray(ijk, dtype=float)
        m = self.direction_matrix * np.asarray(self.spacing_mm)[None, :]
        return ijk @ m.T + np.asarray(self.origin_mm)

    def mm_to_ijk(self, points_mm: np.ndarray | Sequence[float]) -> np.ndarray:
        """Patient positions in mm, shape (..., 3), to continuous (i, j, k) indices."""
        p = np.asarray(points_mm, dtype=float)
        rel = p - np.asarray(self.origin_mm)
        return (rel @ self.direction_matrix) / np.asarray(self.spacing_mm)

    def voxel_centres_mm(self) -> np.ndarray:
        """Patient position of every voxel centre, shape ``shape + (3,)`` (float64)."""
        k, j, i = np.meshgrid(
            np.arange(self.shape[0]),
            np.arange(self.shape[1]),
            np.arange(self.shape[2]),
            indexing="ij",
        )
        return self.ijk_to_mm(np.stack([i, j, k], axis=-1))

    def contains_mm(self, points_mm: np.ndarray, *, margin_voxels: float = 0.5) -> np.ndarray:
        """Boolean mask: which points lie inside the grid (voxel boundaries, plus a margin)."""
        ijk = self.mm_to_ijk(points_mm)
        hi = np.asarray(self.size_ijk, dtype=float) - 1.0 + margin_voxels
        return np.all((ijk >= -margin_voxels) & (ijk <= hi), axis=-1)

    def sample_nearest(
        self, volume: np.ndarray, points_mm: np.ndarray, *, outside: float | bool = 0
    ) -> np.ndarray:
        """Values of ``volume`` (on this grid) at the voxels nearest to ``points_mm`` (..., 3).

        Points outside the grid get ``outside``; the result has the volume's dtype.
        """
        self.check_volume(volume)
        pts = np.asarray(points_mm, dtype=float)
        ijk = np.rint(self.mm_to_ijk(pts)).astype(np.int64)
        ok = np.all((ijk >= 0) & (ijk < np.asarray(self.size_ijk)), axis=-1)
        out = np.full(pts.shape[:-1], outside, dtype=np.asarray(volume).dtype)
        i, j, k = ijk[ok].T
        out[ok] = volume[k, j, i]
        return out

    def corners_mm(self) -> np.ndarray:
        """The 8 outer corners (voxel boundaries, not centres) in mm, shape (8, 3)."""
        n = np.asarray(self.size_ijk, dtype=float)
        c = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], dtype=float)
        return self.ijk_to_mm(c * n - 0.5)

    def bounds_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounding box (lower, upper) of the grid's outer voxel boundaries."""
        c = self.corners_mm()
        return c.min(axis=0), c.max(axis=0)

    # ------------------------------------------------------------------ derived grids
    def resampled(self, spacing_mm: float | Sequence[float]) -> Grid:
        """A grid of the same orientation covering the same extent with another spacing."""
        spacing = _as_spacing_triplet(spacing_mm)
        sp = np.asarray(spacing)
        extent = np.asarray(self.size_ijk) * np.asarray(self.spacing_mm)
        n = np.maximum(1, np.round(extent / sp).astype(int))
        # keep the geometric centre fixed
        centre_ijk = (np.asarray(self.size_ijk) - 1) / 2.0
        centre = self.ijk_to_mm(centre_ijk)
        origin = centre - self.direction_matrix @ ((n - 1) * sp / 2.0)
        return Grid(
            shape=(int(n[2]), int(n[1]), int(n[0])),
            origin_mm=_as_triplet(origin, "origin_mm", positive=False),
            spacing_mm=spacing,
            direction=self.direction,
        )

    def cropped(self, lower_ijk: Sequence[int], upper_ijk: Sequence[int]) -> Grid:
        """Sub-grid with index ranges [lower, upper) along i, j, k."""
        lo = np.asarray(lower_ijk, dtype=int)
        hi = np.asarray(upper_ijk, dtype=int)
        if np.any(lo < 0) or np.any(hi > np.asarray(self.size_ijk)) or np.any(hi <= lo):
            raise GeometryError(f"crop [{lo.tolist()}, {hi.tolist()}) outside grid {self.size_ijk}")
        n = hi - lo
        return Grid(
            shape=(int(n[2]), int(n[1]), int(n[0])),
            origin_mm=_as_triplet(self.ijk_to_mm(lo.astype(float)), "origin_mm", positive=False),
            spacing_mm=self.spacing_mm,
            direction=self.direction,
        )

    def same_as(self, other: Grid, *, tol_mm: float = 1e-3) -> bool:
        """True when both grids have the same voxel centres (within ``tol_mm``)."""
        if self.shape != other.shape:
            return False
        return bool(
            np.allclose(self.corners_mm(), other.corners_mm(), atol=tol_mm)
            and np.allclose(self.direction_matrix, other.direction_matrix, atol=1e-6)
        )

    def check_volume(self, volume: np.ndarray, name: str = "volume") -> None:
        """Raise :class:`GeometryError` unless ``volume`` has this grid's shape."""
        if tuple(np.shape(volume)) != self.shape:
            raise GeometryError(f"{name} has shape {np.shape(volume)}, grid has {self.shape}")
