"""Time-to-event analyses of local progression (lifelines).

* :func:`fit_cox`: Cox proportional hazards of local progression on the dose metric (per
  10 Gy) and optional covariates, with the cluster-robust (sandwich) variance of Lin & Wei
  (1989, JASA 84:1074) over patients (lifelines ``CoxPHFitter.fit(cluster_col=...)``),
  and the proportional-hazards check of Grambsch & Therneau (1994, Biometrika 81:515) on
  scaled Schoenfeld residuals (lifelines ``proportional_hazard_test``, rank time
  transform).  That test uses the model-based variance, not the clustered one: it is a
  check, reported as such.
* :func:`km_by_group`: Kaplan-Meier local progression-free survival per dose group
  (tertiles of the metric, or below/at-or-above a user cut-off), with the numbers at risk.
* :func:`cumulative_incidence`: Aalen-Johansen cumulative incidence of local progression
  with death without local progression as the competing event (lifelines
  ``AalenJohansenFitter``; ties jittered with a fixed seed, so results are reproducible).

Not done: Fine-Gray subdistribution-hazard regression; neither lifelines nor statsmodels
provides it, and it is not hand-written here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from brachycryo.outcomes.dose_response import Estimate, ModelFitError

if TYPE_CHECKING:
    import pandas as pd

#: The dose scale of the reported hazard ratio.
HR_PER_GY = 10.0


@dataclass(frozen=True)
class CoxResult:
    formula: str
    n: int
    events: int
    patients: int
    hr_per_10gy: Estimate  # robust (clustered) 95 % CI
    coef_per_gy: float
    se_robust_per_gy: float
    covariates: dict[str, Estimate]  # HR per unit of each covariate
    ph_test_p: dict[str, float]  # Grambsch-Therneau p-value per term
    concordance: float


def fit_cox(
    frame: pd.DataFrame,
    *,
    time: str,
    event: str,
    dose: str,
    cluster: str,
    covariates: tuple[str, ...] = (),
    ph_check: bool = True,
    dose_label: str | None = None,
) -> CoxResult:
    """Cox PH with patient-clustered sandwich variance; HR per 10 units of ``dose``.

    ``dose_label`` names the dose in the formula (default: the column name);
    ``ph_check=False`` skips the proportional-hazards test (its p-values are then NaN)."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError
    from lifelines.statistics import proportional_hazard_test

    df = frame[[time, event, dose, cluster, *covariates]].copy()
    df[dose] = df[dose] / HR_PER_GY
    events = int(df[event].sum())
    if events == 0:
        raise ModelFitError(f"Cox model: no {event} events")
    cph = CoxPHFitter()
    try:
        cph.fit(df, duration_col=time, event_col=event, cluster_col=cluster)
    except ConvergenceError as exc:
        raise ModelFitError(f"Cox model did not converge: {exc}") from None
    s = cph.summary
    terms = [dose, *covariates]

    def est(term: str) -> Estimate:
        return Estimate(
            float(s.loc[term, "exp(coef)"]),
            float(s.loc[term, "exp(coef) lower 95%"]),
            float(s.loc[term, "exp(coef) upper 95%"]),
            float(s.loc[term, "se(coef)"]),
            "Wald, cluster-robust (sandwich) variance by patient",
        )

    p_by_term: dict[str, float] = {}
    if ph_check:
        plain = df.drop(columns=[cluster])
        naive = CoxPHFitter().fit(plain, duration_col=time, event_col=event)
        ph = proportional_hazard_test(naive, plain, time_transform="rank")
        p_by_term = {str(k): float(v) for k, v in ph.summary["p"].items()}
    ph_p = {t: p_by_term.get(t, math.nan) for t in terms}
    return CoxResult(
        formula="h(t) = h0(t) exp("
        + " + ".join([f"b * {dose_label or dose}/10", *(f"c * {c}" for c in covariates)])
        + ")",
        n=len(df),
        events=events,
        patients=int(df[cluster].nunique()),
        hr_per_10gy=est(dose),
        coef_per_gy=float(s.loc[dose, "coef"]) / HR_PER_GY,
        se_robust_per_gy=float(s.loc[dose, "se(coef)"]) / HR_PER_GY,
        covariates={c: est(c) for c in covariates},
        ph_test_p=ph_p,
        concordance=float(cph.concordance_index_),
    )


