"""RT Structure Set: data types and the reader (PS3.3 C.8.8.5, C.8.8.6, C.8.8.8).

Closed contours are CLOSED_PLANAR or CLOSEDPLANAR_XOR (PS3.3 2024c C.8.8.6.1, C.8.8.6.3).
The XOR contours of a plane are combined by geometric exclusive disjunction, two at a
time, in any order.  That is exactly the even-odd rule the rasteriser applies to closed
contours (:mod:`brachycryo.dicom_io.rasterize`): a point lies in the XOR of the regions
R1 ... Rn when it lies in an odd number of them, and, whether the polygons are simple or
not, a ray from the point crosses the boundaries of all of them an odd number of times
exactly when the crossing counts of the single polygons (each odd when the point is in
that polygon's even-odd region) have an odd sum, since parities add.  Both types are
therefore read the same way; a keyhole contour (C.8.8.6.3) is one CLOSED_PLANAR contour
whose zero-width cut changes no crossing parity.

The reader keeps contours as they are in the file (patient mm); rasterising them onto a
Grid is :mod:`brachycryo.dicom_io.rasterize`'s job.  Problems that make a ROI unusable (a closed
contour with fewer than 3 points, NaN coordinates, a ContourData length that is not
3 x NumberOfContourPoints) raise :class:`~brachycryo.core.errors.StructureError` naming the ROI;
problems that do not (an empty ROI, a missing colour, a missing referenced series) are
collected in ``StructureSet.warnings``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset

from brachycryo.core.errors import DicomInputError, FrameOfReferenceError, StructureError
from brachycryo.dicom_io.common import (
    PLAUSIBLE_COORDINATE_MM,
    StudyContext,
    get_sequence,
    read_dataset,
)

log = logging.getLogger(__name__)

CLOSED_PLANAR = "CLOSED_PLANAR"
CLOSEDPLANAR_XOR = "CLOSEDPLANAR_XOR"
#: Contour Geometric Types that enclose an area (combined by the even-odd rule, see above).
CLOSED_TYPES = (CLOSED_PLANAR, CLOSEDPLANAR_XOR)
POINT = "POINT"
OPEN_PLANAR = "OPEN_PLANAR"
OPEN_NONPLANAR = "OPEN_NONPLANAR"
#: Open contours: lines (e.g. a probe's track), read as such, never filled.
OPEN_TYPES = (OPEN_PLANAR, OPEN_NONPLANAR)
#: The defined terms of Contour Geometric Type (PS3.3 C.8.8.6.1).
GEOMETRIC_TYPES = (POINT, *OPEN_TYPES, *CLOSED_TYPES)


@dataclass(frozen=True)
class Contour:
    """One contour: its points in patient mm, its geometric type, the image it was drawn on."""

    points_mm: np.ndarray
    geometric_type: str = CLOSED_PLANAR
    referenced_sop_instance_uid: str | None = None


@dataclass(frozen=True)
class ROI:
    """A region of interest: number, name, interpreted type, colour and its contours."""

    number: int
    name: str
    interpreted_type: str = ""
    color_rgb: tuple[int, int, int] | None = None
    contours: tuple[Contour, ...] = ()
    frame_of_reference_uid: str = ""
    generation_algorithm: str = ""

    @property
    def closed_contours(self) -> tuple[Contour, ...]:
        """CLOSED_PLANAR and CLOSEDPLANAR_XOR contours (both read by the even-odd rule)."""
        return tuple(c for c in self.contours if c.geometric_type in CLOSED_TYPES)

    @property
    def points_mm(self) -> np.ndarray:
        """The ROI's POINT contours as an (N, 3) array (e.g. markers, seeds)."""
        pts = [c.points_mm for c in self.contours if c.geometric_type == POINT]
        return np.concatenate(pts, axis=0) if pts else np.zeros((0, 3))

    @property
    def lines_mm(self) -> tuple[np.ndarray, ...]:
        """The ROI's open contours (OPEN_PLANAR, OPEN_NONPLANAR), one (N, 3) polyline each."""
        return tuple(c.points_mm for c in self.contours if c.geometric_type in OPEN_TYPES)

    @property
    def is_empty(self) -> bool:
        return len(self.contours) == 0

    @property
    def is_point(self) -> bool:
        return bool(self.contours) and all(c.geometric_type == POINT for c in self.contours)


