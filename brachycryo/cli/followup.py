"""``brachycryo followup``: register a follow-up CT to a plan and report the minimal ablative
margin, the zonal response and the pattern of failure of each lesion."""

from __future__ import annotations

import argparse
from pathlib import Path

from brachycryo.core.staging import OutputStage, refuse_existing

#: What the command writes into --out.
OUTPUT_NAMES = {
    "json": "followup.json",
    "csv": "followup.csv",
    "report": "followup.html",
    "transform": "transform.tfm",
    "zones_on_followup": "RS.zones_on_followup.dcm",
    "dose_on_followup": "RD.plan_on_followup.dcm",
    "followup_on_plan": "RS.followup_on_plan.dcm",
}
#: The default margin (mm) of the lesion box the deformable step is restricted to: on the
#: 512 x 512 x 100 benchmark pair (benchmarks/followup_speed.py) the box + 30 mm gave a
#: landmark TRE of 0.05 mm mean against 0.71 mm for the whole CT, at a seventh of the time.
DEFAULT_REGION_MM = 30.0
#: The DICOM files among OUTPUT_NAMES (written by brachycryo.followup.carry).
CARRIED = ("zones_on_followup", "dose_on_followup", "followup_on_plan")


def _positive_mm(text: str) -> float:
    v = float(text)
    if not 0.0 < v <= 50.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be > 0 and <= 50 mm, got {text}")
    return v


def _mesh_mm(text: str) -> float:
    v = float(text)
    if not 5.0 <= v <= 200.0:  # NaN fails too
        raise argparse.ArgumentTypeError(f"must be 5-200 mm, got {text}")
    return v


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "followup",
        help="follow-up CT: registration, ablative margin, zonal response, pattern of failure",
        description=(
            "Register a follow-up CT to the planning CT of a plan folder (rigid, mutual "
            "information, then a B-spline deformable step; quality block with Jacobian "
            "range, inverse consistency and landmark TRE against TG-132), carry the zones "
            "and dose onto the follow-up CT and the follow-up contours onto the planning CT "
            "(RTSTRUCT / RTDOSE), and report per lesion: the minimal ablative margin of the "
            "planning GTV in the ablation zone, the coverage of the planned core and margin, "
            "residual tumour per zone, volume and longest axial diameter change, and where a "
            "recurrence lies (core / margin / outside) with its planned dose. ROI options "
            "take ROI (one lesion) or LESION=ROI, and may be repeated."
        ),
    )
    p.add_argument("--plan", required=True, help="a brachycryo plan / demo output folder")
    p.add_argument("--plan-ct", default=None, help="planning CT folder (default PLAN/case/CT)")
    p.add_argument(
        "--plan-rtstruct",
        default=None,
        help="planning structure set with the GTVs (default PLAN/case/RS*.dcm)",
    )
    p.add_argument("--ct", required=True, help="follow-up CT folder")
    p.add_argument("--rtstruct", required=True, help="follow-up RTSTRUCT")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--lesion", action="append", default=[], help="planned lesion (GTV) name")
    p.add_argument("--tumour", action="append", default=[], help="follow-up tumour ROI")
    p.add_argument("--ablation", action="append", default=[], help="follow-up ablation zone ROI")
    p.add_argument("--recurrence", action="append", default=[], help="follow-up recurrence ROI")
    p.add_argument(
        "--transform",
        default=None,
        help="ITK rigid/affine transform file planning -> follow-up (skips registration)",
    )
    p.add_argument(
        "--same-frame",
        action="store_true",
        help="the follow-up CT is already in the planning frame (no registration)",
    )
    p.add_argument(
        "--registration",
        choices=("rigid", "deformable"),
        default="deformable",
        help="rigid only, or rigid then B-spline (default deformable)",
    )
    p.add_argument(
        "--bspline-mesh-mm",
        type=_mesh_mm,
        default=25.0,
        help="B-spline control point spacing, the regulariser (default 25 mm)",
    )
    region = p.add_mutually_exclusive_group()
    region.add_argument(
        "--deform-region-mm",
        type=_positive_mm,
        default=DEFAULT_REGION_MM,
        help="restrict the deformable step to the box of the lesions' GTV and zones + MM "
        f"(default {DEFAULT_REGION_MM:g} mm: faster and, over the lesion, more accurate than "
        "the whole CT)",
    )
    region.add_argument(
        "--deform-whole-ct",
        action="store_true",
        help="register the whole planning CT deformably (minutes on a 512 x 512 x 100 CT)",
    )
    p.add_argument(
        "--no-inverse-consistency",
        action="store_true",
        help="skip the backward registration that measures inverse consistency",
    )
    p.add_argument(
        "--landmarks",
        default=None,
        help="CSV of landmark pairs (plan_x_mm..followup_z_mm): TRE against TG-132",
    )
    p.add_argument(
        "--mam-threshold-mm",
        type=_positive_mm,
        default=5.0,
        help="minimal ablative margin for technical success (default 5 mm)",
    )
    p.add_argument(
        "--analysis-spacing-mm",
        type=_positive_mm,
        default=1.0,
        help="voxel of the analysis grid around each lesion (default 1 mm)",
    )
    p.add_argument("--no-report", action="store_true", help="no HTML page")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="print nothing but warnings")
    p.set_defaults(func=run, command_name="followup")


