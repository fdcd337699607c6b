"""``[optimizer] robust`` on the demo case: the seed cost of a plan robust to needle error.

The demo spec (``planning/examples/demo_abdomen.toml``) with ``[optimizer] robust =
{ scenarios = N, min_probability = 0.9, error_model = MODEL }`` is planned and written under
``--work`` (default ``~/.cache/brachycryo/robust-plan-demo``); the written folder is then
re-evaluated by ``brachycryo robust``'s engine with the same model, seed and scenario count,
and its probabilities are recorded beside the optimiser's.  Recorded: every round (margins,
seeds, needles, probabilities), the seed cost versus the nominal plan, and the CPU and
wall-clock seconds of the plan.

Run: ``python -m benchmarks.robust_plan_demo [--scenarios 100] [--model template]
[--needle-spacing-mm P] [--seed-spacing-mm S]`` -> ``benchmarks/results/robust_plan_demo.json``
(a denser template shows what the target costs when the demo's 10 mm lattice binds).
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tomllib
from importlib import resources
from pathlib import Path

from benchmarks.common import RESULTS, machine_info


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=100)
    ap.add_argument("--model", default="template")
    ap.add_argument("--min-probability", type=float, default=0.9)
    ap.add_argument("--needle-spacing-mm", type=float, help="template pitch (demo: 10)")
    ap.add_argument("--seed-spacing-mm", type=float, help="seed spacing on a needle (demo: 10)")
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    ap.add_argument("--work", type=Path, default=cache / "brachycryo" / "robust-plan-demo")
    ap.add_argument("--out", type=Path, default=RESULTS / "robust_plan_demo.json")
    args = ap.parse_args()

    from brachycryo.planning.evaluate import evaluate_zoned_plan
    from brachycryo.planning.outputs import robust_json
    from brachycryo.planning.pipeline import make_plan
    from brachycryo.planning.spec import parse_plan_spec
    from brachycryo.reports.plan import write_plan_folder
    from brachycryo.robustness.error_model import load_error_model
    from brachycryo.robustness.plan_folder import read_plan_folder
    from brachycryo.robustness.scenarios import RobustOptions, evaluate_robustness

    text = resources.files("brachycryo.planning").joinpath("examples/demo_abdomen.toml").read_text()
    doc = tomllib.loads(text)
    doc.setdefault("optimizer", {})["robust"] = {
        "scenarios": args.scenarios,
        "min_probability": args.min_probability,
        "error_model": args.model,
    }
    label = "planning/examples/demo_abdomen.toml + [optimizer] robust"
    for key, value in (("spacing_mm", args.needle_spacing_mm),
                       ("seed_spacing_mm", args.seed_spacing_mm)):  # fmt: skip
        if value is not None:
            doc["needles"][key] = value
            label += f", [needles] {key} = {value:g}"
    spec = parse_plan_spec(doc, base_dir=args.work)
    before = machine_info()
    w0, c0 = time.perf_counter(), time.process_time()
    result = make_plan(spec, args.work, overwrite=True)
    w1, c1 = time.perf_counter(), time.process_time()
    metrics = evaluate_zoned_plan(result)
    write_plan_folder(result, metrics, args.work, report_html=False, overwrite=True)
    inputs = read_plan_folder(args.work)
    again = evaluate_robustness(
        inputs, load_error_model(args.model), RobustOptions(n_scenarios=args.scenarios)
    )
    assert result.robust is not None
    out = {
        "spec": label,
        "robust": robust_json(result.robust),
        "reevaluated_written_plan": {
            "p_d90_ge_rx": {z.name: z.p_d90 for z in again.zones},
            "p_limit_met": {f"{x.roi} {x.metric}": x.p_met for x in again.limits},
        },
        "feasible": metrics.feasible,
        "plan_wall_s": round(w1 - w0, 1),
        "plan_cpu_s": round(c1 - c0, 1),
        "machine_before": before,
        "machine_after": machine_info(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if not k.startswith("machine")}, indent=2))


if __name__ == "__main__":
    main()
