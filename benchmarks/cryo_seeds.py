"""Isotherm shift caused by implanted I-125 seeds inside the ice ball (issue 15 item 3).

The seeds enter as a raised tissue conductivity (Maxwell-Garnett, randomly oriented
spheroids of the seed's aspect 4.5/0.8; :mod:`brachycryo.cryo_iceball.seed_conduction`).
The solver then runs one long probe (a 2-D section: one voxel along the probe, a symmetry
direction) in tumour tissue at 37 C with perfusion, 10 min freeze, 0.5 mm grid, with and
without seeds; the shift of the 0, -20 and -40 C equivalent-circle radii is reported (radii
of equal-area circles, so a shift resolves well below the grid spacing).
Seed densities: 1.5 and 2.5 seeds per cc (the range of prostate implants); seed
conductivity: titanium (22 W/m/K, the capsule) and a perfect conductor (upper bound).

Writes ``benchmarks/results/cryo_seeds.json``.  Run: ``python -m benchmarks.cryo_seeds``
(about a minute).
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from brachycryo.core.atomic import write_text_atomic  # noqa: E402
from brachycryo.core.grid import Grid  # noqa: E402
from brachycryo.cryo_iceball.bioheat import BioheatOptions, simulate  # noqa: E402
from brachycryo.cryo_iceball.probes import (  # noqa: E402
    Probe,
    load_probe_catalogue,
    protocol,
)
from brachycryo.cryo_iceball.seed_conduction import (  # noqa: E402
    equivalent_radius_mm,
    seed_volume_fraction,
    tissue_with_seeds,
)
from brachycryo.cryo_iceball.tissue import Tissue, load_tissues  # noqa: E402

GRID_MM = 0.5
HALF_WIDTH_MM = 30.0
ISOTHERMS_C = (0.0, -20.0, -40.0)


def radii_mm(tissue: Tissue, probe_model: str) -> dict[str, float]:
    model = load_probe_catalogue()[probe_model]  # (the solver scales a Robin probe to the slab)
    grid = Grid.from_bounds(
        (-HALF_WIDTH_MM, -HALF_WIDTH_MM, 0.0), (HALF_WIDTH_MM, HALF_WIDTH_MM, 0.0), GRID_MM
    )
    half = model.active_length_mm / 2
    res = simulate(
        grid,
        [Probe(model, (0.0, 0.0, -half), (0.0, 0.0, 1.0))],
        protocol(("freeze", 10.0)),
        tissues=[tissue],
        initial_temp_c=37.0,
        backend="numba",
        options=BioheatOptions(isotherms_c=ISOTHERMS_C),
    )
    return {
        f"{t:g}": round(equivalent_radius_mm(res.min_temp_c[0] <= t, GRID_MM), 3)
        for t in ISOTHERMS_C
    }


def main() -> dict:
    tumour = load_tissues()["tumor"]
    out: dict = {
        "benchmark": "cryo_seeds",
        "setup": f"2-D section, {GRID_MM} mm grid, tumour tissue 37 C, 10 min freeze",
        "rows": [],
    }
    for probe in ("generic_2p4mm", "generic_17g"):
        base = radii_mm(tumour, probe)
        for per_cc in (1.5, 2.5):
            phi = seed_volume_fraction(per_cc)
            for k_seed in (22.0, math.inf):
                t = tissue_with_seeds(tumour, phi, k_seed_w_mk=k_seed)
                got = radii_mm(t, probe)
                row = {
                    "probe": probe,
                    "seeds_per_cc": per_cc,
                    "volume_fraction": round(phi, 5),
                    "k_seed_w_mk": "inf" if math.isinf(k_seed) else k_seed,
                    "k_frozen_ratio": round(t.k_frozen_w_mk / tumour.k_frozen_w_mk, 4),
                    "k_unfrozen_ratio": round(t.k_unfrozen_w_mk / tumour.k_unfrozen_w_mk, 4),
                    "radius_without_seeds_mm": base,
                    "radius_with_seeds_mm": got,
                    "shift_mm": {k: round(got[k] - base[k], 3) for k in base},
                }
                out["rows"].append(row)
                print(json.dumps(row), flush=True)
    out["max_abs_shift_mm"] = max(abs(v) for r in out["rows"] for v in r["shift_mm"].values())
    path = ROOT / "benchmarks" / "results" / "cryo_seeds.json"
    write_text_atomic(path, json.dumps(out, indent=1) + "\n", overwrite=True)
    return out


if __name__ == "__main__":
    main()
