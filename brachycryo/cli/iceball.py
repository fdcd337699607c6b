"""``brachycryo iceball CONFIG.toml --out DIR``: simulate a cryoablation ice ball."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "iceball",
        help="simulate a cryoablation ice ball (Pennes bioheat with phase change)",
        description="Simulate the ice ball of a probe layout and protocol in a medium or on a "
        "patient CT + RTSTRUCT; write summary.json (isotherm volumes and principal axes, "
        "distances to OARs), run_info.json, PNG slices and, with a CT, the isotherms as an "
        "RTSTRUCT (RS.iceball.dcm).",
    )
    p.add_argument(
        "config",
        help="TOML config ([medium] or [ct] + [structures], [grid], [[probe]], [[protocol]])",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument(
        "--backend", default="auto", choices=["auto", "numpy", "numba", "cupy"],
        help="compute backend (default: auto = cupy if a GPU is usable, else numba)",
    )  # fmt: skip
    p.add_argument(
        "--isotherm", type=float, action="append", metavar="T",
        help="isotherm temperature in deg C (repeat; default 0, -20, -40 or the config's)",
    )  # fmt: skip
    p.add_argument("--overwrite", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, command_name="iceball")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import numpy as np

    from brachycryo.core.atomic import check_writable
    from brachycryo.core.progress import tqdm_callback
    from brachycryo.cryo_iceball.bioheat import simulate
    from brachycryo.cryo_iceball.config import load_config
    from brachycryo.cryo_iceball.report import check_outputs_writable, run_info_dict, write_outputs

    cfg = load_config(args.config, isotherms_c=args.isotherm)
    out = Path(args.out)
    check_outputs_writable(out, overwrite=args.overwrite)  # before the long part
    case = None
    medium: dict[str, object]
    if cfg.ct is not None:
        from brachycryo.planning.cryo_case import ISOTHERM_RTSTRUCT_NAME, load_ct_case

        check_writable(out / ISOTHERM_RTSTRUCT_NAME, overwrite=args.overwrite)
        case = load_ct_case(cfg)
        for note in case.notes:
            log.warning("%s", note)
        grid, tissues, labels = case.grid, case.tissues, case.tissue_labels
        vessel_mask = case.vessel_mask
        oar_masks = {o.name: o.mask(grid) for o in cfg.oars} | case.oar_masks
        medium = {"tissue_voxels": case.tissue_voxels}
    else:
        # a [medium] config has its tissue and grid (IceballConfig)
        assert cfg.grid is not None and cfg.tissue is not None
        grid, tissues, labels = cfg.grid, [cfg.tissue], None
        vessel_mask = cfg.vessel_mask()
        oar_masks = {o.name: o.mask(grid) for o in cfg.oars}
        medium = {"tissue": cfg.tissue.name}
    with tqdm_callback("iceball", disable=args.quiet) as cb:
        result = simulate(
            grid,
            cfg.probes,
            cfg.phases,
            tissues=tissues,
            tissue_labels=labels,
            initial_temp_c=cfg.initial_temp_c,
            vessel_mask=vessel_mask,
            backend=args.backend,
            options=cfg.options,
            progress=cb,
        )
    centre = np.mean([p.active_centre_mm() for p in cfg.probes], axis=0)
    oar_distances = None
    extra: dict = {}
    if case is not None:
        from brachycryo.planning.cryo_case import oar_min_distances_mm, write_isotherm_rtstruct

        assert cfg.ct is not None  # a CT case comes from the [ct] table

        oar_distances = oar_min_distances_mm(
            result.isotherm_mask(0.0), grid, case.oar_masks_ct, case.ct.grid
        )
        written, notes = write_isotherm_rtstruct(
            out / ISOTHERM_RTSTRUCT_NAME,
            result,
            case.ct,
            cfg.isotherms_c,
            lethal_isotherm_c=cfg.lethal_isotherm_c,
            overwrite=args.overwrite,
        )
        for note in notes:
            log.warning("%s", note)
        extra = {
            "ct": {
                "series_instance_uid": case.ct.series_instance_uid,
                "frame_of_reference_uid": case.ct.frame_of_reference_uid,
                "rtstruct": str(cfg.ct.rtstruct),
                "isotherm_rtstruct": str(out / ISOTHERM_RTSTRUCT_NAME) if written else None,
                "notes": case.notes + notes,
            }
        }
    info = run_info_dict(
        result,
        **medium,
        initial_temp_c=cfg.initial_temp_c,
        probes=[
            {"model": p.model.model, "tip_mm": list(p.tip_mm), "direction": list(p.direction)}
            for p in cfg.probes
        ],
        protocol=[{"phase": ph.phase, "minutes": ph.minutes} for ph in cfg.phases],
        **extra,
    )
    summary = write_outputs(
        result,
        out,
        isotherms_c=cfg.isotherms_c,
        lethal_isotherm_c=cfg.lethal_isotherm_c,
        oar_masks=oar_masks,  # figures; ROI distances below replace the grid's
        centre_mm=centre,
        overwrite=args.overwrite,
        run_info=info,
        oar_distances_mm=oar_distances,
    )
    for key, iso in summary["isotherms"].items():
        print(f"{key:>6} C: {iso['volume_ml']:8.2f} ml  axes {iso['axes_mm']} mm")
    for name, d in summary["oar_min_distance_mm"].items():
        print(f"  0 C isotherm to {name}: {d} mm")
    return 0
