"""The plan's case from a CT + RTSTRUCT that lack what the planner needs (issue 14 item 9):
no contoured BODY (the outline is derived from the CT, and said), a CT that does not cover
the lesion (an error naming the lesion and the CT's extent)."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from brachycryo.cli import main
from brachycryo.core.errors import GeometryError
from brachycryo.dicom_io.ct_series import write_ct_series
from brachycryo.dicom_io.rasterize import roi_mask
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
from brachycryo.phantoms import build_phantom, write_phantom
from brachycryo.planning.case import load_case, structures_on_grid, with_body_outline
from brachycryo.planning.spec import parse_plan_spec
from tests.planning.test_plan_end_to_end import _toml
from tests.planning.test_plan_failures import CRYO_ONLY


@pytest.fixture(scope="module")
def phantom(tmp_path_factory):
    root = tmp_path_factory.mktemp("case_ct")
    case = build_phantom(seed=2, site="abdomen", spacing_mm=(4.0, 4.0, 4.0))
    files = write_phantom(root / "full", case)
    no_body = [
        RoiSpec(name=n, mask=m, interpreted_type=case.organs[n].interpreted_type)
        for n, m in case.masks.items()
        if m.any() and n != "BODY"
    ]
    rs = write_rtstruct(root / "RS.nobody.dcm", no_body, files.ct, label="no body")
    assert "BODY" not in rs.roi_names
    return root, case, files


def _spec(root, rtstruct, ct="full/CT"):
    doc = {k: v for k, v in CRYO_ONLY.items() if k != "case"}
    return {"case": {"ct": str(root / ct), "rtstruct": str(root / rtstruct)}, **doc}


def test_body_outline_from_the_ct_matches_the_phantom_body(phantom, tmp_path):
    root, case, files = phantom
    spec = parse_plan_spec(_spec(root, "RS.nobody.dcm"))
    pc = load_case(spec.case, tmp_path)
    assert len(pc.notes) == 1 and "derived from the CT" in pc.notes[0]
    body = pc.structures.roi("BODY")
    assert body.interpreted_type == "EXTERNAL" and body.closed_contours
    derived = roi_mask(body, files.ct.grid, slice_thickness_mm=4.0)
    truth = case.masks["BODY"]  # the phantom's body, built from its geometry
    dice = 2 * (derived & truth).sum() / (derived.sum() + truth.sum())
    assert dice > 0.99, dice


def test_an_empty_body_roi_is_replaced(phantom):
    _, _, files = phantom
    ss = files.structures
    emptied = tuple(dataclasses.replace(r, contours=()) if r.name == "BODY" else r for r in ss.rois)
    out, notes = with_body_outline(dataclasses.replace(ss, rois=emptied), files.ct)
    assert "its BODY ROI 'BODY' has no contours" in notes[0]
    assert [r.name for r in out.rois].count("BODY") == 1 and out.roi("BODY").closed_contours
    assert with_body_outline(ss, files.ct) == (ss, ())  # a contoured BODY is kept as it is


def test_plan_without_a_body_roi_says_so_in_metrics(phantom, tmp_path, capsys, caplog):
    root, _, _ = phantom
    spec_path = tmp_path / "plan.toml"
    spec_path.write_text(_toml(_spec(root, "RS.nobody.dcm")))
    code = main(["plan", str(spec_path), "--out", str(tmp_path / "out"), "--quiet",
                 "--no-report"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 0, err
    assert "derived from the CT" in caplog.text  # the log
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert any("derived from the CT" in n for n in metrics["notes"])


def test_ct_that_misses_the_lesion_is_an_error_naming_it(phantom, tmp_path, capsys):
    root, case, files = phantom
    grid = files.ct.grid
    met1 = np.nonzero(case.masks["GTV_Met1"].any(axis=(1, 2)))[0]
    k_hi = int(met1.min()) - 3  # slices below the lesion only
    assert k_hi > 2
    write_ct_series(root / "cropped", case.hu[:k_hi], grid.cropped((0, 0, 0), (grid.shape[2],
                    grid.shape[1], k_hi)), context=files.ct.context, overwrite=True)  # fmt: skip
    spec = parse_plan_spec(_spec(root, "full/RS.phantom.dcm", ct="cropped"))
    pc = load_case(spec.case, tmp_path)
    with pytest.raises(GeometryError, match=r"lesion GTV_Met1 lies wholly outside the CT"):
        structures_on_grid(spec, pc)
    spec_path = tmp_path / "plan.toml"
    spec_path.write_text(_toml(_spec(root, "full/RS.phantom.dcm", ct="cropped")))
    code = main(["plan", str(spec_path), "--out", str(tmp_path / "out"), "--quiet"])
    line = capsys.readouterr().err.strip()
    assert code == 1 and "\n" not in line
    assert "GTV_Met1" in line and "the CT spans" in line and "z " in line
    assert not (tmp_path / "out").exists()
    assert read_rtstruct(root / "full" / "RS.phantom.dcm")  # inputs untouched, still read
