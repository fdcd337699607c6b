"""Parity of the DVH histogram accumulators: numba kernel against the numpy reference,
over every setting (point samples, spread samples, intervals starting at 0 Gy,
float32/float64, doses on bin edges, fine and coarse bins)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brachycryo.core.errors import BackendUnavailableError
from brachycryo.qa.dvh import dvh_from_samples
from brachycryo.qa.histogram_kernels import accumulate, accumulate_numba, accumulate_numpy


@given(
    st.integers(0, 2**31),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from([0.0, 0.3, 1.0]),  # fraction of samples with a spread
    st.sampled_from([0.01, 0.1, 1.0]),
    st.booleans(),  # doses exactly on bin edges
)
@settings(max_examples=40, deadline=None)
def test_numba_matches_numpy(seed, dtype, spread_fraction, width, on_edges):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 400))
    d = rng.uniform(0, 50, n)
    if on_edges:
        d = np.round(d / width) * width
    s = np.where(rng.uniform(size=n) < spread_fraction, rng.uniform(0, 8, n), 0.0)
    lo, hi = np.maximum(d - s / 2, 0.0).astype(dtype), (d + s / 2).astype(dtype)
    w = rng.uniform(0.01, 2, n)
    n_bins = int(np.floor(float(np.max(hi)) / width)) + 1
    ref = accumulate_numpy(lo, hi, w, width, n_bins)
    got = accumulate_numba(lo, hi, w, width, n_bins)
    for a, b in zip(ref[:5], got[:5], strict=True):
        np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-9)
    for a, b in zip(ref[5:], got[5:], strict=True):
        assert b == pytest.approx(a, rel=1e-6, abs=1e-9)


def test_dvh_same_on_both_backends():
    rng = np.random.default_rng(1)
    d = rng.uniform(0, 300, 5000)
    s = rng.uniform(0, 3, 5000)
    w = rng.uniform(0.001, 0.01, 5000)
    a = dvh_from_samples(d, w, spread_gy=s, backend="numpy")
    b = dvh_from_samples(d, w, spread_gy=s, backend="numba")
    np.testing.assert_allclose(a.differential_cc, b.differential_cc, atol=1e-12)
    assert a.dmean_gy == pytest.approx(b.dmean_gy, rel=1e-12)


def test_no_gpu_histogram():
    with pytest.raises(BackendUnavailableError):
        accumulate(np.ones(2), np.zeros(2), np.ones(2), 0.1, 20, backend="cupy")
