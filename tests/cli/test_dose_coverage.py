"""``brachycryo dose --ct/--like`` on a grid that misses the seeds (issue 14 item 9, issue 20
item 4): all outside is an error, some outside a warning with their count and S_K."""

from __future__ import annotations

import datetime as dt

import numpy as np

from brachycryo.cli import main
from brachycryo.dicom_io.ct_series import load_ct_series
from brachycryo.dicom_io.rtplan import BrachySource, seed_implant, write_seed_rtplan
from tests.cli.test_dose_cli import case  # noqa: F401  (module fixture: CT + RTPLAN)


def _plan(root, name, positions_mm) -> str:
    ct = load_ct_series(root / "ct")
    pos = np.asarray(positions_mm, float)
    src = BrachySource(sk_u=0.7, reference_datetime=dt.datetime(2026, 1, 1), model="6711")
    plan = seed_implant(pos, [1] * len(pos), source=src, referenced_structure_set_uid="1.2.3")
    path = root / name
    write_seed_rtplan(path, plan, context=ct.context, overwrite=True)
    return str(path)


def test_every_seed_outside_the_ct_is_an_error(case, tmp_path, capsys):  # noqa: F811
    root, _, _ = case  # the CT spans x, y -20..20 mm and z -15..15 mm
    rtplan = _plan(root, "RP.far.dcm", [[0, 0, 100.0], [0, 0, 110.0]])
    out = tmp_path / "RD.dcm"
    code = main(["dose", "--rtplan", rtplan, "--ct", str(root / "ct"), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1
    assert "none of the 2 seeds" in err and "z -15.0 to 15.0 mm" in err
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_some_seeds_outside_the_ct_is_a_warning_with_count_and_sk(case, tmp_path, capsys):  # noqa: F811
    root, _, _ = case
    rtplan = _plan(root, "RP.some.dcm", [[0, 0, 0.0], [0, 0, 5.0], [0, 0, 60.0]])
    out = tmp_path / "RD.dcm"
    code = main(["dose", "--rtplan", rtplan, "--ct", str(root / "ct"), "--out", str(out),
                 "--quiet"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0 and out.is_file()
    assert "warning: 1 of 3 seeds (0.70 of 2.10 U) lie outside the grid" in text


def test_a_grid_too_large_is_refused_before_allocating(case, tmp_path, capsys):  # noqa: F811
    root, _, _ = case  # 1e-4 mm over the 40 x 40 x 30 mm CT: 4.8e16 voxels (no int64 wrap)
    out = tmp_path / "RD.dcm"
    code = main(["dose", "--rtplan", str(root / "RP.dcm"), "--ct", str(root / "ct"),
                 "--spacing-mm", "1e-4", "--out", str(out), "--quiet"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 1 and "--spacing-mm" in err and "GiB" in err
    assert list(tmp_path.iterdir()) == []
