"""``brachycryo outcomes`` end to end on a simulated cohort: the outputs, the refusal to
overwrite, and a bad input that leaves nothing behind."""

from __future__ import annotations

import json

import pytest

from brachycryo.cli import main
from tests.outcomes.simulate import Truth, simulate


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    d = tmp_path_factory.mktemp("cohort")
    dvh, oc = simulate(400, seed=2)
    dvh.to_parquet(d / "table.parquet", index=False)
    oc.to_csv(d / "outcomes.csv", index=False)
    return d


def test_end_to_end(cohort, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["outcomes", "--dvh", str(cohort / "table.parquet"), "--outcomes",
            str(cohort / "outcomes.csv"), "--out", str(out), "--bootstrap", "40", "--quiet",
            "--control-time-months", "24"]  # fmt: skip
    assert main(argv) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["outcomes.json", "estimates.csv", "exclusions.csv", "curves.csv",
                            "joined.csv", "outcomes.html"])  # fmt: skip
    doc = json.loads((out / "outcomes.json").read_text())
    assert doc["n_lesions"] == 400
    tox = doc["toxicity"]["fit"]
    assert tox["d50"]["ci_low"] <= Truth().d50_gy <= tox["d50"]["ci_high"]
    assert tox["formula"] == "logit P(grade>=3 toxicity) = b0 + b1 * d90_gy"
    cox = doc["cox"]["hr_per_10gy"]
    assert cox["ci_low"] <= Truth().hr_per_10gy <= cox["ci_high"]
    assert doc["cif"]["events"] > 0 and len(doc["km"]) == 3
    assert (
        doc["local_control"]["fit"]["n"] + len(doc["local_control"]["not_evaluable_lines"]) == 400
    )
    # the Rectum rows of the DVH table (no outcome) are listed, one per patient
    excl = (out / "exclusions.csv").read_text().splitlines()
    assert excl[0] == "source,patient,structure,plan,line,reason,lesion,zone"
    assert len(excl) == 1 + doc["n_patients"]
    assert all(",Rectum," in line for line in excl[1:])
    page = (out / "outcomes.html").read_text()
    assert page.count("data:image/png;base64,") == 4  # 2 dose-response, KM, CIF
    assert "Numbers at risk" in page
    assert "HR per 10 Gy" in capsys.readouterr().out
    # an existing output is refused before any work
    assert main(argv) != 0
    assert "exists" in capsys.readouterr().err


def test_bad_input_writes_nothing(cohort, tmp_path, capsys):
    bad = tmp_path / "bad.csv"
    text = (cohort / "outcomes.csv").read_text().splitlines()
    cells = text[3].split(",")
    cells[3] = "-1"  # local_time_months of line 4
    bad.write_text("\n".join([text[0], text[1], text[2], ",".join(cells)]) + "\n")
    out = tmp_path / "out"
    code = main(["outcomes", "--dvh", str(cohort / "table.parquet"), "--outcomes", str(bad),
                 "--out", str(out), "--bootstrap", "0", "--quiet"])  # fmt: skip
    assert code != 0
    err = capsys.readouterr().err
    assert "line 4" in err and "local_time_months" in err and "negative" in err
    assert not out.exists() or not any(out.iterdir())


def test_bad_covariate_named(cohort, tmp_path, capsys):
    bad = tmp_path / "cov.csv"
    lines = (cohort / "outcomes.csv").read_text().splitlines()
    rows = [lines[0] + ",age"] + [ln + ",60" for ln in lines[1:]]
    rows[5] = lines[5] + ",unknown"  # line 6
    bad.write_text("\n".join(rows) + "\n")
    code = main(["outcomes", "--dvh", str(cohort / "table.parquet"), "--outcomes", str(bad),
                 "--out", str(tmp_path / "o"), "--bootstrap", "0", "--quiet",
                 "--covariate", "age"])  # fmt: skip
    assert code != 0
    err = capsys.readouterr().err
    assert "'age'" in err and "line 6" in err
