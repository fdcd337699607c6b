"""``brachycryo iceball`` configs written by users: a probe whose handle would lie inside the
patient is flagged (issue 21; what is checkable: cryo_iceball/config.py's docstring)."""

import argparse
import json
import logging

import numpy as np
import pytest

from brachycryo.core.errors import ConfigError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.config import handle_flags, load_config
from tests.cryo_iceball.test_cryo_io import CASE  # 17G probe, tip z -11, active to z 11

GRID_Z_MAX_MM = 23.0  # the medium grid: active zone (z -11 .. 11) + 12 mm margin


def _medium(tmp_path, entry=None, direction=(0.0, 0.0, 1.0)):
    text = CASE.replace("direction = [0.0, 0.0, 1.0]",
                        f"direction = [{', '.join(map(str, direction))}]")  # fmt: skip
    if entry is not None:
        text = text.replace("[[protocol]]", f"entry_mm = {list(entry)}\n[[protocol]]", 1)
    path = tmp_path / "c.toml"
    path.write_text(text)
    return load_config(path)


@pytest.mark.parametrize(
    ("entry", "key", "match"),
    [
        ((0.0, 0.0, -30.0), "probe[0].direction", "tip side"),
        ((0.0, 0.0, 5.0), "probe[0].direction", "within the active zone"),
        ((3.0, 0.0, 40.0), "probe[0].entry_mm", "off the probe's axis"),
    ],
)
def test_entry_on_the_wrong_side_is_an_error_naming_the_key(tmp_path, entry, key, match):
    with pytest.raises(ConfigError, match=match) as exc:
        _medium(tmp_path, entry)
    assert exc.value.key == key


def test_medium_flags_an_entry_inside_the_simulated_block(tmp_path):
    assert handle_flags(_medium(tmp_path)) == []  # no entry: taken to enter from the edge
    assert handle_flags(_medium(tmp_path, (0.0, 0.0, 40.0))) == []  # skin beyond the block
    cfg = _medium(tmp_path, (0.0, 0.0, 15.0))
    assert cfg.entries_mm == ((0.0, 0.0, 15.0),)
    (flag,) = handle_flags(cfg)
    assert flag.probe == 0 and "medium runs on" in flag.message
    run_mm = float(flag.message.split("runs on ")[1].split(" mm")[0])
    assert run_mm == pytest.approx(GRID_Z_MAX_MM - 15.0, abs=1.0)


BODY_GRID = Grid.from_bounds((-60.0, -60.0, -60.0), (60.0, 60.0, 60.0), 2.0)


def _ball(radius_mm: float) -> np.ndarray:
    return np.linalg.norm(BODY_GRID.voxel_centres_mm(), axis=-1) <= radius_mm


def test_body_outline_flags_tip_outside_handle_inside_and_a_misplaced_entry(tmp_path):
    """A ball of 50 mm radius as the body: the axis from the tip (0, 0, -11) along +z
    leaves it at z = 50."""
    cfg = _medium(tmp_path)
    assert handle_flags(cfg, body=_ball(50.0), body_grid=BODY_GRID) == []
    (flag,) = handle_flags(cfg, body=_ball(5.0), body_grid=BODY_GRID)
    assert "tip lies outside BODY" in flag.message
    column = np.abs(BODY_GRID.voxel_centres_mm()[..., 0]) < 30  # reaches the grid's ends
    (flag,) = handle_flags(cfg, body=column, body_grid=BODY_GRID, body_name="EXT")
    assert "stays inside EXT to the edge of the CT" in flag.message
    on_skin = _medium(tmp_path, (0.0, 0.0, 50.0))
    assert handle_flags(on_skin, body=_ball(50.0), body_grid=BODY_GRID) == []
    deep = _medium(tmp_path, (0.0, 0.0, 40.0))
    (flag,) = handle_flags(deep, body=_ball(50.0), body_grid=BODY_GRID)
    assert "entry_mm is 10" in flag.message  # 10 mm short of where the axis leaves the body
    wall = np.abs(BODY_GRID.voxel_centres_mm()[..., 2] - 30.0) < 3  # a slab across the shaft
    (flag,) = handle_flags(cfg, body=_ball(50.0), body_grid=BODY_GRID, avoid={"Aorta": wall})
    assert "runs through Aorta" in flag.message
    assert handle_flags(cfg, body=_ball(50.0), body_grid=BODY_GRID, avoid={"A": ~_ball(55)}) == []


CT_CONFIG = """
[ct]
series = "CT"
rtstruct = "RS.phantom.dcm"
vessels = ["IVC"]
oars = ["Aorta", "SpinalCord"]
[grid]
spacing_mm = 2.0
margin_mm = 8
[[probe]]
model = "generic_2p4mm"
tip_mm = [36.0, 34.0, -11.0]
direction = [DIR]
[[protocol]]
phase = "freeze"
minutes = 0.2
"""


@pytest.fixture(scope="module")
def phantom_ct(tmp_path_factory):
    """The whole phantom at 4 mm: its BODY ends within the CT laterally, not along z."""
    from brachycryo.phantoms import build_phantom, write_phantom

    folder = tmp_path_factory.mktemp("ct")
    write_phantom(folder, build_phantom(seed=0, site="abdomen", spacing_mm=(4.0, 4.0, 4.0)))
    return folder


def _ct_flags(folder, direction):
    from brachycryo.cli.iceball import _probe_flags
    from brachycryo.planning.cryo_case import load_ct_case

    (folder / "c.toml").write_text(CT_CONFIG.replace("DIR", ", ".join(map(str, direction))))
    cfg = load_config(folder / "c.toml")
    return _probe_flags(cfg, load_ct_case(cfg))


def test_ct_case_flags_a_handle_inside_the_patient(phantom_ct):
    """Tip in the bulky mass left of the aorta: handle out to the left is fine; the
    insertion direction of that approach (-x) sends the shaft through the aorta (an OAR
    here: as a [ct] vessel, the active zone in it is refused before); along +z the axis
    never reaches the skin in the scan."""
    assert _ct_flags(phantom_ct, (1.0, 0.0, 0.0)) == []
    (reversed_flag,) = _ct_flags(phantom_ct, (-1.0, 0.0, 0.0))
    assert "runs through Aorta, IVC" in reversed_flag
    (along_z,) = _ct_flags(phantom_ct, (0.0, 0.0, 1.0))
    assert "stays inside BODY to the edge of the CT" in along_z


def test_cli_prints_and_records_the_flags(tmp_path, caplog):
    from brachycryo.cli import iceball

    path = tmp_path / "c.toml"
    path.write_text(CASE.replace("[[protocol]]", "entry_mm = [0.0, 0.0, 15.0]\n[[protocol]]", 1))
    p = argparse.ArgumentParser()
    iceball.register(p.add_subparsers())
    args = p.parse_args(["iceball", str(path), "--out", str(tmp_path / "o"), "--quiet",
                         "--backend", "numba"])  # fmt: skip
    with caplog.at_level(logging.WARNING):
        assert args.func(args) == 0
    info = json.loads((tmp_path / "o" / "run_info.json").read_text())
    assert len(info["probe_flags"]) == 1 and "medium runs on" in info["probe_flags"][0]
    assert any("medium runs on" in r.getMessage() for r in caplog.records)
