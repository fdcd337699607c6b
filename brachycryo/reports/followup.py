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
from matplotlib.figure import Figure

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


def _diameter_text(d: dict[str, Any] | None) -> str | None:
    if d is None:
        return None
    return f"{_f(d['longest_mm'], 1)} × {_f(d['perpendicular_mm'], 1)}"


def _uncertainty_text(unc: dict[str, Any] | None) -> str:
    if unc is None:
        return "no registration uncertainty measured"
    return f"{unc['kind']} {unc['mean_mm']:.2f} mean / {unc['max_mm']:.2f} max mm"


def _ablation_rows(a: dict[str, Any]) -> list[tuple[str, Any]]:
    dose = a["shell_dose_covered_fraction"] or {}
    either = a["shell_ablated_or_dose_covered_fraction"] or {}
    verdict = a["verdict"]
    if a["verdict_within_registration_uncertainty"]:
        verdict += " (within the registration uncertainty of the threshold)"
    mam = a["minimal_ablative_margin_mm"]
    return [
        ("ablation zone volume (cc)", a["volume_cc"]),
        ("minimal ablative margin (mm) ± registration",
         f"{_f(mam)} ({_uncertainty_text(a['registration_uncertainty'])})"),
        (f"technical success (MAM ≥ {a['mam_threshold_mm']:g} mm)", verdict),
        *((f"{w} shell: ablated / dose ≥ Rx / either (fraction)",
           f"{_f(v)} / {_f(dose.get(w))} / {_f(either.get(w))}")
          for w, v in a["shell_covered_fraction"].items()),
        ("planned core ablated (fraction)", a["core_covered_fraction"]),
        ("planned margin ablated (fraction)", a["margin_covered_fraction"]),
    ]  # fmt: skip


def _lesion_rows(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    t = doc["tumour"]
    rows: list[tuple[str, Any]] = [
        ("GTV volume at plan (cc)", t["plan_volume_cc"]),
        ("tumour volume at follow-up (cc)", t["followup_volume_cc"]),
        ("volume change (%)", t["volume_change_pct"]),
        ("axial diameters at plan: longest × perpendicular (mm)",
         _diameter_text(t["plan_diameters"])),
        ("axial diameters at follow-up: longest × perpendicular (mm)",
         _diameter_text(t["followup_diameters"])),
        ("longest diameter change (%)", t["diameter_change_pct"]),
        ("RECIST 1.1 thresholds on this lesion alone", t["lesion_recist_class"]),
        ("enhancing tumour (follow-up tumour outside the ablation zone, cc; mRECIST-like)",
         t["enhancing_volume_cc"]),
    ]  # fmt: skip
    for zone, v in (t["residual_by_zone"] or {}).items():
        if zone.endswith("_cc"):
            rows.append((f"residual tumour in {zone[:-3]} (cc)", v))
    if "ablation" in doc:
        rows += _ablation_rows(doc["ablation"])
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


def margin_histogram_png(lesion: str, ablation: dict[str, Any]) -> bytes | None:
    """Bar chart of the surface-margin histogram (1 mm bins) with the MAM threshold."""
    h = ablation["surface_margin_histogram"]
    edges, counts = np.asarray(h["bin_edges_mm"]), np.asarray(h["counts"])
    if counts.size == 0:
        return None
    fig = Figure(figsize=(5.0, 2.8))
    ax = fig.add_subplot()
    share = 100.0 * counts / max(int(counts.sum()), 1)
    colours = ["#c0392b" if e < ablation["mam_threshold_mm"] else "#2e86c1" for e in edges[:-1]]
    ax.bar(edges[:-1], share, width=np.diff(edges), align="edge", color=colours,
           edgecolor="white")  # fmt: skip
    ax.axvline(ablation["mam_threshold_mm"], color="k", ls="--", lw=1, label="threshold")
    ax.set_xlabel("signed margin, GTV surface to ablation-zone surface (mm)")
    ax.set_ylabel("GTV surface (%)")
    ax.set_title(f"{lesion}: ablative margin over the GTV surface", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return figure_png(fig)


def _recist_table(r: dict[str, Any]) -> str:
    return _rows_table([
        ("target lesions", ", ".join(r["target_lesions"])),
        ("sum of longest diameters at plan (mm)", r["sum_longest_diameters_plan_mm"]),
        ("sum of longest diameters at follow-up (mm)", r["sum_longest_diameters_followup_mm"]),
        ("change (%)", r["sum_change_pct"]),
        ("RECIST 1.1 response of the target lesions",
         None if r["response"] is None else f"{r['response']} ({r['response_name']})"),
    ]) + f'<p class="meta">{html.escape(r["criteria"])}</p>'  # fmt: skip


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
    parts.append("<h2>Response (RECIST 1.1)</h2>")
    parts.append(_recist_table(doc["recist"]))
    for les, ldoc in zip(result.lesions, doc["lesions"]):
        parts.append(f"<h2>{html.escape(les.rois.lesion)}</h2>")
        parts.append(_rows_table(_lesion_rows(ldoc)))
        png = (
            None
            if "ablation" not in ldoc
            else margin_histogram_png(les.rois.lesion, ldoc["ablation"])
        )
        if png is not None:
            parts.append('<div class="images">' + img_tag(png, "margin histogram") + "</div>")
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
