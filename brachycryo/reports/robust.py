"""robust.html: the robustness evaluation as one self-contained page.

Contents: the probability table of robust.csv, the interactive DVH of
:mod:`brachycryo.reports.viewer` with, for each seed-target zone and each OAR with a limit,
the nominal DVH (solid), the median over the scenarios (dashed) and the band between the
low and high percentiles (shaded; 5-95 % by default), the goal markers (D90 ≥ Rx, the OAR
limits that are points of the DVH), the worst scenarios and their needles.  The
robustness inputs are sampled points, not a CT, so the page has no slice viewer (the plan's
report.html has it).
"""

from __future__ import annotations

import csv
import html
import io

import numpy as np

from brachycryo.reports.html import Constraint, dvh_goal_markers
from brachycryo.reports.viewer import (
    VIEWER_CSS,
    DvhPlot,
    band_payload,
    curve_payload,
    html_document,
    viewer_section_html,
)
from brachycryo.robustness.outputs import table_csv
from brachycryo.robustness.scenarios import RobustResult, WorstScenario

__all__ = ["dvh_plot", "page_html"]

_CSS = (
    "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
    "td,th{border:1px solid #ccc;padding:3px 8px}.hot{color:#d62728}"
    ".meta{color:#666;font-size:0.8em}"
)

#: Colours of the structures on the DVH (cycled).
_COLOURS = ((31, 119, 180), (214, 39, 40), (44, 160, 44), (148, 103, 189), (255, 127, 14))


def dvh_plot(r: RobustResult) -> DvhPlot:
    """Nominal, median and band of every zone and limited OAR (module docstring)."""
    lo, mid, hi = (f"p{p:g}" for p in r.options.percentiles)
    curves, bands, goals = [], [], []
    structures = [(z.name, z.dvh_dose_gy, z.dvh_nominal_pct, z.dvh_bands_pct) for z in r.zones]
    seen = {z.name for z in r.zones}
    for lim in r.limits:
        if lim.roi not in seen:
            seen.add(lim.roi)
            structures.append((lim.roi, lim.dvh_dose_gy, lim.dvh_nominal_pct, lim.dvh_bands_pct))
    for n, (name, dose, nominal, b) in enumerate(structures):
        c = _COLOURS[n % len(_COLOURS)]
        curves.append(curve_payload(name, f"{name} nominal", c, dose, nominal))
        curves.append(curve_payload(name, f"{name} {mid}", c, dose, b[1], dashed=True))
        bands.append(band_payload(name, f"{name} {lo}-{hi}", c, dose, b[0], b[2]))
    constraints = [Constraint(z.name, "D90", ">=", z.prescription_gy) for z in r.zones]
    constraints += [Constraint(lim.roi, lim.metric, "<=", lim.limit) for lim in r.limits]
    goals = dvh_goal_markers(constraints, r.zones[0].prescription_gy if r.zones else None)
    return DvhPlot(
        curves,
        bands=bands,
        goals=goals,
        prescription_gy=r.zones[0].prescription_gy if r.zones else None,
        caption=f"Solid: nominal plan; dashed: median ({mid}) over the "
        f"{r.options.n_scenarios} scenarios; shaded: {lo}-{hi} band. Circles: the goals.",
        heading="DVH bands",
    )


def _projection_axes(points: np.ndarray) -> np.ndarray:
    """The two principal axes (2, 3) of ``points``: the view that spreads the needles most."""
    centred = points - points.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[:2]


def _svg_needles(w: WorstScenario) -> str:
    """The worst scenario's needles, projected on their two principal axes: planned (grey),
    moved (blue), the three most displaced in red and numbered."""
    size, pad = 420, 30
    every = np.concatenate([w.entry_planned_mm, w.tip_planned_mm, w.entry_moved_mm, w.tip_moved_mm])
    axes = _projection_axes(every)
    uv = (every - every.mean(axis=0)) @ axes.T
    lo, span = uv.min(axis=0), max(float(np.ptp(uv, axis=0).max()), 1e-6)

    def xy(p):
        q = ((p - every.mean(axis=0)) @ axes.T - lo) / span * (size - 2 * pad) + pad
        return f"{q[0]:.1f}", f"{size - q[1]:.1f}"

    hot = set(w.needle_ids[:3])
    order = {n: k for k, n in enumerate(w.needle_ids)}
    parts = []
    ids = sorted(order)
    for k, number in enumerate(ids):
        (x1, y1), (x2, y2) = xy(w.entry_planned_mm[k]), xy(w.tip_planned_mm[k])
        parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="#bbb"/>')
        colour = "#d62728" if number in hot else "#3182bd"
        (x1, y1), (x2, y2) = xy(w.entry_moved_mm[k]), xy(w.tip_moved_mm[k])
        parts.append(f'<line x1="{x1}" y1="{y1}" x2="{x2}" y2="{y2}" stroke="{colour}"/>')
        if number in hot:
            parts.append(f'<text x="{x2}" y="{y2}" font-size="11" fill="{colour}">#{number}</text>')
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size + 20}">'
        + "".join(parts)
        + f'<text x="4" y="{size + 14}" font-size="11">scenario {w.index}: needles from entry to '
        "deepest seed; grey planned, blue moved, red the three most displaced</text></svg>"
    )


def page_html(r: RobustResult) -> str:
    """A self-contained page: probability table, DVH bands, worst scenarios' needles."""
    rows = list(csv.reader(io.StringIO(table_csv(r))))
    table = "".join(
        "<tr>"
        + "".join(
            f"<{'th' if i == 0 else 'td'}>{html.escape(c)}</{'th' if i == 0 else 'td'}>"
            for c in row
        )
        + "</tr>"
        for i, row in enumerate(rows)
    )
    worst = "".join(
        f"<tr><td>{w.index}</td><td>{html.escape(w.worst_zone)}</td><td>{w.d90_over_rx:.3f}</td>"
        f"<td>{w.lost_seeds}</td><td>"
        + ", ".join(
            (f"<b class='hot'>#{n} {d:.1f} mm</b>" if k < 3 else f"#{n} {d:.1f} mm")
            for k, (n, d) in enumerate(zip(w.needle_ids, w.tip_displacement_mm))
        )
        + "</td></tr>"
        for w in r.worst
    )
    m = r.model
    src = "".join(f"<li>{html.escape(s)}</li>" for s in m.sources)
    body = (
        f"<h1>Robustness to needle placement error</h1><p>Error model <b>{html.escape(m.name)}</b>"
        f", {r.options.n_scenarios} scenarios (random seed {r.options.seed}), {r.n_seeds} seeds "
        f"on {r.n_needles} needles. Simulated tip error {r.tip_error_mm[0]:.1f} ± "
        f"{r.tip_error_mm[1]:.1f} mm.</p><ul>{src}</ul>"
        f"<h2>Probabilities</h2><table>{table}</table>"
        + viewer_section_html(None, dvh_plot(r))
        + "<h2>Worst scenarios</h2><p>Lowest D90/Rx of any zone; needles by displacement of their "
        "deepest seed, the three most displaced in red.</p><table><tr><th>scenario</th>"
        "<th>zone</th><th>D90/Rx</th><th>lost seeds</th><th>needles</th></tr>"
        f"{worst}</table>{_svg_needles(r.worst[0]) if r.worst else ''}"
    )
    return html_document("brachycryo robustness", body, _CSS + VIEWER_CSS)
