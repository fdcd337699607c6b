"""DVH speed: brachycryo's brachycryo.qa.dvh against dicompyler-core 0.5.6 ``get_dvh`` on the same
files.

The case is the built-in phantom (abdomen, seed 0: 13 structures from a 9.7 L BODY to a
12 cc spinal cord, contours on 2 mm CT slices) with a seed-implant-like dose (60 point
sources, 1/r^2 with attenuation) on a 1 mm isotropic dose grid covering the body
(351 x 251 x 161 voxels), written as RTSTRUCT + RTDOSE.

* ours: :func:`brachycryo.qa.dvh.dvh_from_roi` (default settings: 4^3 partial-volume sub-points,
  2^3 for the body-sized BODY and Skin boxes, slab-aligned layers, trilinear dose) for
  every structure, timed in this process after the files are read and the numba
  histogram kernel is loaded (its one-off compile time is reported apart); peak memory
  by ``tracemalloc`` (numpy allocations included);
* dicompyler-core: ``dvhcalc.get_dvh`` for every structure on datasets read beforehand,
  timed inside its own virtualenv's process (it needs pydicom < 3); peak RSS there.

Accuracy on the same files: each structure's DVH volume against its exact contour volume
(sum of even-odd polygon areas x slice thickness, ``roi_volume_cc``), the volume both
DVHs should integrate to.  Dose-metric accuracy against closed forms is
``benchmarks/dvh_accuracy.py``.

Wall-clock and CPU (process) times are both recorded: the machine is shared, and CPU time
is the steadier ratio under contention.

Run: ``python -m benchmarks.dvh_speed [--workdir DIR]`` -> ``benchmarks/results/dvh_speed.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
import warnings
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, run_peer, write_results

PEER_SCRIPT = r"""
import json, resource, sys, time
import pydicom
from dicompylercore import dicomparser, dvhcalc
rtss = pydicom.dcmread(sys.argv[1])
rtdose = pydicom.dcmread(sys.argv[2])
structures = dicomparser.DicomParser(rtss).GetStructures()
out = {}
t_all = time.perf_counter()
c_all = time.process_time()
for number, s in structures.items():
    t = time.perf_counter()
    c = time.process_time()
    dvh = dvhcalc.get_dvh(rtss, rtdose, number)
    out[s["name"]] = {"time_s": time.perf_counter() - t, "cpu_s": time.process_time() - c,
                      "volume_cc": float(dvh.volume),
                      "mean_gy": float(dvh.mean), "max_gy": float(dvh.max)}
