"""The plan's seed stages: seed selection, then the final dose and its verification.

The optimiser sees each OAR through its voxel centres (occupancy-weighted for volume
limits); the reported DVH integrates the contours with trilinear dose interpolation.  When
the two disagree so that a limit is exceeded on the DVH, that constraint's limit is lowered
by the ratio of the excess and the selection is repeated (``VERIFY_ROUNDS`` times at
most).  A limit still exceeded afterwards makes the plan infeasible with that limit named
as binding: never a silently violated limit.  With seeds already implanted (a background
dose, ``background_gy``) the DVHs are those of the total dose, implanted plus new seeds.

The coverage goals are verified the same way: the optimiser meets V100 >= ``v100_min_pct``
and D90 >= Rx on each zone's sample points, the plan reports them from the DVH of the
zone's mask on the planning grid (trilinear dose over sub-voxel samples), and the two can
differ by a few hundredths of a percent of volume.  When a zone met its goals on its points
but misses one on the grid, its prescription *in the optimiser* is raised by the ratio of
the dose it lacks there (Rx over the dose at ``v100_min_pct`` of its volume, or over its
D90) and the selection is repeated within the same ``VERIFY_ROUNDS``.  A raised round that
cannot meet the raised goals is not kept: the last round that met the plan's own goals on
its points stands, and its grid shortfall is logged (the goals in ``metrics.json`` say
which is missed).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from brachycryo.core.deadline import NO_LIMIT, WallClock
from brachycryo.core.errors import DataModelError
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, scaled
from brachycryo.core.seeds import Seeds
from brachycryo.dose_kernels import SeedModel, dose_on_grid
from brachycryo.planning.binding import explain_binding, prove_binding
from brachycryo.planning.case import PlanningCase
from brachycryo.planning.influence import OarDvhLimit, OptimiserProblem
from brachycryo.planning.milp import select_seeds_milp
from brachycryo.planning.needles import Candidates
from brachycryo.planning.optimize import (
    OarConstraint,
    SeedSelection,
    TargetZone,
    WarmStart,
    select_seeds,
    zone_stats,
)
from brachycryo.planning.spec import PlanSpec
from brachycryo.qa.dvh import DVH, dvh_from_mask, dvh_from_roi
from brachycryo.qa.metrics import dose_at_volume_cc, dose_at_volume_pct, volume_at_dose_pct

#: How often a selection is repeated with lowered optimiser limits when the final DVH
#: exceeds an OAR limit.
VERIFY_ROUNDS = 3
#: A limit counts as exceeded on the DVH above this relative tolerance.
DVH_LIMIT_TOLERANCE = 1e-6
#: A lowered limit goes this much (relative) below the ratio of the excess.
LOWERING_MARGIN = 2e-3
#: A raised zone prescription goes this much (relative) above the ratio of its shortfall.
RAISING_MARGIN = 2e-3
#: A coverage goal counts as met on the grid within this tolerance (``evaluate``'s).
GOAL_TOLERANCE = 1e-6


@dataclass(frozen=True)
class VerifiedSeeds:
    """The selected seeds, their dose, and the OAR limits checked on its DVHs.

    ``needles``: the candidate needle (index into ``Candidates.tracks``) of each seed;
    ``dose_gy``: the total dose, the new seeds' plus the background (implanted seeds);
    ``constraints``: the optimiser's constraints of the last round (limits as lowered);
    ``oar_dvhs``: the contour DVH of every limited OAR, on ``dose_gy``; ``dose_time_s``:
    time spent computing final doses (every round).
    """

    selection: SeedSelection
    seeds: Seeds
    needles: np.ndarray
    dose_gy: np.ndarray
    constraints: tuple[OarConstraint, ...]
    oar_dvhs: dict[str, DVH]
    dose_time_s: float


@dataclass(frozen=True)
class LimitExcess:
    """An OAR limit exceeded on the final DVH: the ``index`` of its constraint."""

    index: int
    name: str
    value_gy: float
    limit_gy: float


@dataclass(frozen=True)
class CoverageShortfall:
    """A zone whose coverage goals miss on the grid DVH of its mask: the ``index`` of its
    optimiser zone, its V100 (%) and D90 (Gy) there, and ``ratio``, the prescription over
    the dose the goals need (>= 1)."""

    index: int
    name: str
    v100_pct: float
    d90_gy: float
    ratio: float


def coverage_on_grid(
    zones: Sequence[TargetZone],
    zone_masks: Sequence[tuple[str, np.ndarray, float]],
    grid: Grid,
    dose_gy: np.ndarray,
    v100_min_pct: float,
) -> list[CoverageShortfall]:
    """The zones (``zone_masks``: name, grid mask, prescription) whose V100 or D90 on the
    DVH of their mask under ``dose_gy`` misses its goal, matched to ``zones`` by name."""
    index = {z.name: n for n, z in enumerate(zones)}
    out = []
    for name, mask, rx in zone_masks:
        if name not in index or not mask.any():
            continue
        dvh = dvh_from_mask(mask, grid, dose_gy, grid, name=name)
        v100, d90 = volume_at_dose_pct(dvh, rx), dose_at_volume_pct(dvh, 90.0)
        if v100 >= v100_min_pct - GOAL_TOLERANCE and d90 >= rx - GOAL_TOLERANCE:
            continue
        need_gy = min(dose_at_volume_pct(dvh, v100_min_pct), d90)
        out.append(CoverageShortfall(index[name], name, v100, d90, rx / max(need_gy, 1e-9)))
    return out


def select_verified_seeds(
    spec: PlanSpec,
    case: PlanningCase,
    grid: Grid,
    model: SeedModel,
    problem: OptimiserProblem,
    limits: Sequence[OarDvhLimit],
    candidates: Candidates,
    *,
    backend: str,
    clock: WallClock = NO_LIMIT,
    progress: ProgressCallback | None = None,
    background_gy: np.ndarray | None = None,
    zone_masks: Sequence[tuple[str, np.ndarray, float]] = (),
) -> VerifiedSeeds:
    """Select seeds, compute the dose, and check every OAR limit and every zone's coverage
    goals (``zone_masks``: name, grid mask, prescription) on the final DVHs (see the module
    docstring); ``limits[n]`` is the limit of ``problem.constraints[n]``;
    ``background_gy``: the implanted seeds' dose on ``grid`` (the problem's rows carry it
    at their points), added to the new seeds' dose."""
    scale = np.ones(len(problem.constraints))
    raise_rx = np.ones(len(problem.zones))
    dose_time_s = 0.0
    notes: list[str] = []
    kept: _Round | None = None
    warm: WarmStart | None = None
    r: _Round | None = None
    for round_ in range(VERIFY_ROUNDS + 1):
        r = _selection_round(
            spec, case, grid, model, problem, limits, candidates, scale, raise_rx,
            backend=backend, clock=clock, background_gy=background_gy,
            progress=progress if round_ == 0 else None, warm_start=warm,
            previous=r if warm is not None else None,
        )  # fmt: skip
        dose_time_s += r.dose_time_s
        if kept is not None and (not r.selection.feasible or r.exceeded):
            notes.append(
                f"round {round_ + 1}: the raised prescriptions cannot be met within the "
                "limits; the previous selection is kept with its coverage shortfall"
            )
            r = kept
            break
        short = []
        if r.selection.feasible and not r.exceeded:
            v100_min = spec.optimizer.v100_min_pct
            short = coverage_on_grid(problem.zones, zone_masks, grid, r.dose_gy, v100_min)
        if not r.exceeded and not short:
            break
        if short:  # every limit holds: this round stands if a raised one fails
            kept = r
        # only raised prescriptions (the limits unchanged): the next round starts from
        # this one's seeds and LP solution; a lowered limit needs a selection from scratch
        warm = None if r.exceeded else WarmStart(r.selection.chosen, r.selection.lp_x)
        notes += _raised(short, raise_rx, round_) + _lowered(r.exceeded, scale, round_)
    assert r is not None  # the loop runs at least once
    selection = r.selection
    if not selection.feasible:
        selection = _with_proven_binding(
            spec, selection, problem.zones, r.constraints, candidates, clock
        )
    elif np.any(raise_rx != 1.0):  # judged at the zones' own prescriptions
        selection = replace(selection, coverage=_coverage(problem.zones, selection, spec.sk_u))
    return VerifiedSeeds(
        selection=_with_dvh_findings(selection, notes, r.exceeded),
        seeds=r.seeds,
        needles=candidates.needle[selection.chosen],
        dose_gy=r.dose_gy,
        constraints=r.constraints,
        oar_dvhs=r.dvhs,
        dose_time_s=dose_time_s,
    )


