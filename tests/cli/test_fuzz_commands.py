"""Command-level fuzz in CI (issue 20): seeded mutations of plan specs, ice-ball configs and
CLI arguments through ``plan``, ``iceball``, ``dose`` and ``dvh``, run through writing.
Every run ends cleanly (its outputs complete, or one error line / argparse usage, and no
output left) — never a traceback, a partial output set or a staging folder.  The larger
run is ``python -m benchmarks.fuzz_commands`` (benchmarks/results/fuzz_commands.json)."""

from __future__ import annotations

import copy
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.fuzz_commands import STAGING_PREFIX, _judged, run_case, to_toml

REPO_ROOT = Path(__file__).resolve().parents[2]
N_PER_COMMAND = 30
SEED = 2026


def test_fuzzed_commands_end_cleanly():
    """In a process of its own: the fuzzer limits its address space (absurd grids fail to
    allocate instead of swapping the machine)."""
    code = (
        "import json; from benchmarks.fuzz_commands import run_sample; "
        f"print(json.dumps(run_sample({N_PER_COMMAND}, {SEED})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=900)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    findings = "\n".join(f"{f['command']} [{f['mutation']}]: {f['detail']}" for f in
                         report["findings"])  # fmt: skip
    assert report["n_findings"] == 0, findings
    counts = report["counts"]
    assert set(counts) == {"plan", "iceball", "dose", "dvh"}
    for command, c in counts.items():
        assert sum(c.values()) == N_PER_COMMAND
        assert c.get("error", 0) > 0, (command, c)  # the mutations reach the checks
    assert sum(c.get("ok", 0) for c in counts.values()) > 0  # and some runs write outputs


def test_the_oracle_catches_raw_exceptions_and_leftovers(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("array is too big")

    monkeypatch.setattr("brachycryo.qa.evaluate.evaluate_files", broken)  # dvh imports it when run
    argv = ["dvh", "--rtdose", "x", "--rtstruct", "y", "--json", "m.json", "--quiet"]
    outcome = run_case("dvh", argv, tmp_path, "patched")
    assert outcome.kind == "finding" and "ValueError" in outcome.detail

    (tmp_path / "m.json").write_text("{}")  # an output left by a failed run
    assert _judged("dvh", "x", 1, "error", tmp_path, expect_outputs=False).kind == "finding"
    (tmp_path / f"{STAGING_PREFIX}x").mkdir()  # a staging folder left by a finished run
    assert _judged("dvh", "x", 0, "ok", tmp_path, expect_outputs=True).kind == "finding"


ICEBALL = {
    "medium": {"tissue": "gel", "initial_temp_c": 37.0},
    "grid": {"spacing_mm": 3.0, "margin_mm": 9.0},
    "probe": [{"model": "generic_2p4mm", "tip_mm": [0.0, 0.0, -10.0],
               "direction": [0.0, 0.0, 1.0]}],
    "protocol": [{"phase": "freeze", "minutes": 1}],
}  # fmt: skip


@pytest.mark.parametrize(
    ("path", "value", "key"),
    [
        (("probe", 0, "model"), {"x": 1.0}, "probe[0].model"),
        (("probe", 0, "model"), [1.0, 2.0], "probe[0].model"),
        (("protocol", 0), math.inf, "protocol[0]"),
        (("protocol", 0), [], "protocol[0]"),
    ],
)
def test_fuzzer_findings_are_one_line_naming_the_key(tmp_path, path, value, key):
    """Mutations the fuzzer found raising TypeError / AttributeError in the config reader."""
    doc = copy.deepcopy(ICEBALL)
    parent = doc
    for k in path[:-1]:
        parent = parent[k]
    parent[path[-1]] = value
    spec = tmp_path / "ice.toml"
    spec.write_text(to_toml(doc))
    out = tmp_path / "run"
    out.mkdir()
    o = run_case("iceball", ["iceball", str(spec), "--out", str(out / "r")], out, "")
    assert o.kind == "error" and f"[config key '{key}']" in o.detail, o.detail
