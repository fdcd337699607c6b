"""The sequential seeds-then-cryo arm (issue 15, item 2): cryo planned around implanted seeds.

CI form of the chain: a seed plan on the phantom, whose RTPLAN is then the implanted plan of
a zoned cryo plan on the same CT (``benchmarks`` would run it through a rendered post-implant
CT and ``postimplant``; here the first plan's RTPLAN stands for its output, and its needle
tracks are known, which makes the clearance harder to keep).
"""

import json
import os

import numpy as np
import pydicom
import pytest

from brachycryo.cli import main
from brachycryo.dicom_io.ct_series import load_ct_series
from brachycryo.dicom_io.rasterize import roi_mask
from brachycryo.dicom_io.rtdose import read_rtdose
from brachycryo.dicom_io.rtplan import read_rtplan
from brachycryo.dicom_io.rtstruct import read_rtstruct
from tests.planning.test_plan_end_to_end import _toml

RX_GY = 110.0
CLEARANCE_MM = 5.0

SEED_PLAN = {
    "case": {"phantom": {"seed": 2, "site": "abdomen", "spacing_mm": [4.0, 4.0, 4.0]}},
    "prescription": {"dose_gy": RX_GY, "seed_model": "6711", "activity_mci": 0.8},
    "lesion": [
        {
            "roi": "GTV_Met1",
            "allocation": "zoned",
            "core": "margin",
            "core_margin_mm": 6.0,
            "margin_mm": 5.0,
            "needle_direction": [0.0, 1.0, 0.0],
        }
    ],
    "needles": {"spacing_mm": 14.0, "seed_spacing_mm": 10.0, "no_go": ["Bowel", "Aorta"]},
    "dose": {"spacing_mm": 4.0, "backend": "numba"},
}


def _cryo_spec(first, spec_dir, implanted, **cryo):
    return {
        "case": {
            "ct": str(first / "case" / "CT"),
            "rtstruct": str(first / "case" / "RS.phantom.dcm"),
            "implanted_plan": os.path.relpath(implanted, spec_dir),  # relative to the spec
        },
        "prescription": {"dose_gy": RX_GY, "seed_model": "6711", "activity_mci": 0.8},
        "lesion": [
            {
                "roi": "GTV_Met1",
                "allocation": "zoned",
                "core": "cryo",
                "core_margin_mm": 4.0,
                "margin_mm": 5.0,
            }
        ],
        "needles": {"no_go": ["Bowel", "Aorta"], "direction": [0.0, 1.0, 0.0]},
        "cryo": {"probe_model": "generic_2p4mm", "seed_clearance_mm": CLEARANCE_MM, **cryo},
        "dose": {"spacing_mm": 4.0, "backend": "numba"},
    }


def _plan(folder, doc, name, *, report=False):
    spec = folder / f"{name}.toml"
    spec.write_text(_toml(doc))
    out = folder / name
    extra = [] if report else ["--no-report"]
    return main(["plan", str(spec), "--out", str(out), "--quiet", *extra]), out


@pytest.fixture(scope="module")
def first(tmp_path_factory):
    """The seed plan: its RTPLAN is the implanted plan of the tests."""
    folder = tmp_path_factory.mktemp("seq")
    code, out = _plan(folder, SEED_PLAN, "seeds")
    # sparse needles (14 mm, to leave room for probes between their tracks) miss the V100
    # goal (exit 3): the seeds written are still an implant to plan around
    assert code in (0, 3) and (out / "RP.seeds.dcm").exists()
    return out


@pytest.fixture(scope="module")
def sequential(first):
    doc = _cryo_spec(first, first.parent, first / "RP.seeds.dcm")
    code, out = _plan(first.parent, doc, "cryo", report=True)
    assert code == 0
    return out


def _segment_point_mm(a, b, p):
    ab = b - a
    t = np.clip((p - a) @ ab / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[:, None] * ab), axis=1)


