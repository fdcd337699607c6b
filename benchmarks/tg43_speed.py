"""TG-43 dose engine speed: seed-voxel evaluations per second per backend, plus a peer.

Cases (issue 3): 100 seeds × 128³ voxels and 200 seeds × 256³ voxels, model IAI-125A, 2D
line formalism, no cut-off unless stated.  An "evaluation" is one seed-voxel pair.
The numpy reference runs on a few slices and is scaled; numba runs the full grids; CuPy runs
when a CUDA device is present (else its reason is recorded).  The peer is the TG-43 module
of pygrpm (AGPL, installed only in its own virtualenv - ``python -m venv
~/.cache/brachycryo/peer-venvs/pygrpm && .../bin/pip install pygrpm`` - or the interpreter
named by ``$TG43_PEER_PYTHON``), timed on a subset of the same voxels and seeds, and compared with
this engine where both are defined (pygrpm's F is 0 outside its table, 0.5-7 cm).

Run: ``python -m benchmarks.tg43_speed [--quick]``; writes
``benchmarks/results/tg43_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from brachycryo.core.atomic import write_text_atomic  # noqa: E402
from brachycryo.core.backend import cupy_unavailable_reason  # noqa: E402
from brachycryo.core.grid import Grid  # noqa: E402
from brachycryo.core.seeds import Seeds  # noqa: E402
from brachycryo.dose_kernels import dose_at_points, dose_on_grid  # noqa: E402

MODEL = "IAI-125A"
RESULT = ROOT / "benchmarks" / "results" / "tg43_speed.json"
DEFAULT_PEER_PYTHON = str(
    Path.home() / ".cache" / "brachycryo" / "peer-venvs" / "pygrpm" / "bin" / "python"
)
NOTES = [
    "Issue 22: each kernel runs a row (grid: the voxels of a grid row; sums: a block of 256 "
    "points; matrix: the seeds of a point) in three loops per seed, the voxel loop innermost: "
    "(1) the table-free geometry (tg43_scalar.line_geometry / point_geometry: near-source "
    "rule, G_L with a polynomial atan2, the polar angle), branch-free, which LLVM vectorises "
    "(256-bit vectors, 8 float32 lanes: LLVM prefers them to AVX-512 on this CPU); (2) the "
    "table reads (ln g_L, F or phi_an, "
    "resampled at build time on uniform grids that hold every published node, so a cell is "
    "one multiply and a truncation; ~11 loads), scalar; (3) exp of ln g_L (polynomial, 2^k "
    "from bit selects, no table) times the rest, summed, vectorised. The same helpers compose "
    "tg43_rate_per_u, the function the CUDA kernels compile, so the physics is written once.",
    "Why stage (2) stays scalar: the parallel loop body's arguments (the KernelTables arrays "
    "included) are marked noalias, but the row buffers are allocated inside it (NRT), so LLVM "
    "cannot prove the table reads independent of the row's stores; with per-thread buffers "
    "passed in, it does vectorise them as gathers, no faster (2026-12-05). What made the "
    "difference (line, float32, one thread, 100 seeds x 64^3, same session): the exp of g_L "
    "inside the long scalar body was a 22-operation dependency chain per evaluation, ~12 ns "
    "of the 29 ns; moved into its own vectorised loop it costs ~1 ns. A signed row index "
    "(range(i0, i1)) made numba emit a negative-index fix-up on every array access, which kept "
    "LLVM from vectorising; the rows and tables are indexed unsigned (np.uintp). The polynomial "
    "constants travel into the vector loops as tuples (numba.np.unsafe.ndarray.to_fixed_tuple): "
    "an array read inside them would be reference-counted.",
    "Where the time goes (line float32, one thread, 100 seeds x 64^3, Intel Xeon, load 5-8, "
    "2026-12-05): before the fixes below, 26.7 ns per evaluation in all, of which geometry and "
    "accumulation 7.3, table reads 4.6, exp 3.3 measured alone - and ~12 ns more when all three "
    "ran together: exp_fast of a negative argument (ln g_L) multiplied, in the lanes its select "
    "discards, by the subnormal constant 2^-128 (2^-1024 in float64), and every such vector "
    "multiply took a microcode assist. With that constant 0 (exp of a subnormal result is 0): "
    "15.9 ns, bit-identical results. fastmath={'contract'} (fused multiply-add only) then "
    "15.9 -> 12.5 (geometry 7.5 -> 5.5), and one division per atan2 and per G_L (7 -> 4 per "
    "evaluation) 12.5 -> 12.3. What is left: geometry ~5, scalar table reads ~4.5, exp and "
    "sum ~2.5. Tried and not kept: the table stage as gathers (per-thread scratch so that "
    "LLVM sees noalias; it vectorised with masked gathers and was no faster). Measured, not "
    "adopted: compiled with NUMBA_CPU_FEATURES = the host's features plus -prefer-256-bit "
    "(LLVM then uses 512-bit vectors), the grid kernel took 9.6-10.9 instead of 12.3-12.5 ns "
    "(float32 line, one thread, two runs of one harness, load ~6); numba has no per-function "
    "switch for it.",
    "numba_first_call_s is the first call of the four dtype x formalism variants of the grid "
    "kernel: the compile time with a cold numba cache, the load time with a warm one (the "
    "saved run had a warm cache); a second process loads the kernels from numba's disk cache "
    "(tests/dose_kernels/test_tg43_kernel_cache.py).",
    "Uniform-grid tables (kernel_tables.uniform_grid, step = gcd of the node intervals; "
    "values at the published nodes unchanged bit for bit) replaced an O(1) cell lookup on the "
    "published nodes with two corrective comparisons (~20 loads): same-session A/B on an "
    "Intel Xeon (2 cores shared, load ~5), 100 seeds x 64^3, CPU ns per evaluation: float32 "
    "line 35.4 -> 30.0, float64 line 34.4 -> 29.9, float32 point 25.0 -> 21.2. The earlier "
    "17.3 ns (float32 line) was measured on an AMD EPYC: compare figures of one machine only.",
    "pygrpm interpolates g_L linearly; TG-43U1 recommends log-linear (this engine). Between "
    "2 and 3 cm that alone differs by up to 0.9 %, the largest difference found.",
]


def machine_info() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numba

    return {
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "numba_threads": numba.get_num_threads(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numba": numba.__version__,
        "load_average_at_start": os.getloadavg(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def make_case(n_seeds: int, n: int, spacing_mm: float, rng: np.random.Generator):
    """Seeds in a 40 mm cube (a bulky lesion), axes along needles tilted up to ~15°."""
    pos = rng.uniform(-20.0, 20.0, (n_seeds, 3))
    dirs = np.column_stack([rng.normal(0, 0.15, (n_seeds, 2)), np.ones(n_seeds)])
    seeds = Seeds(pos, rng.uniform(0.4, 0.8, n_seeds), dirs, normalize=True)
    half = (n - 1) * spacing_mm / 2
    grid = Grid(shape=(n, n, n), origin_mm=(-half, -half, -half), spacing_mm=(spacing_mm,) * 3)
    return seeds, grid


def timed(fn, repeat: int = 1) -> float:
    return timed_cpu(fn, repeat)[0]


def timed_cpu(fn, repeat: int = 1) -> tuple[float, float]:
    """(best wall s, process CPU s of that run): CPU time is the steadier figure on a
    shared machine (it counts only the time this process's threads ran)."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        c0, t0 = time.process_time(), time.perf_counter()
        fn()
        run = (time.perf_counter() - t0, time.process_time() - c0)
        best = min(best, run)
    return best


def bench_numpy(seeds: Seeds, grid: Grid, n_slices: int) -> dict:
    sub = grid.cropped(
        (0, 0, grid.shape[0] // 2), (grid.shape[2], grid.shape[1], grid.shape[0] // 2 + n_slices)
    )
    el, cpu = timed_cpu(lambda: dose_on_grid(seeds, sub, MODEL, backend="numpy"))
    evals = len(seeds) * sub.n_voxels
    return {
        "evals": evals,
        "time_s": el,
        "evals_per_s": evals / el,
        "cpu_ns_per_eval": cpu / evals * 1e9,
        "note": f"{n_slices} slices, scaled",
    }


def bench_backend(seeds, grid, backend, *, repeat=1, **kw) -> dict:
    el, cpu = timed_cpu(lambda: dose_on_grid(seeds, grid, MODEL, backend=backend, **kw), repeat)
    evals = len(seeds) * grid.n_voxels
    return {
        "evals": evals,
        "time_s": el,
        "evals_per_s": evals / el,
        "cpu_s": cpu,
        "cpu_ns_per_eval": cpu / evals * 1e9,
        "peak_rss_mb": peak_rss_mb(),
        **{k: (v.__name__ if isinstance(v, type) else v) for k, v in kw.items()},
    }


def run_peer(seeds: Seeds, grid: Grid, n_slices: int, n_peer_seeds: int) -> dict:
    peer_python = os.environ.get("TG43_PEER_PYTHON", DEFAULT_PEER_PYTHON)
    if not Path(peer_python).exists():
        return {"skipped": f"peer interpreter {peer_python} not found (set TG43_PEER_PYTHON)"}
    k0 = grid.shape[0] // 2
    sub = grid.cropped((0, 0, k0), (grid.shape[2], grid.shape[1], k0 + n_slices))
    pts_mm = sub.voxel_centres_mm().reshape(-1, 3)
    s = seeds.subset(slice(0, n_peer_seeds))
    per_seed = np.arange(min(5, len(s)))
    with tempfile.TemporaryDirectory() as tmp:
        inp, out = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(
            inp,
            points_cm=pts_mm / 10,
            seed_pos_cm=s.positions_mm / 10,
            seed_dir=s.directions,
            per_seed=per_seed,
        )
        proc = subprocess.run(
            [peer_python, str(ROOT / "benchmarks" / "tg43_peer_pygrpm.py"), str(inp), str(out)],
            capture_output=True,
            text=True,
            timeout=3600,
        )
        if proc.returncode != 0:
            return {"skipped": f"pygrpm peer failed: {proc.stderr[-500:]}"}
        res = np.load(out)
        singles, peer_s = res["singles"], float(res["elapsed_s"])
        peer_cpu_s = float(res["cpu_s"]) if "cpu_s" in res else float("nan")
    evals = len(s) * pts_mm.shape[0]
    unit = Seeds(s.positions_mm, 1.0, s.directions)
    dose_at_points(unit, pts_mm[:8], MODEL, backend="numba", quantity="rate")  # compile
    ours_s, ours_cpu = timed_cpu(
        lambda: dose_at_points(unit, pts_mm, MODEL, backend="numba", quantity="rate")
    )
    # the same points in float32 (the grid benchmark's dtype; dose_at_points defaults to float64)
    f32 = dict(backend="numba", quantity="rate", dtype=np.float32)
    dose_at_points(unit, pts_mm[:8], MODEL, **f32)  # compile
    ours32_s, ours32_cpu = timed_cpu(lambda: dose_at_points(unit, pts_mm, MODEL, **f32))
    # where both are defined: pygrpm's F table covers 5-70 mm (0 outside), g_L 1-100 mm
    worst = {"max_rel_diff": 0.0}
    for i, idx in enumerate(per_seed):
        one = Seeds(s.positions_mm[idx : idx + 1], 1.0, s.directions[idx : idx + 1])
        ours = dose_at_points(one, pts_mm, MODEL, backend="numpy", quantity="rate") * 100.0
        r = np.linalg.norm(pts_mm - s.positions_mm[idx], axis=1)
        both = (r >= 5.0) & (r <= 70.0)
        rel = np.abs(singles[i][both] - ours[both]) / ours[both]
        j = int(np.argmax(rel))
        if rel[j] > worst["max_rel_diff"]:
            d = pts_mm[both][j] - s.positions_mm[idx]
            cos_t = abs(d @ s.directions[idx]) / np.linalg.norm(d)
            worst = {
                "max_rel_diff": float(rel[j]),
                "at_r_mm": float(r[both][j]),
                "at_theta_deg": float(np.degrees(np.arccos(min(cos_t, 1.0)))),
                "ours_cgy_per_h_per_u": float(ours[both][j]),
                "pygrpm_cgy_per_h_per_u": float(singles[i][both][j]),
            }
        worst["max_abs_diff_cgy_per_h_per_u"] = max(
            worst.get("max_abs_diff_cgy_per_h_per_u", 0.0),
            float(np.max(np.abs(singles[i][both] - ours[both]))),
        )
    return {
        "package": "pygrpm 0.8.5 (pygrpm.tg43.Seed('IsoAid', Line, use_xarray=False))",
        "evals": evals,
        "time_s": peer_s,
        "evals_per_s": evals / peer_s,
        "numba_same_points_evals_per_s": evals / ours_s,
        "numba_over_peer_speed": peer_s / ours_s,
        "cpu_ns_per_eval": peer_cpu_s / evals * 1e9,
        "numba_same_points_cpu_ns_per_eval": ours_cpu / evals * 1e9,
        "numba_over_peer_cpu": peer_cpu_s / ours_cpu,
        "numba_float32_same_points_cpu_ns_per_eval": ours32_cpu / evals * 1e9,
        "numba_float32_over_peer_cpu": peer_cpu_s / ours32_cpu,
        "numba_float32_over_peer_speed": peer_s / ours32_s,
        "note": "numba_* on the peer's points: dose_at_points in float64 (its default); "
        "numba_float32_*: the same call in float32",
        "comparison_single_seeds": int(per_seed.size),
        "comparison_domain": "5 mm <= r <= 70 mm (pygrpm F table; F = 0 outside)",
        "largest_difference": worst,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small grids (smoke run, not saved)")
    ap.add_argument(
        "--brief",
        action="store_true",
        help="one case, 100 seeds x 64^3 (a shared machine's short run; saved)",
    )
    args = ap.parse_args(argv)
    rng = np.random.default_rng(20261120)
    info = machine_info()
    results: dict = {"machine": info, "model": MODEL, "formalism": "line", "cases": {}}
    cases = [(100, 128, 0.75), (200, 256, 0.5)]
    if args.quick or args.brief:
        cases = [(20, 32, 2.0)] if args.quick else [(100, 64, 1.5)]
    results["mode"] = "quick" if args.quick else "brief" if args.brief else "full"
    # JIT compile time, measured apart (cache=True makes later processes faster)
    tiny_seeds, tiny_grid = make_case(2, 4, 1.0, rng)
    t0 = time.perf_counter()
    for dt in (np.float32, np.float64):
        for form in ("line", "point"):
            dose_on_grid(tiny_seeds, tiny_grid, MODEL, backend="numba", dtype=dt, formalism=form)
    results["numba_first_call_s"] = time.perf_counter() - t0
    why_no_gpu = cupy_unavailable_reason()
    for n_seeds, n, spacing in cases:
        seeds, grid = make_case(n_seeds, n, spacing, rng)
        key = f"{n_seeds}_seeds_{n}^3"
        case: dict = {"n_seeds": n_seeds, "grid": [n, n, n], "spacing_mm": spacing}
        case["numpy_float64_reference"] = bench_numpy(seeds, grid, n_slices=2)
        case["numba_float32"] = bench_backend(seeds, grid, "numba", dtype=np.float32)
        if n <= 128:
            case["numba_float64"] = bench_backend(seeds, grid, "numba", dtype=np.float64)
            case["numba_float32_point"] = bench_backend(
                seeds, grid, "numba", dtype=np.float32, formalism="point"
            )
            cut = bench_backend(seeds, grid, "numba", dtype=np.float32, cutoff_mm=50.0)
            cut["note"] = "evaluations counted as all seed-voxel pairs (pairs beyond 50 mm skipped)"
            case["numba_float32_cutoff_50mm"] = cut
        case["numba_over_numpy"] = (
            case["numba_float32"]["evals_per_s"] / case["numpy_float64_reference"]["evals_per_s"]
        )
        if why_no_gpu is None:
            dose_on_grid(tiny_seeds, tiny_grid, MODEL, backend="cupy")  # compile
            case["cupy_float32"] = bench_backend(seeds, grid, "cupy", dtype=np.float32, repeat=3)
            case["cupy_float32"]["note"] = "includes host->device tables and copy back"
        else:
            case["cupy_float32"] = {"skipped": why_no_gpu}
        if n == cases[0][1]:
            peer = run_peer(seeds, grid, n_slices=8, n_peer_seeds=n_seeds)
            if "cpu_ns_per_eval" in peer:
                # the grid kernel's CPU time per evaluation against the peer's (issue 22)
                peer["numba_float32_grid_over_peer_cpu"] = (
                    peer["cpu_ns_per_eval"] / case["numba_float32"]["cpu_ns_per_eval"]
                )
            case["peer_pygrpm"] = peer
        results["cases"][key] = case
        print(json.dumps({key: case}, indent=1), flush=True)
    results["machine"]["load_average_at_end"] = os.getloadavg()
    results["peak_rss_mb"] = peak_rss_mb()
    results["notes"] = [
        *NOTES,
        f"load average {info['load_average_at_start']} at start on {info['cpu_count']} cores: "
        "the machine was shared; evals/s scale with the CPU share this process got",
    ]
    results["targets"] = {
        "numba_evals_per_s": 1e8,
        "numba_over_peer": 40,
        "issue22_numba_float32_cpu_ns_per_eval": 20,
        "issue22_numba_over_peer": 15,
        "cupy_evals_per_s_h100": 3e10,
    }
    if not args.quick:
        RESULT.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(RESULT, json.dumps(results, indent=1) + "\n", overwrite=True)
    return results


if __name__ == "__main__":
    main()
