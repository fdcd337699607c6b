"""ROC-optimal dose cut-off (Youden index) with a patient-bootstrap CI.

The cut-off ``c`` classifies a lesion as "event expected" when its dose metric is ``>= c``
(events more frequent at higher dose: toxicity, or local control).  Youden's index
``J(c) = sensitivity(c) + specificity(c) - 1`` (Youden 1950, Cancer 3:32) is evaluated at
every distinct observed dose; the maximum is the cut-off (the lowest dose among ties).  The
area under the ROC curve is the Mann-Whitney probability P(dose of an event lesion > dose
of a non-event lesion) + 1/2 P(equal) (Hanley & McNeil 1982, Radiology 143:29).  The 95 %
CI of the cut-off is the percentile interval over resamples of whole patients (seeded).
An optimal cut-off is data-driven and optimistic; it is descriptive, not a threshold to
treat by.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from brachycryo.core.progress import ProgressCallback, report
from brachycryo.outcomes.dose_response import Estimate, ModelFitError

if TYPE_CHECKING:
    from numpy.typing import NDArray


@dataclass(frozen=True)
class RocCutoff:
    cutoff: Estimate  # the dose; CI by patient bootstrap (NaN CI when bootstrap = 0)
    youden_j: float
    sensitivity: float
    specificity: float
    auc: float
    n: int
    events: int
    bootstrap_resamples: int
    bootstrap_failed: int


def youden(y: NDArray, dose: NDArray) -> tuple[float, float, float, float]:
    """(cut-off, J, sensitivity, specificity) maximising Youden's J over observed doses."""
    y = np.asarray(y, dtype=float)
    dose = np.asarray(dose, dtype=float)
    pos = y.sum()
    neg = len(y) - pos
    if pos == 0 or neg == 0:
        raise ModelFitError("ROC cut-off needs lesions with and without the event")
    order = np.argsort(dose, kind="stable")
    d_sorted = dose[order]
    ev_cum = np.concatenate([[0.0], np.cumsum(y[order])])
    thresholds = np.unique(d_sorted)
    below = np.searchsorted(d_sorted, thresholds, side="left")  # lesions with dose < t
    ev_below = ev_cum[below]
    sens = (pos - ev_below) / pos
    spec = (below - ev_below) / neg
    j = sens + spec - 1
    k = int(np.argmax(j))  # first maximum: the lowest dose among ties
    return float(thresholds[k]), float(j[k]), float(sens[k]), float(spec[k])


def auc(y: NDArray, dose: NDArray) -> float:
    """Mann-Whitney AUC (ties count 1/2), from average ranks."""
    from scipy.stats import rankdata

    y = np.asarray(y, dtype=float)
    ranks = rankdata(dose)
    pos = y.sum()
    neg = len(y) - pos
    return float((ranks[y == 1].sum() - pos * (pos + 1) / 2) / (pos * neg))


def roc_cutoff(
    y: NDArray,
    dose: NDArray,
    groups: NDArray,
    *,
    bootstrap: int = 1000,
    seed: int = 20240601,
    progress: ProgressCallback | None = None,
) -> RocCutoff:
    """Youden-optimal cut-off with its patient-bootstrap percentile CI."""
    from brachycryo.outcomes.dose_response import patient_blocks

    y = np.asarray(y, dtype=float)
    dose = np.asarray(dose, dtype=float)
    c, j, se, sp = youden(y, dose)
    blocks = patient_blocks(np.asarray(groups))
    rng = np.random.default_rng(seed)
    cuts = np.full(bootstrap, np.nan)
    for r in range(bootstrap):
        idx = np.concatenate([blocks[i] for i in rng.integers(0, len(blocks), len(blocks))])
        yy = y[idx]
        if 0 < yy.sum() < len(yy):
            cuts[r] = youden(yy, dose[idx])[0]
        if r % max(1, bootstrap // 20) == 0:
            report(progress, (r + 1) / bootstrap, f"cut-off bootstrap {r + 1}/{bootstrap}")
    ok = cuts[np.isfinite(cuts)]
    lo, hi = np.percentile(ok, [2.5, 97.5]) if len(ok) else (np.nan, np.nan)
    method = f"Youden index; percentile bootstrap by patient, {len(ok)} resamples"
    return RocCutoff(
        cutoff=Estimate(c, float(lo), float(hi), None, method),
        youden_j=j,
        sensitivity=se,
        specificity=sp,
        auc=auc(y, dose),
        n=len(y),
        events=int(y.sum()),
        bootstrap_resamples=bootstrap,
        bootstrap_failed=int(bootstrap - len(ok)),
    )
