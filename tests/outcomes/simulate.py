"""Simulated cohorts with planted dose-response and hazard, lesions clustered by patient.

Clustering that keeps the marginal models exact: each lesion's uniform is its patient's
uniform with probability ``rho`` and its own otherwise, so every lesion's uniform is still
Uniform(0, 1) - P(y = 1 | D) is exactly the planted logistic and the time to progression
exactly the planted proportional-hazards exponential - while lesions of one patient are
positively correlated (rho > 0).  Doses are correlated within patients too (a patient
mean plus a lesion spread), which is what makes naive standard errors too small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Truth:
    d50_gy: float = 140.0
    gamma50: float = 2.0
    hr_per_10gy: float = 0.8
    base_hazard_per_month: float = 0.02  # at 0 Gy... scaled at 140 Gy below
    death_hazard_per_month: float = 0.01

    @property
    def b0(self) -> float:
        return -4.0 * self.gamma50

    @property
    def b1(self) -> float:
        return 4.0 * self.gamma50 / self.d50_gy


def _clustered_uniform(rng, patient_idx: np.ndarray, n_patients: int, rho: float) -> np.ndarray:
    up = rng.uniform(size=n_patients)[patient_idx]
    own = rng.uniform(size=len(patient_idx))
    return np.where(rng.uniform(size=len(patient_idx)) < rho, up, own)


def outcomes_for_doses(
    rng: np.random.Generator,
    dose: np.ndarray,
    pidx: np.ndarray,
    *,
    truth: Truth = Truth(),
    rho: float = 0.5,
    followup_months: float = 60.0,
) -> pd.DataFrame:
    """Outcome columns of lesions with doses ``dose`` (Gy) and patient indices ``pidx``
    (0 .. n_patients - 1) drawn from the planted ``truth``: grade >= 3 toxicity by the
    logistic, local progression by the proportional-hazards exponential, censoring
    U(6, followup) months, death exponential per patient; lesions of a patient share
    uniforms with probability ``rho``."""
    n_lesions, n_pat = len(dose), int(pidx.max()) + 1
    p_tox = 1 / (1 + np.exp(-(truth.b0 + truth.b1 * dose)))
    tox = _clustered_uniform(rng, pidx, n_pat, rho) < p_tox
    grade = np.where(tox, rng.integers(3, 5, n_lesions), rng.integers(0, 3, n_lesions))
    lam = truth.base_hazard_per_month * truth.hr_per_10gy ** ((dose - 140.0) / 10.0)
    t_prog = -np.log(_clustered_uniform(rng, pidx, n_pat, rho)) / lam
    cens = rng.uniform(6.0, followup_months, n_lesions)
    t_death = rng.exponential(1 / truth.death_hazard_per_month, n_pat)[pidx]
    local_time = np.minimum(t_prog, cens)
    return pd.DataFrame(
        {
            "local_event": (t_prog <= cens).astype(int),
            "local_time_months": np.round(local_time, 6),
            "death": (t_death <= cens).astype(int),
            "death_time_months": np.round(np.minimum(t_death, cens), 6),
            "toxicity_grade": grade,
        }
    )


def simulate(
    n_lesions: int = 200,
    *,
    seed: int = 0,
    truth: Truth = Truth(),
    rho: float = 0.5,
    max_lesions: int = 5,
    followup_months: float = 60.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(dvh long table, outcomes table) of one simulated cohort."""
    rng = np.random.default_rng(seed)
    sizes: list[int] = []
    while sum(sizes) < n_lesions:
        sizes.append(int(rng.integers(1, max_lesions + 1)))
    sizes[-1] -= sum(sizes) - n_lesions
    n_pat = len(sizes)
    pidx = np.repeat(np.arange(n_pat), sizes)
    dose = rng.uniform(80, 200, n_pat)[pidx] + rng.normal(0, 20, n_lesions)
    patients = np.array([f"P{i:04d}" for i in pidx])
    structures = np.array([f"GTV{k + 1}" for s in sizes for k in range(s)])
    outcomes = outcomes_for_doses(
        rng, dose, pidx, truth=truth, rho=rho, followup_months=followup_months
    )
    outcomes.insert(0, "structure", structures)
    outcomes.insert(0, "patient", patients)
    rows = []
    for p, s, d in zip(patients, structures, dose):
        plan = f"1.2.{p[1:]}"
        for metric, value, unit in (("d90_gy", d, "Gy"), ("v100_pct", 90.0, "%")):
            rows.append((p, "1.1", plan, plan + ".9", s, metric, float(value), unit))
    for i in range(n_pat):
        p = f"P{i:04d}"
        rows.append((p, "1.1", f"1.2.{i:04d}", f"1.2.{i:04d}.9", "Rectum", "d90_gy", 20.0, "Gy"))
    cols = ["patient", "study", "plan", "dose", "structure", "metric", "value", "unit"]
    return pd.DataFrame.from_records(rows, columns=cols), outcomes
