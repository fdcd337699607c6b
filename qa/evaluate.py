"""Plan evaluation from files: RTDOSE + RTSTRUCT -> DVHs -> metrics (the ``brachycryo dvh`` API).

:func:`evaluate_plan` works on objects already in memory (a dose on its Grid and ROIs);
:func:`evaluate_files` reads the two DICOM files, checks that they share a Frame of
Reference and calls it.  Both return a :class:`PlanEvaluation` whose :meth:`to_json`
is the layout of ``brachycryo dvh --json``::

    {"prescription_gy": 145.0,
     "structures": {"PTV": {"volume_cc": .., "dmin_gy": .., "dmean_gy": .., "dmax_gy": ..,
                            "d90_gy": .., "d98_gy": .., "d100_gy": .., "d50_gy": ..,
                            "d2cc_gy": .., "d0.1cc_gy": .., "v100_pct": .., "v150_pct": ..,
                            "v200_pct": .., "volume_outside_dose_cc": ..}, ...},
     "indices": {"target": "PTV", "ci": .., "ei": .., "hi": .., ...},   # with a target
     "settings": {...}, "files": {...}, "warnings": [...]}
"""

from __future__ import annotations

import csv
import io
import json
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brachycryo.core.atomic import write_text_atomic
from brachycryo.core.errors import FrameOfReferenceError, StructureError
from brachycryo.core.grid import Grid
from brachycryo.core.memory import MemoryBudgetError
from brachycryo.core.progress import ProgressCallback, report
from brachycryo.dicom_io.rtdose import DoseVolume, read_rtdose
from brachycryo.dicom_io.rtstruct import ROI, StructureSet, check_unique_names, read_rtstruct
from brachycryo.qa.dvh import DVH, dvh_from_roi
from brachycryo.qa.metrics import (
    PlanIndices,
    isodose_volume_cc,
    plan_indices,
    structure_metrics,
)


