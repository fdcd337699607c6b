"""The post-implant HTML report: :mod:`brachycryo.reports.html`'s plan report of the post-implant
dose,
with sections on the detected seeds and, given a pre-plan, the comparison (plan vs
post-implant D90 / V100 / D2cc table, DVHs of both - the pre-plan's dashed over the
post-implant ones in the page's interactive DVH and in a printable picture -, displacement
histogram and the largest displacements, migration list)."""

from __future__ import annotations

import html
import math
import os
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from brachycryo.postimplant.workflow import (
    COMPARED_METRICS,
    LOW_CONFIDENCE,
    OUTPUT_NAMES,
    PostImplantResult,
    write_postimplant_outputs,
)
from brachycryo.reports.html import ReportExtras, build_report_html, img_tag, write_report
from brachycryo.reports.plots import figure_png, roi_colour
from brachycryo.reports.viewer import CompareField

_HEADINGS = {
    "d90_gy": "D90 (Gy)",
    "v100_pct": "V100 (%)",
    "v150_pct": "V150 (%)",
    "d2cc_gy": "D2cc (Gy)",
    "d0.1cc_gy": "D0.1cc (Gy)",
}
#: Largest displacements listed in the report.
N_LARGEST = 10


def _f(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:.{digits}f}"


def _signed(v, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    return f"{v:+.{digits}f}"


def _xyz(p) -> str:
    return "(" + ", ".join(f"{float(v):.1f}" for v in p) + ")"


def _table(head: list[str], rows: list[list[str]]) -> str:
    h = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table>{h}{body}</table>"


def comparison_table_html(result: PostImplantResult) -> str:
    """Plan vs post-implant metrics of every structure, with the differences."""
    doc = result.comparison_doc()
    if doc is None:
        return ""
    head = ["Structure", "Role"]
    for key, _ in COMPARED_METRICS:
        h = _HEADINGS[key]
        head += [f"{h} plan", f"{h} post", "Δ"]
    rows = []
    for name, row in doc["structures"].items():
        cells = [html.escape(name), row["role"]]
        for key, _ in COMPARED_METRICS:
            cells += [
                _f(row[f"{key}_plan"]),
                _f(row[f"{key}_postimplant"]),
                _signed(row[f"delta_{key}"]),
            ]
        rows.append(cells)
    return (
        "<h2>Pre-plan vs post-implant</h2>"
        + _table(head, rows)
        + '<p class="meta">Δ = post-implant − plan (Gy; percentage points for V100 / V150). '
        "The plan's dose is recomputed from its RTPLAN on the post-implant dose grid with the "
        "same TG-43U1 engine, so both columns are like for like.</p>"
    )


def _dvh_comparison_png(result: PostImplantResult) -> bytes:
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot(1, 1, 1)
    colours = {r.name: r.color_rgb for r in result.rois}
    for n, (name, post) in enumerate(result.evaluation.dvhs.items()):
        if post.volume_cc <= 0:
            continue
        rgb = roi_colour(colours.get(name), n)
        for dvh, style, tag in (
            (result.plan_evaluation.dvhs.get(name), "--", "plan"),  # type: ignore[union-attr]
            (post, "-", "post-implant"),
        ):
            if dvh is None:
                continue
            d, v = dvh.cumulative_curve()
            d = np.concatenate([[0.0], d])
            v = np.concatenate([[dvh.volume_cc], v])
            ax.plot(d, 100.0 * v / dvh.volume_cc, style, color=rgb, lw=1.4, label=f"{name} {tag}")
    ax.axvline(result.prescription_gy, color="k", lw=0.8, ls=":")
    ax.set_xlim(0, 2.5 * result.prescription_gy)
    ax.set_xlabel("Dose (Gy)")
    ax.set_ylabel("Volume (%)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return figure_png(fig, dpi=90)


def _histogram_png(displacements_mm: np.ndarray, gate_mm: float) -> bytes:
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot(1, 1, 1)
    bin_edges_mm = np.arange(0.0, gate_mm + 0.5, 0.5).tolist()
    ax.hist(displacements_mm, bins=bin_edges_mm, color="#4477aa")
    ax.set_xlabel("Seed displacement from plan (mm)")
    ax.set_ylabel("Seeds")
    return figure_png(fig, dpi=90)


def seeds_section_html(result: PostImplantResult) -> str:
    """Detected seeds; with a pre-plan, displacement and migration."""
    det = result.detection
    parts = ["<h2>Detected seeds</h2>"]
    given = det.seed_count_given
    parts.append(
        f"<p>{det.n_seeds} seeds detected in {det.n_components} metal components "
        f"(threshold {det.metal_threshold_hu:g} HU"
        + (f"; implanted count {given}" if given is not None else "")
        + f"); source {html.escape(result.model.name)}, {result.sk_u:g} U per seed.</p>"
    )
    if det.notes:
        parts.append("<ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in det.notes) + "</ul>")
    low = [(m, s) for m, s in enumerate(det.seeds) if s.confidence < LOW_CONFIDENCE]
    if det.suspicious:
        rows = [
            [
                str(c.cluster),
                _xyz(c.centroid_mm),
                _f(c.volume_mm3, 1),
                _f(c.signal_ratio),
                str(c.seeds_assigned),
                html.escape(c.reason),
            ]
            for c in det.suspicious
        ]
        parts.append(
            "<h3>Suspicious metal clusters</h3>"
            + _table(
                ["Cluster", "Centroid (mm)", "Volume (mm³)", "Signal / seed", "Seeds", "Reason"],
                rows,
            )
        )
    if low:
        rows = [[str(m + 1), _xyz(s.position_mm), _f(s.confidence)] for m, s in low]
        parts.append(
            f"<h3>Seeds of low confidence (&lt; {LOW_CONFIDENCE:g})</h3>"
            + _table(["Seed", "Position (mm)", "Confidence"], rows)
        )
    cmp_ = result.seeds
    if cmp_ is None or result.pre_plan is None:
        return "".join(parts)
    stats = cmp_.displacement_stats()
    parts.append("<h2>Seed displacement and migration</h2>")
    parts.append(
        _table(
            [
                "Planned",
                "Detected",
                "Paired",
                "Missing",
                "Far detections",
                "Surplus",
                "Median (mm)",
                "95th pct (mm)",
                "Max (mm)",
            ],
            [
                [
                    str(cmp_.n_planned),
                    str(cmp_.n_detected),
                    str(cmp_.n_matched),
                    str(cmp_.missing.size),
                    str(cmp_.far.size),
                    str(cmp_.surplus.size),
                    _f(stats["median_mm"]),
                    _f(stats["p95_mm"]),
                    _f(stats["max_mm"]),
                ]
            ],
        )
        + f'<p class="meta">Planned and detected seeds paired by minimum total distance '
        f"(Hungarian algorithm) within a {cmp_.gate_mm:g} mm gate. Missing: planned seeds "
        "with no detection paired; far: detections with no planned seed within the gate "
        "(migrated); surplus: unpaired detections near planned seeds.</p>"
    )
    disp = cmp_.matched_displacements_mm
    if disp.size:
        parts.append(img_tag(_histogram_png(disp, cmp_.gate_mm), "displacement histogram"))
        order = np.argsort(-np.nan_to_num(cmp_.displacement_mm, nan=-1.0))[:N_LARGEST]
        rows = []
        for m in order:
            p = int(cmp_.plan_of_detection[m])
            if p < 0:
                continue
            rows.append(
                [
                    str(m + 1),
                    str(p + 1),
                    str(result.pre_plan.seeds[p].channel),
                    _xyz(cmp_.planned_mm[p]),
                    _xyz(cmp_.detected_mm[m]),
                    _f(float(cmp_.displacement_mm[m])),
                ]
            )
        parts.append(
            f"<h3>Largest displacements (up to {N_LARGEST})</h3>"
            + _table(
                [
                    "Seed",
                    "Plan seed",
                    "Needle",
                    "Planned (mm)",
                    "Detected (mm)",
                    "Displacement (mm)",
                ],
                rows,
            )
        )
    rows = []
    for p in cmp_.missing:
        p = int(p)
        rows.append(
            [
                "missing",
                f"plan seed {p + 1} (needle {result.pre_plan.seeds[p].channel})",
                _xyz(cmp_.planned_mm[p]),
                _f(cmp_.nearest_detection_mm(p)),
            ]
        )
    for kind, idx in (("far (migrated)", cmp_.far), ("surplus", cmp_.surplus)):
        for m in idx:
            m = int(m)
            rows.append(
                [kind, f"seed {m + 1}", _xyz(cmp_.detected_mm[m]), _f(cmp_.nearest_plan_mm(m))]
            )
    if rows:
        parts.append(
            "<h3>Migration</h3>"
            + _table(["Kind", "Seed", "Position (mm)", "Nearest counterpart (mm)"], rows)
        )
    else:
        parts.append(f"<p>No migrated seed: every seed paired within {cmp_.gate_mm:g} mm.</p>")
    return "".join(parts)


def build_postimplant_report(result: PostImplantResult, *, render_3d: bool = True) -> str:
    """The post-implant report as one HTML string."""
    sections = []
    compare = compare_dose = None
    if result.plan_evaluation is not None:
        compare = ("pre-plan", result.plan_evaluation.dvhs)
    if result.plan_dose_gy is not None:
        compare_dose = CompareField("pre-plan", result.plan_dose_gy, result.dose_grid)
        sections.append(comparison_table_html(result))
        sections.append(
            "<h2>DVH: pre-plan (dashed) vs post-implant (solid)</h2>"
            + img_tag(_dvh_comparison_png(result), "plan vs post-implant DVH")
        )
    sections.append(seeds_section_html(result))
    ev = result.evaluation
    original = list(ev.warnings)
    ev.warnings = list(result.notes) + original
    try:
        return build_report_html(
            ev,
            dose_gy=result.dose_gy,
            dose_grid=result.dose_grid,
            ct_hu=result.ct.hu,
            ct_grid=result.ct.grid,
            rois=result.rois,
            target=result.target,
            seeds_mm=result.detection.positions_mm,
            title=f"brachycryo post-implant dosimetry: {result.detection.n_seeds} seeds",
            render_3d=render_3d,
            extras=ReportExtras(sections, compare, compare_dose),
        )
    finally:
        ev.warnings = original


def write_postimplant_folder(
    result: PostImplantResult,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    report_html: bool = True,
    render_3d: bool = True,
    dose_bits: int = 32,
) -> dict[str, Path]:
    """Every post-implant output: the data files of :func:`write_postimplant_outputs`, then
    ``report.html`` (unless ``report_html`` is false); returns {kind: path}."""
    paths = write_postimplant_outputs(
        result, out_dir, overwrite=overwrite, report_html=report_html, dose_bits=dose_bits
    )
    if report_html:
        paths["report"] = Path(out_dir) / OUTPUT_NAMES["report"]
        write_report(
            paths["report"],
            build_postimplant_report(result, render_3d=render_3d),
            overwrite=overwrite,
        )
    return paths
