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
        "distances to OARs), run_info.json, PNG slices, iceball.html (a self-contained page "
        "with a slice viewer of the isotherms) and, with a CT, the isotherms as an "
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


def _body_outline(case, name: str | None):
    """(mask on the CT grid, ROI name) of the body outline of a CT case: ``[ct] body``,
    else BODY, else the first EXTERNAL ROI; (None, reason) when there is none."""
    from brachycryo.dicom_io.rasterize import roi_mask

    structures = case.structures
    if name is None:
        external = [r.name for r in structures.rois if r.interpreted_type.upper() == "EXTERNAL"]
        name = "BODY" if "BODY" in structures.roi_names else next(iter(external), None)
        if name is None:
            return None, "the structure set has no BODY / EXTERNAL ROI: probe handles not checked"
    roi = structures.roi(name)  # StructureError names a missing [ct] body
    thickness = case.ct.grid.spacing_mm[2]
    return roi_mask(roi, case.ct.grid, slice_thickness_mm=thickness), roi.name


def _probe_flags(cfg, case) -> list[str]:
    """Warnings on probes a physician could not have inserted as given (handle inside the
    patient; :func:`brachycryo.cryo_iceball.config.handle_flags`)."""
    from brachycryo.cryo_iceball.config import handle_flags

    if case is None:
        return [f.message for f in handle_flags(cfg)]
    assert cfg.ct is not None  # a CT case comes from the [ct] table
    body, name = _body_outline(case, cfg.ct.body)
    if body is None:
        return [name]
    avoid = dict(case.oar_masks_ct) | _vessels_on_ct(case, cfg.ct.vessels)
    flags = handle_flags(cfg, body=body, body_grid=case.ct.grid, body_name=name, avoid=avoid)
    return [f.message for f in flags]


def _vessels_on_ct(case, names) -> dict:
    """The ``[ct] vessels`` ROIs rasterised on the CT grid."""
    from brachycryo.dicom_io.rasterize import roi_mask

    thickness = case.ct.grid.spacing_mm[2]
    return {
        name: roi_mask(case.structures.roi(name), case.ct.grid, slice_thickness_mm=thickness)
        for name in names
    }


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from brachycryo.core.atomic import check_writable
    from brachycryo.core.staging import OutputStage
    from brachycryo.cryo_iceball.config import load_config
    from brachycryo.cryo_iceball.report import check_outputs_writable
    from brachycryo.reports.iceball import OUTPUT_NAME

    cfg = load_config(args.config, isotherms_c=args.isotherm)
    out = Path(args.out)
    if out.is_dir():  # before the long part
        check_outputs_writable(out, overwrite=args.overwrite)
        check_writable(out / OUTPUT_NAME, overwrite=args.overwrite)
    # the outputs are staged and moved into --out together (all of them, or none)
    with OutputStage([out], folders=[out], overwrite=args.overwrite) as stage:
        summary = _simulate_and_write(args, cfg, out, stage.path(out))
    for key, iso in summary["isotherms"].items():
        print(f"{key:>6} C: {iso['volume_ml']:8.2f} ml  axes {iso['axes_mm']} mm")
    for name, d in summary["oar_min_distance_mm"].items():
        print(f"  0 C isotherm to {name}: {d} mm")
    return 0


def _simulate_and_write(args: argparse.Namespace, cfg, out, staged) -> dict:
    """Simulate the config's ice ball and write its outputs into ``staged`` (the staging
    folder of ``out``, the path the outputs name); the summary."""
    import numpy as np

    from brachycryo.core.atomic import check_writable
    from brachycryo.core.progress import tqdm_callback
    from brachycryo.cryo_iceball.bioheat import simulate
    from brachycryo.cryo_iceball.report import run_info_dict, write_outputs

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
    probe_flags = _probe_flags(cfg, case)
    for flag in probe_flags:
        log.warning("%s", flag)
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
            staged / ISOTHERM_RTSTRUCT_NAME,
            result,
            case.ct,
            cfg.isotherms_c,
            lethal_isotherm_c=cfg.lethal_isotherm_c,
            overwrite=True,
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
        probe_flags=probe_flags,
        **extra,
    )
    summary = write_outputs(
        result,
        staged,
        isotherms_c=cfg.isotherms_c,
        lethal_isotherm_c=cfg.lethal_isotherm_c,
        oar_masks=oar_masks,  # figures; ROI distances below replace the grid's
        centre_mm=centre,
        overwrite=True,
        run_info=info,
        oar_distances_mm=oar_distances,
    )
    _write_page(cfg, case, result, summary, staged, oar_masks, probe_flags)
    return summary


def _write_page(cfg, case, result, summary: dict, staged, oar_masks, notes) -> None:
    """iceball.html: the isotherms in the slice viewer over the CT (or the medium)."""
    from brachycryo.core.atomic import write_text_atomic
    from brachycryo.reports.iceball import (
        OUTPUT_NAME,
        build_iceball_html,
        iceball_viewer_inputs,
        oar_layers,
    )

    if case is not None:
        colours = {r.name: r.color_rgb for r in case.structures.rois}
        oars = oar_layers(case.oar_masks_ct, case.ct.grid, colours)
        ct_hu, ct_grid = case.ct.hu, case.ct.grid
    else:
        oars = oar_layers(oar_masks, result.grid)
        ct_hu, ct_grid = None, None
    viewer = iceball_viewer_inputs(
        result,
        cfg.probes,
        isotherms_c=cfg.isotherms_c,
        initial_temp_c=cfg.initial_temp_c,
        oars=oars,
        ct_hu=ct_hu,
        ct_grid=ct_grid,
    )
    page = build_iceball_html(
        viewer,
        summary,
        volume_png=(staged / "volume_vs_time.png").read_bytes(),
        notes=list(notes) + (case.notes if case is not None else []),
        ct_shown=case is not None,
    )
    write_text_atomic(staged / OUTPUT_NAME, page, overwrite=True)
