"""Plan metrics: DVH metrics per structure and zone, per-lesion blocks, constraint checks.

Structures from the RTSTRUCT are evaluated from their contours (``brachycryo.qa.dvh.dvh_from_roi``,
as ``brachycryo dvh`` does on the written files); zones the planner made (seed target,
ablated core, isotherms) from their masks on the planning grid.  Metric names follow the DVH
command's JSON (``d90_gy``, ``v100_pct``, ...).  The result is typed
(:class:`PlanMetrics`); :func:`brachycryo.planning.outputs.metrics_document` writes it as
``metrics.json``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brachycryo.core.errors import BrachyCryoError
from brachycryo.core.grid import Grid
from brachycryo.planning.cryo_layout import CryoLayout
from brachycryo.planning.pipeline import PlanResult
from brachycryo.planning.probe_tracks import track_clearance_mm
from brachycryo.planning.robust import RobustSummary
from brachycryo.planning.spec import LesionSpec, PlanSpec
from brachycryo.planning.zones import LesionZones, expand_mm, shrink_mm
from brachycryo.qa.dvh import DVH, dvh_from_mask, dvh_from_roi
from brachycryo.qa.metrics import (
    isodose_volumes_by_target_cc,
    metric_value,
    plan_indices,
    structure_metrics,
)

#: Tolerance of the pass / fail checks of limits and goals.
CHECK_TOLERANCE = 1e-6


def _clean(x: float | None) -> float | None:
    """``x`` rounded to 4 decimals; None for None, NaN and infinity."""
    if x is None:
        return None
    x = float(x)
    return None if not np.isfinite(x) else round(x, 4)


def zone_roi_name(lesion: str, zone: str) -> str:
    return f"{lesion}_{zone}"


@dataclass(frozen=True)
class StructureMetrics:
    """The DVH metrics of one structure under the key names of ``brachycryo dvh --json``
    (:func:`brachycryo.qa.metrics.structure_metrics`), or why there are none (``error``)."""

    values: dict[str, float | None]
    error: str | None = None

    def get(self, key: str) -> float | None:
        return self.values.get(key)


@dataclass(frozen=True)
class ProbePlacement:
    """A cryo probe as reported: tip (mm, 2 decimals), direction tip -> handle (4
    decimals), skin entry (mm) and insertion depth (mm), and the no-go structures its
    track crosses (:mod:`brachycryo.planning.probe_tracks`)."""

    tip_mm: tuple[float, ...]
    direction: tuple[float, ...]
    entry_mm: tuple[float, ...] = ()
    insertion_depth_mm: float | None = None
    crosses: tuple[str, ...] = ()


@dataclass(frozen=True)
class CryoMetrics:
    """A lesion's probe layout and its ice (percentages 0-100, volumes in cm³)."""

    probe_model: str
    n_probes: int
    probes: tuple[ProbePlacement, ...]
    core_target_coverage_pct: float | None
    gtv_ablated_pct: float | None
    ice_0c_volume_cc: float | None
    lethal_volume_cc: float | None
    oar_min_distance_0c_mm: dict[str, float | None]


@dataclass(frozen=True)
class SeedTargetMetrics:
    """A lesion's seed target: seeds inside it, coverage, and the plan indices
    (:func:`brachycryo.qa.metrics.plan_indices`: CI, EI, HI and the volumes behind them)."""

    n_seeds_in_target: int
    v100_pct: float | None
    v150_pct: float | None
    v200_pct: float | None
    d90_gy: float | None
    target: str
    ci: float | None
    ei: float | None
    hi: float | None
    v_t_cc: float | None
    v_t_ref_cc: float | None
    v_ref_cc: float | None


@dataclass(frozen=True)
class RegionCoverage:
    """Percent (0-100) of a region treated: by ice or dose (``combined``: inside the lethal
    isotherm or at least the prescription from the seeds), by ice alone, by dose alone."""

    combined_pct: float | None
    ice_pct: float | None
    dose_pct: float | None

    def to_json(self) -> dict[str, float | None]:
        return {"combined_pct": self.combined_pct, "ice_pct": self.ice_pct,
                "dose_pct": self.dose_pct}  # fmt: skip


