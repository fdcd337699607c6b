"""Robust seed selection (``[optimizer] robust``): coverage margins raised until the plan
meets its probability targets under needle placement error.

The nominal selection (:func:`~brachycryo.planning.selection.select_verified_seeds`) is
evaluated on ``scenarios`` scenarios of the error model
(:func:`brachycryo.robustness.scenarios.evaluate_robustness`: needle-level entry, angle and
depth errors, seeded).  While a seed-target zone or a high-risk sub-zone has P(D90 >= its
own Rx) below ``min_probability``,
or an OAR limit P(met) below ``oar_min_probability``, the selection is repeated with a
margin: the failing zone's prescription in the optimiser raised so that the scenario D90
quantile the target needs would reach Rx (at least ``ZONE_MARGIN_STEP`` more per round),
the failing limit lowered alike (:func:`_raise_margins`).  This is the coverage-margin form
of a scenario chance constraint (scenario-based robust optimisation as RobustBrachy does it
for HDR prostate, here a deterministic outer loop around the LDR seed optimiser): every
round is a full selection, the margins follow the seeded scenarios, so the result is the
same on every run.  The margins change only what the optimiser aims at: each round's
selection is judged on the plan's own goals (V100 and D90 at the prescription, on the
optimiser's sample points) and on the OAR limits checked on the final DVH, as a nominal plan
is.

What it guarantees: the probabilities it reports are those of the kept plan on the same
scenarios as ``brachycryo robust`` draws for the written plan with the same error model and
seed (errors drawn for the plan's needles in ``needles.csv`` order), and on the same points
(the OARs' contours and the zones' contours as the outputs write them, sampled by
:func:`brachycryo.robustness.plan_folder.sample_roi`), up to the rounding of the written
files (0.1 mm and 1e-4 in ``needles.csv``, the contours' decimal strings):
``tests/planning/test_robust_option.py`` re-evaluates a written plan.  The first round that
meets both targets is kept; when none within ``max_rounds`` does, the round with the
smallest total shortfall is kept and the summary says ``met = false``.

A round whose selection cannot reach the targets its margins asked for (the optimiser
reports it infeasible at the raised prescriptions or lowered limits, and says what binds:
an OAR limit, the seed spacing, the needle count) ends the rounds: a larger margin asks for
more of what is already out of reach.  The summary gives that binding
(:attr:`RobustSummary.limited_by`), so an unmet target is explained, e.g. a small lesion
whose candidate positions at the template's pitch and seed spacing are all used (then a
denser template, stronger seeds or a smaller error model is what would help).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from brachycryo.core.deadline import NO_LIMIT, WallClock
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.rtstruct import ROI, Contour
from brachycryo.dicom_io.rtstruct_write import mask_to_contours_mm
from brachycryo.dose_kernels import SeedModel
from brachycryo.planning.case import PlanningCase
from brachycryo.planning.influence import OarDvhLimit, OptimiserProblem, SamplePoints
from brachycryo.planning.needles import Candidates
from brachycryo.planning.optimize import zone_stats
from brachycryo.planning.selection import VerifiedSeeds, select_verified_seeds
from brachycryo.planning.spec import PlanSpec, RobustSpec
from brachycryo.planning.zones import LesionZones, resample_mask_nearest
from brachycryo.robustness.error_model import load_error_model
from brachycryo.robustness.plan_folder import (
    MAX_POINTS,
    OarLimit,
    PlanInputs,
    SampledStructure,
    sample_roi,
)
from brachycryo.robustness.scenarios import RobustOptions, RobustResult, evaluate_robustness

__all__ = ["RobustRound", "RobustSummary", "robust_seeds"]

#: Relative raise of a failing zone's prescription in the optimiser, per round.
ZONE_MARGIN_STEP = 0.04
#: Relative lowering of a failing OAR limit in the optimiser, per round.
OAR_MARGIN_STEP = 0.05
#: Largest raise of a margin in one round.
MAX_STEP = 0.5
#: Lattice of the zones' and OARs' sample points (mm), as ``brachycryo robust`` samples them.
OAR_SPACING_MM = 2.0


def _zone_name(lesion: str, zone: str = "SeedTarget") -> str:
    """A zone's ROI name in ``RS.zones.dcm`` (``evaluate.zone_roi_name``)."""
    return f"{lesion}_{zone}"


