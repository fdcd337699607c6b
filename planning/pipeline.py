"""A complete zoned plan: case -> zones -> cryo probes -> needles -> seeds -> dose -> metrics.

:func:`make_plan` runs the stages and returns a :class:`PlanResult`;
:func:`brachycryo.planning.evaluate.evaluate_zoned_plan` gives its metrics and
:mod:`brachycryo.planning.outputs` writes it.  The order follows the clinical logic of the
zoned strategy: the cryo probe layout is planned first (its lethal zone becomes the ablated
core of a zoned lesion), then the seeds cover what the ice does not, under hard OAR limits.
Each stage is a function of the earlier stages' frozen results, as in matRad's
``ct, cst, pln -> stf -> dij -> result``:

1. the case (:func:`~brachycryo.planning.case.load_case`) and its structures on the
   planning grid (:func:`~brachycryo.planning.case.structures_on_grid`);
2. the cryo layouts (:func:`~brachycryo.planning.cryo_layout.plan_cryo_layouts`);
3. the lesions' zones (:func:`~brachycryo.planning.zones.plan_zones`);
4. the candidate needles (:func:`~brachycryo.planning.needles.candidate_needles`);
5. the sample points and the influence matrix
   (:func:`~brachycryo.planning.influence.sample_points`,
   :func:`~brachycryo.planning.influence.optimiser_problem`);
6. the seed selection, final dose and its verification on the OARs' DVHs
   (:func:`~brachycryo.planning.selection.select_verified_seeds`).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace

import numpy as np

from brachycryo.core.backend import resolve_backend
from brachycryo.core.deadline import WallClock
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, report, scaled
from brachycryo.core.seeds import Seeds
from brachycryo.dose_kernels import load_seed_model
from brachycryo.planning.case import (
    PlanningCase,
    PlanningStructures,
    load_case,
    structures_on_grid,
)
from brachycryo.planning.cryo_layout import CryoLayout, has_cryo, plan_cryo_layouts
from brachycryo.planning.implanted import (
    ImplantedSeeds,
    clear_of_implanted,
    load_implanted,
    refuse_background_over_limits,
)
from brachycryo.planning.influence import (
    OptimiserProblem,
    oar_dvh_limits,
    optimiser_problem,
    sample_points,
    with_background,
)
from brachycryo.planning.needles import Candidates, candidate_needles
from brachycryo.planning.optimize import SeedSelection
from brachycryo.planning.probe_tracks import ProbeTrack, plan_probe_tracks, track_obstacles
from brachycryo.planning.robust import RobustSummary, robust_seeds
from brachycryo.planning.selection import VerifiedSeeds, select_verified_seeds
from brachycryo.planning.spec import PlanSpec
from brachycryo.planning.strength import choose_strength
from brachycryo.planning.zones import LesionZones, plan_zones, seed_targets
from brachycryo.qa.dvh import DVH


@dataclass(frozen=True)
class PlanResult:
    """Everything a plan made: the stages' results, the seeds, the dose and the timings.

    ``seeds``: the implanted seeds (positions, directions along their needles, strengths);
    ``seed_needles``: the candidate needle of each seed (an index into
    ``candidates.tracks``).  ``problem`` is set by ``make_plan(keep_problem=True)``.
    """

    spec: PlanSpec
    case: PlanningCase
    grid: Grid
    masks: dict[str, np.ndarray]
    zones: dict[str, LesionZones]
    cryo: dict[str, CryoLayout]
    candidates: Candidates | None
    selection: SeedSelection | None
    seeds: Seeds
    seed_needles: np.ndarray
    dose_gy: np.ndarray
    backend: str
    timings_s: dict[str, float] = field(default_factory=dict)
    problem: OptimiserProblem | None = None
    #: (dose, {ROI: DVH}): the contour DVHs the OAR limits were checked on, valid for that
    #: dose array only (``brachycryo.planning.evaluate`` reuses them when it is ``dose_gy``)
    roi_dvhs: tuple[np.ndarray, dict[str, DVH]] | None = None
    #: every cryo probe's track: skin entry, depth, no-go structures crossed
    probe_tracks: tuple[ProbeTrack, ...] = ()
    #: the seeds already in the patient (``[case] implanted_plan``); their dose is in
    #: ``dose_gy`` (and was the seed optimiser's fixed background), they are not in
    #: ``seeds`` (the seeds this plan adds, ``add_seeds = true``)
    implanted: ImplantedSeeds | None = None
    #: ``[optimizer] robust``: its rounds, probabilities and seed cost
    robust: RobustSummary | None = None

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def n_needles(self) -> int:
        return len(set(self.seed_needles.tolist()))


def make_plan(
    spec: PlanSpec,
    work_dir: str | os.PathLike,
    *,
    backend: str | None = None,
    progress: ProgressCallback | None = None,
    keep_problem: bool = False,
    overwrite: bool = False,
) -> PlanResult:
    """Plan the case of ``spec`` (phantom cases are written to ``work_dir/case``).

    No stage decides anything from elapsed time, so the plan is the same on any machine;
    ``[optimizer] max_wall_s``, when set, fails the run with
    :class:`~brachycryo.core.errors.WallClockLimitError` (no plan) once it has passed.

    ``keep_problem`` keeps the optimiser's input (target zones and the OAR constraints of
    the last round, with their influence matrices) in :attr:`PlanResult.problem`, e.g. to
    compare optimisation methods on the same matrices (``benchmarks/plan_quality.py``).
    ``overwrite`` lets a phantom case replace an existing ``work_dir/case``.
    """
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    clock = WallClock(spec.optimizer.max_wall_s)
    backend = resolve_backend(backend or spec.dose.backend)
    case = load_case(spec.case, work_dir, overwrite=overwrite, progress=scaled(progress, 0.0, 0.1))
    timings["case_s"] = time.perf_counter() - t0
    clock.check("reading the case")
    structures = structures_on_grid(spec, case)
    report(progress, 0.2, "structures on the planning grid")
    timings["masks_s"] = time.perf_counter() - t0 - timings["case_s"]

    implanted = _implanted(spec, case, structures, backend)
    # -- cryo first: its lethal zone is the ablated core of zoned lesions
    t1 = time.perf_counter()
    obstacles = (
        track_obstacles(spec, case, implanted)
        if any(has_cryo(lesion) for lesion in spec.lesions)
        else None
    )
    cryo = plan_cryo_layouts(spec, structures, backend=backend, obstacles=obstacles)
    tracks = plan_probe_tracks(spec, case, {lesion: c.probes for lesion, c in cryo.items()})
    timings["cryo_s"] = time.perf_counter() - t1
    clock.check("the cryo probe layout")
    report(progress, 0.3, f"cryo: {sum(len(c.probes) for c in cryo.values())} probes")
    zones = plan_zones(spec, structures, {roi: c.lethal for roi, c in cryo.items()})

    seed_plan = _plan_seeds(
        spec, case, structures, zones,
        backend=backend, timings=timings, progress=progress, keep_problem=keep_problem,
        clock=clock, implanted=implanted,
    )  # fmt: skip
    dose_gy = seed_plan.dose_gy
    timings["total_s"] = time.perf_counter() - t0
    report(progress, 1.0, f"{len(seed_plan.seeds)} seeds")
    return PlanResult(
        spec=seed_plan.spec,
        case=case,
        grid=structures.grid,
        masks=structures.masks,
        zones=zones,
        cryo=cryo,
        candidates=seed_plan.candidates,
        selection=seed_plan.verified.selection if seed_plan.verified else None,
        seeds=seed_plan.seeds,
        seed_needles=seed_plan.needles,
        dose_gy=dose_gy,
        backend=backend,
        timings_s=timings,
        problem=seed_plan.problem,
        roi_dvhs=(dose_gy, seed_plan.verified.oar_dvhs) if seed_plan.verified else None,
        probe_tracks=tuple(tracks),
        implanted=implanted,
        robust=seed_plan.robust,
    )


def _implanted(
    spec: PlanSpec, case: PlanningCase, structures: PlanningStructures, backend: str
) -> ImplantedSeeds | None:
    """The implanted seeds of ``[case] implanted_plan`` (checked and dosed on the planning
    grid), None without one."""
    path = spec.case.implanted_plan
    if path is None:
        return None
    return load_implanted(
        path, case.ct, structures.grid, backend=backend, formalism=spec.dose.formalism
    )


@dataclass(frozen=True)
class _SeedPlan:
    """The seed stages' results; no candidates and no selection when no lesion has seeds."""

    candidates: Candidates | None
    verified: VerifiedSeeds | None
    problem: OptimiserProblem | None
    seeds: Seeds
    needles: np.ndarray
    dose_gy: np.ndarray  # the total: new seeds' dose plus the implanted seeds'
    spec: PlanSpec  # with the chosen strength where the spec let the planner choose it
    robust: RobustSummary | None = None