@dataclass(frozen=True)
class SequentialMetrics:
    """A cryo lesion planned around implanted seeds (``[case] implanted_plan``).

    ``probes``: (tip mm, direction tip -> handle, closest approach of the track tip -> skin
    entry to an implanted seed, mm); ``coverage``: {"core", "margin", "gtv"} ->
    :class:`RegionCoverage`.  The core is the core target (the GTV shrunk by
    ``core_margin_mm`` for a zoned lesion, the GTV for a cryo lesion), the margin the
    lesion's GTV + ``margin_mm`` inside the body less that core, the gtv the whole GTV."""

    implanted_plan: str
    n_implanted_seeds: int
    seed_clearance_mm: float
    probes: tuple[tuple[tuple[float, ...], tuple[float, ...], float | None], ...]
    min_probe_seed_distance_mm: float | None
    coverage: dict[str, RegionCoverage]

    def to_json(self) -> dict:
        return {
            "implanted_plan": self.implanted_plan,
            "n_implanted_seeds": self.n_implanted_seeds,
            "seed_clearance_mm": self.seed_clearance_mm,
            "probes": [
                {"tip_mm": list(t), "direction": list(d), "min_seed_distance_mm": m}
                for t, d, m in self.probes
            ],
            "min_probe_seed_distance_mm": self.min_probe_seed_distance_mm,
            "coverage": {k: v.to_json() for k, v in self.coverage.items()},
        }


@dataclass(frozen=True)
class LesionMetrics:
    """One lesion's block: its zones' volumes (cm³), its cryo layout, its seed target, and
    with implanted seeds its combined (ice or dose) coverage."""

    allocation: str
    prescription_gy: float
    gtv_volume_cc: float | None
    core_volume_cc: float | None
    seed_target_volume_cc: float | None
    cryo: CryoMetrics | None
    seeds: SeedTargetMetrics | None
    sequential: SequentialMetrics | None = None
    #: the lesion's high-risk sub-zones: (zone ROI name in ``RS.zones.dcm``, prescription Gy)
    high_risk: tuple[tuple[str, float], ...] = ()


@dataclass(frozen=True)
class ConstraintResult:
    """An OAR limit on the final dose: ``metric`` as ``metrics.json`` names it (``D2cc``,
    ``V20Gy_pct``), ``dvh_metric`` as :func:`brachycryo.qa.metrics.metric_value` does
    (``D2cc``, ``V20Gy``); ``limit`` and ``value`` in the metric's unit (Gy, cm³ or %)."""

    roi: str
    metric: str
    limit: float
    value: float | None
    passed: bool
    dvh_metric: str


@dataclass(frozen=True)
class GoalResult:
    """A goal: V100 (%) or D90 (Gy) of a seed-target zone (``on_dvh``), at least ``goal``;
    its V150 / V200 (%), at most ``goal`` (``at_most``: the hot-spot goals); or the
    lethal-isotherm coverage (%) of a cryo lesion.  ``prescription_gy`` is set for the
    V100 of a high-risk sub-zone, which is relative to its own prescription."""

    roi: str
    metric: str
    goal: float
    value: float | None
    passed: bool
    prescription_gy: float | None = None
    on_dvh: bool = True
    at_most: bool = False


@dataclass(frozen=True)
class OptimizerSummary:
    """How the seeds were selected: method, iterations, time, coverage on the sample points
    ({zone: {v100_pct, d90_gy, v150_pct, v200_pct}}) and the optimiser's log."""

    method: str
    iterations: int
    time_s: float
    sample_point_coverage: dict[str, dict[str, float]]
    log: tuple[str, ...]
    robust: RobustSummary | None = None  # ``[optimizer] robust``


