"""``brachycryo iceball CONFIG.toml --out DIR``: simulate a cryoablation ice ball."""

from __future__ import annotations

import argparse
import logging

import numpy as np

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "iceball",
        help="simulate a cryoablation ice ball (Pennes bioheat with phase change)",
        description="Simulate the ice ball of a probe layout and protocol in a medium; write "
        "summary.json (isotherm volumes and principal axes), run_info.json and PNG slices.",
    )
    p.add_argument("config", help="TOML config ([medium], [grid], [[probe]], [[protocol]])")
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
    from brachycryo.progress import tqdm_callback
    from cryo_iceball.bioheat import simulate
    from cryo_iceball.config import load_config
    from cryo_iceball.report import run_info_dict, write_outputs

    cfg = load_config(args.config, isotherms_c=args.isotherm)
    with tqdm_callback("iceball", disable=args.quiet) as cb:
        result = simulate(
            cfg.grid,
            cfg.probes,
            cfg.phases,
            tissues=[cfg.tissue],
            initial_temp_c=cfg.initial_temp_c,
            vessel_mask=cfg.vessel_mask(),
            backend=args.backend,
            options=cfg.options,
            progress=cb,
        )
    oar_masks = {o.name: o.mask(cfg.grid) for o in cfg.oars}
    centre = np.mean([p.active_centre_mm() for p in cfg.probes], axis=0)
    info = run_info_dict(
        result,
        tissue=cfg.tissue.name,
        initial_temp_c=cfg.initial_temp_c,
        probes=[
            {"model": p.model.model, "tip_mm": list(p.tip_mm), "direction": list(p.direction)}
            for p in cfg.probes
        ],
        protocol=[{"phase": ph.phase, "minutes": ph.minutes} for ph in cfg.phases],
    )
    summary = write_outputs(
        result,
        args.out,
        isotherms_c=cfg.isotherms_c,
        lethal_isotherm_c=cfg.lethal_isotherm_c,
        oar_masks=oar_masks,
        centre_mm=centre,
        overwrite=args.overwrite,
        run_info=info,
    )
    for key, iso in summary["isotherms"].items():
        print(f"{key:>6} C: {iso['volume_ml']:8.2f} ml  axes {iso['axes_mm']} mm")
    return 0
