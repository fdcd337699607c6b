"""The plan report: one self-contained HTML page (images embedded as base64 PNG).

Contents: the metrics table of every structure, the plan indices (CI, EI, HI), each
constraint with its value and pass / fail, the cumulative DVH plot, isodose lines at 50,
100, 150 and 200 % of the prescription over axial, coronal and sagittal CT slices through
the target (with structures, seeds, seed needles, cryoprobe tracks, tips and active zones,
and isotherms), and a 3-D picture
(:mod:`brachycryo.reports.render3d`; replaced by a note saying why when off-screen rendering fails).

The report takes plain inputs - a :class:`brachycryo.qa.evaluate.PlanEvaluation`, the dose on its
Grid, the CT on its Grid, ROIs, seed positions (mm), the probes and needles as inserted
(:class:`~brachycryo.reports.plots.Instruments`) and isotherm masks on a Grid - so it
depends on neither the dose engine nor the cryo model.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brachycryo import __version__
from brachycryo.core.atomic import write_text_atomic
from brachycryo.core.errors import ConfigError, StructureError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.rasterize import roi_mask
from brachycryo.dicom_io.rtstruct import ROI
from brachycryo.qa.dvh import DVH
from brachycryo.qa.evaluate import PlanEvaluation
from brachycryo.qa.metrics import metric_value
from brachycryo.reports.plots import (
    NO_INSTRUMENTS,
    PLANES,
    Instruments,
    dvh_figure,
    figure_png,
    slice_figure,
)
from brachycryo.reports.render3d import render_plan_3d
from brachycryo.reports.viewer import (
    VIEWER_CSS,
    CompareField,
    DvhPlot,
    MaskLayer,
    ViewerInputs,
    build_viewer_payload,
    dvh_payload,
    html_document,
    resample_mask,
    viewer_section_html,
)

_OPS = {">=": lambda v, lim: v >= lim, "<=": lambda v, lim: v <= lim}


@dataclass(frozen=True)
class Constraint:
    """A planning goal: ``metric`` of ``structure`` ``op`` ``limit`` (e.g. GTV D90 >= 145).

    ``metric`` is written as planners write it (see :func:`brachycryo.qa.metrics.metric_value`):
    ``D90`` / ``D2cc`` / ``Dmax`` in Gy, ``V100`` / ``V150Gy`` in %, ``V150Gy_cc`` in cm³.
    """

    structure: str
    metric: str
    op: str
    limit: float

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ConfigError(f"op must be '>=' or '<=', got {self.op!r}", key="op")
        if not math.isfinite(float(self.limit)):
            raise ConfigError(f"limit must be finite, got {self.limit}", key="limit")

    @classmethod
    def parse(cls, text: str) -> Constraint:
        """``"GTV D90 >= 145"`` -> Constraint (structure names without spaces)."""
        parts = text.split()
        if len(parts) != 4:
            raise ConfigError(
                f"constraint {text!r} must read 'STRUCTURE METRIC >=|<= LIMIT'", key="constraint"
            )
        try:
            limit = float(parts[3])
        except ValueError:
            raise ConfigError(f"limit in {text!r} is not a number", key="constraint") from None
        return cls(parts[0], parts[1], parts[2], limit)

    def unit(self) -> str:
        m = self.metric.lower()
        if m == "volume" or m.endswith("_cc"):
            return "cc"
        return "%" if m.startswith("v") else "Gy"

    def evaluate(self, ev: PlanEvaluation) -> tuple[float | None, bool | None]:
        """(value, passed); (None, None) when the structure was not evaluated."""
        dvh = ev.dvhs.get(self.structure)
        if dvh is None:
            return None, None
        value = metric_value(dvh, self.metric, prescription_gy=ev.prescription_gy)
        if not math.isfinite(value):
            return None, None
        return float(value), bool(_OPS[self.op](value, float(self.limit)))


def img_tag(png: bytes, alt: str) -> str:
    """An ``<img>`` element embedding ``png`` (self-contained HTML)."""
    data = base64.b64encode(png).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, str):
        return html.escape(v)
    if not math.isfinite(v):
        return "–"
    return f"{v:.2f}"


_CSS = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.5em; }
table { border-collapse: collapse; font-size: 0.85em; }
th, td { border: 1px solid #bbb; padding: 3px 7px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
th { background: #eee; }
td.pass { background: #c8f0c8; } td.fail { background: #f6c0c0; } td.na { background: #eee; }
.images img { max-width: 32%; margin: 0.3%; vertical-align: top; border: 1px solid #ccc; }
.note { color: #a33; } .meta { color: #666; font-size: 0.8em; }
"""