@dataclass(frozen=True)
class _Round:
    """One selection of :func:`select_verified_seeds` with its dose and DVH check."""

    selection: SeedSelection
    seeds: Seeds
    dose_gy: np.ndarray
    constraints: tuple[OarConstraint, ...]
    dvhs: dict[str, DVH]
    exceeded: list[LimitExcess]
    dose_time_s: float


def _selection_round(
    spec: PlanSpec,
    case: PlanningCase,
    grid: Grid,
    model: SeedModel,
    problem: OptimiserProblem,
    limits: Sequence[OarDvhLimit],
    candidates: Candidates,
    scale: np.ndarray,
    raise_rx: np.ndarray,
    *,
    backend: str,
    clock: WallClock,
    background_gy: np.ndarray | None,
    progress: ProgressCallback | None,
    warm_start: WarmStart | None = None,
    previous: _Round | None = None,
) -> _Round:
    """A selection with every OAR limit scaled by ``scale`` and every zone's prescription
    by ``raise_rx`` (from ``warm_start`` when given); its total dose and the OAR limits it
    exceeds on the DVH.  With the ``previous`` round the dose is that round's plus the
    seeds added less the seeds removed (:func:`_updated_dose`)."""
    active = tuple(
        replace(c, limit_gy=c.limit_gy * f) for c, f in zip(problem.constraints, scale, strict=True)
    )
    zones = tuple(
        replace(z, prescription_gy=z.prescription_gy * f)
        for z, f in zip(problem.zones, raise_rx, strict=True)
    )
    selection = select_seeds_for(
        spec,
        zones,
        active,
        candidates,
        clock=clock,
        progress=scaled(progress, 0.6, 0.85),
        warm_start=warm_start,
    )
    t1 = time.perf_counter()
    seeds = chosen_seeds(spec, candidates, selection.chosen)
    dose = None
    if previous is not None:
        dose = _updated_dose(spec, grid, model, candidates, previous, selection.chosen, backend)
    if dose is None:
        dose = final_dose(spec, grid, model, seeds, backend=backend,
                          progress=scaled(progress, 0.85, 0.97))  # fmt: skip
        if background_gy is not None:
            dose = dose + background_gy
    dose_time_s = time.perf_counter() - t1
    dvhs, exceeded = limits_on_dvh(case, grid, dose, limits)
    clock.check("the final dose and its DVH check")
    return _Round(selection, seeds, dose, active, dvhs, exceeded, dose_time_s)


