"""The numba bioheat kernels' layout (segments, special voxels) and their parity with the
numpy reference on random states: odd shapes, many tissue runs, short segments, held voxels
switched on, kept, changed and off, probe couplings, both dtypes, serial and parallel."""

from __future__ import annotations

import numpy as np
import pytest

from brachycryo.cryo_iceball import kernels_numba, kernels_numpy
from brachycryo.cryo_iceball.kernel_layout import kernel_layout
from brachycryo.cryo_iceball.tissue import enthalpy_from_temp, kernel_table, load_tissues

SHAPES = [(1, 1, 9), (9, 1, 1), (1, 7, 1), (3, 1, 5), (2, 2, 2), (4, 5, 6), (6, 7, 11)]


def _random_case(shape, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=shape).astype(np.int8)
    labels[..., : shape[-1] // 2] = labels[..., :1]  # long runs beside short ones
    hold = np.full(shape, -1, np.int16)
    hold[rng.random(shape) < 0.15] = 0  # e.g. outer layer / vessel
    hold[rng.random(shape) < 0.1] = 2  # a probe, switched on and off below
    couple_slot = np.where((hold < 0) & (rng.random(shape) < 0.2), 2, -1).astype(np.int16)
    couple_slot[(hold < 0) & (rng.random(shape) < 0.1)] = 1
    couple_slot[(hold == 0) & (rng.random(shape) < 0.3)] = 2  # held and coupled
    return labels, hold, couple_slot, rng


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("max_voxels", [1, 3, 4096])
def test_layout_segments_and_special_voxels(shape, max_voxels):
    labels, hold, couple_slot, _ = _random_case(shape, 1)
    lay = kernel_layout(labels, hold, couple_slot, np.float32, max_segment_voxels=max_voxels)
    nk, nj, ni = shape
    n = labels.size
    start = lay.seg_start
    assert start[0] == 0 and start[-1] == n and np.all(np.diff(start) > 0)
    assert np.all(np.diff(start) <= max_voxels)
    flat = labels.reshape(-1)
    for q in range(len(lay.seg_tissue)):
        idx = np.arange(start[q], start[q + 1])
        k, j, _ = np.unravel_index(idx, shape)
        assert np.all(flat[idx] == lay.seg_tissue[q])
        assert len(set(k)) == 1
        group = np.where(j == 0, 0, np.where(j == nj - 1, 2, 1))
        assert len(set(group)) == 1
        expect = [
            -nj * ni if k[0] > 0 else 0,
            nj * ni if k[0] < nk - 1 else 0,
            -ni if j[0] > 0 else 0,
            ni if j[-1] < nj - 1 else 0,
        ]
        assert list(lay.seg_offsets[q]) == expect
    # special voxels: the held ones first, then every coupled voxel and every row end
    held = hold.reshape(-1) >= 0
    sp = lay.special_index
    assert len(set(sp)) == len(sp)
    assert np.all(held[sp[: lay.n_held]]) and not np.any(held[sp[lay.n_held :]])
    assert lay.n_held == held.sum()
    assert np.array_equal(lay.held_slot, hold.reshape(-1)[sp[: lay.n_held]])
    want = held | (couple_slot.reshape(-1) >= 0)
    ends = np.zeros(shape, bool)
    ends[..., 0] = ends[..., -1] = True
    want |= ends.reshape(-1)
    assert set(sp) == set(np.flatnonzero(want))
    assert np.array_equal(np.ravel_multi_index(lay.special_kji.T, shape), sp)


# hold temperatures per step: slot 2 (a probe) on, kept, changed, off, off, on again
HOLD_SEQUENCE = [
    (37.0, 30.0, -100.0),
    (37.0, 30.0, -100.0),
    (37.0, 30.0, -140.0),
    (37.0, 30.0, np.nan),
    (37.0, 30.0, np.nan),
    (37.0, 30.0, -120.0),
    (37.0, 30.0, -120.0),
]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("parallel", [False, True])
def test_numba_step_matches_numpy_on_random_states(shape, dtype, parallel):
    labels, hold, couple_slot, rng = _random_case(shape, 7)
    tis = load_tissues()
    table = kernel_table([tis["soft_tissue"], tis["gel"], tis["liver"]], np.float64)
    temp0 = rng.uniform(-60, 40, size=shape)
    couple = np.where(couple_slot >= 0, rng.uniform(1e5, 5e5, size=shape), 0.0)

    def state():
        return {
            "h": enthalpy_from_temp(temp0, table[labels]).astype(dtype),
            "tissue": labels,
            "params": table.astype(dtype),
            "hold": hold,
            "couple_coef": couple.astype(dtype),
            "couple_slot": couple_slot,
            "temp": np.zeros(shape, dtype),
            "cond": np.zeros(shape, dtype),
            "tmin": np.full(shape, np.inf, dtype),
            "inv_h2": np.array([1e6, 0.5e6, 0.25e6], dtype),
            "parallel": parallel,
        }

    ref, got = state(), state()
    got["numba_layout"] = kernel_layout(labels, hold, couple_slot, dtype, max_segment_voxels=5)
    tol = 1e-9 if dtype == np.float64 else 2e-5
    for ht in HOLD_SEQUENCE:
        ht = np.array(ht, dtype=dtype)
        kernels_numpy.step(ref, 0.05, 37.0, ht)
        kernels_numba.step(got, 0.05, 37.0, ht)
        for key in ("h", "temp", "cond", "tmin"):
            scale = max(1.0, float(np.abs(ref[key]).max()))
            err = float(np.abs(ref[key] - got[key]).max()) / scale
            assert err < tol, (key, err)
    kernels_numpy.temperature_only(ref, ht)
    kernels_numba.temperature_only(got, ht)
    for key in ("h", "temp", "cond", "tmin"):
        scale = max(1.0, float(np.abs(ref[key]).max()))
        assert float(np.abs(ref[key] - got[key]).max()) / scale < tol, key
    assert not np.allclose(ref["temp"], temp0)
