"""The ``brachycryo outcomes`` pipeline: join, fit every analysis the data allow, and write.

:func:`analyse` takes a :class:`~brachycryo.outcomes.data.JoinResult` and runs

* grade >= ``toxicity_grade_min`` toxicity vs the dose metric (logistic, when the outcomes CSV
  has ``toxicity_grade``);
* local control at ``control_time_months`` vs the dose metric (logistic, when asked and the
  CSV has ``local_event``/``local_time_months``; lesions censored before that time without
  progression are not evaluable and are listed);
* Cox PH of local progression (HR per 10 Gy, clustered by patient), Kaplan-Meier by dose
  group, and - with ``death``/``death_time_months`` - the Aalen-Johansen cumulative
  incidence of local progression with death as a competing risk.

An analysis the data do not allow (column absent, no events) is listed in
:attr:`OutcomesResult.skipped` with the reason, never silently left out.

**Zones.**  When the outcomes CSV has a ``zone`` column (one row per lesion and zone, each
zone its own ROI: e.g. the ice-ball core and the seed-treated margin), every analysis runs
separately for each zone (:attr:`OutcomesResult.zones`), each zone's lesions still
clustered by patient.  Zones are not pooled into one model: the zones of one lesion are
nested or adjacent sub-volumes of the same tumour treated by different modalities, so a
pooled fit would count each lesion once per zone and mix dose-response relations that
need not be the same (the lesion-allocation trial's "zonal treatment response" compares
them).  Comparing the zones' D50 is left to the reader (their CIs are not independent:
the same patients are in every zone).
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brachycryo.core.errors import ConfigError
from brachycryo.core.progress import ProgressCallback, scaled
from brachycryo.outcomes.cutoff import RocCutoff, roc_cutoff
from brachycryo.outcomes.data import TOXICITY, Exclusion, JoinResult
from brachycryo.outcomes.dose_response import (
    BinnedRate,
    LogisticDoseResponse,
    ModelFitError,
    binned_rates,
    fit_logistic,
)
from brachycryo.outcomes.survival import (
    CoxResult,
    Curve,
    competing_risk_codes,
    cumulative_incidence,
    fit_cox,
    km_by_group,
)


@dataclass(frozen=True)
class OutcomesOptions:
    metric: str = "d90_gy"
    toxicity_grade_min: int = 3
    control_time_months: float | None = None
    cutoff: float | None = None  # KM groups: below / at-or-above; None: tertiles
    covariates: tuple[str, ...] = ()
    bootstrap: int = 1000
    seed: int = 20240601

    def __post_init__(self) -> None:
        if not 1 <= self.toxicity_grade_min <= 5:
            raise ConfigError("must be 1-5", key="toxicity_grade_min")
        if self.control_time_months is not None and not self.control_time_months > 0:
            raise ConfigError("must be > 0", key="control_time_months")
        if self.bootstrap < 0:
            raise ConfigError("must be >= 0", key="bootstrap")


@dataclass(frozen=True)
class DoseResponseAnalysis:
    fit: LogisticDoseResponse
    observed: tuple[BinnedRate, ...]
    roc: RocCutoff
    not_evaluable_lines: tuple[int, ...] = ()


@dataclass
class OutcomesResult:
    metric: str
    unit: str
    n_lesions: int
    n_patients: int
    n_outcome_rows: int
    exclusions: tuple[Exclusion, ...]
    options: OutcomesOptions
    toxicity: DoseResponseAnalysis | None = None
    local_control: DoseResponseAnalysis | None = None
    cox: CoxResult | None = None
    km: tuple[Curve, ...] = ()
    cif: Curve | None = None
    skipped: dict[str, str] = field(default_factory=dict)
    zone: str | None = None  # set on the per-zone results
    zones: tuple[OutcomesResult, ...] = ()  # one per zone when the CSV has a 'zone' column

    def parts(self) -> list[OutcomesResult]:
        """The results that hold analyses: the zones' when there are zones, else this one."""
        return list(self.zones) if self.zones else [self]

    def to_json(self) -> dict[str, Any]:
        return _clean(asdict(self))


