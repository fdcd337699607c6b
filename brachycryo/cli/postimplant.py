"""``brachycryo postimplant``: post-implant dosimetry from a CT, compared with the pre-plan.

Finds the seeds on the post-implant CT, computes their TG-43 dose, the DVH metrics of the
RTSTRUCT's structures and, with ``--plan``, compares with the pre-plan recomputed on the
same grid (ΔD90, ΔV100, ΔD2cc, seed displacement and migration).  Writes
RP.postimplant.dcm, RD.postimplant.dcm, seeds.csv, metrics.json and report.html into
``--out`` (see :mod:`brachycryo.postimplant.workflow`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from brachycryo.cli.dose import add_dose_bits_option
from brachycryo.core.progress import tqdm_callback
from brachycryo.core.staging import OutputStage, refuse_existing

#: Defaults of ``brachycryo.postimplant`` (``workflow.DOSE_SPACING_MM``, ``DOSE_MARGIN_MM``,
#: ``seed_comparison.MIGRATION_GATE_MM``), repeated so that building the parser imports no
#: numerical code; ``tests/cli/test_cli_startup.py`` keeps them equal.
DOSE_SPACING_MM = 1.0
DOSE_MARGIN_MM = 30.0
MIGRATION_GATE_MM = 10.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "postimplant",
        help="post-implant dosimetry: detect seeds on CT, dose, DVH, compare with the plan",
        description=(
            "Detect the seeds on a post-implant CT, compute their TG-43U1 dose and the DVH "
            "metrics of the RTSTRUCT's structures, and (with --plan) compare with the pre-plan "
            "recomputed on the same dose grid: ΔD90, ΔV100, ΔD2cc, seed displacement and "
            "migration.  Source strength, seed model, prescription and seed count come from "
            "the plan unless given; without --plan, --sk-u, --model and --prescription-gy "
            "are required."
        ),
    )
    p.add_argument("--ct", required=True, help="folder of the post-implant CT series")
    p.add_argument("--rtstruct", required=True, help="RTSTRUCT contoured on the post-implant CT")
    p.add_argument("--plan", help="pre-plan RTPLAN (same Frame of Reference as the CT)")
    p.add_argument(
        "--seed-count",
        type=int,
        help="seeds implanted (default: the plan's count, where image or plan supports it)",
    )
    p.add_argument("--sk-u", type=float, help="air-kerma strength per seed, U (default: plan)")
    p.add_argument(
        "--model",
        help="TG-43 seed model, e.g. 6711 (default: the plan's); 'auto': the model suggested "
        "from the plan's SourceManufacturer/isotope/ActiveSourceLength when unique",
    )
    p.add_argument("--prescription-gy", type=float, help="prescription dose, Gy (default: plan)")
    p.add_argument("--target", help="target ROI of CI / EI / HI (default: first PTV/CTV/GTV)")
    p.add_argument(
        "--dose-spacing-mm",
        type=float,
        default=DOSE_SPACING_MM,
        help=f"dose grid spacing (default {DOSE_SPACING_MM:g} mm)",
    )
    p.add_argument(
        "--dose-margin-mm",
        type=float,
        default=DOSE_MARGIN_MM,
        help=f"dose grid margin around the seeds (default {DOSE_MARGIN_MM:g} mm)",
    )
    p.add_argument(
        "--gate-mm",
        type=float,
        default=MIGRATION_GATE_MM,
        help=f"largest plan-to-detection distance paired (default {MIGRATION_GATE_MM:g} mm)",
    )
    p.add_argument("--series-uid", help="CT SeriesInstanceUID when the folder holds several")
    p.add_argument("--backend", choices=["auto", "numpy", "numba", "cupy"], default="auto")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-3d", action="store_true", help="no 3-D picture in the report")
    add_dose_bits_option(p)
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    p.set_defaults(func=run, command_name="postimplant")


def _fmt(v, unit: str = "", signed: bool = False) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return (f"{v:+.2f}" if signed else f"{v:.2f}") + unit


def summary(result) -> str:
    """A few lines for the terminal: seeds, target D90 / V100 and the comparison."""
    det = result.detection
    lines = [f"{det.n_seeds} seeds detected ({result.model.name}, {result.sk_u:g} U each)"]
    doc = result.comparison_doc()
    for name, m in result.evaluation.metrics.items():
        text = f"{name}: D90 {_fmt(m.get('d90_gy'), ' Gy')}, V100 {_fmt(m.get('v100_pct'), ' %')}"
        if doc is not None:
            row = doc["structures"][name]
            text += (
                f" (plan {_fmt(row['d90_gy_plan'], ' Gy')}, "
                f"ΔD90 {_fmt(row['delta_d90_gy'], ' Gy', True)}, "
                f"ΔV100 {_fmt(row['delta_v100_pct'], ' pp', True)})"
            )
        lines.append(text)
    if doc is not None:
        s = doc["seeds"]
        d = s["displacement"]
        lines.append(
            f"seeds planned {s['planned']}, detected {s['detected']}, paired {s['matched']}; "
            f"displacement median {_fmt(d['median_mm'], ' mm')}, "
            f"95th pct {_fmt(d['p95_mm'], ' mm')}, max {_fmt(d['max_mm'], ' mm')}; "
            f"missing {len(s['missing'])}, far {len(s['far_detections'])}"
        )
    for c in det.suspicious:
        lines.append(f"suspicious cluster {c.cluster}: {c.reason}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from brachycryo.postimplant.workflow import OUTPUT_NAMES, PostImplantOptions, run_postimplant
    from brachycryo.reports.postimplant import write_postimplant_folder

    out = Path(args.out)
    # refuse to start a long computation whose outputs could not be written; the outputs
    # are staged and moved into --out together (all of them, or none)
    refuse_existing(out, OUTPUT_NAMES.values(), overwrite=args.overwrite)
    with (
        OutputStage([out], folders=[out], overwrite=args.overwrite) as stage,
        tqdm_callback("postimplant", disable=args.quiet) as cb,
    ):
        options = PostImplantOptions(
            seed_count=args.seed_count,
            sk_u=args.sk_u,
            model=args.model,
            prescription_gy=args.prescription_gy,
            target=args.target,
            dose_spacing_mm=args.dose_spacing_mm,
            dose_margin_mm=args.dose_margin_mm,
            gate_mm=args.gate_mm,
            backend=args.backend,
        )
        result = run_postimplant(
            args.ct,
            args.rtstruct,
            plan=args.plan,
            series_uid=args.series_uid,
            options=options,
            progress=cb,
        )
        paths = write_postimplant_folder(
            result,
            stage.path(out),
            overwrite=True,
            render_3d=not args.no_3d,
            dose_bits=args.dose_bits,
        )
    if not args.quiet:
        print(summary(result))
        print(f"wrote {', '.join(p.name for p in paths.values())} to {out}")
    return 0
