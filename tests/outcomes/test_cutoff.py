"""ROC-optimal cut-off: Youden index and AUC against hand-computed values; bootstrap seeded."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from brachycryo.outcomes.cutoff import auc, roc_cutoff, youden
from brachycryo.outcomes.dose_response import ModelFitError

Y = np.array([0, 0, 0, 1, 0, 1, 1.0])
DOSE = np.arange(1.0, 8.0)


def test_youden_by_hand():
    """Cut-off 4: sensitivity 3/3, specificity 3/4 (J = 0.75); 6 gives 2/3 + 1 - 1 = 0.667."""
    c, j, sens, spec = youden(Y, DOSE)
    assert c == 4.0
    assert j == pytest.approx(0.75)
    assert (sens, spec) == (pytest.approx(1.0), pytest.approx(0.75))


def test_youden_ties_take_the_lowest_dose():
    # cut-offs 3 and 5 both give J = 2/3
    c, j, _, _ = youden(np.array([0, 0, 1, 0, 1, 1.0]), np.arange(1.0, 7.0))
    assert c == 3.0 and j == pytest.approx(2 / 3)


def test_auc_by_hand_and_mann_whitney():
    """Event doses 4, 6, 7 against 1, 2, 3, 5: 11 of 12 pairs ordered -> AUC 11/12."""
    assert auc(Y, DOSE) == pytest.approx(11 / 12)
    rng = np.random.default_rng(0)
    d = rng.integers(0, 20, 200).astype(float)  # with ties
    y = (rng.uniform(size=200) < d / 20).astype(float)
    u = mannwhitneyu(d[y == 1], d[y == 0]).statistic
    assert auc(y, d) == pytest.approx(u / ((y == 1).sum() * (y == 0).sum()))


def test_bootstrap_seeded_and_brackets_the_cutoff():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(100), 3)
    d = rng.uniform(80, 200, 300)
    y = (rng.uniform(size=300) < 1 / (1 + np.exp(-(d - 140) / 10))).astype(float)
    a = roc_cutoff(y, d, g, bootstrap=200, seed=5)
    b = roc_cutoff(y, d, g, bootstrap=200, seed=5)
    assert a == b
    assert a.cutoff.ci_low <= a.cutoff.value <= a.cutoff.ci_high
    assert a.cutoff.covers(140.0)  # the planted curve is symmetric about 140 Gy
    assert a.bootstrap_failed == 0


def test_one_class_is_an_error():
    with pytest.raises(ModelFitError):
        youden(np.ones(5), np.arange(5.0))
