"""Robustness evaluation of a small plan (4 mm phantom, one seed lesion, two OAR limits)."""

import json
import re

import numpy as np
import pydicom
import pytest

from brachycryo.cli import main
from brachycryo.dicom_io.rtplan import read_rtplan
from brachycryo.dose_kernels import dose_at_points
from brachycryo.planning.evaluate import evaluate_zoned_plan
from brachycryo.planning.pipeline import make_plan
from brachycryo.planning.spec import parse_plan_spec
from brachycryo.qa.dvh import dvh_from_samples
from brachycryo.qa.metrics import metric_value
from brachycryo.reports.plan import write_plan_folder
from brachycryo.robustness.error_model import ErrorModel, Magnitude
from brachycryo.robustness.plan_folder import read_plan_folder
from brachycryo.robustness.scenarios import RobustOptions, evaluate_robustness
from tests.reports.browser import needs_chromium, states

SPEC = {
    "case": {"phantom": {"seed": 2, "site": "abdomen", "spacing_mm": [4.0, 4.0, 4.0]}},
    "prescription": {"dose_gy": 110.0, "seed_model": "6711", "activity_mci": 0.8},
    "lesion": [
        {
            "roi": "GTV_Met2",
            "allocation": "seeds",
            "margin_mm": 5.0,
            "needle_direction": [0.0, 1.0, 0.0],
        },
    ],
    "oar": [{"roi": "Bowel", "d2cc_gy": 200.0}, {"roi": "Kidney_R", "d2cc_gy": 150.0}],
    "needles": {"spacing_mm": 8.0, "seed_spacing_mm": 10.0, "no_go": ["Bowel", "Aorta"]},
    "dose": {"spacing_mm": 4.0, "backend": "numba"},
}
SHIFT_MM = (1.5, -2.0, 0.75)
FAST = {"spacing_mm": 3.0, "max_points": 3000}


@pytest.fixture(scope="module")
def plan_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("plan")
    result = make_plan(parse_plan_spec(SPEC), out)
    write_plan_folder(result, evaluate_zoned_plan(result), out, report_html=False)
    return out


@pytest.fixture(scope="module")
def inputs(plan_dir):
    return read_plan_folder(plan_dir, **FAST)


def test_plan_folder_is_read(inputs, plan_dir):
    plan = read_rtplan(next(plan_dir.glob("RP*.dcm")))
    assert len(inputs.seeds) == plan.n_seeds > 0
    assert [z.name for z in inputs.zones] == ["GTV_Met2_SeedTarget"]
    assert set(inputs.oars) == {"Bowel", "Kidney_R"}
    assert [(lim.roi, lim.metric, lim.limit) for lim in inputs.limits] == [
        ("Bowel", "D2cc", 200.0), ("Kidney_R", "D2cc", 150.0)]  # fmt: skip
    # every seed lies on its needle's track (within the CSV's 0.1 mm rounding)
    rel = inputs.seeds.positions_mm - inputs.needle_entry_mm[inputs.seed_needle]
    u = inputs.needle_direction[inputs.seed_needle]
    off = rel - np.sum(rel * u, axis=1)[:, None] * u
    assert np.linalg.norm(off, axis=1).max() < 0.2
    # the sampled zone volume is its contoured volume to a few %
    metrics = json.loads((plan_dir / "metrics.json").read_text())
    vol = metrics["lesions"]["GTV_Met2"]["seed_target_volume_cc"]
    assert inputs.zones[0].volume_cc == pytest.approx(vol, rel=0.1)


def test_zero_errors_collapse_onto_the_nominal(inputs):
    r = evaluate_robustness(inputs, ErrorModel(), RobustOptions(n_scenarios=4, backend="numba"))
    for z in r.zones:
        assert z.p_d90 in (0.0, 1.0) and z.p_v100 in (0.0, 1.0)
        assert z.p_d90 == float(z.nominal_d90_gy >= z.prescription_gy)
        np.testing.assert_array_equal(z.d90_gy, z.nominal_d90_gy)
        np.testing.assert_array_equal(z.v100_pct, z.nominal_v100_pct)
        for band in z.dvh_bands_pct:
            np.testing.assert_array_equal(band, z.dvh_nominal_pct)
    for lim in r.limits:
        assert lim.p_met in (0.0, 1.0) and lim.p95 == lim.nominal
        for band in lim.dvh_bands_pct:
            np.testing.assert_array_equal(band, lim.dvh_nominal_pct)


