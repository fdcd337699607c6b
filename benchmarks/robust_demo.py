"""``brachycryo robust`` on the demo plan: 1,000 scenarios of the ``template`` error model.

The demo plan (``brachycryo demo``: two seed lesions, ~150 seeds on ~55 needles, four OAR
limits) is made once under ``--plan-dir`` (default ``~/.cache/brachycryo/robust-demo-plan``)
unless that folder already holds a plan.  Timed: reading and sampling the plan folder, and
the scenarios (wall-clock and this process's CPU seconds, ``time.process_time``: steadier than
wall-clock on a shared machine; numba's threads count in it).  The issue's target: 1,000
scenarios in <= 3 min on the 2-core CI machine.

Sampling density: the structures are sampled with at most ``--max-points`` points each (a
coarser lattice for larger ones, ``robustness/plan_folder.py``).  What that changes is measured
on the first ``--compare`` scenarios (the same errors: the scenarios do not depend on the
points): the same run with every structure on the full 2 mm lattice, and the differences of
the probabilities, the D90 / V100 percentiles and the OAR 95th percentiles.

Run: ``python -m benchmarks.robust_demo [--scenarios 1000] [--backend numba] [--plan-dir DIR]``
-> ``benchmarks/results/robust_demo.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, machine_info
from brachycryo.robustness.plan_folder import MAX_POINTS


def _plan(folder: Path) -> None:
    if (folder / "metrics.json").is_file():
        return
    from brachycryo.cli import main

    if main(["demo", str(folder)]) != 0:
        raise SystemExit(f"brachycryo demo {folder} failed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=1000)
    ap.add_argument("--backend", default="numba")
    ap.add_argument("--model", default="template")
    default_dir = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    ap.add_argument(
        "--plan-dir", type=Path, default=default_dir / "brachycryo" / "robust-demo-plan"
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "robust_demo.json")
    ap.add_argument("--compare", type=int, default=200, help="scenarios of the density check")
    args = ap.parse_args()

    from brachycryo.robustness.error_model import load_error_model
    from brachycryo.robustness.outputs import result_json
    from brachycryo.robustness.plan_folder import read_plan_folder
    from brachycryo.robustness.scenarios import RobustOptions, evaluate_robustness

    _plan(args.plan_dir)
    before = machine_info()
    w0, c0 = time.perf_counter(), time.process_time()
    inputs = read_plan_folder(args.plan_dir)
    w1, c1 = time.perf_counter(), time.process_time()
    opts = RobustOptions(n_scenarios=args.scenarios, backend=args.backend)
    result = evaluate_robustness(inputs, load_error_model(args.model), opts)
    w2, c2 = time.perf_counter(), time.process_time()
    doc = result_json(result)
    for z in doc["zones"]:
        del z["dvh"]
    for lim in doc["limits"]:
        lim.pop("dvh", None)
    n_points = sum(len(z.point_cc) for z in inputs.zones)
    n_points += sum(len(s.point_cc) for s in inputs.oars.values())
    out = {
        # the plan folder's name only: no path of this machine in committed results
        "plan": args.plan_dir.name,
        "n_seeds": len(inputs.seeds),
        "n_needles": len(inputs.needle_ids),
        "n_points": n_points,
        "n_scenarios": args.scenarios,
        "backend": args.backend,
        "read_wall_s": round(w1 - w0, 2),
        "read_cpu_s": round(c1 - c0, 2),
        "scenarios_wall_s": round(w2 - w1, 2),
        "scenarios_cpu_s": round(c2 - c1, 2),
        "summary": {k: doc[k] for k in ("zones", "limits", "simulated_tip_error_mm")},
        "machine_before": before,
        "machine_after": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    out["sampling_check"] = _sampling_check(args, load_error_model(args.model))
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "summary"}, indent=2))


def _summary(folder: Path, model, n: int, backend: str, max_points: int) -> dict:
    from brachycryo.robustness.plan_folder import read_plan_folder
    from brachycryo.robustness.scenarios import RobustOptions, evaluate_robustness

    inputs = read_plan_folder(folder, max_points=max_points)
    c0 = time.process_time()
    r = evaluate_robustness(inputs, model, RobustOptions(n_scenarios=n, backend=backend))
    pts = sum(len(s.point_cc) for s in (*inputs.zones, *inputs.oars.values()))
    out: dict = {"n_points": pts, "cpu_s": round(time.process_time() - c0, 2)}
    for z in r.zones:
        p5, p50, p95 = np.percentile(z.d90_gy, [5, 50, 95])
        out[z.name] = {"volume_cc": next(s.volume_cc for s in inputs.zones if s.name == z.name),
                       "p_d90": z.p_d90, "nominal_d90_gy": z.nominal_d90_gy,
                       "d90_p5_p50_p95_gy": [p5, p50, p95]}  # fmt: skip
    for lim in r.limits:
        out[f"{lim.roi} {lim.metric}"] = {"p_met": lim.p_met, "nominal": lim.nominal,
                                          "p95": lim.p95}  # fmt: skip
    return out


def _sampling_check(args, model) -> dict:
    """The default density against the full 2 mm lattice on the same scenarios."""
    if args.compare < 1:
        return {}
    fine = _summary(args.plan_dir, model, args.compare, args.backend, 10**9)
    coarse = _summary(args.plan_dir, model, args.compare, args.backend, MAX_POINTS)
    diff = {}
    for key, f in fine.items():
        if isinstance(f, dict):
            diff[key] = {k: np.round(np.subtract(coarse[key][k], f[k]), 4).tolist() for k in f}
    return {"n_scenarios": args.compare, "max_points": MAX_POINTS, "full_2mm": fine,
            "default": coarse, "default_minus_full": diff}  # fmt: skip


if __name__ == "__main__":
    main()
