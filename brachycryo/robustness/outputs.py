"""robust.json, robust.csv and robust.html of a robustness evaluation (written by the caller
into an :class:`~brachycryo.core.staging.OutputStage`, so all three appear or none)."""

from __future__ import annotations

import csv
import html
import io
import json
from pathlib import Path

import numpy as np

from brachycryo.core.atomic import write_text_atomic
from brachycryo.robustness.scenarios import RobustResult, WorstScenario

__all__ = ["OUTPUT_NAMES", "page_html", "result_json", "table_csv", "write_outputs"]

OUTPUT_NAMES = ("robust.json", "robust.csv", "robust.html")


def _band_json(values: np.ndarray, pcts) -> dict:
    return {f"p{p:g}": float(np.percentile(values, p)) for p in pcts}


def result_json(r: RobustResult) -> dict:
    """The JSON document: model, options, per zone and limit probabilities and bands."""
    pcts = r.options.percentiles
    return {
        "error_model": r.model.to_json(),
        "n_scenarios": r.options.n_scenarios,
        "random_seed": r.options.seed,
        "n_seeds": r.n_seeds,
        "n_needles": r.n_needles,
        "simulated_tip_error_mm": {"mean": r.tip_error_mm[0], "sd": r.tip_error_mm[1]},
        "zones": [
            {
                "roi": z.name,
                "prescription_gy": z.prescription_gy,
                "nominal": {"d90_gy": z.nominal_d90_gy, "v100_pct": z.nominal_v100_pct},
                "p_d90_ge_rx": z.p_d90,
                "p_v100_ge_90pct": z.p_v100,
                "d90_gy": _band_json(z.d90_gy, pcts),
                "v100_pct": _band_json(z.v100_pct, pcts),
                "dvh_bin_width_gy": z.bin_width_gy,
                "dvh": {
                    "dose_gy": z.dvh_dose_gy.tolist(),
                    "nominal_pct": z.dvh_nominal_pct.tolist(),
                    **{f"p{p:g}_pct": b.tolist() for p, b in zip(pcts, z.dvh_bands_pct)},
                },
            }
            for z in r.zones
        ],
        "limits": [
            {
                "roi": lim.roi,
                "metric": lim.metric,
                "limit": lim.limit,
                "nominal": lim.nominal,
                "p_met": lim.p_met,
                "p95": lim.p95,
            }
            for lim in r.limits
        ],
        "worst_scenarios": [
            {
                "scenario": w.index,
                "zone": w.worst_zone,
                "d90_over_rx": w.d90_over_rx,
                "lost_seeds": w.lost_seeds,
                "needles_by_tip_displacement": [
                    {"needle_id": n, "tip_displacement_mm": d}
                    for n, d in zip(w.needle_ids, w.tip_displacement_mm)
                ],
            }
            for w in r.worst
        ],
    }


def table_csv(r: RobustResult) -> str:
    """One row per zone goal and OAR limit: nominal, probability, 5/50/95 % values."""
    buf = io.StringIO()
    w = csv.writer(buf)
    lo, mid, hi = r.options.percentiles
    w.writerow(
        [
            "structure",
            "metric",
            "goal",
            "nominal",
            "probability",
            f"p{lo:g}",
            f"p{mid:g}",
            f"p{hi:g}",
        ]
    )
    for z in r.zones:
        for name, goal, nom, p, vals in (
            ("D90_gy", f">= {z.prescription_gy:g}", z.nominal_d90_gy, z.p_d90, z.d90_gy),
            ("V100_pct", ">= 90", z.nominal_v100_pct, z.p_v100, z.v100_pct),
        ):
            q = np.percentile(vals, r.options.percentiles)
            w.writerow([z.name, name, goal, f"{nom:.3f}", f"{p:.4f}", *(f"{v:.3f}" for v in q)])
    for lim in r.limits:
        q = np.percentile(lim.values, r.options.percentiles)
        w.writerow(
            [
                lim.roi,
                lim.metric,
                f"<= {lim.limit:g}",
                f"{lim.nominal:.3f}",
                f"{lim.p_met:.4f}",
                *(f"{v:.3f}" for v in q),
            ]
        )
    return buf.getvalue()


