"""Find the units of work of a cohort: one per RTDOSE, linked to its RTPLAN and RTSTRUCT by UID.

:func:`discover_cohort` walks a folder (any layout; file and folder names are never
used), reads every file's header once (:func:`brachycryo.dicom_io.scan.scan_folder`, no pixel data)
and re-reads the few RT objects' references.  Patients are told apart by their PatientID.

Linking rules (each RTDOSE is one :class:`WorkUnit`; every choice is noted in the unit's
``warnings`` or, when no structure set can be used, its ``error``):

1. **Plan** - the RTPLAN named by the dose's Referenced RT Plan Sequence (PS3.3 C.8.8.3).
   A referenced plan that is not in the cohort is noted and the unit goes on without a
   plan (its rows are keyed by the dose's SOPInstanceUID).  Two plans of one patient, each
   with its dose, are two units; their rows differ in the ``plan`` column.
2. **Structure set** - the RTSTRUCT referenced by the dose itself (its Referenced
   Structure Set Sequence, C.8.8.3) or else by the plan (C.8.8.9), *if* it is in the
   dose's Frame of Reference.  A referenced structure set of another Frame of Reference is
   not used (the contours would be placed in the wrong coordinates): this is noted and
   rule 3 applies.
3. Without a usable reference, the patient's one RTSTRUCT in the dose's Frame of
   Reference.  Several in that frame and nothing to pick one: the unit fails ("ambiguous");
   none: the unit fails, naming the structure sets of other frames that were found.
4. Every other RTSTRUCT of the patient in another Frame of Reference is listed in the
   unit's warnings as "not used" (e.g. contours drawn on an unregistered MR).

Files that are not DICOM are counted as skipped; DICOM files whose header cannot be read
are listed in ``unreadable`` with the reason.  A second copy of an object (same
SOPInstanceUID) is ignored with a note.  RTPLANs without a dose are noted (nothing to
evaluate).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import pydicom

from brachycryo.dicom_io.scan import DicomFileEntry, scan_folder

_RT_MODALITIES = ("RTDOSE", "RTPLAN", "RTSTRUCT")
_REF_TAGS = (
    "SOPInstanceUID",
    "FrameOfReferenceUID",
    "ReferencedFrameOfReferenceSequence",
    "ReferencedRTPlanSequence",
    "ReferencedStructureSetSequence",
    "RTPlanLabel",
    "StructureSetLabel",
)


@dataclass(frozen=True)
class RtObject:
    """What the header of one RT object says about its identity and references."""

    path: str
    modality: str
    sop_instance_uid: str
    patient_id: str
    study_instance_uid: str
    frame_of_reference_uid: str
    referenced_plan_uid: str | None = None
    referenced_structure_set_uid: str | None = None
    label: str = ""


@dataclass(frozen=True)
class WorkUnit:
    """One RTDOSE to evaluate, with the plan and structure set it was matched to.

    ``plan`` is the RTPLAN's SOPInstanceUID, or the dose's when there is no plan (the
    ``plan`` column of the table).  ``error`` is set when discovery already knows the unit
    cannot be evaluated (no usable structure set).
    """

    patient: str
    study: str
    plan: str
    dose: str
    rtdose: str
    rtstruct: str | None
    rtplan: str | None
    structure_set: str | None
    frame_of_reference: str
    warnings: tuple[str, ...] = ()
    error: str | None = None

    @property
    def sort_key(self) -> tuple[str, str, str, str]:
        return (self.patient, self.study, self.plan, self.dose)

    def files(self) -> dict[str, str | None]:
        return {"rtdose": self.rtdose, "rtstruct": self.rtstruct, "rtplan": self.rtplan}


@dataclass
class CohortIndex:
    """The units of a cohort and what could not be used."""

    root: Path
    units: list[WorkUnit] = field(default_factory=list)
    #: DICOM files whose header is unreadable: (path, reason)
    unreadable: list[tuple[str, str]] = field(default_factory=list)
    #: files that are not DICOM (no DICM preamble)
    skipped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def patients(self) -> list[str]:
        return sorted({u.patient for u in self.units})


def _first_ref(ds, keyword: str) -> str | None:
    seq = ds.get(keyword, None) or []
    for item in seq:
        uid = str(item.get("ReferencedSOPInstanceUID", "") or "")
        if uid:
            return uid
    return None


def _rt_object(entry: DicomFileEntry) -> RtObject:
    ds = pydicom.dcmread(entry.path, stop_before_pixels=True, specific_tags=list(_REF_TAGS))
    for_uid = entry.frame_of_reference_uid
    if not for_uid:  # an RTSTRUCT's frame is in its Referenced Frame of Reference Sequence
        for item in ds.get("ReferencedFrameOfReferenceSequence", None) or []:
            for_uid = str(item.get("FrameOfReferenceUID", "") or "")
            if for_uid:
                break
    label = str(ds.get("RTPlanLabel", "") or ds.get("StructureSetLabel", "") or "")
    return RtObject(
        path=str(entry.path),
        modality=entry.modality,
        sop_instance_uid=entry.sop_instance_uid,
        patient_id=entry.patient_id,
        study_instance_uid=entry.study_instance_uid,
        frame_of_reference_uid=for_uid,
        referenced_plan_uid=_first_ref(ds, "ReferencedRTPlanSequence")
        if entry.modality == "RTDOSE"
        else None,
        referenced_structure_set_uid=_first_ref(ds, "ReferencedStructureSetSequence"),
        label=label,
    )


def _describe(obj: RtObject) -> str:
    return f"{obj.modality} {obj.path} (SOPInstanceUID {obj.sop_instance_uid})"


def _choose_structure_set(
    dose: RtObject,
    plan: RtObject | None,
    structs: list[RtObject],
    by_uid: dict[str, RtObject],
) -> tuple[RtObject | None, list[str], str | None]:
    """(structure set, warnings, error) for one dose; rules 2-4 of the module docstring."""
    notes: list[str] = []
    f = dose.frame_of_reference_uid
    chosen = None
    for ref_uid, via in (
        (dose.referenced_structure_set_uid, "the RTDOSE"),
        (plan.referenced_structure_set_uid if plan else None, "the RTPLAN"),
    ):
        if not ref_uid or chosen is not None:
            continue
        s = by_uid.get(ref_uid)
        if s is None or s.modality != "RTSTRUCT":
            notes.append(f"{via} references RTSTRUCT {ref_uid}, which is not in the cohort")
        elif f and s.frame_of_reference_uid and s.frame_of_reference_uid != f:
            notes.append(
                f"{via} references {_describe(s)}, which is in Frame of Reference "
                f"{s.frame_of_reference_uid}, not the dose's {f}: not used"
            )
        else:
            chosen = s
    if chosen is None:
        if f:
            same = [s for s in structs if s.frame_of_reference_uid == f]
        else:
            same = list(structs)
            notes.append("the RTDOSE has no FrameOfReferenceUID; structure sets matched by patient")
        if len(same) == 1:
            chosen = same[0]
        elif len(same) > 1:
            listed = "; ".join(s.path for s in same)
            return (
                None,
                notes,
                (
                    f"{len(same)} RTSTRUCTs in the dose's Frame of Reference and no RTPLAN / "
                    f"RTDOSE reference picks one: {listed}"
                ),
            )
        else:
            others = [s for s in structs if s.frame_of_reference_uid != f]
            detail = (
                "; RTSTRUCTs of this patient in other frames (not used): "
                + "; ".join(f"{s.path} (FoR {s.frame_of_reference_uid})" for s in others)
                if others
                else ""
            )
            return None, notes, f"no RTSTRUCT in the dose's Frame of Reference {f}{detail}"
    for s in structs:
        if s is chosen:
            continue
        if f and s.frame_of_reference_uid and s.frame_of_reference_uid != f:
            notes.append(
                f"{_describe(s)} not used: its Frame of Reference {s.frame_of_reference_uid} "
                f"is not the dose's {f}"
            )
    return chosen, notes, None


def discover_cohort(folder: str | os.PathLike) -> CohortIndex:
    """The work units of the cohort below ``folder`` (rules: module docstring)."""
    index = scan_folder(folder)
    out = CohortIndex(root=Path(folder))
    out.skipped = [str(p) for p, _ in index.skipped]
    out.unreadable = [(str(p), reason) for p, _, reason in index.broken]
    objects: list[RtObject] = []
    seen: dict[str, str] = {}
    for entry in index.files:
        if entry.modality not in _RT_MODALITIES:
            continue
        if entry.sop_instance_uid in seen:
            out.notes.append(
                f"{entry.path} is a second copy of SOPInstanceUID {entry.sop_instance_uid} "
                f"(first: {seen[entry.sop_instance_uid]}); ignored"
            )
            continue
        try:
            obj = _rt_object(entry)
        except Exception as exc:  # the header read once, but not its references
            out.unreadable.append(
                (str(entry.path), f"unreadable references ({exc.__class__.__name__}: {exc})")
            )
            continue
        seen[entry.sop_instance_uid] = str(entry.path)
        objects.append(obj)
    by_uid = {o.sop_instance_uid: o for o in objects}
    structs_of: dict[str, list[RtObject]] = defaultdict(list)
    for o in objects:
        if o.modality == "RTSTRUCT":
            structs_of[o.patient_id].append(o)
    used_plans: set[str] = set()
    for dose in (o for o in objects if o.modality == "RTDOSE"):
        notes: list[str] = []
        plan = None
        if dose.referenced_plan_uid:
            plan = by_uid.get(dose.referenced_plan_uid)
            if plan is None or plan.modality != "RTPLAN":
                notes.append(
                    f"the RTDOSE references RTPLAN {dose.referenced_plan_uid}, which is not in "
                    "the cohort; evaluated without a plan"
                )
                plan = None
            elif plan.patient_id != dose.patient_id:
                notes.append(
                    f"the referenced {_describe(plan)} belongs to patient {plan.patient_id!r}, "
                    f"not {dose.patient_id!r}: not used"
                )
                plan = None
            else:
                used_plans.add(plan.sop_instance_uid)
                if (
                    plan.frame_of_reference_uid
                    and dose.frame_of_reference_uid
                    and plan.frame_of_reference_uid != dose.frame_of_reference_uid
                ):
                    notes.append(
                        f"RTPLAN Frame of Reference {plan.frame_of_reference_uid} differs from "
                        f"the dose's {dose.frame_of_reference_uid}"
                    )
        else:
            notes.append("the RTDOSE references no RTPLAN")
        struct, more, error = _choose_structure_set(
            dose, plan, structs_of.get(dose.patient_id, []), by_uid
        )
        notes += more
        out.units.append(
            WorkUnit(
                patient=dose.patient_id,
                study=dose.study_instance_uid,
                plan=plan.sop_instance_uid if plan else dose.sop_instance_uid,
                dose=dose.sop_instance_uid,
                rtdose=dose.path,
                rtstruct=struct.path if struct else None,
                rtplan=plan.path if plan else None,
                structure_set=struct.sop_instance_uid if struct else None,
                frame_of_reference=dose.frame_of_reference_uid,
                warnings=tuple(notes),
                error=error,
            )
        )
    for o in objects:
        if o.modality == "RTPLAN" and o.sop_instance_uid not in used_plans:
            out.notes.append(f"{_describe(o)} has no RTDOSE in the cohort: nothing to evaluate")
    out.units.sort(key=lambda u: u.sort_key)
    return out


__all__ = ["CohortIndex", "RtObject", "WorkUnit", "discover_cohort"]
