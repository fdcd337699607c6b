"""The plan's seed stages: seed selection, then the final dose and its verification.

The optimiser sees each OAR through its voxel centres (occupancy-weighted for volume
limits); the reported DVH integrates the contours with trilinear dose interpolation.  When
the two disagree so that a limit is exceeded on the DVH, that constraint's limit is lowered
by the ratio of the excess and the selection is repeated (``VERIFY_ROUNDS`` times at
most).  A limit still exceeded afterwards makes the plan infeasible with that limit named
as binding: never a silently violated limit.  With seeds already implanted (a background
dose, ``background_gy``) the DVHs are those of the total dose, implanted plus new seeds.
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
from brachycryo.planning.optimize import OarConstraint, SeedSelection, TargetZone, select_seeds
from brachycryo.planning.spec import PlanSpec
from brachycryo.qa.dvh import DVH, dvh_from_roi
from brachycryo.qa.metrics import dose_at_volume_cc

#: How often a selection is repeated with lowered optimiser limits when the final DVH
#: exceeds an OAR limit.
VERIFY_ROUNDS = 3
#: A limit counts as exceeded on the DVH above this relative tolerance.
DVH_LIMIT_TOLERANCE = 1e-6
#: A lowered limit goes this much (relative) below the ratio of the excess.
LOWERING_MARGIN = 2e-3


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
) -> VerifiedSeeds:
    """Select seeds, compute the dose, and check every OAR limit on the final DVH (see the
    module docstring); ``limits[n]`` is the limit of ``problem.constraints[n]``;
    ``background_gy``: the implanted seeds' dose on ``grid`` (the problem's rows carry it
    at their points), added to the new seeds' dose."""
    scale = np.ones(len(problem.constraints))
    dose_time_s = 0.0
    notes: list[str] = []
    for round_ in range(VERIFY_ROUNDS + 1):
        active = tuple(
            replace(c, limit_gy=c.limit_gy * f)
            for c, f in zip(problem.constraints, scale, strict=True)
        )
        first = round_ == 0
        selection = select_seeds_for(
            spec, problem.zones, active, candidates, clock=clock,
            progress=scaled(progress, 0.6, 0.85) if first else None,
        )  # fmt: skip
        t1 = time.perf_counter()
        seeds = chosen_seeds(spec, candidates, selection.chosen)
        dose = final_dose(
            spec, grid, model, seeds, backend=backend,
            progress=scaled(progress, 0.85, 0.97) if first else None,
        )  # fmt: skip
        if background_gy is not None:
            dose = dose + background_gy
        dose_time_s += time.perf_counter() - t1
        dvhs, exceeded = limits_on_dvh(case, grid, dose, limits)
        clock.check("the final dose and its DVH check")
        if not exceeded:
            break
        for e in exceeded:
            notes.append(
                f"round {round_ + 1}: {e.name} = {e.value_gy:.2f} Gy on the DVH > "
                f"{e.limit_gy:g} Gy; optimiser limit lowered by "
                f"{100 * (1 - e.limit_gy / e.value_gy):.1f} %"
            )
            scale[e.index] *= e.limit_gy / e.value_gy * (1 - LOWERING_MARGIN)
    if not selection.feasible:
        selection = _with_proven_binding(spec, selection, problem.zones, active, candidates, clock)
    return VerifiedSeeds(
        selection=_with_dvh_findings(selection, notes, exceeded),
        seeds=seeds,
        needles=candidates.needle[selection.chosen],
        dose_gy=dose,
        constraints=active,
        oar_dvhs=dvhs,
        dose_time_s=dose_time_s,
    )


def select_seeds_for(
    spec: PlanSpec,
    zones: Sequence[TargetZone],
    constraints: Sequence[OarConstraint],
    candidates: Candidates,
    *,
    clock: WallClock = NO_LIMIT,
    progress: ProgressCallback | None = None,
) -> SeedSelection:
    """One selection by the spec's method: the heuristic, or the MILP (its status logged)."""
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
