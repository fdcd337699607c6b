"""``brachycryo dose`` on our RTPLANs and on other systems' plans."""

import datetime as dt

import numpy as np
import pydicom
import pytest

from brachycryo.cli import main
from brachycryo.core.grid import Grid
from brachycryo.core.seeds import Seeds
from brachycryo.dicom_io.common import StudyContext
from brachycryo.dicom_io.ct_series import write_ct_series
from brachycryo.dicom_io.rtdose import read_rtdose
from brachycryo.dicom_io.rtplan import BrachySource, seed_implant, write_seed_rtplan
from brachycryo.dose_kernels import dose_on_grid, load_seed_model
from tests.dicom_io.test_afterloader_plans import write_hdr_plan


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    root = tmp_path_factory.mktemp("dose")
    ctx = StudyContext()
    grid = Grid((15, 20, 20), (-19.0, -19.0, -14.0), (2.0, 2.0, 2.0))
    ct = write_ct_series(root / "ct", np.zeros(grid.shape), grid, context=ctx)
    pos = np.array([[0, 0, -5.0], [0, 0, 5.0], [8, 0, -5.0], [8, 0, 5.0]])
    src = BrachySource(sk_u=0.7, reference_datetime=dt.datetime(2026, 1, 1), model="6711")
    plan = seed_implant(pos, [1, 1, 2, 2], source=src, referenced_structure_set_uid="1.2.3")
    write_seed_rtplan(root / "RP.dcm", plan, context=ct.context)
    return root, grid, pos


def _expected(pos, grid, quantity="total"):
    seeds = Seeds(pos, 0.7, np.tile([0, 0, 1.0], (len(pos), 1)))
    return dose_on_grid(seeds, grid, "6711", backend="numpy", dtype=np.float64, quantity=quantity)


def test_dose_on_ct_grid_matches_engine(case):
    root, grid, pos = case
    out = root / "RD_ct.dcm"
    assert main(["dose", "--rtplan", str(root / "RP.dcm"), "--ct", str(root / "ct"), "--out",
                 str(out), "--quiet", "--backend", "numba"]) == 0  # fmt: skip
    rd = read_rtdose(out)
    assert rd.grid.same_as(grid)
    expected = _expected(pos, grid)
    np.testing.assert_allclose(rd.dose_gy, expected, rtol=1e-5, atol=rd.dose_grid_scaling)
    assert rd.referenced_plan_uid is not None
    # total dose at 1 cm on the transverse axis of one seed is S_K * Lambda * T1/2 / ln 2
    model = load_seed_model("6711")
    assert model.dose_rate_constant_gy_per_h_per_u * model.mean_life_h == pytest.approx(
        19.847, rel=2e-3
    )


def test_dose_rate_and_seed_grid(case):
    root, _, pos = case
    out = root / "RD_rate.dcm"
    assert main(["dose", "--rtplan", str(root / "RP.dcm"), "--spacing-mm", "2.5", "--out",
                 str(out), "--dose-rate", "--quiet"]) == 0  # fmt: skip
    rd = read_rtdose(out)
    expected = _expected(pos, rd.grid, quantity="rate")
    np.testing.assert_allclose(rd.dose_gy, expected, rtol=1e-5, atol=rd.dose_grid_scaling)
    lo, hi = rd.grid.bounds_mm()
    assert np.all(lo <= pos.min(0) - 29) and np.all(hi >= pos.max(0) + 29)


def test_other_systems_plans(shared_data, tmp_path, capsys):
    pdr = shared_data / "dicom" / "brachy_rtplans" / "pyTG43_RP.PDR.dcm"
    code = main(["dose", "--rtplan", str(pdr), "--spacing-mm", "5", "--out",
                 str(tmp_path / "x.dcm"), "--quiet"])  # fmt: skip
    assert code == 1
    assert "I-125" in capsys.readouterr().err
    assert not (tmp_path / "x.dcm").exists()


# ------------------------------------------------ plans without SourceModelID (issue 14.3)
def _anonymous_seed_plan(root, manufacturer, length_mm, sk_u=0.55):
    """A seed plan as Oncentra Prostate writes it: no SourceModelID, but SourceManufacturer,
    SourceIsotopeName and ActiveSourceLength."""
    ctx = StudyContext()
    pos = np.array([[0, 0, -5.0], [0, 0, 5.0], [8, 0, -5.0], [8, 0, 5.0], [8, 0, 15.0]])
    src = BrachySource(
        sk_u=sk_u,
        reference_datetime=dt.datetime(2026, 1, 1),
        model="",
        manufacturer=manufacturer,
        active_length_mm=length_mm,
    )
    plan = seed_implant(pos, [1, 1, 2, 2, 2], source=src, referenced_structure_set_uid="1.2.3")
    path = root / f"RP_{manufacturer.split()[0]}.dcm"
    write_seed_rtplan(path, plan, context=ctx)
    return path, pos


