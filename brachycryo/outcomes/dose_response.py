"""Logistic dose-response with patient-clustered uncertainty: D50, gamma50 and the curve.

Model (statsmodels GLM, binomial family, logit link)::

    logit P(y = 1 | D) = b0 + b1 * D

so that ``D50 = -b0 / b1`` and the normalised slope at D50 is
``gamma50 = D50 * dP/dD (D50) = b1 * D50 / 4 = -b0 / 4`` (Bentzen & Tucker 1997, Int J
Radiat Biol 71:531, eq. for the logistic model).  Lesions of one patient are correlated,
so the covariance of (b0, b1) is the cluster-robust sandwich with patients as clusters
(statsmodels ``cov_type="cluster"``; Liang & Zeger 1986, Biometrika 73:13); the naive
(model-based) standard errors are reported beside it.  CIs of D50 and gamma50: the delta
method on the robust covariance, and a percentile bootstrap that resamples whole
patients (seeded, deterministic).  Wald intervals use the t quantile with G - 1 degrees of
freedom (G patients), the small-number-of-clusters correction recommended by Cameron & Miller
(2015, J Human Resources 50:317, section VI.C).  The curve's band is the pointwise Wald
interval of the linear predictor, mapped through the logistic function.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.stats import t as student_t

from brachycryo.core.errors import BrachyCryoError
from brachycryo.core.progress import ProgressCallback, report

if TYPE_CHECKING:
    from numpy.typing import NDArray

Z95 = 1.959963984540054  # standard normal 97.5 % quantile


class ModelFitError(BrachyCryoError):
    """A model cannot be fitted (too few events, no dose spread, perfect separation)."""


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95 % CI (and standard error where one exists)."""

    value: float
    ci_low: float
    ci_high: float
    se: float | None = None
    method: str = ""

    def covers(self, x: float) -> bool:
        return self.ci_low <= x <= self.ci_high


@dataclass(frozen=True)
class LogisticDoseResponse:
    """One fitted logistic dose-response (see the module docstring)."""

    endpoint: str
    formula: str
    n: int
    events: int
    patients: int
    coef: tuple[float, float]  # (b0, b1)
    cov_robust: tuple[tuple[float, float], tuple[float, float]]
    se_naive: tuple[float, float]
    se_robust: tuple[float, float]
    d50: Estimate
    gamma50: Estimate
    d50_bootstrap: Estimate | None
    gamma50_bootstrap: Estimate | None
    bootstrap_resamples: int
    bootstrap_failed: int
    seed: int
    critical_value: float  # t(0.975, G - 1)

    def estimates(self) -> list[tuple[str, Estimate]]:
        """(name, estimate) of D50 and gamma50, delta-method then bootstrap CIs."""
        pairs = [("D50", self.d50), ("gamma50", self.gamma50)]
        for name, e in (("D50", self.d50_bootstrap), ("gamma50", self.gamma50_bootstrap)):
            if e is not None:
                pairs.append((name, e))
        return pairs

    def probability(self, dose: NDArray[np.float64]) -> NDArray[np.float64]:
        b0, b1 = self.coef
        return 1.0 / (1.0 + np.exp(-(b0 + b1 * np.asarray(dose, dtype=float))))

    def band(self, dose: NDArray[np.float64]) -> tuple[NDArray, NDArray]:
        """Pointwise 95 % band of P(D): Wald on the linear predictor (robust covariance)."""
        d = np.asarray(dose, dtype=float)
        b0, b1 = self.coef
        v = np.asarray(self.cov_robust)
        eta = b0 + b1 * d
        se = np.sqrt(v[0, 0] + 2 * d * v[0, 1] + d * d * v[1, 1])
        lo, hi = eta - self.critical_value * se, eta + self.critical_value * se
        return 1.0 / (1.0 + np.exp(-lo)), 1.0 / (1.0 + np.exp(-hi))


def _design(dose: NDArray[np.float64]) -> NDArray[np.float64]:
    return np.column_stack([np.ones_like(dose), dose])


