"""``brachycryo dose`` on our RTPLANs and on other systems' plans."""

import datetime as dt

import numpy as np
import pytest

from brachycryo.cli import main
from brachycryo.core.grid import Grid
from brachycryo.core.seeds import Seeds
from brachycryo.dicom_io.common import StudyContext
from brachycryo.dicom_io.ct_series import write_ct_series
from brachycryo.dicom_io.rtdose import read_rtdose
from brachycryo.dicom_io.rtplan import BrachySource, seed_implant, write_seed_rtplan
from brachycryo.dose_kernels import dose_on_grid, load_seed_model


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
