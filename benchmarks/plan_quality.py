"""Zoned plan quality and speed against a uniform-loading baseline, on several phantoms.

For each phantom seed the demo specification (``planning/examples/demo_abdomen.toml``) is
planned with the optimiser, and in the same run a baseline loading rule is evaluated on
the same needle tracks: every track loaded with seeds every ``seed_spacing_mm`` inside
the seed target (uniform loading of the peripheral zone the ice does not reach), the
strength scaled so that the seed target's D90 equals the prescription.  Reported per case:
V100, D90, V150, V200 of the bulky lesion's seed target, seeds, needles, total S_K, OAR
metrics of both plans, and run times.  Writes ``benchmarks/results/plan_quality.json``.

Run: ``python -m benchmarks.plan_quality [--seeds 0 1 2]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import tempfile
import time
from importlib import resources
from pathlib import Path

import numpy as np

from dose_kernels import Seeds, dose_on_grid
from planning.evaluate import evaluate_plan
from planning.pipeline import make_plan
from planning.spec import load_plan_spec
from qa.dvh import dvh_from_mask, dvh_from_roi
from qa.metrics import metric_value, structure_metrics

RESULTS = Path(__file__).resolve().parent / "results" / "plan_quality.json"


def _baseline(result, lesion: str) -> dict:
    """Uniform loading of the lesion's seed target on the plan's candidate tracks."""
    spec = result.spec
    cand = result.candidates
    target = result.zones[lesion].seed_target
    grid = result.grid
    chosen = []
    for k in range(len(cand.tracks)):
        idx = np.nonzero(cand.needle == k)[0]
        if idx.size == 0:
            continue
        order = idx[np.argsort(cand.depth_mm[idx])]
        last = -np.inf
        for n in order:  # every seed_spacing along the track, from the shallowest
            if cand.depth_mm[n] - last >= spec.needles.seed_spacing_mm - 1e-6:
                chosen.append(n)
                last = cand.depth_mm[n]
    chosen = np.asarray(chosen)
    chosen = chosen[grid.sample_nearest(target, cand.positions_mm[chosen], outside=False)]
    pos, dirs = cand.positions_mm[chosen], cand.directions[chosen]
    dose_1u = dose_on_grid(Seeds(pos, 1.0, dirs), grid, spec.seed_model, dtype=np.float64)
    d90_1u = metric_value(dvh_from_mask(target, grid, dose_1u, grid), "D90")
    sk = spec.prescription_gy / d90_1u
    dose = dose_1u * sk
    rx = spec.prescription_gy
    m = structure_metrics(dvh_from_mask(target, grid, dose, grid), prescription_gy=rx)
    oars = {}
    for limit in spec.oars:
        dvh = dvh_from_roi(
            result.case.structures.roi(limit.roi), dose, grid,
            slice_thickness_mm=result.case.ct.grid.spacing_mm[2],
        )  # fmt: skip
        oars[limit.roi] = {
            k: structure_metrics(dvh)[k] for k in ("dmax_gy", "d2cc_gy", "d0.1cc_gy")
        }
    return {
        "rule": "uniform loading of the seed target every seed_spacing_mm on every track, "
        "strength scaled to D90 = prescription",
        "n_seeds": len(chosen),
        "n_needles": len(set(cand.needle[chosen].tolist())),
        "sk_u_per_seed": round(float(sk), 4),
        "total_sk_u": round(float(sk * len(chosen)), 3),
        "seed_target": {k: m[k] for k in ("v100_pct", "v150_pct", "v200_pct", "d90_gy")},
        "oars": oars,
    }


def run_case(spec, seed: int, work: Path) -> dict:
    spec = dataclasses.replace(
        spec, case=dataclasses.replace(
            spec.case, phantom=dataclasses.replace(spec.case.phantom, seed=seed)
        )
    )  # fmt: skip
    t0 = time.perf_counter()
    result = make_plan(spec, work / f"case{seed}")
    plan_s = time.perf_counter() - t0
    doc = evaluate_plan(result).doc
    lesion = "GTV_Bulky"
    ours = {
        "n_seeds": result.n_seeds,
        "n_needles": result.n_needles,
        "total_sk_u": round(result.n_seeds * spec.sk_u, 3),
        "seed_target": {k: doc["structures"][f"{lesion}_SeedTarget"][k]
                        for k in ("v100_pct", "v150_pct", "v200_pct", "d90_gy")},
        "oars": {c["roi"] + " " + c["metric"]: c["value"] for c in doc["constraints"]},
        "constraints_passed": all(c["passed"] for c in doc["constraints"]),
        "feasible": doc["feasible"],
        "time_s": round(plan_s, 1),
        "timings_s": doc["timings_s"],
        "gtv_bulky_cc": doc["lesions"][lesion]["gtv_volume_cc"],
        "core_cc": doc["lesions"][lesion]["core_volume_cc"],
        "seed_target_cc": doc["lesions"][lesion]["seed_target_volume_cc"],
    }  # fmt: skip
    t0 = time.perf_counter()
    base = _baseline(result, lesion)
    base["time_s"] = round(time.perf_counter() - t0, 1)
    return {"phantom_seed": seed, "optimised": ours, "baseline": base}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = ap.parse_args()
    text = resources.files("planning").joinpath("examples/demo_abdomen.toml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "plan.toml"
        spec_path.write_text(text)
        spec = load_plan_spec(spec_path)
        cases = [run_case(spec, s, Path(tmp)) for s in args.seeds]
    out = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "python": platform.python_version(),
            "note": "2-core development machine, shared with other work during the run",
        },
        "spec": "planning/examples/demo_abdomen.toml (phantom seed varied)",
        "cases": cases,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    for c in cases:
        o, b = c["optimised"], c["baseline"]
        print(
            f"phantom {c['phantom_seed']}: optimised {o['n_seeds']} seeds "
            f"V100 {o['seed_target']['v100_pct']:.1f} D90 {o['seed_target']['d90_gy']:.1f} "
            f"V150 {o['seed_target']['v150_pct']:.1f} ({o['time_s']} s) | baseline "
            f"{b['n_seeds']} seeds x {b['sk_u_per_seed']} U V100 "
            f"{b['seed_target']['v100_pct']:.1f} V150 {b['seed_target']['v150_pct']:.1f}"
        )


if __name__ == "__main__":
    main()
