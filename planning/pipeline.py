"""A complete zoned plan: case -> zones -> cryo probes -> needles -> seeds -> dose -> metrics.

:func:`make_plan` does the computation and returns a :class:`PlanResult`;
:mod:`brachycryo.planning.outputs` writes it.  The order follows the clinical logic of the zoned
strategy: the cryo probe layout is planned first (its lethal zone becomes the ablated core
of a zoned lesion), then the seeds cover what the ice does not, under hard OAR limits.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field, replace

import numpy as np

from brachycryo.core.backend import resolve_backend
from brachycryo.core.errors import ConfigError, DataModelError, InfeasiblePlanError
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, report, scaled
from brachycryo.core.seeds import Seeds
from brachycryo.dose_kernels import dose_on_grid, influence_matrix, load_seed_model
from brachycryo.planning.case import (
    PlanningCase,
    half_occupancy,
    load_case,
    planning_grid,
    roi_fractions,
)
from brachycryo.planning.milp import select_seeds_milp
from brachycryo.planning.needles import Candidates, candidate_seeds, merge_candidates
from brachycryo.planning.optimize import OarConstraint, SeedSelection, TargetZone, select_seeds
from brachycryo.planning.spec import LesionSpec, OarLimit, PlanSpec
from brachycryo.planning.zones import LesionZones, expand_mm, lesion_zones, shrink_mm
from brachycryo.qa.dvh import dvh_from_roi
from brachycryo.qa.metrics import dose_at_volume_cc

log = logging.getLogger(__name__)

#: The planning grid extends this far beyond the lesions' margins (half of it on each side
#: of the outermost structure), so OARs next to the targets lie inside it.
OAR_NEIGHBOURHOOD_MM = 40.0
#: Cap on sample points per target zone in the influence matrix (a random, volume-weighted
#: subsample beyond it).
MAX_ZONE_POINTS = 30000
#: How often a selection is repeated with lowered optimiser limits when the final DVH
#: exceeds an OAR limit (see :func:`_verified_selection`).
VERIFY_ROUNDS = 3


@dataclass
class CryoLayout:
    lesion: str
    probes: list
    coverage: float
    lethal: np.ndarray
    ice_0c: np.ndarray
    oar_min_distance_mm: dict[str, float]
    probe_model: str


@dataclass(frozen=True)
class OptimiserProblem:
    """What the seed optimiser saw: target zones and OAR constraints (with matrices)."""

    zones: list[TargetZone]
    constraints: list[OarConstraint]


@dataclass
class PlanResult:
    spec: PlanSpec
    case: PlanningCase
    grid: Grid
    masks: dict[str, np.ndarray]
    zones: dict[str, LesionZones]
    cryo: dict[str, CryoLayout]
    candidates: Candidates | None
    selection: SeedSelection | None
    seed_positions_mm: np.ndarray
    seed_directions: np.ndarray
    seed_needles: np.ndarray
    dose_gy: np.ndarray
    backend: str
    timings_s: dict[str, float] = field(default_factory=dict)
    problem: OptimiserProblem | None = None
    #: (dose, {ROI: DVH}): the contour DVHs the OAR limits were checked on, valid for that
    #: dose array only (``brachycryo.planning.evaluate`` reuses them when it is ``dose_gy``)
    roi_dvhs: tuple[np.ndarray, dict] | None = None

    @property
    def n_seeds(self) -> int:
        return int(self.seed_positions_mm.shape[0])

    @property
    def n_needles(self) -> int:
        return len(set(self.seed_needles.tolist()))


def _body_name(case: PlanningCase) -> str:
    names = case.structures.roi_names
    if "BODY" in names:
        return "BODY"
    for roi in case.structures.rois:
        if roi.interpreted_type.upper() == "EXTERNAL":
            return roi.name
    raise ConfigError("the structure set has no BODY / EXTERNAL ROI", key="case")


def _oar_constraints_for(limit: OarLimit) -> list[tuple[str, str, float, float | None, float]]:
    """(metric, kind, limit_gy, volume_cc | None, pct | None) of an OAR's limits."""
    out = []
    if limit.dmax_gy is not None:
        out.append(("dmax", "dmax", limit.dmax_gy, 0.0, None))
    if limit.d0_1cc_gy is not None:
        out.append(("d0.1cc", "dvcc", limit.d0_1cc_gy, 0.1, None))
    if limit.d2cc_gy is not None:
        out.append(("d2cc", "dvcc", limit.d2cc_gy, 2.0, None))
    for v in limit.v:
        out.append((f"v{v.dose_gy:g}gy", "vx", v.dose_gy, v.max_cc, v.max_pct))
    return out


