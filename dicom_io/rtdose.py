"""RT Dose objects: write a dose volume on a :class:`~brachycryo.core.grid.Grid`, read one back.

Writing (:func:`write_rtdose`) follows PS3.3 A.18 (RT Dose IOD) and C.8.8.3 (RT Dose
Module):

* Pixel data are unsigned integers (32-bit by default) times ``DoseGridScaling``.  The
  scaling is chosen so that the largest dose maps near 2^32 - 1 (resolution: max dose /
  4.29e9), stored with at most 16 characters (DS) and the pixel values are computed with
  that *stored* value and rounded to the nearest integer (never truncated), so every voxel
  reads back within half a scaling step.
* ``GridFrameOffsetVector`` is relative (first value 0, C.8.8.3.2 option a): offsets in mm
  along the normal ``row x column`` of ``ImageOrientationPatient`` from
  ``ImagePositionPatient``.  A grid whose k axis points the other way (left-handed) is
  flipped first, so the offsets always increase.
* Oblique and decubitus grids are written exactly as the Grid's direction matrix says.

Reading (:func:`read_rtdose`) accepts what other systems write as well: relative or
absolute offset vectors (C.8.8.3.2 option b: the frames' patient z coordinates, the first
equal to ImagePositionPatient's z; transverse planes only, head- or feet-first),
increasing or decreasing offsets (decreasing ones are flipped so the returned grid's k axis
is ``+row x column``), 16- or 32-bit pixels, signed or unsigned,
``DoseUnits`` GY, CGY (non-standard; converted to Gy) or RELATIVE (returned flagged, never
as Gy).

dciodvfy (dicom3tools 2022) aborts on 32-bit pixel data, so our 32-bit files are validated
by reading them back with pydicom and with dicompyler-core; the 16-bit variant
(``bits_allocated=16``) carries the same header and is checked with dciodvfy in the tests.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from brachycryo.core.errors import DataModelError, DicomInputError, GeometryError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.common import (
    RT_DOSE_STORAGE,
    RT_PLAN_STORAGE,
    SERIES_NUMBERS,
    DicomConformanceWarning,
    StudyContext,
    check_grid_extent,
    format_ds,
    get_floats,
    get_int,
    get_sequence,
    get_value,
    new_dataset,
    read_dataset,
    save_dataset,
)
from brachycryo.dicom_io.orientation import direction_from_iop, iop_from_direction

#: Dose Type (3004,0004) defined terms (C.8.8.3).
DOSE_TYPES = ("PHYSICAL", "EFFECTIVE", "ERROR")
#: Dose Summation Types the writer encodes conformantly for a brachytherapy plan: the
#: whole plan, its fraction group 1, or its application setup 1 (the numbering
#: :func:`brachycryo.dicom_io.rtplan.write_seed_rtplan` uses).  Others (MULTI_PLAN, BEAM, RECORD,
#: ...)
#: need references this writer has no data for.
SUMMATION_TYPES = ("PLAN", "FRACTION", "BRACHY")
#: Dose units we can read, with the factor to Gy (CGY is not in the standard but is common).
_UNIT_TO_GY = {"GY": 1.0, "CGY": 0.01}

_OFFSET_TOL_MM = 1e-3


def _ds(value: float) -> str:
    """A float as a DICOM DS string of at most 16 characters."""
    return format_ds(value)


@dataclass(frozen=True, eq=False)
class DoseVolume:
    """A dose distribution read from an RT Dose file.

    ``values`` is float64 indexed ``[k, j, i]`` on ``grid``; it is dose in Gy when
    ``units == "GY"`` (files in cGy are converted on reading; ``source_units`` keeps what
    the file said) and dose relative to an implicit reference when ``units == "RELATIVE"``.
    Use :attr:`dose_gy`, which refuses relative dose, wherever Gy are meant.
    """

    values: np.ndarray
    grid: Grid
    units: str
    source_units: str
    dose_type: str
    summation_type: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    referenced_plan_uid: str | None
    dose_grid_scaling: float
    path: Path | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def dose_units(self) -> str:
        """Same as :attr:`units` ("GY" or "RELATIVE"), under the DICOM attribute's name."""
        return self.units

    @property
    def is_relative(self) -> bool:
        """True when the file holds RELATIVE dose (not in Gy)."""
        return self.units == "RELATIVE"

    @property
    def dose_gy(self) -> np.ndarray:
        """The dose in Gy; :class:`DicomInputError` when the file holds relative dose."""
        if self.is_relative:
            raise DicomInputError(
                "dose is RELATIVE (no absolute scale); it cannot be used as Gy",
                path=self.path,
                tag="DoseUnits",
            )
        return self.values