_TABLE_KEYS = (
    ("volume_cc", "Volume (cc)"),
    ("dmin_gy", "Dmin"),
    ("dmean_gy", "Dmean"),
    ("dmax_gy", "Dmax"),
    ("d90_gy", "D90"),
    ("d98_gy", "D98"),
    ("d100_gy", "D100"),
    ("d2cc_gy", "D2cc"),
    ("d0.1cc_gy", "D0.1cc"),
    ("v100_pct", "V100 (%)"),
    ("v150_pct", "V150 (%)"),
    ("v200_pct", "V200 (%)"),
)


_GOAL_RE = re.compile(r"^([DV])(\d+(?:\.\d+)?)(Gy)?$", re.IGNORECASE)


def dvh_goal_markers(constraints: Sequence[Constraint], rx_gy: float | None) -> list[dict]:
    """Goal points on the cumulative DVH: ``Dxx`` (xx % of the volume) at the limit in Gy,
    ``Vxx`` (xx % of the prescription) or ``VxxGy`` at the limit in %; other metrics
    (D2cc, V150Gy_cc, ...) are not points of a %-volume DVH and get no marker."""
    out = []
    for c in constraints:
        m = _GOAL_RE.match(c.metric)
        if m is None:
            continue
        x = float(m.group(2))
        if m.group(1).upper() == "D":
            dose, vol = float(c.limit), x
        elif m.group(3):
            dose, vol = x, float(c.limit)
        elif rx_gy:
            dose, vol = rx_gy * x / 100.0, float(c.limit)
        else:
            continue
        label = f"{c.structure} {c.metric} {c.op} {c.limit:g} {c.unit()}"
        out.append({"structure": c.structure, "dose": dose, "vol": vol, "label": label})
    return out


def _constraints_table(constraints: Sequence[Constraint], evaluation: PlanEvaluation) -> str:
    """Each constraint with its value and PASS / FAIL (or "not evaluated")."""
    rows = ["<tr><th>Structure</th><th>Metric</th><th>Goal</th><th>Value</th><th>Result</th></tr>"]
    for c in constraints:
        value, ok = c.evaluate(evaluation)
        cls, word = (
            ("na", "not evaluated")
            if ok is None
            else (("pass", "PASS") if ok else ("fail", "FAIL"))
        )
        rows.append(
            f"<tr><td>{html.escape(c.structure)}</td><td>{html.escape(c.metric)}</td>"
            f"<td>{html.escape(c.op)} {c.limit:g} {c.unit()}</td><td>{_fmt(value)}</td>"
            f'<td class="{cls}">{word}</td></tr>'
        )
    return "<h2>Constraints</h2><table>" + "".join(rows) + "</table>"


def _binding_section(notes: list[str]) -> tuple[list[str], str]:
    """(the other notes, the "Binding constraints" list of the ``binding: ...`` notes)."""
    binding = [n.removeprefix("binding: ") for n in notes if n.startswith("binding: ")]
    if not binding:
        return notes, ""
    rest = [n for n in notes if not n.startswith("binding: ")]
    items = "".join(f"<li>{html.escape(n)}</li>" for n in binding)
    return rest, f"<h2>Binding constraints</h2><ul>{items}</ul>"


def _interactive_section(
    viewer: ViewerInputs,
    evaluation: PlanEvaluation,
    colours: Mapping[str, tuple[int, int, int] | None],
    constraints: Sequence[Constraint],
    notes: list[str],
    compare: tuple[str, Mapping[str, DVH]] | None = None,
) -> str:
    """The slice viewer and the interactive DVH (appends the viewer's notes to ``notes``);
    ``compare`` = (label, DVHs) overlays another dose's DVHs dashed (e.g. the pre-plan)."""
    payload = build_viewer_payload(viewer)
    notes.extend(payload.notes)
    curves = dvh_payload(list(evaluation.dvhs.values()), colours)
    caption = ""
    if compare is not None:
        label, other = compare
        shown = [d for name, d in other.items() if name in evaluation.dvhs]
        curves += dvh_payload(shown, colours, label=label, dashed=True)
        caption = f"Solid: this dose; dashed: {label}."
    plot = DvhPlot(
        curves,
        goals=dvh_goal_markers(constraints, evaluation.prescription_gy),
        prescription_gy=evaluation.prescription_gy,
        caption=caption,
    )
    return (
        viewer_section_html(payload, plot) + '<h2 class="bc-print-heading">Printable snapshots</h2>'
    )


