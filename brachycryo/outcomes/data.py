"""Reading and joining: the dvh-batch table and the outcomes CSV, one row per lesion.

The DVH table is the long table of ``brachycryo dvh-batch`` (Parquet, or its CSV copy):
columns ``patient, study, plan, dose, structure, metric, value, unit``.  The outcomes CSV has
one row per lesion: ``patient``, ``structure`` (the ROI name in the plans) - or ``lesion``
(the study's lesion label) with a lesion map (:func:`read_lesion_map`: ``patient, lesion,
structure`` and optionally ``plan`` / ``dose`` / ``zone``) that locates each lesion in
the plans - and the endpoint columns, each pair optional but complete when present:

* ``local_event`` (0/1) with ``local_time_months`` (time to local progression or censoring);
* ``death`` (0/1) with ``death_time_months``;
* ``toxicity_grade`` (maximum CTCAE grade, integer 0-5);
* optional ``plan`` or ``dose`` (a UID of the table: picks one plan when a patient has
  several) and any covariate columns;
* optional ``zone`` (e.g. ``core`` / ``margin`` / ``seed_target``): the CSV then has one row
  per lesion *and zone*, each zone its own ROI (the dvh-batch table has one row per
  structure, so a zone is only measurable as a contoured ROI, such as the ``<lesion>_Core``
  and ``<lesion>_SeedTarget`` ROIs of ``RS.zones.dcm``), and the analyses run zone by zone
  (:func:`brachycryo.outcomes.analysis.analyse`).  A blank zone is an error.

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
#: Columns the outcomes CSV must have (``structure``, or ``lesion`` with a lesion map).
OUTCOME_REQUIRED = ("patient",)
#: Columns a lesion map must have; ``plan``, ``dose`` and ``zone`` are optional.
LESION_MAP_REQUIRED = ("patient", "lesion", "structure")
#: Key columns that may not be blank where present.
KEY_COLUMNS = ("patient", "structure", "lesion", "zone", "plan", "dose")
#: Endpoint pairs (event, time): both or neither.
EVENT_TIME_PAIRS = (("local_event", "local_time_months"), ("death", "death_time_months"))
TOXICITY = "toxicity_grade"
#: Column names the join adds; an outcomes CSV may not use them.
RESERVED = ("dose_metric_value", "dvh_plan", "dvh_dose", "outcome_line", "lesion_map_line")
_STR_COLUMNS = {c: str for c in KEY_COLUMNS}


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

    source: str  # "outcomes", "dvh" or "lesion_map"
    patient: str
    structure: str
    line: int | None  # line of the outcomes CSV / lesion map (header = 1); None for DVH rows
    reason: str
    plan: str = ""  # the DVH table's plan UID (DVH rows)
    lesion: str = ""  # the lesion label (outcomes CSV with a lesion map, lesion-map rows)
    zone: str = ""


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
        return pd.read_csv(path, dtype=_STR_COLUMNS)
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


def _read_csv(p: Path) -> pd.DataFrame:
    import pandas as pd

    if not p.is_file():
        raise OutcomesInputError("no such file", path=p)
    try:
        df = pd.read_csv(p, dtype=_STR_COLUMNS)
    except (OSError, ValueError) as exc:
        raise OutcomesInputError(f"cannot read the CSV: {exc}", path=p) from None
    for c in RESERVED:
        if c in df.columns:
            raise OutcomesInputError("reserved column name", path=p, column=c)
    for c in (k for k in KEY_COLUMNS if k in df.columns):
        blank = df[c].isna() | (df[c].astype(str).str.strip() == "")
        if blank.any():
            i = int(blank.to_numpy().nonzero()[0][0])
            raise OutcomesInputError("empty value", path=p, line=_line(i), column=c)
    return df


def read_outcomes(path: str | os.PathLike) -> pd.DataFrame:
    """The outcomes CSV, validated (see the module docstring); adds ``outcome_line``."""
    p = Path(path)
    df = _read_csv(p)
    _require_columns(df, OUTCOME_REQUIRED, p)
    if "structure" not in df.columns and "lesion" not in df.columns:
        raise OutcomesInputError(
            "missing column: 'structure' (the ROI name), or 'lesion' with a lesion map",
            path=p,
            column="structure",
        )
    for event, time in EVENT_TIME_PAIRS:
        _check_event_time(df, event, time, p)
    _check_grade(df, p)
    df["outcome_line"] = [_line(i) for i in range(len(df))]
    return df


def read_lesion_map(path: str | os.PathLike) -> pd.DataFrame:
    """The lesion map: one row per lesion (and zone): ``patient, lesion, structure`` and
    optionally ``plan`` / ``dose`` (UIDs of the dvh-batch table) and ``zone``.  A lesion
    (and zone) mapped twice is an error naming both lines; adds ``lesion_map_line``."""
    p = Path(path)
    df = _read_csv(p)
    _require_columns(df, LESION_MAP_REQUIRED, p)
    key = ["patient", "lesion", *(["zone"] if "zone" in df.columns else [])]
    dup = df.duplicated(key, keep=False)
    if dup.any():
        i, j = (int(k) for k in dup.to_numpy().nonzero()[0][:2])
        raise OutcomesInputError(
            f"lesion {df['lesion'].iloc[i]!r} of patient {df['patient'].iloc[i]!r} is mapped "
            f"twice (lines {_line(i)} and {_line(j)})",
            path=p,
            line=_line(j),
            column="lesion",
        )
    df["lesion_map_line"] = [_line(i) for i in range(len(df))]
    return df


def map_lesions(
    outcomes: pd.DataFrame, lesion_map: pd.DataFrame, *, map_path: str | os.PathLike = "lesion map"
) -> tuple[pd.DataFrame, list[Exclusion]]:
    """The outcome rows located through the lesion map (``structure`` and the map's
    ``plan`` / ``dose`` added), and the exclusions: outcome rows whose (patient, lesion
    [, zone]) the map lacks, and map rows without an outcome row."""
    key = ["patient", "lesion"]
    if "lesion" not in outcomes.columns:
        raise OutcomesInputError("a lesion map needs a 'lesion' column in the outcomes CSV",
                                 column="lesion")  # fmt: skip
    if "structure" in outcomes.columns:
        raise OutcomesInputError(
            "the outcomes CSV has a 'structure' column and a lesion map is given; use one",
            column="structure",
        )
    if "zone" in outcomes.columns:
        if "zone" not in lesion_map.columns:
            raise OutcomesInputError(
                "the outcomes CSV has zones: the lesion map needs a 'zone' column (each zone "
                "is its own ROI)",
                path=map_path,
                column="zone",
            )
        key.append("zone")
    carried = [c for c in ("structure", "plan", "dose") if c in lesion_map.columns]
    for c in carried[1:]:
        if c in outcomes.columns:
            raise OutcomesInputError(f"{c!r} is in both the outcomes CSV and the lesion map",
                                     path=map_path, column=c)  # fmt: skip
    right = lesion_map[[*key, *carried, "lesion_map_line"]]
    m = outcomes.merge(right, on=key, how="left", validate="many_to_one")
    hit = m["lesion_map_line"].notna().to_numpy()
    excl = []
    for r in m[~hit].to_dict("records"):
        why = "lesion not in the lesion map"
        lesion, zone = str(r["lesion"]), str(r.get("zone", ""))
        excl.append(Exclusion("outcomes", str(r["patient"]), "", int(r["outcome_line"]), why,
                              lesion=lesion, zone=zone))  # fmt: skip
    used = set(m.loc[hit, "lesion_map_line"].astype(int))
    for r in lesion_map.to_dict("records"):
        if int(r["lesion_map_line"]) in used:
            continue
        why = "no outcome row for this lesion"
        lesion, zone = str(r["lesion"]), str(r.get("zone", ""))
        line = int(r["lesion_map_line"])
        excl.append(Exclusion("lesion_map", str(r["patient"]), str(r["structure"]), line, why,
                              lesion=lesion, zone=zone))  # fmt: skip
    mapped = m[hit].drop(columns="lesion_map_line").reset_index(drop=True)
    return mapped, excl


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
    lesion_map: pd.DataFrame | None = None,
    lesion_map_path: str | os.PathLike = "lesion map",
) -> JoinResult:
    """One row per matched lesion (or lesion and zone): the outcome row plus
    ``dose_metric_value`` (the metric's value), ``dvh_plan`` and ``dvh_dose``; every
    unmatched row (outcomes CSV, lesion map, DVH table) listed with its reason."""
    import pandas as pd

    rows = _metric_rows(dvh, metric, dvh_path)
    units = sorted(set(map(str, rows["unit"]))) if "unit" in rows.columns else ["?"]
    n_outcome_rows = len(outcomes)
    excl: list[Exclusion] = []
    if lesion_map is not None:
        outcomes, excl = map_lesions(outcomes, lesion_map, map_path=lesion_map_path)
    elif "structure" not in outcomes.columns:
        raise OutcomesInputError(
            "the outcomes CSV has 'lesion' but no 'structure' column: give a lesion map "
            "(--lesion-map) that names each lesion's ROI",
            column="structure",
        )
    keys = _keys(outcomes, rows)
    reason, value, plan, dose = _reasons(outcomes, rows, keys, metric)
    kept = [i for i, r in enumerate(reason) if r is None]
    lines = outcomes["outcome_line"].to_numpy()
    lesions = outcomes["lesion"].astype(str) if "lesion" in outcomes.columns else None
    zones = outcomes["zone"].astype(str) if "zone" in outcomes.columns else None
    for i, r in enumerate(reason):
        if r is not None:
            p, st = str(outcomes["patient"].iloc[i]), str(outcomes["structure"].iloc[i])
            excl.append(Exclusion(
                "outcomes", p, st, int(lines[i]), r,
                lesion="" if lesions is None else lesions.iloc[i],
                zone="" if zones is None else zones.iloc[i],
            ))  # fmt: skip
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
    excl.sort(key=lambda e: (e.source != "outcomes", e.line if e.line is not None else 0))
    return JoinResult(frame, metric, "/".join(units), tuple(excl), n_outcome_rows)
