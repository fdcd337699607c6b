"""The follow-up report: one self-contained HTML page with the registration, a table per
lesion (response, minimal ablative margin, zonal residual tumour, recurrence), the slice
viewer of :mod:`brachycryo.reports.viewer` on the planning CT (the planned dose with its
isodoses, every lesion's planned zones and the follow-up contours carried onto the planning
CT, as toggled outlines) and, as printable snapshots, an axial slice through each lesion."""

from __future__ import annotations

import datetime as _dt
import html
import math
from typing import Any

import numpy as np

from brachycryo import __version__
from brachycryo.followup.analysis import FollowupResult, LesionFollowup, PlanData
from brachycryo.qa.dvh import sample_dose_at_points
from brachycryo.reports.html import _CSS, img_tag
from brachycryo.reports.plots import figure_png, slice_figure
from brachycryo.reports.viewer import (
    VIEWER_CSS,
    MaskLayer,
    ViewerInputs,
    build_viewer_payload,
    html_document,
    viewer_section_html,
)

#: Overlay colours chosen apart from the isodose lines' blue / red / orange / magenta.
_COLOURS = {
    "GTV (plan)": (255, 255, 255),
    "Core": (110, 60, 20),
    "Margin": (0, 200, 255),
    "tumour": (0, 255, 140),
    "ablation": (0, 140, 0),
    "recurrence": (255, 255, 0),
}


def _f(v: Any, digits: int = 2) -> str:
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return "–" if not math.isfinite(v) else f"{v:.{digits}f}"
    return html.escape(str(v))