def _svg_band(title: str, dose: np.ndarray, nominal: np.ndarray, bands: np.ndarray, mark: float):
    """An inline SVG: the 5-95 % band (shaded), the median (dashed), the nominal DVH."""
    w, h, pad = 520, 300, 40
    xmax = float(dose[-1]) or 1.0

    def xy(d, v):
        return f"{pad + (w - 2 * pad) * d / xmax:.1f},{h - pad - (h - 2 * pad) * v / 100.0:.1f}"

    def line(v):
        return " ".join(xy(d, y) for d, y in zip(dose, v))

    band = line(bands[0]) + " " + " ".join(xy(d, y) for d, y in zip(dose[::-1], bands[2][::-1]))
    mx = pad + (w - 2 * pad) * mark / xmax
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}">'
        f'<text x="{pad}" y="20" font-size="13">{html.escape(title)}</text>'
        f'<rect x="{pad}" y="{pad}" width="{w - 2 * pad}" height="{h - 2 * pad}" fill="none" '
        'stroke="#999"/>'
        f'<polygon points="{band}" fill="#9ecae1" fill-opacity="0.6"/>'
        f'<polyline points="{line(bands[1])}" fill="none" stroke="#3182bd" stroke-dasharray="4"/>'
        f'<polyline points="{line(nominal)}" fill="none" stroke="#000" stroke-width="1.5"/>'
        f'<line x1="{mx:.1f}" x2="{mx:.1f}" y1="{pad}" y2="{h - pad}" stroke="#d62728"/>'
        f'<text x="{pad}" y="{h - 10}" font-size="11">dose 0-{xmax:.0f} Gy; volume 0-100 %; '
        "black nominal, blue dashed median, band 5-95 %, red line Rx / limit</text></svg>"
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
    svgs = [
        _svg_band(z.name, z.dvh_dose_gy, z.dvh_nominal_pct, z.dvh_bands_pct, z.prescription_gy)
        for z in r.zones
    ]
    seen = set()
    for lim in r.limits:
        if lim.roi not in seen:
            seen.add(lim.roi)
            svgs.append(
                _svg_band(
                    lim.roi, lim.dvh_dose_gy, lim.dvh_nominal_pct, lim.dvh_bands_pct, lim.limit
                )
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
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'><title>brachycryo robustness</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:3px 8px}.hot{color:#d62728}</style></head><body>"
        f"<h1>Robustness to needle placement error</h1><p>Error model <b>{html.escape(m.name)}</b>"
        f", {r.options.n_scenarios} scenarios (random seed {r.options.seed}), {r.n_seeds} seeds "
        f"on {r.n_needles} needles. Simulated tip error {r.tip_error_mm[0]:.1f} ± "
        f"{r.tip_error_mm[1]:.1f} mm.</p><ul>{src}</ul>"
        f"<h2>Probabilities</h2><table>{table}</table>"
        f"<h2>DVH bands</h2>{''.join(svgs)}"
        "<h2>Worst scenarios</h2><p>Lowest D90/Rx of any zone; needles by displacement of their "
        "deepest seed, the three most displaced in red.</p><table><tr><th>scenario</th>"
        "<th>zone</th><th>D90/Rx</th><th>lost seeds</th><th>needles</th></tr>"
        f"{worst}</table>{_svg_needles(r.worst[0]) if r.worst else ''}</body></html>"
    )


def write_outputs(r: RobustResult, paths: dict[str, Path]) -> None:
    """Write the three files at ``paths`` ({name: path}, staged paths; overwritten)."""
    texts = (json.dumps(result_json(r), indent=2), table_csv(r), page_html(r))
    for name, text in zip(OUTPUT_NAMES, texts):
        write_text_atomic(paths[name], text, overwrite=True)
