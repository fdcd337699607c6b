"""A small plan (one zoned lesion, 4 mm phantom) and a synthetic follow-up CT: the planning
CT moved by a known rigid transform, resampled at 2 mm, with spheres placed in the planning
frame and contoured exactly (circles) in the follow-up frame.  Margins, diameters, volumes
and the zone of each recurrence are known by construction."""

import csv
import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import ndimage

from brachycryo.cli import main
from brachycryo.core.errors import BrachyCryoError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.common import new_uid
from brachycryo.dicom_io.ct_series import write_ct_series
from brachycryo.dicom_io.rasterize import roi_mask
from brachycryo.dicom_io.rtdose import read_rtdose
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
from brachycryo.followup.analysis import LesionRois, analyse_followup
from brachycryo.followup.io import read_followup, read_plan_folder
from brachycryo.followup.registration import LinearTransform
from brachycryo.followup.workflow import RegistrationOptions, registration_for
from brachycryo.planning.evaluate import evaluate_zoned_plan
from brachycryo.planning.pipeline import make_plan
from brachycryo.planning.spec import parse_plan_spec
from brachycryo.qa.dvh import sample_dose_at_points
from brachycryo.reports.plan import write_plan_folder
from tests.followup.synthetic import grid_centre, moved_ct, rotation
from tests.reports.browser import needs_chromium, states

LESION = "GTV_Met1"
SPEC = {
    "case": {"phantom": {"seed": 2, "site": "abdomen", "spacing_mm": [4.0, 4.0, 4.0]}},
    "prescription": {"dose_gy": 110.0, "seed_model": "6711", "activity_mci": 0.8},
    "lesion": [
        {"roi": LESION, "allocation": "zoned", "core": "margin", "core_margin_mm": 4.0,
         "margin_mm": 5.0, "needle_direction": [1.0, 0.0, 0.0]},
    ],
    "needles": {"spacing_mm": 8.0, "seed_spacing_mm": 10.0},
    "dose": {"spacing_mm": 4.0, "backend": "numba"},
}  # fmt: skip
FU_SPACING_MM = 2.0
TUMOUR_R_MM = 6.0
REC_R_MM = 2.0
SUCCESS_MARGIN_MM = 6.0  # ablation sphere radius = GTV's farthest point + this
ANALYSIS_TOL_MM = 1.0
ABLATION_DROP_MM = 4.0  # the 1 mm analysis grid + registration error


@dataclasses.dataclass
class Case:
    plan_dir: object
    fu_ct: object
    fu_rs: object
    registration: object  # the rigid MI registration of the pair (API), done once
    true: object
    centre_mm: np.ndarray  # GTV centroid (planning frame)
    gtv_reach_mm: float  # farthest GTV point from centre_mm
    points: dict  # recurrence centres by zone (planning frame)
    fu_z_mm: np.ndarray


def _fine_masks(plan_dir):
    """GTV, core and margin on a 0.5 mm grid straight from the contours (not the pipeline)."""
    ss = read_rtstruct(plan_dir / "case" / "RS.phantom.dcm")
    zones = read_rtstruct(plan_dir / "RS.zones.dcm")
    gtv_roi = ss.roi(LESION)
    pts = np.concatenate([c.points_mm for c in gtv_roi.closed_contours])
    grid = Grid.from_bounds(pts.min(0) - 25, pts.max(0) + 25, 0.5)
    gtv = roi_mask(gtv_roi, grid)
    core = roi_mask(zones.roi(f"{LESION}_Core"), grid)
    seed = roi_mask(zones.roi(f"{LESION}_SeedTarget"), grid)
    return grid, gtv, core, seed & ~core, seed | core


def _deepest(mask, grid):
    depth = ndimage.distance_transform_edt(mask, sampling=0.5)
    k, j, i = np.unravel_index(depth.argmax(), mask.shape)
    return grid.ijk_to_mm(np.array([[i, j, k]], float))[0], depth.max()


