"""The phantom patient: anatomy requirements, determinism, DICOM validity, CLI."""

import json

import numpy as np
import pytest
from scipy.spatial import ConvexHull
from scipy.spatial.distance import pdist

from brachycryo.cli import build_parser, main
from brachycryo.core.errors import ConfigError
from brachycryo.dicom_io.ct_series import load_ct_series
from brachycryo.dicom_io.rasterize import roi_volume_cc
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.phantoms import build_phantom, write_phantom

# organ at risk -> largest allowed gap (mm) between it and the bulky tumour
OARS_NEAR_BULKY = {
    "abdomen": {"Kidney_L": 10.0, "Aorta": 10.0, "Vertebra": 25.0},
    "pelvis": {"Rectum": 15.0, "Bladder": 10.0, "IliacVessels": 10.0},
}


def _longest_diameter_mm(case, name):
    pts = case.grid.ijk_to_mm(np.argwhere(case.masks[name])[:, ::-1].astype(float))
    return float(pdist(pts[ConvexHull(pts).vertices]).max())


@pytest.fixture(scope="module", params=["abdomen", "pelvis"])
def case(request):
    return build_phantom(seed=0, site=request.param, spacing_mm=(2.5, 2.5, 2.0))


def test_bulky_index_tumour_is_large_and_lobulated(case):
    name = case.index_tumour
    assert case.volume_cc(name) >= 100.0
    assert _longest_diameter_mm(case, name) >= 70.0
    # not an ellipsoid: compare with the ellipsoid of the same second moments
    pts = case.grid.ijk_to_mm(np.argwhere(case.masks[name])[:, ::-1].astype(float))
    centre = pts.mean(axis=0)
    cov = np.cov((pts - centre).T)
    evals, evecs = np.linalg.eigh(cov)
    semi = np.sqrt(5.0 * evals)  # solid ellipsoid: variance along an axis = a^2 / 5
    centres = case.grid.voxel_centres_mm().reshape(-1, 3)
    q = ((centres - centre) @ evecs) / semi
    ellipsoid = (np.sum(q**2, axis=1) <= 1.0).reshape(case.grid.shape)
    mismatch = np.logical_xor(ellipsoid, case.masks[name]).sum() / case.masks[name].sum()
    assert mismatch > 0.15, f"index tumour is too close to an ellipsoid ({mismatch:.2f})"


def test_metastases_and_oars(case):
    mets = [n for n in case.masks if n.startswith("GTV_Met")]
    assert len(mets) >= 2
    for m in mets:
        assert 15.0 <= _longest_diameter_mm(case, m) <= 30.0, m
    bulky = case.masks[case.index_tumour]
    from scipy import ndimage

    dist_mm = ndimage.distance_transform_edt(~bulky, sampling=case.grid.spacing_mm[::-1])
    for oar, gap_mm in OARS_NEAR_BULKY[case.site].items():
        assert not (case.masks[oar] & bulky).any(), f"{oar} overlaps the tumour"
        assert dist_mm[case.masks[oar]].min() <= gap_mm, f"{oar} is not next to the tumour"
    for oar in ("BODY", "Skin"):
        assert oar in case.masks
    cord = "SpinalCord" if case.site == "abdomen" else "CaudaEquina"
    assert case.masks[cord].any()
    if case.site == "abdomen":  # the cord lies inside the vertebra's canal
        from scipy.ndimage import binary_fill_holes

        filled = np.stack([binary_fill_holes(s) for s in case.masks["Vertebra"]])
        assert filled[case.masks["SpinalCord"]].mean() > 0.95


def test_hounsfield_units_by_tissue(case):
    hu, m = case.hu, case.masks
    assert np.median(hu[~m["BODY"]]) < -950
    bone = "Vertebra" if case.site == "abdomen" else "PelvicBone"
    assert np.median(hu[m[bone]]) > 400
    soft = m[case.index_tumour]
    assert 20 < np.median(hu[soft]) < 80 and 5 < np.std(hu[soft]) < 40
    body = hu[m["BODY"]]
    assert ((body > -140) & (body < -60)).mean() > 0.05  # subcutaneous fat around -100 HU


def test_deterministic_and_seed_dependent():
    a = build_phantom(seed=3, spacing_mm=5.0)
    b = build_phantom(seed=3, spacing_mm=5.0)
    c = build_phantom(seed=4, spacing_mm=5.0)
    np.testing.assert_array_equal(a.hu, b.hu)
    for k in a.masks:
        np.testing.assert_array_equal(a.masks[k], b.masks[k])
    assert not np.array_equal(a.masks["GTV_Bulky"], c.masks["GTV_Bulky"])
    with pytest.raises(ConfigError, match="site"):
        build_phantom(site="brain")


