"""Plan metrics: DVH metrics per structure and zone, per-lesion blocks, constraint checks.

Structures from the RTSTRUCT are evaluated from their contours (``brachycryo.qa.dvh.dvh_from_roi``,
as ``brachycryo dvh`` does on the written files); zones the planner made (seed target,
ablated core, isotherms) from their masks on the planning grid.  Keys follow the DVH
command's JSON (``d90_gy``, ``v100_pct``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from brachycryo.core.errors import BrachyCryoError
from brachycryo.planning.pipeline import PlanResult, _oar_constraints_for
from brachycryo.qa.dvh import dvh_from_mask, dvh_from_roi
from brachycryo.qa.metrics import isodose_volume_cc, metric_value, plan_indices, structure_metrics


def _clean(x):
    if x is None:
        return None
    x = float(x)
    return None if not np.isfinite(x) else round(x, 4)


def zone_roi_name(lesion: str, zone: str) -> str:
    return f"{lesion}_{zone}"


@dataclass
class PlanMetrics:
    """``doc`` is the ``metrics.json`` document; ``dvhs`` the DVHs behind it."""

    doc: dict[str, Any]
    dvhs: dict[str, Any]


def evaluate_plan(result: PlanResult) -> PlanMetrics:
    """The ``metrics.json`` document of a plan, and its DVHs."""
    spec = result.spec
    grid = result.grid
    dose = result.dose_gy
    thickness = result.case.ct.grid.spacing_mm[2]
    rx = spec.prescription_gy
    structures: dict[str, Any] = {}
    dvhs = {}

    # DVHs the pipeline already computed for the OAR limit check, if of this very dose
    known = result.roi_dvhs[1] if result.roi_dvhs and result.roi_dvhs[0] is dose else {}

    def add_roi(name: str, prescription: float | None) -> None:
        if name in structures:
            return
        try:
            if name in known:
                dvh = known[name]
            else:
                dvh = dvh_from_roi(
                    result.case.structures.roi(name), dose, grid, slice_thickness_mm=thickness
                )
        except BrachyCryoError as exc:
            structures[name] = {"error": str(exc)}
            return
        dvhs[name] = dvh
        structures[name] = structure_metrics(dvh, prescription_gy=prescription)

    def add_mask(name: str, mask: np.ndarray | None, prescription: float | None) -> None:
        if mask is None or not mask.any():
            return
        dvh = dvh_from_mask(mask, grid, dose, grid, name=name)
        dvhs[name] = dvh
        structures[name] = structure_metrics(dvh, prescription_gy=prescription)

    lesions: dict[str, Any] = {}
    for lesion in spec.lesions:
        lrx = lesion.prescription_gy or rx
        z = result.zones[lesion.roi]
        add_roi(lesion.roi, lrx)
        add_mask(zone_roi_name(lesion.roi, "SeedTarget"), z.seed_target, lrx)
        add_mask(zone_roi_name(lesion.roi, "Core"), z.core, lrx)
        for h in lesion.high_risk:
            add_mask(zone_roi_name(lesion.roi, h.roi), z.high_risk[h.roi], h.prescription_gy)
        block: dict[str, Any] = {
            "allocation": lesion.allocation,
            "prescription_gy": lrx,
            "gtv_volume_cc": _clean(z.volume_cc("gtv", grid)),
            "core_volume_cc": _clean(z.volume_cc("core", grid)),
            "seed_target_volume_cc": _clean(z.volume_cc("seed_target", grid)),
        }
        if lesion.roi in result.cryo:
            c = result.cryo[lesion.roi]
            gtv = z.gtv
            block["cryo"] = {
                "probe_model": c.probe_model,
                "n_probes": len(c.probes),
                "probes": [
                    {
                        "tip_mm": [round(v, 2) for v in p.tip_mm],
                        "direction": [round(v, 4) for v in p.direction],
                    }
                    for p in c.probes
                ],
                "core_target_coverage_pct": _clean(100.0 * c.coverage),
                "gtv_ablated_pct": _clean(100.0 * (c.lethal & gtv).sum() / gtv.sum()),
                "ice_0c_volume_cc": _clean(c.ice_0c.sum() * grid.voxel_volume_mm3 / 1000.0),
                "lethal_volume_cc": _clean(c.lethal.sum() * grid.voxel_volume_mm3 / 1000.0),
                "oar_min_distance_0c_mm": {k: _clean(v) for k, v in c.oar_min_distance_mm.items()},
            }
        if z.seed_target is not None:
            name = zone_roi_name(lesion.roi, "SeedTarget")
            m = structures[name]
            in_lesion = _seeds_in(result, z.seed_target)
            body = result.masks.get("BODY")
            ref_cc = isodose_volume_cc(dose, grid, lrx, within=body)
            block["seeds"] = {
                "n_seeds_in_target": int(in_lesion),
                "v100_pct": m.get("v100_pct"),
                "v150_pct": m.get("v150_pct"),
                "v200_pct": m.get("v200_pct"),
                "d90_gy": m.get("d90_gy"),
                **{
                    k: _clean(v) if isinstance(v, int | float) else v
                    for k, v in plan_indices(dvhs[name], ref_cc, lrx).items()
                },
            }
        lesions[lesion.roi] = block

    constraints = []
    for limit in spec.oars:
        add_roi(limit.roi, rx)
        dvh = dvhs.get(limit.roi)
        for metric, kind, lim, vol_cc, pct in _oar_constraints_for(limit):
            if dvh is None:
                value = None
            elif kind == "vx":
                value = metric_value(dvh, f"V{lim:g}Gy_cc" if pct is None else f"V{lim:g}Gy")
                lim_report = vol_cc if pct is None else pct
                constraints.append(
                    {
                        "roi": limit.roi,
                        "metric": f"V{lim:g}Gy_{'cc' if pct is None else 'pct'}",
                        "limit": lim_report,
                        "value": _clean(value),
                        "passed": value is not None and value <= lim_report + 1e-6,
                    }
                )
                continue
            else:
                value = metric_value(
                    dvh, {"dmax": "Dmax", "d0.1cc": "D0.1cc", "d2cc": "D2cc"}[metric]
                )
            constraints.append(
                {
                    "roi": limit.roi,
                    "metric": {"dmax": "Dmax", "d0.1cc": "D0.1cc", "d2cc": "D2cc"}[metric],
                    "limit": lim,
                    "value": _clean(value),
                    "passed": value is not None and value <= lim + 1e-6,
                }
            )
    goals = []
    for lesion in spec.lesions:
        z = result.zones[lesion.roi]
        if z.seed_target is None:
            continue
        m = structures[zone_roi_name(lesion.roi, "SeedTarget")]
        lrx = lesion.prescription_gy or rx
        goals.append(
            {
                "roi": zone_roi_name(lesion.roi, "SeedTarget"),
                "metric": "V100",
                "goal": spec.optimizer.v100_min_pct,
                "value": m.get("v100_pct"),
                "passed": (m.get("v100_pct") or 0) >= spec.optimizer.v100_min_pct - 1e-6,
            }
        )
        goals.append({"roi": zone_roi_name(lesion.roi, "SeedTarget"), "metric": "D90",
                      "goal": lrx, "value": m.get("d90_gy"),
                      "passed": (m.get("d90_gy") or 0) >= lrx - 1e-6})  # fmt: skip
        for h in lesion.high_risk:  # each sub-zone against its own prescription
            name = zone_roi_name(lesion.roi, h.roi)
            hm = structures.get(name, {})
            goals.append({"roi": name, "metric": "V100", "goal": spec.optimizer.v100_min_pct,
                          "prescription_gy": h.prescription_gy, "value": hm.get("v100_pct"),
                          "passed": (hm.get("v100_pct") or 0)
                          >= spec.optimizer.v100_min_pct - 1e-6})  # fmt: skip
            d90 = hm.get("d90_gy")
            goals.append({"roi": name, "metric": "D90", "goal": h.prescription_gy, "value": d90,
                          "passed": (d90 or 0) >= h.prescription_gy - 1e-6})  # fmt: skip
    cryo_binding = []
    for lesion in spec.lesions:
        if lesion.allocation != "cryo" or lesion.roi not in result.cryo:
            continue
        c = result.cryo[lesion.roi]
        passed = 100.0 * c.coverage >= spec.cryo.coverage_min_pct - 1e-6
        goals.append({"roi": lesion.roi, "metric": f"lethal ({spec.cryo.lethal_isotherm_c:g} C) "
                      "coverage", "goal": spec.cryo.coverage_min_pct,
                      "value": _clean(100.0 * c.coverage), "passed": passed})  # fmt: skip
        if not passed:
            cryo_binding.append(
                f"cryo {lesion.roi}: the best layout of <= {spec.cryo.max_probes} "
                f"{c.probe_model} probes reaches {100 * c.coverage:.1f} % (probe spacing, "
                f"{spec.cryo.oar_margin_mm:g} mm OAR margin of the 0 C isotherm, max_probes)"
            )
    sel = result.selection
    doc = {
        "prescription_gy": rx,
        "seed_model": spec.seed_model,
        "sk_u": spec.sk_u,
        "n_seeds": result.n_seeds,
        "n_needles": result.n_needles,
        "total_sk_u": round(result.n_seeds * spec.sk_u, 4),
        "structures": structures,
        "lesions": lesions,
        "constraints": constraints,
        "goals": goals,
        "feasible": (bool(sel.feasible) if sel is not None else True) and not cryo_binding,
        "binding": (list(sel.binding) if sel is not None and not sel.feasible else [])
        + cryo_binding,
        "backend": result.backend,
        "timings_s": {k: round(v, 3) for k, v in result.timings_s.items()},
    }
    if sel is not None:
        doc["optimizer"] = {
            "method": (
                "MILP (HiGHS)"
                if spec.optimizer.method == "milp"
                else "LP relaxation (HiGHS) + greedy construction + prune + swaps"
            ),
            "iterations": sel.iterations,
            "time_s": round(sel.time_s, 3),
            "sample_point_coverage": sel.coverage,
            "log": sel.log,
        }
    return PlanMetrics(doc=doc, dvhs=dvhs)


def _seeds_in(result: PlanResult, mask: np.ndarray) -> int:
    if result.n_seeds == 0:
        return 0
    return int(result.grid.sample_nearest(mask, result.seed_positions_mm, outside=False).sum())
