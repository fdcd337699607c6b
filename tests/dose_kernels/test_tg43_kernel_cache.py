"""The numba TG-43 kernels compile once per machine, not in every process (issue 22).

A kernel that reaches its physics through a closure over a jitted function is keyed in
numba's disk cache by the pickled closure, which differs between processes: it was compiled
again by every process (~30 s of CPU for the six kernels on the CI machine), e.g. by every
``brachycryo dose`` run.  A second process must find every kernel in the cache.
"""

from __future__ import annotations

import json
import subprocess
import sys

PROBE = r"""
import json
import numpy as np
from brachycryo.core.grid import Grid
from brachycryo.core.seeds import Seeds
from brachycryo.dose_kernels import dose_at_points, dose_on_grid, influence_matrix
from brachycryo.dose_kernels.tg43_scalar import numba_kernels
s = Seeds([[0.0, 0.0, 0.0]], 1.0, [[0.0, 0.0, 1.0]])
g = Grid(shape=(2, 2, 2), origin_mm=(0, 0, 0), spacing_mm=(1, 1, 1))
dose_on_grid(s, g, "6711", backend="numba", dtype=np.float32)
dose_at_points(s, [[1.0, 2.0, 3.0]], "6711", backend="numba", dtype=np.float32)
influence_matrix([[0, 0, 0]], None, [[1.0, 2.0, 3.0]], "6711", backend="numba")
k = numba_kernels()
print(json.dumps({n: sum(getattr(k, n).stats.cache_misses.values()) for n in k._fields}))
"""


def test_tg43_kernels_load_from_the_disk_cache():
    runs = []
    for _ in range(2):
        proc = subprocess.run(
            [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=900
        )
        runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    assert set(runs[1]) == {"points_sum", "grid_sum", "points_matrix"}
    assert all(v == 0 for v in runs[1].values()), runs
