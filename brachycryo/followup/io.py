"""Reading a plan folder and a follow-up CT, and the follow-up results as JSON and CSV."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from brachycryo.core.errors import ConfigError, DicomInputError
from brachycryo.dicom_io.ct_series import load_ct_series
from brachycryo.dicom_io.rtdose import read_rtdose
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.followup import margins
from brachycryo.followup.analysis import (
    ZONES,
    FollowupData,
    FollowupResult,
    LesionFollowup,
    PlanData,
)

#: File names inside a ``brachycryo plan`` / ``demo`` folder (planning/outputs.py).
ZONES_FILE = "RS.zones.dcm"
DOSE_FILE = "RD.plan.dcm"
METRICS_FILE = "metrics.json"
CASE_CT = Path("case") / "CT"


def _case_rtstruct(plan_dir: Path) -> Path:
    found = sorted((plan_dir / "case").glob("RS*.dcm"))
    if len(found) != 1:
        raise ConfigError(
            f"{plan_dir / 'case'} holds {len(found)} RS*.dcm files; give the planning "
            "structure set with --plan-rtstruct",
            key="--plan-rtstruct",
        )
    return found[0]


def _prescription_gy(plan_dir: Path) -> float | None:
    path = plan_dir / METRICS_FILE
    if not path.is_file():
        return None
    try:
        value = json.loads(path.read_text()).get("prescription_gy")
    except (OSError, ValueError, AttributeError) as exc:
        raise ConfigError(f"{path} is not a metrics JSON object: {exc}", key="metrics") from None
    return float(value) if isinstance(value, int | float) else None


def read_plan_folder(
    plan_dir: str | os.PathLike,
    *,
    ct_dir: str | os.PathLike | None = None,
    rtstruct: str | os.PathLike | None = None,
) -> PlanData:
    """The planning CT (``case/CT`` or ``ct_dir``), its structure set (``case/RS*.dcm`` or
    ``rtstruct``), the zones ``RS.zones.dcm`` and the dose ``RD.plan.dcm`` (optional)."""
    d = Path(plan_dir)
    if not d.is_dir():
        raise ConfigError(f"plan folder {d} does not exist", key="--plan")
    zones = d / ZONES_FILE
    if not zones.is_file():
        raise DicomInputError("the plan folder has no zones file", path=zones)
    dose_path = d / DOSE_FILE
    return PlanData(
        ct=load_ct_series(ct_dir if ct_dir is not None else d / CASE_CT),
        structures=read_rtstruct(rtstruct if rtstruct is not None else _case_rtstruct(d)),
        zones=read_rtstruct(zones),
        dose=read_rtdose(dose_path) if dose_path.is_file() else None,
        prescription_gy=_prescription_gy(d),
    )


def read_followup(ct_dir: str | os.PathLike, rtstruct: str | os.PathLike) -> FollowupData:
    return FollowupData(load_ct_series(ct_dir), read_rtstruct(rtstruct))


# ---------------------------------------------------------------------------- JSON / CSV
def _num(v: float | None) -> float | None:
    """JSON has no NaN: a number that is not finite is written as null."""
    return None if v is None or not math.isfinite(v) else float(v)


def _split_json(split) -> dict[str, Any] | None:
    if split is None:
        return None
    fr = split.fractions()
    return {
        **{f"{z}_cc": _num(v) for z, v in zip(ZONES, (split.core_cc, split.margin_cc,
                                                       split.outside_cc))},
        **{f"{z}_fraction": _num(v) for z, v in zip(ZONES, fr)},
    }  # fmt: skip


def registration_uncertainty(checks: dict[str, Any] | None) -> dict[str, Any] | None:
    """The registration's uncertainty to print next to a margin: the landmark TRE when
    landmarks were given, else the inverse consistency (mean / max mm), else None."""
    if not checks:
        return None
    tre = checks.get("landmark_tre")
    if tre is not None:
        return {"kind": "landmark TRE", "mean_mm": tre["mean_mm"], "max_mm": tre["max_mm"]}
    if checks.get("inverse_consistency_mean_mm") is not None:
        return {"kind": "inverse consistency", "mean_mm": checks["inverse_consistency_mean_mm"],
                "max_mm": checks["inverse_consistency_max_mm"]}  # fmt: skip
    return None


def _diameters_json(d) -> dict[str, Any] | None:
    if d is None:
        return None
    return {"longest_mm": _num(d.longest_mm), "perpendicular_mm": _num(d.perpendicular_mm),
            "plane_z_mm": d.z_mm}  # fmt: skip


def _shells_json(cov) -> dict[str, float | None] | None:
    return None if cov is None else {f"{w:g}mm": _num(v) for w, v in cov.items()}


def _ablation_json(a, uncertainty: dict[str, Any] | None) -> dict[str, Any]:
    edges, counts = margins.margin_histogram(a.surface_margins_mm)
    mam = _num(a.mam_mm)
    borderline = None
    if mam is not None and uncertainty is not None:
        borderline = abs(mam - a.mam_threshold_mm) < uncertainty["mean_mm"]
    return {
        "volume_cc": _num(a.ablation_volume_cc),
        "minimal_ablative_margin_mm": mam,
        "mam_threshold_mm": a.mam_threshold_mm,
        "technical_success": a.technical_success,
        "verdict": "success" if a.technical_success else "failure",
        "registration_uncertainty": uncertainty,
        # |MAM - threshold| under the registration's mean uncertainty: the verdict could flip
        "verdict_within_registration_uncertainty": borderline,
        "shell_covered_fraction": _shells_json(a.shell_coverage),
        "shell_dose_covered_fraction": _shells_json(a.shell_dose_coverage),
        "shell_ablated_or_dose_covered_fraction": _shells_json(a.shell_either_coverage),
        "core_covered_fraction": _num(a.core_covered),
        "margin_covered_fraction": _num(a.margin_covered),
        "surface_margin_histogram": {
            "what": "signed distance (mm) from each planning-GTV surface voxel to the "
            "ablation-zone surface, + inside the zone",
            "bin_mm": margins.HISTOGRAM_BIN_MM,
            "bin_edges_mm": [float(e) for e in edges],
            "counts": [int(c) for c in counts],
        },
    }


def lesion_json(
    les: LesionFollowup,
    prescription_gy: float | None,
    uncertainty: dict[str, Any] | None = None,
) -> dict[str, Any]:
    t = les.tumour
    out: dict[str, Any] = {
        "lesion": les.rois.lesion,
        "rois": {"tumour": les.rois.tumour, "ablation": les.rois.ablation,
                 "recurrence": les.rois.recurrence},
        "tumour": {
            "plan_volume_cc": _num(t.plan_volume_cc),
            "followup_volume_cc": _num(t.followup_volume_cc),
            "volume_change_pct": _num(t.volume_change_pct),
            "plan_longest_axial_diameter_mm": _num(t.plan_diameter_mm),
            "followup_longest_axial_diameter_mm": _num(t.followup_diameter_mm),
            "diameter_change_pct": _num(t.diameter_change_pct),
            "plan_diameters": _diameters_json(t.plan_diameters),
            "followup_diameters": _diameters_json(t.followup_diameters),
            "lesion_recist_class": t.lesion_recist_class,
            "enhancing_volume_cc": _num(t.enhancing_volume_cc),
            "residual_by_zone": _split_json(t.residual),
        },
        "analysis_grid_spacing_mm": list(les.masks.grid.spacing_mm),
    }  # fmt: skip
    if les.ablation is not None:
        out["ablation"] = _ablation_json(les.ablation, uncertainty)
    if les.recurrence is not None:
        r = les.recurrence
        pct = None
        if r.d90_gy is not None and prescription_gy:
            pct = 100.0 * r.d90_gy / prescription_gy
        out["recurrence"] = {
            "volume_cc": _num(r.volume_cc),
            "by_zone": _split_json(r.split),
            "origin_zone": r.origin_zone,
            "closest_to_gtv_zone": r.closest_zone,
            "centroid_mm": list(r.centroid_mm),
            "centroid_dose_gy": _num(r.centroid_dose_gy),
            "d90_gy": _num(r.d90_gy),
            "d90_pct_of_prescription": _num(pct),
            "centroid_in_lethal_isotherm": r.centroid_in_lethal_isotherm,
        }
    return out


def followup_json(result: FollowupResult, prescription_gy: float | None) -> dict[str, Any]:
    reg = result.registration.to_json()
    unc = registration_uncertainty(reg["checks"])
    resp = result.recist_response.to_json()
    resp["sum_longest_diameters_followup_mm"] = _num(resp["sum_longest_diameters_followup_mm"])
    resp["sum_change_pct"] = _num(resp["sum_change_pct"])
    return {
        "registration": reg,
        "prescription_gy": prescription_gy,
        "notes": list(result.notes),
        "recist": resp,
        "lesions": [lesion_json(les, prescription_gy, unc) for les in result.lesions],
    }


CSV_COLUMNS = (
    "lesion", "plan_volume_cc", "followup_volume_cc", "volume_change_pct",
    "plan_diameter_mm", "followup_diameter_mm", "diameter_change_pct",
    "plan_perpendicular_mm", "followup_perpendicular_mm", "lesion_recist_class",
    "enhancing_volume_cc", "recist_sum_plan_mm", "recist_sum_followup_mm", "recist_class",
    "residual_core_cc", "residual_margin_cc", "residual_outside_cc",
    "mam_mm", "technical_success", "registration_uncertainty_mean_mm",
    "shell3_covered", "shell5_covered", "shell10_covered",
    "shell3_dose_covered", "shell5_dose_covered", "shell10_dose_covered",
    "shell3_either_covered", "shell5_either_covered", "shell10_either_covered",
    "core_covered", "margin_covered", "recurrence_cc", "recurrence_origin_zone",
    "recurrence_closest_zone", "recurrence_core_fraction", "recurrence_margin_fraction",
    "recurrence_outside_fraction", "recurrence_d90_gy",
)  # fmt: skip


def _cell(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def csv_row(doc: dict[str, Any], recist_doc: dict[str, Any] | None = None) -> list[str]:
    """One lesion's row; ``recist_doc`` (the target lesions' sums and class) repeats on
    every row."""
    t = doc["tumour"]
    pd_, fd = t.get("plan_diameters") or {}, t.get("followup_diameters") or {}
    rc = recist_doc or {}
    res = t["residual_by_zone"] or {}
    ab = doc.get("ablation") or {}
    shells = ab.get("shell_covered_fraction", {})
    dose = ab.get("shell_dose_covered_fraction") or {}
    either = ab.get("shell_ablated_or_dose_covered_fraction") or {}
    unc = ab.get("registration_uncertainty") or {}
    rec = doc.get("recurrence") or {}
    by = rec.get("by_zone") or {}
    values = [
        doc["lesion"], t["plan_volume_cc"], t["followup_volume_cc"], t["volume_change_pct"],
        t["plan_longest_axial_diameter_mm"], t["followup_longest_axial_diameter_mm"],
        t["diameter_change_pct"], pd_.get("perpendicular_mm"), fd.get("perpendicular_mm"),
        t.get("lesion_recist_class"), t.get("enhancing_volume_cc"),
        rc.get("sum_longest_diameters_plan_mm"), rc.get("sum_longest_diameters_followup_mm"),
        rc.get("response"), res.get("core_cc"), res.get("margin_cc"),
        res.get("outside_cc"), ab.get("minimal_ablative_margin_mm"),
        ab.get("technical_success"), unc.get("mean_mm"),
        shells.get("3mm"), shells.get("5mm"), shells.get("10mm"),
        dose.get("3mm"), dose.get("5mm"), dose.get("10mm"),
        either.get("3mm"), either.get("5mm"), either.get("10mm"),
        ab.get("core_covered_fraction"), ab.get("margin_covered_fraction"),
        rec.get("volume_cc"), rec.get("origin_zone"), rec.get("closest_to_gtv_zone"),
        by.get("core_fraction"), by.get("margin_fraction"), by.get("outside_fraction"),
        rec.get("d90_gy"),
    ]  # fmt: skip
    return [_cell(v) for v in values]


def followup_csv(doc: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for les in doc["lesions"]:
        w.writerow(csv_row(les, doc.get("recist")))
    return buf.getvalue()
