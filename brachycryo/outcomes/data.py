"""Reading and joining: the dvh-batch table and the outcomes CSV, one row per lesion.

The DVH table is the long table of ``brachycryo dvh-batch`` (Parquet, or its CSV copy):
columns ``patient, study, plan, dose, structure, metric, value, unit``.  The outcomes CSV has
one row per lesion: ``patient``, ``structure`` (the ROI name in the plans) and the endpoint
columns, each pair optional but complete when present:

* ``local_event`` (0/1) with ``local_time_months`` (time to local progression or censoring);
* ``death`` (0/1) with ``death_time_months``;
* ``toxicity_grade`` (maximum CTCAE grade, integer 0-5);
* optional ``zone``, ``plan`` or ``dose`` (a UID of the table: picks one plan when a patient
  has several) and any covariate columns.

:func:`join_tables` matches each lesion to its (patient, structure) value of one metric.
Nothing is dropped silently: every outcome row without a usable value and every DVH
(patient, structure) without an outcome row is listed in :attr:`JoinResult.exclusions`
with the reason.  A malformed input (missing column, NaN or negative time, event without a
time, grade outside 0-5, metric absent from the table) is an :class:`OutcomesInputError`
naming the file, the line and the column.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from brachycryo.core.errors import BrachyCryoError

if TYPE_CHECKING:
    import pandas as pd

#: Columns the dvh-batch table must have (``brachycryo.cohort.batch.COLUMNS`` lists them all).
DVH_REQUIRED = ("patient", "structure", "metric", "value")
#: Columns the outcomes CSV must have.
OUTCOME_REQUIRED = ("patient", "structure")
#: Endpoint pairs (event, time): both or neither.
EVENT_TIME_PAIRS = (("local_event", "local_time_months"), ("death", "death_time_months"))
TOXICITY = "toxicity_grade"
#: Column names the join adds; an outcomes CSV may not use them.
RESERVED = ("dose_metric_value", "dvh_plan", "dvh_dose", "outcome_line")


class OutcomesInputError(BrachyCryoError):
    """An input table of ``brachycryo outcomes`` is unusable; names the file, line, column."""

    def __init__(
        self,
        message: str,
        *,
        path: str | os.PathLike | None = None,
        line: int | None = None,
        column: str | None = None,
    ):
        where = []
        if path is not None:
            where.append(f"file {path}")
        if line is not None:
            where.append(f"line {line}")
        if column is not None:
            where.append(f"column {column!r}")
        prefix = f"[{'; '.join(where)}] " if where else ""
        super().__init__(prefix + message)


@dataclass(frozen=True)
class Exclusion:
    """One row that did not enter the analysis, and why."""

    source: str  # "outcomes" or "dvh"
    patient: str
    structure: str
    line: int | None  # line of the outcomes CSV (header = line 1); None for DVH rows
    reason: str
    plan: str = ""  # the DVH table's plan UID (DVH rows)


@dataclass(frozen=True)
class JoinResult:
    """The joined frame (one row per lesion: outcome columns + ``dose_metric_value``)."""

    frame: pd.DataFrame
    metric: str
    unit: str
    exclusions: tuple[Exclusion, ...]
    n_outcome_rows: int


def _read_table(path: Path) -> pd.DataFrame:
    import pandas as pd

    if not path.is_file():
        raise OutcomesInputError("no such file", path=path)
    try:
        if path.suffix.lower() == ".parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype={"patient": str, "structure": str})
    except (OSError, ValueError, ImportError) as exc:
        raise OutcomesInputError(f"cannot read the table: {exc}", path=path) from None


def _require_columns(df: pd.DataFrame, required: tuple[str, ...], path: Path) -> None:
    for c in required:
        if c not in df.columns:
            raise OutcomesInputError(
                f"missing column (has: {', '.join(map(str, df.columns))})", path=path, column=c
            )


def read_dvh_table(path: str | os.PathLike) -> pd.DataFrame:
    """The dvh-batch table (Parquet, or CSV by suffix) with its required columns checked."""
    p = Path(path)
    df = _read_table(p)
    _require_columns(df, DVH_REQUIRED, p)
    df = df.copy()
    df["patient"] = df["patient"].astype(str)
    df["structure"] = df["structure"].astype(str)
    return df


def _line(index: int) -> int:
    return int(index) + 2  # header is line 1


def _numeric(df: pd.DataFrame, column: str, path: Path):
    import pandas as pd

    values = pd.to_numeric(df[column], errors="coerce")
    bad = values.isna() & df[column].notna()
    if bad.any():
        i = int(bad.to_numpy().nonzero()[0][0])
        raise OutcomesInputError(
            f"not a number: {df[column].iloc[i]!r}", path=path, line=_line(i), column=column
        )
    return values


def _check_event_time(df: pd.DataFrame, event: str, time: str, path: Path) -> None:
    if (event in df.columns) != (time in df.columns):
        missing = time if event in df.columns else event
        raise OutcomesInputError(
            f"{event!r} and {time!r} come together; one is missing", path=path, column=missing
        )
    if event not in df.columns:
        return
    ev = _numeric(df, event, path)
    t = _numeric(df, time, path)
    for i, (e, x) in enumerate(zip(ev, t)):
        if not (e == 0 or e == 1):
            raise OutcomesInputError(
                f"must be 0 or 1, got {df[event].iloc[i]!r}", path=path, line=_line(i), column=event
            )
        if not math.isfinite(x):
            what = "an event without a time" if e == 1 else "a missing (NaN) time"
            raise OutcomesInputError(what, path=path, line=_line(i), column=time)
        if x < 0:
            raise OutcomesInputError(
                f"negative time {x:g} months", path=path, line=_line(i), column=time
            )
    df[event] = ev.astype(int)
    df[time] = t.astype(float)


def _check_grade(df: pd.DataFrame, path: Path) -> None:
    if TOXICITY not in df.columns:
        return
    g = _numeric(df, TOXICITY, path)
    for i, x in enumerate(g):
        if not math.isfinite(x) or x not in (0, 1, 2, 3, 4, 5):
            raise OutcomesInputError(
                f"CTCAE grade must be an integer 0-5, got {df[TOXICITY].iloc[i]!r}",
                path=path,
                line=_line(i),
                column=TOXICITY,
            )
    df[TOXICITY] = g.astype(int)


def read_outcomes(path: str | os.PathLike) -> pd.DataFrame:
    """The outcomes CSV, validated (see the module docstring); adds ``outcome_line``."""
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise OutcomesInputError("no such file", path=p)
    try:
        df = pd.read_csv(p, dtype={"patient": str, "structure": str, "plan": str, "dose": str})
    except (OSError, ValueError) as exc:
        raise OutcomesInputError(f"cannot read the CSV: {exc}", path=p) from None
    _require_columns(df, OUTCOME_REQUIRED, p)
    for c in RESERVED:
        if c in df.columns:
            raise OutcomesInputError("reserved column name", path=p, column=c)
    for c in (*OUTCOME_REQUIRED, *(k for k in ("plan", "dose") if k in df.columns)):
        blank = df[c].isna()
        if blank.any():
            i = int(blank.to_numpy().nonzero()[0][0])
            raise OutcomesInputError("empty value", path=p, line=_line(i), column=c)
    for event, time in EVENT_TIME_PAIRS:
        _check_event_time(df, event, time, p)
    _check_grade(df, p)
    df["outcome_line"] = [_line(i) for i in range(len(df))]
    return df


def _metric_rows(dvh: pd.DataFrame, metric: str, path: str | os.PathLike) -> pd.DataFrame:
    rows = dvh[dvh["metric"] == metric]
    if rows.empty:
        have = sorted(map(str, dvh["metric"].unique()))
        raise OutcomesInputError(
            f"metric {metric!r} is not in the table (has: {', '.join(have)})",
            path=path,
            column="metric",
        )
    return rows


def _keys(outcomes: pd.DataFrame, rows: pd.DataFrame) -> list[str]:
    """Join keys: patient and structure, plus ``plan`` / ``dose`` when the outcomes CSV has them."""
    return ["patient", "structure"] + [
        c for c in ("plan", "dose") if c in outcomes.columns and c in rows.columns
    ]


def _reasons(outcomes: pd.DataFrame, rows: pd.DataFrame, keys: list[str], metric: str):
    """(reason or None, matched value, plan, dose) per outcome row, vectorised."""
    import numpy as np

    extra = [c for c in ("plan", "dose") if c not in keys and c in rows.columns]
    right = rows[[*keys, "value", *extra]].copy()
    for c in ("plan", "dose"):
        if c not in right.columns:
            right[c] = ""
    right = right.rename(columns={"plan": "_plan", "dose": "_dose"})
    for c in ("plan", "dose"):
        if c in keys:
            right[c] = right["_" + c].astype(str)
    left = outcomes[keys].astype(str).assign(_row=np.arange(len(outcomes)))
    m = left.merge(right, on=keys, how="left", indicator=True)
    m["_hit"] = (m["_merge"] == "both").astype(int)
    n = m.groupby("_row")["_hit"].sum().sort_index().to_numpy()
    first = m.drop_duplicates("_row").set_index("_row").sort_index()
    value = first["value"].to_numpy(float)
    known = left["patient"].isin(set(rows["patient"])).to_numpy()
    dup = left.duplicated(keys, keep="first").to_numpy()
    reason: list[str | None] = []
    for i in range(len(left)):
        if not known[i]:
            reason.append("patient not in the DVH table")
        elif n[i] == 0:
            reason.append(
                f"no {metric} for this structure in the DVH table (ROI name or plan/dose differs)"
            )
        elif n[i] > 1:
            reason.append(
                f"{n[i]} plans/doses have this structure; add a 'plan' or 'dose' column "
                "to the outcomes CSV to choose one"
            )
        elif dup[i]:
            reason.append("duplicate lesion (same patient and structure as an earlier line)")
        elif not math.isfinite(value[i]):
            reason.append(f"{metric} is undefined (NaN) in the DVH table")
        else:
            reason.append(None)
    return (
        reason,
        value,
        first["_plan"].astype(str).to_numpy(),
        first["_dose"].astype(str).to_numpy(),
    )


def join_tables(
    dvh: pd.DataFrame,
    outcomes: pd.DataFrame,
    *,
    metric: str = "d90_gy",
    dvh_path: str | os.PathLike = "DVH table",
) -> JoinResult:
    """One row per matched lesion: the outcome row plus ``dose_metric_value`` (the metric's
    value), ``dvh_plan`` and ``dvh_dose``; every unmatched row listed with its reason."""
    import pandas as pd

    rows = _metric_rows(dvh, metric, dvh_path)
    units = sorted(set(map(str, rows["unit"]))) if "unit" in rows.columns else ["?"]
    keys = _keys(outcomes, rows)
    reason, value, plan, dose = _reasons(outcomes, rows, keys, metric)
    excl = []
    kept = [i for i, r in enumerate(reason) if r is None]
    lines = outcomes["outcome_line"].to_numpy()
    for i, r in enumerate(reason):
        if r is not None:
            p, st = str(outcomes["patient"].iloc[i]), str(outcomes["structure"].iloc[i])
            excl.append(Exclusion("outcomes", p, st, int(lines[i]), r))
    values, plans, doses = value[kept], plan[kept], dose[kept]
    used = set(
        zip(outcomes["patient"].iloc[kept].astype(str), plans, outcomes["structure"].iloc[kept])
    )
    table_plans = rows["plan"].astype(str) if "plan" in rows.columns else [""] * len(rows)
    for p, pl, st in sorted(set(zip(rows["patient"], table_plans, rows["structure"])) - used):
        reason = "no matched outcome row for this structure (and plan)"
        excl.append(Exclusion("dvh", p, st, None, reason, pl))
    frame = outcomes.iloc[kept].reset_index(drop=True).copy()
    frame["dose_metric_value"] = pd.Series(values, dtype=float)
    frame["dvh_plan"] = plans
    frame["dvh_dose"] = doses
    return JoinResult(frame, metric, "/".join(units), tuple(excl), len(outcomes))
