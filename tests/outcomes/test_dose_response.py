"""Logistic dose-response: planted D50 / gamma50 recovered with calibrated CIs, clustered SEs
wider than naive ones when lesions are correlated, identical to statsmodels called directly."""

from __future__ import annotations

import numpy as np
import pytest
import statsmodels.api as sm

from brachycryo.outcomes.data import join_tables
from brachycryo.outcomes.dose_response import (
    ModelFitError,
    _refit,
    binned_rates,
    fit_logistic,
)
from tests.outcomes.simulate import Truth, simulate

TRUTH = Truth()


def _frame(n: int, seed: int, rho: float = 0.5):
    dvh, oc = simulate(n, seed=seed, rho=rho)
    oc["outcome_line"] = np.arange(len(oc)) + 2
    return join_tables(dvh, oc).frame


def _fit(f, bootstrap: int = 0, seed: int = 1):
    y = (f["toxicity_grade"].to_numpy() >= 3).astype(float)
    return fit_logistic(
        y, f["dose_metric_value"].to_numpy(), f["patient"].to_numpy(),
        endpoint="tox", dose_name="d90_gy", bootstrap=bootstrap, seed=seed,
    )  # fmt: skip


def test_planted_d50_gamma50_covered_90_to_98_percent():
    """200 replicates of n = 200 clustered lesions (rho = 0.5): the 95 % delta-method CIs
    (cluster-robust covariance) cover the planted D50 = 140 Gy and gamma50 = 2 in 90-98 %."""
    d50 = g50 = 0
    reps = 200
    for seed in range(reps):
        r = _fit(_frame(200, seed))
        d50 += r.d50.covers(TRUTH.d50_gy)
        g50 += r.gamma50.covers(TRUTH.gamma50)
    assert 0.90 * reps <= d50 <= 0.98 * reps
    assert 0.90 * reps <= g50 <= 0.98 * reps


def test_clustered_se_larger_than_naive_when_lesions_correlated():
    """Strong within-patient correlation (rho = 0.9, doses shared by the patient): the naive
    SE of the slope is too small - the robust one is larger on average and the naive CI of
    D50 under-covers; without correlation (rho = 0) the two agree."""
    ratio = {}
    naive_cover = 0
    for rho in (0.0, 0.9):
        rs = []
        for seed in range(40):
            r = _fit(_frame(300, seed, rho=rho))
            rs.append(r.se_robust[1] / r.se_naive[1])
            if rho == 0.9:
                b0, b1 = r.coef
                # naive Wald CI of the slope: does it cover the planted slope?
                naive_cover += abs(b1 - TRUTH.b1) <= 1.96 * r.se_naive[1]
        ratio[rho] = float(np.mean(rs))
    assert 0.85 < ratio[0.0] < 1.15
    assert ratio[0.9] > 1.3
    assert naive_cover < 0.9 * 40


def test_identical_to_statsmodels_on_the_joined_frame():
    f = _frame(200, 7)
    r = _fit(f)
    y = (f["toxicity_grade"] >= 3).astype(float)
    x = sm.add_constant(f["dose_metric_value"].to_numpy())
    codes = f["patient"].astype("category").cat.codes.to_numpy()
    ref = sm.GLM(y, x, family=sm.families.Binomial()).fit(
        cov_type="cluster", cov_kwds={"groups": codes}
    )
    b = np.asarray(ref.params)
    np.testing.assert_allclose(r.coef, ref.params, rtol=1e-6)
    np.testing.assert_allclose(r.se_robust, ref.bse, rtol=1e-6)
    assert r.d50.value == pytest.approx(-b[0] / b[1], rel=1e-6)
    assert r.gamma50.value == pytest.approx(-b[0] / 4, rel=1e-6)
    # the curve passes through 1/2 at D50 with slope gamma50 / D50 there
    d = r.d50.value
    assert r.probability(np.array([d]))[0] == pytest.approx(0.5)
    h = 1e-4
    slope = (r.probability(np.array([d + h])) - r.probability(np.array([d - h])))[0] / (2 * h)
    assert slope * d == pytest.approx(r.gamma50.value, rel=1e-5)
    lo, hi = r.band(np.array([d]))
    assert lo[0] < 0.5 < hi[0]


def test_bootstrap_by_patient_seeded_and_covering():
    f = _frame(300, 3)
    a = _fit(f, bootstrap=150, seed=11)
    b = _fit(f, bootstrap=150, seed=11)
    c = _fit(f, bootstrap=150, seed=12)
    assert a.d50_bootstrap == b.d50_bootstrap  # deterministic given the seed
    assert a.d50_bootstrap != c.d50_bootstrap
    assert a.d50_bootstrap is not None and a.gamma50_bootstrap is not None
    assert a.d50_bootstrap.covers(TRUTH.d50_gy)
    assert a.gamma50_bootstrap.covers(TRUTH.gamma50)
    # the bootstrap's refit (Logit, Newton from a start) is the same MLE as the GLM fit
    y = (f["toxicity_grade"].to_numpy() >= 3).astype(float)
    d = f["dose_metric_value"].to_numpy()
    again = _refit(y, d, np.array([0.0, 0.0]))
    assert again == pytest.approx((a.d50.value, a.gamma50.value), rel=1e-6)
    # same order of width as the delta-method interval
    w_boot = a.d50_bootstrap.ci_high - a.d50_bootstrap.ci_low
    w_delta = a.d50.ci_high - a.d50.ci_low
    assert 0.5 < w_boot / w_delta < 2.0


def test_no_events_is_an_error():
    with pytest.raises(ModelFitError, match="0 events"):
        fit_logistic(np.zeros(10), np.arange(10.0), np.arange(10), endpoint="e", dose_name="d")


def test_binned_rates_wilson():
    y = np.array([0, 0, 1, 1, 1, 0, 1, 1, 1, 1.0])
    r = binned_rates(y, np.arange(10.0), bins=2)
    assert [b.events for b in r] == [3, 4] and [b.n for b in r] == [5, 5]
    # Wilson score 95 % interval of 3/5, by hand: 0.2307-0.8824
    assert r[0].ci_low == pytest.approx(0.2307, abs=1e-4)
    assert r[0].ci_high == pytest.approx(0.8824, abs=1e-4)