@dataclass(frozen=True)
class StructureSet:
    """The content of an RTSTRUCT file."""

    rois: tuple[ROI, ...]
    frame_of_reference_uid: str
    referenced_series_uid: str | None
    referenced_sop_instance_uids: frozenset[str]
    context: StudyContext
    sop_instance_uid: str = ""
    label: str = ""
    path: Path | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def roi_names(self) -> list[str]:
        return [r.name for r in self.rois]

    def roi(self, name: str) -> ROI:
        """The ROI called ``name`` (exact match first, then case-insensitive).

        A name that two ROIs share is a :class:`StructureError` naming both ROI numbers:
        results reported under that name could belong to either.
        """
        exact = [r for r in self.rois if r.name == name]
        check_unique_names(exact, self.path)
        if exact:
            return exact[0]
        matches = [r for r in self.rois if r.name.lower() == name.lower()]
        if len(matches) == 1:
            return matches[0]
        raise StructureError(
            f"no such ROI in {self.path or 'the structure set'}; ROIs present: {self.roi_names}",
            roi=name,
        )


def check_unique_names(rois, where: Path | str | None = None) -> None:
    """Raise :class:`StructureError` when two of ``rois`` share a name, naming their ROI numbers.

    Structures are reported by name (``dvh`` tables, ``dvh-batch`` rows, plan constraints),
    so two ROIs of one name would report one's numbers as the other's.  Refusing is chosen
    over renaming one of them ("GTV (2)"), a name the planning system does not know.
    """
    by_name: dict[str, list[int]] = {}
    for r in rois:
        by_name.setdefault(r.name, []).append(r.number)
    for r in rois:
        numbers = by_name[r.name]
        if len(numbers) > 1:
            raise StructureError(
                f"{len(numbers)} ROIs of {where or 'the structure set'} have this name "
                f"(ROINumber {', '.join(str(n) for n in numbers)}); rename all but one so "
                "that results cannot be reported under the wrong one",
                roi=r.name,
            )


def _parse_color(value, roi_name: str, warnings: list[str]) -> tuple[int, int, int] | None:
    try:
        rgb = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        warnings.append(f"ROI {roi_name!r}: unreadable ROIDisplayColor {value!r}; ignored")
        return None
    if len(rgb) != 3:
        warnings.append(f"ROI {roi_name!r}: ROIDisplayColor has {len(rgb)} values; ignored")
        return None
    return (rgb[0], rgb[1], rgb[2])


def _contour_data(item: Dataset, roi_name: str, path: Path) -> np.ndarray:
    """ContourData as floats, parsed from the raw text when pydicom has not decoded it.

    Decoding through pydicom's DS type validates each number separately, which dominates
    reading large structure sets; the raw bytes are parsed in one go instead.
    """
    if "ContourData" not in item:
        raise StructureError(f"a contour in {path} has no ContourData", roi=roi_name)
    try:
        elem = item.get_item("ContourData")
        if isinstance(elem, RawDataElement) and elem.value is not None:
            text = elem.value.decode("ascii", errors="replace").strip(" \x00")
            values = text.split("\\") if text else []
        else:
            raw = item.ContourData
            values = [raw] if isinstance(raw, str | float | int) else list(raw or [])
        return np.asarray([float(v) for v in values], dtype=float)
    except (TypeError, ValueError, UnicodeError, AttributeError) as exc:
        raise StructureError(f"non-numeric ContourData in {path}: {exc}", roi=roi_name) from exc


