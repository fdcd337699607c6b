"""Pieces every DICOM reader and writer shares: safe reading, UIDs, patient/study context.

Reading never modifies the input file; every failure is a
:class:`~brachycryo.core.errors.DicomInputError` naming the file (and the tag, where one is to
blame).  Writing always goes through :func:`save_dataset` (atomic, no silent overwrite).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    ExplicitVRLittleEndian,
    generate_uid,
)

from brachycryo import __version__
from brachycryo.core.atomic import atomic_path
from brachycryo.core.errors import DicomInputError

# SOP classes (PS3.4 Annex B)
CT_IMAGE_STORAGE = "1.2.840.10008.5.1.4.1.1.2"
RT_STRUCTURE_SET_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
RT_DOSE_STORAGE = "1.2.840.10008.5.1.4.1.1.481.2"
RT_PLAN_STORAGE = "1.2.840.10008.5.1.4.1.1.481.5"

#: UID root of pydicom's generator; every UID we create is fresh (never copied from a template).
UID_PREFIX = "1.2.826.0.1.3680043.8.498."

MANUFACTURER = "brachycryo"

#: SeriesNumber of each kind of series brachycryo writes, so that the series of one study
#: never share a number (General Series C.7.3.1: "a number that identifies this Series";
#: dciodvfy/dcentvfy report repeats).  The post-implant objects and the RTDOSE of
#: ``brachycryo dose`` may join the planning study, so they have numbers of their own.
SERIES_NUMBERS: dict[str, int] = {
    "ct": 1,
    "rtstruct": 2,  # the case's structures (phantom, or the user's)
    "rtstruct_zones": 3,
    "rtstruct_iceball": 4,
    "rtplan": 5,
    "rtdose": 6,
    "ct_postimplant": 7,
    "rtplan_postimplant": 8,
    "rtdose_postimplant": 9,
    "rtdose_recomputed": 10,  # ``brachycryo dose``
}


#: Patient coordinates (mm) beyond this distance from the origin are outside any patient and
#: any scanner's table travel (a whole-body CT spans 2 m): a value there is corrupt, not a
#: position (e.g. a ContourData value of 1e15, a seed at 1e30 mm).
PLAUSIBLE_COORDINATE_MM = 10_000.0


def check_coordinates(points_mm: np.ndarray, what: str, *, path: Any = None, tag: str) -> None:
    """Raise :class:`DicomInputError` naming ``tag`` when a coordinate is not finite or lies
    beyond :data:`PLAUSIBLE_COORDINATE_MM` of the origin."""
    pts = np.asarray(points_mm, dtype=float)
    if pts.size == 0:
        return
    if not np.all(np.isfinite(pts)):
        raise DicomInputError(f"{what}: contains NaN or inf", path=path, tag=tag)
    worst = float(np.max(np.abs(pts)))
    if worst > PLAUSIBLE_COORDINATE_MM:
        raise DicomInputError(
            f"{what}: a coordinate of {worst:.4g} mm lies outside any plausible patient extent "
            f"(|x|, |y|, |z| <= {PLAUSIBLE_COORDINATE_MM:g} mm)",
            path=path,
            tag=tag,
        )


def check_grid_extent(grid: Any, what: str, *, path: Any = None, tag: str) -> None:
    """:func:`check_coordinates` on the 8 corner voxel centres of ``grid`` (a Grid read from a
    file: PixelSpacing 1e6 mm puts its far corner kilometres away)."""
    size = np.asarray(grid.size_ijk, dtype=float) - 1.0
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)]) * size
    check_coordinates(grid.ijk_to_mm(corners), what, path=path, tag=tag)


class DicomConformanceWarning(UserWarning):
    """A DICOM object departs from the standard but can still be used (the message says how).

    Readers also collect these messages on their result (``.warnings``), so a caller can
    report them without catching warnings.
    """


def new_uid() -> str:
    """A fresh, globally unique DICOM UID."""
    return str(generate_uid(prefix=UID_PREFIX))


@dataclass(frozen=True)
class StudyContext:
    """Patient / study / frame-of-reference identity shared by the objects of one case.

    Writers copy these attributes into every object they create, so that a CT series, the
    RTSTRUCT on it, the RTPLAN and the RTDOSE all belong to one patient, one study and one
    Frame of Reference.
    """

    patient_name: str = "Anonymous^Patient"
    patient_id: str = "BRACHYCRYO-0001"
    patient_birth_date: str = ""
    patient_sex: str = "O"
    study_instance_uid: str = field(default_factory=new_uid)
    study_id: str = "1"
    study_date: str = field(default_factory=lambda: _dt.date.today().strftime("%Y%m%d"))
    study_time: str = "120000"
    study_description: str = ""
    accession_number: str = ""
    referring_physician_name: str = ""
    frame_of_reference_uid: str = field(default_factory=new_uid)
    patient_position: str = "HFS"

    @classmethod
    def from_dataset(cls, ds: Dataset) -> StudyContext:
        """The context of an existing object (e.g. the CT a new RTSTRUCT refers to).

        StudyInstanceUID (Type 1, PS3.3 C.7.2.1) is required: a new object written without
        it would start a study of its own, apart from the patient's images.
        """
        path = getattr(ds, "filename", None) or None
        if not str(get_value(ds, "StudyInstanceUID", path=path, default="")).strip():
            raise DicomInputError(
                "is missing or empty; the study of the object cannot be known",
                path=path if isinstance(path, str) else None,
                tag="StudyInstanceUID",
            )
        return cls(
            patient_name=str(ds.get("PatientName", "")),
            patient_id=str(ds.get("PatientID", "")),
            patient_birth_date=str(ds.get("PatientBirthDate", "")),
            patient_sex=str(ds.get("PatientSex", "")),
            study_instance_uid=str(ds.StudyInstanceUID),
            study_id=str(ds.get("StudyID", "")),
            study_date=str(ds.get("StudyDate", "")),
            study_time=str(ds.get("StudyTime", "")),
            study_description=str(ds.get("StudyDescription", "")),
            accession_number=str(ds.get("AccessionNumber", "")),
            referring_physician_name=str(ds.get("ReferringPhysicianName", "")),
            frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")) or new_uid(),
            patient_position=str(ds.get("PatientPosition", "")) or "HFS",
        )


def new_dataset(
    sop_class_uid: str,
    modality: str,
    context: StudyContext,
    *,
    series_instance_uid: str | None = None,
    series_number: int = 1,
    series_description: str = "",
    instance_number: int = 1,
    content_datetime: _dt.datetime | None = None,
) -> Dataset:
    """A new dataset with file meta, SOP common, patient, general study/series/equipment.

    Attributes set here are those every RT object and CT image needs (PS3.3 C.7.1.1,
    C.7.2.1, C.7.3.1, C.7.5.1, C.12.1).
    """
    now = content_datetime or _dt.datetime.now()
    sop_instance_uid = new_uid()
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = UID(sop_class_uid)
    meta.MediaStorageSOPInstanceUID = UID(sop_instance_uid)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = f"BRACHYCRYO_{__version__}"[:16]

    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    ds.InstanceCreationDate = now.strftime("%Y%m%d")
    ds.InstanceCreationTime = now.strftime("%H%M%S")
    ds.Modality = modality
    # Patient (C.7.1.1)
    ds.PatientName = context.patient_name
    ds.PatientID = context.patient_id
    ds.PatientBirthDate = context.patient_birth_date
    ds.PatientSex = context.patient_sex
    # General Study (C.7.2.1)
    ds.StudyInstanceUID = context.study_instance_uid
    ds.StudyDate = context.study_date
    ds.StudyTime = context.study_time
    ds.StudyID = context.study_id
    ds.AccessionNumber = context.accession_number
    ds.ReferringPhysicianName = context.referring_physician_name
    if context.study_description:
        ds.StudyDescription = context.study_description
    # General / RT Series (C.7.3.1, C.8.8.1)
    ds.SeriesInstanceUID = series_instance_uid or new_uid()
    ds.SeriesNumber = series_number
    if series_description:
        ds.SeriesDescription = series_description
    ds.InstanceNumber = instance_number
    # General Equipment (C.7.5.1)
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "brachycryo"
    ds.SoftwareVersions = __version__
    return ds


def format_ds(value: float) -> str:
    """``value`` as a Decimal String of at most 16 characters, with as many digits as fit.

    (pydicom's ``format_number_as_ds`` can return 17 characters when rounding carries,
    e.g. -9.999999999999996 -> "-10.0000000000000".)
    """
    v = float(value)
    if not np.isfinite(v):
        raise ValueError(f"a DICOM DS value must be finite, got {v}")
    for digits in range(17, 0, -1):
        text = f"{v:.{digits}g}"
        if len(text) <= 16 and np.isfinite(float(text)):
            return text
    raise ValueError(f"{v} cannot be written as a DS of 16 characters")


def save_dataset(ds: Dataset, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write ``ds`` as a DICOM Part 10 file, atomically, refusing to overwrite by default."""
    with atomic_path(path, overwrite=overwrite) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return Path(path)


