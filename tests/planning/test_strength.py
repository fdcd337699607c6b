"""The planner chooses the seed strength from a list or the clinical range ("auto")."""

import numpy as np
import pytest

from brachycryo.core.errors import ConfigError
from brachycryo.planning.pipeline import make_plan
from brachycryo.planning.spec import AUTO_SK_U, parse_plan_spec
from brachycryo.planning.strength import StrengthTrial, best_trial
from tests.planning.test_plan_end_to_end import SPEC


def _with_strength(value):
    rx = {k: v for k, v in SPEC["prescription"].items() if k != "activity_mci"}
    return {**SPEC, "prescription": {**rx, "sk_u": value}}


def test_auto_is_0_3_to_0_8_mci():
    spec = parse_plan_spec(_with_strength("auto"))
    assert spec.sk_u_choices == AUTO_SK_U
    assert AUTO_SK_U[0] == pytest.approx(0.3 * 1.270) and AUTO_SK_U[-1] == pytest.approx(1.016)


@pytest.mark.parametrize("bad", [[], [0.5, -1.0], [0.5, "strong"], "strongest"])
def test_bad_strength_lists_are_named(bad):
    with pytest.raises(ConfigError, match="sk_u"):
        parse_plan_spec(_with_strength(bad))


def test_strength_and_activity_together_are_refused():
    doc = _with_strength([0.5, 0.8])
    doc["prescription"]["activity_mci"] = 0.5
    with pytest.raises(ConfigError, match="exactly one"):
        parse_plan_spec(doc)


def _trial(sk_u, feasible, n, v100, v150):
    return StrengthTrial(sk_u, feasible, n, v100, v150)


def test_the_rule_prefers_fewer_hot_spots_among_plans_that_meet_the_goals():
    trials = [
        _trial(0.5, False, 40, 93.0, 40.0),  # coolest, but short of the goals
        _trial(0.8, True, 30, 96.0, 55.0),
        _trial(1.0, True, 24, 96.5, 62.0),
    ]
    assert best_trial(trials).sk_u == 0.8
    tie = [_trial(0.8, True, 30, 96.0, 55.0), _trial(0.7, True, 28, 95.5, 55.0)]
    assert best_trial(tie).sk_u == 0.7  # same V150: fewer seeds
    none = [_trial(0.5, False, 40, 90.0, 30.0), _trial(1.0, False, 30, 93.0, 60.0)]
    assert best_trial(none).sk_u == 1.0  # nothing meets the goals: the best coverage


def test_plan_uses_the_chosen_strength_and_logs_every_trial(tmp_path):
    choices = [0.508, 0.762, 1.016]
    result = make_plan(parse_plan_spec(_with_strength(choices)), tmp_path)
    assert result.spec.sk_u in choices
    np.testing.assert_allclose(result.seeds.sk_u, result.spec.sk_u)
    log = result.selection.log
    assert sum(line.startswith("strength ") for line in log) == len(choices) + 1
    assert any(line.startswith(f"strength chosen: {result.spec.sk_u:g} U") for line in log)