@dataclass(frozen=True)
class SeedSets:
    """With implanted seeds (``[case] implanted_plan``): the seeds already in the patient
    and the new ones this plan adds (``add_seeds = true``), each counted with its total
    S_K (U); the dose and DVHs of the plan are those of both together."""

    implanted_plan: str
    n_implanted: int
    implanted_total_sk_u: float
    n_new: int
    new_total_sk_u: float

    def to_json(self) -> dict:
        return {
            "implanted": {"plan": self.implanted_plan, "n_seeds": self.n_implanted,
                          "total_sk_u": self.implanted_total_sk_u},
            "new": {"n_seeds": self.n_new, "total_sk_u": self.new_total_sk_u},
            "total_dose": "implanted + new seeds (RTDOSE, DVHs, coverage)",
        }  # fmt: skip


@dataclass(frozen=True)
class PlanMetrics:
    """The metrics of a plan (the content of ``metrics.json``) and the DVHs behind them.

    ``structures`` lists the lesions and their zones, then the OARs, in evaluation order;
    ``binding`` names what keeps an infeasible plan from its goals; ``timings_s`` (rounded
    to ms) are the plan's stage times.
    """

    prescription_gy: float
    seed_model: str
    sk_u: float
    n_seeds: int
    n_needles: int
    total_sk_u: float
    structures: dict[str, StructureMetrics]
    lesions: dict[str, LesionMetrics]
    constraints: tuple[ConstraintResult, ...]
    goals: tuple[GoalResult, ...]
    feasible: bool
    binding: tuple[str, ...]
    backend: str
    timings_s: dict[str, float]
    optimizer: OptimizerSummary | None
    dvhs: dict[str, DVH]
    notes: tuple[str, ...] = ()  # what was supplied for the user (e.g. a derived body)
    seed_sets: SeedSets | None = None  # implanted vs new seeds (sequential arm)


class _StructureTable:
    """Structures' metrics and DVHs, filled in evaluation order (the order of the JSON)."""

    def __init__(self, result: PlanResult) -> None:
        self.result = result
        self.metrics: dict[str, StructureMetrics] = {}
        self.dvhs: dict[str, DVH] = {}
        # DVHs the pipeline already computed for the OAR limit check, if of this very dose
        cached = result.roi_dvhs
        self.known = cached[1] if cached and cached[0] is result.dose_gy else {}

    def add_roi(self, name: str, prescription: float | None) -> None:
        """A structure of the RTSTRUCT, from its contours (once)."""
        if name in self.metrics:
            return
        r = self.result
        try:
            if name in self.known:
                dvh = self.known[name]
            else:
                dvh = dvh_from_roi(
                    r.case.structures.roi(name), r.dose_gy, r.grid,
                    slice_thickness_mm=r.case.ct.grid.spacing_mm[2],
                )  # fmt: skip
        except BrachyCryoError as exc:
            self.metrics[name] = StructureMetrics({}, error=str(exc))
            return
        self.dvhs[name] = dvh
        self.metrics[name] = StructureMetrics(structure_metrics(dvh, prescription_gy=prescription))

    def add_mask(self, name: str, mask: np.ndarray | None, prescription: float | None) -> None:
        """A zone the planner made, from its mask (skipped when empty)."""
        if mask is None or not mask.any():
            return
        grid = self.result.grid
        dvh = dvh_from_mask(mask, grid, self.result.dose_gy, grid, name=name)
        self.dvhs[name] = dvh
        self.metrics[name] = StructureMetrics(structure_metrics(dvh, prescription_gy=prescription))

    def value(self, name: str, key: str) -> float | None:
        """A metric of a structure; None when the structure or the metric is missing."""
        m = self.metrics.get(name)
        return None if m is None else m.get(key)