def _plan_seeds(
    spec: PlanSpec,
    case: PlanningCase,
    structures: PlanningStructures,
    zones: dict[str, LesionZones],
    *,
    backend: str,
    timings: dict[str, float],
    progress: ProgressCallback | None,
    keep_problem: bool,
    clock: WallClock,
    implanted: ImplantedSeeds | None = None,
) -> _SeedPlan:
    """Candidate needles, influence matrix, verified seed selection (timed into
    ``timings``); no seeds (and the implanted seeds' dose, or zero) when no lesion has a
    seed target.  With ``implanted`` seeds their dose is the optimiser's fixed background
    and the new seeds keep clear of them (:mod:`brachycryo.planning.implanted`)."""
    targets = seed_targets(zones) if spec.add_seeds else {}
    model = load_seed_model(spec.seed_model)
    background = None if implanted is None else implanted.dose_gy
    if not targets:
        timings["dose_s"] = 0.0
        no_seeds = Seeds(np.zeros((0, 3)), spec.sk_u, np.zeros((0, 3)))
        dose = np.zeros(structures.grid.shape) if background is None else background
        return _SeedPlan(None, None, None, no_seeds, np.zeros(0, dtype=int), dose, spec)
    t1 = time.perf_counter()
    candidates = candidate_needles(spec, structures, targets)
    clear_log: list[str] = []
    if implanted is not None:
        candidates, removed = clear_of_implanted(
            candidates, implanted.seeds.positions_mm,
            min_seed_distance_mm=spec.needles.seed_spacing_mm,
        )  # fmt: skip
        clear_log = [f"candidates removed beside the implanted seeds: {removed}"]
    timings["candidates_s"] = time.perf_counter() - t1
    report(progress, 0.35, f"{candidates.n} candidate seeds on {len(candidates.tracks)} tracks")
    limits = oar_dvh_limits(spec, structures)
    samples = sample_points(spec, structures, zones, limits)
    if background is not None:
        samples = with_background(samples, structures.grid, background)
    t1 = time.perf_counter()
    problem = optimiser_problem(
        samples, candidates, model, backend=backend, formalism=spec.dose.formalism,
        progress=scaled(progress, 0.35, 0.6),
    )  # fmt: skip
    timings["influence_matrix_s"] = time.perf_counter() - t1
    clock.check("the influence matrix")
    if background is not None:
        refuse_background_over_limits(case, structures.grid, background, problem, limits)
    t1 = time.perf_counter()
    spec, strength_log = choose_strength(spec, problem, candidates, clock=clock)
    verified = select_verified_seeds(
        spec, case, structures.grid, model, problem, limits, candidates,
        backend=backend, clock=clock, progress=progress, background_gy=background,
    )  # fmt: skip
    robust = None
    if spec.optimizer.robust is not None:
        verified, robust = robust_seeds(
            spec, case, structures.grid, model, problem, limits, candidates, samples, zones,
            verified, backend=backend, clock=clock,
        )  # fmt: skip
    if strength_log or clear_log:
        log = [*clear_log, *strength_log, *verified.selection.log]
        verified = replace(verified, selection=replace(verified.selection, log=log))
    timings["dose_s"] = verified.dose_time_s
    timings["optimizer_s"] = time.perf_counter() - t1 - timings["dose_s"]
    kept = OptimiserProblem(problem.zones, verified.constraints) if keep_problem else None
    return _SeedPlan(
        candidates, verified, kept, verified.seeds, verified.needles, verified.dose_gy, spec,
        robust,
    )  # fmt: skip
