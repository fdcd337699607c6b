"""``brachycryo dvh``: JSON layout, CSV, errors naming files / ROIs, atomic outputs."""

from __future__ import annotations

import csv
import json
import warnings

import numpy as np
import pytest

from brachycryo.cli import main
from brachycryo.dicom_io.common import StudyContext
from brachycryo.dicom_io.rtdose import read_rtdose, write_rtdose
from brachycryo.qa.evaluate import evaluate_files
from tests.qa.analytic_dvh import CaseFiles, cases, write_case_files

REQUIRED = (
    "volume_cc",
    "dmin_gy",
    "dmean_gy",
    "dmax_gy",
    "d90_gy",
    "d98_gy",
    "d100_gy",
    "d2cc_gy",
    "d0.1cc_gy",
    "v100_pct",
    "v150_pct",
    "v200_pct",
)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> CaseFiles:
    case = next(c for c in cases() if c.name == "sphere_lin_M")
    return write_case_files(tmp_path_factory.mktemp("cli"), case, 2.0)


def test_json_and_csv_layout(files, tmp_path, capsys):
    out_json, out_csv = tmp_path / "m.json", tmp_path / "m.csv"
    argv = ["dvh", "--rtdose", str(files.rtdose), "--rtstruct", str(files.rtstruct)]
    argv += ["--prescription-gy", "90", "--json", str(out_json), "--csv", str(out_csv)]
    argv += ["--target", "sphere_lin_M", "--quiet"]
    assert main(argv) == 0
    data = json.loads(out_json.read_text())
    assert data["prescription_gy"] == 90.0
    assert list(data["structures"]) == ["sphere_lin_M"]
    m = data["structures"]["sphere_lin_M"]
    for key in REQUIRED:
        assert key in m, key
    assert m["d2cc_gy"] is not None and m["v100_pct"] is not None
    assert m["dmin_gy"] <= m["d98_gy"] <= m["d90_gy"] <= m["dmean_gy"] + 5 <= m["dmax_gy"] + 5
    assert set(data["indices"]) >= {"target", "ci", "ei", "hi"}
    rows = list(csv.DictReader(out_csv.open()))
    assert rows[0]["structure"] == "sphere_lin_M"
    assert float(rows[0]["d90_gy"]) == pytest.approx(m["d90_gy"], rel=1e-5)
    # the same metrics from the Python API
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ev = evaluate_files(files.rtdose, files.rtstruct, prescription_gy=90.0)
    assert ev.metrics["sphere_lin_M"]["d90_gy"] == pytest.approx(m["d90_gy"], rel=1e-9)
    # outputs are not overwritten unless asked
    assert main(argv) == 1
    assert "exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite"]) == 0


def test_table_printed(files, capsys):
    argv = ["dvh", "--rtdose", str(files.rtdose), "--rtstruct", str(files.rtstruct)]
    assert main([*argv, "--prescription-gy", "90"]) == 0
    out = capsys.readouterr()
    assert "sphere_lin_M" in out.out and "D90" in out.out


def test_unknown_roi_is_named(files, capsys):
    argv = ["dvh", "--rtdose", str(files.rtdose), "--rtstruct", str(files.rtstruct)]
    assert main([*argv, "--roi", "NoSuchROI", "--quiet"]) == 1
    assert "NoSuchROI" in capsys.readouterr().err


def test_frame_of_reference_mismatch(files, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dose = read_rtdose(files.rtdose)
    other = tmp_path / "RD_other.dcm"
    write_rtdose(
        other,
        dose.values,
        dose.grid,
        context=StudyContext(),  # a new Frame of Reference UID
        summation="PLAN",
        referenced_plan_uid="1.2.3",
    )
    argv = ["dvh", "--rtdose", str(other), "--rtstruct", str(files.rtstruct), "--quiet"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Frame of Reference" in err and str(other) in err and str(files.rtstruct) in err


def test_relative_dose_refused(files, tmp_path, capsys):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dose = read_rtdose(files.rtdose)
    rel = tmp_path / "RD_rel.dcm"
    ctx = StudyContext(frame_of_reference_uid=dose.frame_of_reference_uid)
    write_rtdose(
        rel,
        np.asarray(dose.values) / 100.0,
        dose.grid,
        context=ctx,
        dose_units="RELATIVE",
        summation="PLAN",
        referenced_plan_uid="1.2.3",
    )
    argv = ["dvh", "--rtdose", str(rel), "--rtstruct", str(files.rtstruct), "--quiet"]
    assert main(argv) == 1
    assert "DoseUnits" in capsys.readouterr().err
