"""What a folder of DICOM files holds: series, RT objects, ROIs with volumes, plan summary.

:func:`summarise_folder` returns plain data (JSON-serialisable) for ``brachycryo info``.
ROI volumes are computed from the contours (even-odd area x slab thickness, see
:mod:`dicom_io.rasterize`), using the referenced CT's slice spacing when that CT is present.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from brachycryo.errors import BrachyCryoError
from dicom_io.ct_series import load_ct_series
from dicom_io.rasterize import roi_volume_cc
from dicom_io.rtstruct import read_rtstruct
from dicom_io.scan import scan_folder


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
    from dicom_io.common import read_dataset

    ds = read_dataset(path, modality="RTPLAN", stop_before_pixels=True)
    return {
        "path": str(path),
        "label": str(ds.get("RTPlanLabel", "")),
        "technique": str(ds.get("BrachyTreatmentTechnique", "")),
        "type": str(ds.get("BrachyTreatmentType", "")),
    }


def _dose_summary(path: Path) -> dict[str, Any]:
    from dicom_io.common import read_dataset

    ds = read_dataset(path, modality="RTDOSE", stop_before_pixels=True)
    return {
        "path": str(path),
        "dose_units": str(ds.get("DoseUnits", "")),
        "dose_type": str(ds.get("DoseType", "")),
        "summation": str(ds.get("DoseSummationType", "")),
    }