def _empirical_probe(model, backend: str):
    """Published isotherm ellipsoids of the probe, else a calibration by the physics mode.

    The calibration simulates one probe in tumour tissue at 37 C with the standard
    freeze 10 min - passive thaw 8 min - freeze 10 min protocol on a 2 mm grid (about 10 s
    on two cores) and fits ellipsoids to its isotherms (``brachycryo.cryo_iceball.empirical``).
    """
    from brachycryo.cryo_iceball.empirical import calibrate_from_physics, from_catalogue
    from brachycryo.cryo_iceball.probes import protocol
    from brachycryo.cryo_iceball.tissue import load_tissues

    try:
        return from_catalogue(model)
    except DataModelError:
        log.info("no published isotherms for %s: calibrating from the physics mode", model.model)
        return calibrate_from_physics(
            model,
            tissue=load_tissues()["tumor"],
            phases=protocol(("freeze", 10), ("passive_thaw", 8), ("freeze", 10)),
            spacing_mm=2.0,
            backend=backend,
        )


def _plan_cryo(
    spec: PlanSpec, lesion: LesionSpec, grid, masks, body_name, backend: str, empirical_cache
) -> CryoLayout:
    from brachycryo.cryo_iceball.empirical import empirical_min_temp
    from brachycryo.cryo_iceball.placement import PlacementRules, place_probes
    from brachycryo.cryo_iceball.probes import load_probe_catalogue

    catalogue = load_probe_catalogue()
    if spec.cryo.probe_model not in catalogue:
        raise ConfigError(
            f"unknown probe model {spec.cryo.probe_model!r}; known: {sorted(catalogue)}",
            key="cryo.probe_model",
        )
    model = catalogue[spec.cryo.probe_model]
    if model.model not in empirical_cache:  # one calibration per plan and probe model
        empirical_cache[model.model] = _empirical_probe(model, backend)
    empirical = empirical_cache[model.model]
    gtv = masks[lesion.roi]
    if lesion.allocation == "zoned":
        core_target = shrink_mm(gtv, grid, lesion.core_margin_mm) & gtv
        if not core_target.any():
            raise InfeasiblePlanError(
                f"lesion {lesion.roi}: nothing lies {lesion.core_margin_mm:g} mm inside the "
                "GTV for cryo to ablate",
                binding=[f"lesion {lesion.roi} core_margin_mm"],
            )
    else:
        core_target = gtv
    sparing = {o.roi: masks[o.roi] for o in spec.oars if o.roi in masks}
    for name in spec.needles.no_go:
        if name in masks:
            sparing.setdefault(name, masks[name])
    rules = PlacementRules(
        lethal_isotherm_c=spec.cryo.lethal_isotherm_c,
        coverage_min=spec.cryo.coverage_min_pct / 100.0,
        oar_margin_mm=spec.cryo.oar_margin_mm,
        min_spacing_mm=spec.cryo.min_spacing_mm,
        max_spacing_mm=spec.cryo.max_spacing_mm,
        max_probes=spec.cryo.max_probes,
        candidate_step_mm=_candidate_step_mm(core_target, grid, spec.cryo.candidate_step_mm),
    )
    direction = spec.cryo.direction or spec.needles.direction
    placed = place_probes(
        grid,
        core_target,
        sparing,
        model,
        empirical,
        direction=direction,
        rules=rules,
        best_effort=True,
    )
    temp = empirical_min_temp(grid, placed.probes, {model.model: empirical})
    lethal = (temp <= spec.cryo.lethal_isotherm_c) & masks[body_name]
    return CryoLayout(
        lesion=lesion.roi,
        probes=list(placed.probes),
        coverage=float(placed.coverage),
        lethal=lethal,
        ice_0c=(temp <= 0.0) & masks[body_name],
        oar_min_distance_mm=dict(placed.oar_min_distance_mm),
        probe_model=model.model,
    )


