"""``brachycryo postimplant`` end to end on a tiny case (in-process and as a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from brachycryo.cli import main
from brachycryo.dicom_io.rtplan import read_rtplan
from tests.postimplant.test_postimplant import RX_GY, SK_U, make_case

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_case(tmp_path_factory.mktemp("cli"), n_seeds=20)


def test_cli_with_plan_writes_everything(tiny, tmp_path, capsys):
    out = tmp_path / "post"
    argv = ["postimplant", "--ct", str(tiny.ct_dir), "--rtstruct", str(tiny.rtstruct),
            "--plan", str(tiny.plan_path), "--out", str(out), "--dose-spacing-mm", "3",
            "--backend", "numba", "--no-3d"]  # fmt: skip
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "20 seeds detected" in text and "ΔD90" in text and "paired 20" in text
    doc = json.loads((out / "metrics.json").read_text())
    gtv = doc["comparison"]["structures"]["GTV"]
    assert abs(gtv["delta_d90_pct_of_plan"]) <= 2.0
    assert doc["settings"]["dose_spacing_mm"] == 3.0
    assert read_rtplan(out / "RP.postimplant.dcm").n_seeds == 20
    # a second run refuses to overwrite before computing anything, then replaces on request
    assert main(argv) == 1
    assert "exists" in capsys.readouterr().err
    assert main([*argv, "--overwrite", "--quiet"]) == 0
    assert capsys.readouterr().out == ""


def test_cli_without_plan_names_the_missing_option(tiny, tmp_path, capsys):
    argv = ["postimplant", "--ct", str(tiny.ct_dir), "--rtstruct", str(tiny.rtstruct),
            "--out", str(tmp_path / "o"), "--quiet", "--model", "6711"]  # fmt: skip
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "brachycryo postimplant: error" in err and "--sk-u" in err
    assert not (tmp_path / "o").exists()


def test_cli_subprocess_without_plan(tiny, tmp_path):
    out = tmp_path / "sub"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "brachycryo.cli", "postimplant", "--ct", str(tiny.ct_dir),
         "--rtstruct", str(tiny.rtstruct), "--out", str(out), "--sk-u", str(SK_U),
         "--model", "6711", "--prescription-gy", str(RX_GY), "--seed-count", "20",
         "--dose-spacing-mm", "3", "--backend", "numpy", "--no-3d", "--quiet"],
        capture_output=True, text=True, cwd=ROOT, env=env, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((out / "metrics.json").read_text())
    assert doc["detection"]["n_detected"] == 20 and "comparison" not in doc
    assert doc["settings"]["from"]["sk_u"] == "option"
