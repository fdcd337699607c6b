"""Patient position and image orientation (DICOM PS3.3 C.7.3.1.1.2, C.7.6.2.1.1).

``ImageOrientationPatient`` holds the direction cosines of the first row (direction of
increasing column index) and of the first column (increasing row index).  The slice axis
brachycryo uses is their cross product: slices are always sorted along ``row x column``, so
every Grid read from an image series is right-handed.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brachycryo.core.errors import GeometryError

#: ImageOrientationPatient of an axial image in each of the 8 standard patient positions
#: (row cosines, column cosines), as a scanner writes them for a patient lying on the table.
PATIENT_POSITION_IOP: dict[str, tuple[float, ...]] = {
    "HFS": (1, 0, 0, 0, 1, 0),
    "HFP": (-1, 0, 0, 0, -1, 0),
    "FFS": (-1, 0, 0, 0, 1, 0),
    "FFP": (1, 0, 0, 0, -1, 0),
    "HFDL": (0, -1, 0, 1, 0, 0),
    "HFDR": (0, 1, 0, -1, 0, 0),
    "FFDL": (0, 1, 0, 1, 0, 0),
    "FFDR": (0, -1, 0, -1, 0, 0),
}

_UNIT_TOL = 1e-3


def direction_from_iop(iop: Sequence[float] | np.ndarray) -> np.ndarray:
    """3x3 direction matrix (columns: row, column, slice normal) from ImageOrientationPatient.

    Raises :class:`GeometryError` when the cosines are not two orthogonal unit vectors
    (within 1e-3); small rounding in the file is removed by re-orthonormalising.
    """
    v = np.asarray(iop, dtype=float).reshape(-1)
    if v.size != 6 or not np.all(np.isfinite(v)):
        raise GeometryError(f"ImageOrientationPatient must be 6 finite numbers, got {list(iop)}")
    row, col = v[:3], v[3:]
    if abs(np.linalg.norm(row) - 1) > _UNIT_TOL or abs(np.linalg.norm(col) - 1) > _UNIT_TOL:
        raise GeometryError(f"ImageOrientationPatient cosines are not unit vectors: {v.tolist()}")
    if abs(row @ col) > _UNIT_TOL:
        raise GeometryError(
            f"ImageOrientationPatient row and column are not orthogonal: {v.tolist()}"
        )
    row = row / np.linalg.norm(row)
    col = col - (col @ row) * row
    col = col / np.linalg.norm(col)
    normal = np.cross(row, col)
    return np.column_stack([row, col, normal])


def iop_from_direction(direction: np.ndarray) -> list[float]:
    """ImageOrientationPatient (6 values) for a direction matrix's first two columns."""
    d = np.asarray(direction, dtype=float).reshape(3, 3)
    return [float(x) for x in np.concatenate([d[:, 0], d[:, 1]])]