def evaluate_zoned_plan(result: PlanResult) -> PlanMetrics:
    """The metrics of a zoned plan (``metrics.json``), and its DVHs."""
    spec = result.spec
    table = _StructureTable(result)
    ref_cc = _reference_isodose_cc(result)
    lesions = {
        lesion.roi: _lesion_metrics(result, lesion, table, ref_cc.get(lesion.roi))
        for lesion in spec.lesions
    }
    constraints = _constraint_results(spec, table)
    goals = _seed_goals(spec, result.zones, table)
    cryo_goals, cryo_binding = _cryo_goals(spec, result.cryo)
    cryo_binding += [
        f"cryo {t.lesion}: probe {t.number}'s track crosses {', '.join(t.crosses)} "
        f"(within {track_clearance_mm(spec):g} mm)"
        for t in result.probe_tracks
        if t.crosses
    ]
    sel = result.selection
    feasible = (bool(sel.feasible) if sel is not None else True) and not cryo_binding
    binding = (list(sel.binding) if sel is not None and not sel.feasible else []) + cryo_binding
    return PlanMetrics(
        prescription_gy=spec.prescription_gy,
        seed_model=spec.seed_model,
        sk_u=spec.sk_u,
        n_seeds=result.n_seeds,
        n_needles=result.n_needles,
        total_sk_u=round(result.n_seeds * spec.sk_u, 4),
        structures=table.metrics,
        lesions=lesions,
        constraints=tuple(constraints),
        goals=tuple(goals + cryo_goals),
        feasible=feasible,
        binding=tuple(binding),
        backend=result.backend,
        timings_s={k: round(v, 3) for k, v in result.timings_s.items()},
        optimizer=None if sel is None else _optimizer_summary(spec, result),
        dvhs=table.dvhs,
        notes=result.case.notes,
        seed_sets=_seed_sets(result),
    )


def _seed_sets(result: PlanResult) -> SeedSets | None:
    implanted = result.implanted
    if implanted is None:
        return None
    return SeedSets(
        implanted_plan=str(implanted.path),
        n_implanted=implanted.n_seeds,
        implanted_total_sk_u=round(float(np.sum(implanted.seeds.sk_u)), 4),
        n_new=result.n_seeds,
        new_total_sk_u=round(result.n_seeds * result.spec.sk_u, 4),
    )


def _lesion_metrics(
    result: PlanResult, lesion: LesionSpec, table: _StructureTable, ref_cc: float | None
) -> LesionMetrics:
    """A lesion's block (``ref_cc``: its reference isodose volume, None without seeds);
    adds the lesion and its zones to ``table``."""
    lrx = lesion.prescription_gy or result.spec.prescription_gy
    z = result.zones[lesion.roi]
    grid = result.grid
    table.add_roi(lesion.roi, lrx)
    table.add_mask(zone_roi_name(lesion.roi, "SeedTarget"), z.seed_target, lrx)
    table.add_mask(zone_roi_name(lesion.roi, "Core"), z.core, lrx)
    for h in lesion.high_risk:
        table.add_mask(zone_roi_name(lesion.roi, h.roi), z.high_risk[h.roi], h.prescription_gy)
    cryo = result.cryo.get(lesion.roi)
    return LesionMetrics(
        allocation=lesion.allocation,
        prescription_gy=lrx,
        gtv_volume_cc=_clean(z.volume_cc("gtv", grid)),
        core_volume_cc=_clean(z.volume_cc("core", grid)),
        seed_target_volume_cc=_clean(z.volume_cc("seed_target", grid)),
        cryo=None if cryo is None else _cryo_metrics(result, z, cryo),
        seeds=_seed_target_metrics(result, lesion, z, table, ref_cc),
        sequential=None if cryo is None else _sequential_metrics(result, lesion, cryo),
        high_risk=tuple(
            (zone_roi_name(lesion.roi, h.roi), h.prescription_gy)
            for h in lesion.high_risk
            if z.seed_target is not None
        ),
    )


def _pct(part: np.ndarray, region: np.ndarray) -> float | None:
    n = int(np.count_nonzero(region))
    return None if n == 0 else _clean(100.0 * np.count_nonzero(part & region) / n)


def coverage_grid(result: PlanResult, lesion: LesionSpec) -> Grid:
    """The planning CT's voxels around the lesion (GTV + ``margin_mm`` + one planning
    voxel): the combined coverage is counted on CT voxels, the ones the isotherm ROIs are
    drawn on, so that it can be recounted from the written RTSTRUCT and RTDOSE."""
    grid, ct_grid = result.grid, result.case.ct.grid
    region = expand_mm(result.zones[lesion.roi].gtv, grid, lesion.margin_mm + max(grid.spacing_mm))
    ijk = np.argwhere(region)[:, ::-1].astype(float)
    corners = grid.ijk_to_mm(np.concatenate([ijk.min(axis=0)[None], ijk.max(axis=0)[None]]))
    ct_ijk = ct_grid.mm_to_ijk(corners)
    size = np.asarray(ct_grid.size_ijk)
    lo = np.clip(np.floor(ct_ijk.min(axis=0)), 0, size - 1).astype(int)
    hi = np.clip(np.ceil(ct_ijk.max(axis=0)) + 1, 1, size).astype(int)
    return ct_grid.cropped(lo, hi)


