"""Speed of `brachycryo followup` on one CT pair of 512 x 512 x 100 (issue 16: <= 60 s on the
2-core machine).

Case (brachycryo.phantoms.followup_pair): a textured planning CT of 512 x 512 x 100 voxels
(0.8 x 0.8 x 2.5 mm), one lesion (GTV sphere r 15 mm, core r 10 mm, seed target r 22 mm,
a lethal isotherm r 12 mm, a planned dose falling off from it), and a follow-up CT of the
same size made from it by a known rigid motion (2 deg, 4 mm) + a smooth bump (4 mm,
sigma 20 mm) at the lesion, with an ablation-zone sphere and a tumour sphere contoured in
the follow-up frame.  Timed: the whole command (`brachycryo followup`, deformable, inverse
consistency, landmarks, carried RTSTRUCT / RTDOSE, no HTML report), reading the DICOM
included, in a child process whose CPU time (user + system) and peak resident memory are
recorded, with the 1-minute load average before and after it; writing the case is not
timed.  The reference: the same command rigid only
(``--registration rigid``) on the same pair, in the same run.  Also recorded: the landmark
TRE against the known deformation.  SimpleITK runs its registrations on one thread
(determinism); the rest may use what the machine has - run it under ``taskset -c 0,1`` to
hold it to 2 cores.

Writes ``benchmarks/results/followup_speed.json``.
Runs: the default command (deformable step on the lesion box + 30 mm); with
``--region-mm MM`` restricted to the lesion box + MM instead; with ``--whole-ct`` also the
deformable step on the whole CT (``--deform-whole-ct``, about 12 CPU minutes); the rigid-only
reference.
Run: ``python -m benchmarks.followup_speed [--shape 512 512 100] [--whole-ct]``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.common import machine_info, write_results  # noqa: E402
from brachycryo.core.grid import Grid  # noqa: E402
from brachycryo.dicom_io.common import StudyContext, new_uid  # noqa: E402
from brachycryo.dicom_io.ct_series import write_ct_series  # noqa: E402
from brachycryo.dicom_io.rtdose import write_rtdose  # noqa: E402
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct  # noqa: E402
from brachycryo.phantoms.followup_pair import (  # noqa: E402
    SmoothDeformation,
    textured_ct,
    warp,
)

LESION = "GTV_Met1"
RADII_MM = {LESION: 15.0, f"{LESION}_Core": 10.0, f"{LESION}_SeedTarget": 22.0,
            f"{LESION}_Lethal_m40C": 12.0}  # fmt: skip


def _circles(centre, r, z_planes, *, s: SmoothDeformation | None = None):
    """Circles of a sphere on the planes; with ``s``, the sphere is in the planning frame
    and the circles are its follow-up image's outline (points pulled back by S)."""
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    out = []
    for z in z_planes:
        dz = z - centre[2]
        if abs(dz) < r - 1e-6:
            rho = math.sqrt(r * r - dz * dz)
            out.append(np.c_[centre[0] + rho * np.cos(t), centre[1] + rho * np.sin(t),
                             np.full(t.size, z)])  # fmt: skip
    return out


