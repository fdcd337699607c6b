"""Write a plan's data files: RTPLAN, RTDOSE, RTSTRUCT (zones, isotherms, the cryo probes'
tracks and tips), metrics.json and the needle / seed and probe lists for the procedure.

The HTML report is a page, one floor up: :func:`brachycryo.reports.plan.write_plan_folder`
writes these files and then the report.
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from brachycryo.core.atomic import write_text_atomic
from brachycryo.dicom_io.common import SERIES_NUMBERS
from brachycryo.dicom_io.rtdose import write_rtdose
from brachycryo.dicom_io.rtplan import BrachySource, seed_implant, write_seed_rtplan
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
from brachycryo.dose_kernels import load_seed_model
from brachycryo.planning.evaluate import (
    ConstraintResult,
    CryoMetrics,
    GoalResult,
    LesionMetrics,
    OptimizerSummary,
    PlanMetrics,
    ProbePlacement,
    SeedTargetMetrics,
    StructureMetrics,
    zone_roi_name,
)
from brachycryo.planning.implanted import ImplantedSeeds
from brachycryo.planning.pipeline import PlanResult
from brachycryo.planning.robust import RobustSummary
from brachycryo.planning.zones import resample_mask_nearest

ZONE_COLOURS = {
    "SeedTarget": (0, 200, 255),
    "Core": (255, 120, 0),
    "Ice0C": (170, 220, 255),
    "Lethal": (0, 80, 255),
    "HighRisk": (255, 0, 90),
}


def _zone_rois(result: PlanResult) -> list[RoiSpec]:
    ct_grid = result.case.ct.grid
    rois = []
    for lesion, z in result.zones.items():
        items = [("SeedTarget", z.seed_target, "PTV"), ("Core", z.core, "CTV")]
        items += [(h, mask, "PTV") for h, mask in z.high_risk.items()]
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
            colour = ZONE_COLOURS.get(zone, ZONE_COLOURS["HighRisk"])
            rois.append(RoiSpec(name, mask=on_ct, interpreted_type=kind,
                                color_rgb=colour))  # fmt: skip
    return rois


#: Display colours of the probe ROIs (the report draws them in the same colours).
PROBE_TRACK_COLOUR = (255, 230, 0)
PROBE_TIP_COLOUR = (255, 0, 200)


def probe_roi_names(number: int) -> tuple[str, str]:
    """The zones RTSTRUCT's ROI names of probe ``number`` (1-based): track and tip."""
    return f"Probe{number}_track", f"Probe{number}_tip"


def _probe_rois(result: PlanResult) -> list[RoiSpec]:
    """Two ROIs per cryo probe, numbered as in probes.csv: its track from the skin entry to
    the tip, an open contour (OPEN_NONPLANAR unless it lies in an image plane; PS3.3
    C.8.8.6.1), and its tip, a POINT contour.

    RTROIInterpretedType (PS3.3 C.8.8.8) has no term for an ablation probe: the track is
    CONTROL ("ROI to be used in control of dose optimization and calculation", the term
    planning systems use for helper structures that are neither target nor organ, as the
    isotherm ROIs here), the tip MARKER (a marked point, the type point ROIs take).  The
    brachytherapy terms (BRACHY_CHANNEL, ...) would make a planning system take the probe
    for a source channel.
    """
    rois = []
    for t in result.probe_tracks:
        track, tip = probe_roi_names(t.number)
        rois.append(RoiSpec(track, lines_mm=[np.array([t.entry_mm, t.tip_mm])],
                            interpreted_type="CONTROL", color_rgb=PROBE_TRACK_COLOUR))  # fmt: skip
        rois.append(RoiSpec(tip, points_mm=np.array([t.tip_mm]), interpreted_type="MARKER",
                            color_rgb=PROBE_TIP_COLOUR))  # fmt: skip
    return rois


#: In an RTPLAN with new and implanted seeds, the implanted seeds' channels are their
#: channel numbers in the implanted plan plus this (the new needles are channels 1, 2, ...).
IMPLANTED_CHANNEL_OFFSET = 1000


