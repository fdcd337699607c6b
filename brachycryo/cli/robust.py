"""``brachycryo robust``: robustness of a seed plan to needle placement error."""

from __future__ import annotations

import argparse
from pathlib import Path

from brachycryo.core.progress import tqdm_callback
from brachycryo.core.staging import OutputStage

#: The files written into --out (brachycryo.robustness.outputs.OUTPUT_NAMES; kept here so
#: that the command imports nothing heavy before it runs).
OUTPUT_NAMES = ("robust.json", "robust.csv", "robust.html")


def _positive_int(text: str) -> int:
    n = int(text)
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {n}")
    return n


def _seed(text: str) -> int:
    n = int(text)
    if n < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {n}")
    return n


def _spacing_mm(text: str) -> float:
    v = float(text)
    if not 0.2 <= v <= 20.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be 0.2 to 20 mm, got {text}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "robust",
        help="probabilities and bands of D90, V100 and OAR limits under needle placement error",
        description=(
            "Draw needle placement errors (entry, angle, depth per needle; jitter and loss per "
            "seed), recompute the TG-43 dose of each perturbed implant, and report per zone "
            "P(D90 >= Rx), P(V100 >= 90 %%) and 5/50/95 %% bands, per OAR limit P(met) and the "
            "95th percentile, beside the nominal plan."
        ),
    )
    p.add_argument(
        "plan_dir", metavar="PLAN_DIR", help="a `brachycryo plan` / `demo` output folder"
    )
    p.add_argument("--out", required=True, help="output folder (robust.json, .csv, .html)")
    p.add_argument("--scenarios", type=_positive_int, default=1000, help="number of scenarios")
    p.add_argument(
        "--error-model",
        default="template",
        help="template | freehand | FILE.toml (default template)",
    )
    p.add_argument("--seed", type=_seed, default=0, help="random seed of the scenarios")
    p.add_argument("--backend", default="auto", choices=("auto", "numpy", "numba", "cupy"))
    p.add_argument("--spacing-mm", type=_spacing_mm, default=2.0, help="sampling lattice (mm)")
    p.add_argument(
        "--max-points",
        type=_positive_int,
        default=6000,
        help="sample points per structure at most: a larger structure gets a coarser lattice "
        "(default 6000)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    p.set_defaults(func=run, command_name="robust")


def run(args: argparse.Namespace) -> int:
    from brachycryo.reports.robust import page_html
    from brachycryo.robustness.error_model import load_error_model
    from brachycryo.robustness.outputs import table_csv, write_outputs
    from brachycryo.robustness.plan_folder import read_plan_folder
    from brachycryo.robustness.scenarios import RobustOptions, evaluate_robustness

    model = load_error_model(args.error_model)
    out = Path(args.out)
    dest = {name: out / name for name in OUTPUT_NAMES}
    with OutputStage(list(dest.values()), overwrite=args.overwrite) as stage:
        inputs = read_plan_folder(
            args.plan_dir, spacing_mm=args.spacing_mm, max_points=args.max_points
        )
        options = RobustOptions(n_scenarios=args.scenarios, seed=args.seed, backend=args.backend)
        with tqdm_callback("robust", disable=args.quiet) as cb:
            result = evaluate_robustness(inputs, model, options, progress=cb)
        staged = {name: stage.path(p) for name, p in dest.items()}
        write_outputs(result, staged, page_html(result))
    if not args.quiet:
        print(table_csv(result), end="")
    return 0
