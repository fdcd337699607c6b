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
from brachycryo.reports.plots import Instruments, NeedleOverlay, ProbeOverlay


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
        instruments=Instruments(
            probes=[
                ProbeOverlay(tuple(base), tuple(tip), tuple(tip), tuple(tip + [0, 0, 40.0]))
                for tip, base in probes
            ],
            needles=[NeedleOverlay(tuple(seeds[0] + [0, -80.0, 0]), tuple(seeds[0]))],
        ),
        isotherms=isotherms,
        isotherm_grid=case.grid,
        constraints=constraints,
    )
    return ev, text, tmp


def test_report_is_self_contained_with_all_parts(report):
    ev, text, _ = report
    assert "<table>" in text and "Constraints" in text and "Implant quality indices" in text
    # nothing fetched: inline scripts only (the interactive viewer), under a CSP that
    # forbids every network source
    assert 'src="http' not in text and "<script src" not in text
    assert "default-src 'none'" in text and 'id="bc-data"' in text
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


# ----------------------------------------------------------------------------- instruments
FIG_GRID = Grid((11, 20, 30), (0.0, 0.0, 0.0), (2.0, 2.0, 4.0))  # x 0..58, y 0..38, z 0..40


def _lines(fig, colour):
    from matplotlib.colors import to_hex

    ax = fig.axes[0]
    return [ln for ln in ax.get_lines() if to_hex(ln.get_color()) == colour and ln.get_xdata().size]


def test_slab_part_is_the_segment_within_half_a_voxel_of_the_plane():
    from brachycryo.reports.plots import _PlaneView, _slab_part

    view = _PlaneView(FIG_GRID, 0, 1, 5)  # axial plane k = 5
    a, b = np.array([0.0, 0.0, 0.0]), np.array([10.0, 20.0, 10.0])  # k 0 -> 10
    np.testing.assert_allclose(_slab_part(view, a, b), [[4.5, 9.0, 4.5], [5.5, 11.0, 5.5]])
    np.testing.assert_allclose(_slab_part(view, b, a), [[5.5, 11.0, 5.5], [4.5, 9.0, 4.5]])
    flat = np.array([[1.0, 2.0, 5.2], [8.0, 3.0, 5.2]])  # in the slice: all of it
    np.testing.assert_allclose(_slab_part(view, *flat), flat)
    assert _slab_part(view, flat[0] + [0, 0, 1], flat[1] + [0, 0, 1]) is None  # next slice
    assert _slab_part(view, a, np.array([0.0, 0.0, 4.0])) is None  # stops before the slice


def test_slice_figure_draws_tracks_tips_zones_needles_with_a_legend():
    """An axial track in the slice is drawn solid where it lies; a track along z only
    crosses the slice (an X); the legend names every kind."""
    from brachycryo.reports.plots import (
        NEEDLE_COLOUR,
        PROBE_ACTIVE_COLOUR,
        PROBE_TRACK_COLOUR,
        slice_figure,
    )

    z5 = 20.0  # k = 5
    in_slice = ProbeOverlay((50.0, 10.0, z5), (10.0, 10.0, z5), (10.0, 10.0, z5), (30.0, 10.0, z5))
    across = ProbeOverlay((20.0, 30.0, 40.0), (20.0, 30.0, 4.0), (20.0, 30.0, 4.0),
                          (20.0, 30.0, 12.0))  # fmt: skip
    needle = NeedleOverlay((40.0, 0.0, 8.0), (40.0, 36.0, 8.0))  # in slice k = 2 only
    hu = np.zeros(FIG_GRID.shape)
    drawn = Instruments(probes=[in_slice, across], needles=[needle])
    fig = slice_figure(hu, FIG_GRID, "axial", 5, instruments=drawn)
    solid = [ln for ln in _lines(fig, PROBE_TRACK_COLOUR) if ln.get_linestyle() == "-"]
    assert len(solid) == 1  # only the in-slice track runs in the slice
    np.testing.assert_allclose(solid[0].get_xdata(), [50.0, 10.0])
    np.testing.assert_allclose(solid[0].get_ydata(), [10.0, 10.0])
    crosses = [ln for ln in _lines(fig, PROBE_TRACK_COLOUR) if ln.get_marker() == "X"]
    assert len(crosses) == 1
    np.testing.assert_allclose([crosses[0].get_xdata()[0], crosses[0].get_ydata()[0]], [20, 30])
    zone = [ln for ln in _lines(fig, PROBE_ACTIVE_COLOUR) if ln.get_linestyle() == "-"]
    np.testing.assert_allclose(zone[0].get_xdata(), [10.0, 30.0])
    needle_lines = _lines(fig, NEEDLE_COLOUR)
    assert [ln.get_linestyle() for ln in needle_lines] == ["--"]  # projected only
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    for label in ("probe tracks (skin -> tip)", "probe active zones", "probe tips",
                  "seed needles"):  # fmt: skip
        assert label in labels