def _candidate_step_mm(core: np.ndarray, grid: Grid, largest_mm: float) -> float:
    """Probe-position lattice step: a sixth of the core's equivalent diameter, 2 mm at least."""
    volume_mm3 = float(core.sum()) * grid.voxel_volume_mm3
    diameter_mm = (6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0)
    return float(np.clip(diameter_mm / 6.0, 2.0, largest_mm))


def _constraint_voxels(fraction: np.ndarray) -> np.ndarray:
    """Voxels a ROI touches (any occupancy), grown by one voxel in all 26 directions."""
    from scipy import ndimage

    return ndimage.binary_dilation(fraction > 0, structure=np.ones((3, 3, 3), bool))


def _zone_points(
    mask: np.ndarray, grid: Grid, centres_mm: np.ndarray, rng
) -> tuple[np.ndarray, np.ndarray]:
    pts = centres_mm[mask]
    cc = np.full(pts.shape[0], grid.voxel_volume_mm3 / 1000.0)
    if pts.shape[0] > MAX_ZONE_POINTS:
        idx = np.sort(rng.choice(pts.shape[0], MAX_ZONE_POINTS, replace=False))
        cc = np.full(idx.size, cc.sum() / idx.size)
        pts = pts[idx]
    return pts, cc


def _final_dose(
    spec: PlanSpec, grid: Grid, model, backend: str, positions: np.ndarray,
    directions: np.ndarray, progress: ProgressCallback | None,
) -> np.ndarray:  # fmt: skip
    if not positions.shape[0]:
        return np.zeros(grid.shape)
    dose = dose_on_grid(
        Seeds(positions, np.full(positions.shape[0], spec.sk_u), directions),
        grid,
        model,
        backend=backend,
        formalism=spec.dose.formalism,
        dtype=np.float64,
        progress=progress,
    )
    if not np.all(np.isfinite(dose)):
        raise DataModelError("the computed dose contains NaN or inf")
    return dose


def _exact_dv_gy(dvh, kind: str, volume_cc: float) -> float:
    """The limited quantity on the final DVH: Dmax, or D_vcc (a Vx limit is D_vcc <= x)."""
    return dvh.dmax_gy if kind == "dmax" else dose_at_volume_cc(dvh, volume_cc)


