"""Deformable registration, its quality block, and zones carried both ways, on a synthetic
planning CT and a follow-up CT made from it by a known smooth deformation + rigid motion
(brachycryo.phantoms.followup_pair): TRE, zone volumes and the carried dose are known."""

import dataclasses
import math

import numpy as np
import pytest

from brachycryo.core.errors import BrachyCryoError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.common import StudyContext, new_uid
from brachycryo.dicom_io.ct_series import write_ct_series
from brachycryo.dicom_io.rtdose import DoseVolume, read_rtdose
from brachycryo.dicom_io.rtstruct import ROI, Contour, check_against_image, read_rtstruct
from brachycryo.followup.carry import Carrier, carry_fraction, carry_roi, write_carried
from brachycryo.followup.checks import (
    Landmarks,
    landmark_tre,
    read_landmarks,
    refuse_folding,
    registration_checks,
)
from brachycryo.followup.deformable import (
    BSplineTransform,
    DeformableOptions,
    read_any_transform,
    region_box,
    register_bspline,
)
from brachycryo.followup.registration import (
    IDENTITY,
    RegistrationError,
    register_rigid,
    write_transform,
)
from brachycryo.phantoms.followup_pair import (
    SmoothDeformation,
    followup_sphere_mask,
    textured_ct,
    warp,
)

N = 56  # planning CT: N^3 voxels of 1 mm
CROP = 6  # the follow-up field of view: CROP voxels less on every side
LESION_MM = np.array([3.0, -2.0, 1.0])
TRUE = SmoothDeformation(
    centre_mm=(0.0, 0.0, 0.0), rotation_axis=(0.2, 0.1, 1.0), rotation_deg=2.0,
    shift_mm=(2.5, -1.5, 1.0), bump_mm=(3.0, -2.5, 2.0), bump_centre_mm=tuple(LESION_MM),
    bump_sigma_mm=9.0,
)  # fmt: skip
RADII_MM = {"GTV": 8.0, "Core": 6.0, "SeedTarget": 12.0}
OPTIONS = DeformableOptions(mesh_spacing_mm=12.0, max_samples=15_000, iterations=40)
REGION_MARGIN_MM = 18.0  # the deformable step is restricted to the lesion +- this


@dataclasses.dataclass
class Pair:
    plan_hu: np.ndarray
    plan_grid: Grid
    fu_hu: np.ndarray
    fu_grid: Grid
    rigid: object
    bspline: BSplineTransform
    region: Grid
    landmarks: Landmarks


def _landmarks(fu_grid: Grid) -> Landmarks:
    """Follow-up points on a 4 mm lattice within 14 mm of the lesion, and their planning
    points S(y)."""
    y = fu_grid.resampled(4.0).voxel_centres_mm().reshape(-1, 3)
    y = y[np.linalg.norm(y - LESION_MM, axis=1) <= 14.0]
    return Landmarks(TRUE.fu_to_plan(y), y, tuple(f"L{i}" for i in range(len(y))))


@pytest.fixture(scope="module")
def pair() -> Pair:
    pg = Grid((N, N, N), (-(N - 1) / 2.0,) * 3, (1.0, 1.0, 1.0))
    hu = textured_ct(pg)
    fg = pg.cropped((CROP,) * 3, (N - CROP,) * 3)
    fu = warp(hu, pg, fg, TRUE)
    rigid = register_rigid(hu, pg, fu, fg)
    region = region_box(pg, LESION_MM[None], REGION_MARGIN_MM)
    run = register_bspline(hu, pg, fu, fg, rigid.transform, region=region, options=OPTIONS)
    return Pair(hu, pg, fu, fg, rigid, run.transform, region, _landmarks(fg))


def test_tre_of_the_known_deformation(pair):
    tre = landmark_tre(pair.bspline, pair.landmarks)
    assert len(tre.per_point_mm) > 100
    # the rigid step alone cannot follow the bump; the B-spline step does (target 1.5 mm)
    assert tre.mean_mm <= 1.5
    assert float(np.mean(tre.rigid_per_point_mm)) > 2.0 * tre.mean_mm
    assert tre.within_tg132
    # the rigid + B-spline map in a transform file reads back as the same map
    checks = registration_checks(pair.bspline, pair.region, landmarks=pair.landmarks)
    assert 0.0 < checks.jacobian_min < 1.0 < checks.jacobian_max
    assert not checks.folding and checks.flags == ()


def test_transform_file_round_trip(pair, tmp_path):
    path = tmp_path / "t.tfm"
    write_transform(path, pair.bspline)
    back = read_any_transform(path)
    assert isinstance(back, BSplineTransform)
    pts = pair.landmarks.plan_mm[:20]
    assert np.allclose(back.apply(pts), pair.bspline.apply(pts), atol=1e-6)
    # inverse_apply undoes apply
    assert np.allclose(pair.bspline.inverse_apply(pair.bspline.apply(pts)), pts, atol=1e-2)