def test_plan_without_model_id_suggests_and_auto_chooses(tmp_path, capsys):
    path, pos = _anonymous_seed_plan(tmp_path, "Nucletron B.V.", 3.4)
    out = tmp_path / "RD.dcm"
    args = ["dose", "--rtplan", str(path), "--spacing-mm", "4", "--out", str(out), "--quiet",
            "--backend", "numpy"]  # fmt: skip
    assert main(args) != 0
    err = capsys.readouterr().err
    assert "130.002" in err and "--model auto" in err and "Nucletron" in err
    assert not out.exists()
    assert main(["info", str(path)]) == 0
    assert "suggested_model=130.002" in capsys.readouterr().out
    assert main([*args, "--model", "auto"]) == 0
    said = capsys.readouterr().out
    assert "--model auto chose 130.002" in said and "ActiveSourceLength 3.4 mm" in said
    assert "5 seeds (130.002, 2.75 U in total)" in said
    rd = read_rtdose(out)
    seeds = Seeds(pos, 0.55, np.tile([0, 0, 1.0], (len(pos), 1)))
    expected = dose_on_grid(seeds, rd.grid, "130.002", backend="numpy", dtype=np.float64)
    np.testing.assert_allclose(rd.dose_gy, expected, rtol=1e-5, atol=rd.dose_grid_scaling)


def test_auto_refuses_an_ambiguous_match(tmp_path, capsys):
    path, _ = _anonymous_seed_plan(tmp_path, "Amersham", 3.0)
    code = main(["dose", "--rtplan", str(path), "--spacing-mm", "4", "--out",
                 str(tmp_path / "RD.dcm"), "--quiet", "--model", "auto"])  # fmt: skip
    assert code != 0
    err = capsys.readouterr().err
    assert "cannot choose" in err and "6702, 6711, 6733" in err


def test_point_formalism_for_a_model_without_phi_an_table(case, capsys):
    """--formalism point with AgX100 (no phi_an.csv): φ_an derived from F, and said so."""
    root, _, pos = case
    out = root / "RD_point.dcm"
    assert main(["dose", "--rtplan", str(root / "RP.dcm"), "--spacing-mm", "4", "--out",
                 str(out), "--quiet", "--model", "AgX100", "--formalism", "point",
                 "--backend", "numpy"]) == 0  # fmt: skip
    assert "phi_an(r) derived from F(r,theta)" in capsys.readouterr().out
    rd = read_rtdose(out)
    seeds = Seeds(pos, 0.7, np.tile([0, 0, 1.0], (len(pos), 1)))
    expected = dose_on_grid(
        seeds, rd.grid, "AgX100", formalism="point", backend="numpy", dtype=np.float64
    )
    np.testing.assert_allclose(rd.dose_gy, expected, rtol=1e-5, atol=rd.dose_grid_scaling)


# ------------------------------------------------------------- HDR/PDR plans (issue 14.4)
@pytest.mark.parametrize("kind", ["HDR", "PDR"])
def test_dose_refuses_afterloader_plans(tmp_path, capsys, kind):
    path = tmp_path / "RP.dcm"
    write_hdr_plan(path, kind)
    out = tmp_path / "RD.dcm"
    code = main(["dose", "--rtplan", str(path), "--spacing-mm", "5", "--out", str(out),
                 "--quiet"])  # fmt: skip
    assert code != 0 and not out.exists()
    err = capsys.readouterr().err
    assert f"{kind} afterloader plan" in err and "9 dwell positions" in err and "LDR" in err


def test_info_says_hdr_plan(tmp_path, capsys):
    write_hdr_plan(tmp_path / "RP.hdr.dcm")
    assert main(["info", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "plan=HDR afterloader (not a seed implant)" in text and "n_dwell_positions=9" in text
    assert "total_sk_u" not in text


def test_dose_bits_16_reads_back_within_the_stated_bound(case, dciodvfy):
    """--dose-bits 16: dicom3tools can check the file, and every voxel is within
    DoseGridScaling / 2 <= max / 131070 of the engine's dose (issue 14.7)."""
    root, grid, pos = case
    out = root / "RD_16.dcm"
    assert main(["dose", "--rtplan", str(root / "RP.dcm"), "--ct", str(root / "ct"), "--out",
                 str(out), "--quiet", "--backend", "numpy", "--dose-bits", "16"]) == 0  # fmt: skip
    ds = pydicom.dcmread(out)
    assert (
        ds.BitsAllocated == 16 and ds.SeriesNumber != pydicom.dcmread(root / "RP.dcm").SeriesNumber
    )
    rd = read_rtdose(out)
    expected = _expected(pos, grid)
    assert rd.dose_grid_scaling <= expected.max() / 65535 * (1 + 1e-8)
    assert np.max(np.abs(rd.dose_gy - expected)) <= rd.dose_grid_scaling / 2 * (1 + 1e-6)
    errors, _ = dciodvfy(out)
    assert errors == [], errors
