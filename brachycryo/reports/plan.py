"""The HTML report of a zoned plan, built with :mod:`brachycryo.reports.html` from a
:class:`PlanResult`, and the whole output folder of a plan (data files, then the report)."""

from __future__ import annotations

import os
from pathlib import Path

from brachycryo.planning.evaluate import PlanMetrics
from brachycryo.planning.outputs import PLAN_OUTPUT_NAMES, used_needles, write_plan_outputs
from brachycryo.planning.pipeline import PlanResult
from brachycryo.planning.robust import RobustSummary
from brachycryo.qa.evaluate import PlanEvaluation
from brachycryo.reports.combined import combined_coverage_section
from brachycryo.reports.html import Constraint, ReportExtras, build_report_html, write_report
from brachycryo.reports.plots import Instruments, NeedleOverlay, ProbeOverlay
from brachycryo.reports.viewer import MaskLayer

#: Outline colours of the planner's seed targets (apart from the isotherms' and the OARs').
_ZONE_COLOURS = ((80, 230, 80), (255, 215, 0), (0, 160, 110), (200, 255, 120))


def _triplet(v) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def plan_instruments(result: PlanResult) -> Instruments:
    """The plan's cryo probes as inserted (skin entry, tip, active zone; the tracks of
    probes.csv) and its seed needles (entry to deepest seed; needles.csv), to draw."""
    probes = [
        ProbeOverlay(t.entry_mm, t.tip_mm, t.active_start_mm, t.active_end_mm)
        for t in result.probe_tracks
    ]
    needles = [
        NeedleOverlay(_triplet(n.entry_mm), _triplet(n.deepest_mm)) for n in used_needles(result)
    ]
    return Instruments(probes=probes, needles=needles)


def robust_lines(r: RobustSummary) -> list[str]:
    """The robust option's result as report lines: targets, probabilities, seed cost."""
    kept = r.rounds[r.chosen]
    s = r.spec
    state = "met" if r.met else "NOT met"
    out = [
        f"robust plan ({s.scenarios} scenarios of the {r.error_model} needle error model, "
        f"seed {s.seed}): targets P(D90 >= Rx) >= {s.min_probability:g} and P(OAR limit met) "
        f">= {s.oar_min_probability:g} {state}; {kept.n_seeds} seeds, "
        f"{r.extra_seeds:+d} seeds and {r.extra_needles:+d} needles versus the nominal plan "
        f"({r.rounds[0].n_seeds} seeds, round {r.chosen} of {len(r.rounds) - 1} kept)"
    ]
    nominal = r.rounds[0]
    for name, p in kept.p_d90.items():
        out.append(f"robust: {name} P(D90 >= Rx) = {p:.3f} (nominal {nominal.p_d90[name]:.3f})")
    for name, p in kept.p_met.items():
        out.append(f"robust: {name} P(met) = {p:.3f} (nominal {nominal.p_met[name]:.3f})")
    if r.limited_by:
        out.append(
            f"robust: round {len(r.rounds) - 1}'s margins could not be reached; binding: "
            + "; ".join(r.limited_by)
        )
    return out


def write_plan_report(
    path: str | os.PathLike,
    result: PlanResult,
    plan_metrics: PlanMetrics,
    *,
    overwrite: bool = False,
    render_3d: bool = True,
) -> Path:
    """Metrics, constraints, DVHs, isodose slices with zones/seeds/probes, and a 3-D view."""
    spec = result.spec
    evaluation = PlanEvaluation(
        prescription_gy=spec.prescription_gy,
        dvhs=dict(plan_metrics.dvhs),
        metrics={k: v.values for k, v in plan_metrics.structures.items() if v.error is None},
        files={"plan": str(spec.source or "in memory")},
        warnings=[f"binding: {b}" for b in plan_metrics.binding],
    )
    constraints = [
        Constraint(c.roi, c.dvh_metric, "<=", float(c.limit)) for c in plan_metrics.constraints
    ]
    for g in plan_metrics.goals:
        if g.on_dvh:
            op = "<=" if g.at_most else ">="
            constraints.append(Constraint(g.roi, g.metric, op, float(g.goal)))
        else:  # cryo ablation coverage: not a DVH metric, reported as a line of its own
            state = "met" if g.passed else "NOT met"
            evaluation.warnings.append(
                f"{g.roi}: {g.metric} {g.value} % (goal {g.goal} %): {state}"
            )
    robust = plan_metrics.optimizer.robust if plan_metrics.optimizer else None
    if robust is not None:
        evaluation.warnings.extend(robust_lines(robust))
    rois = []
    names = [lesion.roi for lesion in spec.lesions] + [o.roi for o in spec.oars]
    for name in dict.fromkeys(names):
        if name in result.case.structures.roi_names:
            rois.append(result.case.structures.roi(name))
    isotherms = {}
    for lesion, layout in result.cryo.items():
        isotherms[f"{lesion} 0 C"] = layout.ice_0c
        isotherms[f"{lesion} {spec.cryo.lethal_isotherm_c:g} C"] = layout.lethal
    seed_targets = [
        (le, z.seed_target) for le, z in result.zones.items() if z.seed_target is not None
    ]
    zones = [
        MaskLayer(
            f"{le} seed target", _ZONE_COLOURS[n % len(_ZONE_COLOURS)], m, result.grid, "zone"
        )
        for n, (le, m) in enumerate(seed_targets)
    ]
    combined = combined_coverage_section(result, plan_metrics)  # sequential arm only
    html = build_report_html(
        evaluation,
        dose_gy=result.dose_gy,
        dose_grid=result.grid,
        ct_hu=result.case.ct.hu,
        ct_grid=result.case.ct.grid,
        rois=rois,
        target=spec.lesions[0].roi,
        seeds_mm=result.seeds.positions_mm,
        instruments=plan_instruments(result),
        isotherms=isotherms,
        isotherm_grid=result.grid,
        constraints=constraints,
        title=f"brachycryo zoned plan: {result.n_seeds} seeds, {result.n_needles} needles",
        render_3d=render_3d,
        extras=ReportExtras(sections=[combined] if combined else [], masks=zones),
    )
    return write_report(path, html, overwrite=overwrite)


def write_plan_folder(
    result: PlanResult,
    plan_metrics: PlanMetrics,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    report_html: bool = True,
    dose_bits: int = 32,
) -> dict[str, Path]:
    """Every output of a plan: the data files of :func:`write_plan_outputs`, then
    ``report.html`` (unless ``report_html`` is false); returns {kind: path}."""
    paths = write_plan_outputs(
        result, plan_metrics, out_dir, overwrite=overwrite, dose_bits=dose_bits
    )
    if report_html:
        paths["report"] = Path(out_dir) / PLAN_OUTPUT_NAMES["report"]
        write_plan_report(paths["report"], result, plan_metrics, overwrite=overwrite)
    return paths