# ---------------------------------------------------------------------------- writing
def choose_dose_grid_scaling(max_value: float, *, bits_allocated: int = 32) -> float:
    """The DoseGridScaling that maps ``max_value`` near the largest unsigned pixel value.

    The returned float is exactly what a reader parses from the written DS string (at most
    16 characters), and ``round(max_value / scaling)`` never exceeds ``2**bits - 1``.
    """
    top = float(2**bits_allocated - 1)
    if not np.isfinite(max_value) or max_value < 0:
        raise DataModelError(f"maximum dose must be finite and >= 0, got {max_value}")
    if max_value == 0.0:
        return 1.0
    scale = float(_ds(max_value / top))
    # the DS string may have rounded the scaling down: step up until max fits
    for _ in range(100):
        if np.rint(max_value / scale) <= top:
            return scale
        scale = float(_ds(scale * (1.0 + 1e-9)))
    raise DataModelError(
        f"no DoseGridScaling found for maximum dose {max_value}"
    )  # pragma: no cover


def _check_dose(dose: np.ndarray, grid: Grid, path: Path, dose_type: str) -> np.ndarray:
    arr = np.asarray(dose)
    if arr.dtype.kind not in "fiu":
        raise DataModelError(f"dose for {path} must be a numeric array, got dtype {arr.dtype}")
    try:
        grid.check_volume(arr, "dose_gy")
    except GeometryError as exc:
        raise GeometryError(f"{exc} (writing {path})") from None
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        n_bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise DataModelError(f"dose for {path} contains {n_bad} NaN or inf values; nothing written")
    if dose_type != "ERROR" and arr.size and float(arr.min()) < 0:
        raise DataModelError(
            f"dose for {path} has negative values (min {float(arr.min())!r}); "
            "only DoseType ERROR may be negative; nothing written"
        )
    return arr


def _check_encoding(
    dose_type: str, summation: str, dose_units: str, bits_allocated: int
) -> tuple[str, str, str]:
    """Dose type, summation and units in upper case, each checked against its terms."""
    dose_type = dose_type.upper()
    summation = summation.upper()
    dose_units = dose_units.upper()
    if dose_type not in DOSE_TYPES:
        raise DataModelError(f"dose_type must be one of {DOSE_TYPES}, got {dose_type!r}")
    if summation not in SUMMATION_TYPES:
        raise DataModelError(f"summation must be one of {SUMMATION_TYPES}, got {summation!r}")
    if dose_units not in ("GY", "RELATIVE"):
        raise DataModelError(f"dose_units must be 'GY' or 'RELATIVE', got {dose_units!r}")
    if bits_allocated not in (16, 32):
        raise DataModelError(f"bits_allocated must be 16 or 32, got {bits_allocated}")
    return dose_type, summation, dose_units


def _right_handed(dose: np.ndarray, grid: Grid) -> tuple[np.ndarray, Grid]:
    """The dose on a grid whose k axis is +row x column (a left-handed grid is flipped)."""
    d = grid.direction_matrix
    if np.linalg.det(d) >= 0:
        return dose, grid
    origin = grid.ijk_to_mm([0.0, 0.0, float(grid.shape[0] - 1)])
    d = d.copy()
    d[:, 2] *= -1
    return dose[::-1], Grid(grid.shape, tuple(origin), grid.spacing_mm, tuple(d.reshape(-1)))