@dataclass(frozen=True)
class RobustRound:
    """One round: the margins it planned with, its seeds and needles, its probabilities."""

    zone_margin: dict[str, float]  # zone -> relative raise of the optimiser's prescription
    oar_margin: dict[str, float]  # "roi metric" -> relative lowering of the limit
    n_seeds: int
    n_needles: int
    p_d90: dict[str, float]  # zone -> P(D90 >= Rx)
    p_met: dict[str, float]  # "roi metric" -> P(limit met)
    feasible: bool  # the nominal goals and limits of this round's selection
    #: what kept this round's selection from the targets its margins asked for (empty: they
    #: were met, or round 0, which has no margins)
    binding: tuple[str, ...] = ()

    def shortfall(self, spec: RobustSpec) -> float:
        """How far the round is from its targets (0: met)."""
        z = sum(max(0.0, spec.min_probability - p) for p in self.p_d90.values())
        o = sum(max(0.0, spec.oar_min_probability - p) for p in self.p_met.values())
        return z + o


@dataclass(frozen=True)
class RobustSummary:
    """The robust option's result: targets, every round, the chosen round, the seed cost."""

    spec: RobustSpec
    error_model: str
    rounds: tuple[RobustRound, ...]
    chosen: int
    met: bool

    @property
    def extra_seeds(self) -> int:
        return self.rounds[self.chosen].n_seeds - self.rounds[0].n_seeds

    @property
    def extra_needles(self) -> int:
        return self.rounds[self.chosen].n_needles - self.rounds[0].n_needles

    @property
    def limited_by(self) -> tuple[str, ...]:
        """Why the rounds stopped short of the targets: the constraints that kept the last
        round from the margins it asked for (empty when the targets were met, or when the
        rounds ran out with every margin met)."""
        return () if self.met else self.rounds[-1].binding


@dataclass(frozen=True)
class _Zone:
    """A zone the rounds make robust: sampled as ``brachycryo robust`` samples it, its
    prescription, and the name of its zone in the optimiser's problem."""

    sampled: SampledStructure
    prescription_gy: float
    problem_name: str


def _zone_structures(
    spec: PlanSpec, case: PlanningCase, grid: Grid, zones: dict, samples
) -> list[_Zone]:
    """Every seed-target zone and high-risk sub-zone, in the order ``brachycryo robust``
    reads them (:func:`brachycryo.robustness.plan_folder.read_plan_folder`: per lesion its
    seed target, then its sub-zones), sampled as it samples ``RS.zones.dcm``: the zone mask
    on the CT grid (as the plan's outputs write it), its contours
    (:func:`brachycryo.dicom_io.rtstruct_write.mask_to_contours_mm`) sampled by
    :func:`brachycryo.robustness.plan_folder.sample_roi`."""
    rx = {z.name: z.prescription_gy for z in samples.zones}
    out = []
    for lesion in spec.lesions:
        z = zones.get(lesion.roi)
        if z is None or z.seed_target is None or f"{lesion.roi} seed target" not in rx:
            continue
        parts = [("SeedTarget", z.seed_target, f"{lesion.roi} seed target")]
        parts += [(h.roi, z.high_risk[h.roi], f"{lesion.roi} {h.roi}") for h in lesion.high_risk]
        for zone, mask, problem_name in parts:
            name = _zone_name(lesion.roi, zone)
            on_ct = resample_mask_nearest(mask, grid, case.ct.grid)
            contours = mask_to_contours_mm(on_ct, case.ct, name=name)
            roi = ROI(0, name, contours=tuple(Contour(c) for c in contours))
            sampled = sample_roi(roi, OAR_SPACING_MM, MAX_POINTS)
            out.append(_Zone(sampled, rx[problem_name], problem_name))
    return out


def _oar_inputs(case: PlanningCase, limits: Sequence[OarDvhLimit]):
    oars: dict[str, SampledStructure] = {}
    out = []
    for lim in limits:
        if lim.roi not in oars:
            roi = case.structures.roi(lim.roi)
            oars[lim.roi] = sample_roi(roi, OAR_SPACING_MM, MAX_POINTS)
        out.append(OarLimit(lim.roi, lim.term.label, lim.term.reported_limit))
    return oars, tuple(out)


