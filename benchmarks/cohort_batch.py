"""Cohort DVH extraction speed: ``brachycryo.cohort.batch.run_batch`` on a synthetic cohort, 1 and
2 workers.

The cohort: ``--patients`` (default 50) phantom patients (:mod:`brachycryo.phantoms.cohort`: abdomen
phantom of seeds 0, 1, ...; 4 x 4 x 5 mm CT, 13 structures from the ~10 L BODY to 3 cc
metastases; a seed implant of the bulky tumour on a 10 mm lattice, ~100-200 seeds, with its
RTPLAN and a TG-43 RTDOSE at 3 mm around the tumour), generated once and cached under
``~/.cache/brachycryo/cohort-bench-<n>`` (or ``--workdir``).

Runs, each on a fresh output (nothing resumed):

* ``in_process`` - ``workers=1``: no Dask, in a child process (its peak RSS from
  ``getrusage(RUSAGE_CHILDREN)``);
* ``dask_1`` / ``dask_2`` - :func:`brachycryo.cohort.batch.local_cluster` (1 / 2 single-thread
  worker
  processes, the worker environment of ``brachycryo.cohort.batch.WORKER_ENVIRON``) started by the
  benchmark (start-up timed apart) and used through its scheduler address, as on a real
  cluster; peak RSS of each worker from ``getrusage`` inside it;
* ``dask_1_dask_default_env`` - the same with Dask's default worker environment
  (``MALLOC_TRIM_THRESHOLD_=65536``), the reason for ``WORKER_ENVIRON``.

Reported: patients per minute (one plan per patient) over the whole ``run_batch`` call
(discovery, evaluation, assembly), the computing thread's CPU seconds per patient (steadier
than wall-clock on a shared machine), the discovery time alone, the speed-up of 2 workers
over 1, and the peak memory per worker.  The machine this was first run on has 2 cores
shared with other jobs: the 2-worker speed-up there is bounded by 2 and lowered by
contention (see ``load_average_1min`` before and after).

Run: ``python -m benchmarks.cohort_batch [--patients 50] [--workdir DIR]``
-> ``benchmarks/results/cohort_batch.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, write_results

REPO = Path(__file__).resolve().parents[1]
PATIENT = {"spacing_mm": (4.0, 4.0, 5.0), "dose_spacing_mm": 3.0, "seed_spacing_mm": 10.0}


def _cache_dir(n: int) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "brachycryo" / f"cohort-bench-{n}"


def ensure_cohort(folder: Path, n: int) -> dict:
    """Generate the cohort unless a complete one (same parameters) is already there."""
    from brachycryo.phantoms.cohort import write_cohort

    marker = folder / "cohort.json"
    params = {"n_patients": n, **{k: list(v) if isinstance(v, tuple) else v
                                  for k, v in PATIENT.items()}}  # fmt: skip
    if marker.is_file() and json.loads(marker.read_text()).get("params") == params:
        return json.loads(marker.read_text())
    if folder.exists():
        shutil.rmtree(folder)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        files = write_cohort(folder / "dicom", n, **PATIENT)
    info = {
        "params": params,
        "generate_s": round(time.perf_counter() - t0, 1),
        "n_seeds_mean": sum(f.n_seeds for f in files) / len(files),
        "size_mib": round(
            sum(p.stat().st_size for p in folder.rglob("*") if p.is_file()) / 2**20, 1
        ),
    }
    marker.write_text(json.dumps(info, indent=1))
    return info


def _worker_maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


def _worker_idle_rss_mib() -> float:
    """Resident memory after importing the batch code (numba, pydicom, pandas, pyarrow)."""
    import brachycryo.cohort.batch
    import brachycryo.qa.dvh
    import brachycryo.qa.evaluate  # noqa: F401

    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def _mean_cpu(manifest: dict) -> float:
    """Mean CPU seconds (the computing thread's) per unit: robust to a contended machine."""
    cpu = [u["cpu_seconds"] for u in manifest["units"] if "cpu_seconds" in u]
    return round(sum(cpu) / len(cpu), 3) if cpu else float("nan")


def run_in_process(cohort: Path, out: Path) -> dict:
    """``workers=1`` (no Dask) in a child process, for a clean peak RSS."""
    code = (
        "import json, sys, time; from brachycryo.cohort.batch import run_batch; "
        "t = time.perf_counter(); "
        "r = run_batch(sys.argv[1], sys.argv[2]); "
        "print(json.dumps({'wall_s': time.perf_counter() - t, 'summary': r.counts}))"
    )
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    proc = subprocess.run(
        [sys.executable, "-c", code, str(cohort), str(out)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        check=True,
    )
    res = json.loads(proc.stdout.strip().splitlines()[-1])
    res["cpu_s_per_unit_mean"] = _mean_cpu(
        json.loads(out.with_suffix(".manifest.json").read_text())
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    res["peak_rss_mib_per_worker"] = [round(max(after, before) / 1024.0, 1)]
    return res


def run_dask(cohort: Path, out: Path, n_workers: int, *, dask_default_env: bool = False) -> dict:
    from dask.distributed import Client, LocalCluster

    from brachycryo.cohort.batch import local_cluster, run_batch

    t0 = time.perf_counter()
    if dask_default_env:  # Dask's own worker environment (MALLOC_TRIM_THRESHOLD_=65536)
        cluster = LocalCluster(
            n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
    else:
        cluster = local_cluster(n_workers)
    with cluster, Client(cluster) as client:
        client.wait_for_workers(n_workers)
        startup = time.perf_counter() - t0
        idle = client.run(_worker_idle_rss_mib)
        t = time.perf_counter()
        r = run_batch(cohort, out, scheduler=cluster.scheduler_address)
        wall = time.perf_counter() - t
        rss = client.run(_worker_maxrss_mib)
    per_worker = {}
    for e in r.manifest["units"]:
        per_worker[e.get("worker", "?")] = per_worker.get(e.get("worker", "?"), 0) + 1
    return {
        "cluster_startup_s": round(startup, 2),
        "wall_s": wall,
        "summary": r.counts,
        "peak_rss_mib_per_worker": [round(v, 1) for v in rss.values()],
        "idle_rss_mib_per_worker_after_imports": [round(v, 1) for v in idle.values()],
        "units_per_worker": sorted(per_worker.values()),
        "cpu_s_per_unit_mean": _mean_cpu(r.manifest),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--workdir", type=Path, default=None, help="cohort cache folder")
    args = ap.parse_args(argv)
    n = args.patients
    folder = args.workdir or _cache_dir(n)
    load_before = os.getloadavg()[0]
    cohort_info = ensure_cohort(folder, n)
    cohort = folder / "dicom"

    from brachycryo.cohort.discovery import discover_cohort

    t = time.perf_counter()
    idx = discover_cohort(cohort)
    discovery_s = time.perf_counter() - t
    n_units = len(idx.units)

    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        runs["in_process"] = run_in_process(cohort, tmp / "p.parquet")
        runs["dask_1"] = run_dask(cohort, tmp / "d1.parquet", 1)
        runs["dask_2"] = run_dask(cohort, tmp / "d2.parquet", 2)
        runs["dask_1_dask_default_env"] = run_dask(
            cohort, tmp / "d1d.parquet", 1, dask_default_env=True
        )
    for name, r in runs.items():
        r["wall_s"] = round(r["wall_s"], 2)
        r["patients_per_min"] = round(60.0 * len(idx.patients) / r["wall_s"], 2)
        r["units_per_min"] = round(60.0 * n_units / r["wall_s"], 2)
        if r["summary"]["ok"] != n_units:
            raise RuntimeError(f"{name}: not every unit was computed: {r['summary']}")
        print(f"{name}: {r['patients_per_min']} patients/min, peak RSS/worker "
              f"{r['peak_rss_mib_per_worker']} MiB")  # fmt: skip
    data = {
        "benchmark": "cohort_batch",
        "machine": machine_info(),
        "note": (
            "2-core machine shared with other jobs: wall-clock timings are contended and the "
            "2-worker speed-up is bounded by 2 cores"
        ),
        "load_average_1min_before": round(load_before, 2),
        "load_average_1min_after": round(os.getloadavg()[0], 2),
        "cohort": {
            "patients": len(idx.patients),
            "units": n_units,
            "structures_per_plan": 13,
            **cohort_info,
        },
        "discovery_s": round(discovery_s, 2),
        "runs": runs,
        "speedup_2_over_1_workers": round(runs["dask_1"]["wall_s"] / runs["dask_2"]["wall_s"], 2),
    }
    path = write_results("cohort_batch", data)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