def _dose_pixels(
    dose: np.ndarray, *, signed: bool, bits_allocated: int
) -> tuple[np.ndarray, float]:
    """(pixel values, DoseGridScaling): dose / scaling rounded to the nearest integer."""
    value_bits = bits_allocated - 1 if signed else bits_allocated
    max_abs = float(np.max(np.abs(dose))) if dose.size else 0.0
    scaling = choose_dose_grid_scaling(max_abs, bits_allocated=value_bits)
    dtype: type[np.integer]
    if signed:
        dtype = np.int32 if bits_allocated == 32 else np.int16
    else:
        dtype = np.uint32 if bits_allocated == 32 else np.uint16
    return np.rint(dose / scaling).astype(dtype), scaling  # rounded, never truncated


def _set_image_plane(ds: Dataset, grid: Grid) -> None:
    """Image Plane (C.7.6.2) of a right-handed grid."""
    sp_i, sp_j, sp_k = grid.spacing_mm
    ds.PixelSpacing = [_ds(sp_j), _ds(sp_i)]
    ds.ImageOrientationPatient = [_ds(v) for v in iop_from_direction(grid.direction_matrix)]
    ds.ImagePositionPatient = [_ds(v) for v in grid.origin_mm]
    ds.SliceThickness = _ds(sp_k)


def _referenced_plan_item(referenced_plan_uid: str, summation: str) -> Dataset:
    """An item of the Referenced RT Plan Sequence, down to the fraction group / setup."""
    ref = Dataset()
    ref.ReferencedSOPClassUID = RT_PLAN_STORAGE
    ref.ReferencedSOPInstanceUID = referenced_plan_uid
    if summation in ("FRACTION", "BRACHY"):
        fraction = Dataset()
        fraction.ReferencedFractionGroupNumber = 1
        if summation == "BRACHY":
            setup = Dataset()
            setup.ReferencedBrachyApplicationSetupNumber = 1
            fraction.ReferencedBrachyApplicationSetupSequence = DicomSequence([setup])
        ref.ReferencedFractionGroupSequence = DicomSequence([fraction])
    return ref


def write_rtdose(
    path: str | os.PathLike,
    dose_gy: np.ndarray,
    grid: Grid,
    *,
    context: StudyContext,
    referenced_plan_uid: str | None = None,
    dose_type: str = "PHYSICAL",
    summation: str = "PLAN",
    dose_units: str = "GY",
    bits_allocated: int = 32,
    dose_comment: str = "",
    series_description: str = "brachycryo dose",
    series_number: int = SERIES_NUMBERS["rtdose"],
    overwrite: bool = False,
) -> Path:
    """Write ``dose_gy`` (indexed [k, j, i] on ``grid``) as an RT Dose file.

    ``dose_units`` is ``"GY"`` (``dose_gy`` in Gy) or ``"RELATIVE"``.  ``dose_type`` is
    one of :data:`DOSE_TYPES`; ERROR doses may be negative and are stored signed.
    ``bits_allocated`` is 32 (default) or 16.  ``summation`` is one of
    :data:`SUMMATION_TYPES`; without ``referenced_plan_uid`` the file is written but warns
    (:class:`DicomConformanceWarning`), since PS3.3 C.8.8.3 then requires the Referenced RT
    Plan Sequence.  Raises
    :class:`DataModelError` for NaN/inf or negative dose and :class:`GeometryError` for a
    shape that is not the grid's; an existing ``path`` is only replaced with ``overwrite``.
    """
    out = Path(path)
    dose_type, summation, dose_units = _check_encoding(
        dose_type, summation, dose_units, bits_allocated
    )
    # store along +row x column: flip a left-handed grid so offsets increase
    dose, grid = _right_handed(_check_dose(dose_gy, grid, out, dose_type), grid)
    signed = dose_type == "ERROR"  # PS3.3 C.8.8.3.4.6: two's complement only for ERROR
    pixels, scaling = _dose_pixels(dose, signed=signed, bits_allocated=bits_allocated)

    ds = new_dataset(
        RT_DOSE_STORAGE,
        "RTDOSE",
        context,
        series_number=series_number,
        series_description=series_description,
    )
    ds.OperatorsName = ""
    # Frame of Reference (C.7.4.1)
    ds.FrameOfReferenceUID = context.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # General Image (C.7.6.1)
    ds.ContentDate = ds.InstanceCreationDate
    ds.ContentTime = ds.InstanceCreationTime
    ds.PatientOrientation = ""
    _set_image_plane(ds, grid)
    # Image Pixel + Multi-frame (C.7.6.3, C.7.6.6) and RT Dose (C.8.8.3)
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = grid.shape[1], grid.shape[2]
    ds.BitsAllocated = bits_allocated
    ds.BitsStored = bits_allocated
    ds.HighBit = bits_allocated - 1
    ds.PixelRepresentation = 1 if signed else 0
    multi_frame = grid.shape[0] > 1  # Multi-frame module and GFOV only for 2+ frames
    if multi_frame:
        ds.NumberOfFrames = grid.shape[0]
        ds.FrameIncrementPointer = 0x3004000C  # Grid Frame Offset Vector
    ds.DoseUnits = dose_units
    ds.DoseType = dose_type
    if dose_comment:
        ds.DoseComment = dose_comment
    ds.DoseSummationType = summation
    if referenced_plan_uid:
        ds.ReferencedRTPlanSequence = DicomSequence(
            [_referenced_plan_item(referenced_plan_uid, summation)]
        )
    else:
        warnings.warn(
            f"{out}: DoseSummationType {summation} without referenced_plan_uid; PS3.3 "
            "C.8.8.3 requires a Referenced RT Plan Sequence for it",
            DicomConformanceWarning,
            stacklevel=2,
        )
    if multi_frame:
        ds.GridFrameOffsetVector = [_ds(k * grid.spacing_mm[2]) for k in range(grid.shape[0])]
    ds.DoseGridScaling = _ds(scaling)
    ds.PixelData = np.ascontiguousarray(pixels).astype(pixels.dtype.newbyteorder("<")).tobytes()
    return save_dataset(ds, out, overwrite=overwrite)