def _fit_glm(y: NDArray, x: NDArray, groups: NDArray | None):
    import statsmodels.api as sm
    from statsmodels.tools.sm_exceptions import PerfectSeparationError

    model = sm.GLM(y, x, family=sm.families.Binomial())
    try:
        if groups is None:
            return model.fit()
        return model.fit(cov_type="cluster", cov_kwds={"groups": groups})
    except (PerfectSeparationError, np.linalg.LinAlgError, ValueError) as exc:
        raise ModelFitError(f"logistic fit failed: {exc}") from None


def _d50_gamma(b0: float, b1: float) -> tuple[float, float]:
    return -b0 / b1, -b0 / 4.0


def _delta(b0: float, b1: float, v: NDArray, crit: float) -> tuple[Estimate, Estimate]:
    """Delta-method CIs of D50 = -b0/b1 and gamma50 = -b0/4 (robust covariance ``v``)."""
    d50, g50 = _d50_gamma(b0, b1)
    grad = np.array([-1.0 / b1, b0 / b1**2])
    se_d = float(math.sqrt(grad @ v @ grad))
    se_g = float(math.sqrt(v[0, 0]) / 4.0)
    m = "delta method, cluster-robust covariance, t(G-1)"
    return (
        Estimate(d50, d50 - crit * se_d, d50 + crit * se_d, se_d, m),
        Estimate(g50, g50 - crit * se_g, g50 + crit * se_g, se_g, m),
    )


def patient_blocks(groups: NDArray) -> list[NDArray[np.intp]]:
    order = np.argsort(groups, kind="stable")
    _, starts = np.unique(groups[order], return_index=True)
    return np.split(order, starts[1:])


def _refit(y: NDArray, dose: NDArray, start: NDArray) -> tuple[float, float] | None:
    """(D50, gamma50) of one resample: statsmodels Logit by Newton-Raphson from the full-sample
    estimate (the same maximum likelihood as the GLM, ~4x faster warm-started); None when
    the fit fails or does not converge."""
    import statsmodels.api as sm

    if y.min() == y.max() or dose.min() == dose.max():
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # non-convergence is read from mle_retvals
            res = sm.Logit(y, _design(dose)).fit(
                method="newton", start_params=start, disp=0, maxiter=50
            )
    except Exception:  # separation, singular design: counted by the caller, not hidden
        return None
    b0, b1 = (float(c) for c in res.params)
    if not res.mle_retvals.get("converged", False) or not math.isfinite(b0 + b1) or b1 == 0:
        return None
    return _d50_gamma(b0, b1)