def _updated_dose(
    spec: PlanSpec,
    grid: Grid,
    model: SeedModel,
    candidates: Candidates,
    previous: _Round,
    chosen: np.ndarray,
    backend: str,
) -> np.ndarray | None:
    """The total dose of ``chosen``: ``previous``'s plus the dose of the seeds it adds,
    less that of the seeds it removes (TG-43 doses add, seed by seed); None when more
    seeds changed than stay (a dose from scratch is then cheaper)."""
    before = previous.selection.chosen
    added = np.setdiff1d(chosen, before)
    removed = np.setdiff1d(before, chosen)
    if added.size + removed.size >= np.intersect1d(chosen, before).size:
        return None
    dose = previous.dose_gy.copy()
    if added.size:
        dose += final_dose(spec, grid, model, chosen_seeds(spec, candidates, added),
                           backend=backend)  # fmt: skip
    if removed.size:
        dose -= final_dose(spec, grid, model, chosen_seeds(spec, candidates, removed),
                           backend=backend)  # fmt: skip
    return dose


def _raised(short: list[CoverageShortfall], raise_rx: np.ndarray, round_: int) -> list[str]:
    """Raise each short zone's optimiser prescription (in place); the log lines."""
    notes = []
    for c in short:
        factor = c.ratio * (1 + RAISING_MARGIN)
        raise_rx[c.index] *= factor
        notes.append(
            f"round {round_ + 1}: {c.name} V100 {c.v100_pct:.2f} %, D90 {c.d90_gy:.2f} Gy on "
            f"the grid DVH, below its goals; optimiser prescription raised by "
            f"{100 * (factor - 1):.2f} %"
        )
    return notes


def _lowered(exceeded: list[LimitExcess], scale: np.ndarray, round_: int) -> list[str]:
    """Lower each exceeded OAR limit in the optimiser (in place); the log lines."""
    notes = []
    for e in exceeded:
        notes.append(
            f"round {round_ + 1}: {e.name} = {e.value_gy:.2f} Gy on the DVH > "
            f"{e.limit_gy:g} Gy; optimiser limit lowered by "
            f"{100 * (1 - e.limit_gy / e.value_gy):.1f} %"
        )
        scale[e.index] *= e.limit_gy / e.value_gy * (1 - LOWERING_MARGIN)
    return notes


def _coverage(
    zones: Sequence[TargetZone], selection: SeedSelection, sk_u: float
) -> dict[str, dict[str, float]]:
    """Each zone's coverage on its sample points at its own prescription."""
    return {z.name: zone_stats(z.dose_gy(selection.chosen, sk_u), z) for z in zones}