def test_every_probe_track_keeps_the_clearance_from_every_seed(first, sequential):
    metrics = json.loads((sequential / "metrics.json").read_text())
    block = metrics["lesions"]["GTV_Met1"]
    seeds = read_rtplan(first / "RP.seeds.dcm").positions_mm
    assert metrics["n_seeds"] == 0 and len(seeds) >= 3  # add_seeds defaults to false
    assert block["sequential"]["n_implanted_seeds"] == len(seeds)
    probes = block["cryo"]["probes"]
    assert probes
    reported = []
    for probe, seq in zip(probes, block["sequential"]["probes"], strict=True):
        tip, entry = np.array(probe["tip_mm"]), np.array(probe["entry_mm"])
        assert seq["tip_mm"] == probe["tip_mm"] and seq["direction"] == probe["direction"]
        d = _segment_point_mm(tip, entry, seeds).min()  # the whole shaft, tip to skin
        assert d >= CLEARANCE_MM
        assert seq["min_seed_distance_mm"] == pytest.approx(d, abs=0.02)
        reported.append(d)
    assert block["sequential"]["min_probe_seed_distance_mm"] == pytest.approx(
        min(reported), abs=0.02
    )
    # the needle tracks of the implanted plan (first to last seed of a channel) too
    plan = read_rtplan(first / "RP.seeds.dcm")
    for ch in set(plan.channel_numbers.tolist()):
        pts = seeds[plan.channel_numbers == ch]
        if len(pts) < 2:
            continue
        line = pts[0] + np.linspace(0, 1, 200)[:, None] * (pts[-1] - pts[0])
        for probe in probes:
            tip, entry = np.array(probe["tip_mm"]), np.array(probe["entry_mm"])
            assert _segment_point_mm(tip, entry, line).min() >= CLEARANCE_MM - 0.05


def test_combined_coverage_equals_a_recount_from_the_written_files(first, sequential):
    """A CT voxel is treated if inside the written lethal isotherm ROI or receiving at least
    the prescription in the written RTDOSE (nearest dose voxel)."""
    metrics = json.loads((sequential / "metrics.json").read_text())
    cov = metrics["lesions"]["GTV_Met1"]["sequential"]["coverage"]
    ct = load_ct_series(first / "case" / "CT")
    dose = read_rtdose(sequential / "RD.plan.dcm")
    zones = read_rtstruct(sequential / "RS.zones.dcm")
    case = read_rtstruct(first / "case" / "RS.phantom.dcm")
    thickness = ct.grid.spacing_mm[2]
    lethal = roi_mask(zones.roi("GTV_Met1_Lethal40C"), ct.grid, slice_thickness_mm=thickness)
    gtv = roi_mask(case.roi("GTV_Met1"), ct.grid, slice_thickness_mm=thickness)
    centres = ct.grid.voxel_centres_mm()[gtv]
    ijk = np.rint(dose.grid.mm_to_ijk(centres)).astype(int)
    inside = np.all((ijk >= 0) & (ijk < np.asarray(dose.grid.size_ijk)), axis=1)
    d = np.zeros(len(centres))
    d[inside] = dose.dose_gy[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]]
    by_dose = d >= RX_GY
    by_ice = lethal[gtv]
    n = len(centres)
    assert cov["gtv"]["combined_pct"] == pytest.approx(100 * np.sum(by_ice | by_dose) / n, abs=1e-3)
    assert cov["gtv"]["ice_pct"] == pytest.approx(100 * np.sum(by_ice) / n, abs=1e-3)
    assert cov["gtv"]["dose_pct"] == pytest.approx(100 * np.sum(by_dose) / n, abs=1e-3)
    # the seeds' dose counts: combined beats either alone somewhere in the GTV
    assert cov["gtv"]["combined_pct"] > max(cov["gtv"]["ice_pct"], cov["gtv"]["dose_pct"])
    for region in ("core", "margin"):
        c = cov[region]
        assert max(c["ice_pct"], c["dose_pct"]) <= c["combined_pct"] <= 100.0


def _edited_plan(first, tmp_path, edit):
    ds = pydicom.dcmread(first / "RP.seeds.dcm")
    edit(ds)
    path = tmp_path / "RP.edited.dcm"
    ds.save_as(path)
    return path


