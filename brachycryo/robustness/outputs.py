"""robust.json, robust.csv and robust.html of a robustness evaluation (written by the caller
into an :class:`~brachycryo.core.staging.OutputStage`, so all three appear or none); the
page itself is composed by :mod:`brachycryo.reports.robust` (reports sit above this layer)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np

from brachycryo.core.atomic import write_text_atomic
from brachycryo.robustness.scenarios import RobustResult

__all__ = ["OUTPUT_NAMES", "result_json", "table_csv", "write_outputs"]

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


def write_outputs(r: RobustResult, paths: dict[str, Path], page: str) -> None:
    """Write the three files at ``paths`` ({name: path}, staged paths; overwritten);
    ``page`` is robust.html, composed by the caller (:mod:`brachycryo.reports.robust`)."""
    texts = (json.dumps(result_json(r), indent=2), table_csv(r), page)
    for name, text in zip(OUTPUT_NAMES, texts):
        write_text_atomic(paths[name], text, overwrite=True)
