"""CT image series: read a folder into HU on a Grid; write a volume as a CT series.

Reading rules (each broken rule is a :class:`~brachycryo.core.errors.SeriesError` naming files):

* files are found recursively and grouped by SeriesInstanceUID; ``series_uid`` picks one,
  and when several CT series qualify the error lists them;
* every slice must share ImageOrientationPatient, PixelSpacing, Rows/Columns and the Frame
  of Reference;
* slices are sorted by the projection of ImagePositionPatient on the slice normal
  (row x column cosines); positions must step along the normal only (otherwise the gantry
  was tilted, which a regular Grid cannot hold), evenly (a missing slice shows as a gap of
  about twice the spacing, a duplicated one as two slices at the same position);
* HU = stored value x RescaleSlope + RescaleIntercept, per slice;
* compressed transfer syntaxes decode where an installed pydicom pixel-data handler can;
  otherwise the error names the transfer syntax and the handler(s) to install.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset

from brachycryo.core.errors import DataModelError, DicomInputError, SeriesError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.common import (
    CT_IMAGE_STORAGE,
    SERIES_NUMBERS,
    StudyContext,
    check_grid_extent,
    get_floats,
    get_int,
    get_value,
    new_dataset,
    new_uid,
    read_dataset,
    save_dataset,
)
from brachycryo.dicom_io.orientation import direction_from_iop, iop_from_direction
from brachycryo.dicom_io.scan import DicomIndex, scan_folder

log = logging.getLogger(__name__)

#: Relative tolerance on slice spacing before a gap or overlap is reported.
SPACING_REL_TOL = 0.01
#: In-plane shift (mm) between consecutive slices tolerated before reporting gantry tilt.
TILT_TOL_MM = 0.01


@dataclass(frozen=True)
class CTImage:
    """A CT volume in Hounsfield units on its Grid, with the identity of its slices.

    ``hu`` is float32 indexed ``[k, j, i]``; ``sop_instance_uids[k]`` and ``paths[k]`` name
    the file of slice ``k``.
    """

    hu: np.ndarray
    grid: Grid
    series_instance_uid: str
    frame_of_reference_uid: str
    sop_instance_uids: tuple[str, ...]
    paths: tuple[Path, ...]
    context: StudyContext
    series_description: str = ""
    notes: tuple[str, ...] = field(default=())


def _list_series(index: DicomIndex, modality: str) -> str:
    lines = []
    for uid, files in index.series(modality).items():
        desc = files[0].series_description
        lines.append(f"  {uid} ({len(files)} files{', ' + repr(desc) if desc else ''})")
    return "\n".join(lines)


def _decode_pixels(ds: Dataset, path: Path) -> np.ndarray:
    try:
        return ds.pixel_array
    except Exception as exc:
        ts = ds.file_meta.get("TransferSyntaxUID", "unknown")
        name = getattr(ts, "name", str(ts))
        try:
            compressed = bool(getattr(ts, "is_compressed", False))
        except ValueError:  # not a transfer syntax UID at all
            compressed = False
        hint = ""
        if compressed:
            hint = (
                "; pydicom needs a pixel-data handler for this transfer syntax "
                "(install one of: pylibjpeg with pylibjpeg-libjpeg / pylibjpeg-openjpeg, "
                "python-gdcm, or Pillow for baseline JPEG)"
            )
        raise DicomInputError(
            f"pixel data cannot be decoded (transfer syntax {name}: {exc}){hint}",
            path=path,
            tag="PixelData",
        ) from exc


def _slice_spacing_fallback(ds: Dataset, path: Path) -> float:
    for kw in ("SpacingBetweenSlices", "SliceThickness"):
        v = get_value(ds, kw, path=path, default=None)
        if v is not None:
            try:
                val = float(v)
            except (TypeError, ValueError):
                continue
            if np.isfinite(val) and val > 0:
                return val
    raise SeriesError(
        "a single-slice series needs SliceThickness or SpacingBetweenSlices for its thickness",
        path=path,
        tag="SliceThickness",
    )


def load_ct_series(folder: str | os.PathLike, *, series_uid: str | None = None) -> CTImage:
    """Load one CT series from ``folder`` (searched recursively) as HU on a Grid."""
    index = scan_folder(folder)
    notes = [f"skipped {p}: {why}" for p, why in index.skipped]
    for n in notes:
        log.info(n)
    for path, modality, why in index.broken:
        if modality in ("", "CT"):
            raise DicomInputError(f"{why}; it may belong to the CT series", path=path)
        notes.append(f"skipped broken {modality} file {path}: {why}")
    groups = index.series("CT")
    if series_uid is not None:
        if series_uid not in groups:
            raise SeriesError(
                f"no CT series with SeriesInstanceUID {series_uid} in {folder}; CT series "
                f"found:\n{_list_series(index, 'CT') or '  (none)'}",
                path=folder,
            )
        entries = groups[series_uid]
    else:
        if not groups:
            others = sorted({f.modality for f in index.files})
            raise SeriesError(
                f"no CT images found in {folder} (modalities present: {others or 'none'})",
                path=folder,
            )
        if len(groups) > 1:
            raise SeriesError(
                f"{len(groups)} CT series found in {folder}; choose one with series_uid "
                f"(CLI: --series-uid):\n{_list_series(index, 'CT')}",
                path=folder,
            )
        entries = next(iter(groups.values()))

    datasets = [(e.path, read_dataset(e.path, modality="CT")) for e in entries]
    return _assemble(datasets, notes)


@dataclass(frozen=True)
class _SliceFormat:
    """What every slice of a series shares, taken from its first slice (``path``)."""

    path: Path
    iop: np.ndarray
    direction: np.ndarray
    pixel_spacing_mm: np.ndarray  # (row spacing, column spacing)
    rows: int
    columns: int
    frame_of_reference_uid: str


def _slice_format(path: Path, ds: Dataset) -> _SliceFormat:
    iop = get_floats(ds, "ImageOrientationPatient", 6, path=path)
    try:
        direction = direction_from_iop(iop)
    except Exception as exc:
        raise SeriesError(str(exc), path=path, tag="ImageOrientationPatient") from exc
    spacing = get_floats(ds, "PixelSpacing", 2, path=path)
    if np.any(spacing <= 0):
        raise SeriesError(f"must be positive, is {spacing.tolist()}", path=path, tag="PixelSpacing")
    return _SliceFormat(
        path=path,
        iop=iop,
        direction=direction,
        pixel_spacing_mm=spacing,
        rows=get_int(ds, "Rows", path=path),
        columns=get_int(ds, "Columns", path=path),
        frame_of_reference_uid=str(get_value(ds, "FrameOfReferenceUID", path=path, default="")),
    )


def _check_gantry_tilt(ds: Dataset, path: Path) -> None:
    tilt = get_value(ds, "GantryDetectorTilt", path=path, default=0)
    try:
        tilt_deg = float(tilt)
    except (TypeError, ValueError):
        tilt_deg = 0.0
    if abs(tilt_deg) > 1e-3:
        raise SeriesError(
            f"gantry tilt of {tilt_deg} degrees: tilted series cannot be held on a regular "
            "grid; resample it in the scanner software first",
            path=path,
            tag="GantryDetectorTilt",
        )


def _slice_position_mm(ds: Dataset, path: Path, first: _SliceFormat) -> np.ndarray:
    """ImagePositionPatient of a slice, after checking that it matches the first slice."""
    path0 = first.path
    iop = get_floats(ds, "ImageOrientationPatient", 6, path=path)
    if not np.allclose(iop, first.iop, atol=1e-4):
        raise SeriesError(
            f"ImageOrientationPatient {iop.tolist()} differs from {first.iop.tolist()} in "
            f"{path0}: inconsistent orientation within one series",
            path=path,
            tag="ImageOrientationPatient",
        )
    for_uid = str(get_value(ds, "FrameOfReferenceUID", path=path, default=""))
    for0 = first.frame_of_reference_uid
    if for_uid != for0:
        raise SeriesError(
            f"Frame of Reference {for_uid or '(none)'} differs from {for0 or '(none)'} in "
            f"{path0}: mixed Frames of Reference within one series",
            path=path,
            tag="FrameOfReferenceUID",
        )
    sp = get_floats(ds, "PixelSpacing", 2, path=path)
    if not np.allclose(sp, first.pixel_spacing_mm, rtol=1e-4):
        raise SeriesError(
            f"PixelSpacing {sp.tolist()} differs from {first.pixel_spacing_mm.tolist()} in {path0}",
            path=path,
            tag="PixelSpacing",
        )
    if (
        get_int(ds, "Rows", path=path) != first.rows
        or get_int(ds, "Columns", path=path) != first.columns
    ):
        raise SeriesError(
            f"image size differs from {first.rows}x{first.columns} in {path0}",
            path=path,
            tag="Rows",
        )
    _check_gantry_tilt(ds, path)
    return get_floats(ds, "ImagePositionPatient", 3, path=path)


def _check_no_duplicate(
    datasets: list[tuple[Path, Dataset]], along: np.ndarray, steps: np.ndarray
) -> None:
    for n, step in enumerate(steps):
        if step < 1e-3:
            raise SeriesError(
                f"duplicated slice: {datasets[n][0]} and {datasets[n + 1][0]} are both at "
                f"{along[n]:.3f} mm along the slice normal",
                path=datasets[n + 1][0],
                tag="ImagePositionPatient",
            )


def _check_unique_sop_uids(datasets: list[tuple[Path, Dataset]]) -> tuple[str, ...]:
    """The slices' SOPInstanceUIDs; two slices sharing one is a :class:`SeriesError`.

    A SOP Instance UID names one image (PS3.3 C.12.1.1.1): RTSTRUCT contours refer to
    their image by it, so a shared UID makes those references ambiguous (and usually
    means one image was copied over another's header).
    """
    first_of: dict[str, Path] = {}
    uids = []
    for path, ds in datasets:
        uid = str(get_value(ds, "SOPInstanceUID", path=path)).strip()
        if uid in first_of:
            raise SeriesError(
                f"SOPInstanceUID {uid} is also that of {first_of[uid]}: two slices cannot be "
                "one image",
                path=path,
                tag="SOPInstanceUID",
            )
        first_of[uid] = path
        uids.append(uid)
    return tuple(uids)


def _check_even_steps(
    datasets: list[tuple[Path, Dataset]], along: np.ndarray, steps: np.ndarray, spacing: float
) -> None:
    for n, step in enumerate(steps):
        if abs(step - spacing) > SPACING_REL_TOL * spacing:
            what = (
                f"missing slice(s): gap of {step:.3f} mm"
                if step > spacing
                else f"irregular spacing: step of {step:.3f} mm"
            )
            raise SeriesError(
                f"{what} between {datasets[n][0].name} ({along[n]:.3f} mm) and "
                f"{datasets[n + 1][0].name} ({along[n + 1]:.3f} mm) where the series "
                f"spacing is {spacing:.3f} mm",
                path=datasets[n + 1][0],
                tag="ImagePositionPatient",
            )


def _check_no_shear(
    datasets: list[tuple[Path, Dataset]],
    positions_mm: np.ndarray,
    steps: np.ndarray,
    normal: np.ndarray,
    spacing: float,
) -> None:
    shifts = np.diff(positions_mm, axis=0) - np.outer(steps, normal)
    worst = int(np.argmax(np.linalg.norm(shifts, axis=1)))
    if np.linalg.norm(shifts[worst]) > TILT_TOL_MM * max(1.0, spacing):
        raise SeriesError(
            "slice positions do not step along the slice normal (in-plane shift of "
            f"{np.linalg.norm(shifts[worst]):.3f} mm between {datasets[worst][0].name} and "
            f"{datasets[worst + 1][0].name}): gantry tilt or sheared series",
            path=datasets[worst + 1][0],
            tag="ImagePositionPatient",
        )


def _slice_spacing_mm(
    datasets: list[tuple[Path, Dataset]],
    positions_mm: np.ndarray,
    along: np.ndarray,
    normal: np.ndarray,
) -> float:
    """Spacing of the sorted slices, checked even (no duplicate, gap or in-plane shift)."""
    if len(datasets) == 1:
        return _slice_spacing_fallback(datasets[0][1], datasets[0][0])
    steps = np.diff(along)
    _check_no_duplicate(datasets, along, steps)
    spacing = float(np.median(steps))
    _check_even_steps(datasets, along, steps, spacing)
    _check_no_shear(datasets, positions_mm, steps, normal, spacing)
    return spacing


def _hu_volume(datasets: list[tuple[Path, Dataset]], rows: int, columns: int) -> np.ndarray:
    """HU of the slices, stacked: stored value x RescaleSlope + RescaleIntercept (float32)."""
    hu = np.empty((len(datasets), rows, columns), dtype=np.float32)
    for k, (path, ds) in enumerate(datasets):
        pixels = _decode_pixels(ds, path)
        if pixels.shape != (rows, columns):
            raise SeriesError(
                f"pixel array shape {pixels.shape} is not Rows x Columns ({rows}x{columns})",
                path=path,
                tag="PixelData",
            )
        slope = float(get_floats(ds, "RescaleSlope", 1, path=path, default=np.ones(1))[0])
        intercept = float(get_floats(ds, "RescaleIntercept", 1, path=path, default=np.zeros(1))[0])
        hu[k] = pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept)
    return hu


def _assemble(datasets: list[tuple[Path, Dataset]], notes: list[str]) -> CTImage:
    first = _slice_format(*datasets[0])
    normal = first.direction[:, 2]
    unsorted_mm = np.asarray([_slice_position_mm(ds, path, first) for path, ds in datasets])
    along_unsorted = unsorted_mm @ normal
    order = np.argsort(along_unsorted, kind="stable")
    datasets = [datasets[i] for i in order]
    positions_mm = unsorted_mm[order]
    along = along_unsorted[order]
    uids = _check_unique_sop_uids(datasets)
    slice_spacing = _slice_spacing_mm(datasets, positions_mm, along, normal)
    hu = _hu_volume(datasets, first.rows, first.columns)
    row_mm, column_mm = (float(v) for v in first.pixel_spacing_mm)
    grid = Grid(
        shape=hu.shape,
        origin_mm=tuple(positions_mm[0]),
        # (along a row = column spacing, down a column = row spacing, slice)
        spacing_mm=(column_mm, row_mm, slice_spacing),
        direction=tuple(first.direction.reshape(-1)),
    )
    check_grid_extent(
        grid, "the CT volume", path=datasets[0][0], tag="ImagePositionPatient / PixelSpacing"
    )
    ds_first = datasets[0][1]
    return CTImage(
        hu=hu,
        grid=grid,
        series_instance_uid=str(ds_first.SeriesInstanceUID),
        frame_of_reference_uid=first.frame_of_reference_uid,
        sop_instance_uids=uids,
        paths=tuple(p for p, _ in datasets),
        context=StudyContext.from_dataset(ds_first),
        series_description=str(ds_first.get("SeriesDescription", "")),
        notes=tuple(notes),
    )


#: BodyPartExamined values (PS3.16 Annex L) of unpaired parts that :func:`write_ct_series`
#: accepts: with them General Series Laterality is omitted (PS3.3 C.7.3.1, Type 2C).
UNPAIRED_BODY_PARTS = ("ABDOMEN", "PELVIS", "ABDOMENPELVIS", "CHEST", "LIVER", "PROSTATE")


def write_ct_series(
    folder: str | os.PathLike,
    hu: np.ndarray,
    grid: Grid,
    *,
    context: StudyContext,
    series_description: str = "brachycryo CT",
    series_number: int = SERIES_NUMBERS["ct"],
    kvp: float = 120.0,
    overwrite: bool = False,
    file_prefix: str = "CT",
    body_part: str = "",
) -> CTImage:
    """Write ``hu`` (indexed [k, j, i] on ``grid``) as a CT Image Storage series, one file a slice.

    ``body_part`` (BodyPartExamined, PS3.16 Annex L) is one of :data:`UNPAIRED_BODY_PARTS`
    or "" (unknown).  General Series Laterality (0020,0060) is Type 2C, required for paired
    body parts only (PS3.3 C.7.3.1): with an unpaired body part it is absent; with an
    unknown body part it is present and empty, which the standard reserves for "unknown"
    (dciodvfy then warns, correctly: it cannot tell whether the part is paired).

    Stored values are signed 16-bit with RescaleIntercept -1024 (HU rounded to the nearest
    integer and clipped to the storable range).  Grids whose k axis is opposite to
    row x column are flipped first, so the files describe the same voxels in the order a
    reader sorts them.  Returns the written series as a :class:`CTImage`.
    """
    grid.check_volume(hu, "hu")
    if body_part and body_part not in UNPAIRED_BODY_PARTS:
        raise DataModelError(
            f"body_part {body_part!r} is not one of the unpaired body parts "
            f"{UNPAIRED_BODY_PARTS} (a paired one would need a Laterality); nothing written"
        )
    if not np.all(np.isfinite(hu)):
        raise DicomInputError("HU volume contains NaN or inf; nothing written", path=folder)
    d = grid.direction_matrix
    if np.linalg.det(d) < 0:
        hu = hu[::-1]
        origin = grid.ijk_to_mm([0, 0, grid.shape[0] - 1])
        d = d.copy()
        d[:, 2] *= -1
        grid = Grid(grid.shape, tuple(origin), grid.spacing_mm, tuple(d.reshape(-1)))
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    series_uid = new_uid()
    intercept = -1024.0
    stored = np.clip(np.rint(np.asarray(hu, dtype=np.float64) - intercept), -32768, 32767)
    stored = stored.astype(np.int16)
    iop = iop_from_direction(d)
    sp_i, sp_j, sp_k = grid.spacing_mm
    paths, uids = [], []
    for k in range(grid.shape[0]):
        ds = new_dataset(
            CT_IMAGE_STORAGE,
            "CT",
            context,
            series_instance_uid=series_uid,
            series_number=series_number,
            series_description=series_description,
            instance_number=k + 1,
        )
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.SeriesDate = context.study_date
        ds.SeriesTime = context.study_time
        ds.ContentDate = context.study_date
        ds.ContentTime = context.study_time
        ds.AcquisitionNumber = 1
        ds.PatientPosition = context.patient_position
        ds.BodyPartExamined = body_part
        if not body_part:
            ds.Laterality = ""  # Type 2C: body part unknown, so laterality unknown
        ds.FrameOfReferenceUID = context.frame_of_reference_uid
        ds.PositionReferenceIndicator = ""
        ds.KVP = f"{kvp:g}"
        ds.SliceThickness = f"{sp_k:.6g}"
        ds.PixelSpacing = [f"{sp_j:.6g}", f"{sp_i:.6g}"]
        ds.ImageOrientationPatient = [f"{v:.8f}" for v in iop]
        pos = grid.ijk_to_mm([0.0, 0.0, float(k)])
        ds.ImagePositionPatient = [f"{v:.6f}" for v in pos]
        ds.SliceLocation = f"{float(pos @ d[:, 2]):.6f}"
        ds.PatientOrientation = ""
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = "MONOCHROME2"
        ds.Rows, ds.Columns = grid.shape[1], grid.shape[2]
        ds.BitsAllocated = 16
        ds.BitsStored = 16
        ds.HighBit = 15
        ds.PixelRepresentation = 1
        ds.RescaleIntercept = f"{intercept:g}"
        ds.RescaleSlope = "1"
        ds.RescaleType = "HU"
        ds.WindowCenter = "40"
        ds.WindowWidth = "400"
        ds.PixelData = stored[k].tobytes()
        path = out / f"{file_prefix}.{k + 1:04d}.dcm"
        save_dataset(ds, path, overwrite=overwrite)
        paths.append(path)
        uids.append(str(ds.SOPInstanceUID))
    return CTImage(
        hu=(stored.astype(np.float32) + np.float32(intercept)),
        grid=grid,
        series_instance_uid=series_uid,
        frame_of_reference_uid=context.frame_of_reference_uid,
        sop_instance_uids=tuple(uids),
        paths=tuple(paths),
        context=context,
        series_description=series_description,
    )
