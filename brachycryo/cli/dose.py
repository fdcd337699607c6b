"""``brachycryo dose --rtplan PLAN.dcm ... --out RTDOSE.dcm``: TG-43 dose of a seed implant.

Works on any standard permanent-seed RTPLAN (seeds as control points of channels,
ReferenceAirKermaRate as S_K), ours or another system's.  The RTDOSE holds the total dose
of the permanent implant (D = Ḋ₀ · T½ / ln 2, Gy) unless ``--dose-rate`` asks for the
initial dose rate (Gy/h).
"""

from __future__ import annotations

import argparse
import math
import warnings
from typing import TYPE_CHECKING

from brachycryo.core.errors import (
    ConfigError,
    DataModelError,
    FrameOfReferenceError,
    GeometryError,
)
from brachycryo.core.progress import tqdm_callback

if TYPE_CHECKING:  # the CLI imports its workers when a command runs
    from brachycryo.core.grid import Grid
    from brachycryo.dicom_io.common import StudyContext
    from brachycryo.dicom_io.rtplan import BrachyPlan

#: Help of ``--dose-bits`` (dose, plan, demo, postimplant).
DOSE_BITS_HELP = (
    "RTDOSE pixel size: 32 (default; step = max dose / 4.29e9) or 16 (readable by every "
    "tool, dicom3tools included; each voxel reads back within DoseGridScaling / 2 <= max "
    "dose / 131070 of the computed dose)"
)


def add_dose_bits_option(p: argparse.ArgumentParser) -> None:
    """``--dose-bits {32,16}``: BitsAllocated of the written RTDOSE (PS3.3 C.8.8.3)."""
    p.add_argument("--dose-bits", type=int, choices=[32, 16], default=32, help=DOSE_BITS_HELP)


#: Margin around the seeds of the grid made by ``--spacing-mm`` (mm).
SEED_GRID_MARGIN_MM = 30.0

#: Largest dose grid the command computes (voxels): 2e8 float64 voxels are 1.6 GB, the
#: size of a 0.5 mm grid over a 30 x 30 x 28 cm CT; a finer --spacing-mm is refused with
#: its size before anything is allocated.
MAX_GRID_VOXELS = 200_000_000


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
    p.add_argument(
        "--model",
        help=(
            "TG-43 seed model (default: the plan's SourceModelID); 'auto' takes the model "
            "suggested from SourceManufacturer/SourceIsotopeName/ActiveSourceLength when "
            "the plan has no model ID and the match is unique (it says which and why)"
        ),
    )
    p.add_argument(
        "--formalism",
        choices=["line", "point"],
        default="line",
        help="2D line source, or the 1D point-source approximation with φ_an(r) (the "
        "model's table, or derived from F(r,θ) when it has none)",
    )
    p.add_argument("--backend", choices=["auto", "numpy", "numba", "cupy"], default="auto")
    p.add_argument("--dose-rate", action="store_true", help="write the initial dose rate (Gy/h)")
    p.add_argument("--cutoff-mm", type=float, help="ignore seed-voxel pairs farther than this")
    add_dose_bits_option(p)
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


def _check_grid_size(args: argparse.Namespace, grid: Grid) -> None:
    """A grid beyond :data:`MAX_GRID_VOXELS` is refused before it is allocated."""
    n = math.prod(grid.shape)  # exact: a product of absurd sizes overflows int64
    if n > MAX_GRID_VOXELS:
        nx, ny, nz = grid.size_ijk
        raise ConfigError(
            f"the dose grid would have {nx} x {ny} x {nz} = {n:.3g} voxels "
            f"({n * 8 / 2**30:.3g} GiB), more than {MAX_GRID_VOXELS:.3g}; give a "
            "coarser --spacing-mm",
            key="--spacing-mm",
        )


def _check_seeds_on_grid(args: argparse.Namespace, plan: BrachyPlan, grid: Grid) -> None:
    """A grid (--ct, --like) that misses every seed is an error — its dose would be the
    tails of seeds outside it, near zero, with nothing to say so; one that misses some is a
    warning with their count and S_K (their dose inside the grid is still computed)."""
    inside = grid.contains_mm(plan.positions_mm)
    if inside.all():
        return
    where = f"the CT in {args.ct}" if args.ct else f"the RTDOSE {args.like}"
    lo, hi = grid.bounds_mm()
    extent = ", ".join(f"{a} {lo[i]:.1f} to {hi[i]:.1f}" for i, a in enumerate("xyz"))
    n_out, sk_out = int((~inside).sum()), float(plan.sk_u[~inside].sum())
    if not inside.any():
        raise GeometryError(
            f"none of the {plan.n_seeds} seeds of {args.rtplan} lies inside the grid of "
            f"{where} ({extent} mm): the dose there would be only the seeds' far tails"
        )
    print(
        f"warning: {n_out} of {plan.n_seeds} seeds ({sk_out:.2f} of {plan.sk_u.sum():.2f} U) "
        f"lie outside the grid of {where} ({extent} mm); the dose they give inside it is "
        "included, the dose around them is not on the grid"
    )


def run(args: argparse.Namespace) -> int:
    from brachycryo.core.staging import OutputStage

    # refuse before computing when the RTDOSE could not be written; it is staged
    with OutputStage([args.out], overwrite=args.overwrite) as stage:
        summary = _run(args, stage)
    print(summary)  # once the RTDOSE is in place
    return 0


def _run(args: argparse.Namespace, stage) -> str:
    """Compute the dose and write it to ``stage``; the summary line."""
    import numpy as np

    from brachycryo.core.grid import Grid
    from brachycryo.dicom_io.common import SERIES_NUMBERS, StudyContext, read_dataset
    from brachycryo.dicom_io.plan_model import choose_seed_model
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
    if plan.is_afterloader:
        raise DataModelError(
            f"{args.rtplan} is an {plan.treatment_type or plan.technique} afterloader plan "
            f"({plan.n_seeds} dwell positions of a stepping source); this engine computes "
            "I-125 LDR seed (TG-43U1 permanent implant) dose only"
        )
    isotopes = {src.isotope.replace(" ", "").upper() for src in plan.sources}
    if not isotopes <= {"I-125", "I125", "125I"}:
        raise DataModelError(
            f"{args.rtplan}: sources are {sorted(isotopes)}; this engine computes I-125 seed "
            "(TG-43U1 permanent implant) dose only"
        )
    choice = choose_seed_model(plan, args.model)
    if choice.origin != "option":
        print(f"seed model {choice.name}: {choice.origin}")
    model = load_seed_model(choice.name)
    if args.formalism == "point":
        print(f"point-source formalism: phi_an(r) {model.phi_an_source}")
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
    _check_grid_size(args, grid)
    _check_seeds_on_grid(args, plan, grid)
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
        stage.path(args.out),
        dose,
        grid,
        context=context,
        referenced_plan_uid=plan.sop_instance_uid or None,
        series_number=SERIES_NUMBERS["rtdose_recomputed"],
        bits_allocated=args.dose_bits,
        dose_comment=(
            f"TG-43U1 {args.formalism} source, model {model.name}, "
            + ("initial dose rate (Gy/h)" if args.dose_rate else "total permanent-implant dose")
        ),
        overwrite=True,  # into the empty staging folder
    )
    unit = "Gy/h" if args.dose_rate else "Gy"
    return (
        f"{plan.n_seeds} seeds ({model.name}, {plan.sk_u.sum():.2f} U in total): max "
        f"{dose.max():.2f} {unit} on a {grid.shape[2]}x{grid.shape[1]}x{grid.shape[0]} grid; "
        f"wrote {args.out}"
    )
