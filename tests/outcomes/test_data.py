"""Reading and joining: every bad input is an error naming file, line and column; every
row that does not join is listed with its reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from brachycryo.outcomes.data import (
    OutcomesInputError,
    join_tables,
    read_dvh_table,
    read_lesion_map,
    read_outcomes,
)

HEADER = "patient,structure,local_event,local_time_months,death,death_time_months,toxicity_grade"


def _csv(tmp_path, *lines, header=HEADER):
    p = tmp_path / "outcomes.csv"
    p.write_text("\n".join([header, *lines]) + "\n")
    return p


def _dvh(rows):
    cols = ["patient", "study", "plan", "dose", "structure", "metric", "value", "unit"]
    return pd.DataFrame.from_records(rows, columns=cols)


DVH = _dvh(
    [
        ("A", "s", "pA", "dA", "GTV1", "d90_gy", 150.0, "Gy"),
        ("A", "s", "pA", "dA", "GTV2", "d90_gy", 120.0, "Gy"),
        ("A", "s", "pA", "dA", "Rectum", "d90_gy", 20.0, "Gy"),
        ("B", "s", "pB1", "dB1", "GTV1", "d90_gy", 100.0, "Gy"),
        ("B", "s", "pB2", "dB2", "GTV1", "d90_gy", 110.0, "Gy"),  # a second plan of B
        ("C", "s", "pC", "dC", "GTV1", "d90_gy", np.nan, "Gy"),
    ]
)


@pytest.mark.parametrize(
    ("line", "column", "message"),
    [
        ("A,GTV1,1,,0,5,2", "local_time_months", "event without a time"),
        ("A,GTV1,0,,0,5,2", "local_time_months", "missing \\(NaN\\) time"),
        ("A,GTV1,0,-2,0,5,2", "local_time_months", "negative time"),
        ("A,GTV1,2,5,0,5,2", "local_event", "0 or 1"),
        ("A,GTV1,0,5,0,5,7", "toxicity_grade", "0-5"),
        ("A,GTV1,0,5,0,5,2.5", "toxicity_grade", "0-5"),
        ("A,GTV1,0,5,0,5,x", "toxicity_grade", "not a number"),
        ("A,GTV1,0,5,1,-1,2", "death_time_months", "negative time"),
        (",GTV1,0,5,0,5,2", "patient", "empty value"),
    ],
)
def test_bad_values_name_file_line_column(tmp_path, line, column, message):
    p = _csv(tmp_path, "A,GTV2,0,5,0,5,0", line)
    with pytest.raises(OutcomesInputError, match=message) as exc:
        read_outcomes(p)
    text = str(exc.value)
    assert str(p) in text and "line 3" in text and f"column {column!r}" in text


def test_missing_columns(tmp_path):
    with pytest.raises(OutcomesInputError, match="column 'structure'"):
        read_outcomes(_csv(tmp_path, "A,0", header="patient,local_event"))
    with pytest.raises(OutcomesInputError, match="column 'local_time_months'.*one is missing"):
        read_outcomes(_csv(tmp_path, "A,GTV1,0", header="patient,structure,local_event"))
    p = tmp_path / "t.csv"
    DVH.drop(columns="value").to_csv(p, index=False)
    with pytest.raises(OutcomesInputError, match=f"file {p}.*column 'value'"):
        read_dvh_table(p)


def test_metric_absent_is_an_error(tmp_path):
    oc = read_outcomes(_csv(tmp_path, "A,GTV1,0,5,0,5,0"))
    with pytest.raises(OutcomesInputError, match="metric 'd95_gy' is not in the table.*d90_gy"):
        join_tables(DVH, oc, metric="d95_gy")


def test_every_unmatched_row_listed(tmp_path):
    oc = read_outcomes(
        _csv(
            tmp_path,
            "A,GTV1,0,5,0,5,0",  # line 2: matches
            "A,GTV9,0,5,0,5,0",  # 3: unknown ROI
            "Z,GTV1,0,5,0,5,0",  # 4: unknown patient
            "B,GTV1,0,5,0,5,0",  # 5: two plans
            "C,GTV1,0,5,0,5,0",  # 6: NaN metric
            "A,GTV1,1,3,0,5,4",  # 7: duplicate of line 2
        )
    )
    j = join_tables(DVH, oc)
    assert j.frame["outcome_line"].tolist() == [2]
    assert j.frame["dose_metric_value"].tolist() == [150.0]
    by_line = {e.line: e.reason for e in j.exclusions if e.source == "outcomes"}
    assert set(by_line) == {3, 4, 5, 6, 7}
    assert "ROI name" in by_line[3]
    assert "patient not in the DVH table" in by_line[4]
    assert "2 plans/doses" in by_line[5]
    assert "NaN" in by_line[6]
    assert "duplicate" in by_line[7]
    dvh_side = {(e.patient, e.structure) for e in j.exclusions if e.source == "dvh"}
    # every DVH structure without a matched outcome row is listed too
    assert dvh_side == {("A", "GTV2"), ("A", "Rectum"), ("B", "GTV1"), ("C", "GTV1")}
    assert j.n_outcome_rows == 6
    assert len(j.frame) + sum(e.source == "outcomes" for e in j.exclusions) == 6


def test_plan_column_picks_one_plan(tmp_path):
    p = _csv(tmp_path, "B,GTV1,pB2,0,5,0,5,0", header="patient,structure,plan" + HEADER[17:])
    j = join_tables(DVH, read_outcomes(p))
    assert j.frame["dose_metric_value"].tolist() == [110.0]
    assert j.frame["dvh_plan"].tolist() == ["pB2"]


def test_parquet_and_csv_tables_read_alike(tmp_path):
    DVH.to_parquet(tmp_path / "t.parquet", index=False)
    DVH.to_csv(tmp_path / "t.csv", index=False)
    a = read_dvh_table(tmp_path / "t.parquet")
    b = read_dvh_table(tmp_path / "t.csv")
    pd.testing.assert_frame_equal(
        a[["patient", "structure", "value"]], b[["patient", "structure", "value"]]
    )


MAP_HEADER = "patient,lesion,structure"


def _map(tmp_path, *lines, header=MAP_HEADER):
    p = tmp_path / "map.csv"
    p.write_text("\n".join([header, *lines]) + "\n")
    return p


def test_lesion_map_locates_lesions_and_lists_every_unmatched_row(tmp_path):
    header = "patient,lesion,local_event,local_time_months,toxicity_grade"
    oc = read_outcomes(
        _csv(
            tmp_path,
            "A,liver-1,0,5,0",  # line 2: -> GTV1
            "A,liver-2,1,3,4",  # 3: -> GTV2
            "A,liver-3,0,5,0",  # 4: not in the map
            "Z,x,0,5,0",  # 5: patient not in the map
            "A,liver-4,0,5,0",  # 6: mapped to an ROI the table lacks
            header=header,
        )
    )
    lmap = read_lesion_map(
        _map(tmp_path, "A,liver-1,GTV1", "A,liver-2,GTV2", "A,liver-4,GTV9", "A,liver-5,Rectum")
    )
    j = join_tables(DVH, oc, lesion_map=lmap)
    assert j.frame["lesion"].tolist() == ["liver-1", "liver-2"]
    assert j.frame["structure"].tolist() == ["GTV1", "GTV2"]
    assert j.frame["dose_metric_value"].tolist() == [150.0, 120.0]
    assert j.frame["outcome_line"].tolist() == [2, 3]
    out = {e.line: e for e in j.exclusions if e.source == "outcomes"}
    assert set(out) == {4, 5, 6}
    assert out[4].lesion == "liver-3" and "not in the lesion map" in out[4].reason
    assert "not in the lesion map" in out[5].reason
    assert out[6].structure == "GTV9" and "ROI name" in out[6].reason
    (unused,) = [e for e in j.exclusions if e.source == "lesion_map"]
    assert (unused.lesion, unused.structure, unused.line) == ("liver-5", "Rectum", 5)
    assert j.n_outcome_rows == 5
    assert len(j.frame) + sum(e.source == "outcomes" for e in j.exclusions) == 5


def test_lesion_map_plan_column_and_bad_maps(tmp_path):
    header = "patient,lesion,local_event,local_time_months"
    oc = read_outcomes(_csv(tmp_path, "B,b1,0,5", header=header))
    lmap = read_lesion_map(_map(tmp_path, "B,b1,GTV1,pB2", header=MAP_HEADER + ",plan"))
    j = join_tables(DVH, oc, lesion_map=lmap)
    assert j.frame["dose_metric_value"].tolist() == [110.0]
    with pytest.raises(OutcomesInputError, match="mapped twice \\(lines 2 and 3\\)"):
        read_lesion_map(_map(tmp_path, "B,b1,GTV1", "B,b1,GTV2"))
    with pytest.raises(OutcomesInputError, match="column 'structure'"):
        read_lesion_map(_map(tmp_path, "B,b1", header="patient,lesion"))
    with pytest.raises(OutcomesInputError, match="line 2.*column 'structure'.*empty"):
        read_lesion_map(_map(tmp_path, "B,b1,"))
    with pytest.raises(OutcomesInputError, match="give a lesion map"):
        join_tables(DVH, oc)
    h2 = "patient,lesion,structure,local_event,local_time_months"
    with_structure = read_outcomes(_csv(tmp_path, "B,b1,GTV1,0,5", header=h2))
    with pytest.raises(OutcomesInputError, match="use one"):
        join_tables(DVH, with_structure, lesion_map=read_lesion_map(_map(tmp_path, "B,b1,GTV1")))
    h3 = "patient,lesion,zone,local_event,local_time_months"
    zoned = read_outcomes(_csv(tmp_path, "B,b1,core,0,5", header=h3))
    with pytest.raises(OutcomesInputError, match="needs a 'zone' column"):
        join_tables(DVH, zoned, lesion_map=read_lesion_map(_map(tmp_path, "B,b1,GTV1")))
    with pytest.raises(OutcomesInputError, match="column 'zone'.*empty"):
        read_outcomes(_csv(tmp_path, "B,b1,,0,5", header=h3))
