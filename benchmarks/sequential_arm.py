"""The sequential seeds-then-cryo arm end to end (issue 15, item 2), too slow for CI.

phantom -> seed plan -> post-implant CT rendered with those seeds
(:mod:`brachycryo.phantoms.postimplant`, 1 x 1 x 2 mm around the seeds, its own Frame of
Reference) with the phantom's ROIs contoured on it -> ``postimplant`` (seed detection,
``RP.postimplant.dcm``) -> a zoned cryo plan on the post-implant CT with
``implanted_plan = RP.postimplant.dcm``.  Checks every probe track's distance to every
detected seed against ``seed_clearance_mm`` and records the combined coverage.

    python -m benchmarks.sequential_arm [--out DIR]

Writes ``benchmarks/results/sequential_arm.json``.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

RESULT = Path(__file__).parent / "results" / "sequential_arm.json"
CLEARANCE_MM = 5.0


def _seed_plan(folder: Path) -> Path:
    from brachycryo.planning.evaluate import evaluate_zoned_plan
    from brachycryo.planning.pipeline import make_plan
    from brachycryo.planning.spec import parse_plan_spec
    from brachycryo.reports.plan import write_plan_folder
    from tests.planning.test_sequential import SEED_PLAN

    out = folder / "seeds"
    result = make_plan(parse_plan_spec(SEED_PLAN), out)
    write_plan_folder(result, evaluate_zoned_plan(result), out, report_html=False)
    return out


def _postimplant_ct(first: Path, folder: Path) -> tuple[Path, Path]:
    """The post-implant CT of the first plan's seeds and the phantom's ROIs on it."""
    from brachycryo.dicom_io.common import StudyContext
    from brachycryo.dicom_io.ct_series import load_ct_series
    from brachycryo.dicom_io.rasterize import roi_mask
    from brachycryo.dicom_io.rtplan import read_rtplan
    from brachycryo.dicom_io.rtstruct import read_rtstruct
    from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
    from brachycryo.phantoms.postimplant import (
        ScannerModel,
        layout_from_plan,
        postimplant_grid,
        render_postimplant_ct,
        write_postimplant_ct,
    )

    ct = load_ct_series(first / "case" / "CT")
    plan = read_rtplan(first / "RP.seeds.dcm")
    grid = postimplant_grid(ct.grid, plan.positions_mm, spacing_mm=(1.0, 1.0, 2.0), margin_mm=50)
    rendered = render_postimplant_ct(
        ct.hu, ct.grid, layout_from_plan(plan), ct_grid=grid, scanner=ScannerModel(), seed=3
    )
    ct_dir, rs = folder / "post_ct", folder / "RS.post.dcm"
    image = write_postimplant_ct(rendered, ct_dir, context=StudyContext())
    phantom = read_rtstruct(first / "case" / "RS.phantom.dcm")
    rois = []
    for name in phantom.roi_names:
        mask = roi_mask(phantom.roi(name), grid, slice_thickness_mm=ct.grid.spacing_mm[2])
        if mask.any():
            kind = "EXTERNAL" if name == "BODY" else "ORGAN"
            rois.append(RoiSpec(name, mask=mask, interpreted_type=kind))
    write_rtstruct(rs, rois, image, label="post-implant")
    return ct_dir, rs


def _cryo_plan(folder: Path, ct_dir: Path, rs: Path, implanted: Path) -> Path:
    from brachycryo.cli import main
    from tests.planning.test_plan_end_to_end import _toml

    doc = {
        "case": {"ct": str(ct_dir), "rtstruct": str(rs), "implanted_plan": str(implanted)},
        "prescription": {"dose_gy": 110.0, "seed_model": "6711", "activity_mci": 0.8},
        "lesion": [
            {
                "roi": "GTV_Met1",
                "allocation": "zoned",
                "core": "cryo",
                "core_margin_mm": 4.0,
                "margin_mm": 5.0,
            }
        ],
        "needles": {"no_go": ["Bowel", "Aorta"], "direction": [0.0, 1.0, 0.0]},
        "cryo": {"probe_model": "generic_2p4mm", "seed_clearance_mm": CLEARANCE_MM},
        "dose": {"spacing_mm": 2.0, "backend": "numba"},
    }
    spec = folder / "cryo.toml"
    spec.write_text(_toml(doc))
    out = folder / "cryo"
    code = main(["plan", str(spec), "--out", str(out), "--quiet"])
    if code not in (0, 3):
        raise SystemExit(f"cryo plan failed with exit {code}")
    return out


def run(folder: Path) -> dict:
    from brachycryo.dicom_io.rtplan import read_rtplan
    from brachycryo.postimplant.workflow import run_postimplant
    from brachycryo.reports.postimplant import write_postimplant_folder

    t0 = time.perf_counter()
    first = _seed_plan(folder)
    ct_dir, rs = _postimplant_ct(first, folder)
    post = run_postimplant(ct_dir, rs, sk_u=0.8 * 1.270, model="6711", prescription_gy=110.0)
    paths = write_postimplant_folder(post, folder / "post", render_3d=False)
    implanted = paths["rtplan"]
    planned = read_rtplan(first / "RP.seeds.dcm").positions_mm
    detected = read_rtplan(implanted).positions_mm
    out = _cryo_plan(folder, ct_dir, rs, implanted)
    metrics = json.loads((out / "metrics.json").read_text())
    block = metrics["lesions"]["GTV_Met1"]
    distances = []
    for probe in block["cryo"]["probes"]:
        tip, entry = np.array(probe["tip_mm"]), np.array(probe["entry_mm"])
        ab = entry - tip
        t = np.clip((detected - tip) @ ab / (ab @ ab), 0, 1)
        distances.append(float(np.linalg.norm(detected - (tip + t[:, None] * ab), axis=1).min()))
    return {
        "planned_seeds": len(planned),
        "detected_seeds": len(detected),
        "n_probes": len(distances),
        "probe_seed_min_distance_mm": [round(d, 2) for d in distances],
        "seed_clearance_mm": CLEARANCE_MM,
        "clearance_kept": all(d >= CLEARANCE_MM for d in distances),
        "coverage": block["sequential"]["coverage"],
        "feasible": metrics["feasible"],
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.out is None:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(Path(tmp))
    else:
        args.out.mkdir(parents=True, exist_ok=True)
        result = run(args.out)
    RESULT.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
