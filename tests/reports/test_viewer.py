"""The interactive report page opened in headless Chromium (Debian package ``chromium``).

The page is driven through its URL-hash test hook (actions go through the same DOM events
as a user: slider ``input``, checkbox clicks, ``mousemove`` on the canvas) and read back
from the state it writes into the DOM (``--dump-dom``) and from screenshots.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from brachycryo.core.grid import Grid
from brachycryo.reports.viewer import (
    MAX_CT_VOXELS,
    CompareField,
    ViewerInputs,
    build_viewer_payload,
    dose_stride,
    inplane_factor,
)

from .browser import chromium, needs_chromium, screenshot, state, states
from .viewer_case import R100_MM, RX_GY, SIGMA_MM, build_case, circle_roi


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    case = build_case()
    path = tmp_path_factory.mktemp("viewer") / "report.html"
    path.write_text(case.html, encoding="utf-8")
    return case, path


def test_page_is_self_contained(page):
    _, path = page
    text = path.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in text and "default-src 'none'" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert not re.search(r"@import|url\(\s*['\"]?https?:", text, re.I)
    assert "<script src" not in text


def test_512_ct_with_dose_fits_30_mb():
    """A 512 x 512 x 150 CT with a dose grid as large, and a pre-plan dose as large drawn
    beside it (the post-implant page): the page data stay under 30 MB."""
    shape = (150, 512, 512)
    assert inplane_factor(shape) == 2 and 150 * 256 * 256 <= MAX_CT_VOXELS
    grid = Grid(shape, (0.0, 0.0, 0.0), (0.9, 0.9, 2.0))
    ct = np.zeros(shape, dtype=np.int16)
    dose = np.zeros(shape, dtype=np.float32)
    dose[75, 256, 256] = 10.0
    s = dose_stride(shape)
    pre = CompareField("pre-plan", dose, grid)
    payload = build_viewer_payload(ViewerInputs(ct, grid, dose, grid, 145.0, compare=pre))
    size = len(json.dumps(payload.data))
    assert size <= 30e6, size
    assert payload.data["compare"]["shape"] == payload.data["dose"]["shape"]
    assert payload.data["ct"]["shape"] == [150, 256, 256]
    assert payload.data["dose"]["shape"] == [-(-n // s) for n in shape]
    assert "block mean ×2" in payload.description


@needs_chromium
def test_readout_equals_dose_at_the_rtdose_voxel(page):
    case, path = page
    scale = float(np.max(case.dose_gy)) / 65535
    points = ((0.0, 0.0, 1.0), (7.3, -4.1, 5.0), (-12.0, 9.5, -7.0))
    sts = states(path, ["probe=" + ",".join(map(str, p)) for p in points])
    for point, st in zip(points, sts, strict=True):
        r = st["readout"]
        assert np.allclose(r["mm"], point, atol=0.2)  # the mouse lands on the point
        i, j, k = np.rint(case.dose_grid.mm_to_ijk(r["mm"])).astype(int)
        assert r["ijk"] == [i, j, k]
        assert abs(r["value"] - case.dose_gy[k, j, i]) <= scale / 2 + 1e-6


@needs_chromium
def test_slider_keys_wheel_and_toggle(page):
    _, path = page
    steps = ["slider=3", "keys=ArrowUp,ArrowUp", "keys=PageDown", "wheel=4", "wheel=-2"]
    steps += ["view=sagittal&slider=39", "view=axial&slider=10", "toggle=GTV"]
    steps += ["view=coronal&slider=20", "view=sagittal&slider=19"]
    st = states(path, steps)
    # the GTV (toggled off by now) is hidden in every view; the cord (y = 26 mm, j = 32)
    # is outlined on the sagittal slice through the axis, not on the coronal one there
    assert st[8]["edges"]["GTV"] == st[9]["edges"]["GTV"] == 0
    assert st[8]["edges"]["Cord"] == 0 and st[9]["edges"]["Cord"] > 0
    assert state(path, "")["slice"] == 10  # opens on the target's centroid (slices 7-13)
    assert [s["slice"] for s in st[:5]] == [3, 5, 0, 4, 2]
    assert st[0]["nslices"] == 20 and st[5]["nslices"] == 40 and st[5]["slice"] == 39
    on, off = st[6], st[7]
    assert on["edges"]["GTV"] > 0 and off["edges"]["GTV"] == 0
    assert off["edges"]["Cord"] == on["edges"]["Cord"] > 0


def _colour_pixels(img: np.ndarray, rgb, tol: float = 40.0) -> np.ndarray:
    return np.linalg.norm(img - np.asarray(rgb), axis=-1) < tol


@needs_chromium
def test_toggled_structure_disappears_from_the_screenshot(page, tmp_path):
    _, path = page
    gtv = (128, 0, 255)
    on = screenshot(path, "solo=1&slider=10&instruments=0", tmp_path)
    off = screenshot(path, "solo=1&slider=10&instruments=0&toggle=GTV", tmp_path)
    assert _colour_pixels(on, gtv).sum() > 100
    assert _colour_pixels(off, gtv).sum() == 0


@needs_chromium
def test_rx_isodose_where_the_dose_grid_puts_it(page, tmp_path):
    """Dose 2 Rx exp(-r²/σ²): on the slice z = 5 mm the 100 % line is the circle of radius
    sqrt(σ² ln 2 - z²) about the axis; its pixels on the screenshot lie on that circle."""
    case, path = page
    hash_ = "solo=1&slider=12&instruments=0&toggle=GTV,Cord&levels=100"
    st = state(path, hash_)
    img = screenshot(path, hash_, tmp_path)
    z_mm = case.ct_grid.ijk_to_mm([0, 0, 12])[2]
    r_expected = np.sqrt(SIGMA_MM**2 * np.log(2.0) - z_mm**2)
    assert r_expected < R100_MM
    line = _colour_pixels(img, (0, 192, 255))
    ys, xs = np.nonzero(line)
    assert len(xs) > 100
    c = st["canvas"]
    sx = c["width"] / case.ct_grid.shape[2]
    sy = c["height"] / case.ct_grid.shape[1]
    u = (xs + 0.5 - c["left"]) / sx - 0.5
    v = (ys + 0.5 - c["top"]) / sy - 0.5
    pts = case.ct_grid.ijk_to_mm(np.column_stack([u, v, np.full(u.shape, 12.0)]))
    r = np.hypot(pts[:, 0], pts[:, 1])
    assert abs(np.median(r) - r_expected) < 0.3
    assert np.max(np.abs(r - r_expected)) < 1.0
    assert st["isodose_segments"] == {"100": st["isodose_segments"]["100"]}


@needs_chromium
def test_dvh_toggle_and_hover(page):
    _, path = page
    st, st2 = states(path, [f"dvh_hover={RX_GY}", "dvh_toggle=Cord"])
    assert st["dvh_visible"] == ["GTV", "Cord"]
    assert abs(st["dvh_hover"]["dose_gy"] - RX_GY) < 0.5
    # the GTV (radius 8 mm, |z| <= 8 mm) lies inside the 100 % sphere (radius 12.5 mm),
    # the cord (22 mm or more off the axis) outside it
    assert R100_MM > np.hypot(8.0, 8.0) and 26.0 - 4.0 > R100_MM
    assert st["dvh_hover"]["volumes_pct"] == pytest.approx({"GTV": 100.0, "Cord": 0.0}, abs=0.5)
    assert st2["dvh_visible"] == ["GTV"] and st2["dvh_hidden"] == ["Cord"]


def test_dvh_payload_is_resampled_on_the_curve():
    """A DVH of 10^5 bins goes to the page as <= DVH_POINTS points on the same curve."""
    from brachycryo.qa.dvh import DVH
    from brachycryo.reports.viewer import DVH_POINTS, dvh_payload

    edges = np.linspace(0.0, 1000.0, 100_001)
    diff = np.zeros(100_000)
    diff[:20_000] = 1e-4  # uniform 0-200 Gy: cumulative V(D) = 100 (1 - D / 200) %
    d = DVH("T", edges, diff, 0.0, 200.0, 100.0)
    (p,) = dvh_payload([d], {})
    assert len(p["dose"]) <= DVH_POINTS and p["dose"][-1] == pytest.approx(200.0, abs=0.02)
    dose = np.asarray(p["dose"])
    assert np.allclose(p["vol"], 100.0 * (1.0 - dose / 200.0), atol=1e-3)


def test_viewer_opens_on_the_target_centroid():
    grid = Grid((20, 40, 40), (-39.0, -39.0, -19.0), (2.0, 2.0, 2.0))
    zs = grid.ijk_to_mm(np.column_stack([np.zeros(3), np.zeros(3), np.arange(2, 5)]))[:, 2]
    roi = circle_roi(1, "T", (-21.0, 11.0), 3.0, zs, (255, 0, 0))  # i = 9, j = 25, k = 3
    ct = np.zeros(grid.shape)
    inputs = ViewerInputs(ct, grid, ct, grid, 1.0, rois=[roi], target="T")
    assert build_viewer_payload(inputs).data["start"] == [3, 25, 9]


@needs_chromium
def test_seeds_and_tracks_drawn_where_they_cross_the_slice(page):
    """Seeds at z = 1, 1, 9 mm; a needle from z = 40 to 1 mm, a probe from 40 to -5 mm;
    axial slices k = 3, 10, 14 lie at z = -13, 1, 9 mm (2 mm thick)."""
    st = states(page[1], ["slider=3", "slider=10", "slider=14", "instruments=0"])
    assert [s["seeds_drawn"] for s in st] == [0, 2, 1, 0]
    assert [s["tracks_drawn"] for s in st] == [0, 2, 2, 0]


@needs_chromium
def test_a_network_request_would_be_caught(page, tmp_path):
    """The console check of :func:`chromium` sees a request the page should not make."""
    text = page[1].read_text(encoding="utf-8")
    bad = tmp_path / "bad.html"
    bad.write_text(text.replace("<h2>Slice viewer</h2>", '<img src="http://127.0.0.1:9/x.png">'))
    with pytest.raises(AssertionError, match=r"127\.0\.0\.1:9/x\.png"):
        chromium(["--dump-dom"], bad.as_uri())