def _parse_contour(item: Dataset, roi_name: str, path: Path) -> Contour:
    gtype = str(item.get("ContourGeometricType", "") or "").strip().upper()
    if not gtype:
        raise StructureError(f"a contour in {path} has no ContourGeometricType", roi=roi_name)
    if gtype not in GEOMETRIC_TYPES:
        # skipping it would silently drop part of the structure (its volume, its dose)
        raise StructureError(
            f"a contour in {path} has ContourGeometricType {gtype[:40]!r}, not one of "
            f"{', '.join(GEOMETRIC_TYPES)} (PS3.3 C.8.8.6.1)",
            roi=roi_name,
        )
    data = _contour_data(item, roi_name, path)
    if data.size % 3:
        raise StructureError(
            f"ContourData in {path} has {data.size} values, not a multiple of 3", roi=roi_name
        )
    points = data.reshape(-1, 3)
    n_declared = item.get("NumberOfContourPoints", None)
    if n_declared is not None:
        try:
            n_declared = int(n_declared)
        except (TypeError, ValueError):
            raise StructureError(
                f"NumberOfContourPoints (3006,0046) in {path} is not an integer: "
                f"{str(n_declared)[:40]!r}",
                roi=roi_name,
            ) from None
    if n_declared is not None and n_declared != points.shape[0]:
        raise StructureError(
            f"NumberOfContourPoints is {n_declared} but ContourData holds "
            f"{points.shape[0]} points in {path}",
            roi=roi_name,
        )
    if not np.all(np.isfinite(points)):
        raise StructureError(f"ContourData in {path} contains NaN or inf", roi=roi_name)
    worst = float(np.max(np.abs(points), initial=0.0))
    if worst > PLAUSIBLE_COORDINATE_MM:
        raise StructureError(
            f"ContourData (3006,0050) in {path} holds a coordinate of {worst:.4g} mm, outside "
            f"any plausible patient extent (|x|, |y|, |z| <= {PLAUSIBLE_COORDINATE_MM:g} mm)",
            roi=roi_name,
        )
    if gtype in CLOSED_TYPES and points.shape[0] < 3:
        raise StructureError(
            f"a {gtype} contour in {path} has {points.shape[0]} point(s); at least 3 are "
            "needed to enclose an area",
            roi=roi_name,
        )
    if gtype == POINT and points.shape[0] != 1:
        raise StructureError(
            f"a POINT contour in {path} has {points.shape[0]} points, expected 1", roi=roi_name
        )
    ref_uid = None
    images = get_sequence(item, "ContourImageSequence", path=path)
    if images:
        ref_uid = str(images[0].get("ReferencedSOPInstanceUID", "")) or None
    return Contour(points_mm=points, geometric_type=gtype, referenced_sop_instance_uid=ref_uid)


@dataclass(frozen=True)
class _ImageReference:
    """What the Referenced Frame of Reference Sequence names: frame, series and images."""

    frame_of_reference_uid: str
    series_uid: str | None
    sop_instance_uids: frozenset[str]


def _image_reference(ds: Dataset, path: Path) -> _ImageReference:
    for_uid = ""
    series_uid = None
    sop_uids: set[str] = set()
    for ref in get_sequence(ds, "ReferencedFrameOfReferenceSequence", path=path):
        for_uid = for_uid or str(ref.get("FrameOfReferenceUID", "") or "")
        for study in get_sequence(ref, "RTReferencedStudySequence", path=path):
            for series in get_sequence(study, "RTReferencedSeriesSequence", path=path):
                series_uid = series_uid or str(series.get("SeriesInstanceUID", "") or "") or None
                for img in get_sequence(series, "ContourImageSequence", path=path):
                    uid = str(img.get("ReferencedSOPInstanceUID", "") or "")
                    if uid:
                        sop_uids.add(uid)
    return _ImageReference(for_uid, series_uid, frozenset(sop_uids))


