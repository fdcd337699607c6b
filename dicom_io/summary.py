"""What a folder of DICOM files holds: series, RT objects, ROIs with volumes, plan summary.

:func:`summarise_folder` returns plain data (JSON-serialisable) for ``brachycryo info``.
ROI volumes are computed from the contours (even-odd area x slab thickness, see
:mod:`brachycryo.dicom_io.rasterize`), using the referenced CT's slice spacing when that CT is
present.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from brachycryo.core.errors import BrachyCryoError
from brachycryo.dicom_io.ct_series import load_ct_series
from brachycryo.dicom_io.plan_model import suggest_for_plan
from brachycryo.dicom_io.rasterize import roi_volume_cc
from brachycryo.dicom_io.rtdose import read_rtdose
from brachycryo.dicom_io.rtplan import BrachyPlan, read_rtplan
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.dicom_io.scan import scan_folder


def _ct_summary(folder: Path, uid: str) -> dict[str, Any]:
    try:
        ct = load_ct_series(folder, series_uid=uid)
    except BrachyCryoError as exc:
        return {"series_instance_uid": uid, "error": str(exc)}
    g = ct.grid
    return {
        "series_instance_uid": uid,
        "description": ct.series_description,
        "n_slices": g.shape[0],
        "rows_columns": [g.shape[1], g.shape[2]],
        "spacing_mm": list(g.spacing_mm),
        "origin_mm": list(g.origin_mm),
        "direction": list(g.direction),
        "frame_of_reference_uid": ct.frame_of_reference_uid,
        "patient_position": ct.context.patient_position,
        "hu_range": [float(np.min(ct.hu)), float(np.max(ct.hu))],
    }


def _rtstruct_summary(path: Path, thickness_by_series: dict[str, float]) -> dict[str, Any]:
    ss = read_rtstruct(path)
    t = thickness_by_series.get(ss.referenced_series_uid or "")
    rois = []
    for roi in ss.rois:
        entry: dict[str, Any] = {
            "number": roi.number,
            "name": roi.name,
            "type": roi.interpreted_type,
            "n_contours": len(roi.contours),
        }
        if roi.is_empty:
            entry["volume_cc"] = None
            entry["note"] = "empty"
        elif roi.is_point:
            entry["volume_cc"] = None
            entry["points_mm"] = roi.points_mm.round(2).tolist()
        else:
            try:
                entry["volume_cc"] = round(roi_volume_cc(roi, slice_thickness_mm=t), 3)
            except BrachyCryoError as exc:
                entry["volume_cc"] = None
                entry["note"] = str(exc)
        rois.append(entry)
    return {
        "path": str(path),
        "label": ss.label,
        "frame_of_reference_uid": ss.frame_of_reference_uid,
        "referenced_series_uid": ss.referenced_series_uid,
        "rois": rois,
        "warnings": list(ss.warnings),
    }


def summarise_folder(folder: str | os.PathLike) -> dict[str, Any]:
    """A JSON-ready description of every series and RT object below ``folder``."""
    root = Path(folder)
    index = scan_folder(root)
    out: dict[str, Any] = {
        "folder": str(root),
        "patients": sorted({f.patient_id for f in index.files}),
        "ct_series": [],
        "rtstruct": [],
        "rtplan": [],
        "rtdose": [],
        "other": [],
        "skipped": [{"path": str(p), "reason": why} for p, why in index.skipped],
    }
    thickness: dict[str, float] = {}
    for uid in index.series("CT"):
        summary = _ct_summary(root, uid)
        out["ct_series"].append(summary)
        if "spacing_mm" in summary:
            thickness[uid] = summary["spacing_mm"][2]
    for f in index.files:
        try:
            if f.modality == "RTSTRUCT":
                out["rtstruct"].append(_rtstruct_summary(f.path, thickness))
            elif f.modality == "RTPLAN":
                out["rtplan"].append(_plan_summary(f.path))
            elif f.modality == "RTDOSE":
                out["rtdose"].append(_dose_summary(f.path))
            elif f.modality != "CT":
                out["other"].append({"path": str(f.path), "modality": f.modality})
        except BrachyCryoError as exc:
            out[
                f.modality.lower() if f.modality in ("RTSTRUCT", "RTPLAN", "RTDOSE") else "other"
            ].append({"path": str(f.path), "error": str(exc)})
    return out


def _plan_summary(path: Path) -> dict[str, Any]:
    with warnings.catch_warnings():  # the reader's warnings are kept in plan.warnings
        warnings.simplefilter("ignore")
        plan = read_rtplan(path)
    if plan.is_afterloader:
        return _afterloader_summary(path, plan)
    sk = plan.sk_u
    out: dict[str, Any] = {
        "path": str(path),
        "label": plan.label,
        "technique": plan.technique,
        "type": plan.treatment_type,
        "n_sources": plan.n_seeds,
        "n_channels": len({int(c) for c in plan.channel_numbers}),
        "isotopes": sorted({src.isotope for src in plan.sources}),
        "models": sorted({src.model for src in plan.sources if src.model}),
        "sk_u_per_source": sorted({round(float(v), 4) for v in sk}) if sk.size else [],
        "total_sk_u": round(float(sk.sum()), 4) if sk.size else 0.0,
        "frame_of_reference_uid": plan.frame_of_reference_uid,
    }
    if not out["models"]:  # no SourceModelID: what `dose --model auto` would say
        hint = suggest_for_plan(plan)
        out["suggested_model"] = hint.best or f"ambiguous: {', '.join(hint.candidates[:6])}"
        out["suggestion_basis"] = hint.reason
    if plan.prescription_dose_gy is not None:
        out["prescription_gy"] = plan.prescription_dose_gy
    if plan.warnings:
        out["warnings"] = list(plan.warnings)
    return out


def _afterloader_summary(path: Path, plan: BrachyPlan) -> dict[str, Any]:
    """An HDR/MDR/PDR plan: one stepping source per Source Sequence item, its dwell positions
    and times — never the dwell positions as seeds nor a sum of S_K over them."""
    times = plan.treatment_times_s
    timed = bool(np.any(np.isfinite(times)))
    out: dict[str, Any] = {
        "path": str(path),
        "label": plan.label,
        "plan": f"{plan.treatment_type} afterloader (not a seed implant)",
        "technique": plan.technique,
        "sources": [
            f"#{src.number} {src.isotope or '?'} {src.model or src.manufacturer or ''} "
            f"S_K {src.sk_u:g} U".replace("  ", " ")
            for src in plan.sources
        ],
        "n_channels": len({int(c) for c in plan.channel_numbers}),
        "n_dwell_positions": plan.n_seeds,
        "total_dwell_time_s": round(float(np.nansum(times)), 3) if timed else None,
        "total_reference_air_kerma_ugy_at_1m": plan.total_reference_air_kerma,
        "frame_of_reference_uid": plan.frame_of_reference_uid,
    }
    pulses = {c.number_of_pulses for c in plan.channels if c.number_of_pulses}
    if pulses:
        out["pulses"] = sorted(pulses)
    if plan.prescription_dose_gy is not None:
        out["prescription_gy"] = plan.prescription_dose_gy
    if plan.warnings:
        out["warnings"] = list(plan.warnings)
    return out


def _dose_summary(path: Path) -> dict[str, Any]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dose = read_rtdose(path)
    return {
        "path": str(path),
        "units": dose.units,
        "dose_type": dose.dose_type,
        "summation": dose.summation_type,
        "shape_kji": list(dose.grid.shape),
        "spacing_mm": list(dose.grid.spacing_mm),
        "max": round(float(dose.values.max()), 4),
        "referenced_plan_uid": dose.referenced_plan_uid,
    }