@dataclass(frozen=True)
class _PlanSeeds:
    """The seeds an RTPLAN holds: positions, axes, channels, source numbers and sources."""

    positions_mm: np.ndarray
    directions: np.ndarray
    channels: list[int]
    source_numbers: list[int]
    sources: list[BrachySource]

    def with_implanted(self, implanted: ImplantedSeeds) -> _PlanSeeds:
        """These (new) seeds followed by the ``implanted`` seeds (their RTPLAN's order, the
        axes their dose was computed with), each
        with its own source (model, strength, reference date as in that plan), renumbered
        after the new seeds' sources, in channels ``IMPLANTED_CHANNEL_OFFSET`` + its channel:
        one RTPLAN whose every seed is the dose of the written RTDOSE, the implanted ones
        told apart by source and channel number (README, sequential arm)."""
        import warnings

        from brachycryo.dicom_io.rtplan import read_rtplan

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its conformance notes were seen when it was read
            plan = read_rtplan(implanted.path)
        first = max(self.source_numbers) + 1
        renumber = {src.number: first + k for k, src in enumerate(plan.sources)}
        sources = [replace(src, number=renumber[src.number]) for src in plan.sources]
        seeds = plan.seeds
        return _PlanSeeds(
            np.concatenate([self.positions_mm, implanted.seeds.positions_mm]),
            np.concatenate([self.directions, implanted.seeds.directions]),
            [*self.channels, *(IMPLANTED_CHANNEL_OFFSET + int(s.channel) for s in seeds)],
            [*self.source_numbers, *(renumber[s.source_number] for s in seeds)],
            [*self.sources, *sources],
        )


@dataclass(frozen=True)
class UsedNeedle:
    """A needle that carries seeds: entry on the skin, insertion direction, the depth of its
    deepest seed along it, and its seeds' positions from the shallowest (mm)."""

    number: int
    entry_mm: np.ndarray
    direction: np.ndarray
    depth_mm: float
    seed_positions_mm: np.ndarray

    @property
    def deepest_mm(self) -> np.ndarray:
        return self.entry_mm + self.depth_mm * self.direction


def used_needles(result: PlanResult) -> list[UsedNeedle]:
    """The plan's needles that carry seeds, in needle order."""
    if result.candidates is None or result.n_seeds == 0:
        return []
    tracks = result.candidates.tracks
    out = []
    for number in sorted(set(result.seed_needles.tolist())):
        t = tracks[number]
        pos = result.seeds.positions_mm[result.seed_needles == number]
        depth = (pos - t.entry_mm) @ t.direction
        order = np.argsort(depth)
        out.append(UsedNeedle(t.number, np.asarray(t.entry_mm, float),
                              np.asarray(t.direction, float), float(depth.max()),
                              pos[order]))  # fmt: skip
    return out


def needle_table_csv(result: PlanResult) -> str:
    """One row per needle: entry point, direction, depth to the deepest seed, seed positions."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["needle_id", "entry_x_mm", "entry_y_mm", "entry_z_mm", "dir_x", "dir_y", "dir_z",
                "depth_mm", "n_seeds", "seed_positions_mm"])  # fmt: skip
    for n in used_needles(result):
        w.writerow(
            [n.number, *(f"{v:.1f}" for v in n.entry_mm), *(f"{v:.4f}" for v in n.direction),
             f"{n.depth_mm:.1f}", len(n.seed_positions_mm),
             ";".join(" ".join(f"{v:.1f}" for v in p) for p in n.seed_positions_mm)]
        )  # fmt: skip
    return buf.getvalue()


#: Every file a plan writes into its output folder, by kind (``report`` by the report layer).
PLAN_OUTPUT_NAMES = {
    "rtstruct": "RS.zones.dcm",
    "rtplan": "RP.seeds.dcm",
    "rtdose": "RD.plan.dcm",
    "metrics": "metrics.json",
    "needles": "needles.csv",
    "probes": "probes.csv",
    "report": "report.html",
}


def probe_table_csv(result: PlanResult) -> str:
    """One row per cryo probe, as the physician inserts it (convention and track check:
    :mod:`brachycryo.planning.probe_tracks`): entry on the skin, tip, direction tip ->
    handle, insertion depth, the freezing zone, and the no-go structures the track crosses."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["probe_id", "lesion", "model", "entry_x_mm", "entry_y_mm", "entry_z_mm",
                "tip_x_mm", "tip_y_mm", "tip_z_mm", "dir_x", "dir_y", "dir_z",
                "insertion_depth_mm", "active_start_mm", "active_end_mm", "entry_on_skin",
                "crosses"])  # fmt: skip
    for t in result.probe_tracks:
        w.writerow(
            [t.number, t.lesion, t.model, *(f"{v:.1f}" for v in t.entry_mm),
             *(f"{v:.1f}" for v in t.tip_mm), *(f"{v:.4f}" for v in t.direction),
             f"{t.insertion_depth_mm:.1f}", " ".join(f"{v:.1f}" for v in t.active_start_mm),
             " ".join(f"{v:.1f}" for v in t.active_end_mm), int(t.entry_on_skin),
             ";".join(t.crosses)]
        )  # fmt: skip
    return buf.getvalue()


