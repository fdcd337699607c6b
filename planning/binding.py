"""Which constraint really binds an infeasible plan: a proof by relaxation, not a tally.

The seed selection counts what blocked the candidates it wanted (an OAR limit, the seed
spacing, the needle budget), but a count only says what the greedy bumped into, not
what stops coverage: a plan cut short for another reason would still name whatever it
met last.  Here each suspect is tested on the linear relaxation of the selection
(:func:`brachycryo.planning.optimize.lp_relaxation`'s model, every OAR limit at its full
value, no seed-count or hot-spot cost): the least volume-weighted relative under-dose of
the target points, ``U = sum_m f_m u_m / Rx_m``, is computed with every constraint and
again with the suspect removed.  The relaxation's optimum is a bound on what any set of
whole seeds can reach, so a constraint whose removal lowers ``U`` provably limits the
coverage; one whose removal changes nothing does not bind, however often it blocked a
candidate.  The needle budget is not part of the linear model: it is reported as a tally
only, and said to be one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from brachycryo.core.deadline import NO_LIMIT, WallClock
from brachycryo.planning.optimize import (
    LP_MAX_ITERATIONS,
    OarConstraint,
    TargetZone,
    _LpOptions,
    _LpProblem,
    _solve_lp,
    lp_problem,
)

#: A suspect binds when relaxing it lowers the under-dose bound by at least this fraction.
MIN_RELATIVE_GAIN = 0.01
#: Below this bound (a fraction of the prescribed dose-volume) the relaxation covers all.
COVERED = 1e-6
SPACING = "seed spacing"
NEEDLES = "max_needles"


@dataclass(frozen=True)
class BindingProof:
    """The under-dose bound with every constraint, and with each suspect relaxed."""

    bound_all: float | None  # None: the relaxation could not be solved within its work limit
    bound_without: dict[str, float]

    def binding(self) -> list[str]:
        """Suspects whose relaxation lowers the bound, largest gain first."""
        if self.bound_all is None or self.bound_all <= COVERED:
            return []
        gains = {
            k: self.bound_all - v
            for k, v in self.bound_without.items()
            if v < self.bound_all * (1.0 - MIN_RELATIVE_GAIN)
        }
        return sorted(gains, key=lambda k: -gains[k])


def prove_binding(
    zones: Sequence[TargetZone],
    oars: Sequence[OarConstraint],
    suspects: Sequence[str],
    *,
    sk_u: float,
    exclusions: np.ndarray,
    max_target_points: int = 1000,
    max_oar_points: int = 600,
    max_iterations: int = LP_MAX_ITERATIONS,
    clock: WallClock = NO_LIMIT,
) -> BindingProof:
    """Solve the coverage bound with all constraints and with each OAR-limit or
    seed-spacing suspect removed (suspects named as in ``SeedSelection.binding``)."""
    full = lp_problem(
        zones,
        oars,
        sk_u=sk_u,
        exclusions=exclusions,
        max_target_points=max_target_points,
        max_oar_points=max_oar_points,
    )
    options = _LpOptions(
        under_dose_weight=1.0,
        hot_weight=0.0,
        oar_sparing_weight=0.0,
        oar_headroom=1.0,
        max_iterations=max_iterations,
        clock=clock,
        sparsify_fraction=0.0,
        seed_cost=0.0,
    )
    bound_all = _under_dose_bound(full, options)
    without: dict[str, float] = {}
    if bound_all is not None and bound_all > COVERED:
        for name in dict.fromkeys(suspects):
            relaxed = _relaxed(full, name)
            if relaxed is not None:
                bound = _under_dose_bound(relaxed, options)
                if bound is not None:
                    without[name] = bound
    return BindingProof(bound_all, without)


def _relaxed(problem: _LpProblem, name: str) -> _LpProblem | None:
    """``problem`` without the constraint called ``name`` (None: not in the linear model)."""
    if name == SPACING:
        return replace(problem, exclusions=problem.exclusions[:0])
    blocks = [b for b in problem.oar_blocks if f"{b.constraint.roi} {b.constraint.metric}" != name]
    if len(blocks) == len(problem.oar_blocks):
        return None
    return replace(problem, oar_blocks=blocks)


def _under_dose_bound(problem: _LpProblem, options: _LpOptions) -> float | None:
    keep = np.ones(problem.dose.shape[0], dtype=bool)
    try:
        _, under = _solve_lp(problem, keep, options)
    except ValueError:
        return None
    if under is None:
        return None
    return float(np.sum(problem.fraction * under / problem.prescription_gy))


def explain_binding(proof: BindingProof, suspects: Sequence[str]) -> list[str]:
    """The ``binding`` list of an infeasible plan: proven constraints first; the needle
    budget as a tally; and, when nothing is proven, what the bound says instead."""
    proven = proof.binding()
    out = list(proven)
    if NEEDLES in suspects:
        out.append(f"{NEEDLES} (blocked useful candidates; not part of the linear bound)")
    if proven:
        return out
    if proof.bound_all is None:
        return out + ["not proven: the linear bound could not be solved within its work limit"]
    if proof.bound_all <= COVERED:
        return out + [
            "no limit proven binding: the linear relaxation covers every target point within "
            "the OAR limits and the seed spacing; whole seeds on the candidate tracks fall "
            "short (candidate geometry, seed strength, or the needle budget)"
        ]
    return out + [
        "no single limit proven binding: relaxing any one alone leaves the linear coverage "
        "bound unchanged (candidate geometry, or several limits together)"
    ]
