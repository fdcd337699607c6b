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
from brachycryo.dicom_io.rtplan import read_rtplan, seed_implant, write_seed_rtplan
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.dose_kernels import dose_on_grid, load_seed_model
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


@pytest.fixture(scope="module")
def half_implant(first):
    """An implant that under-covers its seed target: the first plan's seeds on one side only
    (x < -95 mm, two of its four needles), written as the implanted RTPLAN."""
    plan = read_rtplan(first / "RP.seeds.dcm")
    keep = plan.positions_mm[:, 0] < -95.0
    assert 0 < keep.sum() < plan.n_seeds
    half = seed_implant(
        plan.positions_mm[keep], plan.channel_numbers[keep].tolist(), source=plan.sources[0],
        directions=plan.directions[keep], label="HALF",
        referenced_structure_set_uid=plan.referenced_structure_set_uid,
    )  # fmt: skip
    path = first.parent / "RP.half.dcm"
    write_seed_rtplan(path, half, context=load_ct_series(first / "case" / "CT").context)
    return path


def _seed_spec(first, implanted=None, **rx):
    doc = {**SEED_PLAN, "case": {"ct": str(first / "case" / "CT"),
                                 "rtstruct": str(first / "case" / "RS.phantom.dcm")}}  # fmt: skip
    doc["needles"] = {**SEED_PLAN["needles"], "spacing_mm": 10.0}
    if implanted is not None:
        doc["case"]["implanted_plan"] = str(implanted)
    doc["prescription"] = {**SEED_PLAN["prescription"], **rx}
    return doc


@pytest.fixture(scope="module")
def added(first, half_implant):
    code, out = _plan(first.parent, _seed_spec(first, half_implant, add_seeds=True), "added")
    assert code == 0
    return out


def test_new_seeds_complete_an_implant_that_under_covers_the_margin(first, half_implant, added):
    """add_seeds = true: the implanted seeds' dose is the optimiser's background, so the new
    seeds fill what the implant leaves (fewer than a plan from scratch), keep the seed spacing
    from every implanted seed, and implanted + new seeds meet the goals."""
    metrics = json.loads((added / "metrics.json").read_text())
    implanted = read_rtplan(half_implant)
    sk_u = 0.8 * 1.270
    sets = metrics["seed_sets"]
    assert sets["implanted"]["n_seeds"] == implanted.n_seeds
    assert sets["implanted"]["total_sk_u"] == pytest.approx(implanted.n_seeds * sk_u, abs=1e-3)
    n_new = metrics["n_seeds"]
    assert sets["new"] == {"n_seeds": n_new, "total_sk_u": pytest.approx(n_new * sk_u, abs=1e-3)}
    assert metrics["feasible"] and all(g["passed"] for g in metrics["goals"])
    # the RTPLAN holds both: new seeds from source 1 on needles 1, 2, ...; the implanted
    # ones from their own source, in channels 1000 + their channel in the implanted plan
    plan = read_rtplan(added / "RP.seeds.dcm")
    new = np.array([s.source_number == 1 for s in plan.seeds])
    assert new.sum() == n_new and (~new).sum() == implanted.n_seeds
    assert np.all(plan.channel_numbers[~new] > 1000) and np.all(plan.channel_numbers[new] < 1000)
    np.testing.assert_allclose(plan.positions_mm[~new], implanted.positions_mm, atol=0.01)
    gap = np.linalg.norm(plan.positions_mm[new][:, None] - implanted.positions_mm[None], axis=-1)
    assert gap.min() >= SEED_PLAN["needles"]["seed_spacing_mm"] - 1e-6
    # the written dose is that of every seed of the RTPLAN (TG-43, recomputed here)
    dose = read_rtdose(added / "RD.plan.dcm")
    recomputed = dose_on_grid(plan.to_seeds(), dose.grid, load_seed_model("6711"),
                              backend="numpy", dtype=np.float64)  # fmt: skip
    assert np.abs(recomputed - dose.dose_gy).max() <= 1e-3 * RX_GY
    # a plan from scratch needs more seeds
    code, scratch = _plan(first.parent, _seed_spec(first), "scratch")
    assert code == 0
    assert n_new < json.loads((scratch / "metrics.json").read_text())["n_seeds"]