#: Elements left raw by :func:`_decode_elements` (bulk data parsed by their own readers).
_BULK_TAGS = frozenset({0x30060050, 0x7FE00010})  # ContourData, PixelData


def _decode_elements(ds: Dataset) -> None:
    """Decode every element now (pydicom decodes lazily), so that corrupt values (an
    unknown VR, a bad length, a non-numeric IS) fail inside the reader's error handling
    with the file named, not at some later attribute access; bulk data is left raw."""
    for tag in list(ds.keys()):
        if int(tag) in _BULK_TAGS:
            continue
        elem = ds[tag]
        if elem.VR == "SQ":
            for item in elem.value or ():
                _decode_elements(item)


def read_dataset(
    path: str | os.PathLike,
    *,
    modality: str | Sequence[str] | None = None,
    stop_before_pixels: bool = False,
) -> Dataset:
    """Read a DICOM file, raising :class:`DicomInputError` (naming the file) on any problem.

    ``modality`` (one or several) is checked against the Modality tag.  The file is opened
    read-only and never modified.
    """
    p = Path(path)
    if not p.is_file():
        raise DicomInputError("no such file", path=p)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = pydicom.dcmread(p, stop_before_pixels=stop_before_pixels, force=False)
        _check_not_truncated(ds, p, caught)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # invalid values are the readers' to report
            _decode_elements(ds)
    except DicomInputError:
        raise
    except pydicom.errors.InvalidDicomError as exc:
        raise DicomInputError(f"not a DICOM Part 10 file ({exc})", path=p) from exc
    except Exception as exc:  # truncated file, corrupt element lengths, bad encoding
        raise DicomInputError(
            f"cannot be parsed as DICOM ({exc.__class__.__name__}: {exc})", path=p
        ) from exc
    if modality is not None:
        wanted = (modality,) if isinstance(modality, str) else tuple(modality)
        found = str(get_value(ds, "Modality", path=p, default=""))
        if found not in wanted:
            raise DicomInputError(
                f"modality is {found or 'missing'!r}, expected {' or '.join(wanted)}",
                path=p,
                tag="Modality",
            )
    return ds