def _clean(x: Any) -> Any:
    """JSON-safe: NaN/inf -> None, tuples -> lists."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, np.generic):
        return _clean(x.item())
    return x


def _dose_response(
    y: np.ndarray, dose: np.ndarray, groups: np.ndarray, endpoint: str, opts: OutcomesOptions,
    progress: ProgressCallback | None, lines: tuple[int, ...] = (),
) -> DoseResponseAnalysis:  # fmt: skip
    fit = fit_logistic(
        y, dose, groups, endpoint=endpoint, dose_name=opts.metric,
        bootstrap=opts.bootstrap, seed=opts.seed, progress=progress,
    )  # fmt: skip
    roc = roc_cutoff(y, dose, groups, bootstrap=opts.bootstrap, seed=opts.seed)
    return DoseResponseAnalysis(fit, tuple(binned_rates(y, dose)), roc, lines)


def local_control_at(frame, t_months: float) -> tuple[np.ndarray, np.ndarray]:
    """(controlled 0/1, evaluable mask) at ``t_months``: progression at or before t is a
    failure; follow-up reaching t (or progression after t) is control; lesions censored
    before t without progression are not evaluable."""
    e = frame["local_event"].to_numpy(int)
    t = frame["local_time_months"].to_numpy(float)
    failed = (e == 1) & (t <= t_months)
    controlled = ~failed & (t >= t_months)
    return controlled.astype(float), failed | controlled


def _toxicity(res: OutcomesResult, f, dose, groups, opts, progress) -> None:
    if TOXICITY not in f.columns:
        res.skipped["toxicity"] = f"no {TOXICITY!r} column in the outcomes CSV"
        return
    y = (f[TOXICITY].to_numpy(int) >= opts.toxicity_grade_min).astype(float)
    name = f"grade>={opts.toxicity_grade_min} toxicity"
    try:
        res.toxicity = _dose_response(y, dose, groups, name, opts, progress)
    except ModelFitError as exc:
        res.skipped["toxicity"] = str(exc)


def _local_control(res: OutcomesResult, f, dose, groups, opts, progress) -> None:
    if opts.control_time_months is None:
        res.skipped["local_control"] = "no --control-time-months given"
        return
    y, ok = local_control_at(f, opts.control_time_months)
    lines = tuple(int(v) for v in f["outcome_line"].to_numpy()[~ok])
    name = f"local control at {opts.control_time_months:g} months"
    try:
        res.local_control = _dose_response(y[ok], dose[ok], groups[ok], name, opts, progress, lines)
    except ModelFitError as exc:
        res.skipped["local_control"] = str(exc)


def _survival(res: OutcomesResult, f, dose, opts: OutcomesOptions) -> None:
    try:
        res.cox = fit_cox(
            f, time="local_time_months", event="local_event", dose="dose_metric_value",
            cluster="patient", covariates=opts.covariates, dose_label=opts.metric,
        )  # fmt: skip
    except ModelFitError as exc:
        res.skipped["cox"] = str(exc)
    t = f["local_time_months"].to_numpy(float)
    e = f["local_event"].to_numpy(int)
    res.km = tuple(km_by_group(t, e, dose, cutoff=opts.cutoff))
    if "death" not in f.columns:
        res.skipped["cumulative_incidence"] = "no 'death'/'death_time_months' columns"
        return
    tc, code = competing_risk_codes(f)
    res.cif = cumulative_incidence(tc, code, seed=opts.seed)


def analyse(
    joined: JoinResult,
    options: OutcomesOptions | None = None,
    *,
    progress: ProgressCallback | None = None,
) -> OutcomesResult:
    """Every analysis the joined data allow (see the module docstring)."""
    import pandas as pd

    opts = options or OutcomesOptions()
    f = joined.frame
    for c in opts.covariates:
        if c not in f.columns:
            raise ConfigError(f"covariate {c!r} is not a column of the outcomes CSV", key=c)
        values = pd.to_numeric(f[c], errors="coerce")
        if values.isna().any():
            line = int(f["outcome_line"][values.isna()].iloc[0])
            raise ConfigError(f"must be numeric without gaps; line {line} is not", key=c)
    res = OutcomesResult(
        metric=joined.metric, unit=joined.unit, n_lesions=len(f),
        n_patients=int(f["patient"].nunique()), n_outcome_rows=joined.n_outcome_rows,
        exclusions=joined.exclusions, options=opts,
    )  # fmt: skip
    if len(f) == 0:
        res.skipped["all"] = "no lesion matched the DVH table (see exclusions)"
        return res
    if "zone" not in f.columns:
        _analyse_frame(res, f, opts, progress)
        return res
    names = sorted(set(f["zone"].astype(str)))
    res.skipped["zones_pooled"] = (
        "zone-wise analyses only: the zones of one lesion are sub-volumes of the same tumour"
    )
    zones = []
    for k, z in enumerate(names):
        fz = f[f["zone"].astype(str) == z].reset_index(drop=True)
        rz = OutcomesResult(
            metric=joined.metric, unit=joined.unit, n_lesions=len(fz),
            n_patients=int(fz["patient"].nunique()), n_outcome_rows=len(fz), exclusions=(),
            options=opts, zone=z,
        )  # fmt: skip
        share = scaled(progress, k / len(names), (k + 1) / len(names))
        _analyse_frame(rz, fz, opts, share)
        zones.append(rz)
    res.zones = tuple(zones)
    return res


def _analyse_frame(res: OutcomesResult, f, opts: OutcomesOptions, progress) -> None:
    """Every analysis of one frame of lesions (all of them, or one zone's) into ``res``."""
    dose = f["dose_metric_value"].to_numpy(float)
    groups = f["patient"].astype(str).to_numpy()
    _toxicity(res, f, dose, groups, opts, scaled(progress, 0.0, 0.5))
    if "local_event" not in f.columns:
        for name in ("local_control", "cox", "kaplan_meier", "cumulative_incidence"):
            res.skipped[name] = "no 'local_event'/'local_time_months' columns"
        return
    _local_control(res, f, dose, groups, opts, scaled(progress, 0.5, 1.0))
    _survival(res, f, dose, opts)


# -- tables ---------------------------------------------------------------------------------


def _csv(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _estimate_rows(res: OutcomesResult) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for name, a in (("toxicity", res.toxicity), ("local_control", res.local_control)):
        if a is None:
            continue
        f = a.fit
        for q, e in [*f.estimates(), ("ROC cut-off", a.roc.cutoff)]:
            rows.append([name, q, e.value, e.ci_low, e.ci_high, e.se, e.method, f.n, f.events])
    if res.cox is not None:
        c = res.cox
        hr = c.hr_per_10gy
        rows.append(["cox", "HR per 10 Gy", hr.value, hr.ci_low, hr.ci_high, hr.se, hr.method,
                     c.n, c.events])  # fmt: skip
        for k, e in c.covariates.items():
            rows.append(["cox", f"HR {k}", e.value, e.ci_low, e.ci_high, e.se, e.method,
                         c.n, c.events])  # fmt: skip
    return [[*r, res.zone or ""] for r in rows]


def estimates_table(res: OutcomesResult) -> str:
    """One row per estimate: analysis, quantity, value, 95 % CI, SE, method, n, events,
    zone (empty without zones)."""
    rows = [r for part in res.parts() for r in _estimate_rows(part)]
    header = ["analysis", "quantity", "value", "ci_low", "ci_high", "se", "method", "n", "events",
              "zone"]  # fmt: skip
    return _csv(header, rows)


def exclusions_table(res: OutcomesResult) -> str:
    rows = [[e.source, e.patient, e.structure, e.plan, e.line, e.reason, e.lesion, e.zone]
            for e in res.exclusions]  # fmt: skip
    return _csv(
        ["source", "patient", "structure", "plan", "line", "reason", "lesion", "zone"], rows
    )


def curves_table(res: OutcomesResult) -> str:
    rows: list[list[Any]] = []
    for part in res.parts():
        for kind, curves in (("km", part.km), ("cif", (part.cif,) if part.cif else ())):
            for c in curves:
                for t, v, lo, hi in zip(c.time_months, c.value, c.ci_low, c.ci_high):
                    rows.append([kind, c.label, t, v, lo, hi, part.zone or ""])
    return _csv(["curve", "group", "time_months", "value", "ci_low", "ci_high", "zone"], rows)


OUTPUT_NAMES = ("outcomes.json", "estimates.csv", "exclusions.csv", "curves.csv", "joined.csv")


def write_tables(res: OutcomesResult, joined: JoinResult, folder: Path) -> None:
    """Write the JSON and CSV outputs into ``folder`` (a staging folder)."""
    doc = res.to_json()
    (folder / "outcomes.json").write_text(json.dumps(doc, indent=2, allow_nan=False) + "\n")
    (folder / "estimates.csv").write_text(estimates_table(res))
    (folder / "exclusions.csv").write_text(exclusions_table(res))
    (folder / "curves.csv").write_text(curves_table(res))
    joined.frame.to_csv(folder / "joined.csv", index=False)