def test_written_phantom_is_valid_dicom(tmp_path, dciodvfy):
    case = build_phantom(seed=1, spacing_mm=(4.0, 4.0, 2.0))
    files = write_phantom(tmp_path / "ph", case)
    ct = load_ct_series(files.ct_folder)
    assert ct.grid.spacing_mm[2] == 2.0 and ct.grid.same_as(case.grid)
    ss = read_rtstruct(files.rtstruct)
    assert "GTV_Bulky" in ss.roi_names and ss.frame_of_reference_uid == ct.frame_of_reference_uid
    vol = roi_volume_cc(ss.roi("GTV_Bulky"), slice_thickness_mm=2.0)
    assert vol == pytest.approx(case.volume_cc("GTV_Bulky"), rel=0.05)
    for path in (files.ct.paths[0], files.rtstruct):
        errors, _ = dciodvfy(path)
        assert errors == [], path


def test_cli_phantom_info_and_errors(tmp_path, capsys):
    help_text = build_parser().format_help()
    for cmd in ("phantom", "info"):
        assert cmd in help_text
    out = tmp_path / "case"
    assert main(["phantom", str(out), "--spacing-mm", "5", "5", "2", "--quiet", "--seed", "2"]) == 0
    capsys.readouterr()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["ct_series"][0]["spacing_mm"] == [5.0, 5.0, 2.0]
    rois = {r["name"]: r for r in info["rtstruct"][0]["rois"]}
    assert rois["GTV_Bulky"]["volume_cc"] > 100
    # a second run refuses to overwrite; the error names the file, no traceback
    assert main(["phantom", str(out), "--spacing-mm", "5", "5", "2", "--quiet"]) == 1
    assert "exists" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "nowhere")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_info_on_real_files(shared_data, capsys):
    assert main(["info", str(shared_data / "dicom" / "dicompyler_core_example")]) == 0
    text = capsys.readouterr().out
    assert "Areola" in text and "empty" in text and "Heart" in text


def test_extra_metastases_are_placed_clear_of_organs_and_reproducible():
    from brachycryo.core.errors import ConfigError

    plain = build_phantom(seed=3, spacing_mm=5.0)
    many = build_phantom(seed=3, spacing_mm=5.0, extra_metastases=8)
    again = build_phantom(seed=3, spacing_mm=5.0, extra_metastases=8)
    extra = [f"GTV_Met{n}" for n in range(3, 11)]
    assert set(many.masks) == set(plain.masks) | set(extra)
    for name in plain.masks:  # the site's own anatomy is unchanged
        assert np.array_equal(many.masks[name], plain.masks[name])
    oars = [n for n, o in many.organs.items() if o.is_oar and n != "Liver" and n in many.masks]
    taken = np.zeros(many.grid.shape, dtype=bool)
    for name in extra:
        m = many.masks[name]
        assert 0.5 < many.volume_cc(name) < 10.0
        assert not any((m & many.masks[o]).any() for o in oars)
        assert not (m & taken).any()  # no two nodules overlap
        taken |= m
        assert np.array_equal(m, again.masks[name])
    with pytest.raises(ConfigError, match="extra_metastases"):
        build_phantom(seed=3, spacing_mm=5.0, extra_metastases=13)


@pytest.mark.parametrize("site", ["abdomen", "pelvis"])
def test_bulky_scale_scales_only_the_bulky_mass(site):
    """Scaling by s about its centre multiplies the mass's volume by at most s^3 (less
    where the organs' keep-out cuts it); every other structure and the default phantom
    stay as they are."""
    from brachycryo.core.errors import ConfigError

    plain = build_phantom(seed=1, site=site, spacing_mm=4.0)
    same = build_phantom(seed=1, site=site, spacing_mm=4.0, bulky_scale=1.0)
    assert np.array_equal(plain.hu, same.hu)
    v0 = plain.volume_cc("GTV_Bulky")
    for s in (0.8, 1.3):
        big = build_phantom(seed=1, site=site, spacing_mm=4.0, bulky_scale=s)
        for name in plain.masks:
            if name not in ("GTV_Bulky", "BODY"):
                assert np.array_equal(
                    big.masks[name] & ~big.masks["GTV_Bulky"],
                    plain.masks[name] & ~big.masks["GTV_Bulky"],
                ), name
        v = big.volume_cc("GTV_Bulky")
        assert (v > v0) == (s > 1)
        assert v <= s**3 * v0 * 1.1  # voxelisation at 4 mm
        assert v >= 0.5 * s**3 * v0
    with pytest.raises(ConfigError, match="bulky_scale"):
        build_phantom(seed=1, site=site, spacing_mm=4.0, bulky_scale=3.0)