def _check_not_truncated(ds: Dataset, path: Path, caught: list) -> None:
    """Raise if pydicom hit the end of the file inside an element (it only warns).

    pydicom keeps the bytes it could read of a value cut short by the end of the file, so
    a truncated file otherwise reads "successfully" with a shortened last element.
    """
    for w in caught:
        text = str(w.message)
        if "end of file" in text.lower():
            raise DicomInputError(f"file is truncated ({text})", path=path)
    for tag in ds._dict:  # raw (not yet decoded) elements keep their declared length
        raw = ds._dict[tag]
        length = getattr(raw, "length", None)
        value = getattr(raw, "value", None)
        if (
            isinstance(length, int)
            and length != 0xFFFFFFFF
            and isinstance(value, bytes)
            and len(value) < length
        ):
            raise DicomInputError(
                f"file is truncated: element {tag} declares {length} bytes, "
                f"only {len(value)} remain",
                path=path,
            )
    # warnings pydicom raised for other reasons are passed on unchanged
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)


_MISSING = object()


def get_value(ds: Dataset, keyword: str, *, path: Any = None, default: Any = _MISSING) -> Any:
    """``ds.<keyword>``, decoding lazily, with a :class:`DicomInputError` naming the tag.

    pydicom decodes values on first access, so a corrupt element surfaces here rather than
    at read time: this turns that into an error naming the file and the tag.
    """
    try:
        if keyword in ds:
            value = ds[keyword].value
            if value is None or (isinstance(value, str | bytes) and value == ""):
                if default is not _MISSING:
                    return default
                raise DicomInputError("is present but empty", path=path, tag=keyword)
            return value
    except DicomInputError:
        raise
    except Exception as exc:
        raise DicomInputError(
            f"cannot be decoded ({exc.__class__.__name__}: {exc})", path=path, tag=keyword
        ) from exc
    if default is not _MISSING:
        return default
    raise DicomInputError("is missing", path=path, tag=keyword)


