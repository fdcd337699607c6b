"""Cox with patient-clustered variance (planted HR covered; published Rossi coefficients),
Kaplan-Meier groups, Aalen-Johansen cumulative incidence against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.datasets import load_rossi

from brachycryo.outcomes.data import join_tables
from brachycryo.outcomes.survival import (
    competing_risk_codes,
    cumulative_incidence,
    dose_groups,
    fit_cox,
    km_by_group,
)
from tests.outcomes.simulate import Truth, simulate


def _frame(n: int, seed: int, rho: float = 0.5):
    dvh, oc = simulate(n, seed=seed, rho=rho)
    oc["outcome_line"] = np.arange(len(oc)) + 2
    return join_tables(dvh, oc).frame


def _cox(f, **kw):
    return fit_cox(
        f, time="local_time_months", event="local_event", dose="dose_metric_value",
        cluster="patient", **kw,
    )  # fmt: skip


def test_planted_hazard_ratio_covered_90_to_98_percent():
    """100 replicates of n = 200 clustered lesions with HR 0.8 per 10 Gy planted."""
    reps = 100
    hits = sum(_cox(_frame(200, s), ph_check=False).hr_per_10gy.covers(Truth().hr_per_10gy)
               for s in range(reps))  # fmt: skip
    assert 0.90 * reps <= hits <= 0.98 * reps


def test_identical_to_lifelines_on_the_joined_frame():
    f = _frame(200, 5)
    r = _cox(f)
    df = f[["local_time_months", "local_event", "dose_metric_value", "patient"]].copy()
    df["dose_metric_value"] /= 10
    ref = CoxPHFitter().fit(
        df, duration_col="local_time_months", event_col="local_event", cluster_col="patient"
    )
    s = ref.summary.loc["dose_metric_value"]
    assert r.hr_per_10gy.value == pytest.approx(s["exp(coef)"], rel=1e-6)
    assert r.hr_per_10gy.ci_low == pytest.approx(s["exp(coef) lower 95%"], rel=1e-6)
    assert r.hr_per_10gy.se == pytest.approx(s["se(coef)"], rel=1e-6)
    naive = CoxPHFitter().fit(df.drop(columns="patient"), "local_time_months", "local_event")
    # clustered lesions: the sandwich SE is not the model-based one
    assert r.hr_per_10gy.se != pytest.approx(naive.summary.loc["dose_metric_value", "se(coef)"])
    assert 0 <= r.ph_test_p["dose_metric_value"] <= 1


def test_rossi_published_coefficients():
    """Rossi et al. recidivism data (lifelines' bundled copy): Cox coefficients published by
    Fox & Weisberg, "Cox Proportional-Hazards Regression for Survival Data in R" (appendix to
    An R Companion to Applied Regression, 2nd ed., 2011), Breslow/Efron fit: fin -0.37942,
    age -0.05744, race 0.31390, wexp -0.14980, mar -0.43370, paro -0.08487, prio 0.09150."""
    df = load_rossi()
    df["id"] = np.arange(len(df))  # one cluster per person: point estimates unchanged
    published = {"fin": -0.37942, "age": -0.05744, "race": 0.31390, "wexp": -0.14980,
                 "mar": -0.43370, "paro": -0.08487}  # fmt: skip
    r = fit_cox(df, time="week", event="arrest", dose="prio", cluster="id",
                covariates=tuple(published), ph_check=False)  # fmt: skip
    assert np.log(r.hr_per_10gy.value) / 10 == pytest.approx(0.09150, abs=2e-5)
    for k, b in published.items():
        assert np.log(r.covariates[k].value) == pytest.approx(b, abs=2e-5)
    assert r.events == 114 and r.n == 432


def test_aalen_johansen_hand_computed():
    """Times 1 (local), 2 (death), 3 (local), 4 (censored): CIF of local progression
    = 1/4 at t = 1; S = 3/4, then death: S = 1/2; at t = 3: + 1/2 * 1/2 -> 1/2."""
    c = cumulative_incidence(np.array([1.0, 2, 3, 4]), np.array([1, 2, 1, 0]))
    cif = dict(zip(c.time_months, c.value))
    assert cif[1.0] == pytest.approx(0.25)
    assert cif[2.0] == pytest.approx(0.25)
    assert cif[3.0] == pytest.approx(0.5)
    assert c.events == 2


def test_aalen_johansen_without_competing_events_is_one_minus_km():
    rng = np.random.default_rng(3)
    t = rng.exponential(10, 60) + rng.uniform(0, 1e-3, 60)  # no ties
    e = (rng.uniform(size=60) < 0.7).astype(int)
    c = cumulative_incidence(t, e)
    km = KaplanMeierFitter().fit(t, e)
    np.testing.assert_allclose(
        np.array(c.value), 1 - km.survival_function_at_times(c.time_months).to_numpy(), atol=1e-12
    )


def test_competing_risk_codes():
    import pandas as pd

    f = pd.DataFrame({"local_event": [1, 0, 0, 0], "local_time_months": [5, 10, 10, 10.0],
                      "death": [1, 1, 1, 0], "death_time_months": [8, 7, 12, 10.0]})  # fmt: skip
    t, code = competing_risk_codes(f)
    assert code.tolist() == [1, 2, 0, 0]
    assert t.tolist() == [5, 7, 10, 10]


def test_km_groups_tertiles_and_cutoff():
    d = np.arange(9.0)
    g, labels = dose_groups(d, None)
    assert g.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2] and len(labels) == 3
    g, labels = dose_groups(d, 4.0)
    assert g.tolist() == [0] * 4 + [1] * 5
    curves = km_by_group(np.arange(1.0, 10), np.ones(9, int), d, cutoff=4.0)
    assert [c.n for c in curves] == [4, 5]
    assert curves[0].at_risk[0] == 4
    assert curves[0].value[-1] == pytest.approx(0.0)
