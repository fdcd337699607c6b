"""DVH accuracy against closed forms: brachycryo vs dicompyler-core 0.5.6 on the same files.

The analytic cases of ``tests/qa/analytic_dvh.py`` (spheres of 0.7, 3 and 34 cc, cylinders
of 0.9 and 13 cc, a 9.4 cc cone; linear and radial 1/r^2-like fields; contours on 2 mm CT
slices) are written as CT + RTSTRUCT + RTDOSE with 1 mm and 2 mm axis-aligned dose grids
(and 2 mm oblique ones for ours; dicompyler-core assumes axial dose planes).  For each,
volume, D90, D98 and V100 are compared with the ideal shape's closed form and with the
exact DVH of the structure as contoured; errors in %.

Both tools run with their defaults: ours ``brachycryo.qa.dvh.dvh_from_roi``; dicompyler-core
``dvhcalc.get_dvh(rtss, rtdose, roi)`` with ``DVH.statistic('D90')`` etc. and
``volume_constraint(Rx, 'Gy')`` (its lookups are nearest-bin; its bins are 1 cGy).

Run: ``python -m benchmarks.dvh_accuracy`` -> ``benchmarks/results/dvh_accuracy.json``.
"""

from __future__ import annotations

import json
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, run_peer, write_results

PEER_SCRIPT = r"""
import json, sys
from dicompylercore import dvhcalc
jobs = json.loads(sys.argv[1])
out = {}
for key, (rs, rd, rx) in jobs.items():
    dvh = dvhcalc.get_dvh(rs, rd, 1)
    out[key] = {"volume_cc": float(dvh.volume),
                "d90_gy": float(dvh.statistic("D90").value),
                "d98_gy": float(dvh.statistic("D98").value),
                "v100_cc": float(dvh.volume_constraint(rx, "Gy").value)}
print(json.dumps(out))
"""


def main() -> dict:
    from brachycryo.dicom_io.rtdose import read_rtdose
    from brachycryo.dicom_io.rtstruct import read_rtstruct
    from brachycryo.qa.dvh import dvh_from_roi
    from brachycryo.qa.metrics import dose_at_volume_pct, volume_at_dose_cc
    from tests.qa.analytic_dvh import (
        ContouredDVH,
        cases,
        ct_grid_for,
        rotation,
        slice_positions,
        write_case_files,
    )

    root = Path(tempfile.mkdtemp(prefix="dvh_accuracy_"))
    rows, jobs, refs = {}, {}, {}
    for case in cases():
        contoured = ContouredDVH(case, slice_positions(ct_grid_for([case])))
        rx = case.prescription_gy
        exact = {
            "ideal": {
                "volume_cc": case.volume_cc,
                "d90_gy": case.dose_at_volume_pct(90),
                "d98_gy": case.dose_at_volume_pct(98),
                "v100_cc": case.volume_at_dose_cc(rx),
            },
            "contoured": {
                "volume_cc": contoured.volume_cc,
                "d90_gy": contoured.dose_at_volume_pct(90),
                "d98_gy": contoured.dose_at_volume_pct(98),
                "v100_cc": contoured.volume_at_dose_cc(rx),
            },
        }
        for spacing, oblique in ((1.0, False), (2.0, False), (2.0, True)):
            key = f"{case.name}|{spacing:g}mm|{'oblique' if oblique else 'axial'}"
            files = write_case_files(
                root / key.replace("|", "_"),
                case,
                spacing,
                direction=rotation((1, 2, 3), 25) if oblique else None,
            )
            roi = read_rtstruct(files.rtstruct).rois[0]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                dose = read_rtdose(files.rtdose)
            dvh = dvh_from_roi(roi, dose.dose_gy, dose.grid, slice_thickness_mm=2.0)
            ours = {
                "volume_cc": dvh.volume_cc,
                "d90_gy": dose_at_volume_pct(dvh, 90),
                "d98_gy": dose_at_volume_pct(dvh, 98),
                "v100_cc": volume_at_dose_cc(dvh, rx),
            }
            rows[key] = {"case_volume_cc": case.volume_cc, "exact": exact, "ours": ours}
            refs[key] = exact
            if not oblique:
                jobs[key] = (str(files.rtstruct), str(files.rtdose), rx)
    try:
        peer = run_peer(PEER_SCRIPT, json.dumps(jobs))
        peer_note = ""
    except RuntimeError as exc:
        peer, peer_note = {}, str(exc)

    def errors(values: dict, ref: dict) -> dict:
        return {k: 100.0 * (values[k] / ref[k] - 1.0) for k in ref}

    summary: dict = {"ours": {}, "dicompyler_core": {}}
    for key, row in rows.items():
        row["ours_error_pct"] = {r: errors(row["ours"], refs[key][r]) for r in refs[key]}
        if key in peer:
            row["dicompyler_core"] = peer[key]
            row["dicompyler_core_error_pct"] = {
                r: errors(peer[key], refs[key][r]) for r in refs[key]
            }
    for who, field in (
        ("ours", "ours_error_pct"),
        ("dicompyler_core", "dicompyler_core_error_pct"),
    ):
        for ref in ("ideal", "contoured"):
            sel = [r[field][ref] for k, r in rows.items() if field in r and "axial" in k]
            if sel:
                summary[who][ref] = {
                    m: {
                        "mean_abs": float(np.mean([abs(e[m]) for e in sel])),
                        "max_abs": float(np.max([abs(e[m]) for e in sel])),
                    }
                    for m in sel[0]
                }
    result = {
        "benchmark": "dvh_accuracy",
        "machine": machine_info(),
        "summary_axial_grids": summary,
        "peer_note": peer_note,
        "cases": rows,
    }
    path = write_results("dvh_accuracy", result)
    print(json.dumps(summary, indent=1))
    print(f"written {path}")
    return result


if __name__ == "__main__":
    main()
