"""``brachycryo plan PLAN.toml --out DIR``: a zoned seed + cryo plan with all its outputs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from brachycryo.cli.dose import add_dose_bits_option
from brachycryo.core.atomic import write_text_atomic
from brachycryo.core.progress import tqdm_callback
from brachycryo.core.staging import OutputStage, refuse_existing

if TYPE_CHECKING:
    from brachycryo.planning.evaluate import LesionMetrics
    from brachycryo.planning.spec import PlanSpec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plan",
        help="plan cryo probes and seeds for the lesions of a TOML plan specification",
        description=(
            "Read PLAN.toml, plan the cryo probe layout, then the seeds under hard OAR limits; "
            "write RTPLAN, RTDOSE, RTSTRUCT (zones, isotherms), metrics.json, needles.csv and "
            "report.html to --out."
        ),
    )
    p.add_argument("spec", help="plan specification (TOML)")
    p.add_argument("--out", required=True, help="output folder")
    add_common_options(p)
    p.set_defaults(func=run, command_name="plan")


def add_common_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--backend", choices=["auto", "numpy", "numba", "cupy"], default=None,
                   help="dose backend (default: the spec's [dose] backend, else auto)")  # fmt: skip
    add_dose_bits_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")


def execute(
    spec: PlanSpec,
    out_dir: str | os.PathLike,
    args: argparse.Namespace,
    *,
    extra_files: dict[str, str] | None = None,
) -> int:
    """Plan ``spec``, write its outputs (and ``extra_files``, {name: text}) to ``out_dir``
    and print a summary; the exit code (3 when the plan cannot meet its goals without
    breaking an OAR limit; 4, with nothing written, when ``[optimizer] max_wall_s``
    passed first).  Everything is written into a staging folder and moved into
    ``out_dir`` together at the end: a run that fails (a bad case, a full disk, Ctrl-C)
    leaves nothing (:mod:`brachycryo.core.staging`)."""
    from brachycryo.planning.evaluate import evaluate_zoned_plan
    from brachycryo.planning.outputs import PLAN_OUTPUT_NAMES
    from brachycryo.planning.pipeline import make_plan
    from brachycryo.reports.plan import robust_lines, write_plan_folder

    out = Path(out_dir)
    names = [*PLAN_OUTPUT_NAMES.values(), *(extra_files or {})]
    if spec.case.phantom is not None:
        names.append("case")  # the phantom CT the plan's files reference
    refuse_existing(out, names, overwrite=args.overwrite)  # before computing, not after
    with OutputStage([out], folders=[out], overwrite=args.overwrite) as stage:
        staged = stage.path(out)
        for name, text in (extra_files or {}).items():
            write_text_atomic(staged / name, text)
        with tqdm_callback("plan", disable=args.quiet) as cb:
            result = make_plan(spec, staged, backend=args.backend, progress=cb, overwrite=True)
        metrics = evaluate_zoned_plan(result)
        paths = write_plan_folder(
            result,
            metrics,
            staged,
            overwrite=True,
            report_html=not args.no_report,
            dose_bits=args.dose_bits,
        )
    paths = {kind: out / p.relative_to(staged) for kind, p in paths.items()}
    print(f"{result.n_seeds} seeds on {result.n_needles} needles "
          f"({metrics.total_sk_u:.2f} U); backend {result.backend}; "
          f"{result.timings_s['total_s']:.1f} s")  # fmt: skip
    for name, block in metrics.lesions.items():
        print("  " + _lesion_line(name, block))
    for c in metrics.constraints:
        flag = "ok  " if c.passed else "FAIL"
        print(f"  [{flag}] {c.roi} {c.metric} = {c.value} (limit {c.limit})")
    for g in metrics.goals:
        if g.at_most:  # hot-spot goals: reported, they do not make a plan infeasible
            state = "met" if g.passed else "NOT met"
            print(f"  [goal] {g.roi} {g.metric} = {g.value} % (goal <= {g.goal:g} %): {state}")
    if result.robust is not None:
        print("  " + "\n  ".join(robust_lines(result.robust)))
    for kind, path in paths.items():
        print(f"  {kind:<9} {path}")
    if not metrics.feasible:
        print(
            "plan does not meet its goals within its limits; binding: "
            + ", ".join(metrics.binding),
            file=sys.stderr,
        )
        return 3
    return 0


def _lesion_line(name: str, block: LesionMetrics) -> str:
    """``GTV (zoned); 4 probes, GTV ablated 26 %; seed target V100 95.0 %, D90 126.8 Gy``."""
    parts = [f"{name} ({block.allocation})"]
    if block.cryo is not None:
        c = block.cryo
        parts.append(f"{c.n_probes} probes, GTV ablated {c.gtv_ablated_pct:.0f} %")
    if block.seeds is not None:
        s = block.seeds
        parts.append(f"seed target V100 {s.v100_pct:.1f} %, D90 {s.d90_gy:.1f} Gy")
    return "; ".join(parts)


def run(args: argparse.Namespace) -> int:
    from brachycryo.planning.spec import load_plan_spec

    return execute(load_plan_spec(args.spec), args.out, args)
