"""Joint least-squares fit of the Robin probe model to the measured ice balls (issue 15).

Parameters: the heat-transfer coefficient ``h`` (W m^-2 K^-1) between each probe class's
active surface and argon at its Joule-Thomson temperature (-185.85 C), and the probe's
heat-extraction capacity ``Q_max`` (W); nothing else is
tuned (gel properties, active lengths and layouts as packaged / as in
:mod:`brachycryo.cryo_iceball.fit`).  Objective: sum of ((model - measured) / tolerance)^2
over :data:`brachycryo.cryo_iceball.fit.MEASUREMENTS`.

Parameters per probe class: ``h`` and the extraction capacity ``Q_max`` (W per probe).

Budget (the machine is shared): a grid search of (h, Q_max) on a 2 mm grid (every case;
the values in ``SCAN_H`` and ``SCAN_Q``); the residuals reported are those of that grid,
and every case is re-run on the 1 mm grid with the fitted values as a check of the grid
error (``fine_grid_check``).

Writes ``cryo_iceball/data/probe_fit.json`` (fitted values, residual table, provenance;
read by the tests and the README) and ``benchmarks/results/cryo_fit.json`` (the scan).
Run: ``python -m benchmarks.cryo_fit`` (about 10 min on two contended cores).
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.cryo_machine import machine_info  # noqa: E402
from brachycryo.core.atomic import write_text_atomic  # noqa: E402
from brachycryo.cryo_iceball.fit import (  # noqa: E402
    CASES,
    MEASUREMENTS,
    case_metrics,
    simulate_case,
    with_cooling,
)
from brachycryo.cryo_iceball.probes import ARGON_JT_TEMP_C, load_probe_catalogue  # noqa: E402

SCAN_H = (600.0, 900.0, 1400.0, 2500.0, 5000.0, 20000.0)
SCAN_Q = {
    "generic_2p4mm": (16.0, 20.0, 25.0, 30.0, 40.0, math.inf),
    "generic_17g": (4.0, 6.0, 8.0, 12.0, math.inf),
}
COARSE_MM, FINE_MM = 2.0, 1.0
#: cases re-run on the fine grid with the fitted parameters (the 1 mm Dirichlet figures of
#: the Littrup cases are in benchmarks/results/cryo_littrup.json)
FINE_CASES = ("littrup_1", "littrup_2", "littrup_3", "littrup_4", "gel_17g_1")
CLASSES = ("generic_2p4mm", "generic_17g")

Params = tuple[float, float] | None  # (h, Q_max), None: Dirichlet -140 C

_cache: dict[tuple, dict[str, float]] = {}


def metrics(case_name: str, params: Params, grid_mm: float) -> dict[str, float]:
    key = (case_name, params, grid_mm)
    if key not in _cache:
        case = next(c for c in CASES if c.name == case_name)
        base = load_probe_catalogue()[case.probe_model]
        model = with_cooling(base, None) if params is None else with_cooling(base, *params)
        t0 = time.perf_counter()
        grid, res = simulate_case(case, model, grid_mm=grid_mm, backend="numba")
        m = case_metrics(grid, res)
        m["runtime_s"] = time.perf_counter() - t0
        _cache[key] = m
        print(case_name, params, grid_mm, {k: round(v, 2) for k, v in m.items()}, flush=True)
    return _cache[key]


def residual_rows(params: dict[str, Params], grid_mm: float, probe_class: str | None = None):
    """One row per measurement (of ``probe_class``, or all): model value, misfit,
    tolerance, within it or not."""
    rows = []
    for meas in MEASUREMENTS:
        case = next(c for c in CASES if c.name == meas.case)
        if probe_class is not None and case.probe_model != probe_class:
            continue
        m = metrics(meas.case, params[case.probe_model], grid_mm)
        model = m[meas.metric]
        rows.append(
            {
                "case": meas.case,
                "metric": meas.metric,
                "measured": meas.value,
                "tolerance": meas.tolerance,
                "model": round(model, 3),
                "misfit": round(model - meas.value, 3),
                "within_tolerance": bool(abs(model - meas.value) <= meas.tolerance),
                "source": meas.source,
            }
        )
    return rows


def cost(rows: list[dict]) -> float:
    """Sum of squared misfits in units of the tolerance."""
    return float(sum((r["misfit"] / r["tolerance"]) ** 2 for r in rows))


def fit_class(probe_class: str) -> dict:
    """Grid search of (h, Q_max) on the coarse grid; the Dirichlet surface scored beside."""
    scan: dict[Params, float] = {
        (h, q): cost(residual_rows({probe_class: (h, q)}, COARSE_MM, probe_class))
        for h in SCAN_H
        for q in SCAN_Q[probe_class]
    }
    best = min(scan, key=scan.__getitem__)
    return {
        "coarse_scan_cost": [
            {"h_w_m2k": k[0], "max_extraction_w": str(k[1]), "cost": round(v, 3)}
            for k, v in scan.items()
            if k is not None
        ],
        "dirichlet_cost_coarse": round(
            cost(residual_rows({probe_class: None}, COARSE_MM, probe_class)), 3
        ),
        "best": best,
    }


def _params_json(p: Params) -> dict | str:
    if p is None:
        return "dirichlet -140 C"
    return {"cooling_h_w_m2k": p[0], "max_extraction_w": str(p[1])}


def main() -> dict:
    t0 = time.perf_counter()
    fits = {c: fit_class(c) for c in CLASSES}
    best: dict[str, Params] = {c: fits[c].pop("best") for c in CLASSES}
    dirichlet: dict[str, Params] = dict.fromkeys(CLASSES)
    fine = {
        c.name: {k: round(v, 3) for k, v in metrics(c.name, best[c.probe_model], FINE_MM).items()}
        for c in CASES
        if c.name in FINE_CASES
    }
    result = {
        "model": "Robin probe surface with a capacity: Q = min(h pi d L (T_s - T_cryogen), "
        f"Q_max), T_cryogen = {ARGON_JT_TEMP_C} C (argon, Joule-Thomson to 1 atm); "
        "isothermal probe wall",
        "fitted": {c: _params_json(best[c]) for c in CLASSES},
        "scan": {
            "h_w_m2k": SCAN_H,
            "max_extraction_w": {c: [str(q) for q in SCAN_Q[c]] for c in CLASSES},
        },
        "fit_grid_mm": COARSE_MM,
        "residuals": residual_rows(best, COARSE_MM),
        "dirichlet_minus140_residuals": residual_rows(dirichlet, COARSE_MM),
        "cost_fit": round(cost(residual_rows(best, COARSE_MM)), 3),
        "cost_dirichlet_minus140": round(cost(residual_rows(dirichlet, COARSE_MM)), 3),
        "case_figures": {
            c.name: {
                "fit": {
                    k: round(v, 3)
                    for k, v in metrics(c.name, best[c.probe_model], COARSE_MM).items()
                },
                "dirichlet_minus140": {
                    k: round(v, 3) for k, v in metrics(c.name, None, COARSE_MM).items()
                },
            }
            for c in CASES
        },
        "fine_grid_check": {"grid_mm": FINE_MM, "fit": fine},
        "provenance": {
            "script": "benchmarks/cryo_fit.py",
            "measurements": "brachycryo.cryo_iceball.fit.MEASUREMENTS "
            "(from shared data/cryo/literature_isotherms.csv)",
            "tissue": "gel row of cryo_iceball/data/tissues.csv",
            "layouts": "2 in a line, 3 triangle, 4 square, side 20 mm (assumed)",
        },
    }
    write_text_atomic(
        ROOT / "cryo_iceball" / "data" / "probe_fit.json",
        json.dumps(result, indent=1) + "\n",
        overwrite=True,
    )
    bench = {
        "benchmark": "cryo_fit",
        "machine": machine_info(),
        "per_class": fits,
        "all_runs": [
            {
                "case": k[0],
                "params": _params_json(k[1]),
                "grid_mm": k[2],
                **{a: round(b, 3) for a, b in v.items()},
            }
            for k, v in _cache.items()
        ],
        "total_s": round(time.perf_counter() - t0, 1),
    }
    write_text_atomic(
        ROOT / "benchmarks" / "results" / "cryo_fit.json", json.dumps(bench, indent=1) + "\n",
        overwrite=True,
    )  # fmt: skip
    print(json.dumps({"fitted": result["fitted"], "cost": result["cost_fit"]}))
    return result


if __name__ == "__main__":
    main()