def test_inverse_consistency_of_a_backward_registration(pair):
    from brachycryo.followup.checks import lattice_points

    lattice = lattice_points(pair.region, 6.0)
    linear = pair.bspline.linear
    fu_region = region_box(pair.fu_grid, linear.apply(lattice), 0.0)
    back = register_bspline(pair.fu_hu, pair.fu_grid, pair.plan_hu, pair.plan_grid,
                            linear.inverted(), region=fu_region, options=OPTIONS)  # fmt: skip
    checks = registration_checks(pair.bspline, pair.region, backward=back.transform,
                                 ic_points_mm=lattice)  # fmt: skip
    assert checks.inverse_consistency_mean_mm < 0.5
    assert checks.inverse_consistency_max_mm < 2.0
    # a wrong backward map (the identity) is seen: the rigid shift alone is ~3 mm
    wrong = registration_checks(pair.bspline, pair.region, backward=IDENTITY,
                                ic_points_mm=lattice)  # fmt: skip
    assert wrong.inverse_consistency_mean_mm > 2.0


def _sphere_roi(name: str, centre, r: float, z_planes) -> ROI:
    t = np.linspace(0, 2 * np.pi, 72, endpoint=False)
    contours = []
    for z in z_planes:
        dz = z - centre[2]
        if abs(dz) < r - 1e-6:
            rho = math.sqrt(r * r - dz * dz)
            pts = np.c_[centre[0] + rho * np.cos(t), centre[1] + rho * np.sin(t), np.full(72, z)]
            contours.append(Contour(pts))
    return ROI(1, name, "ORGAN", None, tuple(contours))


def _true_volume_cc(fu_grid: Grid, r: float) -> float:
    """The follow-up volume of the planning sphere, on a 0.25 mm grid around it."""
    coarse = followup_sphere_mask(fu_grid, TRUE, LESION_MM, r)
    centre = fu_grid.voxel_centres_mm()[coarse].mean(axis=0)
    box = Grid.from_bounds(centre - r - 6, centre + r + 6, 0.25)
    fine = followup_sphere_mask(box, TRUE, LESION_MM, r)
    assert not (fine[0].any() or fine[-1].any() or fine[:, 0].any() or fine[:, :, -1].any())
    return float(fine.sum()) * 0.25**3 / 1000.0


def test_zones_carried_onto_the_followup_keep_their_volume(pair):
    z_planes = np.arange(-20.0, 21.0, 1.0) + 0.5  # planning slices (voxel centres)
    carrier = Carrier.of(pair.bspline, pair.region)
    rigid_carrier = Carrier.of(pair.rigid.transform, pair.plan_grid)
    for name, r in RADII_MM.items():
        roi = _sphere_roi(name, LESION_MM, r, z_planes)
        pts = np.concatenate([c.points_mm for c in roi.contours])
        true_cc = _true_volume_cc(pair.fu_grid, r)
        moved = pair.bspline.apply(pts)
        frac = carry_fraction(roi, pair.fu_grid, carrier.inverse_sitk, moved, spacing_mm=1.0)
        cc = float(frac.sum()) * pair.fu_grid.voxel_volume_mm3 / 1000.0
        assert cc == pytest.approx(true_cc, rel=0.02), name
        mask = carry_roi(roi, pair.fu_grid, carrier.inverse_sitk, moved, spacing_mm=1.0)
        # and where it lies: the overlap with the true follow-up shape
        truth = followup_sphere_mask(pair.fu_grid, TRUE, LESION_MM, r)
        dice = 2 * (mask & truth).sum() / (mask.sum() + truth.sum())
        rigid_mask = carry_roi(roi, pair.fu_grid, rigid_carrier.inverse_sitk,
                               pair.rigid.transform.apply(pts), spacing_mm=1.0)  # fmt: skip
        rigid_dice = 2 * (rigid_mask & truth).sum() / (rigid_mask.sum() + truth.sum())
        assert dice > 0.93 and dice > rigid_dice, (name, dice, rigid_dice)