def _bootstrap(
    y: NDArray,
    dose: NDArray,
    groups: NDArray,
    *,
    start: NDArray,
    resamples: int,
    seed: int,
    progress: ProgressCallback | None,
) -> tuple[NDArray, int]:
    """(D50, gamma50) of each patient-resampled refit (rows of failed fits are NaN)."""
    blocks = patient_blocks(groups)
    rng = np.random.default_rng(seed)
    out = np.full((resamples, 2), np.nan)
    failed = 0
    step = max(1, resamples // 50)
    for r in range(resamples):
        pick = rng.integers(0, len(blocks), size=len(blocks))
        idx = np.concatenate([blocks[i] for i in pick])
        fit = _refit(y[idx], dose[idx], start)
        if fit is None:
            failed += 1
        else:
            out[r] = fit
        if r % step == 0:
            report(progress, (r + 1) / resamples, f"bootstrap {r + 1}/{resamples}")
    report(progress, 1.0, f"bootstrap {resamples}/{resamples}")
    return out, failed


def _percentile(values: NDArray, point: float) -> Estimate:
    ok = values[np.isfinite(values)]
    lo, hi = np.percentile(ok, [2.5, 97.5])
    return Estimate(
        point, float(lo), float(hi), None, f"percentile bootstrap by patient, {len(ok)}"
    )


def fit_logistic(
    y: NDArray,
    dose: NDArray,
    groups: NDArray,
    *,
    endpoint: str,
    dose_name: str,
    bootstrap: int = 1000,
    seed: int = 20240601,
    progress: ProgressCallback | None = None,
) -> LogisticDoseResponse:
    """Fit ``logit P(y) = b0 + b1 * dose`` with patient-clustered SEs (see module docstring).

    ``y``: 0/1 per lesion; ``dose``: the DVH metric per lesion; ``groups``: patient id per
    lesion.  ``bootstrap=0`` skips the bootstrap."""
    y = np.asarray(y, dtype=float)
    dose = np.asarray(dose, dtype=float)
    groups = np.asarray(groups)
    events = int(y.sum())
    if events == 0 or events == len(y):
        raise ModelFitError(f"{endpoint}: {events} events in {len(y)} lesions; nothing to fit")
    if np.ptp(dose) == 0:
        raise ModelFitError(f"{endpoint}: every lesion has the same {dose_name}")
    x = _design(dose)
    robust = _fit_glm(y, x, groups)
    naive = _fit_glm(y, x, None)
    b0, b1 = (float(c) for c in robust.params)
    v = np.asarray(robust.cov_params(), dtype=float)
    n_patients = len(np.unique(groups))
    if n_patients < 2:
        raise ModelFitError(f"{endpoint}: one patient; clustered errors need several")
    crit = float(student_t.ppf(0.975, n_patients - 1))
    d50, g50 = _delta(b0, b1, v, crit)
    d50_b = g50_b = None
    failed = 0
    if bootstrap > 0:
        boot, failed = _bootstrap(
            y, dose, groups, start=np.array([b0, b1]), resamples=bootstrap, seed=seed,
            progress=progress,
        )  # fmt: skip
        if failed < bootstrap:
            d50_b = _percentile(boot[:, 0], d50.value)
            g50_b = _percentile(boot[:, 1], g50.value)
    return LogisticDoseResponse(
        endpoint=endpoint,
        formula=f"logit P({endpoint}) = b0 + b1 * {dose_name}",
        n=len(y),
        events=events,
        patients=n_patients,
        coef=(b0, b1),
        cov_robust=((v[0, 0], v[0, 1]), (v[1, 0], v[1, 1])),
        se_naive=(float(naive.bse[0]), float(naive.bse[1])),
        se_robust=(float(robust.bse[0]), float(robust.bse[1])),
        d50=d50,
        gamma50=g50,
        d50_bootstrap=d50_b,
        gamma50_bootstrap=g50_b,
        bootstrap_resamples=bootstrap,
        bootstrap_failed=failed,
        seed=seed,
        critical_value=crit,
    )


@dataclass(frozen=True)
class BinnedRate:
    """Observed event rate in one dose bin (quantile bins), with its Wilson 95 % CI."""

    dose_low: float
    dose_high: float
    dose_mean: float
    n: int
    events: int
    rate: float
    ci_low: float
    ci_high: float


def _wilson(k: int, n: int) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927, JASA 22:209)."""
    p = k / n
    den = 1 + Z95**2 / n
    mid = (p + Z95**2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / den
    # the interval contains p (exactly 1 at k = n); clamp the rounding that can put the
    # upper bound a few ulp below 1 (a negative error bar for matplotlib)
    return max(0.0, min(p, mid - half)), min(1.0, max(p, mid + half))


def binned_rates(y: NDArray, dose: NDArray, bins: int = 5) -> list[BinnedRate]:
    """Observed rates in ``bins`` dose-quantile bins (for the plot; not used by the fit)."""
    y = np.asarray(y, dtype=float)
    dose = np.asarray(dose, dtype=float)
    order = np.argsort(dose, kind="stable")
    out = []
    for idx in np.array_split(order, min(bins, len(dose))):
        if len(idx) == 0:
            continue
        k, n = int(y[idx].sum()), len(idx)
        lo, hi = _wilson(k, n)
        d = dose[idx]
        out.append(BinnedRate(float(d.min()), float(d.max()), float(d.mean()), n, k, k / n, lo, hi))
    return out