def get_int(ds: Dataset, keyword: str, *, path: Any = None, default: Any = _MISSING) -> Any:
    """An integer value (IS, US, UL, ...), with a :class:`DicomInputError` naming the tag when
    it is not one integer (a wrong VR, several values, a sequence, text)."""
    value = get_value(ds, keyword, path=path, default=default)
    if value is default and default is not _MISSING:
        return value
    if isinstance(value, bool) or not isinstance(value, int | float | str | bytes):
        raise DicomInputError(f"is not an integer: {str(value)[:40]!r}", path=path, tag=keyword)
    try:
        number = float(value)
        if not (math.isfinite(number) and number == int(number)):
            raise ValueError(value)
        return int(number)
    except (TypeError, ValueError, OverflowError) as exc:
        raise DicomInputError(
            f"is not an integer: {str(value)[:40]!r}", path=path, tag=keyword
        ) from exc


def get_sequence(
    ds: Dataset, keyword: str, *, path: Any = None, required: bool = False
) -> list[Dataset]:
    """The items of a sequence element (``[]`` when absent or empty, unless ``required``).

    An element of that name that is not a sequence of items (a wrong VR: text, a number,
    raw bytes) is a :class:`DicomInputError` naming the tag, never an ``AttributeError``
    deep in a reader.
    """
    value = get_value(ds, keyword, path=path, default=None)
    if value is None:
        items: list = []
    elif isinstance(value, Sequence) and not isinstance(value, str | bytes):
        items = list(value)
    else:
        items = [value]
    if not all(isinstance(item, Dataset) for item in items):
        vr = ds[keyword].VR if keyword in ds else "?"
        raise DicomInputError(
            f"is not a sequence of items (VR {vr}, value {str(value)[:40]!r})",
            path=path,
            tag=keyword,
        )
    if required and not items:
        raise DicomInputError("is missing or empty", path=path, tag=keyword)
    return items


def get_floats(
    ds: Dataset, keyword: str, n: int | None = None, *, path: Any = None, default: Any = _MISSING
) -> np.ndarray:
    """A numeric (multi-)value as a float64 array, checked for count and finiteness."""
    value = get_value(ds, keyword, path=path, default=default)
    if value is default and default is not _MISSING:
        return value
    try:
        if isinstance(value, str | bytes | int | float) or not hasattr(value, "__len__"):
            values = [value]
        else:
            values = list(value)
        arr = np.asarray([float(v) for v in values], dtype=float)
    except (TypeError, ValueError) as exc:
        raise DicomInputError(f"is not numeric: {value!r}", path=path, tag=keyword) from exc
    if n is not None and arr.size != n:
        raise DicomInputError(f"must have {n} values, has {arr.size}", path=path, tag=keyword)
    if not np.all(np.isfinite(arr)):
        raise DicomInputError(f"contains NaN or inf: {arr.tolist()}", path=path, tag=keyword)
    return arr