def test_written_rtstruct_and_rtdose_are_valid(pair, tmp_path):
    ctx_plan = StudyContext()
    plan_ct = write_ct_series(tmp_path / "plan", pair.plan_hu, pair.plan_grid, context=ctx_plan)
    ctx_fu = dataclasses.replace(ctx_plan, frame_of_reference_uid=new_uid(),
                                 study_instance_uid=new_uid())  # fmt: skip
    fu_ct = write_ct_series(tmp_path / "fu", pair.fu_hu, pair.fu_grid, context=ctx_fu)
    z_planes = pair.plan_grid.ijk_to_mm(np.c_[np.zeros(N), np.zeros(N), np.arange(N)])[:, 2]
    zones = [_sphere_roi(n, LESION_MM, r, z_planes) for n, r in RADII_MM.items()]
    # a planned dose falling off from the lesion, on a 2 mm grid
    dg = Grid.from_bounds(LESION_MM - 24, LESION_MM + 24, 2.0)
    r2 = np.sum((dg.voxel_centres_mm() - LESION_MM) ** 2, axis=-1)
    dose = DoseVolume(150.0 * np.exp(-r2 / (2 * 12.0**2)), dg, "GY", "GY", "PHYSICAL", "PLAN",
                      new_uid(), new_uid(), ctx_plan.study_instance_uid,
                      ctx_plan.frame_of_reference_uid, new_uid(), 1.0)  # fmt: skip
    names = {"zones_on_followup": "RS.zones_on_followup.dcm",
             "dose_on_followup": "RD.plan_on_followup.dcm",
             "followup_on_plan": "RS.followup_on_plan.dcm"}  # fmt: skip
    from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct

    fu_zone = followup_sphere_mask(pair.fu_grid, TRUE, LESION_MM, 9.0)
    fu_ss = write_rtstruct(tmp_path / "RS.fu.dcm", [RoiSpec("FU_Ablation", mask=fu_zone)], fu_ct)
    carrier = Carrier.of(pair.bspline, pair.region)
    files = write_carried(tmp_path, names, plan_ct=plan_ct, plan_rois=zones, plan_dose=dose,
                          fu_ct=fu_ct, fu_structures=fu_ss, carrier=carrier)  # fmt: skip
    assert files.outside == ()
    on_fu = read_rtstruct(tmp_path / names["zones_on_followup"])
    assert on_fu.frame_of_reference_uid == fu_ct.frame_of_reference_uid
    assert on_fu.roi_names == list(RADII_MM)
    for ss, ct in (
        (on_fu, fu_ct),
        (on_plan := read_rtstruct(tmp_path / names["followup_on_plan"]), plan_ct),
    ):
        assert check_against_image(
            ss, frame_of_reference_uid=ct.frame_of_reference_uid,
            series_instance_uid=ct.series_instance_uid,
            sop_instance_uids=frozenset(ct.sop_instance_uids),
        ) == []  # fmt: skip
    assert on_plan.frame_of_reference_uid == plan_ct.frame_of_reference_uid
    assert on_plan.roi_names == ["FU_Ablation_FU"]
    rd = read_rtdose(tmp_path / names["dose_on_followup"])
    assert rd.frame_of_reference_uid == fu_ct.frame_of_reference_uid
    assert rd.grid.spacing_mm == dg.spacing_mm
    # the carried dose at follow-up points = the planned dose at S(y)
    y = pair.landmarks.followup_mm
    from brachycryo.qa.dvh import sample_dose_at_points

    got, _ = sample_dose_at_points(rd.dose_gy, rd.grid, y)
    want = 150.0 * np.exp(-np.sum((TRUE.fu_to_plan(y) - LESION_MM) ** 2, axis=1) / 288.0)
    assert np.max(np.abs(np.asarray(got) - want)) < 0.03 * 150.0


def test_folding_transform_is_flagged_and_refused(pair, tmp_path):
    b = pair.bspline
    params = np.zeros(len(b.parameters))
    n = len(params) // 3
    params[n // 2] = 40.0  # one control point pushed 40 mm along x on a 15 mm mesh: folds
    params[n // 2 + 1] = -40.0
    folded = dataclasses.replace(b, parameters=tuple(params))
    checks = registration_checks(folded, pair.region)
    assert checks.folding and checks.jacobian_min <= 0.0
    assert any("folds" in f for f in checks.flags)
    with pytest.raises(RegistrationError, match="folds"):
        refuse_folding(checks)
    # read from a file, it is refused the same way by the workflow's check
    write_transform(tmp_path / "fold.tfm", folded)
    assert registration_checks(read_any_transform(tmp_path / "fold.tfm"), pair.region).folding


def test_landmark_file_and_tg132_flag(pair, tmp_path):
    lm = pair.landmarks
    path = tmp_path / "lm.csv"
    rows = ["name,plan_x_mm,plan_y_mm,plan_z_mm,followup_x_mm,followup_y_mm,followup_z_mm"]
    rows += [f"{n},{p[0]},{p[1]},{p[2]},{q[0]},{q[1]},{q[2]}"
             for n, p, q in zip(lm.names, lm.plan_mm, lm.followup_mm)]  # fmt: skip
    path.write_text("\n".join(rows) + "\n")
    back = read_landmarks(path)
    assert np.allclose(back.plan_mm, lm.plan_mm) and back.names == lm.names
    # the identity is off by the rigid shift + bump: flagged against TG-132, not refused
    flagged = registration_checks(IDENTITY, pair.plan_grid, landmarks=back)
    assert not flagged.tre.within_tg132 and any("TG-132" in f for f in flagged.flags)
    (tmp_path / "bad.csv").write_text("plan_x_mm,plan_y_mm\n1,2\n")
    with pytest.raises(BrachyCryoError, match="missing columns"):
        read_landmarks(tmp_path / "bad.csv")
    (tmp_path / "nan.csv").write_text(rows[0] + "\nA,1,2,x,4,5,6\n")
    with pytest.raises(BrachyCryoError, match="line 2"):
        read_landmarks(tmp_path / "nan.csv")