def select_seeds_for(
    spec: PlanSpec,
    zones: Sequence[TargetZone],
    constraints: Sequence[OarConstraint],
    candidates: Candidates,
    *,
    clock: WallClock = NO_LIMIT,
    progress: ProgressCallback | None = None,
    warm_start: WarmStart | None = None,
) -> SeedSelection:
    """One selection by the spec's method: the heuristic (from ``warm_start`` when given),
    or the MILP (its status logged)."""
    opt = spec.optimizer
    if opt.method == "milp":
        selection, info = select_seeds_milp(
            zones, constraints, sk_u=spec.sk_u, needle=candidates.needle,
            exclusions=candidates.exclusions, max_needles=spec.needles.max_needles,
            v100_min_pct=opt.v100_min_pct, needle_weight=opt.needle_weight,
            node_limit=opt.milp_node_limit, clock=clock,
        )  # fmt: skip
        return replace(selection, log=[*selection.log, f"MILP: {info.status}; gap {info.mip_gap}"])
    return select_seeds(
        zones, constraints, sk_u=spec.sk_u, needle=candidates.needle,
        exclusions=candidates.exclusions, max_needles=spec.needles.max_needles,
        v100_min_pct=opt.v100_min_pct, needle_weight=opt.needle_weight,
        lp_max_iterations=opt.lp_max_iterations, clock=clock,
        hot_spot_weight=opt.hot_spot_weight,
        oar_sparing_weight=opt.oar_sparing_weight, progress=progress,
        guide=True if warm_start is None else warm_start,
    )  # fmt: skip


def chosen_seeds(spec: PlanSpec, candidates: Candidates, chosen: np.ndarray) -> Seeds:
    """The chosen candidates as seeds of the spec's strength, along their needles."""
    return Seeds(candidates.positions_mm[chosen], spec.sk_u, candidates.directions[chosen])


def final_dose(
    spec: PlanSpec,
    grid: Grid,
    model: SeedModel,
    seeds: Seeds,
    *,
    backend: str,
    progress: ProgressCallback | None = None,
) -> np.ndarray:
    """The seeds' total dose (Gy, float64) on the planning grid; zero without seeds."""
    if not len(seeds):
        return np.zeros(grid.shape)
    dose = dose_on_grid(
        seeds,
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


def limits_on_dvh(
    case: PlanningCase, grid: Grid, dose_gy: np.ndarray, limits: Sequence[OarDvhLimit]
) -> tuple[dict[str, DVH], list[LimitExcess]]:
    """The contour DVH of every limited OAR under ``dose_gy``, and the limits it exceeds."""
    thickness = case.ct.grid.spacing_mm[2]
    dvhs: dict[str, DVH] = {}
    exceeded = []
    for n, lim in enumerate(limits):
        if lim.roi not in dvhs:
            dvhs[lim.roi] = dvh_from_roi(
                case.structures.roi(lim.roi), dose_gy, grid, slice_thickness_mm=thickness
            )
        value = _limited_quantity_gy(dvhs[lim.roi], lim)
        if value > lim.term.limit_gy * (1 + DVH_LIMIT_TOLERANCE):
            exceeded.append(LimitExcess(n, lim.name, value, lim.term.limit_gy))
    return dvhs, exceeded


def _limited_quantity_gy(dvh: DVH, lim: OarDvhLimit) -> float:
    """The limited quantity on the final DVH: Dmax, or D_vcc (a Vx limit is D_vcc <= x)."""
    return dvh.dmax_gy if lim.term.kind == "dmax" else dose_at_volume_cc(dvh, lim.allowed_cc)


def _with_proven_binding(
    spec: PlanSpec,
    selection: SeedSelection,
    zones: Sequence[TargetZone],
    constraints: Sequence[OarConstraint],
    candidates: Candidates,
    clock: WallClock,
) -> SeedSelection:
    """The infeasible selection with ``binding`` replaced by what the relaxation proves
    (:mod:`brachycryo.planning.binding`); the tally it replaces stays in the log."""
    suspects = list(selection.binding)
    if not suspects or suspects[0].startswith("candidate geometry"):
        return selection  # nothing was blocked: no candidate reaches the cold points
    proof = prove_binding(
        zones, constraints, suspects, sk_u=spec.sk_u, exclusions=candidates.exclusions,
        max_iterations=spec.optimizer.lp_max_iterations, clock=clock,
    )  # fmt: skip
    bounds = ", ".join(f"{k}: {v:.4g}" for k, v in proof.bound_without.items())
    log = [
        *selection.log,
        f"blocked candidates by constraint (a tally, not a proof): {', '.join(suspects)}",
        f"linear under-dose bound {proof.bound_all}; with one constraint relaxed: {bounds}",
    ]
    return replace(selection, binding=explain_binding(proof, suspects), log=log)


def _with_dvh_findings(
    selection: SeedSelection, notes: list[str], exceeded: list[LimitExcess]
) -> SeedSelection:
    """The selection with the verification's notes logged; infeasible, with the limits
    still exceeded named first as binding, when any is."""
    selection = replace(selection, log=[*selection.log, *notes])
    if not exceeded:
        return selection
    names = {e.name for e in exceeded}
    binding = [
        f"{e.name} (exceeded on the final DVH after {VERIFY_ROUNDS} corrections)" for e in exceeded
    ] + [b for b in selection.binding if b not in names]
    return replace(selection, feasible=False, binding=binding)
