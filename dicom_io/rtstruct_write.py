"""Write an RT Structure Set from masks, contours, lines or points, referencing a CT series.

Masks on the CT grid are turned into per-slice closed contours by marching squares at the
0.5 level (:func:`skimage.measure.find_contours`), so a binary mask read back onto the same
grid gives the same voxels.  A region with holes is written as one keyhole contour per
connected region (PS3.3 C.8.8.6.3: each hole joined to its outer boundary by a zero-width
cut, see :mod:`brachycryo.dicom_io.keyhole`), not as separate outer and inner contours,
whose meaning depends on the reader (plastimatch fills them); an island inside a hole is
its own contour.  Explicit contours are written the same way: nested contours on a plane
are joined into keyhole contours, and contours that cross or touch are refused.  Every
contour references the CT image it lies on; the Structure Set references the whole series
(PS3.3 C.8.8.5).

Lines (e.g. a cryo probe's track from the skin to its tip) are open contours (PS3.3
C.8.8.6.1): OPEN_PLANAR when every point lies in one CT image plane (the contour then
references that image, as closed contours do), OPEN_NONPLANAR otherwise, without an image
reference.  Any straight segment is coplanar in the strict geometric sense; "planar" is
taken here as lying in the plane of an image, because readers that sort contours by image
(by the Contour Image Sequence or by the z of the first point) take a planar contour to lie
in one slice, which a track across slices does not.  Points are one POINT contour each.
"""

from __future__ import annotations

import datetime as _dt
import itertools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from pydicom.tag import BaseTag, Tag
from skimage.measure import find_contours

from brachycryo.core.errors import GeometryError, StructureError
from brachycryo.dicom_io.common import (
    CT_IMAGE_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
    SERIES_NUMBERS,
    new_dataset,
    save_dataset,
)
from brachycryo.dicom_io.ct_series import CTImage
from brachycryo.dicom_io.keyhole import first_meeting_pair, keyhole_loops
from brachycryo.dicom_io.rasterize import contour_stack
from brachycryo.dicom_io.rtstruct import (
    CLOSED_PLANAR,
    OPEN_NONPLANAR,
    OPEN_PLANAR,
    POINT,
    ROI,
    Contour,
    StructureSet,
    read_rtstruct,
)

#: Detached Study Management SOP Class, the class the standard names for study references.
STUDY_COMPONENT_SOP_CLASS = "1.2.840.10008.3.1.2.3.1"

_DEFAULT_COLOURS = [
    (255, 0, 0),
    (0, 160, 255),
    (0, 200, 0),
    (255, 200, 0),
    (200, 0, 200),
    (0, 200, 200),
    (255, 120, 0),
    (120, 80, 255),
    (160, 160, 160),
    (255, 105, 180),
]


@dataclass(frozen=True)
class RoiSpec:
    """One ROI to write: a mask on the CT grid, explicit contours (mm), open lines (mm,
    one (N >= 2, 3) polyline each) or points (mm).

    ``interpreted_type`` is an RTROIInterpretedType (EXTERNAL, PTV, CTV, GTV, ORGAN,
    AVOIDANCE, MARKER, CONTROL, ...).
    """

    name: str
    mask: np.ndarray | None = None
    contours_mm: Sequence[np.ndarray] = field(default=())
    points_mm: np.ndarray | None = None
    lines_mm: Sequence[np.ndarray] = field(default=())
    interpreted_type: str = "ORGAN"
    color_rgb: tuple[int, int, int] | None = None
    generation_algorithm: str = "AUTOMATIC"


#: Longest value an explicit-VR element with a 2-byte length can hold (PS3.5 7.1.2); PS3.3
#: C.8.8.6 notes that a longer Contour Data may not be encodable in an explicit VR syntax.
MAX_CONTOUR_DATA_BYTES = 0xFFFE


def _without_collinear(loop: np.ndarray) -> np.ndarray:
    """The loop without vertices that lie on the straight line through their neighbours
    (same direction on): the polygon is unchanged, the contour shorter."""
    prev = np.roll(loop, 1, axis=0)
    nxt = np.roll(loop, -1, axis=0)
    d0, d1 = loop - prev, nxt - loop
    cross = d0[:, 0] * d1[:, 1] - d0[:, 1] * d1[:, 0]
    straight = (cross == 0) & (np.einsum("ij,ij->i", d0, d1) > 0)
    return loop if straight.all() else loop[~straight]


