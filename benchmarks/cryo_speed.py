"""Speed of the bioheat solver (issue 4 performance target).

Case: 3 generic 17G probes (triangle, 15 mm apart) in perfused soft tissue at 37 C,
freeze 10 min - passive thaw 8 min - freeze 10 min (28 min of tissue time), 1 mm grid of
100^3 voxels, float32.  Targets: numba <= 60 s on the 2-core machine; CuPy <= 2 s on an
H100.  The numpy reference runs ``--numpy-steps`` steps in the same process and is scaled
to the full run; speedup = scaled numpy time over numba (or CuPy) time.  Times are of the
time stepping (setup - rasterising the probes, the schedule - is excluded).  Reports
voxel-updates per second and peak memory (tracemalloc peak of the arrays allocated during
the run, and the process's peak RSS).  Writes ``benchmarks/results/cryo_speed.json``.

Run: ``python -m benchmarks.cryo_speed [--numpy-steps 60]``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.cryo_machine import machine_info, peak_rss_mb  # noqa: E402
from brachycryo.core.atomic import write_text_atomic  # noqa: E402
from brachycryo.core.backend import gpu_available  # noqa: E402
from brachycryo.core.grid import Grid  # noqa: E402
from brachycryo.cryo_iceball.bioheat import BioheatOptions, simulate  # noqa: E402
from brachycryo.cryo_iceball.probes import Probe, load_probe_catalogue, protocol  # noqa: E402
from brachycryo.cryo_iceball.tissue import load_tissues  # noqa: E402


def case():
    cat = load_probe_catalogue()
    m = cat["generic_17g"]
    grid = Grid(shape=(100, 100, 100), origin_mm=(-49.5, -49.5, -49.5), spacing_mm=(1, 1, 1))
    r = 15.0 / math.sqrt(3)
    probes = [
        Probe(m, (r * math.cos(a) + 0.3, r * math.sin(a) + 0.2, -11.0), (0, 0, 1))
        for a in np.radians([90, 210, 330])
    ]
    phases = protocol(("freeze", 10), ("passive_thaw", 8), ("freeze", 10))
    return grid, probes, phases, [load_tissues()["soft_tissue"]]


def timed(backend: str, max_steps: int | None, parallel: bool | None = None):
    grid, probes, phases, tissues = case()
    tracemalloc.start()
    res = simulate(grid, probes, phases, tissues=tissues, initial_temp_c=37.0,
                   backend=backend, max_steps=max_steps,
                   options=BioheatOptions(parallel=parallel))  # fmt: skip
    secs = res.extra["loop_s"]  # time stepping only (setup: rasterisation, schedule)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return res, secs, peak / 2**20


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser()
    ap.add_argument("--numpy-steps", type=int, default=60)
    ap.add_argument(
        "--numba-steps", type=int, default=None,
        help="run only this many numba steps and scale (default: the full run)",
    )  # fmt: skip
    args = ap.parse_args(argv)
    grid, _, _, _ = case()
    out = {"benchmark": "cryo_speed", "machine": machine_info(), "grid_shape": list(grid.shape),
           "case": "3 x generic_17g, soft_tissue 37 C, freeze 10 / passive thaw 8 / freeze 10 "
           "min, 1 mm, float32"}  # fmt: skip
    # compile (numba caches to disk; the first call in a fresh checkout compiles)
    t0 = time.perf_counter()
    timed("numba", 2)
    out["numba_warmup_s"] = round(time.perf_counter() - t0, 2)

    res_np, secs_np, mem_np = timed("numpy", args.numpy_steps)
    res_nb_short, _, _ = timed("numba", args.numpy_steps)
    out["numba_vs_numpy_max_abs_diff_c"] = float(
        np.abs(res_np.final_temp_c - res_nb_short.final_temp_c).max()
    )
    full_steps = timed("numba", 1)[0].extra["n_steps_full"]
    res, secs_run, mem = timed("numba", args.numba_steps)
    n_steps = full_steps
    secs = secs_run * full_steps / res.n_steps  # = secs_run for a full run
    numpy_full_est = secs_np / args.numpy_steps * n_steps
    # the serial kernel variant, same steps (on a contended machine it can beat the threads)
    timed("numba", 2, parallel=False)
    serial_steps = args.numba_steps or args.numpy_steps * 5
    _, secs_serial, _ = timed("numba", serial_steps, parallel=False)
    out["n_steps"] = n_steps
    out["time_step_s"] = res.dt_s
    out["numpy"] = {
        "steps_run": args.numpy_steps,
        "seconds": round(secs_np, 2),
        "seconds_full_run_scaled": round(numpy_full_est, 1),
        "voxel_updates_per_s": round(grid.n_voxels * args.numpy_steps / secs_np),
        "tracemalloc_peak_mb": round(mem_np, 1),
    }
    out["numba"] = {
        "steps_run": res.n_steps,
        "seconds_run": round(secs_run, 2),
        "seconds": round(secs, 2),
        "seconds_is_scaled": res.n_steps != full_steps,
        "target_s": 60,
        "meets_target": secs <= 60,
        "voxel_updates_per_s": round(grid.n_voxels * n_steps / secs),
        "speedup_vs_numpy": round(numpy_full_est / secs, 1),
        "tracemalloc_peak_mb": round(mem, 1),
        "ice_0c_ml_end_of_run": float(res.volume_ml[0.0][-1]),
    }
    out["numba_serial"] = {
        "steps_run": serial_steps,
        "seconds_run": round(secs_serial, 2),
        "seconds_full_run_scaled": round(secs_serial / serial_steps * full_steps, 1),
    }
    if gpu_available():
        import cupy

        timed("cupy", 2)
        cupy.cuda.Device().synchronize()
        pool = cupy.get_default_memory_pool()
        _, secs_gpu, _ = timed("cupy", None)
        cupy.cuda.Device().synchronize()
        out["cupy"] = {
            "device": cupy.cuda.runtime.getDeviceProperties(0)["name"].decode(),
            "seconds": round(secs_gpu, 3),
            "target_s": 2,
            "voxel_updates_per_s": round(grid.n_voxels * n_steps / secs_gpu),
            "speedup_vs_numpy": round(numpy_full_est / secs_gpu, 1),
            "pool_bytes_mb": round(pool.total_bytes() / 2**20, 1),
            "max_abs_diff_vs_numba_c_same_steps": float(
                np.abs(timed("cupy", res.n_steps)[0].final_temp_c - res.final_temp_c).max()
            ),
        }
    else:
        out["cupy"] = {"skipped": "no CUDA device on this machine"}
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    path = ROOT / "benchmarks" / "results" / "cryo_speed.json"
    write_text_atomic(path, json.dumps(out, indent=2, default=str), overwrite=True)
    print(json.dumps(out, indent=2, default=str))
    return out


if __name__ == "__main__":
    main()
