"""Error of the empirical ice-ball mode against the physics mode (issue 4, item 3).

Generic 17G probes, gel at 37 C, 10 min freeze, 1 mm grid.  The empirical table is
calibrated from the single-probe physics run; multi-probe layouts (2 in a line, 3 on a
triangle, 4 on a square, 15 mm apart: inside the clinical 1-2 cm range and not the layouts
used to choose the merge exponent) are then estimated empirically and compared with the
physics runs: volume ratio and Dice coefficient of the 0, -20 and -40 C isotherms.
Writes ``benchmarks/results/cryo_empirical.json``.

Run: ``python -m benchmarks.cryo_empirical``.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.cryo_machine import machine_info, peak_rss_mb  # noqa: E402
from brachycryo.core.atomic import write_text_atomic  # noqa: E402
from brachycryo.core.grid import Grid  # noqa: E402
from brachycryo.cryo_iceball.bioheat import simulate  # noqa: E402
from brachycryo.cryo_iceball.empirical import (  # noqa: E402
    DEFAULT_MERGE_EXPONENT,
    calibrate_from_physics,
    empirical_min_temp,
)
from brachycryo.cryo_iceball.probes import Probe, load_probe_catalogue, protocol  # noqa: E402
from brachycryo.cryo_iceball.tissue import load_tissues  # noqa: E402

SPACING = 15.0
ISOS = (0.0, -20.0, -40.0)


def layout(n: int) -> np.ndarray:
    s = SPACING
    if n == 1:
        return np.zeros((1, 2))
    if n == 2:
        return np.array([[-s / 2, 0], [s / 2, 0]])
    if n == 3:
        r = s / math.sqrt(3)
        return np.array([[r * math.cos(a), r * math.sin(a)] for a in np.radians([90, 210, 330])])
    return np.array([[-s / 2, -s / 2], [s / 2, -s / 2], [s / 2, s / 2], [-s / 2, s / 2]])


def main() -> dict:
    cat = load_probe_catalogue()
    gel = load_tissues()["gel"]
    model = cat["generic_17g"]
    phases = protocol(("freeze", 10.0))
    t0 = time.perf_counter()
    emp = calibrate_from_physics(
        model, tissue=gel, phases=phases, initial_temp_c=37.0, margin_mm=24.0, backend="numba"
    )
    out = {
        "benchmark": "cryo_empirical",
        "machine": machine_info(),
        "setup": "generic_17g, gel 37 C, 10 min freeze, 1 mm grid, calibration from the "
        "single-probe physics run; layouts 15 mm apart (line / triangle / square)",
        "merge_exponent": DEFAULT_MERGE_EXPONENT,
        "calibration_s": round(time.perf_counter() - t0, 1),
        "calibration": [e.__dict__ for e in emp.ellipsoids],
        "layouts": [],
    }
    half = model.active_length_mm / 2
    for n in (1, 2, 3, 4):
        xy = layout(n)
        probes = [Probe(model, (float(x), float(y), -half), (0, 0, 1)) for x, y in xy]
        m = 24.0
        grid = Grid.from_bounds(
            (xy[:, 0].min() - m, xy[:, 1].min() - m, -half - m),
            (xy[:, 0].max() + m, xy[:, 1].max() + m, half + m),
            1.0,
        )
        t1 = time.perf_counter()
        phys = simulate(
            grid, probes, phases, tissues=[gel], initial_temp_c=37.0, backend="numba"
        ).min_temp_c
        t_phys = time.perf_counter() - t1
        t1 = time.perf_counter()
        est = empirical_min_temp(grid, probes, {model.model: emp})
        t_emp = time.perf_counter() - t1
        row = {"n_probes": n, "physics_s": round(t_phys, 2), "empirical_s": round(t_emp, 3)}
        for iso in ISOS:
            a, b = phys <= iso, est <= iso
            va, vb = np.count_nonzero(a), np.count_nonzero(b)
            row[f"{iso:g}"] = {
                "physics_ml": round(va * 1e-3, 3),
                "empirical_ml": round(vb * 1e-3, 3),
                "volume_ratio": round(vb / va, 3),
                "dice": round(2 * np.count_nonzero(a & b) / (va + vb), 3),
            }
        out["layouts"].append(row)
        print(json.dumps(row), flush=True)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    path = ROOT / "benchmarks" / "results" / "cryo_empirical.json"
    write_text_atomic(path, json.dumps(out, indent=2, default=str), overwrite=True)
    print(f"wrote {path}")
    return out


if __name__ == "__main__":
    main()
