"""The binding constraints of an infeasible plan are proven by relaxation, not tallied."""

import numpy as np

from brachycryo.planning.binding import (
    NEEDLES,
    SPACING,
    BindingProof,
    explain_binding,
    prove_binding,
)
from brachycryo.planning.optimize import OarConstraint, select_seeds

# the small test problem (a fixture) and its helpers
from tests.planning.test_optimize import _small_kw, _small_zone, small_problem  # noqa: F401


def _wall(problem, limit_gy: float, name: str = "Wall") -> OarConstraint:
    a_o = problem[2]
    return OarConstraint(name, "dmax", "dmax", limit_gy, 0.0, a_o, np.full(len(a_o), 0.064))


def test_a_limit_that_stops_coverage_is_proven(small_problem):  # noqa: F811
    zone = _small_zone(small_problem)
    kw = _small_kw(small_problem)
    tight = _wall(small_problem, 5.0)  # 5 Gy 6 mm outside a 10 mm target treated to 110 Gy
    loose = _wall(small_problem, 1e4, "Far")
    sel = select_seeds([zone], [tight, loose], **kw)
    assert not sel.feasible
    proof = prove_binding(
        [zone], [tight, loose], ["Wall dmax", "Far dmax", SPACING],
        sk_u=kw["sk_u"], exclusions=kw["exclusions"],
    )  # fmt: skip
    assert proof.bound_all is not None and proof.bound_all > 0
    assert proof.bound_without["Wall dmax"] < 0.5 * proof.bound_all
    assert proof.bound_without["Far dmax"] == proof.bound_all  # relaxing it changes nothing
    assert proof.binding() == ["Wall dmax"]
    assert explain_binding(proof, ["Wall dmax", "Far dmax"]) == ["Wall dmax"]


def test_a_tally_without_proof_is_not_called_binding(small_problem):  # noqa: F811
    """A limit the greedy bumped into but which does not limit the relaxation."""
    zone = _small_zone(small_problem)
    kw = _small_kw(small_problem)
    loose = _wall(small_problem, 1e4)
    proof = prove_binding([zone], [loose], ["Wall dmax"], sk_u=kw["sk_u"],
                          exclusions=kw["exclusions"])  # fmt: skip
    assert proof.binding() == []
    text = explain_binding(proof, ["Wall dmax", NEEDLES])
    assert "Wall dmax" not in " ".join(text)
    assert text[0].startswith("max_needles") and "not part of the linear bound" in text[0]
    assert text[1].startswith("no limit proven binding")


def test_explanations_when_nothing_is_proven():
    assert explain_binding(BindingProof(None, {}), ["A dmax"])[0].startswith("not proven")
    several = explain_binding(BindingProof(0.2, {"A dmax": 0.2, "B dmax": 0.2}), ["A dmax"])
    assert several[0].startswith("no single limit proven binding")
    assert BindingProof(0.2, {"A dmax": 0.1, "B dmax": 0.15}).binding() == ["A dmax", "B dmax"]
