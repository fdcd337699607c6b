"""``brachycryo dvh``: DVH metrics of the structures of an RTSTRUCT in an RTDOSE."""

from __future__ import annotations

import argparse
import json
import logging
import math

from brachycryo.core.progress import tqdm_callback
from brachycryo.core.staging import OutputStage

log = logging.getLogger(__name__)

_TABLE_KEYS = (
    ("volume_cc", "Vol cc"),
    ("dmin_gy", "Dmin"),
    ("dmean_gy", "Dmean"),
    ("dmax_gy", "Dmax"),
    ("d90_gy", "D90"),
    ("d98_gy", "D98"),
    ("d2cc_gy", "D2cc"),
    ("d0.1cc_gy", "D0.1cc"),
    ("v100_pct", "V100%"),
    ("v150_pct", "V150%"),
    ("v200_pct", "V200%"),
)


#: Largest --supersample: 16^3 = 4096 sub-points per voxel (the default is 4).
MAX_SUPERSAMPLE = 16
#: Range of --slice-thickness-mm: no CT slice is thinner than 0.1 mm or thicker than 50 mm.
MIN_SLICE_THICKNESS_MM = 0.1
MAX_SLICE_THICKNESS_MM = 50.0


def _supersample(text: str) -> int:
    n = int(text)
    if not 1 <= n <= MAX_SUPERSAMPLE:
        raise argparse.ArgumentTypeError(f"must be 1 to {MAX_SUPERSAMPLE}, got {n}")
    return n


def _thickness_mm(text: str) -> float:
    t = float(text)
    if not MIN_SLICE_THICKNESS_MM <= t <= MAX_SLICE_THICKNESS_MM:  # NaN fails too
        raise argparse.ArgumentTypeError(
            f"must be {MIN_SLICE_THICKNESS_MM} to {MAX_SLICE_THICKNESS_MM} mm, got {text}"
        )
    return t


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dvh",
        help="DVH metrics (D90, V100, D2cc, ...) of structures in a dose",
        description=(
            "Compute DVHs of the RTSTRUCT's structures in the RTDOSE (partial-volume sampling, "
            "trilinear dose interpolation) and report volume, min/mean/max dose, D90, D98, "
            "D100, D50, D2cc, D0.1cc and, with a prescription, V100/V150/V200 (and CI/EI/HI "
            "of --target)."
        ),
    )
    p.add_argument("--rtdose", required=True, help="RT Dose file")
    p.add_argument("--rtstruct", required=True, help="RT Structure Set file")
    p.add_argument("--prescription-gy", type=float, default=None, help="prescription dose (Gy)")
    p.add_argument(
        "--roi", nargs="+", default=None, metavar="NAME", help="structures to evaluate (all)"
    )
    p.add_argument("--target", default=None, help="target ROI for CI / EI / HI")
    p.add_argument("--json", default=None, metavar="OUT.json", help="write the metrics as JSON")
    p.add_argument("--csv", default=None, metavar="OUT.csv", help="write the metrics as CSV")
    p.add_argument(
        "--supersample",
        type=_supersample,
        default=None,
        help="partial-volume sub-points per voxel axis (default 4; 2 for body-sized structures)",
    )
    p.add_argument(
        "--end-caps",
        choices=("full", "half"),
        default="full",
        help="end-cap convention: full (each contour stands for its whole slice; default) or "
        "half (structures end at their outermost contours)",
    )
    p.add_argument(
        "--slice-thickness-mm",
        type=_thickness_mm,
        default=None,
        help="CT slice thickness the contours stand for (default: their plane spacing)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar and no table")
    p.set_defaults(func=run, command_name="dvh")


def _fmt(v: float | None) -> str:
    return "-" if v is None or not math.isfinite(v) else f"{v:.2f}"


def format_table(result: dict) -> str:
    names = list(result["structures"])
    width = max([9, *(len(n) for n in names)])
    head = f"{'structure':<{width}} " + " ".join(f"{h:>8}" for _, h in _TABLE_KEYS)
    lines = [head]
    for name in names:
        m = result["structures"][name]
        lines.append(f"{name:<{width}} " + " ".join(f"{_fmt(m.get(k)):>8}" for k, _ in _TABLE_KEYS))
    if result.get("indices"):
        i = result["indices"]
        lines.append(f"{i['target']}: CI {_fmt(i['ci'])}  EI {_fmt(i['ei'])}  HI {_fmt(i['hi'])}")
    return "\n".join(lines)


#: Garbage-collector thresholds while ``dvh`` runs (Python's default: 700, 10, 10).  Reading
#: the files and loading numba's CPU target with the cached kernels allocate some 10^5
#: objects: ~300 collections, two of them full, 0.12 s of CPU of ~1.8 on the
#: ``benchmarks/cli_startup`` case; with these, 15 young ones and 2 of generation 1 (0.085 s;
#: ``gc.callbacks``).  Only cyclic garbage waits longer (100 000 objects at most).
GC_THRESHOLDS = (100_000, 1000, 1000)


def run(args: argparse.Namespace) -> int:
    import gc

    before = gc.get_threshold()
    gc.set_threshold(*GC_THRESHOLDS)
    try:
        return _run(args)
    finally:
        gc.set_threshold(*before)


def _run(args: argparse.Namespace) -> int:
    from brachycryo.core.malloc_tuning import keep_freed_memory
    from brachycryo.qa.evaluate import evaluate_files

    keep_freed_memory()  # the sampling's large temporaries reuse heap pages (system time)

    outputs = [out for out in (args.json, args.csv) if out]
    # refuse to start a long computation whose output could not be written; JSON and CSV
    # are staged and appear together, or neither does
    with OutputStage(outputs, overwrite=args.overwrite) as stage:
        with tqdm_callback("dvh", disable=args.quiet) as cb:
            ev = evaluate_files(
                args.rtdose,
                args.rtstruct,
                prescription_gy=args.prescription_gy,
                roi_names=args.roi,
                target=args.target,
                supersample=args.supersample,
                end_caps=args.end_caps,
                slice_thickness_mm=args.slice_thickness_mm,
                progress=cb,
            )
        if args.json:
            ev.write_json(stage.path(args.json), overwrite=True)
        if args.csv:
            ev.write_csv(stage.path(args.csv), overwrite=True)
    result = ev.to_json()
    if not args.quiet:
        print(format_table(result))
        for w in result["warnings"]:
            print(f"warning: {w}")
    else:
        # --quiet drops the table, never a warning that changes what the numbers mean
        for name, dvh in ev.dvhs.items():
            if dvh.volume_outside_dose_cc > 0:
                log.warning(
                    "%.3f cc of %r lies outside the dose grid (counted at 0 Gy)",
                    dvh.volume_outside_dose_cc,
                    name,
                )
        if not (args.json or args.csv):
            print(json.dumps(result, indent=2))
    return 0