# ---------------------------------------------------------------------------- reading
def _int_value(ds: Dataset, keyword: str, path: Path) -> int:
    return int(get_int(ds, keyword, path=path))


def _frame_offsets(
    ds: Dataset, path: Path, n_frames: int, ipp: np.ndarray, normal: np.ndarray, notes: list[str]
) -> np.ndarray:
    """Offsets of the frames along ``normal`` relative to ``ipp`` (C.8.8.3.2)."""
    if "GridFrameOffsetVector" not in ds:
        if n_frames == 1:
            return np.zeros(1)
        raise DicomInputError(
            f"is missing; needed for a {n_frames}-frame dose",
            path=path,
            tag="GridFrameOffsetVector",
        )
    offsets = get_floats(ds, "GridFrameOffsetVector", path=path)
    if offsets.size != n_frames:
        raise DicomInputError(
            f"has {offsets.size} values for {n_frames} frames (NumberOfFrames)",
            path=path,
            tag="GridFrameOffsetVector",
        )
    if offsets[0] != 0.0:
        # option b: absolute patient z coordinates of the frames, defined for transverse
        # planes only; the first equals ImagePositionPatient's z
        n_z = float(normal[2])
        if abs(abs(n_z) - 1.0) > 1e-6:
            raise DicomInputError(
                f"first value {offsets[0]:g} is not 0, i.e. absolute z coordinates, which "
                "PS3.3 C.8.8.3.2 allows only for transverse planes; these frames have "
                f"normal {np.round(normal, 6).tolist()}",
                path=path,
                tag="GridFrameOffsetVector",
            )
        if abs(offsets[0] - float(ipp[2])) > _OFFSET_TOL_MM:
            raise DicomInputError(
                f"first value {offsets[0]:g} is neither 0 (relative offsets) nor the z of "
                f"ImagePositionPatient ({float(ipp[2]):g}), as PS3.3 C.8.8.3.2 requires for "
                "absolute offsets",
                path=path,
                tag="GridFrameOffsetVector",
            )
        notes.append(
            f"{path}: GridFrameOffsetVector holds absolute z coordinates (first {offsets[0]:g} "
            "mm); converted to offsets from ImagePositionPatient"
        )
        offsets = (offsets - offsets[0]) * np.sign(n_z)
    return offsets


