"""Index a folder of DICOM files by their UIDs (never by file names).

:func:`scan_folder` reads every file's header once (no pixel data), recursively, and
returns what it found; files that are not DICOM are listed in ``skipped`` with the reason.
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from brachycryo.core.errors import DicomInputError


@dataclass(frozen=True)
class DicomFileEntry:
    """What the header of one DICOM file says about its identity."""

    path: Path
    modality: str
    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str
    frame_of_reference_uid: str
    patient_id: str
    series_description: str = ""


@dataclass
class DicomIndex:
    """The DICOM content of a folder, grouped by series."""

    root: Path
    files: list[DicomFileEntry] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    #: DICOM files (with the DICM preamble) whose header is truncated or unusable:
    #: (path, modality if it could be read, reason)
    broken: list[tuple[Path, str, str]] = field(default_factory=list)

    def series(self, modality: str | None = None) -> dict[str, list[DicomFileEntry]]:
        """Files grouped by SeriesInstanceUID (optionally of one modality), in path order."""
        groups: dict[str, list[DicomFileEntry]] = defaultdict(list)
        for f in self.files:
            if modality is None or f.modality == modality:
                groups[f.series_instance_uid].append(f)
        return dict(groups)


def _entry(path: Path) -> DicomFileEntry:
    ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=None)

    def s(keyword: str) -> str:
        try:
            return str(ds.get(keyword, "") or "")
        except Exception:
            return ""

    return DicomFileEntry(
        path=path,
        modality=s("Modality"),
        sop_class_uid=s("SOPClassUID"),
        sop_instance_uid=s("SOPInstanceUID"),
        series_instance_uid=s("SeriesInstanceUID"),
        study_instance_uid=s("StudyInstanceUID"),
        frame_of_reference_uid=s("FrameOfReferenceUID"),
        patient_id=s("PatientID"),
        series_description=s("SeriesDescription"),
    )


def scan_folder(folder: str | os.PathLike) -> DicomIndex:
    """Read the header of every file below ``folder`` (recursively, sorted by path)."""
    root = Path(folder)
    if not root.exists():
        raise DicomInputError("folder does not exist", path=root)
    paths = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
    index = DicomIndex(root=root)
    for p in paths:
        try:
            entry = _entry(p)
        except pydicom.errors.InvalidDicomError:
            index.skipped.append((p, "not a DICOM file (no DICM preamble)"))
            continue
        except Exception as exc:  # truncated / corrupt header
            reason = f"unreadable DICOM header ({exc.__class__.__name__}: {exc})"
            index.broken.append((p, "", reason))
            continue
        missing = [
            kw
            for kw, v in (
                ("SOPInstanceUID", entry.sop_instance_uid),
                ("Modality", entry.modality),
                ("SeriesInstanceUID", entry.series_instance_uid),
            )
            if not v
        ]
        if missing:
            reason = f"incomplete DICOM header (no {', '.join(missing)}; truncated file?)"
            index.broken.append((p, entry.modality, reason))
        else:
            index.files.append(entry)
    return index