def _sphere_contours(centre_fu, r, z_planes):
    t = np.linspace(0, 2 * np.pi, 64, endpoint=False)
    out = []
    for z in z_planes:
        dz = z - centre_fu[2]
        if abs(dz) < r - 1e-6:
            rho = math.sqrt(r * r - dz * dz)
            out.append(np.c_[centre_fu[0] + rho * np.cos(t), centre_fu[1] + rho * np.sin(t),
                             np.full(64, z)])  # fmt: skip
    return out


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    plan_dir = tmp_path_factory.mktemp("plan")
    result = make_plan(parse_plan_spec(SPEC), plan_dir)
    write_plan_folder(result, evaluate_zoned_plan(result), plan_dir, report_html=False)
    plan = read_plan_folder(plan_dir)
    grid, gtv, core, margin, treated = _fine_masks(plan_dir)
    centre = grid.voxel_centres_mm()[gtv].mean(axis=0)
    # the ablation spheres are centred a little below the GTV (the lesion is near the top
    # of the phantom's field of view); their MAM is their radius less this reach
    abl_centre = centre - np.array([0.0, 0.0, ABLATION_DROP_MM])
    reach = float(np.linalg.norm(grid.voxel_centres_mm()[gtv] - abl_centre, axis=1).max())
    p_core, d_core = _deepest(core, grid)
    p_margin, d_margin = _deepest(margin, grid)
    assert d_core > REC_R_MM and d_margin > REC_R_MM  # the spheres fit their zones
    outside_x = grid.voxel_centres_mm()[treated][:, 0].max() + 12.0
    points = {"core": p_core, "margin": p_margin,
              "outside": np.array([outside_x, centre[1], centre[2]])}  # fmt: skip
    # the follow-up: patient moved by `true` (planning -> follow-up), scanned at 2 mm
    pg = plan.ct.grid
    true_rot = rotation((0.1, -0.1, 1.0), 2.5)
    true = LinearTransform(tuple(true_rot.reshape(-1)), (5.0, -3.0, -4.0), grid_centre(pg))
    crop = np.array([20.0, 20.0, 8.0])
    lo = pg.ijk_to_mm(np.zeros((1, 3)))[0] + crop
    hi = pg.ijk_to_mm(np.array([pg.size_ijk], float) - 1)[0] - crop
    fu_grid = Grid.from_bounds(lo, hi, FU_SPACING_MM)
    fu_hu = moved_ct(plan.ct.hu, pg, true, fu_grid)
    ctx = dataclasses.replace(plan.ct.context, frame_of_reference_uid=new_uid(),
                              study_instance_uid=new_uid())  # fmt: skip
    fu_dir = tmp_path_factory.mktemp("fu")
    fu_ct = write_ct_series(fu_dir / "CT", fu_hu, fu_grid, context=ctx)
    z_planes = fu_grid.ijk_to_mm(np.c_[np.zeros(fu_grid.shape[0]), np.zeros(fu_grid.shape[0]),
                                       np.arange(fu_grid.shape[0])])[:, 2]  # fmt: skip
    c_fu = true.apply(centre[None])[0]
    a_fu = true.apply(abl_centre[None])[0]
    rois = [
        RoiSpec("FU_Tumour", contours_mm=_sphere_contours(c_fu, TUMOUR_R_MM, z_planes)),
        RoiSpec("Ablation_OK", contours_mm=_sphere_contours(
            a_fu, reach + SUCCESS_MARGIN_MM, z_planes)),
        RoiSpec("Ablation_Short", contours_mm=_sphere_contours(a_fu, reach + 2.0, z_planes)),
    ] + [
        RoiSpec(f"Rec_{zone}", contours_mm=_sphere_contours(true.apply(p[None])[0], REC_R_MM,
                                                            z_planes))
        for zone, p in points.items()
    ]  # fmt: skip
    fu_rs = fu_dir / "RS.followup.dcm"
    write_rtstruct(fu_rs, rois, fu_ct)
    rigid_only = RegistrationOptions(deformable=False)  # the deformable step: the CLI test
    reg = registration_for(plan, read_followup(fu_dir / "CT", fu_rs), options=rigid_only)
    return Case(plan_dir, fu_dir / "CT", fu_rs, reg, true, centre, reach, points, z_planes)


