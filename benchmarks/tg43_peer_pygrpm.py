"""Peer side of ``benchmarks/tg43_speed.py``: the TG-43 module of pygrpm, run in its own venv.

Usage (called by the benchmark, not by users)::

    <peer-python> benchmarks/tg43_peer_pygrpm.py IN.npz OUT.npz

IN.npz holds ``points_cm`` (M, 3), ``seed_pos_cm`` (N, 3), ``seed_dir`` (N, 3) and
``per_seed`` (indices of seeds whose single-seed dose is also returned).  OUT.npz gets the
summed dose rate per U (cGy h⁻¹ U⁻¹, pygrpm's units), the single-seed rates and the
wall and process CPU time of the summed evaluation.  Only numpy and pygrpm are used here.
"""

from __future__ import annotations

import sys
import time

import numpy as np
from pygrpm.tg43 import Seed, SourceType


def main(inp: str, out: str) -> None:
    data = np.load(inp)
    pts, pos, dirs = data["points_cm"], data["seed_pos_cm"], data["seed_dir"]
    seed = Seed("IsoAid", SourceType.Line, use_xarray=False)
    start, cpu0 = time.perf_counter(), time.process_time()
    total = np.zeros(pts.shape[0])
    for s in range(pos.shape[0]):
        total += np.asarray(seed.dose_at_points(pts, pos[s], dirs[s]), dtype=float)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    singles = np.stack(
        [
            np.asarray(seed.dose_at_points(pts, pos[s], dirs[s]), dtype=float)
            for s in data["per_seed"]
        ]
    )
    np.savez(out, total=total, singles=singles, elapsed_s=elapsed, cpu_s=cpu)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
