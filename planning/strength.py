"""Choosing the seed strength: ``[prescription] sk_u = "auto"`` (:data:`AUTO_SK_U` in
:mod:`~brachycryo.planning.spec`) or a list of strengths.

With a fixed prescription the strength mostly sets the hot spots: stronger seeds reach
V100 with fewer seeds but raise V150 / V200 around each of them (AAPM TG-64, Yu et al.,
Med Phys 26:2054, 1999, on the choice of seed strength in prostate implants).  The
influence matrix is in Gy per U, so every candidate strength is tried on the same
matrices: the full selection (LP guide, construction, pruning, swaps) runs once per
strength on the sample points, and the strength chosen is the one whose selection meets
the coverage goals within every OAR limit with the lowest V150 (the highest over the
zones), then the fewest seeds, then the weakest strength.  When none meets the goals, the
one with the best coverage (the lowest V100 over the zones, highest) is kept and the plan
reports what binds as usual.  Deterministic: no step depends on time.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from brachycryo.core.deadline import NO_LIMIT, WallClock
from brachycryo.planning.influence import OptimiserProblem
from brachycryo.planning.needles import Candidates
from brachycryo.planning.optimize import SeedSelection
from brachycryo.planning.selection import select_seeds_for
from brachycryo.planning.spec import PlanSpec


@dataclass(frozen=True)
class StrengthTrial:
    """One candidate strength and what the selection reached with it (sample points)."""

    sk_u: float
    feasible: bool
    n_seeds: int
    v100_min_pct: float  # the lowest V100 over the zones
    v150_max_pct: float  # the highest V150 over the zones

    def describe(self) -> str:
        state = "goals met" if self.feasible else "goals not met"
        return (
            f"{self.sk_u:g} U: {self.n_seeds} seeds, V100 >= {self.v100_min_pct:.1f} %, "
            f"V150 <= {self.v150_max_pct:.1f} % ({state})"
        )


def trial_of(sk_u: float, selection: SeedSelection) -> StrengthTrial:
    cov = selection.coverage.values()
    return StrengthTrial(
        sk_u=sk_u,
        feasible=selection.feasible,
        n_seeds=int(selection.chosen.size),
        v100_min_pct=min(c["v100_pct"] for c in cov),
        v150_max_pct=max(c["v150_pct"] for c in cov),
    )


def best_trial(trials: Sequence[StrengthTrial]) -> StrengthTrial:
    """The rule of the module docstring."""
    feasible = [t for t in trials if t.feasible]
    if feasible:
        return min(feasible, key=lambda t: (round(t.v150_max_pct, 6), t.n_seeds, t.sk_u))
    return max(trials, key=lambda t: (round(t.v100_min_pct, 6), -t.sk_u))


def choose_strength(
    spec: PlanSpec,
    problem: OptimiserProblem,
    candidates: Candidates,
    *,
    clock: WallClock = NO_LIMIT,
) -> tuple[PlanSpec, list[str]]:
    """``spec`` with the chosen strength as its ``sk_u``, and a log line per strength tried;
    ``spec`` unchanged when it names a single strength."""
    if not spec.sk_u_choices:
        return spec, []
    trials = []
    for sk_u in spec.sk_u_choices:
        selection = select_seeds_for(
            replace(spec, sk_u=sk_u), problem.zones, problem.constraints, candidates, clock=clock
        )
        trials.append(trial_of(sk_u, selection))
    best = best_trial(trials)
    log = [f"strength {t.describe()}" for t in trials]
    log.append(f"strength chosen: {best.sk_u:g} U (lowest V150 among plans meeting the goals)")
    return replace(spec, sk_u=best.sk_u), log