def test_add_seeds_false_leaves_the_implant_as_it_is(first, half_implant):
    code, out = _plan(first.parent, _seed_spec(first, half_implant), "kept")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_seeds"] == 0 and not (out / "RP.seeds.dcm").exists()
    assert metrics["seed_sets"]["new"] == {"n_seeds": 0, "total_sk_u": 0.0}
    v100 = next(g for g in metrics["goals"] if g["metric"] == "V100")
    # the under-coverage is reported, not fixed (and, as before, the exit status of a plan
    # that optimises no seed does not reflect the seed goals)
    assert not v100["passed"] and v100["value"] < 50.0 and code == 0


def test_implanted_dose_alone_over_an_oar_limit_is_refused_naming_it(first, half_implant, capsys):
    doc = _seed_spec(first, half_implant, add_seeds=True)
    doc["oar"] = [{"roi": "Bowel", "dmax_gy": 0.1}]  # the implant alone gives ~0.17 Gy
    code, _ = _plan(first.parent, doc, "over")
    err = capsys.readouterr().err
    assert code == 3 and "Bowel dmax" in err and "implanted seeds' dose alone" in err


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
    # robust scenarios would leave out the implanted seeds' dose: refused with add_seeds
    robust = {**doc, "optimizer": {"robust": {"scenarios": 10}}}
    assert parse_plan_spec(robust, base_dir=tmp_path).optimizer.robust is not None
    added = {**robust, "prescription": {**doc["prescription"], "add_seeds": True}}
    with pytest.raises(ConfigError, match=r"optimizer\.robust.*implanted"):
        parse_plan_spec(added, base_dir=tmp_path)


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


def test_new_candidates_keep_the_seed_spacing_and_their_needles_3_mm_from_implanted_seeds():
    """clear_of_implanted on hand-made candidates (needles along +y from y = -50 mm)."""
    from brachycryo.core.errors import InfeasiblePlanError
    from brachycryo.planning.implanted import clear_of_implanted
    from brachycryo.planning.needles import Candidates, NeedleTrack

    y = np.array([0.0, 1.0, 0.0])
    tracks = tuple(NeedleTrack(k, np.array([x, -50.0, 0.0]), y) for k, x in enumerate((0, 20, 40)))
    pos = np.array([[0, -20, 0], [0, 0, 0], [0, 20, 0],  # needle 0
                    [20, -20, 0], [20, 0, 0],  # needle 1
                    [40, 0, 0]], dtype=float)  # needle 2  # fmt: skip
    cands = Candidates(
        positions_mm=pos, directions=np.tile(y, (6, 1)), needle=np.array([0, 0, 0, 1, 1, 2]),
        depth_mm=pos[:, 1] + 50.0, tracks=tracks,
        exclusions=np.array([[0, 1], [1, 2], [3, 4], [3, 5]]), rejected_tracks={},
    )  # fmt: skip
    implanted = np.array([
        [2.5, -35.0, 0.0],  # 15 mm from every seed of needle 0, 2.5 mm from its shaft
        [26.0, 0.0, 0.0],  # 6 mm from (20, 0, 0)
        [43.5, -30.0, 0.0],  # 3.5 mm from needle 2's shaft: kept
    ])  # fmt: skip
    kept, removed = clear_of_implanted(cands, implanted, min_seed_distance_mm=10.0)
    np.testing.assert_array_equal(kept.positions_mm, pos[[3, 5]])
    np.testing.assert_array_equal(kept.needle, [1, 2])
    np.testing.assert_array_equal(kept.exclusions, [[0, 1]])  # (3, 5) renumbered
    assert removed == {
        "within 10 mm of an implanted seed": 1,
        "needle within 3 mm of an implanted seed": 3,
    }
    gap = np.linalg.norm(kept.positions_mm[:, None] - implanted[None], axis=-1)
    assert gap.min() >= 10.0
    # a spacing that leaves no candidate is refused, naming the implanted seeds
    with pytest.raises(InfeasiblePlanError, match="implanted seeds"):
        clear_of_implanted(cands, implanted, min_seed_distance_mm=60.0)