def _shifted_rtplan(plan_dir, out):
    """The plan's RTPLAN with every source position moved by SHIFT_MM (pydicom edit)."""
    src = next(plan_dir.glob("RP*.dcm"))
    ds = pydicom.dcmread(src)
    for setup in ds.ApplicationSetupSequence:
        for ch in setup.ChannelSequence:
            for cp in ch.BrachyControlPointSequence:
                cp.ControlPoint3DPosition = [float(v) + s for v, s in
                                             zip(cp.ControlPoint3DPosition, SHIFT_MM)]  # fmt: skip
    ds.save_as(out)
    return read_rtplan(out)


def test_fixed_shift_reproduces_a_shifted_rtplan(inputs, plan_dir, tmp_path):
    """Every scenario of a pure fixed shift gives the D90, V100 and D2cc of a full
    recomputation from an RTPLAN whose positions were shifted by the same vector."""
    plan = _shifted_rtplan(plan_dir, tmp_path / "RP.shifted.dcm")
    seeds = plan.to_seeds()
    np.testing.assert_allclose(seeds.positions_mm, inputs.seeds.positions_mm + SHIFT_MM,
                               rtol=0, atol=1e-9)  # fmt: skip
    model = ErrorModel(fixed_shift_mm=SHIFT_MM)
    r = evaluate_robustness(inputs, model, RobustOptions(n_scenarios=3, backend="numba"))
    for z, rx in zip(r.zones, inputs.zone_prescription_gy):
        assert z.bin_width_gy == 0.1
        s = next(x for x in inputs.zones if x.name == z.name)
        dose = dose_at_points(seeds, s.points_mm, inputs.seed_model, backend="numba")
        dvh = dvh_from_samples(dose, s.point_cc, bin_width_gy=z.bin_width_gy)
        np.testing.assert_allclose(z.d90_gy, metric_value(dvh, "D90"), rtol=1e-9)
        np.testing.assert_allclose(z.v100_pct, metric_value(dvh, "V100", prescription_gy=rx),
                                   rtol=1e-9)  # fmt: skip
        assert np.abs(z.dvh_bands_pct[1] - z.dvh_nominal_pct).max() > 1.0  # the shift matters
    for lim in r.limits:
        s = inputs.oars[lim.roi]
        dose = dose_at_points(seeds, s.points_mm, inputs.seed_model, backend="numba")
        dvh = dvh_from_samples(dose, s.point_cc, bin_width_gy=lim.bin_width_gy)
        np.testing.assert_allclose(lim.values, metric_value(dvh, lim.metric), rtol=1e-9)


def test_template_errors_spread_the_metrics(inputs):
    model = ErrorModel(entry_mm=Magnitude(3.4, 1.7), angle_deg=Magnitude(2.8, 1.7),
                       depth_mm=Magnitude(5.2, 4.8))  # fmt: skip
    opts = RobustOptions(n_scenarios=30, backend="numba", seed=7)
    a = evaluate_robustness(inputs, model, opts)
    b = evaluate_robustness(inputs, model, opts)
    z = a.zones[0]
    np.testing.assert_array_equal(z.d90_gy, b.zones[0].d90_gy)  # seeded: deterministic
    assert z.d90_gy.std() > 1.0
    lo, mid, hi = z.dvh_bands_pct
    assert np.all(lo <= mid) and np.all(mid <= hi) and np.any(hi - lo > 5.0)
    assert a.worst[0].d90_over_rx == pytest.approx(z.d90_gy.min() / z.prescription_gy)
    # D90 >= Rx and V100 >= 90 % are one event (90 % of the zone gets the prescription)
    assert abs(z.p_d90 - z.p_v100) <= 1 / 30