total = time.perf_counter() - t_all
cpu = time.process_time() - c_all
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
print(json.dumps({"structures": out, "total_s": total, "cpu_s": cpu, "peak_rss_mib": rss}))
"""


def make_case(folder: Path) -> tuple[Path, Path]:
    """Write the phantom (CT + RTSTRUCT) and a seed-like dose on a 1 mm grid; reuse if present."""
    from brachycryo.core.grid import Grid
    from brachycryo.dicom_io.rtdose import write_rtdose
    from brachycryo.phantoms import build_phantom, write_phantom

    rs, rd = folder / "RS.phantom.dcm", folder / "RD.dcm"
    if rs.exists() and rd.exists():
        return rs, rd
    case = build_phantom(seed=0)
    files = write_phantom(folder, case, overwrite=True)
    g = case.grid
    nk = round((g.shape[0] - 1) * g.spacing_mm[2]) + 1
    dose_grid = Grid((nk, g.shape[1], g.shape[2]), g.origin_mm, (1.0, 1.0, 1.0))
    tumour = case.masks[case.index_tumour]
    rng = np.random.default_rng(1)
    pts = g.voxel_centres_mm()[tumour]
    seeds = pts[rng.choice(len(pts), 60, replace=False)].astype(np.float32)
    centres = dose_grid.voxel_centres_mm().astype(np.float32)
    dose = np.zeros(dose_grid.shape, np.float32)
    for s in seeds:
        r2 = np.sum((centres - s) ** 2, axis=-1)
        dose += 2500.0 / (r2 + 4.0) * np.exp(-np.sqrt(r2) / 60.0)
    write_rtdose(
        rd,
        dose,
        dose_grid,
        context=files.ct.context,
        summation="PLAN",
        referenced_plan_uid="1.2.826.0.1.3680043.10.2",
        overwrite=True,
    )
    return rs, rd


def run_ours(rs: Path, rd: Path) -> dict:
    from brachycryo.dicom_io.rasterize import roi_volume_cc
    from brachycryo.qa.dvh import dvh_from_roi
    from brachycryo.qa.evaluate import load_plan_files

    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        dose, structures, _ = load_plan_files(rd, rs)
    read_s = time.perf_counter() - t
    dose_gy = dose.dose_gy.astype(np.float32)  # as brachycryo.qa.evaluate does
    # compile (or load from numba's cache) the histogram kernel outside the timing
    from brachycryo.qa.dvh import dvh_from_samples

    t = time.perf_counter()
    dvh_from_samples(np.ones(4, np.float32), np.ones(4), spread_gy=np.ones(4, np.float32))
    warmup_s = time.perf_counter() - t
    out = {}
    tracemalloc.start()
    t_all = time.perf_counter()
    c_all = time.process_time()
    for roi in structures.rois:
        t = time.perf_counter()
        c = time.process_time()
        dvh = dvh_from_roi(roi, dose_gy, dose.grid, slice_thickness_mm=2.0)
        out[roi.name] = {
            "time_s": time.perf_counter() - t,
            "cpu_s": time.process_time() - c,
            "volume_cc": dvh.volume_cc,
            "mean_gy": dvh.dmean_gy,
            "max_gy": dvh.dmax_gy,
            "interior_dose": dvh.settings["interior_dose"],
            "supersample": dvh.settings["supersample"],
        }
    total = time.perf_counter() - t_all
    cpu = time.process_time() - c_all
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    for roi in structures.rois:
        out[roi.name]["contour_volume_cc"] = roi_volume_cc(roi, slice_thickness_mm=2.0)
    return {
        "structures": out,
        "total_s": total,
        "cpu_s": cpu,
        "read_files_s": read_s,
        "kernel_warmup_s": warmup_s,
        "peak_traced_mib": peak / 2**20,
        "dose_grid_shape": list(dose.grid.shape),
        "dose_grid_spacing_mm": list(dose.grid.spacing_mm),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None, help="case folder (reused)")
    args = parser.parse_args(argv)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="dvh_speed_"))
    work.mkdir(parents=True, exist_ok=True)
    rs, rd = make_case(work)
    ours = run_ours(rs, rd)
    print(f"ours: {ours['total_s']:.1f} s for {len(ours['structures'])} structures")
    peer = run_peer(PEER_SCRIPT, str(rs), str(rd))
    print(f"dicompyler-core: {peer['total_s']:.1f} s")
    rows = {}
    for name, o in ours["structures"].items():
        p = peer["structures"].get(name, {})
        ref = o["contour_volume_cc"]
        rows[name] = {
            "contour_volume_cc": ref,
            "ours_time_s": o["time_s"],
            "peer_time_s": p.get("time_s"),
            "ours_cpu_s": o["cpu_s"],
            "peer_cpu_s": p.get("cpu_s"),
            "ours_volume_error_pct": 100 * (o["volume_cc"] - ref) / ref,
            "peer_volume_error_pct": (
                None if "volume_cc" not in p else 100 * (p["volume_cc"] - ref) / ref
            ),
            "ours_mean_gy": o["mean_gy"],
            "peer_mean_gy": p.get("mean_gy"),
            "ours_interior_dose": o["interior_dose"],
            "ours_supersample": o["supersample"],
        }
    ours_err = [abs(r["ours_volume_error_pct"]) for r in rows.values()]
    peer_err = [
        abs(r["peer_volume_error_pct"])
        for r in rows.values()
        if r["peer_volume_error_pct"] is not None
    ]
    result = {
        "benchmark": "dvh_speed",
        "machine": machine_info(),
        "note": "2-core machine shared with other jobs; timings are wall-clock and contended",
        "case": "phantom abdomen seed 0, 13 structures, 2 mm CT slices, 1 mm dose grid",
        "ours_total_s": ours["total_s"],
        "ours_cpu_s": ours["cpu_s"],
        "ours_read_files_s": ours["read_files_s"],
        "ours_kernel_warmup_s": ours["kernel_warmup_s"],
        "ours_peak_traced_mib": ours["peak_traced_mib"],
        "peer_total_s": peer["total_s"],
        "peer_cpu_s": peer["cpu_s"],
        "peer_peak_rss_mib": peer["peak_rss_mib"],
        "speedup": peer["total_s"] / ours["total_s"],
        "speedup_cpu": peer["cpu_s"] / ours["cpu_s"],
        "volume_error_vs_contours_pct": {
            "ours_mean_abs": float(np.mean(ours_err)),
            "ours_max_abs": float(np.max(ours_err)),
            "peer_mean_abs": float(np.mean(peer_err)) if peer_err else None,
            "peer_max_abs": float(np.max(peer_err)) if peer_err else None,
        },
        "dose_grid_shape": ours["dose_grid_shape"],
        "structures": rows,
    }
    path = write_results("dvh_speed", result)
    print(
        f"speed-up {result['speedup']:.1f}x wall, {result['speedup_cpu']:.1f}x CPU; written {path}"
    )
    return result


if __name__ == "__main__":
    main()
