"""Bounded, seeded mutation fuzzing of the readers and the library calls the commands use.

2,000 mutated inputs (:mod:`benchmarks.fuzz_readers`: deleted, emptied, wrong-VR,
wrong-type, NaN / inf / huge / tiny / negative values, absurd geometry, duplicated or
dropped items, flipped bytes, truncation) of one small phantom case: every case ends with
a result or a :class:`~brachycryo.core.errors.BrachyCryoError`, and no input is modified.
The benchmark runs 10,000 (``python -m benchmarks.fuzz_readers``).  A small memory budget
keeps grids that are valid but needlessly large (a few GiB of TG-43 dose) out of CI time.
"""

from __future__ import annotations

import logging
import os

import pytest

from benchmarks.fuzz_readers import ACTIONS, KINDS, run_fuzz
from brachycryo.core.memory import MEMORY_BUDGET_ENV

#: more cases for a long local run: BRACHYCRYO_FUZZ_CASES=10000 pytest ...
N_CASES = int(os.environ.get("BRACHYCRYO_FUZZ_CASES", "2000"))


@pytest.fixture
def quiet_logs():
    logging.disable(logging.WARNING)
    yield
    logging.disable(logging.NOTSET)


def test_fuzzed_inputs_raise_only_brachycryo_errors(tmp_path, monkeypatch, quiet_logs):
    monkeypatch.setenv(MEMORY_BUDGET_ENV, "0.25")
    counts = run_fuzz(N_CASES, seed=14, workdir=tmp_path)
    assert counts.cases == N_CASES
    assert counts.escapes == [] and counts.escaped == 0
    assert counts.inputs_modified == 0
    # the mutations reach the readers and beyond: all kinds and actions, both outcomes
    assert set(counts.by_kind) == set(KINDS) and set(counts.by_action) == set(ACTIONS)
    assert counts.accepted > N_CASES // 10 and counts.refused > N_CASES // 10
    assert counts.not_encodable < N_CASES // 5
    assert counts.refusals_by_type["MemoryBudgetError"] > 0
