"""Command-line start-up: ``brachycryo --help`` and a whole-process ``brachycryo dvh`` against
dicompyler-core, in the same run (issue 22).

* ``--help``: wall and CPU time (the child's user + system time) of a fresh
  ``python -m brachycryo.cli --help`` process, median of ``--repeat`` runs; target <= 0.3 s.
* ``dvh``: the whole process ``brachycryo dvh --rtdose RD --rtstruct RS --quiet --json ...``
  on a small real-like set (the built-in abdomen phantom, seed 0, CT on 2 × 2 × 4 mm voxels,
  13 structures, and a seed-implant-like dose on a 2 mm grid), against a whole
  dicompyler-core 0.5.6 process (its own virtualenv, see ``benchmarks/common.py``) that reads
  the same two files and computes ``dvhcalc.get_dvh`` for every structure.  Ours is timed
  with a cold numba cache (an empty ``NUMBA_CACHE_DIR``: every kernel compiles; median of
  ``--cold-repeat`` runs, each on a new empty cache) and warm (the last cold run's cache
  directory, ``--repeat`` further runs); target: warm >= 3× faster than the peer.

Wall times on a shared machine are noisy; the CPU times (``resource.getrusage`` of the
children) are the steadier ratio and are reported beside them.

Run: ``python -m benchmarks.cli_startup [--repeat N]`` -> ``benchmarks/results/cli_startup.json``.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, peer_python, write_results

ROOT = Path(__file__).resolve().parents[1]

PEER_SCRIPT = r"""
import sys
import pydicom
from dicompylercore import dicomparser, dvhcalc
rtss = pydicom.dcmread(sys.argv[1])
rtdose = pydicom.dcmread(sys.argv[2])
for number in dicomparser.DicomParser(rtss).GetStructures():
    dvhcalc.get_dvh(rtss, rtdose, number)
"""


def make_case(folder: Path) -> tuple[Path, Path]:
    """The phantom's CT + RTSTRUCT and a seed-implant-like dose (60 point sources, 1/r² with
    attenuation) on a 2 mm grid over the CT."""
    from brachycryo.core.grid import Grid
    from brachycryo.dicom_io.rtdose import write_rtdose
    from brachycryo.phantoms import build_phantom, write_phantom

    case = build_phantom(seed=0, spacing_mm=(2.0, 2.0, 4.0))
    files = write_phantom(folder, case, overwrite=True)
    g = case.grid
    nk = round((g.shape[0] - 1) * g.spacing_mm[2] / 2.0) + 1
    dose_grid = Grid((nk, g.shape[1], g.shape[2]), g.origin_mm, (2.0, 2.0, 2.0))
    pts = g.voxel_centres_mm()[case.masks[case.index_tumour]]
    seeds = pts[np.random.default_rng(1).choice(len(pts), 60, replace=False)]
    centres = dose_grid.voxel_centres_mm()
    dose = np.zeros(dose_grid.shape)
    for s in seeds:
        r2 = np.sum((centres - s) ** 2, axis=-1)
        dose += 2500.0 / (r2 + 4.0) * np.exp(-np.sqrt(r2) / 60.0)
    rd = folder / "RD.dcm"
    write_rtdose(
        rd,
        dose.astype(np.float32),
        dose_grid,
        context=files.ct.context,
        summation="PLAN",
        referenced_plan_uid="1.2.826.0.1.3680043.10.2",
        overwrite=True,
    )
    return files.rtstruct, rd


def timed_process(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """(wall s, CPU s) of one child process; raises if it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def summary(samples: list[tuple[float, float]]) -> dict:
    walls, cpus = zip(*samples, strict=True)
    return {
        "runs": len(samples),
        "wall_s_median": statistics.median(walls),
        "wall_s_min": min(walls),
        "cpu_s_median": statistics.median(cpus),
        "cpu_s_min": min(cpus),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="runs per figure (median reported)")
    ap.add_argument(
        "--cold-repeat", type=int, default=3, help="cold-cache runs (each on an empty cache)"
    )
    args = ap.parse_args(argv)
    cli = [sys.executable, "-m", "brachycryo.cli"]
    results: dict = {"machine": machine_info(), "date_utc": time.strftime("%Y-%m-%dT%H:%MZ")}
    results["help"] = summary([timed_process([*cli, "--help"]) for _ in range(args.repeat)])
    results["help"]["target_s"] = 0.3
    with tempfile.TemporaryDirectory() as tmp:
        rs, rd = make_case(Path(tmp) / "case")
        dvh = [*cli, "dvh", "--rtdose", str(rd), "--rtstruct", str(rs), "--quiet"]
        dvh += ["--json", str(Path(tmp) / "dvh.json"), "--overwrite"]
        cold = []
        for i in range(max(1, args.cold_repeat)):  # each run on a new, empty numba cache
            env = dict(os.environ, NUMBA_CACHE_DIR=str(Path(tmp) / f"numba-cache-{i}"))
            cold.append(timed_process(dvh, env))
        results["dvh_cold_numba_cache"] = summary(cold)
        results["dvh_warm_numba_cache"] = summary(
            [timed_process(dvh, env) for _ in range(args.repeat)]
        )
        python = peer_python()
        if python is None:
            results["peer_dicompyler_core"] = {"skipped": "dicompyler-core venv missing"}
        else:
            peer = [str(python), "-c", PEER_SCRIPT, str(rs), str(rd)]
            results["peer_dicompyler_core"] = summary(
                [timed_process(peer) for _ in range(args.repeat)]
            )
            warm, ref = results["dvh_warm_numba_cache"], results["peer_dicompyler_core"]
            results["dvh_speedup_warm_wall"] = ref["wall_s_median"] / warm["wall_s_median"]
            results["dvh_speedup_warm_cpu"] = ref["cpu_s_median"] / warm["cpu_s_median"]
            results["dvh_speedup_target"] = 3.0
    results["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    results["note"] = (
        "whole processes (interpreter start, imports, file reading, DVHs of every structure); "
        "the machine was shared, so wall times are noisy: CPU times are the steadier ratio"
    )
    path = write_results("cli_startup", results)
    print(path.read_text())
    return results


if __name__ == "__main__":
    main()
