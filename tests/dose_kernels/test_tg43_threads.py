"""The numba TG-43 kernels give bit-identical results on 1 and 2 threads (issue 22).

Each grid row, block of points or matrix row is computed by one thread with the seeds in a
fixed order, and the vectorised loops do the same IEEE operations in every lane, so the
thread count must not change a single bit - grid, points and influence matrix, both
formalisms, both dtypes, with and without a cut-off.
"""

from __future__ import annotations

import itertools

import numba
import numpy as np
import pytest

from brachycryo.core.grid import Grid
from brachycryo.core.seeds import Seeds
from brachycryo.dose_kernels import dose_at_points, dose_on_grid, influence_matrix


def _case():
    rng = np.random.default_rng(11)
    pos = rng.uniform(-8, 8, (7, 3))
    dirs = rng.normal(size=(7, 3))
    seeds = Seeds(pos, rng.uniform(0.4, 0.8, 7), dirs, normalize=True)
    grid = Grid(shape=(6, 7, 37), origin_mm=(-12.0, -9.0, -10.0), spacing_mm=(0.7, 3.0, 4.0))
    return seeds, grid


def _all_results(seeds, grid):
    pts = grid.voxel_centres_mm().reshape(-1, 3)
    out = []
    for dt, form, cut in itertools.product(
        (np.float32, np.float64), ("line", "point"), (None, 9.0)
    ):
        kw = dict(backend="numba", dtype=dt, formalism=form, cutoff_mm=cut)
        out.append(dose_on_grid(seeds, grid, "6711", **kw))
        out.append(dose_at_points(seeds, pts, "6711", **kw))
        out.append(influence_matrix(seeds.positions_mm, seeds.directions, pts, "6711", **kw))
    return out


@pytest.mark.skipif(numba.config.NUMBA_NUM_THREADS < 2, reason="numba has one thread here")
def test_one_and_two_threads_give_identical_bits():
    seeds, grid = _case()
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = _all_results(seeds, grid)
        numba.set_num_threads(2)
        two = _all_results(seeds, grid)
    finally:
        numba.set_num_threads(before)
    assert len(one) == 24
    for a, b in zip(one, two):
        assert a.dtype == b.dtype and np.array_equal(a, b)
        assert np.all(np.isfinite(a)) and np.any(a > 0)
