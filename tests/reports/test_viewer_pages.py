"""The slice viewer and the interactive DVH on the other pages, opened in headless Chromium:
the ice-ball page (an analytic temperature field: isotherm lines, probe, OAR, temperature
readout) and the post-implant page's plan vs post-implant DVH overlay."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest

from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.bioheat import BioheatResult
from brachycryo.cryo_iceball.probes import Probe, load_probe_catalogue
from brachycryo.cryo_iceball.report import summary_dict
from brachycryo.qa.evaluate import evaluate_plan
from brachycryo.qa.metrics import metric_value
from brachycryo.reports.html import ReportExtras, build_report_html
from brachycryo.reports.iceball import build_iceball_html, iceball_viewer_inputs, oar_layers
from brachycryo.reports.viewer import CompareField

from .browser import needs_chromium, screenshot, state, states
from .viewer_case import RX_GY, SIGMA_MM, build_case, circle_roi

T_BODY_C = 37.0
T_MIN_C = -190.0
ICE_SIGMA_MM = 12.0
R0_MM = ICE_SIGMA_MM * math.sqrt(math.log((T_BODY_C - T_MIN_C) / T_BODY_C))
"""Radius of the 0 °C isotherm of T = 37 - 227 exp(-(r / sigma)^2) about the origin."""
OAR_COLOUR = (0, 220, 0)


def _page_is_self_contained(text: str) -> None:
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<script src" not in text


@pytest.fixture(scope="module")
def iceball(tmp_path_factory):
    """The test plan's CT (40 x 40 x 20 at 2 mm); the simulation grid at 1.25 mm offset by a
    fraction of a voxel; a probe along +z with its tip at z = -8 mm; an OAR sphere."""
    case = build_case()
    grid = Grid.from_bounds((-25.3, -25.3, -15.3), (25.0, 25.0, 15.0), 1.25)
    c = grid.voxel_centres_mm()
    temp = T_BODY_C + (T_MIN_C - T_BODY_C) * np.exp(-np.sum(c**2, axis=-1) / ICE_SIGMA_MM**2)
    result = BioheatResult(
        grid, temp, temp, np.array([0.0]), {}, 1.0, 1, "numpy", np.zeros(grid.shape, bool)
    )
    probe = Probe(load_probe_catalogue()["generic_17g"], (0.0, 0.0, -8.0), (0.0, 0.0, 1.0))
    oar = np.linalg.norm(c - np.array([0.0, 20.0, 0.0]), axis=-1) < 3.0
    isotherms = (0.0, -20.0, -40.0)
    viewer = iceball_viewer_inputs(
        result,
        [probe],
        isotherms_c=isotherms,
        initial_temp_c=T_BODY_C,
        oars=oar_layers({"Rectum": oar}, grid, {"Rectum": OAR_COLOUR}),
        ct_hu=np.full(case.ct_grid.shape, 40.0),
        ct_grid=case.ct_grid,
    )
    summary = summary_dict(result, isotherms, lethal_isotherm_c=-40.0, oar_masks={"Rectum": oar})
    text = build_iceball_html(viewer, summary)
    path = tmp_path_factory.mktemp("iceball") / "iceball.html"
    path.write_text(text, encoding="utf-8")
    return case, grid, temp, path


def test_iceball_page_is_self_contained_and_small(iceball):
    text = iceball[3].read_text(encoding="utf-8")
    _page_is_self_contained(text)
    assert "temperature every simulation voxel" in text and "-40 °C (lethal)" in text
    assert len(text) < 400_000, len(text)


@needs_chromium
def test_iceball_readout_equals_the_temperature_at_the_voxel(iceball):
    _, grid, temp, path = iceball
    scale = float(temp.max() - temp.min()) / 65535
    points = ((0.0, 0.0, 1.0), (7.3, -4.1, 5.0), (-12.0, 9.5, -7.0))
    sts = states(path, ["probe=" + ",".join(map(str, p)) for p in points])
    for point, st in zip(points, sts, strict=True):
        r = st["readout"]
        assert np.allclose(r["mm"], point, atol=0.2)
        i, j, k = np.rint(grid.mm_to_ijk(r["mm"])).astype(int)
        assert r["ijk"] == [i, j, k]
        assert abs(r["value"] - temp[k, j, i]) <= scale / 2 + 1e-6


@needs_chromium
def test_iceball_slider_probe_and_oar_toggle(iceball):
    """Axial slices k = 3, 10, 14 lie at z = -13, 1, 9 mm: the probe (tip at z = -8 mm, up
    +z) crosses the last two; the OAR (sphere r 3 mm at y = 20, z = 0) is on slice 10 only;
    the 0, -20 and -40 °C lines are drawn on slice 10."""
    st = states(iceball[3], ["slider=3", "slider=10", "slider=14", "toggle=Rectum&slider=10"])
    assert [s["slice"] for s in st] == [3, 10, 14, 10]
    assert [s["tracks_drawn"] for s in st] == [0, 1, 1, 1]
    assert st[0]["edges"]["Rectum"] == 0 and st[1]["edges"]["Rectum"] > 0
    assert st[3]["edges"]["Rectum"] == 0 and st[3]["hidden"] == ["Rectum"]
    assert set(st[1]["isodose_segments"]) == {"0", "-20", "-40"}
    assert all(n > 0 for n in st[1]["isodose_segments"].values())


def _colour_pixels(img: np.ndarray, rgb, tol: float = 40.0) -> np.ndarray:
    return np.linalg.norm(img - np.asarray(rgb), axis=-1) < tol


@needs_chromium
def test_iceball_isotherm_where_the_field_puts_it(iceball, tmp_path):
    """On the slice z = 1 mm the 0 °C line is the circle of radius sqrt(R0² - z²)."""
    case, _, _, path = iceball
    hash_ = "solo=1&slider=10&instruments=0&toggle=Rectum&levels=0"
    st = state(path, hash_)
    img = screenshot(path, hash_, tmp_path)
    z_mm = case.ct_grid.ijk_to_mm([0, 0, 10])[2]
    r_expected = math.sqrt(R0_MM**2 - z_mm**2)
    ys, xs = np.nonzero(_colour_pixels(img, (0, 192, 255)))
    assert len(xs) > 100
    c = st["canvas"]
    sx, sy = c["width"] / case.ct_grid.shape[2], c["height"] / case.ct_grid.shape[1]
    u = (xs + 0.5 - c["left"]) / sx - 0.5
    v = (ys + 0.5 - c["top"]) / sy - 0.5
    pts = case.ct_grid.ijk_to_mm(np.column_stack([u, v, np.full(u.shape, 10.0)]))
    r = np.hypot(pts[:, 0], pts[:, 1])
    assert abs(np.median(r) - r_expected) < 0.3
    assert np.max(np.abs(r - r_expected)) < 1.0
    on = screenshot(path, "solo=1&slider=10&instruments=0&levels=0", tmp_path)
    assert _colour_pixels(on, OAR_COLOUR).sum() > 20
    assert _colour_pixels(img, OAR_COLOUR).sum() == 0


@pytest.fixture(scope="module")
def overlay(tmp_path_factory):
    """The test plan with a 'pre-plan' dose of 0.8 times the dose overlaid on its DVH."""
    case = build_case()
    rois = _rois(case)
    pre = evaluate_plan(
        0.8 * case.dose_gy, case.dose_grid, rois, prescription_gy=RX_GY, target="GTV"
    )
    ev = evaluate_plan(case.dose_gy, case.dose_grid, rois, prescription_gy=RX_GY, target="GTV")
    text = build_report_html(
        ev,
        dose_gy=case.dose_gy,
        dose_grid=case.dose_grid,
        ct_hu=np.full(case.ct_grid.shape, 40.0),
        ct_grid=case.ct_grid,
        rois=rois,
        target="GTV",
        render_3d=False,
        extras=ReportExtras(
            (), ("pre-plan", pre.dvhs), CompareField("pre-plan", 0.8 * case.dose_gy, case.dose_grid)
        ),
    )
    path = tmp_path_factory.mktemp("overlay") / "report.html"
    path.write_text(text, encoding="utf-8")
    return ev, pre, path, case


def _rois(case):
    zs = case.ct_grid.ijk_to_mm(np.column_stack([np.zeros(7), np.zeros(7), np.arange(7, 14)]))
    return [circle_roi(1, "GTV", (0.0, 0.0), 8.0, zs[:, 2], (128, 0, 255))]


@needs_chromium
def test_plan_dvh_overlaid_dashed_on_the_post_implant_dvh(overlay):
    """Hover at 1.1 Rx: each curve's volume is the DVH's V at that dose; the GTV toggle
    hides both the post-implant and the pre-plan curve."""
    ev, pre, path, _ = overlay
    text = path.read_text(encoding="utf-8")
    dvh = json.loads(re.search(r'id="bc-dvh-data">(.*?)</script>', text).group(1))
    assert [(c["label"], c["dash"]) for c in dvh["curves"]] == [
        ("GTV", False),
        ("GTV (pre-plan)", True),
    ]
    g = 1.1 * RX_GY
    hover, hidden = states(path, [f"dvh_hover={g}", "dvh_toggle=GTV"])
    got = hover["dvh_hover"]["volumes_pct"]
    dose = hover["dvh_hover"]["dose_gy"]
    want_post = metric_value(ev.dvhs["GTV"], f"V{dose}Gy", prescription_gy=RX_GY)
    want_pre = metric_value(pre.dvhs["GTV"], f"V{dose}Gy", prescription_gy=RX_GY)
    assert 5.0 < want_pre < want_post - 5.0  # the two curves apart at this dose
    assert got["GTV"] == pytest.approx(want_post, abs=0.5)
    assert got["GTV (pre-plan)"] == pytest.approx(want_pre, abs=0.5)
    assert hidden["dvh_visible"] == [] and hidden["dvh_hidden"] == ["GTV"]


def test_temperature_quantised_with_an_offset_within_half_a_step():
    from brachycryo.reports.viewer import quantise_field

    t = np.linspace(-185.85, 37.0, 1001).reshape(7, 11, 13)
    counts, offset, scale = quantise_field(t)
    assert offset == pytest.approx(-185.85) and counts.max() == 65535
    assert np.max(np.abs(offset + counts * scale - t)) <= scale / 2 + 1e-9
    dose_counts, dose_offset, _ = quantise_field(np.abs(t))
    assert dose_offset == 0.0 and dose_counts.min() > 0  # a dose keeps 0 Gy at count 0


@needs_chromium
def test_page_without_a_field(tmp_path):
    """A follow-up without a planned dose: the viewer shows the CT and the outlines, the
    readout gives the position and no value, the DVH is absent."""
    from brachycryo.reports.viewer import (
        MaskLayer,
        ViewerInputs,
        build_viewer_payload,
        html_document,
        viewer_section_html,
    )

    case = build_case()
    c = case.ct_grid.voxel_centres_mm()
    mask = np.linalg.norm(c, axis=-1) < 6.0
    inputs = ViewerInputs(
        np.full(case.ct_grid.shape, 40.0),
        case.ct_grid,
        None,
        None,
        None,
        masks=[MaskLayer("Tumour", (0, 255, 140), mask, case.ct_grid)],
        target="Tumour",
    )
    payload = build_viewer_payload(inputs)
    assert payload.data["dose"] is None and payload.description.endswith("no dose.")
    path = tmp_path / "page.html"
    path.write_text(html_document("t", viewer_section_html(payload, None), ""))
    st = state(path, "probe=1,2,1")
    assert st["edges"]["Tumour"] > 0 and st["isodose_segments"] == {}
    assert np.allclose(st["readout"]["mm"], [1, 2, 1], atol=0.2)
    assert st["readout"]["value"] is None and "dvh_visible" not in st


@needs_chromium
def test_pre_plan_isodoses_dashed_in_the_slice_viewer(overlay, tmp_path):
    """The pre-plan dose (0.8 times the dose) has its 100 % line on the circle of radius
    sqrt(σ² ln 1.6 - z²): drawn with it on, gone with it off; the readout gives both doses
    at their RTDOSE voxel."""
    _, _, path, case = overlay
    hash_ = "solo=1&slider=12&instruments=0&toggle=GTV&levels=100"
    on, off, probe = states(path, [hash_, hash_ + "&compare=0", "probe=7.3,-4.1,5"])
    assert on["compare_segments"]["100"] > 0 and off["compare_segments"] == {}
    assert on["isodose_segments"] == off["isodose_segments"]
    r = probe["readout"]
    i, j, k = r["ijk"]
    scale = float(case.dose_gy.max()) / 65535
    assert abs(r["value"] - case.dose_gy[k, j, i]) <= scale / 2 + 1e-6
    assert abs(r["compare_value"] - 0.8 * case.dose_gy[k, j, i]) <= 0.8 * scale / 2 + 1e-6
    z_mm = case.ct_grid.ijk_to_mm([0, 0, 12])[2]
    r_pre = math.sqrt(SIGMA_MM**2 * math.log(1.6) - z_mm**2)
    near_pre = []
    for h in (hash_, hash_ + "&compare=0"):
        img = screenshot(path, h, tmp_path)
        ys, xs = np.nonzero(_colour_pixels(img, (0, 192, 255)))
        c = on["canvas"]
        sx, sy = c["width"] / case.ct_grid.shape[2], c["height"] / case.ct_grid.shape[1]
        u, v = (xs + 0.5 - c["left"]) / sx - 0.5, (ys + 0.5 - c["top"]) / sy - 0.5
        pts = case.ct_grid.ijk_to_mm(np.column_stack([u, v, np.full(u.shape, 12.0)]))
        near_pre.append(int(np.sum(np.abs(np.hypot(pts[:, 0], pts[:, 1]) - r_pre) < 0.5)))
    assert near_pre[0] > 50 and near_pre[1] == 0
