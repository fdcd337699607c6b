"""Readers refuse what would give a silently wrong result, by name (issues #14, #20 item 4).

Each test builds its defect into a copy of one small phantom case
(:func:`benchmarks.fuzz_readers.build_case`) and checks the error or warning names the
file, tag, ROI (numbers) or size it is about.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import pydicom
import pytest
from pydicom.dataelem import DataElement
from pydicom.sequence import Sequence

from benchmarks.fuzz_readers import build_case
from brachycryo.cli import main
from brachycryo.core.errors import (
    BrachyCryoError,
    ConfigError,
    DicomInputError,
    SeriesError,
    StructureError,
)
from brachycryo.core.memory import (
    MEMORY_BUDGET_ENV,
    MemoryBudgetError,
    check_allocation,
    memory_budget_bytes,
)
from brachycryo.dicom_io.common import StudyContext, read_dataset
from brachycryo.dicom_io.ct_series import load_ct_series
from brachycryo.dicom_io.rtdose import read_rtdose
from brachycryo.dicom_io.rtplan import read_rtplan
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.qa.evaluate import evaluate_files


@pytest.fixture(scope="module")
def base_case(tmp_path_factory):
    return build_case(tmp_path_factory.mktemp("robust") / "case")


@pytest.fixture
def case(base_case, tmp_path):
    """A private copy of the phantom case (tests may rewrite its files)."""
    shutil.copytree(base_case.folder, tmp_path / "case")
    return tmp_path / "case"


def _rewrite(path: Path, change) -> None:
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(path)


def _gtv_item(ds):
    (number,) = [r.ROINumber for r in ds.StructureSetROISequence if r.ROIName == "GTV"]
    (item,) = [c for c in ds.ROIContourSequence if c.ReferencedROINumber == number]
    return item


def test_wrong_vr_sequence_is_a_dicom_error_naming_the_tag(case):
    def change(ds):
        contour = _gtv_item(ds).ContourSequence[0]
        contour["ContourImageSequence"] = DataElement(0x30060016, "LO", "--")

    _rewrite(case / "RS.dcm", change)
    with pytest.raises(DicomInputError, match="ContourImageSequence.*not a sequence of items"):
        read_rtstruct(case / "RS.dcm")


def test_study_context_names_a_missing_study_uid(case):
    ds = read_dataset(case / "RP.dcm")
    del ds.StudyInstanceUID
    ds.filename = str(case / "RP.dcm")
    with pytest.raises(DicomInputError, match=r"RP\.dcm; tag StudyInstanceUID"):
        StudyContext.from_dataset(ds)


def test_two_rois_of_one_name_name_both_numbers(case):
    def change(ds):
        for roi in ds.StructureSetROISequence:
            roi.ROIName = "GTV"

    _rewrite(case / "RS.dcm", change)
    with pytest.raises(StructureError, match=r"'GTV'.*ROINumber 1, 2"):
        evaluate_files(case / "RD.dcm", case / "RS.dcm")
    with pytest.raises(StructureError, match=r"ROINumber 1, 2"):
        evaluate_files(case / "RD.dcm", case / "RS.dcm", roi_names=["GTV"])
    out = case / "dvh.json"
    code = main(["dvh", "--rtdose", str(case / "RD.dcm"), "--rtstruct", str(case / "RS.dcm"),
                 "--json", str(out), "--quiet"])  # fmt: skip
    assert code == 1 and not out.exists()


def test_unknown_geometric_type_is_an_error_naming_roi_and_type(case):
    _rewrite(
        case / "RS.dcm",
        lambda ds: setattr(_gtv_item(ds).ContourSequence[0], "ContourGeometricType", "SPLINE"),
    )
    with pytest.raises(StructureError, match=r"\[ROI 'GTV'\].*'SPLINE'"):
        read_rtstruct(case / "RS.dcm")


def test_contour_coordinate_of_1e15_is_refused(case):
    def change(ds):
        c = _gtv_item(ds).ContourSequence[0]
        values = list(c.ContourData)
        values[0] = "1e15"
        c.ContourData = values

    _rewrite(case / "RS.dcm", change)
    with pytest.raises(StructureError, match=r"\[ROI 'GTV'\] ContourData.*1e\+15 mm"):
        read_rtstruct(case / "RS.dcm")


def test_duplicated_contour_warns_with_roi_and_z(case):
    def change(ds):
        seq = _gtv_item(ds).ContourSequence
        seq.append(pydicom.dcmread(case / "RS.dcm").ROIContourSequence[0].ContourSequence[0])
        seq.append(seq[0])

    _rewrite(case / "RS.dcm", change)
    structures = read_rtstruct(case / "RS.dcm")
    gtv = structures.roi("GTV")
    z = gtv.contours[0].points_mm[0, 2]
    dup = [w for w in structures.warnings if "exact duplicate" in w]
    assert len(dup) == 1 and "'GTV'" in dup[0] and f"z = {z:.2f} mm" in dup[0]


def test_ct_slices_sharing_a_sop_instance_uid_are_refused(case):
    slices = sorted((case / "CT").glob("*.dcm"))
    uid = pydicom.dcmread(slices[0]).SOPInstanceUID
    _rewrite(slices[3], lambda ds: setattr(ds, "SOPInstanceUID", uid))
    with pytest.raises(SeriesError, match=rf"SOPInstanceUID.*{slices[0].name}"):
        load_ct_series(case / "CT")


def test_implausible_plan_values_are_refused(case):
    def negative(ds):
        ds.DoseReferenceSequence[0].TargetPrescriptionDose = "-145"

    shutil.copy(case / "RP.dcm", case / "RP2.dcm")
    _rewrite(case / "RP.dcm", negative)
    with pytest.raises(DicomInputError, match="TargetPrescriptionDose.*> 0 Gy"):
        read_rtplan(case / "RP.dcm")

    def far(ds):
        cp = ds.ApplicationSetupSequence[0].ChannelSequence[0].BrachyControlPointSequence[0]
        cp.ControlPoint3DPosition = ["0", "1e30", "0"]

    _rewrite(case / "RP2.dcm", far)
    with pytest.raises(DicomInputError, match="ControlPoint3DPosition.*1e\\+30 mm"):
        read_rtplan(case / "RP2.dcm")


def test_dose_grid_far_outside_any_patient_is_refused(case):
    _rewrite(case / "RD.dcm", lambda ds: setattr(ds, "PixelSpacing", ["1e6", "1e6"]))
    with pytest.raises(DicomInputError, match="PixelSpacing.*plausible patient extent"):
        read_rtdose(case / "RD.dcm")


def test_memory_budget_refuses_before_allocating(case, monkeypatch):
    """PixelSpacing 1e-9 mm: the DVH lattice of the GTV would be ~10^10 x 10^10 voxels."""
    _rewrite(case / "RD.dcm", lambda ds: setattr(ds, "PixelSpacing", ["1e-9", "1e-9"]))
    with pytest.raises(
        MemoryBudgetError, match=r"RD\.dcm.*DVH sampling.*PiB.*" + MEMORY_BUDGET_ENV
    ):
        evaluate_files(case / "RD.dcm", case / "RS.dcm")
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "0.5")
    assert memory_budget_bytes() == 0.5 * 2**30
    check_allocation((1024, 1024, 64), 8, "fits")  # exactly 0.5 GiB
    with pytest.raises(MemoryBudgetError, match="0.5 GiB"):
        check_allocation((1024, 1024, 65), 8, "too big")
    for bad in ("0", "-1", "abc", "nan"):
        monkeypatch.setenv(MEMORY_BUDGET_ENV, bad)
        with pytest.raises(ConfigError, match=MEMORY_BUDGET_ENV):
            memory_budget_bytes()


def test_memory_error_subclasses_the_project_error():
    assert issubclass(MemoryBudgetError, BrachyCryoError)


def _batch(case: Path, tmp_path: Path) -> tuple[int, dict]:
    out = tmp_path / "out" / "metrics.parquet"
    code = main(["dvh-batch", str(case), "--out", str(out), "--quiet"])
    manifest = json.loads(out.with_suffix(".manifest.json").read_text())
    return code, manifest


def test_dvh_batch_keeps_the_dvh_when_the_plan_is_unreadable(case, tmp_path, caplog):
    _rewrite(case / "RP.dcm", lambda ds: delattr(ds, "ApplicationSetupSequence"))
    caplog.set_level(logging.WARNING)
    code, manifest = _batch(case, tmp_path)
    (unit,) = manifest["units"]
    assert unit["status"] == "ok" and unit["n_rows"] > 0, unit
    assert unit["prescription_gy"] is None
    assert "not a brachytherapy plan" in unit["prescription_missing"]
    assert code == 0


def test_dvh_batch_fails_a_unit_whose_structure_set_is_empty(case, tmp_path):
    def empty(ds):
        ds.ROIContourSequence = Sequence([])

    _rewrite(case / "RS.dcm", empty)
    code, manifest = _batch(case, tmp_path)
    (unit,) = manifest["units"]
    assert unit["status"] == "failed" and "no ROI with closed contours" in unit["reason"]
    assert code == 2  # every unit failed


def test_dvh_batch_fails_a_unit_with_two_rois_of_one_name(case, tmp_path):
    def same(ds):
        for roi in ds.StructureSetROISequence:
            roi.ROIName = "GTV"

    _rewrite(case / "RS.dcm", same)
    code, manifest = _batch(case, tmp_path)
    (unit,) = manifest["units"]
    assert unit["status"] == "failed" and "ROINumber 1, 2" in unit["reason"]
    assert code == 2  # every unit failed


def test_dvh_quiet_still_warns_about_volume_outside_the_dose_grid(base_case, tmp_path, caplog):
    """The phantom's BODY (radius 26 mm) reaches past the dose grid (+-20 mm)."""
    out = tmp_path / "dvh.json"
    caplog.set_level(logging.WARNING)
    code = main(["dvh", "--rtdose", str(base_case.rtdose), "--rtstruct", str(base_case.rtstruct),
                 "--json", str(out), "--quiet"])  # fmt: skip
    assert code == 0
    outside = [r.getMessage() for r in caplog.records if "outside the dose grid" in r.getMessage()]
    assert len(outside) == 1 and "'BODY'" in outside[0]
    assert json.loads(out.read_text())["structures"]["BODY"]["volume_outside_dose_cc"] > 0
