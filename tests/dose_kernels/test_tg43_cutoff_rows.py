"""Grid rows that miss a seed's cut-off sphere (issue 22).

The numba grid kernel visits, along each row, only the voxels between the row's crossings
of the cut-off sphere (±1 voxel), with unsigned row indices; a sphere wholly before the
row's first voxel (both crossings at negative indices) or after its last must give an empty
range.  Seeds before, after, inside and beside a small grid, with a cut-off, against the
numpy reference.
"""

from __future__ import annotations

import numpy as np
import pytest

from brachycryo.core.grid import Grid
from brachycryo.core.seeds import Seeds
from brachycryo.dose_kernels import dose_on_grid


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_rows_beyond_the_cutoff_sphere_on_either_side(dtype):
    pos = [[-30.0, 1.0, 2.0], [45.0, 2.0, 1.0], [6.0, 3.0, 3.0], [7.0, 30.0, 2.0]]
    seeds = Seeds(pos, [0.5, 0.6, 0.7, 0.8], [[0.0, 0.0, 1.0]] * 4)
    grid = Grid(shape=(3, 4, 16), origin_mm=(0.0, -2.0, 0.0), spacing_mm=(1.0, 2.0, 1.5))
    kw = dict(model="6711", formalism="line", cutoff_mm=10.0, quantity="rate")
    ref = dose_on_grid(seeds, grid, backend="numpy", dtype=np.float64, **kw)
    got = dose_on_grid(seeds, grid, backend="numba", dtype=dtype, **kw)
    assert np.all(np.isfinite(got))
    assert np.all(got[ref == 0] == 0) and np.any(ref > 0) and np.any(ref == 0)
    nz = ref > 0
    np.testing.assert_allclose(got[nz], ref[nz], rtol=1e-5)