def _interpreted_types(ds: Dataset, path: Path) -> dict[int, str]:
    """ROI number -> RTROIInterpretedType (items without a valid number are skipped)."""
    observations: dict[int, str] = {}
    for obs in get_sequence(ds, "RTROIObservationsSequence", path=path):
        try:
            observations[int(obs.ReferencedROINumber)] = str(obs.get("RTROIInterpretedType", ""))
        except (AttributeError, TypeError, ValueError):
            continue
    return observations


def _contour_items(ds: Dataset, path: Path) -> dict[int, Dataset]:
    """ROI number -> its ROIContourSequence item."""
    contour_items: dict[int, Dataset] = {}
    for item in get_sequence(ds, "ROIContourSequence", path=path):
        try:
            contour_items[int(item.ReferencedROINumber)] = item
        except (AttributeError, TypeError, ValueError) as exc:
            raise DicomInputError(
                "an ROIContourSequence item has no valid ReferencedROINumber",
                path=path,
                tag="ReferencedROINumber",
            ) from exc
    return contour_items


def _roi_number(item: Dataset, path: Path) -> int:
    try:
        return int(item.ROINumber)
    except (AttributeError, TypeError, ValueError) as exc:
        raise DicomInputError(
            "a StructureSetROISequence item has no valid ROINumber", path=path, tag="ROINumber"
        ) from exc


def _duplicate_contour_warnings(contours: list[Contour], name: str) -> list[str]:
    """A warning for each closed contour that repeats another of its plane exactly.

    Closed contours of a plane combine by the even-odd rule (module docstring), so an exact
    copy cancels the original: the region becomes a hole.  Exporters sometimes write a
    contour twice; the rule is applied as the standard says, with this warning.
    """
    seen: dict[bytes, Contour] = {}
    out = []
    for c in contours:
        if c.geometric_type not in CLOSED_TYPES:
            continue
        key = np.round(c.points_mm, 3).tobytes()
        if key in seen:
            z = float(np.mean(c.points_mm[:, 2]))
            out.append(
                f"ROI {name!r}: a closed contour at z = {z:.2f} mm is an exact duplicate of "
                "another on that plane; by the even-odd rule the two cancel (a hole where the "
                "region was) - check the export"
            )
        seen[key] = c
    return out


def _roi_contours(
    citem: Dataset | None, name: str, path: Path, warnings: list[str]
) -> tuple[list[Contour], tuple[int, int, int] | None]:
    """(contours, display colour) of one ROI from its ROIContourSequence item."""
    contours: list[Contour] = []
    color = None
    if citem is not None:
        if "ROIDisplayColor" in citem:
            color = _parse_color(citem.ROIDisplayColor, name, warnings)
        for c in get_sequence(citem, "ContourSequence", path=path):
            contours.append(_parse_contour(c, name, path))
    if not contours:
        warnings.append(f"ROI {name!r} is empty (no contours)")
    warnings.extend(_duplicate_contour_warnings(contours, name))
    if any(c.geometric_type in OPEN_TYPES for c in contours):
        warnings.append(f"ROI {name!r} has open contours; they cannot enclose a volume")
    if {CLOSED_PLANAR, CLOSEDPLANAR_XOR} <= {c.geometric_type for c in contours}:
        warnings.append(
            f"ROI {name!r} mixes CLOSED_PLANAR and CLOSEDPLANAR_XOR contours; all its closed "
            "contours of a plane are combined by the even-odd rule (XOR)"
        )
    return contours, color