def sequential_regions(result: PlanResult, lesion: LesionSpec, grid: Grid) -> dict[str, np.ndarray]:
    """The regions whose combined coverage is reported, on ``grid`` (CT voxels): the GTV
    (its contours rasterised), the core target (the GTV shrunk by ``core_margin_mm`` for a
    zoned lesion; the GTV for a cryo lesion) and the margin (GTV + ``margin_mm`` inside
    BODY, less the core target)."""
    from brachycryo.dicom_io.rasterize import roi_mask
    from brachycryo.planning.case import body_roi_name

    case = result.case
    thickness = case.ct.grid.spacing_mm[2]
    gtv = roi_mask(case.structures.roi(lesion.roi), grid, slice_thickness_mm=thickness)
    body = roi_mask(case.structures.roi(body_roi_name(case)), grid, slice_thickness_mm=thickness)
    core = gtv
    if lesion.allocation == "zoned":
        core = shrink_mm(gtv, grid, lesion.core_margin_mm) & gtv
    margin = expand_mm(gtv, grid, lesion.margin_mm) & body & ~core
    return {"core": core, "margin": margin, "gtv": gtv}


def _sequential_metrics(
    result: PlanResult, lesion: LesionSpec, c: CryoLayout
) -> SequentialMetrics | None:
    """The combined coverage and probe-seed distances of a cryo lesion with implanted seeds."""
    from brachycryo.planning.implanted import segment_point_distance_mm

    implanted = result.implanted
    if implanted is None:
        return None
    lrx = lesion.prescription_gy or result.spec.prescription_gy
    grid = coverage_grid(result, lesion)
    centres = grid.voxel_centres_mm()
    # nearest planning voxel, as the written isotherm ROI and a dose look-up see them
    ice = result.grid.sample_nearest(c.lethal, centres, outside=False)
    dose = result.grid.sample_nearest(result.dose_gy, centres, outside=0.0) >= lrx
    coverage = {
        name: RegionCoverage(_pct(ice | dose, m), _pct(ice, m), _pct(dose, m))
        for name, m in sequential_regions(result, lesion, grid).items()
    }
    seeds = implanted.seeds.positions_mm
    probes = []
    for t in result.probe_tracks:
        if t.lesion != lesion.roi:
            continue
        d = segment_point_distance_mm(np.asarray(t.tip_mm), np.asarray(t.entry_mm), seeds)
        tip = tuple(round(v, 2) for v in t.tip_mm)
        probes.append((tip, tuple(round(v, 4) for v in t.direction), _clean(float(d.min()))))
    distances = [p[2] for p in probes if p[2] is not None]
    return SequentialMetrics(
        implanted_plan=str(implanted.path),
        n_implanted_seeds=implanted.n_seeds,
        seed_clearance_mm=result.spec.cryo.seed_clearance_mm,
        probes=tuple(probes),
        min_probe_seed_distance_mm=min(distances) if distances else None,
        coverage=coverage,
    )