def _print_checks(checks: dict | None) -> None:
    if checks is None:
        return
    line = (
        f"  Jacobian determinant {checks['jacobian_determinant_min']:.3f} to "
        f"{checks['jacobian_determinant_max']:.3f}"
    )
    if checks["inverse_consistency_mean_mm"] is not None:
        line += (
            f", inverse consistency {checks['inverse_consistency_mean_mm']:.2f} mm mean / "
            f"{checks['inverse_consistency_max_mm']:.2f} mm max"
        )
    print(line)
    tre = checks["landmark_tre"]
    if tre is not None:
        verdict = "within" if tre["within_tg132"] else "OUTSIDE"
        print(
            f"  landmark TRE ({tre['n']} pairs) {tre['mean_mm']:.2f} mm mean / "
            f"{tre['max_mm']:.2f} mm max: {verdict} TG-132 "
            f"({tre['tg132_mean_limit_mm']:g} / {tre['tg132_max_limit_mm']:g} mm)"
        )
    for flag in checks["flags"]:
        print(f"warning: {flag}")


def _mm(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.1f}"


def _lesion_line(les: dict) -> str:
    """MAM with the registration's uncertainty next to it, the verdict, RECIST diameters."""
    t = les["tumour"]
    pd, fd = t["plan_diameters"], t["followup_diameters"]
    line = f": diameters {_mm(pd['longest_mm'])} x {_mm(pd['perpendicular_mm'])} mm at plan"
    if fd is not None:
        line += f", {_mm(fd['longest_mm'])} x {_mm(fd['perpendicular_mm'])} mm at follow-up"
        line += f" ({t['lesion_recist_class']})"
    if t["enhancing_volume_cc"] is not None:
        line += f", enhancing {t['enhancing_volume_cc']:.2f} cc"
    ab = les.get("ablation")
    if ab is not None:
        unc = ab["registration_uncertainty"]
        unc_text = (
            ""
            if unc is None
            else f" (registration {unc['kind']} {unc['mean_mm']:.2f} mean / "
            f"{unc['max_mm']:.2f} max mm)"
        )
        verdict = ab["verdict"]
        if ab["verdict_within_registration_uncertainty"]:
            verdict += ", within the registration uncertainty of the threshold"
        line += (
            f", MAM {_mm(ab['minimal_ablative_margin_mm'])} mm{unc_text}: technical {verdict} "
            f"(threshold {ab['mam_threshold_mm']:g} mm)"
        )
    rec = les.get("recurrence")
    if rec is not None:
        line += f", recurrence origin {rec['origin_zone']}"
    return line