@dataclass(frozen=True)
class ReportExtras:
    """What a page built on the plan report adds: ``sections``, HTML fragments (each
    starting with its ``<h2>`` heading, their text already escaped) placed after the
    constraints; ``compare_dvhs`` = (label, {structure: DVH}) of another dose, drawn dashed
    over this dose's curves in the interactive DVH (the pre-plan under the post-implant);
    ``compare_dose``, that dose, drawn as dashed isodoses in the slice viewer; ``masks``,
    outlines of the planner's own zones (e.g. each lesion's seed target) in the viewer."""

    sections: Sequence[str] = ()
    compare_dvhs: tuple[str, Mapping[str, DVH]] | None = None
    compare_dose: CompareField | None = None
    masks: Sequence[MaskLayer] = ()


def _static_outlines(
    rois: Sequence[ROI],
    evaluation: PlanEvaluation,
    zones: Sequence[MaskLayer],
    ct_grid: Grid,
    notes: list[str],
) -> dict[str, tuple[np.ndarray, tuple[int, int, int] | None]]:
    """The outlines of the static slice pictures on the CT grid: the ROIs with a DVH and the
    planner's zones (a ROI that cannot be rasterised is a note)."""
    masks: dict[str, tuple[np.ndarray, tuple[int, int, int] | None]] = {}
    for r in rois:
        if r.name in evaluation.dvhs:
            try:
                masks[r.name] = (roi_mask(r, ct_grid), r.color_rgb)
            except StructureError as exc:
                notes.append(str(exc))
    for ml in zones:
        masks[ml.name] = (resample_mask(ml.mask, ml.grid, ct_grid), ml.colour_rgb)
    return masks


