"""The real ``brachycryo dvh-batch`` table of two tiny phantom patients (one with two plans),
written once per session and shared by the join and end-to-end tests."""

from __future__ import annotations

import warnings

import pytest

from brachycryo.cli import main
from brachycryo.phantoms.cohort import write_cohort_patient

TINY = {"spacing_mm": (8.0, 8.0, 10.0), "dose_spacing_mm": 5.0, "seed_spacing_mm": 12.0}


@pytest.fixture(scope="session")
def tiny_dvh_table(tmp_path_factory):
    """(path of the dvh-batch Parquet table, [patient ids]): patient x has one plan (D90
    1.1 x Rx by construction), patient y two (1.0 and 1.2 x Rx)."""
    root = tmp_path_factory.mktemp("cohort")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pats = [
            write_cohort_patient(root / "c" / "x", phantom_seed=0, **TINY),
            write_cohort_patient(root / "c" / "y", phantom_seed=1, d90_over_rx=(1.0, 1.2), **TINY),
        ]
    out = root / "metrics.parquet"
    assert main(["dvh-batch", str(root / "c"), "--out", str(out), "--quiet"]) == 0
    return out, [p.patient_id for p in pats]