def _slice_loops_ij(values: np.ndarray) -> list[np.ndarray]:
    """Closed marching-squares loops (i, j index coordinates) of one 2-D slice [j, i]."""
    loops = []
    for c in find_contours(np.pad(values, 1, constant_values=0.0), level=0.5):
        rc = c[:-1] if np.allclose(c[0], c[-1]) else c
        if rc.shape[0] >= 3:
            loops.append(_without_collinear(np.column_stack([rc[:, 1] - 1.0, rc[:, 0] - 1.0])))
    return loops


def _slice_polygons_ij(values: np.ndarray) -> list[np.ndarray]:
    """Keyhole polygons (i, j) of one slice, each starting at its leftmost vertex.

    Cuts avoid the rows of voxel centres (integer j).  The leftmost vertex of a
    marching-squares loop lies on a row of voxel centres, never on a band edge of
    :func:`_band_polygons_ij`.
    """
    rows = np.arange(values.shape[0], dtype=float)
    out = []
    for poly in keyhole_loops(_slice_loops_ij(values), avoid_y=rows):
        first = int(np.lexsort((poly[:, 1], poly[:, 0]))[0])
        out.append(np.roll(poly, -first, axis=0))
    return out


def _band_polygons_ij(values: np.ndarray, n_bands: int) -> list[np.ndarray]:
    """Polygons of the slice cut into ``n_bands`` bands of whole rows of voxels.

    The bands' polygons meet on lines midway between rows of voxel centres: disjoint
    regions whose union holds exactly the slice's voxel centres, for any reader.
    """
    rows = np.nonzero(values.max(axis=1) >= 0.5)[0]
    edges = np.linspace(rows[0], rows[-1] + 1, n_bands + 1).round().astype(int)
    out = []
    for lo, hi in itertools.pairwise(edges):
        band = np.zeros_like(values)
        band[lo:hi] = values[lo:hi]
        if band.max() >= 0.5:
            out.extend(_slice_polygons_ij(band))
    return out


def mask_to_contours_mm(mask: np.ndarray, ct: CTImage, *, name: str = "") -> list[np.ndarray]:
    """Closed contours (mm, one (N, 3) array each) of a mask on the CT grid, slice by slice.

    One keyhole contour per connected region of a slice (holes joined by zero-width cuts,
    PS3.3 C.8.8.6.3).  The cuts run along the image rows; for a binary mask they lie
    between rows of voxel centres, so no voxel centre lies on one.  A slice whose contour
    would not fit one Contour Data element (:data:`MAX_CONTOUR_DATA_BYTES`) is cut into
    bands of rows, each with its own contours.
    """
    grid = ct.grid
    if mask.shape != grid.shape:
        raise StructureError(
            f"mask shape {mask.shape} is not the CT grid's {grid.shape}; masks must be on the "
            "grid of the CT the structure set references",
            roi=name or None,
        )
    values = np.asarray(mask, dtype=np.float32)
    if not np.all(np.isfinite(values)):
        raise StructureError("mask contains NaN or inf", roi=name or None)
    out = []
    for k in np.nonzero(values.reshape(values.shape[0], -1).max(axis=1) >= 0.5)[0]:
        polys, n_bands = _slice_polygons_ij(values[k]), 1
        while True:
            polys_mm = [
                grid.ijk_to_mm(np.column_stack([ij, np.full(ij.shape[0], float(k))]))
                for ij in polys
            ]
            if all(len(_ds_bytes(p.reshape(-1))) <= MAX_CONTOUR_DATA_BYTES for p in polys_mm):
                break
            if n_bands >= values.shape[1]:
                raise StructureError(
                    f"slice {k} cannot be written in Contour Data elements of at most "
                    f"{MAX_CONTOUR_DATA_BYTES} bytes",
                    roi=name or None,
                )
            n_bands = min(2 * n_bands, values.shape[1])
            polys = _band_polygons_ij(values[k], n_bands)
        out.extend(polys_mm)
    return out


#: Maps a planar contour (n, 3) mm to the SOP Instance UID of its CT slice (None: none).
_SliceLookup = Callable[[np.ndarray], str | None]