def _dose_units(ds: Dataset, path: Path, notes: list[str]) -> tuple[str, str, float]:
    """(units "GY" or "RELATIVE", DoseUnits as the file says, factor to ``units``)."""
    units_raw = str(get_value(ds, "DoseUnits", path=path)).strip().upper()
    if units_raw in _UNIT_TO_GY:
        if units_raw != "GY":
            notes.append(f"{path}: DoseUnits {units_raw} (not a standard term) converted to Gy")
        return "GY", units_raw, _UNIT_TO_GY[units_raw]
    if units_raw == "RELATIVE":
        return "RELATIVE", units_raw, 1.0
    raise DicomInputError(
        f"is {units_raw!r}; expected GY, CGY or RELATIVE", path=path, tag="DoseUnits"
    )


def _frames_rows_columns(ds: Dataset, path: Path) -> tuple[int, int, int]:
    """(NumberOfFrames, Rows, Columns), checked non-empty; BitsAllocated checked 16 or 32."""
    rows = _int_value(ds, "Rows", path)
    cols = _int_value(ds, "Columns", path)
    n_frames = int(_int_value(ds, "NumberOfFrames", path)) if "NumberOfFrames" in ds else 1
    bits = _int_value(ds, "BitsAllocated", path)
    if bits not in (16, 32):
        raise DicomInputError(f"is {bits}; RT Dose uses 16 or 32", path=path, tag="BitsAllocated")
    if rows < 1 or cols < 1 or n_frames < 1:
        raise DicomInputError(
            f"image size {n_frames} x {rows} x {cols} is empty", path=path, tag="Rows"
        )
    return n_frames, rows, cols