def test_implanted_plan_in_another_frame_of_reference_is_refused(first, tmp_path, capsys):
    def other_frame(ds):
        ds.FrameOfReferenceUID = "1.2.3.4.5"

    doc = _cryo_spec(first, tmp_path, _edited_plan(first, tmp_path, other_frame))
    code, _ = _plan(tmp_path, doc, "frame")
    err = capsys.readouterr().err
    assert code == 1 and "FrameOfReferenceUID" in err and "RP.edited.dcm" in err


def test_implanted_seed_outside_the_ct_is_refused(first, tmp_path, capsys):
    def far_away(ds):
        for cp in ds.ApplicationSetupSequence[0].ChannelSequence[0].BrachyControlPointSequence:
            cp.ControlPoint3DPosition = [900.0, 0.0, 0.0]

    doc = _cryo_spec(first, tmp_path, _edited_plan(first, tmp_path, far_away))
    code, _ = _plan(tmp_path, doc, "outside")
    err = capsys.readouterr().err
    assert code == 1 and "outside the planning CT" in err and "RP.edited.dcm" in err


def test_a_clearance_that_leaves_no_probe_position_exits_3_naming_the_seeds(
    first, tmp_path, capsys
):
    doc = _cryo_spec(first, tmp_path, first / "RP.seeds.dcm", seed_clearance_mm=40.0)
    code, _ = _plan(tmp_path, doc, "blocked")
    err = capsys.readouterr().err
    assert code == 3 and "implanted seeds" in err and "GTV_Met1" in err


def test_add_seeds_beside_implanted_ones_is_refused_until_the_optimiser_has_a_background(
    first, tmp_path, capsys
):
    doc = _cryo_spec(first, tmp_path, first / "RP.seeds.dcm")
    doc["prescription"] = {**doc["prescription"], "add_seeds": True}
    code, _ = _plan(tmp_path, doc, "add")
    assert code == 1 and "add_seeds" in capsys.readouterr().err


def test_report_shows_the_combined_map(sequential):
    report = (sequential / "report.html").read_text()
    assert "combined coverage" in report
    assert 'alt="GTV_Met1 combined coverage map"' in report


def test_spec_keys_defaults_and_errors(tmp_path):
    from brachycryo.core.errors import ConfigError
    from brachycryo.planning.spec import parse_plan_spec

    doc = _cryo_spec(tmp_path, tmp_path, tmp_path / "RP.x.dcm")
    spec = parse_plan_spec(doc, base_dir=tmp_path)
    assert spec.case.implanted_plan == (tmp_path / "RP.x.dcm").resolve()
    assert spec.add_seeds is False and spec.cryo.seed_clearance_mm == CLEARANCE_MM
    assert spec.cryo.track_clearance_mm is None
    plain = {k: v for k, v in SEED_PLAN.items()}
    assert parse_plan_spec(plain).add_seeds is True
    with pytest.raises(ConfigError, match="add_seeds"):
        parse_plan_spec({**plain, "prescription": {**plain["prescription"], "add_seeds": False}})
    with pytest.raises(ConfigError, match="seed_clearance_mm"):
        parse_plan_spec({**doc, "cryo": {"seed_clearance_mm": -1.0}}, base_dir=tmp_path)


def test_segment_distances_against_dense_sampling():
    from brachycryo.planning.implanted import segment_point_distance_mm, segment_segment_distance_mm

    rng = np.random.default_rng(7)
    s = np.linspace(0.0, 1.0, 2001)[:, None]
    for _ in range(30):
        p0, p1, q0, q1 = rng.normal(0.0, 10.0, (4, 3))
        if _ % 5 == 0:
            q1 = q0 + (p1 - p0)  # parallel segments
        dense = np.linalg.norm(
            (p0 + s * (p1 - p0))[:, None] - (q0 + s[::20] * (q1 - q0))[None], axis=-1
        )
        exact = segment_segment_distance_mm(p0, p1, q0, q1)
        assert exact <= dense.min() + 1e-9 and exact >= dense.min() - 0.01 * np.linalg.norm(q1 - q0)
        pts = rng.normal(0.0, 10.0, (5, 3))
        d = segment_point_distance_mm(p0, p1, pts)
        brute = np.linalg.norm((p0 + s * (p1 - p0))[:, None] - pts[None], axis=-1).min(axis=0)
        np.testing.assert_allclose(d, brute, atol=1e-2)