def _slice_lookup(ct: CTImage) -> _SliceLookup:
    """Function mapping a planar contour to the SOP Instance UID of the slice it lies on."""
    normal = ct.grid.slice_normal
    slice_h = (
        ct.grid.ijk_to_mm(
            np.column_stack(
                [
                    np.zeros(ct.grid.shape[0]),
                    np.zeros(ct.grid.shape[0]),
                    np.arange(ct.grid.shape[0]),
                ]
            )
        )
        @ normal
    )
    tol = 0.01 * ct.grid.spacing_mm[2] + 1e-3

    def lookup(points_mm: np.ndarray) -> str | None:
        if points_mm.shape[0] and abs(float(np.ptp(points_mm @ normal))) > tol:
            return None
        h = float(np.mean(points_mm @ normal))
        k = int(np.argmin(np.abs(slice_h - h)))
        return ct.sop_instance_uids[k] if abs(slice_h[k] - h) <= tol else None

    return lookup


def _contour_item(points_mm: np.ndarray, gtype: str, sop_uid: str | None) -> Dataset:
    item = Dataset()
    # Declare the item already encoded as the file will be (explicit VR little endian), so
    # that pydicom writes the raw ContourData bytes instead of re-parsing every number.
    item.set_original_encoding(False, True, item._character_set)
    if sop_uid:
        img = Dataset()
        img.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        img.ReferencedSOPInstanceUID = sop_uid
        item.ContourImageSequence = DicomSequence([img])
    item.ContourGeometricType = gtype
    item.NumberOfContourPoints = int(points_mm.shape[0])
    item[CONTOUR_DATA_TAG] = _raw_decimal_strings(CONTOUR_DATA_TAG, points_mm.reshape(-1))
    return item


CONTOUR_DATA_TAG = Tag(0x3006, 0x0050)


def _ds_text(value: float) -> str:
    """A DS value to 4 decimals without trailing zeros ("12.5", "-3", "0")."""
    text = f"{value:.4f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _ds_bytes(values: np.ndarray) -> bytes:
    """The DS multi-value encoding of ``values`` (backslash-separated, even length)."""
    texts = [_ds_text(v) for v in values]
    if any(len(t) > 16 for t in texts):
        raise StructureError("a contour coordinate does not fit a DS value (|x| >= 1e11 mm)")
    data = "\\".join(texts).encode("ascii")
    return data + b" " if len(data) % 2 else data


def _raw_decimal_strings(tag: BaseTag, values: np.ndarray) -> RawDataElement:
    """A DS multi-value element encoded directly (explicit VR little endian).

    Building ContourData through pydicom's DS type validates every number one by one,
    which dominated writing large structure sets; the encoding here is the same text
    (4 decimals without trailing zeros, at most 16 characters per value,
    backslash-separated, even length).
    """
    data = _ds_bytes(values)
    if len(data) > MAX_CONTOUR_DATA_BYTES:
        raise StructureError(
            f"a contour of {values.size // 3} points needs {len(data)} bytes of Contour Data, "
            f"more than the {MAX_CONTOUR_DATA_BYTES} an explicit-VR element holds (PS3.3 "
            "C.8.8.6); split it into several contours"
        )
    return RawDataElement(tag, "DS", len(data), data, 0, False, True)


def _check_roi_names(rois: Sequence[RoiSpec]) -> None:
    if not rois:
        raise StructureError("nothing to write: no ROIs given")
    names = [r.name for r in rois]
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise StructureError(f"ROI names must be unique; repeated: {dup}")


def _referenced_frame(ct: CTImage) -> Dataset:
    """The Referenced Frame of Reference item: the CT's frame, study, series and images."""
    images = []
    for uid in ct.sop_instance_uids:
        img = Dataset()
        img.ReferencedSOPClassUID = CT_IMAGE_STORAGE
        img.ReferencedSOPInstanceUID = uid
        images.append(img)
    series = Dataset()
    series.SeriesInstanceUID = ct.series_instance_uid
    series.ContourImageSequence = DicomSequence(images)
    study = Dataset()
    study.ReferencedSOPClassUID = STUDY_COMPONENT_SOP_CLASS
    study.ReferencedSOPInstanceUID = ct.context.study_instance_uid
    study.RTReferencedSeriesSequence = DicomSequence([series])
    frame = Dataset()
    frame.FrameOfReferenceUID = ct.frame_of_reference_uid
    frame.RTReferencedStudySequence = DicomSequence([study])
    return frame


