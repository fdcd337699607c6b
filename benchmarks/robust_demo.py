"""``brachycryo robust`` on the demo plan: 1,000 scenarios of the ``template`` error model.

The demo plan (``brachycryo demo``: two seed lesions, ~150 seeds on ~55 needles, four OAR
limits) is made once under ``--plan-dir`` (default ``~/.cache/brachycryo/robust-demo-plan``)
unless that folder already holds a plan.  Timed: reading and sampling the plan folder, and
the scenarios (wall-clock and this process's CPU seconds, ``time.process_time``: steadier than
wall-clock on a shared machine; numba's threads count in it).  The issue's target: 1,000
scenarios in <= 3 min on the 2-core CI machine.

Run: ``python -m benchmarks.robust_demo [--scenarios 1000] [--backend numba] [--plan-dir DIR]``
-> ``benchmarks/results/robust_demo.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from benchmarks.common import RESULTS, machine_info


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
    n_points = sum(len(z.point_cc) for z in inputs.zones)
    n_points += sum(len(s.point_cc) for s in inputs.oars.values())
    out = {
        "plan": str(args.plan_dir),
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
    print(json.dumps({k: v for k, v in out.items() if k != "summary"}, indent=2))


if __name__ == "__main__":
    main()