def write_plan_outputs(
    result: PlanResult,
    plan_metrics: PlanMetrics,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    dose_bits: int = 32,
) -> dict[str, Path]:
    """Write every data file (not the report); returns {kind: path}.

    ``dose_bits`` is the RTDOSE pixel size, 32 or 16 (see :func:`write_rtdose`).

    A plan without seeds (cryo only, or a seed plan whose every candidate is blocked) has no
    RTPLAN and no RTDOSE; its zones, isotherms, metrics and (empty) needle list are written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    ct = result.case.ct
    spec = result.spec
    rois = _zone_rois(result) + _probe_rois(result)
    # the plan references the structure set it was made on: the zones (seed target), else
    # the case's (PS3.3 C.8.8.9 Referenced Structure Set Sequence)
    planned_on = result.case.structures.sop_instance_uid
    if rois:
        paths["rtstruct"] = out / PLAN_OUTPUT_NAMES["rtstruct"]
        zones = write_rtstruct(paths["rtstruct"], rois, ct, label="zones", overwrite=overwrite,
                               series_description="brachycryo zones and isotherms",
                               series_number=SERIES_NUMBERS["rtstruct_zones"])  # fmt: skip
        planned_on = zones.sop_instance_uid
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
        seeds = _PlanSeeds(
            result.seeds.positions_mm, result.seeds.directions,
            [int(n) + 1 for n in result.seed_needles], [1] * result.n_seeds, [source],
        )  # fmt: skip
        label, name = "ZONED SEEDS", "brachycryo zoned plan"
        if result.implanted is not None:
            seeds = seeds.with_implanted(result.implanted)
            label, name = "NEW+IMPLANTED", "brachycryo: new seeds (source 1) + implanted seeds"
        plan = seed_implant(
            seeds.positions_mm,
            seeds.channels,
            source=seeds.sources,
            directions=seeds.directions,
            source_numbers=seeds.source_numbers,
            label=label,
            name=name,
            prescription_dose_gy=spec.prescription_gy,
            referenced_structure_set_uid=planned_on,
        )
        paths["rtplan"] = out / PLAN_OUTPUT_NAMES["rtplan"]
        plan_uid = write_seed_rtplan(paths["rtplan"], plan, context=ct.context, overwrite=overwrite)
    if plan_uid is None and result.implanted is not None:  # the implanted seeds' dose
        plan_uid = result.implanted.sop_instance_uid or None
    if plan_uid is not None:  # a plan without seeds (cryo only, or every seed blocked)
        paths["rtdose"] = out / PLAN_OUTPUT_NAMES["rtdose"]  # has no seed dose to write
        write_rtdose(paths["rtdose"], result.dose_gy, result.grid, context=ct.context,
                     referenced_plan_uid=plan_uid, overwrite=overwrite,
                     summation="PLAN", bits_allocated=dose_bits)  # fmt: skip
    paths["metrics"] = out / PLAN_OUTPUT_NAMES["metrics"]
    document = json.dumps(metrics_document(plan_metrics), indent=2)
    write_text_atomic(paths["metrics"], document, overwrite=overwrite)
    paths["needles"] = out / PLAN_OUTPUT_NAMES["needles"]
    write_text_atomic(paths["needles"], needle_table_csv(result), overwrite=overwrite)
    if result.probe_tracks:
        paths["probes"] = out / PLAN_OUTPUT_NAMES["probes"]
        write_text_atomic(paths["probes"], probe_table_csv(result), overwrite=overwrite)
    return paths


# ----------------------------------------------------------------------------- metrics.json
def metrics_document(metrics: PlanMetrics) -> dict[str, Any]:
    """The ``metrics.json`` document of a plan's metrics (JSON types, keys in file order)."""
    doc: dict[str, Any] = {
        "prescription_gy": metrics.prescription_gy,
        "seed_model": metrics.seed_model,
        "sk_u": metrics.sk_u,
        "n_seeds": metrics.n_seeds,
        "n_needles": metrics.n_needles,
        "total_sk_u": metrics.total_sk_u,
        "structures": {name: _structure_json(s) for name, s in metrics.structures.items()},
        "lesions": {name: _lesion_json(b) for name, b in metrics.lesions.items()},
        "constraints": [_constraint_json(c) for c in metrics.constraints],
        "goals": [_goal_json(g) for g in metrics.goals],
        "feasible": metrics.feasible,
        "binding": list(metrics.binding),
        "backend": metrics.backend,
        "timings_s": dict(metrics.timings_s),
    }
    if metrics.seed_sets is not None:
        doc["seed_sets"] = metrics.seed_sets.to_json()
    if metrics.optimizer is not None:
        doc["optimizer"] = _optimizer_json(metrics.optimizer)
    if metrics.notes:
        doc["notes"] = list(metrics.notes)
    return doc


