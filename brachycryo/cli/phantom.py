"""``brachycryo phantom OUT_DIR``: write the deterministic synthetic test patient as DICOM."""

from __future__ import annotations

import argparse
from pathlib import Path

from brachycryo.core.progress import scaled, tqdm_callback
from brachycryo.core.staging import OutputStage, refuse_existing

#: The sites of ``brachycryo.phantoms.anatomy.SITES``, named here so that building the parser
#: does not import the phantom code (numpy, pydicom, scikit-image); a test keeps them equal.
SITE_NAMES = ("abdomen", "pelvis")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "phantom",
        help="write a synthetic patient (CT series + RTSTRUCT) as DICOM",
        description=(
            "Write a deterministic, realistic synthetic case: a CT series and an RTSTRUCT with "
            "BODY, a bulky lobulated index tumour (>100 mL), metastases and organs at risk."
        ),
    )
    p.add_argument("out_dir", help="output folder (CT/ and RS.phantom.dcm are written there)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the anatomy (default 0)")
    p.add_argument("--site", choices=SITE_NAMES, default="abdomen", help="anatomical site")
    p.add_argument(
        "--spacing-mm",
        type=float,
        nargs=3,
        metavar=("COL", "ROW", "SLICE"),
        default=(1.0, 1.0, 2.0),
        help="voxel spacing in mm (default 1 1 2)",
    )
    p.add_argument(
        "--extra-metastases",
        type=int,
        default=0,
        metavar="N",
        help="add N small metastases GTV_Met3, GTV_Met4, ... (default 0)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace existing files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, command_name="phantom")


#: What :func:`brachycryo.phantoms.write_phantom` writes into the output folder.
PHANTOM_OUTPUT_NAMES = ("CT", "RS.phantom.dcm")


def run(args: argparse.Namespace) -> int:
    from brachycryo.phantoms import build_phantom, write_phantom

    out = Path(args.out_dir)
    refuse_existing(out, PHANTOM_OUTPUT_NAMES, overwrite=args.overwrite)  # before computing
    # CT/ and RS.phantom.dcm are staged and moved in together
    with (
        OutputStage([out], folders=[out], overwrite=args.overwrite) as stage,
        tqdm_callback("phantom", disable=args.quiet) as cb,
    ):
        case = build_phantom(
            seed=args.seed,
            site=args.site,
            spacing_mm=tuple(args.spacing_mm),
            extra_metastases=args.extra_metastases,
            progress=scaled(cb, 0.0, 0.6),
        )
        write_phantom(stage.path(out), case, overwrite=True, progress=scaled(cb, 0.6, 1.0))
    print(f"CT series: {out / 'CT'} ({case.grid.shape[0]} slices)")
    print(f"RTSTRUCT:  {out / 'RS.phantom.dcm'}")
    for name in case.masks:
        if case.masks[name].any():
            print(f"  {name:<12} {case.volume_cc(name):9.1f} cc")
    return 0