def _verified_selection(
    spec, case, grid, model, backend, zones, constraints, oar_defs, candidates, timings,
    progress,
) -> tuple[SeedSelection, np.ndarray, list[OarConstraint], dict]:  # fmt: skip
    """Select seeds, compute the dose, and check every OAR limit on the final DVH.

    The optimiser sees each OAR through its voxel centres (occupancy-weighted for volume
    limits); the reported DVH integrates the contours with trilinear dose interpolation.
    When the two disagree so that a limit is exceeded on the DVH, that constraint's limit
    is lowered by the ratio of the excess and the selection is repeated
    (``VERIFY_ROUNDS`` times at most).  A limit still exceeded afterwards makes the plan
    infeasible with that limit named as binding: never a silently violated limit.
    """
    thickness = case.ct.grid.spacing_mm[2]
    scale = np.ones(len(constraints))
    timings["dose_s"] = 0.0
    notes: list[str] = []
    for round_ in range(VERIFY_ROUNDS + 1):
        active = [
            replace(c, limit_gy=c.limit_gy * f) for c, f in zip(constraints, scale, strict=True)
        ]
        first = round_ == 0
        common = dict(
            sk_u=spec.sk_u,
            needle=candidates.needle,
            exclusions=candidates.exclusions,
            max_needles=spec.needles.max_needles,
            v100_min_pct=spec.optimizer.v100_min_pct,
            needle_weight=spec.optimizer.needle_weight,
            time_limit_s=spec.optimizer.time_limit_s,
        )
        if spec.optimizer.method == "milp":
            selection, info = select_seeds_milp(zones, active, **common)
            selection.log.append(f"MILP: {info.status}; gap {info.mip_gap}")
        else:
            selection = select_seeds(
                zones,
                active,
                **common,
                hot_spot_weight=spec.optimizer.hot_spot_weight,
                oar_sparing_weight=spec.optimizer.oar_sparing_weight,
                progress=scaled(progress, 0.6, 0.85) if first else None,
            )
        t1 = time.perf_counter()
        chosen = selection.chosen
        dose = _final_dose(
            spec, grid, model, backend, candidates.positions_mm[chosen],
            candidates.directions[chosen], scaled(progress, 0.85, 0.97) if first else None,
        )  # fmt: skip
        timings["dose_s"] += time.perf_counter() - t1
        dvhs: dict[str, object] = {}
        exceeded = []
        for n, (roi, metric, kind, lim, vol_cc, _m) in enumerate(oar_defs):
            if roi not in dvhs:
                dvhs[roi] = dvh_from_roi(
                    case.structures.roi(roi), dose, grid, slice_thickness_mm=thickness
                )
            value = _exact_dv_gy(dvhs[roi], kind, vol_cc)
            if value > lim * (1 + 1e-6):
                exceeded.append((n, f"{roi} {metric}", value, lim))
        if not exceeded:
            break
        for n, name, value, lim in exceeded:
            notes.append(
                f"round {round_ + 1}: {name} = {value:.2f} Gy on the DVH > {lim:g} Gy; "
                f"optimiser limit lowered by {100 * (1 - lim / value):.1f} %"
            )
            scale[n] *= lim / value * (1 - 2e-3)
    selection.log.extend(notes)
    if exceeded:
        names = {e[1] for e in exceeded}
        selection.feasible = False
        selection.binding = [
            f"{name} (exceeded on the final DVH after {VERIFY_ROUNDS} corrections)"
            for _, name, _, _ in exceeded
        ] + [b for b in selection.binding if b not in names]
    return selection, dose, active, dvhs