def _cryo_metrics(result: PlanResult, z: LesionZones, c: CryoLayout) -> CryoMetrics:
    gtv = z.gtv
    voxel_mm3 = result.grid.voxel_volume_mm3
    return CryoMetrics(
        probe_model=c.probe_model,
        n_probes=len(c.probes),
        probes=tuple(
            ProbePlacement(
                tip_mm=tuple(round(v, 2) for v in t.tip_mm),
                direction=tuple(round(v, 4) for v in t.direction),
                entry_mm=tuple(round(v, 2) for v in t.entry_mm),
                insertion_depth_mm=round(t.insertion_depth_mm, 2),
                crosses=t.crosses,
            )
            for t in result.probe_tracks
            if t.lesion == c.lesion
        ),
        core_target_coverage_pct=_clean(100.0 * c.coverage),
        gtv_ablated_pct=_clean(100.0 * (c.lethal & gtv).sum() / gtv.sum()),
        ice_0c_volume_cc=_clean(c.ice_0c.sum() * voxel_mm3 / 1000.0),
        lethal_volume_cc=_clean(c.lethal.sum() * voxel_mm3 / 1000.0),
        oar_min_distance_0c_mm={k: _clean(v) for k, v in c.oar_min_distance_mm.items()},
    )


def _reference_isodose_cc(result: PlanResult) -> dict[str, float]:
    """Each seed-target lesion's V_ref: the body volume receiving at least its prescription
    and nearer to its seed target than to any other lesion's
    (:func:`brachycryo.qa.metrics.isodose_volumes_by_target_cc`).  With one seed lesion this
    is the whole prescription isodose volume in the body."""
    lesions = [
        lesion for lesion in result.spec.lesions
        if result.zones[lesion.roi].seed_target is not None
    ]  # fmt: skip
    targets = [result.zones[lesion.roi].seed_target for lesion in lesions]
    levels = [lesion.prescription_gy or result.spec.prescription_gy for lesion in lesions]
    volumes = isodose_volumes_by_target_cc(
        result.dose_gy,
        result.grid,
        [t for t in targets if t is not None],
        levels,
        within=result.masks.get("BODY"),
    )
    return {lesion.roi: v for lesion, v in zip(lesions, volumes, strict=True)}


def _seed_target_metrics(
    result: PlanResult,
    lesion: LesionSpec,
    z: LesionZones,
    table: _StructureTable,
    ref_cc: float | None,
) -> SeedTargetMetrics | None:
    """The seed-target block of a lesion with seeds (None without a seed target); its CI and
    EI use the lesion's own reference isodose volume ``ref_cc``
    (:func:`_reference_isodose_cc`)."""
    if z.seed_target is None:
        return None
    lrx = lesion.prescription_gy or result.spec.prescription_gy
    name = zone_roi_name(lesion.roi, "SeedTarget")
    m = table.metrics[name]
    dvh = table.dvhs[name]
    assert ref_cc is not None  # every lesion with a seed target has one
    indices = plan_indices(dvh, ref_cc, lrx)
    return SeedTargetMetrics(
        n_seeds_in_target=_seeds_in(result, z.seed_target),
        v100_pct=m.get("v100_pct"),
        v150_pct=m.get("v150_pct"),
        v200_pct=m.get("v200_pct"),
        d90_gy=m.get("d90_gy"),
        target=dvh.name,
        ci=_clean(indices["ci"]),
        ei=_clean(indices["ei"]),
        hi=_clean(indices["hi"]),
        v_t_cc=_clean(indices["v_t_cc"]),
        v_t_ref_cc=_clean(indices["v_t_ref_cc"]),
        v_ref_cc=_clean(indices["v_ref_cc"]),
    )


def _constraint_results(spec: PlanSpec, table: _StructureTable) -> list[ConstraintResult]:
    """Every OAR limit on the final dose (adds the OARs to ``table``)."""
    out = []
    for limit in spec.oars:
        table.add_roi(limit.roi, spec.prescription_gy)
        dvh = table.dvhs.get(limit.roi)
        for term in limit.terms():
            value = None if dvh is None else metric_value(dvh, term.dvh_metric)
            bound = term.reported_limit
            out.append(
                ConstraintResult(
                    roi=limit.roi,
                    metric=term.label,
                    limit=bound,
                    value=_clean(value),
                    passed=value is not None and value <= bound + CHECK_TOLERANCE,
                    dvh_metric=term.dvh_metric,
                )
            )
    return out


