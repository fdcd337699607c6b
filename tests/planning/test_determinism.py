"""A plan does not depend on the clock: the same RTPLAN on a quiet machine, a saturated one
and a machine whose clock races; the wall-clock limit only ever fails a run, with no plan."""

import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from brachycryo.cli import main
from brachycryo.core.deadline import WallClock
from brachycryo.core.errors import ConfigError, WallClockLimitError
from brachycryo.dicom_io.rtplan import read_rtplan
from brachycryo.planning.pipeline import make_plan
from brachycryo.planning.spec import parse_plan_spec
from tests.planning.test_plan_end_to_end import SPEC, _toml


def _burn(stop_at: float) -> None:
    x = 0
    while time.time() < stop_at:
        x += 1


def _plan_cli(tmp_path, name: str, doc: dict) -> tuple[int, object]:
    spec_path = tmp_path / f"{name}.toml"
    spec_path.write_text(_toml(doc))
    out = tmp_path / name
    code = main(["plan", str(spec_path), "--out", str(out), "--quiet", "--no-report"])
    return code, out


def _seeds(out) -> tuple[np.ndarray, np.ndarray, list[int]]:
    plan = read_rtplan(out / "RP.seeds.dcm")
    return plan.positions_mm, plan.sk_u, plan.channel_numbers.tolist()


@pytest.fixture(scope="module")
def quiet(tmp_path_factory):
    """The plan of SPEC on a quiet machine: (exit code, output folder)."""
    code, out = _plan_cli(tmp_path_factory.mktemp("quiet"), "quiet", SPEC)
    assert code in (0, 3)
    return code, out


def test_same_rtplan_on_a_saturated_machine(tmp_path, quiet):
    code, quiet = quiet
    busy = max(4, 3 * (os.cpu_count() or 2))
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_burn, args=(time.time() + 600,)) for _ in range(busy)]
    for p in procs:
        p.start()
    try:
        code_loaded, loaded = _plan_cli(tmp_path, "loaded", SPEC)
    finally:
        for p in procs:
            p.terminate()
            p.join()
    assert code_loaded == code
    pos_q, sk_q, ch_q = _seeds(quiet)
    pos_l, sk_l, ch_l = _seeds(loaded)
    assert pos_q.shape[0] > 10
    np.testing.assert_array_equal(pos_l, pos_q)  # seed by seed, in order
    np.testing.assert_array_equal(sk_l, sk_q)
    assert ch_l == ch_q


@pytest.mark.parametrize(("backend", "threads"), [("numpy", None), ("numba", "1"), ("numba", "2")])
def test_same_rtplan_with_any_backend_and_thread_count(tmp_path, quiet, backend, threads):
    """The influence matrix and dose from numpy or numba, on 1 or 2 threads: same plan."""
    code, reference = quiet
    spec_path = tmp_path / "plan.toml"
    spec_path.write_text(_toml({**SPEC, "dose": {**SPEC["dose"], "backend": backend}}))
    env = dict(os.environ)
    if threads:
        env["NUMBA_NUM_THREADS"] = threads
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "brachycryo.cli", "plan", str(spec_path), "--out", str(out),
           "--quiet", "--no-report"]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    assert proc.returncode == code, proc.stderr[-2000:]
    for got, want in zip(_seeds(out), _seeds(reference), strict=True):
        np.testing.assert_array_equal(got, want)


def test_a_racing_clock_changes_nothing(tmp_path, monkeypatch):
    """Every clock read jumps an hour ahead (a machine 10^4 times slower): same plan."""
    reference = make_plan(parse_plan_spec(SPEC), tmp_path / "a")
    now = [time.perf_counter()]

    def racing() -> float:
        now[0] += 3600.0
        return now[0]

    monkeypatch.setattr(time, "perf_counter", racing)
    raced = make_plan(parse_plan_spec(SPEC), tmp_path / "b")
    monkeypatch.undo()
    np.testing.assert_array_equal(raced.seeds.positions_mm, reference.seeds.positions_mm)
    np.testing.assert_array_equal(raced.seed_needles, reference.seed_needles)


def test_wall_clock_limit_fails_with_its_exit_code_and_writes_nothing(tmp_path, capsys):
    doc = {**SPEC, "optimizer": {"max_wall_s": 0.01}}
    code, out = _plan_cli(tmp_path, "limited", doc)
    assert code == WallClockLimitError.exit_code == 4
    err = capsys.readouterr().err
    assert "max_wall_s = 0.01 s reached" in err and "no result" in err
    assert not out.exists()  # no plan, no half-written folder, no phantom case


def test_wall_clock_limit_in_an_existing_folder_leaves_it_as_it_was(tmp_path):
    out = tmp_path / "limited"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    doc = {**SPEC, "optimizer": {"max_wall_s": 0.01}}
    spec_path = tmp_path / "limited.toml"
    spec_path.write_text(_toml(doc))
    code = main(["plan", str(spec_path), "--out", str(out), "--quiet", "--no-report"])
    assert code == 4
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_time_limit_key_is_refused_with_what_replaced_it():
    with pytest.raises(ConfigError, match=r"optimizer\.time_limit_s.*max_wall_s"):
        parse_plan_spec({**SPEC, "optimizer": {"time_limit_s": 60.0}})


@pytest.mark.parametrize("bad", [0.0, -1.0, float("nan"), "soon"])
def test_max_wall_s_must_be_a_positive_number(bad):
    with pytest.raises(ConfigError, match="max_wall_s"):
        parse_plan_spec({**SPEC, "optimizer": {"max_wall_s": bad}})


def test_wall_clock_only_fires_past_its_limit():
    WallClock(None).check("anything")  # no limit: never fires
    assert WallClock(None).remaining_s() is None
    clock = WallClock(1e-6)
    time.sleep(0.01)
    assert clock.expired() and clock.remaining_s() == 0.0
    with pytest.raises(WallClockLimitError, match="during the LP guide"):
        clock.check("the LP guide")
    assert not WallClock(3600.0).expired()