def _image_plane(ds: Dataset, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ImagePositionPatient, 3x3 direction matrix, PixelSpacing), checked."""
    ipp = get_floats(ds, "ImagePositionPatient", 3, path=path)
    iop = get_floats(ds, "ImageOrientationPatient", 6, path=path)
    try:
        direction = direction_from_iop(iop)
    except GeometryError as exc:
        raise DicomInputError(str(exc), path=path, tag="ImageOrientationPatient") from None
    spacing = get_floats(ds, "PixelSpacing", 2, path=path)
    if np.any(spacing <= 0):
        raise DicomInputError(
            f"must be positive, got {spacing.tolist()}", path=path, tag="PixelSpacing"
        )
    return ipp, direction, spacing


def _dose_grid_scaling(ds: Dataset, path: Path, notes: list[str]) -> float:
    scaling_raw = get_floats(ds, "DoseGridScaling", 1, path=path, default=None)
    if scaling_raw is None:
        notes.append(f"{path}: DoseGridScaling missing; taken as 1")
        scaling = 1.0
    else:
        scaling = float(scaling_raw[0])
    if not scaling > 0:
        raise DicomInputError(f"must be positive, got {scaling}", path=path, tag="DoseGridScaling")
    return scaling


def _pixels(ds: Dataset, path: Path, n_frames: int, rows: int, cols: int) -> np.ndarray:
    """The stored pixel values, shaped (frames, rows, columns)."""
    if "PixelData" not in ds:
        raise DicomInputError("is missing", path=path, tag="PixelData")
    try:
        pixels = np.asarray(ds.pixel_array)
    except Exception as exc:
        raise DicomInputError(
            f"cannot be decoded ({exc.__class__.__name__}: {exc})", path=path, tag="PixelData"
        ) from exc
    if pixels.size != n_frames * rows * cols:
        raise DicomInputError(
            f"does not hold {n_frames} frames of {rows} x {cols} pixels",
            path=path,
            tag="PixelData",
        )
    return pixels.reshape((n_frames, rows, cols))


def _frames_along_normal(
    values: np.ndarray,
    offsets: np.ndarray,
    ipp: np.ndarray,
    normal: np.ndarray,
    ds: Dataset,
    path: Path,
    notes: list[str],
) -> tuple[np.ndarray, np.ndarray, float]:
    """(values, origin_mm, slice spacing_mm) with the frames stepping along +normal.

    The offsets must be uniform and non-zero; decreasing ones flip the frames.  A single
    frame is as thick as its SliceThickness (1 mm without one).
    """
    if values.shape[0] == 1:
        thick = get_floats(ds, "SliceThickness", 1, path=path, default=None)
        sp_k = float(thick[0]) if thick is not None and thick[0] > 0 else 1.0
        return values, ipp + offsets[0] * normal, sp_k
    steps = np.diff(offsets)
    step = float(np.mean(steps))
    if step == 0 or np.any(np.abs(steps - step) > max(_OFFSET_TOL_MM, 1e-4 * abs(step))):
        raise DicomInputError(
            "offsets are not uniformly spaced (a regular grid is required): "
            f"steps {np.unique(np.round(steps, 4)).tolist()} mm",
            path=path,
            tag="GridFrameOffsetVector",
        )
    if step < 0:
        notes.append(f"{path}: GridFrameOffsetVector decreases; frames reversed to +normal")
        return values[::-1], ipp + offsets[-1] * normal, abs(step)
    return values, ipp + offsets[0] * normal, abs(step)


def _referenced_plan_uid(ds: Dataset, path: Path) -> str | None:
    ref_seq = get_sequence(ds, "ReferencedRTPlanSequence", path=path)
    if not ref_seq:
        return None
    return str(get_value(ref_seq[0], "ReferencedSOPInstanceUID", path=path, default="")) or None


def read_rtdose(path: str | os.PathLike) -> DoseVolume:
    """Read an RT Dose file into a :class:`DoseVolume` (values float64, [k, j, i]).

    Every problem raises :class:`DicomInputError` naming the file and the tag.  The input
    file is opened read-only and never modified.
    """
    p = Path(path)
    ds = read_dataset(p, modality="RTDOSE")
    notes: list[str] = []
    units, units_raw, to_unit = _dose_units(ds, p, notes)
    dose_type = str(get_value(ds, "DoseType", path=p, default="")).strip().upper()
    summation = str(get_value(ds, "DoseSummationType", path=p, default="")).strip().upper()
    n_frames, rows, cols = _frames_rows_columns(ds, p)
    ipp, direction, spacing = _image_plane(ds, p)
    normal = direction[:, 2]
    offsets = _frame_offsets(ds, p, n_frames, ipp, normal, notes)
    scaling = _dose_grid_scaling(ds, p, notes)
    pixels = _pixels(ds, p, n_frames, rows, cols)
    values = pixels.astype(np.float64) * (scaling * to_unit)
    if not np.all(np.isfinite(values)):  # a huge scaling overflows float64
        raise DicomInputError(
            f"{scaling:g} x the stored values gives infinite doses", path=p, tag="DoseGridScaling"
        )
    # slice spacing from the offsets: uniform, non-zero; decreasing -> flip to +normal
    values, origin, sp_k = _frames_along_normal(values, offsets, ipp, normal, ds, p, notes)
    try:
        grid = Grid(
            shape=values.shape,
            origin_mm=tuple(origin),
            spacing_mm=(float(spacing[1]), float(spacing[0]), sp_k),
            direction=tuple(direction.reshape(-1)),
        )
    except GeometryError as exc:
        raise DicomInputError(str(exc), path=p, tag="ImagePositionPatient") from None
    check_grid_extent(
        grid,
        "the dose grid",
        path=p,
        tag="ImagePositionPatient / PixelSpacing / GridFrameOffsetVector",
    )
    ref_plan = _referenced_plan_uid(ds, p)
    if units != "RELATIVE" and dose_type != "ERROR" and values.size and values.min() < 0:
        notes.append(f"{p}: negative {dose_type or 'dose'} values (min {values.min():g})")
    for note in notes:
        warnings.warn(note, DicomConformanceWarning, stacklevel=2)
    return DoseVolume(
        values=values,
        grid=grid,
        units=units,
        source_units=units_raw,
        dose_type=dose_type,
        summation_type=summation,
        sop_instance_uid=str(get_value(ds, "SOPInstanceUID", path=p, default="")),
        series_instance_uid=str(get_value(ds, "SeriesInstanceUID", path=p, default="")),
        study_instance_uid=str(get_value(ds, "StudyInstanceUID", path=p, default="")),
        frame_of_reference_uid=str(get_value(ds, "FrameOfReferenceUID", path=p, default="")),
        referenced_plan_uid=ref_plan,
        dose_grid_scaling=scaling,
        path=p,
        warnings=tuple(notes),
    )