def _landmark_csv(case, path):
    """The GTV centre and the recurrence centres, and where the known motion puts them."""
    pts = np.array([case.centre_mm, *case.points.values()])
    moved = case.true.apply(pts)
    rows = ["plan_x_mm,plan_y_mm,plan_z_mm,followup_x_mm,followup_y_mm,followup_z_mm"]
    rows += [",".join(f"{v:.4f}" for v in (*p, *q)) for p, q in zip(pts, moved)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_cli_end_to_end(case, tmp_path):
    out = tmp_path / "fu"
    argv = ["followup", "--plan", str(case.plan_dir), "--ct", str(case.fu_ct),
            "--rtstruct", str(case.fu_rs), "--out", str(out), "--tumour", "FU_Tumour",
            "--ablation", "Ablation_OK", "--recurrence", "Rec_outside", "--quiet"]  # fmt: skip
    lm = _landmark_csv(case, tmp_path / "landmarks.csv")
    # the deformable step on the lesion's box + 15 mm (the whole CT takes minutes here)
    assert main([*argv, "--landmarks", str(lm), "--deform-region-mm", "15"]) == 0
    doc = json.loads((out / "followup.json").read_text())
    checks = doc["registration"]["checks"]
    assert doc["registration"]["source"] == "rigid-mi + bspline"
    assert checks["folding"] is False and checks["jacobian_determinant_min"] > 0.5
    assert checks["inverse_consistency_mean_mm"] < 1.0
    assert checks["landmark_tre"]["n"] == 4 and checks["landmark_tre"]["within_tg132"]
    assert checks["landmark_tre"]["max_mm"] < 1.5
    # zones and dose on the follow-up CT, follow-up contours on the planning CT
    fu_ct = read_followup(case.fu_ct, case.fu_rs).ct
    on_fu = read_rtstruct(out / "RS.zones_on_followup.dcm")
    assert on_fu.frame_of_reference_uid == fu_ct.frame_of_reference_uid
    assert {LESION, f"{LESION}_Core", f"{LESION}_SeedTarget"} <= set(on_fu.roi_names)
    rd = read_rtdose(out / "RD.plan_on_followup.dcm")
    assert rd.frame_of_reference_uid == fu_ct.frame_of_reference_uid
    planned = read_rtdose(case.plan_dir / "RD.plan.dcm")
    # the dose at the GTV centre is the planned one there (4 mm dose grid, rigid motion)
    c_fu = case.true.apply(case.centre_mm[None])
    d_fu, _ = sample_dose_at_points(rd.dose_gy, rd.grid, c_fu)
    d_plan, _ = sample_dose_at_points(planned.dose_gy, planned.grid, case.centre_mm[None])
    assert float(d_fu[0]) == pytest.approx(float(d_plan[0]), rel=0.05)
    on_plan = read_rtstruct(out / "RS.followup_on_plan.dcm")
    assert "FU_Tumour_FU" in on_plan.roi_names
    # the 4 mm recurrence spheres may miss every voxel centre of the 4 mm planning CT
    assert set(doc["carried"]["rois_not_carried"]) <= {"Rec_core", "Rec_margin", "Rec_outside"}
    assert {"Ablation_OK_FU", "Ablation_Short_FU"} <= set(on_plan.roi_names)
    # registration: the known transform, over the lesion (the B-spline map's rigid part)
    tx = doc["registration"]["transform"]["rigid"]
    found = np.asarray(tx["matrix"]) @ (case.centre_mm - tx["centre_mm"]) + tx["centre_mm"]
    found = found + tx["translation_mm"]
    assert np.linalg.norm(found - case.true.apply(case.centre_mm[None])[0]) < 1.0
    (les,) = doc["lesions"]
    assert les["lesion"] == LESION
    ab = les["ablation"]
    assert ab["minimal_ablative_margin_mm"] == pytest.approx(SUCCESS_MARGIN_MM, abs=ANALYSIS_TOL_MM)
    assert ab["technical_success"] is True
    assert ab["shell_covered_fraction"]["3mm"] == pytest.approx(1.0, abs=0.01)
    assert ab["core_covered_fraction"] == pytest.approx(1.0)
    # tumour: sphere r 6 at the GTV centroid; its diameter on 2 mm planes is exact
    t = les["tumour"]
    dz = np.abs(case.fu_z_mm - case.true.apply(case.centre_mm[None])[0][2]).min()
    assert t["followup_longest_axial_diameter_mm"] == pytest.approx(
        2 * math.sqrt(TUMOUR_R_MM**2 - dz**2),
        abs=1e-3,  # DICOM DS rounding of the points
    )
    assert t["followup_volume_cc"] == pytest.approx(
        4 / 3 * math.pi * TUMOUR_R_MM**3 / 1000, rel=0.05
    )
    # RECIST 1.1: a circle's perpendicular is its diameter; the GTV's sum against the tumour's
    fd = t["followup_diameters"]
    assert fd["longest_mm"] == t["followup_longest_axial_diameter_mm"]
    assert fd["perpendicular_mm"] == pytest.approx(fd["longest_mm"], abs=1e-3)
    assert 0 < t["plan_diameters"]["perpendicular_mm"] <= t["plan_diameters"]["longest_mm"]
    r = doc["recist"]
    assert r["sum_longest_diameters_plan_mm"] == t["plan_longest_axial_diameter_mm"]
    assert r["sum_longest_diameters_followup_mm"] == fd["longest_mm"]
    change = fd["longest_mm"] / t["plan_longest_axial_diameter_mm"] - 1.0
    assert r["response"] == ("PR" if change <= -0.3 else "SD") == t["lesion_recist_class"]
    # enhancing (mRECIST-like): the tumour sphere lies inside the ablation sphere
    assert t["enhancing_volume_cc"] == pytest.approx(0.0, abs=1e-9)
    # margin histogram over the GTV surface, 1 mm bins, its lowest bin holding the MAM
    h = ab["surface_margin_histogram"]
    assert h["bin_mm"] == 1.0 and sum(h["counts"]) > 0 and h["counts"][0] > 0
    assert h["bin_edges_mm"][0] <= ab["minimal_ablative_margin_mm"] < h["bin_edges_mm"][1]
    assert np.allclose(np.diff(h["bin_edges_mm"]), 1.0)
    # shells by the planned dose (a plan with dose and prescription) and by either
    for w in ("3mm", "5mm", "10mm"):
        d, e = ab["shell_dose_covered_fraction"][w], ab["shell_ablated_or_dose_covered_fraction"][w]
        assert 0.0 <= d <= 1.0 and max(d, ab["shell_covered_fraction"][w]) <= e <= 1.0
    unc = ab["registration_uncertainty"]
    assert unc["kind"] == "landmark TRE" and unc["mean_mm"] == checks["landmark_tre"]["mean_mm"]
    assert ab["verdict"] == "success"
    res = t["residual_by_zone"]
    assert res["outside_cc"] == pytest.approx(0.0, abs=0.02)
    rec = les["recurrence"]
    assert rec["origin_zone"] == "outside" and rec["closest_to_gtv_zone"] == "outside"
    assert rec["by_zone"]["outside_fraction"] == pytest.approx(1.0)
    assert rec["d90_gy"] is not None and rec["d90_gy"] < doc["prescription_gy"]
    rows = list(csv.DictReader((out / "followup.csv").open()))
    assert rows[0]["lesion"] == LESION and rows[0]["recurrence_origin_zone"] == "outside"
    assert rows[0]["recist_class"] == r["response"]
    assert float(rows[0]["followup_perpendicular_mm"]) == pytest.approx(fd["perpendicular_mm"],
                                                                         rel=1e-3)  # fmt: skip
    page = (out / "followup.html").read_text()
    assert "data:image/png;base64" in page and "minimal ablative margin" in page
    assert "RECIST 1.1" in page and "landmark TRE" in page and "margin histogram" in page
    # the same run with the written transform: no registration, the same numbers
    out2 = tmp_path / "fu2"
    argv2 = [*argv[: argv.index("--out")], "--out", str(out2), "--tumour", "FU_Tumour",
             "--ablation", "Ablation_OK", "--recurrence", "Rec_outside", "--quiet",
             "--transform", str(out / "transform.tfm"), "--no-report"]  # fmt: skip
    assert main(argv2) == 0
    doc2 = json.loads((out2 / "followup.json").read_text())
    # the same margins; without landmarks a given transform has no uncertainty to show
    ab2 = doc2["lesions"][0]["ablation"]
    assert ab2["registration_uncertainty"] is None
    skip = {"registration_uncertainty", "verdict_within_registration_uncertainty"}
    assert {k: v for k, v in ab2.items() if k not in skip} == {
        k: v for k, v in ab.items() if k not in skip
    }


def test_recurrences_classified_by_zone_and_short_ablation_fails(case):
    plan = read_plan_folder(case.plan_dir)
    fu = read_followup(case.fu_ct, case.fu_rs)
    reg = case.registration
    rois = [LesionRois(LESION, ablation="Ablation_Short", recurrence=f"Rec_{z}")
            for z in ("core", "margin", "outside")]  # fmt: skip
    results = [analyse_followup(plan, fu, [r], reg).lesions[0] for r in rois]
    assert [r.recurrence.origin_zone for r in results] == ["core", "margin", "outside"]
    short = results[0].ablation
    assert short.mam_mm == pytest.approx(2.0, abs=ANALYSIS_TOL_MM)
    assert short.technical_success is False
    # planned dose falls off outward: the outside recurrence got less than the margin one
    assert results[2].recurrence.d90_gy < results[1].recurrence.d90_gy


def test_unknown_roi_and_lesion_are_named(case, tmp_path):
    base = ["followup", "--plan", str(case.plan_dir), "--ct", str(case.fu_ct),
            "--rtstruct", str(case.fu_rs), "--quiet", "--same-frame"]  # fmt: skip
    assert main([*base, "--out", str(tmp_path / "a"), "--ablation", "Nope"]) != 0
    assert not (tmp_path / "a" / "followup.json").exists()
    with pytest.raises(BrachyCryoError, match="GTV_Nope"):
        from brachycryo.followup.workflow import lesion_rois

        lesion_rois(read_plan_folder(case.plan_dir), lesions=["GTV_Nope"])


def test_frames_and_patient_are_checked(case):
    from brachycryo.core.errors import FrameOfReferenceError
    from brachycryo.followup.analysis import check_frames

    plan = read_plan_folder(case.plan_dir)
    fu = read_followup(case.fu_ct, case.fu_rs)
    assert check_frames(plan, fu) == []
    other = dataclasses.replace(fu.ct.context, patient_id="SOMEONE-ELSE")
    notes = check_frames(
        plan, dataclasses.replace(fu, ct=dataclasses.replace(fu.ct, context=other))
    )
    assert any("patient IDs differ" in n for n in notes)
    wrong = dataclasses.replace(fu.structures, frame_of_reference_uid="1.2.3")
    with pytest.raises(FrameOfReferenceError, match="RS.followup.dcm"):
        check_frames(plan, dataclasses.replace(fu, structures=wrong))


def test_roi_options_per_lesion():
    from brachycryo.followup.workflow import _assign

    two = ["GTV_A", "GTV_B"]
    assert _assign(["GTV_B=Rec"], two, "--recurrence") == {"GTV_B": "Rec"}
    assert _assign(["Rec"], ["GTV_A"], "--recurrence") == {"GTV_A": "Rec"}
    with pytest.raises(BrachyCryoError, match="LESION=ROI"):
        _assign(["Rec"], two, "--recurrence")
    with pytest.raises(BrachyCryoError, match="GTV_C"):
        _assign(["GTV_C=Rec"], two, "--recurrence")


def test_cli_registration_options(case, tmp_path, capsys):
    """--registration rigid (quality block of the rigid map), --no-inverse-consistency and
    --bspline-mesh-mm; bad option values and a bad landmark file are refused, nothing
    written."""
    base = ["followup", "--plan", str(case.plan_dir), "--ct", str(case.fu_ct),
            "--rtstruct", str(case.fu_rs), "--ablation", "Ablation_OK", "--no-report"]  # fmt: skip
    lm = _landmark_csv(case, tmp_path / "landmarks.csv")
    out = tmp_path / "rigid"
    assert main([*base, "--out", str(out), "--registration", "rigid", "--landmarks", str(lm)]) == 0
    printed = capsys.readouterr().out
    assert "Jacobian determinant 1.000 to 1.000" in printed and "TG-132" in printed
    doc = json.loads((out / "followup.json").read_text())
    assert doc["registration"]["source"] == "rigid-mi"
    checks = doc["registration"]["checks"]
    assert checks["jacobian_determinant_min"] == pytest.approx(1.0)
    assert checks["inverse_consistency_mean_mm"] is None
    assert checks["landmark_tre"]["mean_mm"] < 1.0  # the true motion is rigid
    assert (out / "RS.zones_on_followup.dcm").is_file()
    assert (out / "RD.plan_on_followup.dcm").is_file()
    assert (out / "RS.followup_on_plan.dcm").is_file()
    # deformable with a coarse mesh and no backward registration, on the lesion box
    out2 = tmp_path / "coarse"
    assert main([*base, "--out", str(out2), "--quiet", "--bspline-mesh-mm", "40",
                 "--deform-region-mm", "10", "--no-inverse-consistency"]) == 0  # fmt: skip
    doc2 = json.loads((out2 / "followup.json").read_text())
    checks2 = doc2["registration"]["checks"]
    assert doc2["registration"]["source"] == "rigid-mi + bspline"
    assert checks2["inverse_consistency_mean_mm"] is None and checks2["folding"] is False
    # the mesh divides the box evenly at no more than the asked 40 mm (the default 25 mm
    # gives under 25 mm here)
    assert 25.0 < doc2["registration"]["transform"]["deformable"]["mesh_spacing_mm"][0] <= 40.0
    # bad values: argparse refuses (exit 2), a bad landmark file is a named BrachyCryoError
    for bad in (["--bspline-mesh-mm", "2"], ["--registration", "demons"],
                ["--deform-region-mm", "-1"],
                ["--deform-region-mm", "10", "--deform-whole-ct"]):  # fmt: skip
        with pytest.raises(SystemExit):
            main([*base, "--out", str(tmp_path / "bad"), *bad])
    wrong = tmp_path / "wrong.csv"
    wrong.write_text("plan_x_mm,plan_y_mm\n1,2\n")
    capsys.readouterr()
    assert main([*base, "--out", str(tmp_path / "bad"), "--landmarks", str(wrong)]) != 0
    assert "wrong.csv" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    from brachycryo.followup.checks import read_landmarks

    with pytest.raises(BrachyCryoError, match="missing columns"):
        read_landmarks(wrong)
    with pytest.raises(BrachyCryoError, match="does not exist"):
        read_landmarks(tmp_path / "none.csv")


@needs_chromium
def test_followup_page_viewer_in_the_browser(case, tmp_path):
    """followup.html opens from disk with no request; the follow-up tumour is outlined on
    the slice through the GTV and disappears when toggled; the readout is the planned dose
    at the RTDOSE voxel under the cursor."""
    from brachycryo.followup.io import followup_json
    from brachycryo.reports.followup import build_followup_report

    plan = read_plan_folder(case.plan_dir)
    fu = read_followup(case.fu_ct, case.fu_rs)
    rois = [LesionRois(LESION, tumour="FU_Tumour", ablation="Ablation_OK")]
    result = analyse_followup(plan, fu, rois, case.registration)
    page = tmp_path / "followup.html"
    page.write_text(
        build_followup_report(plan, result, followup_json(result, SPEC["prescription"]["dose_gy"]))
    )
    tumour = f"{LESION}: tumour (follow-up)"
    point = case.centre_mm + np.array([3.1, -2.2, 0.0])
    on, off, probe = states(page, ["", f"toggle={tumour}", "probe=" + ",".join(map(str, point))])
    assert on["edges"][tumour] > 0 and on["edges"][f"{LESION}: GTV (plan)"] > 0
    assert off["edges"][tumour] == 0 and off["hidden"] == [tumour]
    dose = plan.dose
    i, j, k = np.rint(dose.grid.mm_to_ijk(probe["readout"]["mm"])).astype(int)
    assert probe["readout"]["ijk"] == [i, j, k]
    scale = float(dose.dose_gy.max()) / 65535
    assert abs(probe["readout"]["value"] - dose.dose_gy[k, j, i]) <= scale / 2 + 1e-6
    assert len(page.read_text()) < 5_000_000


def test_a_tumour_roi_without_contours_is_a_complete_response(case):
    """The follow-up tumour ROI present but empty: the lesion has gone (RECIST CR), its
    volume, diameters and enhancing volume are 0; a second lesion name without a tumour ROI
    leaves the target-lesion sum and class open."""
    from brachycryo.dicom_io.rtstruct import ROI

    plan = read_plan_folder(case.plan_dir)
    fu = read_followup(case.fu_ct, case.fu_rs)
    frame = fu.structures.frame_of_reference_uid
    empty = ROI(number=999, name="Gone", frame_of_reference_uid=frame)
    fu = dataclasses.replace(
        fu, structures=dataclasses.replace(fu.structures, rois=(*fu.structures.rois, empty))
    )
    rois = [LesionRois(LESION, tumour="Gone", ablation="Ablation_OK")]
    result = analyse_followup(plan, fu, rois, case.registration)
    t = result.lesions[0].tumour
    assert t.followup_volume_cc == 0.0 and t.followup_diameter_mm == 0.0
    assert t.enhancing_volume_cc == 0.0 and t.residual.total_cc == 0.0
    assert t.lesion_recist_class == "CR" and result.recist_response.response == "CR"
    assert t.plan_diameters.perpendicular_mm > 0
    open_sum = analyse_followup(plan, fu, [LesionRois(LESION, ablation="Ablation_OK")],
                                case.registration).recist_response  # fmt: skip
    assert open_sum.response is None and open_sum.missing == (LESION,)
