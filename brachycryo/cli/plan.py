"""``brachycryo plan PLAN.toml --out DIR``: a zoned seed + cryo plan with all its outputs."""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from brachycryo.cli.dose import add_dose_bits_option
from brachycryo.core.atomic import check_writable
from brachycryo.core.progress import tqdm_callback

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


@contextlib.contextmanager
def _nothing_left_on_failure(out_dir: Path) -> Iterator[None]:
    """When planning fails (a bad case, the wall-clock safety net, Ctrl-C), remove what
    this run created before it: the output folder, or the phantom case written into it."""
    created_out = not out_dir.exists()
    case_dir = out_dir / "case"
    created_case = not case_dir.exists()
    try:
        yield
    except BaseException:
        if created_out and out_dir.exists():
            shutil.rmtree(out_dir)
        elif created_case and case_dir.exists():
            shutil.rmtree(case_dir)
        raise


def execute(spec: PlanSpec, out_dir: str | os.PathLike, args: argparse.Namespace) -> int:
    """Plan ``spec``, write its outputs to ``out_dir`` and print a summary; the exit code
    (3 when the plan cannot meet its goals without breaking an OAR limit; 4, with nothing
    written, when ``[optimizer] max_wall_s`` passed first)."""
    from brachycryo.planning.evaluate import evaluate_zoned_plan
    from brachycryo.planning.outputs import PLAN_OUTPUT_NAMES
    from brachycryo.planning.pipeline import make_plan
    from brachycryo.reports.plan import write_plan_folder

    for name in PLAN_OUTPUT_NAMES.values():  # refuse before computing, not after
        check_writable(Path(out_dir) / name, overwrite=args.overwrite)
    with _nothing_left_on_failure(Path(out_dir)), tqdm_callback("plan", disable=args.quiet) as cb:
        result = make_plan(
            spec, out_dir, backend=args.backend, progress=cb, overwrite=args.overwrite
        )
    metrics = evaluate_zoned_plan(result)
    paths = write_plan_folder(
        result,
        metrics,
        out_dir,
        overwrite=args.overwrite,
        report_html=not args.no_report,
        dose_bits=args.dose_bits,
    )
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
