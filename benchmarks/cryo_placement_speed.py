"""Speed of the cryo probe placement on the demo case (issue 13): sparse search vs dense.

The demo spec (``planning/examples/demo_abdomen.toml``) is read and its phantom case built
under ``--work`` (default ``~/.cache/brachycryo/cryo-placement-speed``); then its cryo stage
(:func:`~brachycryo.planning.cryo_layout.plan_cryo_layouts`: two lesions, six
``place_probes`` calls over the parallel and converging approaches, the probe calibration
by the physics mode) runs twice in this process: with the search of
``cryo_iceball/placement.py`` and with the dense reference it replaced
(``tests/cryo_iceball/placement_reference.py``: every candidate's field on every evaluation
voxel, each score recomputed on all of them, ``empirical_min_temp`` on the whole grid).
Recorded: CPU seconds of the stage and of ``place_probes`` alone (process time, so the
machine's load enters only through cache sharing), wall seconds, tracemalloc peak, and
whether the two layouts are identical (probes in order, coverage, OAR distances, lethal
and 0 C masks).  The fast run goes first and a warm-up calibration before it, so that
numba's compilation falls in neither.

Run: ``python -m benchmarks.cryo_placement_speed`` ->
``benchmarks/results/cryo_placement_speed.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import tomllib
import tracemalloc
from importlib import resources
from pathlib import Path

import numpy as np

from benchmarks.common import RESULTS, machine_info, write_results


def _stage(spec, structures, obstacles_of, backend):
    """One cryo stage: its layouts and timings."""
    from brachycryo.cryo_iceball import placement
    from brachycryo.planning.cryo_layout import plan_cryo_layouts

    place = placement.place_probes
    spent = {"place_probes_cpu_s": 0.0}

    def timed(*a, **k):
        c0 = time.process_time()
        try:
            return place(*a, **k)
        finally:
            spent["place_probes_cpu_s"] += time.process_time() - c0

    placement.place_probes = timed
    try:
        obstacles = obstacles_of()
        tracemalloc.start()
        w0, c0 = time.perf_counter(), time.process_time()
        layouts = plan_cryo_layouts(spec, structures, backend=backend, obstacles=obstacles)
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    finally:
        placement.place_probes = place
    timing = {
        "cryo_stage_cpu_s": round(cpu, 2),
        "cryo_stage_wall_s": round(wall, 2),
        "place_probes_cpu_s": round(spent["place_probes_cpu_s"], 2),
        "tracemalloc_peak_mb": round(peak / 2**20, 1),
    }
    return layouts, timing


def _summary(layouts) -> dict:
    return {
        roi: {
            "n_probes": len(c.probes),
            "probes": [[list(p.tip_mm), list(p.direction)] for p in c.probes],
            "coverage": c.coverage,
            "lethal_voxels": int(c.lethal.sum()),
            "ice_0c_voxels": int(c.ice_0c.sum()),
            "oar_min_distance_mm": c.oar_min_distance_mm,
        }
        for roi, c in layouts.items()
    }


def _identical(a, b) -> bool:
    return a.keys() == b.keys() and all(
        a[k].probes == b[k].probes
        and a[k].coverage == b[k].coverage
        and a[k].oar_min_distance_mm == b[k].oar_min_distance_mm
        and np.array_equal(a[k].lethal, b[k].lethal)
        and np.array_equal(a[k].ice_0c, b[k].ice_0c)
        for k in a
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    ap.add_argument("--work", type=Path, default=cache / "brachycryo" / "cryo-placement-speed")
    ap.add_argument("--out", type=Path, default=RESULTS / "cryo_placement_speed.json")
    args = ap.parse_args()

    from brachycryo.core.backend import resolve_backend
    from brachycryo.cryo_iceball import empirical, placement
    from brachycryo.planning import pipeline
    from brachycryo.planning.case import load_case, structures_on_grid
    from brachycryo.planning.cryo_layout import _empirical_probe, _probe_model
    from brachycryo.planning.probe_tracks import track_obstacles
    from brachycryo.planning.spec import parse_plan_spec
    from tests.cryo_iceball.placement_reference import ReferenceSearch, dense_min_temp

    text = resources.files("brachycryo.planning").joinpath("examples/demo_abdomen.toml").read_text()
    spec = parse_plan_spec(tomllib.loads(text), base_dir=args.work)
    backend = resolve_backend(spec.dose.backend)
    case = load_case(spec.case, args.work, overwrite=True)
    structures = structures_on_grid(spec, case)
    implanted = pipeline._implanted(spec, case, structures, backend)
    _empirical_probe(_probe_model(spec), backend)  # warm-up: numba compiles outside the runs

    def obstacles_of():
        return track_obstacles(spec, case, implanted)

    before = machine_info()
    fast, t_fast = _stage(spec, structures, obstacles_of, backend)
    fast_search, fast_min_temp = placement._Search, empirical.empirical_min_temp

    def dense(grid, probes, models, *, merge_exponent=2.0):
        return dense_min_temp(grid, probes, models[probes[0].model.model], merge_exponent)

    placement._Search, empirical.empirical_min_temp = ReferenceSearch, dense  # type: ignore[misc]
    try:
        ref, t_ref = _stage(spec, structures, obstacles_of, backend)
    finally:
        placement._Search, empirical.empirical_min_temp = fast_search, fast_min_temp
    out = {
        "benchmark": "cryo_placement_speed",
        "case": "demo_abdomen.toml (phantom seed 0, 2 mm grid): cryo stage of the plan",
        "machine_before": before,
        "machine_after": machine_info(),
        "fast": t_fast,
        "dense_reference": t_ref,
        "speedup_cryo_stage_cpu": round(t_ref["cryo_stage_cpu_s"] / t_fast["cryo_stage_cpu_s"], 1),
        "speedup_place_probes_cpu": round(
            t_ref["place_probes_cpu_s"] / t_fast["place_probes_cpu_s"], 1
        ),
        "identical_layouts": _identical(fast, ref),
        "layouts": _summary(fast),
    }
    path = write_results(args.out.stem, out) if args.out.parent == RESULTS else args.out
    if args.out.parent != RESULTS:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "layouts"}, indent=2))
    print(path)


if __name__ == "__main__":
    main()