def build_report_html(
    evaluation: PlanEvaluation,
    *,
    dose_gy: np.ndarray,
    dose_grid: Grid,
    ct_hu: np.ndarray | None = None,
    ct_grid: Grid | None = None,
    rois: Sequence[ROI] = (),
    target: str | None = None,
    seeds_mm: np.ndarray | None = None,
    instruments: Instruments = NO_INSTRUMENTS,
    isotherms: Mapping[str, np.ndarray] | None = None,
    isotherm_grid: Grid | None = None,
    constraints: Sequence[Constraint] = (),
    title: str = "brachycryo plan report",
    render_3d: bool = True,
    extras: ReportExtras | None = None,
) -> str:
    """The report as one HTML string (see the module docstring).

    ``instruments`` (cryo probes and seed needles as inserted) are drawn on the slices
    (:func:`~brachycryo.reports.plots.slice_figure`), the probes' active zones in the 3-D
    view.

    ``extras`` (:class:`ReportExtras`) adds sections after the constraints and another
    dose's DVHs to the interactive DVH; e.g. the plan vs post-implant comparison of
    :mod:`brachycryo.reports.postimplant`.

    With a CT, the page carries the slice viewer and the interactive
    DVH of :mod:`brachycryo.reports.viewer` (all data inlined); the static DVH and slice
    pictures stay below as printable snapshots.
    """
    extras = extras or ReportExtras()
    rx = evaluation.prescription_gy
    notes: list[str] = list(evaluation.warnings)
    parts = [f"<h1>{html.escape(title)}</h1>"]
    parts.append(
        f'<p class="meta">brachycryo {__version__}, {_dt.datetime.now():%Y-%m-%d %H:%M}; '
        f"prescription {_fmt(rx)} Gy; files: "
        + html.escape(", ".join(f"{k}: {v}" for k, v in evaluation.files.items()) or "–")
        + "</p>"
    )
    # metrics table
    rows = ["<tr><th>Structure</th>" + "".join(f"<th>{h}</th>" for _, h in _TABLE_KEYS) + "</tr>"]
    for name, m in evaluation.metrics.items():
        cells = "".join(f"<td>{_fmt(m.get(k))}</td>" for k, _ in _TABLE_KEYS)
        rows.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    parts.append(
        "<h2>Dose-volume metrics (Gy unless noted)</h2><table>" + "".join(rows) + "</table>"
    )
    if evaluation.indices:
        i = evaluation.indices
        parts.append(
            "<h2>Implant quality indices</h2><table><tr><th>Target</th><th>CI</th><th>EI</th>"
            f"<th>HI</th><th>V_T (cc)</th><th>V_T,ref (cc)</th><th>V_ref (cc)</th></tr><tr>"
            f"<td>{html.escape(str(i['target']))}</td><td>{_fmt(i['ci'])}</td>"
            f"<td>{_fmt(i['ei'])}</td><td>{_fmt(i['hi'])}</td><td>{_fmt(i['v_t_cc'])}</td>"
            f"<td>{_fmt(i['v_t_ref_cc'])}</td><td>{_fmt(i['v_ref_cc'])}</td></tr></table>"
            '<p class="meta">CI = (V_T,ref/V_T)(V_T,ref/V_ref) (van\'t Riet 1997, Baltas 1998); '
            "EI = V_N,ref/V_T; HI = (V_T,ref − V_T,1.5ref)/V_T,ref (Saw 2000; AAPM TG-137).</p>"
        )
    if constraints:
        parts.append(_constraints_table(constraints, evaluation))
    notes, binding_html = _binding_section(notes)
    parts.append(binding_html)
    parts.extend(extras.sections)
    colours = {r.name: r.color_rgb for r in rois}
    if ct_hu is not None and ct_grid is not None:
        viewer = ViewerInputs(
            ct_hu=ct_hu,
            ct_grid=ct_grid,
            field_values=dose_gy,
            field_grid=dose_grid,
            prescription_gy=rx,
            rois=[r for r in rois if r.name in evaluation.dvhs],
            isotherms=isotherms,
            isotherm_grid=isotherm_grid,
            seeds_mm=seeds_mm,
            instruments=instruments,
            target=target,
            compare=extras.compare_dose,
            masks=extras.masks,
        )
        parts.append(
            _interactive_section(
                viewer, evaluation, colours, constraints, notes, extras.compare_dvhs
            )
        )
    # DVH plot
    fig = dvh_figure(list(evaluation.dvhs.values()), prescription_gy=rx, colours=colours)
    parts.append("<h2>DVH</h2>" + img_tag(figure_png(fig), "cumulative DVH"))
    # slices
    if ct_hu is not None and ct_grid is not None:
        masks = _static_outlines(rois, evaluation, extras.masks, ct_grid, notes)
        iso_ct = {}
        if isotherms and isotherm_grid is not None:
            iso_ct = {k: resample_mask(m, isotherm_grid, ct_grid) for k, m in isotherms.items()}
        centre_name = target if target in masks else next(iter(masks), None)
        if centre_name is not None and masks[centre_name][0].any():
            kk, jj, ii = (round(float(np.mean(a))) for a in np.nonzero(masks[centre_name][0]))
        else:
            kk, jj, ii = (n // 2 for n in ct_grid.shape)
        imgs = []
        for plane, idx in zip(PLANES, (kk, jj, ii), strict=True):
            fig = slice_figure(
                ct_hu,
                ct_grid,
                plane,
                idx,
                dose_gy=dose_gy,
                dose_grid=dose_grid,
                prescription_gy=rx,
                structures=masks,
                seeds_mm=seeds_mm,
                isotherms=iso_ct,
                instruments=instruments,
            )
            imgs.append(img_tag(figure_png(fig, dpi=90), f"{plane} isodoses"))
        parts.append(
            "<h2>Isodoses 50 / 100 / 150 / 200 % over CT</h2>"
            f'<div class="images">{"".join(imgs)}</div>'
        )
        if not rx:
            notes.append("no prescription: isodose lines not drawn")
    else:
        notes.append("no CT given: slice images omitted")
    # 3-D
    if render_3d:
        tumour_mask = None
        if target is not None and ct_grid is not None:
            tumour = next((r for r in rois if r.name == target), None)
            if tumour is not None:
                tumour_mask = roi_mask(tumour, ct_grid)
        png, why = render_plan_3d(
            tumour_mask=tumour_mask,
            tumour_grid=ct_grid,
            dose_gy=dose_gy,
            dose_grid=dose_grid,
            prescription_gy=rx,
            isotherms=isotherms,
            isotherm_grid=isotherm_grid,
            seeds_mm=seeds_mm,
            probes_mm=instruments.active_zones_mm,
        )
        if png is not None:
            parts.append("<h2>3-D view</h2>" + img_tag(png, "3-D view"))
        else:
            parts.append(
                f'<h2>3-D view</h2><p class="note">3-D view not rendered: {html.escape(why)}</p>'
            )
    if notes:
        parts.append(
            "<h2>Notes</h2><ul>" + "".join(f"<li>{html.escape(n)}</li>" for n in notes) + "</ul>"
        )
    return html_document(title, "\n".join(parts), _CSS + VIEWER_CSS)


def write_report(path: str | os.PathLike, report_html: str, *, overwrite: bool = False) -> Path:
    """Write the HTML atomically (never over an existing file unless ``overwrite``)."""
    return write_text_atomic(path, report_html, overwrite=overwrite)


__all__ = ["Constraint", "ReportExtras", "build_report_html", "write_report"]