def build_case(folder: Path, shape_kji, spacing_mm) -> dict:
    """Write the plan folder, the follow-up CT + RTSTRUCT and the landmark CSV."""
    nk, nj, ni = shape_kji
    sp = np.asarray(spacing_mm, float)
    origin = -(np.array([ni, nj, nk]) - 1) / 2.0 * sp
    pg = Grid((nk, nj, ni), tuple(origin), tuple(sp))
    lesion = np.array([20.0, -15.0, 5.0])
    true = SmoothDeformation(
        centre_mm=(0.0, 0.0, 0.0), rotation_axis=(0.1, 0.2, 1.0), rotation_deg=2.0,
        shift_mm=(3.0, -2.0, 2.0), bump_mm=(3.0, -2.0, 1.5), bump_centre_mm=tuple(lesion),
        bump_sigma_mm=20.0,
    )  # fmt: skip
    t0 = time.perf_counter()
    hu = textured_ct(pg, texture_sigma_mm=3.0)
    fu_hu = warp(hu, pg, pg, true)
    setup_s = time.perf_counter() - t0
    plan = folder / "plan"
    ctx = StudyContext()
    ct = write_ct_series(plan / "case" / "CT", hu, pg, context=ctx)
    z = pg.ijk_to_mm(np.c_[np.zeros(nk), np.zeros(nk), np.arange(nk)])[:, 2]
    write_rtstruct(plan / "case" / "RS.case.dcm",
                   [RoiSpec(LESION, contours_mm=_circles(lesion, RADII_MM[LESION], z),
                            interpreted_type="GTV")], ct)  # fmt: skip
    zones = [RoiSpec(n, contours_mm=_circles(lesion, r, z)) for n, r in RADII_MM.items()
             if n != LESION]  # fmt: skip
    write_rtstruct(plan / "RS.zones.dcm", zones, ct, label="zones")
    dg = Grid.from_bounds(lesion - 40, lesion + 40, 2.0)
    r2 = np.sum((dg.voxel_centres_mm() - lesion) ** 2, axis=-1)
    write_rtdose(plan / "RD.plan.dcm", 150.0 * np.exp(-r2 / (2 * 18.0**2)), dg, context=ctx,
                 referenced_plan_uid=new_uid())  # fmt: skip
    (plan / "metrics.json").write_text(json.dumps({"prescription_gy": 110.0}))
    fu_ctx = StudyContext(patient_id=ctx.patient_id)
    fu_ct = write_ct_series(folder / "fu" / "CT", fu_hu, pg, context=fu_ctx)
    # follow-up contours: spheres in the follow-up frame around where the lesion went
    c_fu = lesion.copy()
    for _ in range(30):  # S(c_fu) = lesion, fixed point
        c_fu = c_fu - (true.fu_to_plan(c_fu[None])[0] - lesion)
    write_rtstruct(folder / "fu" / "RS.fu.dcm",
                   [RoiSpec("Ablation", contours_mm=_circles(c_fu, 22.0, z)),
                    RoiSpec("Residual", contours_mm=_circles(c_fu, 6.0, z))], fu_ct)  # fmt: skip
    # landmarks: follow-up points within 30 mm of the lesion and their planning points
    y = Grid.from_bounds(c_fu - 30, c_fu + 30, 10.0).voxel_centres_mm().reshape(-1, 3)
    x = true.fu_to_plan(y)
    rows = ["plan_x_mm,plan_y_mm,plan_z_mm,followup_x_mm,followup_y_mm,followup_z_mm"]
    rows += [",".join(f"{v:.4f}" for v in (*p, *q)) for p, q in zip(x, y)]
    (folder / "landmarks.csv").write_text("\n".join(rows) + "\n")
    return {"plan_grid_shape_kji": list(pg.shape), "spacing_mm": list(pg.spacing_mm),
            "synthesis_s": setup_s, "landmarks": len(y)}  # fmt: skip


def run_command(cmd: list[str]) -> dict:
    """``brachycryo <cmd>`` in a child process: its exit code, wall time, CPU time (user +
    system of the child and its threads) and peak resident memory (``ru_maxrss``)."""
    code = "import sys; from brachycryo.cli import main; sys.exit(main(sys.argv[1:]))"
    t0 = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", code, *cmd], stdout=subprocess.DEVNULL,
                                stderr=err, cwd=ROOT, text=True)  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall_s = time.perf_counter() - t0
        err.seek(0)
        stderr = err.read()
    cpu_s = usage.ru_utime + usage.ru_stime
    return {
        "exit_code": proc.returncode,
        "stderr_tail": stderr[-2000:],
        "wall_s": round(wall_s, 2),
        "cpu_s": round(cpu_s, 2),
        "peak_rss_mib": round(usage.ru_maxrss / 1024.0, 1),  # KiB on Linux
    }


