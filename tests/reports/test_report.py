"""The plan report on the phantom: self-contained HTML with table, constraints and images."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest

from brachycryo.core.errors import ConfigError, OutputExistsError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
from brachycryo.phantoms import build_phantom
from brachycryo.qa.evaluate import evaluate_plan
from brachycryo.reports.html import Constraint, build_report_html, write_report


def plan_inputs(tmp_path):
    """Phantom at 3 mm, a seed-like dose around the tumour, two probes and isotherms."""
    from brachycryo.dicom_io.common import StudyContext
    from brachycryo.dicom_io.ct_series import write_ct_series

    case = build_phantom(seed=0, spacing_mm=(3.0, 3.0, 3.0))
    ct = write_ct_series(tmp_path / "CT", case.hu, case.grid, context=StudyContext())
    names = [case.index_tumour, "SpinalCord", "Liver", "Kidney_R"]
    rs = write_rtstruct(
        tmp_path / "RS.dcm",
        [RoiSpec(n, mask=case.masks[n], color_rgb=case.organs[n].color_rgb) for n in names],
        ct,
    )
    tumour = case.masks[case.index_tumour]
    pts = case.grid.voxel_centres_mm()[tumour]
    rng = np.random.default_rng(3)
    seeds = pts[rng.choice(len(pts), 40, replace=False)]
    lo, hi = pts.min(axis=0) - 15, pts.max(axis=0) + 15
    dgrid = Grid.from_bounds(lo, hi, 2.0)
    c = dgrid.voxel_centres_mm()
    dose = np.zeros(dgrid.shape)
    for s in seeds:
        dose += 3000.0 / (np.sum((c - s) ** 2, axis=-1) + 4.0)
    centre = pts.mean(axis=0)
    probes = [
        (centre + [5, 0, 0], centre + [5, 0, 120]),
        (centre - [5, 0, 0], centre + [-5, 0, 120]),
    ]
    cg = case.grid.voxel_centres_mm()
    d_probe = np.minimum(
        *(np.linalg.norm(np.cross(cg - tip, [0, 0, 1]), axis=-1) for tip, _ in probes)
    )
    near_tip = np.abs(cg[..., 2] - centre[2]) < 20
    isotherms = {"0 °C": (d_probe < 15) & near_tip, "−40 °C": (d_probe < 8) & near_tip}
    return case, rs, dose, dgrid, seeds, probes, isotherms


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    case, rs, dose, dgrid, seeds, probes, isotherms = plan_inputs(tmp)
    target = case.index_tumour
    ev = evaluate_plan(dose, dgrid, rs.rois, prescription_gy=145.0, target=target)
    constraints = [
        Constraint.parse(f"{target} D90 >= 145"),
        Constraint(target, "V100", ">=", 95.0),
        Constraint("SpinalCord", "D0.1cc", "<=", 1000.0),
        Constraint("Missing", "Dmax", "<=", 10.0),
    ]
    text = build_report_html(
        ev,
        dose_gy=dose,
        dose_grid=dgrid,
        ct_hu=case.hu,
        ct_grid=case.grid,
        rois=rs.rois,
        target=target,
        seeds_mm=seeds,
        probes_mm=probes,
        isotherms=isotherms,
        isotherm_grid=case.grid,
        constraints=constraints,
    )
    return ev, text, tmp


def test_report_is_self_contained_with_all_parts(report):
    ev, text, _ = report
    assert "<table>" in text and "Constraints" in text and "Implant quality indices" in text
    assert 'src="http' not in text and "<script" not in text  # nothing fetched
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', text)
    # DVH + 3 slices (+ 3-D view when off-screen rendering works)
    assert len(images) >= 4
    for b64 in images:
        assert base64.b64decode(b64)[:8] == b"\x89PNG\r\n\x1a\n"
    if len(images) == 4:
        assert "3-D view not rendered" in text
    for name in ev.metrics:
        assert name in text


def test_constraints_pass_fail_follow_the_metrics(report):
    ev, text, _ = report
    target = ev.indices["target"]
    d90 = ev.metrics[target]["d90_gy"]
    c = Constraint(target, "D90", ">=", 145.0)
    value, ok = c.evaluate(ev)
    assert value == pytest.approx(d90)
    assert ok == (d90 >= 145.0)
    assert Constraint(target, "D90", ">=", d90 + 1).evaluate(ev)[1] is False
    assert Constraint(target, "D90", "<=", d90 + 1).evaluate(ev)[1] is True
    assert Constraint("Missing", "Dmax", "<=", 1).evaluate(ev) == (None, None)
    assert "not evaluated" in text
    with pytest.raises(ConfigError):
        Constraint.parse("GTV D90 145")
    with pytest.raises(ConfigError):
        Constraint("GTV", "D90", "==", 1.0)


def test_write_report_is_atomic_and_refuses_overwrite(report):
    _, text, tmp = report
    path = write_report(tmp / "report.html", text)
    assert path.read_text(encoding="utf-8") == text
    with pytest.raises(OutputExistsError):
        write_report(path, text)
    write_report(path, text, overwrite=True)