def _seed_goals(
    spec: PlanSpec, zones: dict[str, LesionZones], table: _StructureTable
) -> list[GoalResult]:
    """V100 and D90 of every seed target and of its high-risk sub-zones; V150 and V200 of
    every seed target (hot-spot goals, :meth:`PlanSpec.hot_spot_goals`)."""
    v100_goal = spec.optimizer.v100_min_pct
    goals = []
    for lesion in spec.lesions:
        if zones[lesion.roi].seed_target is None:
            continue
        name = zone_roi_name(lesion.roi, "SeedTarget")
        m = table.metrics[name]
        lrx = lesion.prescription_gy or spec.prescription_gy
        v100, d90 = m.get("v100_pct"), m.get("d90_gy")
        goals.append(_goal(name, "V100", v100_goal, v100))
        goals.append(_goal(name, "D90", lrx, d90))
        hot = spec.hot_spot_goals(lesion)
        goals.append(_upper_goal(name, "V150", hot.v150_max_pct, m.get("v150_pct")))
        goals.append(_upper_goal(name, "V200", hot.v200_max_pct, m.get("v200_pct")))
        for h in lesion.high_risk:  # each sub-zone against its own prescription
            sub = zone_roi_name(lesion.roi, h.roi)
            v100 = table.value(sub, "v100_pct")
            goals.append(_goal(sub, "V100", v100_goal, v100, prescription_gy=h.prescription_gy))
            goals.append(_goal(sub, "D90", h.prescription_gy, table.value(sub, "d90_gy")))
    return goals


def _goal(
    roi: str, metric: str, goal: float, value: float | None, *, prescription_gy: float | None = None
) -> GoalResult:
    """A DVH goal: met when ``value`` (a missing value counts as 0) reaches ``goal``."""
    passed = (value or 0) >= goal - CHECK_TOLERANCE
    return GoalResult(roi, metric, goal, value, passed, prescription_gy=prescription_gy)


def _upper_goal(roi: str, metric: str, goal: float, value: float | None) -> GoalResult:
    """A hot-spot goal: met when ``value`` (a missing value does not meet it) stays at or
    below ``goal``."""
    passed = value is not None and value <= goal + CHECK_TOLERANCE
    return GoalResult(roi, metric, goal, value, passed, at_most=True)


def _cryo_goals(spec: PlanSpec, cryo: dict[str, CryoLayout]) -> tuple[list[GoalResult], list[str]]:
    """The lethal-isotherm coverage goal of every cryo-only lesion, and the binding
    reasons of those that miss it."""
    goals, binding = [], []
    for lesion in spec.lesions:
        if lesion.allocation != "cryo" or lesion.roi not in cryo:
            continue
        c = cryo[lesion.roi]
        passed = 100.0 * c.coverage >= spec.cryo.coverage_min_pct - CHECK_TOLERANCE
        goals.append(
            GoalResult(
                roi=lesion.roi,
                metric=f"lethal ({spec.cryo.lethal_isotherm_c:g} C) coverage",
                goal=spec.cryo.coverage_min_pct,
                value=_clean(100.0 * c.coverage),
                passed=passed,
                on_dvh=False,
            )
        )
        if not passed:
            binding.append(
                f"cryo {lesion.roi}: the best layout of <= {spec.cryo.max_probes} "
                f"{c.probe_model} probes reaches {100 * c.coverage:.1f} % (probe spacing, "
                f"{spec.cryo.oar_margin_mm:g} mm OAR margin of the 0 C isotherm, max_probes)"
            )
    return goals, binding


def _optimizer_summary(spec: PlanSpec, result: PlanResult) -> OptimizerSummary:
    sel = result.selection
    assert sel is not None  # called for plans with seeds
    return OptimizerSummary(
        method=(
            "MILP (HiGHS)"
            if spec.optimizer.method == "milp"
            else "LP relaxation (HiGHS) + greedy construction + prune + swaps"
        ),
        iterations=sel.iterations,
        time_s=round(sel.time_s, 3),
        sample_point_coverage=sel.coverage,
        log=tuple(sel.log),
        robust=result.robust,
    )


def _seeds_in(result: PlanResult, mask: np.ndarray) -> int:
    if result.n_seeds == 0:
        return 0
    return int(result.grid.sample_nearest(mask, result.seeds.positions_mm, outside=False).sum())