def read_rtstruct(path: str | os.PathLike) -> StructureSet:
    """Read an RTSTRUCT file into a :class:`StructureSet` (contours in patient mm)."""
    p = Path(path)
    ds = read_dataset(p, modality="RTSTRUCT")
    warnings: list[str] = []
    roi_items = get_sequence(ds, "StructureSetROISequence", path=p, required=True)
    reference = _image_reference(ds, p)
    if reference.series_uid is None:
        warnings.append("no referenced image series (RTReferencedSeriesSequence is absent)")
    observations = _interpreted_types(ds, p)
    contour_items = _contour_items(ds, p)
    rois = []
    seen_numbers: set[int] = set()
    for item in roi_items:
        number = _roi_number(item, p)
        name = str(item.get("ROIName", "") or f"ROI {number}")
        if number in seen_numbers:
            raise StructureError(f"ROINumber {number} is used twice in {p}", roi=name)
        seen_numbers.add(number)
        contours, color = _roi_contours(contour_items.get(number), name, p, warnings)
        rois.append(
            ROI(
                number=number,
                name=name,
                interpreted_type=observations.get(number, ""),
                color_rgb=color,
                contours=tuple(contours),
                frame_of_reference_uid=str(
                    item.get("ReferencedFrameOfReferenceUID", "")
                    or reference.frame_of_reference_uid
                ),
                generation_algorithm=str(item.get("ROIGenerationAlgorithm", "") or ""),
            )
        )
    for w in warnings:
        log.info("%s: %s", p, w)
    return StructureSet(
        rois=tuple(rois),
        frame_of_reference_uid=reference.frame_of_reference_uid,
        referenced_series_uid=reference.series_uid,
        referenced_sop_instance_uids=reference.sop_instance_uids,
        context=(
            StudyContext.from_dataset(ds)
            if str(ds.get("StudyInstanceUID", "") or "").strip()
            else StudyContext()
        ),
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        label=str(ds.get("StructureSetLabel", "") or ""),
        path=p,
        warnings=tuple(warnings),
    )


def check_against_image(
    structures: StructureSet,
    *,
    frame_of_reference_uid: str,
    series_instance_uid: str | None = None,
    sop_instance_uids: set[str] | frozenset[str] | None = None,
    strict: bool = True,
) -> list[str]:
    """Check that ``structures`` was drawn on the given image series.

    A Frame of Reference mismatch is always an error (positions would be meaningless).
    With ``strict``, a referenced series other than the image's, or contours drawn on
    images that are not in the series, are errors too; otherwise they are returned as
    warnings (e.g. to rasterise an RTSTRUCT whose CT images are absent onto another grid).
    """
    where = structures.path or "RTSTRUCT"
    problems: list[str] = []
    for roi in structures.rois:
        if roi.frame_of_reference_uid and roi.frame_of_reference_uid != frame_of_reference_uid:
            raise FrameOfReferenceError(
                f"{where}: ROI {roi.name!r} is in Frame of Reference {roi.frame_of_reference_uid}, "
                f"the image in {frame_of_reference_uid}"
            )
    if structures.frame_of_reference_uid and (
        structures.frame_of_reference_uid != frame_of_reference_uid
    ):
        raise FrameOfReferenceError(
            f"{where} references Frame of Reference {structures.frame_of_reference_uid}, the "
            f"image is in {frame_of_reference_uid}"
        )
    if series_instance_uid is not None and structures.referenced_series_uid not in (
        None,
        series_instance_uid,
    ):
        problems.append(
            f"{where} references image series {structures.referenced_series_uid}, not "
            f"{series_instance_uid}"
        )
    if sop_instance_uids is not None:
        referenced = set(structures.referenced_sop_instance_uids)
        for roi in structures.rois:
            referenced.update(
                c.referenced_sop_instance_uid for c in roi.contours if c.referenced_sop_instance_uid
            )
        missing = sorted(referenced - set(sop_instance_uids))
        if missing:
            problems.append(
                f"{where} references {len(missing)} image(s) that are not in the series, e.g. "
                f"{', '.join(missing[:3])}"
            )
    if problems and strict:
        raise DicomInputError(
            "; ".join(problems) + " (pass strict=False to rasterise anyway)",
            path=structures.path,
            tag="ReferencedSOPInstanceUID",
        )
    return problems
