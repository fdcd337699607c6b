"""``brachycryo dvh-batch``: DVH metrics of every plan of a cohort in one tidy table.

Exit status: 0 when every unit (RTDOSE) was evaluated and every DICOM file could be read;
1 when some units failed or files were unreadable (the manifest says which and why; the
table holds the others); 2 when nothing could be evaluated (no RTDOSE found, or every unit
failed).
"""

from __future__ import annotations

import argparse
import logging

from brachycryo.core.progress import tqdm_callback


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dvh-batch",
        help="DVH metrics of a whole cohort (RTDOSE/RTPLAN/RTSTRUCT found by UID) as one table",
        description=(
            "Walk COHORT_DIR, match each RTDOSE to its RTPLAN and RTSTRUCT by their UIDs "
            "(never file names; patients by PatientID), compute the DVH metrics of every "
            "structure (those of 'brachycryo dvh', plus --dx/--dcc/--vx/--vgy) and write one "
            "tidy table (patient, study, plan, dose, structure, metric, value, unit) as "
            "Parquet, a manifest OUT.manifest.json (status and reason per unit) and per-unit "
            "parts in OUT.parts/ so that an interrupted run resumes where it stopped."
        ),
    )
    p.add_argument("cohort_dir", metavar="COHORT_DIR", help="folder holding the cohort's DICOM")
    p.add_argument("--out", required=True, metavar="OUT.parquet", help="the metrics table")
    p.add_argument("--csv", action="store_true", help="also write OUT.csv")
    p.add_argument(
        "--prescription-gy",
        type=float,
        default=None,
        help="prescription dose for every plan (default: each RTPLAN's own prescription)",
    )
    p.add_argument(
        "--dx", type=float, nargs="+", default=(), metavar="PCT",
        help="extra Dx: dose to the hottest PCT %% of each structure (e.g. --dx 95 80)",
    )  # fmt: skip
    p.add_argument(
        "--dcc", type=float, nargs="+", default=(), metavar="CC",
        help="extra Dx cc: dose to the hottest CC cm3 (e.g. --dcc 1 5)",
    )  # fmt: skip
    p.add_argument(
        "--vx", type=float, nargs="+", default=(), metavar="PCT",
        help="extra Vx: %% of the volume receiving PCT %% of the prescription (e.g. --vx 90)",
    )  # fmt: skip
    p.add_argument(
        "--vgy", type=float, nargs="+", default=(), metavar="GY",
        help="extra V(x Gy): %% and cm3 of the volume receiving GY Gy (e.g. --vgy 100)",
    )  # fmt: skip
    p.add_argument("--target", default=None, help="ROI name whose CI / EI / HI are added")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes of a local Dask cluster (default 1: in this process, no Dask)",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="address of a running dask.distributed scheduler (e.g. tcp://host:8786)",
    )
    p.add_argument("--supersample", type=int, default=None, help="as for 'brachycryo dvh'")
    p.add_argument("--end-caps", choices=("full", "half"), default="full")
    p.add_argument(
        "--slice-thickness-mm",
        type=float,
        default=None,
        help="slab thickness of every contour plane (default: each ROI's plane spacing)",
    )
    p.add_argument(
        "--no-resume", action="store_true", help="recompute units whose part already exists"
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing table/manifest")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, command_name="dvh-batch")


def _dask_log_level(args: argparse.Namespace) -> int | None:
    """Dask's loggers: as they are with --verbose, errors only with --quiet, else warnings."""
    if logging.getLogger().isEnabledFor(logging.INFO):
        return None
    return logging.ERROR if args.quiet else logging.WARNING


def run(args: argparse.Namespace) -> int:
    from brachycryo.cohort.batch import BatchOptions, run_batch

    options = BatchOptions(
        prescription_gy=args.prescription_gy,
        d_pct=tuple(args.dx),
        d_cc=tuple(args.dcc),
        v_pct=tuple(args.vx),
        v_gy=tuple(args.vgy),
        target=args.target,
        supersample=args.supersample,
        end_caps=args.end_caps,
        slice_thickness_mm=args.slice_thickness_mm,
    )
    with tqdm_callback("dvh-batch", disable=args.quiet) as cb:
        result = run_batch(
            args.cohort_dir,
            args.out,
            options=options,
            workers=args.workers,
            scheduler=args.scheduler,
            csv=args.csv,
            overwrite=args.overwrite,
            resume=not args.no_resume,
            progress=cb,
            dask_log_level=_dask_log_level(args),
        )
    s = result.counts
    print(
        f"dvh-batch: {s['units']} units of {s['patients']} patients: {s['ok']} computed, "
        f"{s['resumed']} resumed, {s['failed']} failed; {s['unreadable_files']} unreadable "
        f"files; {s['rows']} rows -> {result.paths['table']} "
        f"(manifest {result.paths['manifest']})"
    )
    for e in result.manifest["units"]:
        if e["status"] == "failed":
            print(f"failed: {e['patient']} {e['files']['rtdose']}: {e['reason']}")
    for f in result.manifest["unreadable_files"]:
        print(f"unreadable: {f['path']}: {f['reason']}")
    if s["ok"] + s["resumed"] == 0:
        return 2
    if s["failed"] or s["unreadable_files"]:
        return 1
    return 0