@dataclass
class PlanEvaluation:
    """DVHs and metrics of a plan's structures (in ROI order)."""

    prescription_gy: float | None
    dvhs: dict[str, DVH]
    metrics: dict[str, dict[str, float | None]]
    indices: PlanIndices | None = None
    settings: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        out: dict = {
            "prescription_gy": self.prescription_gy,
            "structures": self.metrics,
        }
        if self.indices is not None:
            out["indices"] = self.indices
        out["settings"] = self.settings
        if self.files:
            out["files"] = self.files
        out["warnings"] = list(self.warnings)
        return out

    def to_csv(self) -> str:
        """One row per structure: ``structure`` then every metric key."""
        keys: list[str] = []
        for m in self.metrics.values():
            keys.extend(k for k in m if k not in keys)
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(["structure", *keys])
        for name, m in self.metrics.items():
            w.writerow([name, *("" if m.get(k) is None else f"{m[k]:.6g}" for k in keys)])
        return buf.getvalue()

    def write_json(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        text = json.dumps(self.to_json(), indent=2, allow_nan=False)
        return write_text_atomic(path, text + "\n", overwrite=overwrite)

    def write_csv(self, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
        return write_text_atomic(path, self.to_csv(), overwrite=overwrite)


def volume_rois(
    structures: StructureSet, names: Sequence[str] | None
) -> tuple[list[ROI], list[str]]:
    """The ROIs to evaluate and notes on those skipped.

    ``names`` given: those ROIs, each required to have closed contours (StructureError
    otherwise); none given: every ROI with closed contours, the others noted as skipped.
    """
    notes: list[str] = []
    if names:
        rois = [structures.roi(n) for n in names]  # StructureError: missing or shared name
        for r in rois:
            if not r.closed_contours:
                raise StructureError("has no closed contours; it has no volume", roi=r.name)
        return rois, notes
    rois = []
    for r in structures.rois:
        if r.closed_contours:
            rois.append(r)
        else:
            notes.append(f"ROI {r.name!r} skipped: no closed contours (points or empty)")
    check_unique_names(rois, structures.path)
    return rois, notes


def evaluate_plan(
    dose_gy: np.ndarray,
    dose_grid: Grid,
    rois: Sequence[ROI],
    *,
    prescription_gy: float | None = None,
    target: str | None = None,
    supersample: int | None = None,
    end_caps: str = "full",
    slice_thickness_mm: float | None = None,
    progress: ProgressCallback | None = None,
) -> PlanEvaluation:
    """DVH and metrics of each ROI; CI / EI / HI of ``target`` when a prescription is given.

    V_ref of the indices is the volume of the whole dose grid at or above the prescription
    (:func:`brachycryo.qa.metrics.isodose_volume_cc`).
    """
    # the DVH arithmetic in float32 (7 significant digits; halves memory traffic)
    dose_gy = np.asarray(dose_gy, dtype=np.float32)
    dvhs: dict[str, DVH] = {}
    metrics: dict[str, dict] = {}
    notes: list[str] = []
    for n, roi in enumerate(rois):
        report(progress, n / max(1, len(rois)), roi.name)
        dvh = dvh_from_roi(
            roi,
            dose_gy,
            dose_grid,
            supersample=supersample,
            end_caps=end_caps,
            slice_thickness_mm=slice_thickness_mm,
        )
        dvhs[roi.name] = dvh
        metrics[roi.name] = structure_metrics(dvh, prescription_gy=prescription_gy)
        notes.extend(dvh.notes)
    indices = None
    if target is not None:
        if target not in dvhs:
            raise StructureError(f"target is not among the evaluated ROIs {list(dvhs)}", roi=target)
        if prescription_gy is None:
            notes.append("CI / EI / HI need a prescription dose; not computed")
        else:
            v_ref = isodose_volume_cc(dose_gy, dose_grid, prescription_gy)
            indices = plan_indices(dvhs[target], v_ref, prescription_gy)
    report(progress, 1.0, "done")
    return PlanEvaluation(
        prescription_gy=None if prescription_gy is None else float(prescription_gy),
        dvhs=dvhs,
        metrics=metrics,
        indices=indices,
        settings={
            "supersample": "auto (4, or 2 for large boxes)" if supersample is None else supersample,
            "end_caps": end_caps,
            "slice_thickness_mm": slice_thickness_mm,
            "dose_grid_spacing_mm": list(dose_grid.spacing_mm),
        },
        warnings=notes,
    )


def check_frame_of_reference(dose: DoseVolume, structures: StructureSet) -> list[str]:
    """Raise :class:`FrameOfReferenceError` when dose and structures are in different frames."""
    d_for = dose.frame_of_reference_uid
    s_for = structures.frame_of_reference_uid
    notes = []
    if not d_for or not s_for:
        notes.append(
            "Frame of Reference UID missing in "
            + " and ".join(
                str(p) for p, u in ((dose.path, d_for), (structures.path, s_for)) if not u
            )
            + "; positions assumed to match"
        )
        return notes
    if d_for != s_for:
        raise FrameOfReferenceError(
            f"{dose.path} is in Frame of Reference {d_for}, {structures.path} in {s_for}: "
            "the dose and the structures were not made on the same patient coordinates"
        )
    for roi in structures.rois:
        if roi.frame_of_reference_uid and roi.frame_of_reference_uid != d_for:
            raise FrameOfReferenceError(
                f"{structures.path}: ROI {roi.name!r} is in Frame of Reference "
                f"{roi.frame_of_reference_uid}, {dose.path} in {d_for}"
            )
    return notes


def load_plan_files(
    rtdose: str | os.PathLike, rtstruct: str | os.PathLike
) -> tuple[DoseVolume, StructureSet, list[str]]:
    """Read an RTDOSE and an RTSTRUCT and check their Frames of Reference."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dose = read_rtdose(rtdose)
    structures = read_rtstruct(rtstruct)
    notes = [str(w.message) for w in caught]
    notes += check_frame_of_reference(dose, structures)
    return dose, structures, notes


def evaluate_files(
    rtdose: str | os.PathLike,
    rtstruct: str | os.PathLike,
    *,
    prescription_gy: float | None = None,
    roi_names: Sequence[str] | None = None,
    target: str | None = None,
    supersample: int | None = None,
    end_caps: str = "full",
    slice_thickness_mm: float | None = None,
    progress: ProgressCallback | None = None,
) -> PlanEvaluation:
    """:func:`evaluate_plan` on an RTDOSE file and an RTSTRUCT file (``roi_names``: all)."""
    dose, structures, notes = load_plan_files(rtdose, rtstruct)
    rois, skipped = volume_rois(structures, roi_names)
    try:
        ev = evaluate_plan(
            dose.dose_gy,
            dose.grid,
            rois,
            prescription_gy=prescription_gy,
            target=target,
            supersample=supersample,
            end_caps=end_caps,
            slice_thickness_mm=slice_thickness_mm,
            progress=progress,
        )
    except MemoryBudgetError as exc:  # the sizes come from these two files' geometry
        raise exc.naming(rtdose, rtstruct) from None
    ev.files = {"rtdose": str(rtdose), "rtstruct": str(rtstruct)}
    ev.warnings = notes + skipped + list(structures.warnings) + ev.warnings
    return ev


__all__ = [
    "PlanEvaluation",
    "check_frame_of_reference",
    "evaluate_files",
    "evaluate_plan",
    "load_plan_files",
]
