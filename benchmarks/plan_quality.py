"""Zoned plan quality and speed against a uniform-loading baseline and a MILP, on phantoms.

For each phantom seed the demo specification (``planning/examples/demo_abdomen.toml``) is
planned with the optimiser, and in the same run

* a baseline loading rule is evaluated on the same needle tracks: every track loaded with
  seeds every ``seed_spacing_mm`` inside the seed target (uniform loading of the peripheral
  zone the ice does not reach), the strength scaled so that the seed target's D90 equals
  the prescription (the issue's rule), and also scaled to the optimised plan's V100
  (equal coverage), so OAR doses are compared at equal coverage too;
* the same optimisation problem (the same matrices) is given to the HiGHS MILP of
  :mod:`brachycryo.planning.milp` with a time limit (``--milp-s``), to justify the default method.

Reported per case: V100, D90, V150, V200 of the bulky lesion's seed target, seeds,
needles, total S_K, OAR metrics (DVH from the contours) of every plan, and run times.
Writes ``benchmarks/results/plan_quality.json``.

Run: ``python -m benchmarks.plan_quality [--seeds 0 1 2] [--milp-s 120]``.
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

from brachycryo.core.seeds import Seeds
from brachycryo.dose_kernels import dose_on_grid
from brachycryo.planning.evaluate import evaluate_zoned_plan
from brachycryo.planning.milp import select_seeds_milp
from brachycryo.planning.pipeline import make_plan
from brachycryo.planning.spec import load_plan_spec
from brachycryo.qa.dvh import dvh_from_mask
from brachycryo.qa.metrics import metric_value, structure_metrics

RESULTS = Path(__file__).resolve().parent / "results" / "plan_quality.json"


def _baseline(result, lesion: str, v100_pct: float | None) -> dict:
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
    dvh_1u = dvh_from_mask(target, grid, dose_1u, grid)
    rx = spec.prescription_gy
    out = {
        "rule": "uniform loading of the seed target every seed_spacing_mm on every track",
        "n_seeds": len(chosen),
        "n_needles": len(set(cand.needle[chosen].tolist())),
    }
    scalings = {"d90_eq_rx": rx / metric_value(dvh_1u, "D90")}
    if v100_pct is not None:  # the dose to (v100_pct) % of the target = Rx
        scalings["equal_v100"] = rx / metric_value(dvh_1u, f"D{v100_pct:.6f}")
    for name, sk in scalings.items():
        dose = dose_1u * sk
        m = structure_metrics(dvh_from_mask(target, grid, dose, grid), prescription_gy=rx)
        out[name] = {
            "sk_u_per_seed": round(float(sk), 4),
            "total_sk_u": round(float(sk * len(chosen)), 3),
            "seed_target": {k: m[k] for k in ("v100_pct", "v150_pct", "v200_pct", "d90_gy")},
            "oars": _oar_metrics(result, dose),
        }
    return out


def _oar_metrics(result, dose) -> dict:
    """The limited metric of every OAR limit, from the contours (as metrics.json does)."""
    evaluated = evaluate_zoned_plan(dataclasses.replace(result, dose_gy=dose))
    return {f"{c.roi} {c.metric}": c.value for c in evaluated.constraints}


def _milp(result, time_limit_s: float) -> dict:
    """The same problem (matrices of the last optimiser round) solved as a MILP by HiGHS."""
    spec = result.spec
    prob = result.problem
    cand = result.candidates
    t0 = time.perf_counter()
    sel, info = select_seeds_milp(
        prob.zones, prob.constraints, sk_u=spec.sk_u, needle=cand.needle,
        exclusions=cand.exclusions, max_needles=spec.needles.max_needles,
        v100_min_pct=spec.optimizer.v100_min_pct, needle_weight=spec.optimizer.needle_weight,
        node_limit=10**9, time_limit_s=time_limit_s,  # a reference: its best within the time
    )  # fmt: skip
    out = {
        "status": info.status,
        "mip_gap": info.mip_gap,
        "time_s": round(time.perf_counter() - t0, 1),
        "n_seeds": int(sel.chosen.size),
        "n_needles": sel.n_needles,
        "feasible_on_sample_points": sel.feasible,
        "sample_point_coverage": sel.coverage,
    }
    if sel.chosen.size:
        pos = cand.positions_mm[sel.chosen]
        dose = dose_on_grid(
            Seeds(pos, spec.sk_u, cand.directions[sel.chosen]), result.grid, spec.seed_model,
            dtype=np.float64,
        )  # fmt: skip
        target = result.zones["GTV_Bulky"].seed_target
        m = structure_metrics(
            dvh_from_mask(target, result.grid, dose, result.grid),
            prescription_gy=spec.prescription_gy,
        )
        out["seed_target"] = {k: m[k] for k in ("v100_pct", "v150_pct", "v200_pct", "d90_gy")}
        out["oars"] = _oar_metrics(result, dose)
    return out


def run_case(spec, seed: int, work: Path, milp_s: float) -> dict:
    spec = dataclasses.replace(
        spec, case=dataclasses.replace(
            spec.case, phantom=dataclasses.replace(spec.case.phantom, seed=seed)
        )
    )  # fmt: skip
    t0 = time.perf_counter()
    result = make_plan(spec, work / f"case{seed}", keep_problem=milp_s > 0)
    plan_s = time.perf_counter() - t0
    metrics = evaluate_zoned_plan(result)
    lesion = "GTV_Bulky"
    block = metrics.lesions[lesion]
    ours = {
        "n_seeds": result.n_seeds,
        "n_needles": result.n_needles,
        "total_sk_u": round(result.n_seeds * spec.sk_u, 3),
        "seed_target": {k: metrics.structures[f"{lesion}_SeedTarget"].values[k]
                        for k in ("v100_pct", "v150_pct", "v200_pct", "d90_gy")},
        "oars": {c.roi + " " + c.metric: c.value for c in metrics.constraints},
        "constraints_passed": all(c.passed for c in metrics.constraints),
        "feasible": metrics.feasible,
        "time_s": round(plan_s, 1),
        "timings_s": metrics.timings_s,
        "gtv_bulky_cc": block.gtv_volume_cc,
        "core_cc": block.core_volume_cc,
        "seed_target_cc": block.seed_target_volume_cc,
    }  # fmt: skip
    ours["sample_point_coverage"] = result.selection.coverage
    t0 = time.perf_counter()
    base = _baseline(result, lesion, ours["seed_target"]["v100_pct"])
    base["time_s"] = round(time.perf_counter() - t0, 1)
    case = {"phantom_seed": seed, "optimised": ours, "baseline": base}
    if milp_s > 0:
        case["milp"] = _milp(result, milp_s)
    return case


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--milp-s", type=float, default=120.0, help="MILP time limit (0: skip)")
    args = ap.parse_args()
    text = resources.files("brachycryo.planning").joinpath("examples/demo_abdomen.toml").read_text()
    with tempfile.TemporaryDirectory() as tmp:
        spec_path = Path(tmp) / "plan.toml"
        spec_path.write_text(text)
        spec = load_plan_spec(spec_path)
        cases = [run_case(spec, s, Path(tmp), args.milp_s) for s in args.seeds]
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
        line = (
            f"phantom {c['phantom_seed']}: optimised {o['n_seeds']} seeds "
            f"V100 {o['seed_target']['v100_pct']:.1f} D90 {o['seed_target']['d90_gy']:.1f} "
            f"V150 {o['seed_target']['v150_pct']:.1f} OAR {o['oars']} ({o['time_s']} s)\n"
        )
        for name in ("d90_eq_rx", "equal_v100"):
            if name in b:
                bb = b[name]
                line += (
                    f"  baseline[{name}] {b['n_seeds']} seeds x {bb['sk_u_per_seed']} U V100 "
                    f"{bb['seed_target']['v100_pct']:.1f} V150 {bb['seed_target']['v150_pct']:.1f}"
                    f" OAR {bb['oars']}\n"
                )
        if "milp" in c:
            m = c["milp"]
            line += (
                f"  MILP {m['n_seeds']} seeds, {m['status']}, gap {m['mip_gap']}, {m['time_s']} s"
            )
        print(line)


if __name__ == "__main__":
    main()