def plan_inputs(
    spec: PlanSpec,
    candidates: Candidates,
    verified: VerifiedSeeds,
    zones: list[_Zone],
    oars: tuple[dict[str, SampledStructure], tuple[OarLimit, ...]],
) -> PlanInputs:
    """The selection as ``brachycryo robust`` reads it from the written plan: needles in
    ``needles.csv`` order (ascending candidate track), seeds in RTPLAN order."""
    used = sorted(set(verified.needles.tolist()))
    index = {k: i for i, k in enumerate(used)}
    tracks = [candidates.tracks[k] for k in used]
    return PlanInputs(
        seeds=verified.seeds,
        seed_needle=np.array([index[k] for k in verified.needles.tolist()], dtype=int),
        needle_ids=np.array([t.number for t in tracks], dtype=int),
        needle_entry_mm=np.array([np.asarray(t.entry_mm, float) for t in tracks]),
        needle_direction=np.array([np.asarray(t.direction, float) for t in tracks]),
        seed_model=spec.seed_model,
        zones=tuple(z.sampled for z in zones),
        zone_prescription_gy=tuple(z.prescription_gy for z in zones),
        oars=oars[0],
        limits=oars[1],
    )


def _round(
    verified: VerifiedSeeds,
    result: RobustResult,
    zm: dict,
    om: dict,
    n_needles: int,
    binding: tuple[str, ...],
) -> RobustRound:
    return RobustRound(
        dict(zm),
        dict(om),
        len(verified.seeds),
        n_needles,
        {z.name: z.p_d90 for z in result.zones},
        {f"{lim.roi} {lim.metric}": lim.p_met for lim in result.limits},
        bool(verified.selection.feasible),
        binding,
    )


def _with_margins(
    problem: OptimiserProblem,
    limits: Sequence[OarDvhLimit],
    zm: dict,
    om: dict,
    robust_zones: Sequence[_Zone],
) -> OptimiserProblem:
    """The problem with each zone's prescription raised by its margin (the margins are
    keyed by the zones' ``RS.zones.dcm`` names) and each constraint's limit lowered by its
    OAR limit's margin."""
    margin = {z.problem_name: zm.get(z.sampled.name, 0.0) for z in robust_zones}
    zones = []
    for z in problem.zones:
        f = 1.0 + margin.get(z.name, 0.0)
        zones.append(replace(z, prescription_gy=z.prescription_gy * f))
    constraints = tuple(
        replace(c, limit_gy=c.limit_gy * (1.0 - om.get(f"{lim.roi} {lim.term.label}", 0.0)))
        for c, lim in zip(problem.constraints, limits, strict=True)
    )
    return OptimiserProblem(tuple(zones), constraints)


def robust_seeds(
    spec: PlanSpec,
    case: PlanningCase,
    grid: Grid,
    model: SeedModel,
    problem: OptimiserProblem,
    limits: Sequence[OarDvhLimit],
    candidates: Candidates,
    samples: SamplePoints,
    lesion_zones: dict[str, LesionZones],
    nominal: VerifiedSeeds,
    *,
    backend: str,
    clock: WallClock = NO_LIMIT,
) -> tuple[VerifiedSeeds, RobustSummary]:
    """The robust selection and its summary (module docstring); ``nominal`` is round 0."""
    rs = spec.optimizer.robust
    assert rs is not None  # called for a spec with [optimizer] robust
    error_model = load_error_model(rs.error_model)
    opts = RobustOptions(n_scenarios=rs.scenarios, seed=rs.seed, backend=backend)
    zones = _zone_structures(spec, case, grid, lesion_zones, samples)
    oars = _oar_inputs(case, limits)

    def evaluate(v: VerifiedSeeds) -> tuple[RobustResult, int]:
        inputs = plan_inputs(spec, candidates, v, zones, oars)
        return evaluate_robustness(inputs, error_model, opts), len(inputs.needle_ids)

    zm: dict[str, float] = {}
    om: dict[str, float] = {}
    verified = nominal
    plans = [nominal]
    rounds: list[RobustRound] = []
    binding: tuple[str, ...] = ()
    for k in range(rs.max_rounds + 1):
        result, n_needles = evaluate(verified)
        rounds.append(_round(verified, result, zm, om, n_needles, binding))
        clock.check(f"robust round {k}")
        failing_z = [z for z in result.zones if z.p_d90 < rs.min_probability]
        failing_o = [x for x in result.limits if x.p_met < rs.oar_min_probability]
        if (not failing_z and not failing_o) or k == rs.max_rounds or binding:
            break  # met, out of rounds, or a margin the optimiser could not reach
        _raise_margins(rs, failing_z, failing_o, zm, om)
        verified = select_verified_seeds(
            spec, case, grid, model, _with_margins(problem, limits, zm, om, zones), limits,
            candidates,
            backend=backend, clock=clock,
        )  # fmt: skip
        sel = verified.selection
        binding = () if sel.feasible else tuple(sel.binding) or ("the raised coverage goals",)
        verified = _judged_on_nominal_goals(spec, problem, verified)
        plans.append(verified)
    met = [i for i, r in enumerate(rounds) if r.shortfall(rs) == 0.0 and r.feasible]
    chosen = met[0] if met else min(range(len(rounds)), key=lambda i: rounds[i].shortfall(rs))
    summary = RobustSummary(rs, error_model.name, tuple(rounds), chosen, bool(met))
    return _logged(plans[chosen], summary), summary