def _recist_line(r: dict) -> str:
    fu = r["sum_longest_diameters_followup_mm"]
    if fu is None:
        missing = ", ".join(r["lesions_without_followup_tumour_roi"])
        return f"  RECIST 1.1: no follow-up tumour ROI for {missing}; no response class"
    return (
        f"  RECIST 1.1 sum of longest diameters {r['sum_longest_diameters_plan_mm']:.1f} -> "
        f"{fu:.1f} mm: {r['response']} ({r['response_name']})"
    )


def run(args: argparse.Namespace) -> int:
    import json

    from brachycryo.core.atomic import write_text_atomic
    from brachycryo.followup.analysis import FollowupOptions, analyse_followup
    from brachycryo.followup.carry import Carrier, write_carried
    from brachycryo.followup.checks import read_landmarks
    from brachycryo.followup.deformable import DeformableOptions
    from brachycryo.followup.io import followup_csv, followup_json, read_followup, read_plan_folder
    from brachycryo.followup.registration import write_transform
    from brachycryo.followup.workflow import (
        RegistrationOptions,
        lesion_points,
        lesion_rois,
        plan_rois_to_carry,
        registration_for,
    )

    out = Path(args.out)
    refuse_existing(out, list(OUTPUT_NAMES.values()), overwrite=args.overwrite)
    with OutputStage([out], folders=[out], overwrite=args.overwrite) as stage:
        plan = read_plan_folder(args.plan, ct_dir=args.plan_ct, rtstruct=args.plan_rtstruct)
        fu = read_followup(args.ct, args.rtstruct)
        rois = lesion_rois(plan, lesions=args.lesion, tumour=args.tumour,
                           ablation=args.ablation, recurrence=args.recurrence)  # fmt: skip
        reg_options = RegistrationOptions(
            deformable=args.registration == "deformable",
            region_margin_mm=None if args.deform_whole_ct else args.deform_region_mm,
            inverse_consistency=not args.no_inverse_consistency,
            bspline=DeformableOptions(mesh_spacing_mm=args.bspline_mesh_mm),
        )
        landmarks = None if args.landmarks is None else read_landmarks(args.landmarks)
        reg = registration_for(
            plan, fu, transform_path=args.transform, same_frame=args.same_frame,
            options=reg_options, region_points_mm=lesion_points(plan, rois),
            landmarks=landmarks,
        )  # fmt: skip
        options = FollowupOptions(
            analysis_spacing_mm=args.analysis_spacing_mm, mam_threshold_mm=args.mam_threshold_mm
        )
        result = analyse_followup(plan, fu, rois, reg, options)
        doc = followup_json(result, plan.prescription_gy)
        staged = stage.path(out)
        carried = write_carried(
            staged, {k: OUTPUT_NAMES[k] for k in CARRIED}, plan_ct=plan.ct,
            plan_rois=plan_rois_to_carry(plan, rois), plan_dose=plan.dose, fu_ct=fu.ct,
            fu_structures=fu.structures, carrier=Carrier.of(reg.transform, plan.ct.grid),
        )  # fmt: skip
        doc["carried"] = carried.to_json()
        doc["notes"] += [
            f"ROI {name} not carried: outside the other CT or smaller than its voxels"
            for name in carried.outside
        ]
        write_text_atomic(staged / OUTPUT_NAMES["json"], json.dumps(doc, indent=2) + "\n")
        write_text_atomic(staged / OUTPUT_NAMES["csv"], followup_csv(doc))
        write_transform(staged / OUTPUT_NAMES["transform"], reg.transform)
        if not args.no_report:
            from brachycryo.reports.followup import build_followup_report

            page = build_followup_report(plan, result, doc)
            write_text_atomic(staged / OUTPUT_NAMES["report"], page)
    if not args.quiet:
        q = reg.quality
        print(
            f"registration {reg.source}: rotation {reg.transform.rotation_deg:.2f} deg, "
            f"HU correlation {q.correlation_before:.3f} -> {q.correlation_after:.3f}"
        )
        _print_checks(doc["registration"]["checks"])
        for les in doc["lesions"]:
            print(f"  {les['lesion']}{_lesion_line(les)}")
        print(_recist_line(doc["recist"]))
        for note in doc["notes"]:
            print(f"note: {note}")
        print(f"  outputs in {out}")
    return 0