def _structure_json(s: StructureMetrics) -> dict[str, Any]:
    return {"error": s.error} if s.error is not None else dict(s.values)


def _lesion_json(b: LesionMetrics) -> dict[str, Any]:
    out: dict[str, Any] = {
        "allocation": b.allocation,
        "prescription_gy": b.prescription_gy,
        "gtv_volume_cc": b.gtv_volume_cc,
        "core_volume_cc": b.core_volume_cc,
        "seed_target_volume_cc": b.seed_target_volume_cc,
    }
    if b.cryo is not None:
        out["cryo"] = _cryo_json(b.cryo)
    if b.seeds is not None:
        out["seeds"] = _seed_target_json(b.seeds)
    if b.sequential is not None:
        out["sequential"] = b.sequential.to_json()
    if b.high_risk:
        out["high_risk"] = [{"zone": n, "prescription_gy": rx} for n, rx in b.high_risk]
    return out


def _probe_json(p: ProbePlacement) -> dict[str, Any]:
    return {
        "tip_mm": list(p.tip_mm),
        "direction": list(p.direction),
        "entry_mm": list(p.entry_mm),
        "insertion_depth_mm": p.insertion_depth_mm,
        "crosses": list(p.crosses),
    }


def _cryo_json(c: CryoMetrics) -> dict[str, Any]:
    return {
        "probe_model": c.probe_model,
        "n_probes": c.n_probes,
        "probes": [_probe_json(p) for p in c.probes],
        "core_target_coverage_pct": c.core_target_coverage_pct,
        "gtv_ablated_pct": c.gtv_ablated_pct,
        "ice_0c_volume_cc": c.ice_0c_volume_cc,
        "lethal_volume_cc": c.lethal_volume_cc,
        "oar_min_distance_0c_mm": dict(c.oar_min_distance_0c_mm),
    }


def _seed_target_json(s: SeedTargetMetrics) -> dict[str, Any]:
    return {
        "n_seeds_in_target": s.n_seeds_in_target,
        "v100_pct": s.v100_pct,
        "v150_pct": s.v150_pct,
        "v200_pct": s.v200_pct,
        "d90_gy": s.d90_gy,
        "target": s.target,
        "ci": s.ci,
        "ei": s.ei,
        "hi": s.hi,
        "v_t_cc": s.v_t_cc,
        "v_t_ref_cc": s.v_t_ref_cc,
        "v_ref_cc": s.v_ref_cc,
    }


def _constraint_json(c: ConstraintResult) -> dict[str, Any]:
    return {"roi": c.roi, "metric": c.metric, "limit": c.limit, "value": c.value,
            "passed": c.passed}  # fmt: skip


def _goal_json(g: GoalResult) -> dict[str, Any]:
    out: dict[str, Any] = {"roi": g.roi, "metric": g.metric, "goal": g.goal}
    if g.at_most:
        out["at_most"] = True
    if g.prescription_gy is not None:
        out["prescription_gy"] = g.prescription_gy
    out["value"] = g.value
    out["passed"] = g.passed
    return out


def _optimizer_json(o: OptimizerSummary) -> dict[str, Any]:
    out = {
        "method": o.method,
        "iterations": o.iterations,
        "time_s": o.time_s,
        "sample_point_coverage": o.sample_point_coverage,
        "log": list(o.log),
    }
    if o.robust is not None:
        out["robust"] = robust_json(o.robust)
    return out


def robust_json(r: RobustSummary) -> dict[str, Any]:
    """``metrics.json`` ``optimizer.robust``: targets, the kept round, the seed cost, every
    round (:mod:`brachycryo.planning.robust`)."""
    s = r.spec
    kept = r.rounds[r.chosen]
    return {
        "scenarios": s.scenarios,
        "seed": s.seed,
        "error_model": r.error_model,
        "min_probability": s.min_probability,
        "oar_min_probability": s.oar_min_probability,
        "met": r.met,
        "round_kept": r.chosen,
        "n_seeds_nominal": r.rounds[0].n_seeds,
        "n_seeds": kept.n_seeds,
        "extra_seeds": r.extra_seeds,
        "extra_needles": r.extra_needles,
        "p_d90_ge_rx": kept.p_d90,
        "p_limit_met": kept.p_met,
        "limited_by": list(r.limited_by),
        "rounds": [
            {
                "zone_margin": x.zone_margin,
                "oar_margin": x.oar_margin,
                "n_seeds": x.n_seeds,
                "n_needles": x.n_needles,
                "p_d90_ge_rx": x.p_d90,
                "p_limit_met": x.p_met,
                "feasible": x.feasible,
                "binding": list(x.binding),
            }
            for x in r.rounds
        ],
    }