def _checked_polygon(poly, name: str) -> np.ndarray:
    poly = np.asarray(poly, dtype=float)
    if poly.ndim != 2 or poly.shape[1] != 3 or poly.shape[0] < 3:
        raise StructureError(
            f"a contour must be an (N>=3, 3) array of mm, got shape {poly.shape}", roi=name
        )
    if not np.all(np.isfinite(poly)):
        raise StructureError("a contour contains NaN or inf", roi=name)
    return poly


def _keyhole_explicit(polys: list[np.ndarray], name: str) -> list[np.ndarray]:
    """Explicit contours with the nested ones of each plane joined into keyhole contours.

    Contours are grouped into planes as the reader does (:func:`contour_stack`, which
    refuses non-parallel or non-planar contours); contours of one plane that cross or
    touch have no reader-independent meaning and are refused.  Contours of zero area
    enclose nothing and are dropped.
    """
    if len(polys) == 1:
        return polys
    stack = contour_stack(ROI(number=0, name=name, contours=tuple(Contour(p) for p in polys)))
    out: list[np.ndarray] = []
    for offset, uv, mm in zip(
        stack.plane_offsets_mm, stack.polygons, stack.polygons_mm, strict=True
    ):
        if len(uv) == 1:
            out.append(mm[0])
            continue
        pair = first_meeting_pair(uv)
        if pair is not None:
            raise StructureError(
                f"contours {pair[0] + 1} and {pair[1] + 1} of the plane at {offset:.2f} mm along "
                "the contour normal cross or touch; the region they enclose would depend on "
                "the reader's fill rule (PS3.3 C.8.8.6.3): give contours that neither cross "
                "nor touch, or a mask",
                roi=name,
            )
        out.extend(keyhole_loops(uv, mm))
    return out


def _explicit_contours(spec: RoiSpec, lookup: _SliceLookup) -> list[Dataset]:
    polys = [_checked_polygon(p, spec.name) for p in spec.contours_mm]
    return [
        _contour_item(poly, CLOSED_PLANAR, lookup(poly))
        for poly in _without_repeats(_keyhole_explicit(polys, spec.name), spec.name)
    ]


def _without_repeats(polys: list[np.ndarray], name: str) -> list[np.ndarray]:
    """Contours as written (mm to 4 decimals) without consecutive repeated points.

    PS3.3 C.8.8.6.1: a CLOSED_PLANAR contour does not repeat its first point at its end;
    points that round to the same written value would be zero-length edges.
    """
    out = []
    for poly in polys:
        pts = np.round(poly, 4) + 0.0  # + 0.0 turns -0.0 into 0.0
        keep = np.any(pts != np.roll(pts, 1, axis=0), axis=1)
        pts = pts[keep] if keep.any() else pts[:1]
        if pts.shape[0] < 3:
            raise StructureError(
                "a contour has fewer than 3 distinct points at 0.1 um; it encloses no area",
                roi=name,
            )
        out.append(pts)
    return out


def _line_contours(spec: RoiSpec, ct: CTImage, lookup: _SliceLookup) -> list[Dataset]:
    """Open contour items of ``spec.lines_mm``: OPEN_PLANAR when a line lies in a plane of
    the CT's images (referencing the image when it lies on one), else OPEN_NONPLANAR (see
    the module docstring)."""
    tol = 0.01 * ct.grid.spacing_mm[2] + 1e-3  # as the slice lookup's
    out = []
    for line in spec.lines_mm:
        pts = np.round(np.asarray(line, dtype=float), 4) + 0.0
        if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] < 2:
            raise StructureError(
                f"a line must be an (N>=2, 3) array of mm, got shape {pts.shape}", roi=spec.name
            )
        if not np.all(np.isfinite(pts)):
            raise StructureError("a line contains NaN or inf", roi=spec.name)
        if not np.any(np.ptp(pts, axis=0) > 0):
            raise StructureError("a line's points all coincide at 0.1 um", roi=spec.name)
        in_image_plane = float(np.ptp(pts @ ct.grid.slice_normal)) <= tol
        gtype = OPEN_PLANAR if in_image_plane else OPEN_NONPLANAR
        out.append(_contour_item(pts, gtype, lookup(pts) if in_image_plane else None))
    return out


