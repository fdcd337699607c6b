"""``_block_counts`` (set sub-points per voxel by word popcounts) equals the plain sum."""

from __future__ import annotations

import numpy as np

from brachycryo.qa.dvh import _block_counts


def test_block_counts_equal_sum() -> None:
    rng = np.random.default_rng(3)
    for n in range(1, 7):
        blocks = np.ascontiguousarray(rng.random((5, 7, n, n)) < 0.4)
        blocks[0, 0] = True
        expected = blocks.sum(axis=(2, 3))
        got = _block_counts(blocks)
        assert got.dtype == np.int32
        np.testing.assert_array_equal(got, expected)