def make_plan(
    spec: PlanSpec,
    work_dir: str | os.PathLike,
    *,
    backend: str | None = None,
    progress: ProgressCallback | None = None,
    keep_problem: bool = False,
) -> PlanResult:
    """Plan the case of ``spec`` (phantom cases are written to ``work_dir/case``).

    ``keep_problem`` keeps the optimiser's input (target zones and the OAR constraints of
    the last round, with their influence matrices) in :attr:`PlanResult.problem`, e.g. to
    compare optimisation methods on the same matrices (``benchmarks/plan_quality.py``).
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    backend = resolve_backend(backend or spec.dose.backend)
    rng = np.random.default_rng(0)
    case = load_case(spec.case, work_dir, progress=scaled(progress, 0.0, 0.1))
    timings["case_s"] = time.perf_counter() - t0
    body_name = _body_name(case)
    thickness = case.ct.grid.spacing_mm[2]
    lesion_rois = [lesion.roi for lesion in spec.lesions]
    pad = max(lesion.margin_mm for lesion in spec.lesions) + OAR_NEIGHBOURHOOD_MM / 2
    grid = planning_grid(
        case.ct.grid,
        lesion_rois,
        case.structures,
        pad,
        spec.dose.spacing_mm,
        oars=[o.roi for o in spec.oars],
    )
    wanted = [body_name, *lesion_rois, *(o.roi for o in spec.oars)]
    wanted += [h.roi for lesion in spec.lesions for h in lesion.high_risk]
    fractions = roi_fractions(case.structures, wanted, grid, slice_thickness_mm=thickness)
    optional = [*spec.needles.no_go]
    if spec.needles.mode == "free":
        optional.append(spec.needles.entry_roi)
    missing = [n for n in optional if n not in case.structures.roi_names]
    if spec.needles.mode == "free" and spec.needles.entry_roi in missing:
        raise ConfigError(
            f"entry ROI {spec.needles.entry_roi!r} is not in the structure set",
            key="needles.entry_roi",
        )
    for name in missing:
        log.warning("no-go structure %r is not in the structure set; ignored", name)
    fractions.update(
        roi_fractions(case.structures, optional, grid, slice_thickness_mm=thickness, required=False)
    )
    masks = half_occupancy(fractions)
    report(progress, 0.2, "structures on the planning grid")
    timings["masks_s"] = time.perf_counter() - t0 - timings["case_s"]

    # -- cryo first: its lethal zone is the ablated core of zoned lesions
    cryo: dict[str, CryoLayout] = {}
    empirical_cache: dict = {}
    t1 = time.perf_counter()
    for lesion in spec.lesions:
        if lesion.allocation == "cryo" or (lesion.allocation == "zoned" and lesion.core == "cryo"):
            cryo[lesion.roi] = _plan_cryo(
                spec, lesion, grid, masks, body_name, backend, empirical_cache
            )
    timings["cryo_s"] = time.perf_counter() - t1
    report(progress, 0.3, f"cryo: {sum(len(c.probes) for c in cryo.values())} probes")

    oar_masks = [masks[o.roi] for o in spec.oars]
    zones: dict[str, LesionZones] = {}
    for lesion in spec.lesions:
        core = None
        if lesion.roi in cryo:
            core = cryo[lesion.roi].lethal & expand_mm(masks[lesion.roi], grid, lesion.margin_mm)
        zones[lesion.roi] = lesion_zones(
            lesion.roi,
            lesion.allocation,
            masks[lesion.roi],
            grid,
            margin_mm=lesion.margin_mm,
            core=core,
            core_margin_mm=lesion.core_margin_mm if lesion.core == "margin" else None,
            body=masks[body_name],
            oars=oar_masks,
            high_risk={h.roi: masks[h.roi] for h in lesion.high_risk},
        )

    # -- seeds
    seed_lesions = [lesion for lesion in spec.lesions if zones[lesion.roi].seed_target is not None]
    model = load_seed_model(spec.seed_model)
    positions = np.zeros((0, 3))
    directions = np.zeros((0, 3))
    needles = np.zeros(0, dtype=int)
    candidates = None
    selection = None
    problem = None
    roi_dvhs = None
    if seed_lesions:
        t1 = time.perf_counter()
        union = np.zeros(grid.shape, bool)
        for lesion in seed_lesions:
            union |= zones[lesion.roi].seed_target
        no_go = np.zeros(grid.shape, bool)
        for name in spec.needles.no_go:
            if name in masks:
                no_go |= masks[name]
        avoid = np.zeros(grid.shape, bool)
        for m in oar_masks:
            avoid |= m
        # one candidate family per needle direction (lesions may override the global one)
        by_direction: dict[tuple, np.ndarray] = {}
        for lesion in seed_lesions:
            d = tuple(lesion.needle_direction or spec.needles.direction)
            by_direction.setdefault(d, np.zeros(grid.shape, bool))
            by_direction[d] |= zones[lesion.roi].seed_target
        parts = []
        for d, target in by_direction.items():
            parts.append(
                candidate_seeds(
                    grid,
                    target,
                    masks[body_name],
                    no_go=no_go,
                    entry_region=masks.get(spec.needles.entry_roi),
                    mode=spec.needles.mode,
                    direction=d,
                    pitch_mm=spec.needles.spacing_mm,
                    seed_spacing_mm=spec.needles.seed_spacing_mm,
                    max_angle_deg=spec.needles.max_angle_deg,
                    n_directions=spec.needles.n_directions,
                    avoid=avoid,
                    clearance_mm=spec.needles.oar_clearance_mm,
                )
            )
        candidates = merge_candidates(parts)
        timings["candidates_s"] = time.perf_counter() - t1
        report(progress, 0.35, f"{candidates.n} candidate seeds on {len(candidates.tracks)} tracks")
        # sample points: zones, then OARs near the targets
        zone_defs = []
        for lesion in seed_lesions:
            rx = lesion.prescription_gy or spec.prescription_gy
            z = zones[lesion.roi]
            zone_defs.append((f"{lesion.roi} seed target", z.seed_target, rx))
            for h in lesion.high_risk:
                zone_defs.append((f"{lesion.roi} {h.roi}", z.high_risk[h.roi], h.prescription_gy))
        oar_defs = []
        for limit in spec.oars:
            # every voxel whose dose can enter the OAR's DVH: voxels the contours touch, plus
            # one voxel around them (trilinear interpolation mixes the 8 neighbours), so the
            # limit holds for the DVH of the written dose, not only at sample points
            m = _constraint_voxels(fractions[limit.roi])
            if not m.any():
                continue
            oar_total_cc = float(masks[limit.roi].sum()) * grid.voxel_volume_mm3 / 1000.0
            for metric, kind, lim, vol_cc, pct in _oar_constraints_for(limit):
                volume_cc = vol_cc if pct is None else pct / 100.0 * oar_total_cc
                oar_defs.append((limit.roi, metric, kind, lim, volume_cc, m))
        centres = grid.voxel_centres_mm()
        point_sets = [_zone_points(m, grid, centres, rng) for _, m, _ in zone_defs]
        # Dmax rows count every point (each may carry the maximum); Dvcc / Vx rows weight
        # each voxel by the ROI's occupancy, so the ring around the ROI does not eat the
        # volume allowance (the final DVH check in _verified_selection closes the gap)
        oar_point_sets = {}
        with_dmax = {roi for roi, _metric, kind, *_ in oar_defs if kind == "dmax"}
        for roi, *_rest, m in oar_defs:
            if roi not in oar_point_sets:
                voxel_cc = grid.voxel_volume_mm3 / 1000.0
                if roi not in with_dmax:  # volume limits only: the ring carries no weight
                    m = m & (fractions[roi] > 0)
                oar_point_sets[roi] = (centres[m], voxel_cc * fractions[roi][m].astype(float))
        all_pts = np.concatenate(
            [p for p, _ in point_sets] + [p for p, _ in oar_point_sets.values()]
        )
        t1 = time.perf_counter()
        matrix = influence_matrix(
            candidates.positions_mm,
            candidates.directions,
            all_pts,
            model,
            backend=backend,
            formalism=spec.dose.formalism,
            progress=scaled(progress, 0.35, 0.6),
        )
        timings["influence_matrix_s"] = time.perf_counter() - t1
        offset = 0
        target_zones = []
        for (name, _, rx), (pts, cc) in zip(zone_defs, point_sets, strict=True):
            target_zones.append(TargetZone(name, matrix[offset : offset + len(pts)], cc, rx))
            offset += len(pts)
        oar_rows = {}
        for roi, (pts, cc) in oar_point_sets.items():
            oar_rows[roi] = (matrix[offset : offset + len(pts)], cc)
            offset += len(pts)
        voxel_cc = grid.voxel_volume_mm3 / 1000.0
        # a 1e-4 relative safety margin covers float32 matrix vs float64 final dose
        constraints = [
            OarConstraint(
                roi, metric, kind, lim * (1 - 1e-4), vol, oar_rows[roi][0],
                np.full(len(oar_rows[roi][1]), voxel_cc) if kind == "dmax" else oar_rows[roi][1],
            )
            for roi, metric, kind, lim, vol, _ in oar_defs
        ]  # fmt: skip
        t1 = time.perf_counter()
        selection, dose, active, oar_dvhs = _verified_selection(
            spec, case, grid, model, backend, target_zones, constraints, oar_defs,
            candidates, timings, progress,
        )  # fmt: skip
        if keep_problem:
            problem = OptimiserProblem(target_zones, active)
        roi_dvhs = (dose, oar_dvhs)
        timings["optimizer_s"] = time.perf_counter() - t1 - timings["dose_s"]
        chosen = selection.chosen
        positions = candidates.positions_mm[chosen]
        directions = candidates.directions[chosen]
        needles = candidates.needle[chosen]
    else:
        dose = np.zeros(grid.shape)
        timings["dose_s"] = 0.0
    timings["total_s"] = time.perf_counter() - t0
    report(progress, 1.0, f"{positions.shape[0]} seeds")
    return PlanResult(
        spec=spec,
        case=case,
        grid=grid,
        masks=masks,
        zones=zones,
        cryo=cryo,
        candidates=candidates,
        selection=selection,
        seed_positions_mm=positions,
        seed_directions=directions,
        seed_needles=needles,
        dose_gy=dose,
        backend=backend,
        timings_s=timings,
        problem=problem,
        roi_dvhs=roi_dvhs,
    )
