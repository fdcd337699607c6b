"""Benchmark: seed detection on generated post-implant CTs (issue 7, item 1).

Cases: 60 / 100 / 120 seeds with touching clusters (end-to-end and side-by-side pairs, 10 %
of the seeds; 33 % in the heavily clustered case) and three scanner variants (noisier with
stronger streaks, extended HU range without saturation, weaker seeds); 1 mm (0.8 x 0.8 x
1 mm voxels), 2 mm and 3 mm (1 x 1 x 3 mm) slices; detection without and with the
implanted seed count.  Per case: detection rate, false positives, median and
95th-percentile position error (Hungarian matching, 3 mm gate), run time and peak memory
of the detection (tracemalloc), plus the time of a reference pass in the same process (a
plain 26-connected labelling of the same CT, scipy.ndimage.label) as a machine-speed ratio.
A last case times the detection on a clinical-size CT (512 x 512 x 160).
Writes benchmarks/results/seed_detection.json.

Run: python -m benchmarks.seed_detection  (or python benchmarks/seed_detection.py)
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from brachycryo.core.grid import Grid  # noqa: E402
from brachycryo.phantoms import build_phantom  # noqa: E402
from brachycryo.phantoms.postimplant import (  # noqa: E402
    ScannerModel,
    needle_seed_layout,
    postimplant_grid,
    render_postimplant_ct,
)
from brachycryo.postimplant.seed_detection import detect_seeds, match_seeds  # noqa: E402

# (name, seeds, layout seed, touching pairs of each kind, scanner overrides)
CASES = [
    ("60 seeds", 60, 11, 3, {}),
    ("100 seeds", 100, 12, 5, {}),
    ("120 seeds", 120, 13, 6, {}),
    ("120 seeds, heavily clustered", 120, 14, 10, {}),
    ("100 seeds, noisy + strong streaks", 100, 15, 5, {"noise_sd_hu": 40.0, "streak_hu": 300.0}),
    ("100 seeds, extended HU range", 100, 16, 5, {"max_hu": 30000.0}),
    ("100 seeds, weaker seeds (12 000 HU)", 100, 17, 5, {"seed_hu": 12000.0}),
]
SLICES = {"1mm": (0.8, 0.8, 1.0), "2mm": (1.0, 1.0, 2.0), "3mm": (1.0, 1.0, 3.0)}


def _machine() -> dict:
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "note": "shared 2-core machine, contended by other engineers' jobs",
    }


def run() -> dict:
    phantom = build_phantom(seed=1, spacing_mm=(2.0, 2.0, 2.0))
    results = []
    for case_name, n_seeds, seed, n_pairs, scanner_kw in CASES:
        scanner = ScannerModel(**scanner_kw)
        layout = needle_seed_layout(
            phantom.masks["GTV_Bulky"],
            phantom.grid,
            n_seeds=n_seeds,
            seed=seed,
            n_end_to_end=n_pairs,
            n_side_by_side=n_pairs,
            needle_spacing_mm=7.0 if n_seeds > 80 else 9.0,
            seed_spacing_mm=8.0 if n_seeds > 80 else 9.0,
        )
        for name, spacing in SLICES.items():
            grid = postimplant_grid(phantom.grid, layout.positions_mm, spacing_mm=spacing)
            ct = render_postimplant_ct(
                phantom.hu, phantom.grid, layout, ct_grid=grid, scanner=scanner, seed=seed
            )
            t0 = time.perf_counter()
            ndimage.label(ct.hu >= 2000.0, structure=np.ones((3, 3, 3), dtype=bool))
            ref_s = time.perf_counter() - t0
            for count in (None, n_seeds):
                tracemalloc.start()
                t0 = time.perf_counter()
                det = detect_seeds(ct.hu, ct.grid, seed_count=count)
                elapsed = time.perf_counter() - t0
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                m = match_seeds(det.positions_mm, layout.positions_mm, gate_mm=3.0)
                row = {
                    "case": case_name,
                    "scanner": scanner_kw,
                    "n_seeds": n_seeds,
                    "n_touching": int((~layout.isolated).sum()),
                    "slices": name,
                    "spacing_mm": list(spacing),
                    "ct_shape": list(ct.grid.shape),
                    "seed_count_given": count is not None,
                    "n_detected": det.n_seeds,
                    "detection_rate": m.detection_rate,
                    "false_positives": m.false_positives,
                    "false_positive_rate": m.false_positive_rate,
                    "median_error_mm": float(np.median(m.error_mm)),
                    "p95_error_mm": float(np.percentile(m.error_mm, 95)),
                    "max_error_mm": float(np.max(m.error_mm)),
                    "n_suspicious": len(det.suspicious),
                    "time_s": elapsed,
                    "reference_label_time_s": ref_s,
                    "time_ratio_vs_reference": elapsed / ref_s if ref_s > 0 else None,
                    "peak_memory_mb": peak / 2**20,
                }
                results.append(row)
                print(
                    f"{case_name:38s} {name} count={'yes' if count else 'no '}: "
                    f"found {m.n_matched}/{n_seeds}, FP {m.false_positives}, "
                    f"median {row['median_error_mm']:.2f} mm, p95 {row['p95_error_mm']:.2f} mm, "
                    f"{elapsed:.2f} s, {row['peak_memory_mb']:.0f} MB",
                    flush=True,
                )
    full = _full_size_ct(phantom)
    return {
        "benchmark": "seed_detection",
        "machine": _machine(),
        "criteria": {
            "detection_rate_min": 0.98,
            "false_positive_rate_max": 0.01,
            "median_error_mm_max": 0.5,
            "p95_error_mm_max": 1.5,
            "match_gate_mm": 3.0,
        },
        "summary": _summary(results),
        "full_size_ct": full,
        "results": results,
    }


def _full_size_ct(phantom) -> dict:
    """A 100-seed implant inside a clinical-size CT (512 x 512 x 160 voxels, 1 mm slices).

    The rendered crop is pasted into a soft-tissue volume (40 +- 15 HU) of that size, to
    time the detection (and its peak memory) on a whole series rather than a crop.
    """
    layout = needle_seed_layout(
        phantom.masks["GTV_Bulky"],
        phantom.grid,
        n_seeds=100,
        seed=21,
        needle_spacing_mm=7.0,
        seed_spacing_mm=8.0,
        n_end_to_end=5,
        n_side_by_side=5,
    )
    crop = postimplant_grid(phantom.grid, layout.positions_mm, spacing_mm=(0.8, 0.8, 1.0))
    ct = render_postimplant_ct(phantom.hu, phantom.grid, layout, ct_grid=crop, seed=21)
    shape = (160, 512, 512)
    hu = np.random.default_rng(21).normal(40.0, 15.0, shape).astype(np.float32)
    k0, j0, i0 = 20, 150, 150
    nk, nj, ni = ct.hu.shape
    hu[k0 : k0 + nk, j0 : j0 + nj, i0 : i0 + ni] = ct.hu
    grid = Grid(shape=shape, origin_mm=crop.ijk_to_mm([-i0, -j0, -k0]), spacing_mm=crop.spacing_mm)
    tracemalloc.start()
    t0 = time.perf_counter()
    det = detect_seeds(hu, grid)
    elapsed = time.perf_counter() - t0
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    m = match_seeds(det.positions_mm, layout.positions_mm, gate_mm=3.0)
    print(f"full-size CT {shape}: {elapsed:.2f} s, {peak / 2**20:.0f} MB", flush=True)
    return {
        "ct_shape": list(shape),
        "input_mb": hu.nbytes / 2**20,
        "time_s": elapsed,
        "peak_memory_mb": peak / 2**20,
        "detection_rate": m.detection_rate,
        "false_positives": m.false_positives,
        "median_error_mm": float(np.median(m.error_mm)),
    }


def _summary(results: list[dict]) -> dict:
    """Worst case over all runs, per slice thickness."""
    out = {}
    for name in SLICES:
        rows = [r for r in results if r["slices"] == name]
        out[name] = {
            "min_detection_rate": min(r["detection_rate"] for r in rows),
            "max_false_positive_rate": max(r["false_positive_rate"] for r in rows),
            "max_median_error_mm": max(r["median_error_mm"] for r in rows),
            "max_p95_error_mm": max(r["p95_error_mm"] for r in rows),
            "max_time_s": max(r["time_s"] for r in rows),
        }
    return out


def main() -> None:
    out = ROOT / "benchmarks" / "results" / "seed_detection.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    data = run()
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2))
    tmp.replace(out)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