def test_cli_writes_all_three_or_refuses(plan_dir, tmp_path):
    out = tmp_path / "robust"
    args = ["robust", str(plan_dir), "--out", str(out), "--scenarios", "5", "--backend",
            "numba", "--spacing-mm", "3", "--max-points", "2000", "--quiet"]  # fmt: skip
    assert main(args) == 0
    doc = json.loads((out / "robust.json").read_text())
    assert doc["n_scenarios"] == 5 and doc["error_model"]["name"] == "template"
    assert {"p_d90_ge_rx", "p_v100_ge_90pct", "d90_gy", "dvh"} <= set(doc["zones"][0])
    assert len(doc["worst_scenarios"]) == 5
    page = (out / "robust.html").read_text()
    assert "<svg" in page and "class='hot'" in page and "GTV_Met2_SeedTarget" in page
    assert page.count("<svg") == 1 and "grey planned, blue moved" in page
    # the DVH bands: nominal, median and band of 1 zone and 2 limited OARs (drawn by the page)
    dvh = json.loads(re.search(r'id="bc-dvh-data">(.*?)</script>', page).group(1))
    assert len(dvh["curves"]) == 2 * 3 and len(dvh["bands"]) == 3
    rows = (out / "robust.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2 + 2
    before = (out / "robust.json").read_text()
    assert main(args) != 0  # exists: refused, untouched
    assert (out / "robust.json").read_text() == before
    other = tmp_path / "none"
    assert main(["robust", str(tmp_path / "missing"), "--out", str(other), "--quiet"]) != 0
    assert not other.exists()


def test_cli_out_naming_a_file_is_refused_before_reading(tmp_path, capsys):
    (tmp_path / "FILE").write_text("not a folder")
    code = main(["robust", str(tmp_path / "nowhere"), "--out", str(tmp_path / "FILE"), "--quiet"])
    err = capsys.readouterr().err
    assert code != 0 and str(tmp_path / "FILE") in err and "nowhere" not in err


def test_cli_bad_error_model_file_names_the_key(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[needle]\nentry_mm = { mean = 3.0, sd = -1.0 }\n")
    code = main(["robust", str(tmp_path), "--out", str(tmp_path / "o"), "--error-model",
                 str(bad), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code != 0 and "bad.toml" in err and "needle.entry_mm" in err
    assert not (tmp_path / "o").exists()


@needs_chromium
def test_page_dvh_bands_in_the_browser(inputs, tmp_path):
    """robust.html opens from disk with no request; hovering the DVH at the prescription
    reads each structure's nominal volume and its 5-95 % band off the result's arrays; a
    toggled structure's curves and band disappear."""
    from brachycryo.reports.robust import page_html

    model = ErrorModel(entry_mm=Magnitude(3.4, 1.7), depth_mm=Magnitude(5.2, 4.8))
    r = evaluate_robustness(inputs, model, RobustOptions(n_scenarios=8, backend="numba"))
    page = tmp_path / "robust.html"
    page.write_text(page_html(r))
    z = r.zones[0]
    g = z.prescription_gy
    hover, hidden = states(page, [f"dvh_hover={g}", f"dvh_toggle={z.name}"])
    dose = hover["dvh_hover"]["dose_gy"]
    lo = np.interp(dose, z.dvh_dose_gy, z.dvh_bands_pct[0])
    hi = np.interp(dose, z.dvh_dose_gy, z.dvh_bands_pct[2])
    nominal = np.interp(dose, z.dvh_dose_gy, z.dvh_nominal_pct)
    assert hi - lo > 1.0  # the scenarios spread the DVH at the prescription
    assert hover["dvh_hover"]["bands_pct"][f"{z.name} p5-p95"] == pytest.approx([lo, hi], abs=0.1)
    assert hover["dvh_hover"]["volumes_pct"][f"{z.name} nominal"] == pytest.approx(nominal, abs=0.1)
    assert hover["dvh_bands"] == 3 and hover["dvh_visible"] == [z.name, "Bowel", "Kidney_R"]
    assert hidden["dvh_visible"] == ["Bowel", "Kidney_R"]


def test_large_structures_get_a_coarser_lattice(plan_dir):
    """Beyond max_points a structure is sampled on a coarser lattice: at most max_points
    points sharing out the volume found on the requested lattice, deterministic."""
    full = read_plan_folder(plan_dir, spacing_mm=2.0, max_points=10**9)
    capped = read_plan_folder(plan_dir, spacing_mm=2.0, max_points=400)
    again = read_plan_folder(plan_dir, spacing_mm=2.0, max_points=400)
    pairs = list(zip(full.zones, capped.zones))
    pairs += [(full.oars[k], capped.oars[k]) for k in full.oars]
    assert any(len(f.point_cc) > 400 for f, _ in pairs)  # the cap matters here
    for f, c in pairs:
        assert len(c.point_cc) <= 400
        assert c.volume_cc == pytest.approx(f.volume_cc, rel=1e-9)
    np.testing.assert_array_equal(capped.zones[0].points_mm, again.zones[0].points_mm)
