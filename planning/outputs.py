"""Write a plan's data files: RTPLAN, RTDOSE, RTSTRUCT (zones, isotherms), metrics.json and
the needle / seed list for the procedure.

The HTML report is a page, one floor up: :func:`brachycryo.reports.plan.write_plan_folder`
writes these files and then the report.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
from pathlib import Path

import numpy as np

from brachycryo.core.atomic import write_text_atomic
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.rtdose import write_rtdose
from brachycryo.dicom_io.rtplan import BrachySource, seed_implant, write_seed_rtplan
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
from brachycryo.dose_kernels import load_seed_model
from brachycryo.planning.evaluate import PlanMetrics, zone_roi_name
from brachycryo.planning.pipeline import PlanResult

ZONE_COLOURS = {
    "SeedTarget": (0, 200, 255),
    "Core": (255, 120, 0),
    "Ice0C": (170, 220, 255),
    "Lethal": (0, 80, 255),
}


def resample_mask_nearest(mask: np.ndarray, grid: Grid, target: Grid) -> np.ndarray:
    """``mask`` (on ``grid``) sampled at the voxel centres of ``target`` (nearest voxel)."""
    out = np.zeros(target.shape, dtype=bool)
    jj, ii = np.meshgrid(np.arange(target.shape[1]), np.arange(target.shape[2]), indexing="ij")
    for k in range(target.shape[0]):  # slice by slice: the CT grid can be large
        pts = target.ijk_to_mm(np.stack([ii, jj, np.full_like(ii, k)], axis=-1).astype(float))
        out[k] = grid.sample_nearest(mask, pts, outside=False)
    return out


def _zone_rois(result: PlanResult) -> list[RoiSpec]:
    ct_grid = result.case.ct.grid
    rois = []
    for lesion, z in result.zones.items():
        items = [("SeedTarget", z.seed_target, "PTV"), ("Core", z.core, "CTV")]
        if lesion in result.cryo:
            c = result.cryo[lesion]
            items += [("Ice0C", c.ice_0c, "CONTROL"), ("Lethal", c.lethal, "CONTROL")]
        for zone, mask, kind in items:
            if mask is None or not mask.any():
                continue
            on_ct = resample_mask_nearest(mask, result.grid, ct_grid)
            if not on_ct.any():
                continue
            name = zone_roi_name(lesion, zone)
            if zone == "Lethal":
                name = zone_roi_name(lesion, f"Lethal{abs(result.spec.cryo.lethal_isotherm_c):g}C")
            rois.append(RoiSpec(name, mask=on_ct, interpreted_type=kind,
                                color_rgb=ZONE_COLOURS[zone]))  # fmt: skip
    return rois


def needle_table_csv(result: PlanResult) -> str:
    """One row per needle: entry point, direction, depth to the deepest seed, seed positions."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["needle_id", "entry_x_mm", "entry_y_mm", "entry_z_mm", "dir_x", "dir_y", "dir_z",
                "depth_mm", "n_seeds", "seed_positions_mm"])  # fmt: skip
    if result.candidates is None or result.n_seeds == 0:
        return buf.getvalue()
    tracks = result.candidates.tracks
    for number in sorted(set(result.seed_needles.tolist())):
        t = tracks[number]
        sel = result.seed_needles == number
        pos = result.seed_positions_mm[sel]
        depth = (pos - t.entry_mm) @ t.direction
        order = np.argsort(depth)
        w.writerow(
            [t.number, *(f"{v:.1f}" for v in t.entry_mm), *(f"{v:.4f}" for v in t.direction),
             f"{depth.max():.1f}", int(sel.sum()),
             ";".join(" ".join(f"{v:.1f}" for v in p) for p in pos[order])]
        )  # fmt: skip
    return buf.getvalue()


def write_plan_outputs(
    result: PlanResult,
    plan_metrics: PlanMetrics,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
) -> dict[str, Path]:
    """Write every data file (not the report); returns {kind: path}."""
    metrics = plan_metrics.doc
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    ct = result.case.ct
    spec = result.spec
    rois = _zone_rois(result)
    if rois:
        paths["rtstruct"] = out / "RS.zones.dcm"
        write_rtstruct(paths["rtstruct"], rois, ct, label="zones", overwrite=overwrite,
                       series_description="brachycryo zones and isotherms")  # fmt: skip
    plan_uid = None
    if result.n_seeds:
        model = load_seed_model(spec.seed_model)
        source = BrachySource(
            sk_u=spec.sk_u,
            reference_datetime=_dt.datetime.now().replace(microsecond=0),
            isotope="I-125",
            half_life_days=model.half_life_h / 24.0,
            model=model.name,
            source_type="LINE",
            active_length_mm=model.active_length_mm,
        )
        plan = seed_implant(
            result.seed_positions_mm,
            [int(n) + 1 for n in result.seed_needles],
            source=source,
            directions=result.seed_directions,
            label="ZONED SEEDS",
            name="brachycryo zoned plan",
            prescription_dose_gy=spec.prescription_gy,
            referenced_structure_set_uid=result.case.structures.sop_instance_uid,
        )
        paths["rtplan"] = out / "RP.seeds.dcm"
        plan_uid = write_seed_rtplan(paths["rtplan"], plan, context=ct.context, overwrite=overwrite)
    paths["rtdose"] = out / "RD.plan.dcm"
    write_rtdose(paths["rtdose"], result.dose_gy, result.grid, context=ct.context,
                 referenced_plan_uid=plan_uid, overwrite=overwrite,
                 summation="PLAN" if plan_uid else "MULTI_PLAN")  # fmt: skip
    paths["metrics"] = out / "metrics.json"
    write_text_atomic(paths["metrics"], json.dumps(metrics, indent=2), overwrite=overwrite)
    paths["needles"] = out / "needles.csv"
    write_text_atomic(paths["needles"], needle_table_csv(result), overwrite=overwrite)
    return paths
