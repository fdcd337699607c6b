"""Dose-influence matrix size and build time: 2,000 candidates × 200,000 voxels (issue 3).

Dense float32 (must fit in 4 GB) and sparse CSC with a 30 mm cut-off, numba backend, model
6711, candidates in a 70 mm cube, voxels in a 90 mm cube.  Run:
``python -m benchmarks.tg43_influence``; writes ``benchmarks/results/tg43_influence.json``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.tg43_speed import machine_info  # noqa: E402
from brachycryo.core.atomic import write_text_atomic  # noqa: E402
from brachycryo.dose_kernels import influence_matrix  # noqa: E402

RESULT = ROOT / "benchmarks" / "results" / "tg43_influence.json"


def peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6


def main() -> dict:
    rng = np.random.default_rng(1)
    n_cand, n_vox = 2000, 200_000
    cand = rng.uniform(-35, 35, (n_cand, 3))
    vox = rng.uniform(-45, 45, (n_vox, 3))
    res: dict = {"machine": machine_info(), "n_candidates": n_cand, "n_voxels": n_vox}
    # compile (or load from numba's disk cache) before timing
    influence_matrix(cand[:2], None, vox[:2], "6711", backend="numba", dtype=np.float32)
    c0, t0 = time.process_time(), time.perf_counter()
    a = influence_matrix(cand, None, vox, "6711", backend="numba", dtype=np.float32)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    evals = n_cand * n_vox
    res["dense_float32"] = {
        "matrix_gb": a.nbytes / 1e9,
        "time_s": wall,
        "evals_per_s": evals / wall,
        "cpu_s": cpu,
        "cpu_ns_per_eval": cpu / evals * 1e9,
        "evals_per_cpu_s_times_cores": evals / cpu * (os.cpu_count() or 1),
        "peak_rss_gb": peak_rss_gb(),
        "note": "evals_per_cpu_s_times_cores: the rate on idle cores implied by the CPU time "
        "(the machine was shared; wall time depends on the share this process got)",
    }
    del a
    c0, t0 = time.process_time(), time.perf_counter()
    s = influence_matrix(
        cand, None, vox, "6711", backend="numba", dtype=np.float32, cutoff_mm=30.0, sparse=True
    )
    res["sparse_csc_cutoff_30mm"] = {
        "nnz": int(s.nnz),
        "matrix_gb": (s.data.nbytes + s.indices.nbytes + s.indptr.nbytes) / 1e9,
        "time_s": time.perf_counter() - t0,
        "cpu_s": time.process_time() - c0,
        "peak_rss_gb": peak_rss_gb(),
    }
    res["machine"]["load_average_at_end"] = os.getloadavg()
    res["target"] = "2,000 x 200,000 in under 4 GB"
    RESULT.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(RESULT, json.dumps(res, indent=1) + "\n", overwrite=True)
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