def _raise_margins(rs: RobustSpec, zones, limits, zm: dict, om: dict) -> None:
    """Raise the margins of the failing zones and OAR limits, in place.

    A zone's D90 scales about with the optimiser's prescription, so the margin that would
    lift the scenario D90 quantile the target needs (the ``1 - min_probability`` quantile
    of D90 / Rx, q) to Rx is ``(1 + m) / q - 1``; at least ``ZONE_MARGIN_STEP`` more, at
    most ``MAX_STEP`` more per round.  An OAR limit is lowered alike from the
    ``oar_min_probability`` quantile of its metric over the limit."""
    for z in zones:
        q = float(np.quantile(z.d90_gy / z.prescription_gy, 1.0 - rs.min_probability))
        m = zm.get(z.name, 0.0)
        want = (1.0 + m) / max(q, 1e-6) - 1.0
        zm[z.name] = min(max(want, m + ZONE_MARGIN_STEP), m + MAX_STEP)
    for x in limits:
        name = f"{x.roi} {x.metric}"
        q = float(np.quantile(x.values / x.limit, rs.oar_min_probability))
        m = om.get(name, 0.0)
        want = 1.0 - (1.0 - m) / max(q, 1e-6)
        om[name] = min(max(want, m + OAR_MARGIN_STEP), m + MAX_STEP, 0.9)


def _judged_on_nominal_goals(
    spec: PlanSpec, problem: OptimiserProblem, verified: VerifiedSeeds
) -> VerifiedSeeds:
    """The selection of a round with margins, its coverage and feasibility judged on the
    plan's own goals (nominal prescriptions); an OAR limit exceeded on the final DVH keeps
    it infeasible."""
    sel = verified.selection
    coverage = {z.name: zone_stats(z.dose_gy(sel.chosen, spec.sk_u), z) for z in problem.zones}
    goals = all(
        c["v100_pct"] >= spec.optimizer.v100_min_pct and c["d90_gy"] >= z.prescription_gy
        for c, z in zip(coverage.values(), problem.zones)
    )
    dvh_excess = any("exceeded on the final DVH" in b for b in sel.binding)
    feasible = goals and not dvh_excess
    binding = [] if feasible else list(sel.binding)
    if not goals and not binding:
        binding = ["robust margins: the coverage goals at the prescription are not met"]
    sel = replace(sel, coverage=coverage, feasible=feasible, binding=binding)
    return replace(verified, selection=sel)


def _logged(verified: VerifiedSeeds, summary: RobustSummary) -> VerifiedSeeds:
    lines = []
    for i, r in enumerate(summary.rounds):
        probs = ", ".join(f"P(D90>=Rx) {k} {v:.3f}" for k, v in r.p_d90.items())
        oars = ", ".join(f"P({k} met) {v:.3f}" for k, v in r.p_met.items())
        margins = ", ".join(f"{k} +{100 * v:.0f} %" for k, v in r.zone_margin.items())
        margins += "".join(f", {k} -{100 * v:.0f} %" for k, v in r.oar_margin.items())
        lines.append(
            f"robust round {i}: {r.n_seeds} seeds, margins [{margins or 'none'}]: {probs}; {oars}"
        )
    state = "met" if summary.met else "NOT met"
    lines.append(
        f"robust: targets {state}; round {summary.chosen} kept, "
        f"{summary.extra_seeds:+d} seeds versus the nominal plan"
    )
    sel = replace(verified.selection, log=[*verified.selection.log, *lines])
    return replace(verified, selection=sel)
