"""The real ``brachycryo dvh-batch`` table joins: two tiny phantom patients (one with two
plans) -> dvh-batch -> outcomes CSV -> the joined D90 are the table's values, the patient
with two plans is listed until a ``plan`` column picks one, and ``brachycryo outcomes`` runs
end to end on it, listing the analyses three lesions cannot support."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from brachycryo.cli import main
from brachycryo.outcomes.data import join_tables, read_dvh_table, read_outcomes

HEADER = "patient,structure,local_event,local_time_months,toxicity_grade"


@pytest.fixture
def table(tiny_dvh_table):
    return tiny_dvh_table


def test_join_real_table(table, tmp_path):
    out, (a, b) = table
    dvh = read_dvh_table(out)
    d90 = dvh[dvh["metric"] == "d90_gy"]
    csv = tmp_path / "o.csv"
    csv.write_text(f"{HEADER}\n{a},GTV_Bulky,0,12,0\n{a},GTV_Met1,0,12,0\n{b},GTV_Bulky,0,9,0\n")
    j = join_tables(dvh, read_outcomes(csv))
    want = d90[(d90["patient"] == a) & (d90["structure"] == "GTV_Bulky")]["value"].item()
    assert j.frame["dose_metric_value"].iloc[0] == want and want > 100
    assert j.frame["structure"].tolist() == ["GTV_Bulky", "GTV_Met1"]
    (ex,) = [e for e in j.exclusions if e.source == "outcomes"]
    assert ex.patient == b and ex.line == 4 and "2 plans" in ex.reason
    # a plan column chooses the second plan of b (its D90 is 1.2 x the prescription)
    plans = d90[(d90["patient"] == b) & (d90["structure"] == "GTV_Bulky")]
    second = plans.sort_values("value")["plan"].iloc[-1]
    first_a = d90[d90["patient"] == a]["plan"].iloc[0]
    csv2 = tmp_path / "o2.csv"
    csv2.write_text(
        f"{HEADER},plan\n{a},GTV_Bulky,0,12,0,{first_a}\n{b},GTV_Bulky,0,9,0,{second}\n"
    )
    j2 = join_tables(dvh, read_outcomes(csv2))
    assert not [e for e in j2.exclusions if e.source == "outcomes"]
    assert j2.frame["dose_metric_value"].iloc[1] == plans["value"].max()
    assert j2.frame["dvh_plan"].iloc[1] == second


def test_outcomes_command_on_the_real_table(table, tmp_path, capsys):
    out, (a, b) = table
    csv = tmp_path / "o.csv"
    csv.write_text(f"{HEADER}\n{a},GTV_Bulky,0,12,0\n{a},GTV_Met1,0,12,0\n")
    res = tmp_path / "res"
    code = main(["outcomes", "--dvh", str(out), "--outcomes", str(csv), "--out", str(res),
                 "--bootstrap", "0", "--quiet"])  # fmt: skip
    assert code == 0
    doc = json.loads((res / "outcomes.json").read_text())
    assert doc["n_lesions"] == 2
    assert "0 events" in doc["skipped"]["toxicity"]
    assert "no local_event events" in doc["skipped"]["cox"]
    text = capsys.readouterr().out
    assert "not done: toxicity" in text
    excl = pd.read_csv(res / "exclusions.csv")
    # every (patient, plan, structure) of the table but the two analysed is listed
    n_rows = len(read_dvh_table(out).query("metric == 'd90_gy'"))
    assert (excl["source"] == "dvh").sum() == n_rows - 2
