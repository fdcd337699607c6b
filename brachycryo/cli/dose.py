"""``brachycryo dose --rtplan PLAN.dcm ... --out RTDOSE.dcm``: TG-43 dose of a seed implant.

Works on any standard permanent-seed RTPLAN (seeds as control points of channels,
ReferenceAirKermaRate as S_K), ours or another system's.  The RTDOSE holds the total dose
of the permanent implant (D = Ḋ₀ · T½ / ln 2, Gy) unless ``--dose-rate`` asks for the
initial dose rate (Gy/h).
"""

from __future__ import annotations

import argparse
import warnings
from typing import TYPE_CHECKING

from brachycryo.core.errors import ConfigError, DataModelError, FrameOfReferenceError
from brachycryo.core.progress import tqdm_callback

if TYPE_CHECKING:  # the CLI imports its workers when a command runs
    from brachycryo.core.grid import Grid
    from brachycryo.dicom_io.common import StudyContext
    from brachycryo.dicom_io.rtplan import BrachyPlan

#: Margin around the seeds of the grid made by ``--spacing-mm`` (mm).
SEED_GRID_MARGIN_MM = 30.0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dose",
        help="compute the TG-43 dose of a seed RTPLAN and write it as RTDOSE",
        description=(
            "Read a permanent-seed RTPLAN (ours or another system's), compute the TG-43U1 "
            "dose on the CT grid, on the grid of an existing RTDOSE, or on a grid around the "
            "seeds, and write an RTDOSE (total dose in Gy, or the dose rate in Gy/h)."
        ),
    )
    p.add_argument("--rtplan", required=True, help="RTPLAN file with the seeds")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--ct", help="CT folder: dose on the CT grid (or resampled, --spacing-mm)")
    where.add_argument("--like", help="existing RTDOSE: dose on its grid")
    p.add_argument("--spacing-mm", type=float, help="grid spacing (alone: grid around the seeds)")
    p.add_argument("--out", required=True, help="RTDOSE file to write")
    p.add_argument("--model", help="TG-43 seed model (default: the plan's SourceModelID)")
    p.add_argument("--formalism", choices=["line", "point"], default="line")
    p.add_argument("--backend", choices=["auto", "numpy", "numba", "cupy"], default="auto")
    p.add_argument("--dose-rate", action="store_true", help="write the initial dose rate (Gy/h)")
    p.add_argument("--cutoff-mm", type=float, help="ignore seed-voxel pairs farther than this")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, command_name="dose")


def _grid(args: argparse.Namespace, plan: BrachyPlan) -> tuple[Grid, StudyContext | None]:
    from brachycryo.dicom_io.ct_series import load_ct_series
    from brachycryo.dicom_io.rtdose import read_rtdose

    if args.ct:
        ct = load_ct_series(args.ct)
        if plan.frame_of_reference_uid and ct.frame_of_reference_uid != plan.frame_of_reference_uid:
            raise FrameOfReferenceError(
                f"{args.rtplan} is in Frame of Reference {plan.frame_of_reference_uid}, the CT "
                f"in {args.ct} in {ct.frame_of_reference_uid}"
            )
        grid = ct.grid if args.spacing_mm is None else ct.grid.resampled(args.spacing_mm)
        return grid, ct.context
    if args.like:
        like = read_rtdose(args.like)
        if plan.frame_of_reference_uid and like.frame_of_reference_uid not in (
            "",
            plan.frame_of_reference_uid,
        ):
            raise FrameOfReferenceError(
                f"{args.rtplan} is in Frame of Reference {plan.frame_of_reference_uid}, "
                f"{args.like} in {like.frame_of_reference_uid}"
            )
        return like.grid, None
    raise ConfigError("give --ct, --like, or --spacing-mm", key="grid")


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from brachycryo.core.grid import Grid
    from brachycryo.dicom_io.common import StudyContext, read_dataset
    from brachycryo.dicom_io.rtdose import write_rtdose
    from brachycryo.dicom_io.rtplan import read_rtplan
    from brachycryo.dose_kernels import dose_on_grid, load_seed_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = read_rtplan(args.rtplan)
    for w in caught:
        print(f"warning: {w.message}")
    if plan.n_seeds == 0:
        raise DataModelError(f"{args.rtplan} holds no source positions")
    isotopes = {src.isotope.replace(" ", "").upper() for src in plan.sources}
    if not isotopes <= {"I-125", "I125", "125I"}:
        raise DataModelError(
            f"{args.rtplan}: sources are {sorted(isotopes)}; this engine computes I-125 seed "
            "(TG-43U1 permanent implant) dose only"
        )
    model_name = args.model or next((s.model for s in plan.sources if s.model), None)
    if not model_name:
        raise ConfigError(f"{args.rtplan} names no seed model; give --model", key="--model")
    model = load_seed_model(model_name)
    if plan.n_unoriented:
        print(f"warning: {plan.n_unoriented} seed(s) without orientation; taken along +z")
    seeds = plan.to_seeds()
    if args.ct or args.like:
        grid, context = _grid(args, plan)
    else:
        if args.spacing_mm is None:
            raise ConfigError("give --ct, --like, or --spacing-mm", key="grid")
        lo = plan.positions_mm.min(axis=0) - SEED_GRID_MARGIN_MM
        hi = plan.positions_mm.max(axis=0) + SEED_GRID_MARGIN_MM
        grid, context = Grid.from_bounds(lo, hi, args.spacing_mm), None
    if context is None:
        context = StudyContext.from_dataset(read_dataset(args.rtplan, modality="RTPLAN"))
    quantity = "rate" if args.dose_rate else "total"
    with tqdm_callback("dose", disable=args.quiet) as cb:
        dose = dose_on_grid(
            seeds,
            grid,
            model,
            backend=args.backend,
            formalism=args.formalism,
            cutoff_mm=args.cutoff_mm,
            dtype=np.float64,
            quantity=quantity,
            progress=cb,
        )
    write_rtdose(
        args.out,
        dose,
        grid,
        context=context,
        referenced_plan_uid=plan.sop_instance_uid or None,
        dose_comment=(
            f"TG-43U1 {args.formalism} source, model {model.name}, "
            + ("initial dose rate (Gy/h)" if args.dose_rate else "total permanent-implant dose")
        ),
        overwrite=args.overwrite,
    )
    unit = "Gy/h" if args.dose_rate else "Gy"
    print(
        f"{plan.n_seeds} seeds ({model.name}, {plan.sk_u.sum():.2f} U in total): max "
        f"{dose.max():.2f} {unit} on a {grid.shape[2]}x{grid.shape[1]}x{grid.shape[0]} grid; "
        f"wrote {args.out}"
    )
    return 0