def _rows_table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{_f(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _lesion_rows(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    t = doc["tumour"]
    rows: list[tuple[str, Any]] = [
        ("GTV volume at plan (cc)", t["plan_volume_cc"]),
        ("tumour volume at follow-up (cc)", t["followup_volume_cc"]),
        ("volume change (%)", t["volume_change_pct"]),
        ("longest axial diameter at plan (mm)", t["plan_longest_axial_diameter_mm"]),
        ("longest axial diameter at follow-up (mm)", t["followup_longest_axial_diameter_mm"]),
        ("diameter change (%)", t["diameter_change_pct"]),
    ]
    for zone, v in (t["residual_by_zone"] or {}).items():
        if zone.endswith("_cc"):
            rows.append((f"residual tumour in {zone[:-3]} (cc)", v))
    if "ablation" in doc:
        a = doc["ablation"]
        rows += [
            ("ablation zone volume (cc)", a["volume_cc"]),
            ("minimal ablative margin (mm)", a["minimal_ablative_margin_mm"]),
            (f"technical success (MAM ≥ {a['mam_threshold_mm']:g} mm)", a["technical_success"]),
            *((f"{w} shell ablated (fraction)", v) for w, v in a["shell_covered_fraction"].items()),
            ("planned core ablated (fraction)", a["core_covered_fraction"]),
            ("planned margin ablated (fraction)", a["margin_covered_fraction"]),
        ]
    if "recurrence" in doc:
        r = doc["recurrence"]
        by = r["by_zone"] or {}
        rows += [
            ("recurrence volume (cc)", r["volume_cc"]),
            ("recurrence origin (zone of its centroid)", r["origin_zone"]),
            ("zone of its point closest to the GTV", r["closest_to_gtv_zone"]),
            *((f"recurrence in {z} (fraction)", by.get(f"{z}_fraction"))
              for z in ("core", "margin", "outside")),
            ("planned D90 of the recurrence (Gy)", r["d90_gy"]),
            ("D90 (% of prescription)", r["d90_pct_of_prescription"]),
            ("centroid inside the planned lethal isotherm", r["centroid_in_lethal_isotherm"]),
        ]  # fmt: skip
    return rows


def lesion_figure_png(plan: PlanData, les: LesionFollowup) -> bytes:
    """Axial slice of the analysis grid through the GTV's centroid: the planning CT, the
    planned zones, the follow-up contours carried over and the planned isodose lines."""
    m = les.masks
    grid = m.grid
    k = round(float(np.argwhere(m.gtv)[:, 0].mean())) if m.gtv.any() else grid.shape[0] // 2
    hu, _ = sample_dose_at_points(plan.ct.hu, plan.ct.grid, grid.voxel_centres_mm().reshape(-1, 3))
    structures = {
        "GTV (plan)": (m.gtv, _COLOURS["GTV (plan)"]),
        "Core": (m.core, _COLOURS["Core"]),
        "Margin": (m.margin, _COLOURS["Margin"]),
        **{f"{kind} (follow-up)": (mask, _COLOURS[kind]) for kind, mask in m.followup.items()},
    }
    fig = slice_figure(
        np.asarray(hu).reshape(grid.shape),
        grid,
        "axial",
        k,
        dose_gy=None if plan.dose is None else plan.dose.dose_gy,
        dose_grid=None if plan.dose is None else plan.dose.grid,
        prescription_gy=plan.prescription_gy,
        structures=structures,
    )
    return figure_png(fig)


def _check_rows(checks: dict[str, Any]) -> list[tuple[str, Any]]:
    """The registration's quality block (Jacobian, inverse consistency, landmark TRE against
    AAPM TG-132: Brock et al., Med Phys 44(7) 2017)."""
    rows: list[tuple[str, Any]] = [
        ("Jacobian determinant min", checks["jacobian_determinant_min"]),
        ("Jacobian determinant max", checks["jacobian_determinant_max"]),
    ]
    if checks["inverse_consistency_mean_mm"] is not None:
        rows.append(("inverse consistency mean (mm)", checks["inverse_consistency_mean_mm"]))
        rows.append(("inverse consistency max (mm)", checks["inverse_consistency_max_mm"]))
    tre = checks["landmark_tre"]
    if tre is not None:
        verdict = "within" if tre["within_tg132"] else "OUTSIDE"
        rows += [("landmark TRE mean / max (mm)", f"{tre['mean_mm']:.2f} / {tre['max_mm']:.2f}"),
                 (f"TG-132 ({tre['tg132_mean_limit_mm']:g} / {tre['tg132_max_limit_mm']:g} mm)",
                  verdict)]  # fmt: skip
    return rows


def viewer_inputs(plan: PlanData, result: FollowupResult) -> ViewerInputs:
    """The slice viewer's data: the planning CT, the planned dose (if the plan has one) and
    each lesion's masks of the analysis grid, named ``"<lesion>: <zone>"``."""
    masks = []
    for les in result.lesions:
        m = les.masks
        zones = {
            "GTV (plan)": (m.gtv, _COLOURS["GTV (plan)"]),
            "Core": (m.core, _COLOURS["Core"]),
            "Margin": (m.margin, _COLOURS["Margin"]),
            **{f"{kind} (follow-up)": (mask, _COLOURS[kind]) for kind, mask in m.followup.items()},
        }
        for zone, (mask, colour) in zones.items():
            masks.append(MaskLayer(f"{les.rois.lesion}: {zone}", colour, mask, m.grid))
    first = result.lesions[0].rois.lesion if result.lesions else None
    return ViewerInputs(
        ct_hu=plan.ct.hu,
        ct_grid=plan.ct.grid,
        field_values=None if plan.dose is None else plan.dose.dose_gy,
        field_grid=None if plan.dose is None else plan.dose.grid,
        prescription_gy=plan.prescription_gy,
        masks=masks,
        target=None if first is None else f"{first}: GTV (plan)",
    )


def build_followup_report(plan: PlanData, result: FollowupResult, doc: dict[str, Any]) -> str:
    """The page; ``doc`` is :func:`brachycryo.followup.io.followup_json` of ``result``."""
    reg = doc["registration"]
    q = reg["quality"]
    tx = reg["transform"]
    # a B-spline map: its rigid part (a linear map's "rigid" is a flag)
    rigid = tx["rigid"] if isinstance(tx.get("rigid"), dict) else tx
    parts = [
        "<h1>brachycryo follow-up</h1>",
        f'<p class="meta">brachycryo {__version__} · '
        f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')}</p>",
        "<h2>Registration (planning CT ← follow-up CT)</h2>",
        _rows_table([
            ("source", reg["source"]),
            ("rotation (deg)", tx["rotation_deg"]),
            ("translation (mm)", ", ".join(f"{v:.2f}" for v in rigid["translation_mm"])),
            ("HU correlation before", q["correlation_before"]),
            ("HU correlation after", q["correlation_after"]),
            ("overlap (fraction of planning CT)", q["overlap_fraction"]),
        ]),
    ]  # fmt: skip
    if reg.get("checks"):
        parts.append(_rows_table(_check_rows(reg["checks"])))
    for les, ldoc in zip(result.lesions, doc["lesions"]):
        parts.append(f"<h2>{html.escape(les.rois.lesion)}</h2>")
        parts.append(_rows_table(_lesion_rows(ldoc)))
    notes = list(doc["notes"])
    payload = build_viewer_payload(viewer_inputs(plan, result))
    notes += payload.notes
    parts.append(viewer_section_html(payload, None))
    parts.append('<h2 class="bc-print-heading">Printable snapshots</h2>')
    for les in result.lesions:
        parts.append('<div class="images">' + img_tag(lesion_figure_png(plan, les), les.rois.lesion)
                     + "</div>")  # fmt: skip
    if notes:
        parts.append("<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>"
                                                     for n in notes) + "</ul>")  # fmt: skip
    return html_document("brachycryo follow-up", "\n".join(parts), _CSS + VIEWER_CSS)