@dataclass(frozen=True)
class Curve:
    """A step curve (KM survival or cumulative incidence) with its 95 % band."""

    label: str
    n: int
    events: int
    time_months: tuple[float, ...]
    value: tuple[float, ...]
    ci_low: tuple[float, ...]
    ci_high: tuple[float, ...]
    at_risk_times: tuple[float, ...]
    at_risk: tuple[int, ...]


def dose_groups(dose: np.ndarray, cutoff: float | None) -> tuple[np.ndarray, list[str]]:
    """Group index per lesion: tertiles of ``dose``, or below / at-or-above ``cutoff``."""
    if cutoff is not None:
        g = (dose >= cutoff).astype(int)
        return g, [f"< {cutoff:g}", f">= {cutoff:g}"]
    q1, q2 = np.quantile(dose, [1 / 3, 2 / 3])
    g = np.digitize(dose, [q1, q2], right=True)
    return g, [f"<= {q1:.1f}", f"{q1:.1f}-{q2:.1f}", f"> {q2:.1f}"]


def _at_risk(time: np.ndarray, grid: np.ndarray) -> tuple[int, ...]:
    return tuple(int((time >= t).sum()) for t in grid)


def _risk_grid(time: np.ndarray, points: int = 6) -> np.ndarray:
    return np.linspace(0.0, float(time.max()), points)


def km_by_group(
    time: np.ndarray, event: np.ndarray, dose: np.ndarray, *, cutoff: float | None = None
) -> list[Curve]:
    """Kaplan-Meier local progression-free survival per dose group, numbers at risk."""
    from lifelines import KaplanMeierFitter

    groups, labels = dose_groups(dose, cutoff)
    grid = _risk_grid(time)
    curves = []
    for k, label in enumerate(labels):
        sel = groups == k
        if not sel.any():
            continue
        km = KaplanMeierFitter().fit(time[sel], event[sel], label=label)
        ci = km.confidence_interval_survival_function_
        curves.append(
            Curve(
                label=label,
                n=int(sel.sum()),
                events=int(event[sel].sum()),
                time_months=tuple(float(t) for t in km.survival_function_.index),
                value=tuple(float(v) for v in km.survival_function_.iloc[:, 0]),
                ci_low=tuple(float(v) for v in ci.iloc[:, 0]),
                ci_high=tuple(float(v) for v in ci.iloc[:, 1]),
                at_risk_times=tuple(float(t) for t in grid),
                at_risk=_at_risk(time[sel], grid),
            )
        )
    return curves


def competing_risk_codes(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(time, code) per lesion: 1 local progression, 2 death first, 0 censored.

    A death counts as the competing event when it was observed no later than the end of
    local follow-up and no local progression came first."""
    lt = frame["local_time_months"].to_numpy(float)
    le = frame["local_event"].to_numpy(int)
    dt = frame["death_time_months"].to_numpy(float)
    de = frame["death"].to_numpy(int)
    died_first = (le == 0) & (de == 1) & (dt <= lt)
    code = np.where(le == 1, 1, np.where(died_first, 2, 0))
    time = np.where(died_first, dt, lt)
    return time, code


def cumulative_incidence(
    time: np.ndarray, code: np.ndarray, *, label: str = "local progression", seed: int = 0
) -> Curve:
    """Aalen-Johansen cumulative incidence of code 1 with code 2 competing."""
    import warnings

    from lifelines import AalenJohansenFitter

    aj = AalenJohansenFitter(calculate_variance=True, seed=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lifelines warns that tied times were jittered
        aj.fit(time, code, event_of_interest=1, label=label)
    cif = aj.cumulative_density_
    ci = aj.confidence_interval_
    grid = _risk_grid(time)
    return Curve(
        label=label,
        n=len(time),
        events=int((code == 1).sum()),
        time_months=tuple(float(t) for t in cif.index),
        value=tuple(float(v) for v in cif.iloc[:, 0]),
        ci_low=tuple(float(v) for v in ci.iloc[:, 0]),
        ci_high=tuple(float(v) for v in ci.iloc[:, 1]),
        at_risk_times=tuple(float(t) for t in grid),
        at_risk=_at_risk(time, grid),
    )
