"""``brachycryo info PATH``: what a folder holds (series, RT objects, ROIs with volumes, plans)."""

from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "info",
        help="describe the DICOM content of a folder",
        description="List CT series, RT structure sets (ROIs with volumes), plans and doses.",
    )
    p.add_argument("path", help="folder (searched recursively) or single DICOM file")
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=run, command_name="info")


def _fmt(summary: dict) -> str:
    lines = [f"Folder {summary['folder']}  patients: {', '.join(summary['patients']) or '-'}"]
    for ct in summary["ct_series"]:
        if "error" in ct:
            lines.append(f"CT series {ct['series_instance_uid']}: ERROR {ct['error']}")
            continue
        sp = ", ".join(f"{v:g}" for v in ct["spacing_mm"])
        lines.append(
            f"CT series {ct['series_instance_uid']} {ct['description']!r}: {ct['n_slices']} slices "
            f"{ct['rows_columns'][0]}x{ct['rows_columns'][1]}, spacing ({sp}) mm, "
            f"{ct['patient_position']}"
        )
    for rs in summary["rtstruct"]:
        if "error" in rs:
            lines.append(f"RTSTRUCT {rs['path']}: ERROR {rs['error']}")
            continue
        lines.append(f"RTSTRUCT {rs['path']} ({len(rs['rois'])} ROIs)")
        for r in rs["rois"]:
            vol = "-" if r["volume_cc"] is None else f"{r['volume_cc']:.2f} cc"
            note = f"  [{r['note']}]" if r.get("note") else ""
            lines.append(f"  {r['number']:>3} {r['name']:<20} {r['type']:<10} {vol:>12}{note}")
        lines.extend(f"  warning: {w}" for w in rs["warnings"])
    for kind in ("rtplan", "rtdose", "other"):
        for item in summary[kind]:
            rest = ", ".join(f"{k}={v}" for k, v in item.items() if k not in ("path", "warnings"))
            lines.append(f"{kind.upper()} {item['path']}: {rest}")
            prefix = f"{item['path']}: "
            lines.extend(f"  warning: {w.removeprefix(prefix)}" for w in item.get("warnings", []))
    for s in summary["skipped"]:
        lines.append(f"skipped {s['path']}: {s['reason']}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    from brachycryo.dicom_io.summary import summarise_folder

    summary = summarise_folder(args.path)
    print(json.dumps(summary, indent=2) if args.json else _fmt(summary))
    return 0