def _summary(doc: dict) -> dict:
    checks = doc.get("registration", {}).get("checks") or {}
    tre = checks.get("landmark_tre") or {}
    les = (doc.get("lesions") or [{}])[0]
    return {
        "source": doc.get("registration", {}).get("source"),
        "tre_mean_mm": tre.get("mean_mm"),
        "tre_max_mm": tre.get("max_mm"),
        "rigid_only_tre_mean_mm": tre.get("rigid_only_mean_mm"),
        "within_tg132": tre.get("within_tg132"),
        "jacobian_min": checks.get("jacobian_determinant_min"),
        "jacobian_max": checks.get("jacobian_determinant_max"),
        "inverse_consistency_mean_mm": checks.get("inverse_consistency_mean_mm"),
        "inverse_consistency_max_mm": checks.get("inverse_consistency_max_mm"),
        "mam_mm": (les.get("ablation") or {}).get("minimal_ablative_margin_mm"),
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[512, 512, 100], help="i j k")
    ap.add_argument("--spacing", type=float, nargs=3, default=[0.8, 0.8, 2.5])
    ap.add_argument("--region-mm", type=float, default=None,
                    help="--deform-region-mm of the default run (CLI default 30)")  # fmt: skip
    ap.add_argument("--no-reference", action="store_true",
                    help="skip the rigid-only reference run of the same pair")  # fmt: skip
    ap.add_argument("--whole-ct", action="store_true",
                    help="also the deformable run on the whole CT (--deform-whole-ct)")  # fmt: skip
    ap.add_argument("--case-dir", default=None,
                    help="write the case here, or reuse the one there (same shape)")  # fmt: skip
    ap.add_argument("--name", default="followup_speed", help="results/NAME.json")
    ap.add_argument("--no-write", action="store_true", help="do not write the JSON")
    args = ap.parse_args(argv)

    ni, nj, nk = args.shape
    runs: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) if args.case_dir is None else Path(args.case_dir)
        if (folder / "landmarks.csv").is_file():
            case = {"reused_case_dir": True, "plan_grid_shape_kji": [nk, nj, ni]}
        else:
            case = build_case(folder, (nk, nj, ni), args.spacing)
        base = ["followup", "--plan", str(folder / "plan"), "--ct", str(folder / "fu" / "CT"),
                "--rtstruct", str(folder / "fu" / "RS.fu.dcm"), "--ablation", "Ablation",
                "--tumour", "Residual", "--landmarks", str(folder / "landmarks.csv"),
                "--no-report", "--quiet"]  # fmt: skip
        box = [] if args.region_mm is None else ["--deform-region-mm", str(args.region_mm)]
        variants = {"deformable_lesion_box": ["--registration", "deformable", *box]}
        if args.whole_ct:
            variants["deformable_whole_ct"] = ["--registration", "deformable", "--deform-whole-ct"]
        if not args.no_reference:
            variants["rigid_reference"] = ["--registration", "rigid"]
        for name, extra in variants.items():
            out = Path(tmp) / f"out_{name}"
            load_before = os.getloadavg()[0]
            run = run_command([*base, "--out", str(out), *extra])
            run["load_average_1min_before_after"] = [round(load_before, 2),
                                                     round(os.getloadavg()[0], 2)]  # fmt: skip
            if run["exit_code"] == 0:
                run.update(_summary(json.loads((out / "followup.json").read_text())))
                run["outputs"] = sorted(p.name for p in out.iterdir())
            run["options"] = " ".join(extra)
            runs[name] = run
    main_run = runs.get("deformable_lesion_box") or {}
    ref = runs.get("rigid_reference")
    result = {
        "case": case,
        "command": "brachycryo followup --plan ... --ct ... --rtstruct ... --ablation Ablation "
        "--tumour Residual --landmarks ... --no-report --quiet + options",
        "runs": runs,
        "target_s": 60.0,
        "within_target_cpu": main_run.get("exit_code") == 0 and main_run["cpu_s"] <= 60.0,
        "within_target_wall": main_run.get("exit_code") == 0 and main_run["wall_s"] <= 60.0,
        "cpu_ratio_deformable_to_rigid": None
        if ref is None or not ref["cpu_s"] or not main_run
        else round(main_run["cpu_s"] / ref["cpu_s"], 2),
        "note": "cpu_s: user + system CPU time of the command's process (all its threads), "
        "what a dedicated run would take on this loaded shared machine (load average in "
        "machine); wall_s is inflated by the other jobs. peak_rss_mib: the command's own "
        "ru_maxrss (os.wait4). The reference run is the rigid-only command on the same pair.",
        "cpu_affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "machine": machine_info(),
    }
    print(json.dumps({k: v for k, v in result.items() if k != "machine"}, indent=1))
    if not args.no_write:
        print("written", write_results(args.name, result))
    return result


if __name__ == "__main__":
    main()