def _roi_contours(spec: RoiSpec, ct: CTImage, lookup: _SliceLookup) -> list[Dataset]:
    """Contour items of one ROI, from its mask, points, lines or explicit contours."""
    sources = [spec.mask is not None, bool(len(spec.contours_mm)), spec.points_mm is not None,
               bool(len(spec.lines_mm))]  # fmt: skip
    if sum(sources) != 1:
        raise StructureError(
            "give exactly one of mask, contours_mm, lines_mm or points_mm", roi=spec.name
        )
    if len(spec.lines_mm):
        return _line_contours(spec, ct, lookup)
    if spec.mask is not None:
        polys = mask_to_contours_mm(spec.mask, ct, name=spec.name)
        if not polys:
            raise StructureError("mask is empty; an empty ROI would not be written", roi=spec.name)
        return [
            _contour_item(p, CLOSED_PLANAR, lookup(p)) for p in _without_repeats(polys, spec.name)
        ]
    if spec.points_mm is not None:
        pts = np.asarray(spec.points_mm, dtype=float).reshape(-1, 3)
        if not np.all(np.isfinite(pts)):
            raise GeometryError(f"ROI {spec.name!r}: points contain NaN or inf")
        return [_contour_item(p[None, :], POINT, lookup(p[None, :])) for p in pts]
    return _explicit_contours(spec, lookup)


@dataclass(frozen=True)
class _RoiItems:
    """One ROI's items of the Structure Set ROI, ROI Contour and RT ROI Observations
    sequences."""

    roi: Dataset
    contour: Dataset
    observation: Dataset


def _roi_items(number: int, spec: RoiSpec, ct: CTImage, contours: list[Dataset]) -> _RoiItems:
    roi = Dataset()
    roi.ROINumber = number
    roi.ReferencedFrameOfReferenceUID = ct.frame_of_reference_uid
    roi.ROIName = spec.name[:64]
    roi.ROIGenerationAlgorithm = spec.generation_algorithm
    citem = Dataset()
    citem.ROIDisplayColor = list(
        spec.color_rgb or _DEFAULT_COLOURS[(number - 1) % len(_DEFAULT_COLOURS)]
    )
    citem.ContourSequence = DicomSequence(contours)
    citem.ReferencedROINumber = number
    obs = Dataset()
    obs.ObservationNumber = number
    obs.ReferencedROINumber = number
    obs.RTROIInterpretedType = spec.interpreted_type
    obs.ROIInterpreter = ""
    return _RoiItems(roi=roi, contour=citem, observation=obs)


def write_rtstruct(
    path: str | os.PathLike,
    rois: Sequence[RoiSpec],
    ct: CTImage,
    *,
    label: str = "brachycryo",
    series_description: str = "brachycryo structures",
    series_number: int = SERIES_NUMBERS["rtstruct"],
    overwrite: bool = False,
    content_datetime: _dt.datetime | None = None,
) -> StructureSet:
    """Write ``rois`` as an RTSTRUCT on the series and Frame of Reference of ``ct``.

    Returns the file as read back by :func:`read_rtstruct`.
    """
    _check_roi_names(rois)
    now = content_datetime or _dt.datetime.now()
    ds = new_dataset(
        RT_STRUCTURE_SET_STORAGE,
        "RTSTRUCT",
        ct.context,
        series_description=series_description,
        series_number=series_number,
        content_datetime=now,
    )
    ds.OperatorsName = ""
    ds.SeriesDate = now.strftime("%Y%m%d")
    ds.SeriesTime = now.strftime("%H%M%S")
    ds.FrameOfReferenceUID = ct.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.StructureSetLabel = label[:16]
    ds.StructureSetName = label[:64]
    ds.StructureSetDate = now.strftime("%Y%m%d")
    ds.StructureSetTime = now.strftime("%H%M%S")
    ds.ReferencedFrameOfReferenceSequence = DicomSequence([_referenced_frame(ct)])
    lookup = _slice_lookup(ct)
    items = [
        _roi_items(number, spec, ct, _roi_contours(spec, ct, lookup))
        for number, spec in enumerate(rois, start=1)
    ]
    ds.StructureSetROISequence = DicomSequence([i.roi for i in items])
    ds.ROIContourSequence = DicomSequence([i.contour for i in items])
    ds.RTROIObservationsSequence = DicomSequence([i.observation for i in items])
    ds.ApprovalStatus = "UNAPPROVED"
    save_dataset(ds, path, overwrite=overwrite)
    return read_rtstruct(Path(path))
