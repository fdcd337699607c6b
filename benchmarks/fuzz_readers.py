"""Seeded, bounded mutation fuzzing of the DICOM readers and the library calls the commands use.

One small phantom case (a CT series of a few slices, an RTSTRUCT, a seed RTPLAN and its
RTDOSE) is written once; each fuzz case mutates one of its files and drives the result
through what the commands do with it:

* CT slice -> :func:`load_ct_series`, the ROIs rasterised on the CT grid, the TG-43 dose
  on the CT grid (``dose --ct``), the folder summary (``info``);
* RTSTRUCT -> :func:`read_rtstruct`, the image check, rasterisation, volumes, DVHs in the
  case's dose (``dvh``);
* RTDOSE -> :func:`read_rtdose`, DVHs of the case's ROIs, the TG-43 grid like it
  (``dose --like``);
* RTPLAN -> :func:`read_rtplan`, the seeds, the TG-43 dose on the seeds' box (``dose
  --spacing-mm``) and on the case's dose grid.

Mutations: delete or empty an element (at any depth), give it a wrong VR or a wrong type,
set a numeric value to NaN, inf, a huge, tiny or negative number (PixelSpacing 1e-9 or
1000 among them), duplicate or drop a sequence item, flip bytes, truncate the file.  Every
case must end with a result or a :class:`BrachyCryoError`; any other exception is an
*escape*, and the input file must be byte-for-byte unchanged.  Cases are drawn from
``numpy.random.default_rng(seed)``: a run is reproducible from its seed and case count.

Run: ``python -m benchmarks.fuzz_readers --cases 10000`` (writes
``benchmarks/results/fuzz_readers.json``); the CI test runs 2,000 cases.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import hashlib
import io
import logging
import os
import shutil
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset

from brachycryo.core.errors import BrachyCryoError
from brachycryo.core.grid import Grid

#: Numbers that readers must either accept as meaningful or refuse by name.
SPECIAL_NUMBERS = (
    "NaN", "inf", "-inf", "1e30", "-1e30", "1e15", "1e308", "-1", "-145", "0",
    "1e-9", "1000", "1e6", "65536", "-0.0", "2147483648",
)  # fmt: skip
GARBAGE_TEXT = ("", "abc", "1\\2", "\\\\\\", "1e", "--", "0x10", " ", "ÿ", "1,5")
KINDS = ("ct", "rtstruct", "rtdose", "rtplan")
ACTIONS = (
    "delete",
    "empty",
    "wrong_vr_text",
    "wrong_vr_bytes",
    "wrong_type",
    "special_number",
    "special_vector",
    "duplicate_item",
    "drop_item",
    "flip_bytes",
    "truncate",
    "geometry",
)
#: TG-43 grids larger than this (voxels) are built but not computed (time, not validity).
MAX_FUZZ_DOSE_VOXELS = 100_000
#: Geometry an absurd (or corrupt) file can declare, applied consistently (every CT slice).
GEOMETRY_SCALES = (1e-9, 1e-4, 1e3, 1e6, 1e15, 1e30, -1.0, 0.0)


@dataclass(frozen=True)
class FuzzCase:
    """The files of the phantom case the mutations start from."""

    folder: Path
    ct_files: tuple[Path, ...]
    rtstruct: Path
    rtplan: Path
    rtdose: Path


@dataclass
class FuzzCounts:
    """What a fuzz run found (JSON-ready through :meth:`to_json`)."""

    cases: int = 0
    not_encodable: int = 0
    accepted: int = 0
    refused: int = 0
    escaped: int = 0
    inputs_modified: int = 0
    by_kind: Counter = field(default_factory=Counter)
    by_action: Counter = field(default_factory=Counter)
    refusals_by_type: Counter = field(default_factory=Counter)
    escapes: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "cases": self.cases,
            "not_encodable": self.not_encodable,
            "accepted": self.accepted,
            "refused_with_brachycryo_error": self.refused,
            "raw_exceptions_escaped": self.escaped,
            "inputs_modified": self.inputs_modified,
            "by_kind": dict(sorted(self.by_kind.items())),
            "by_action": dict(sorted(self.by_action.items())),
            "refusals_by_type": dict(sorted(self.refusals_by_type.items())),
            "escapes": self.escapes,
        }


def build_case(folder: Path) -> FuzzCase:
    """A small phantom: 6 CT slices of 16 x 16, a GTV and a BODY, 4 seeds and their dose."""
    from brachycryo.dicom_io.common import StudyContext
    from brachycryo.dicom_io.ct_series import write_ct_series
    from brachycryo.dicom_io.rtdose import write_rtdose
    from brachycryo.dicom_io.rtplan import BrachySource, seed_implant, write_seed_rtplan
    from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
    from brachycryo.dose_kernels import dose_on_grid, load_seed_model

    folder.mkdir(parents=True, exist_ok=True)
    ctx = StudyContext(study_date="20260101")
    grid = Grid((6, 16, 16), (-30.0, -30.0, -12.5), (4.0, 4.0, 5.0))
    ijk = np.moveaxis(np.indices(grid.shape)[::-1], 0, -1).reshape(-1, 3).astype(float)
    xyz = grid.ijk_to_mm(ijk).reshape((*grid.shape, 3))
    r_mm = np.hypot(xyz[..., 0], xyz[..., 1])
    body = r_mm < 26.0
    gtv = (r_mm < 11.0) & (np.abs(xyz[..., 2]) < 8.0)
    hu = np.where(body, 40.0, -1000.0)
    ct = write_ct_series(folder / "CT", hu, grid, context=ctx)
    rois = [
        RoiSpec("BODY", mask=body, interpreted_type="EXTERNAL"),
        RoiSpec("GTV", mask=gtv, interpreted_type="GTV"),
    ]
    structures = write_rtstruct(folder / "RS.dcm", rois, ct)
    model = load_seed_model("6711")
    pos = np.array([[-4.0, -4.0, -2.5], [4.0, -4.0, 2.5], [-4.0, 4.0, 2.5], [4.0, 4.0, -2.5]])
    source = BrachySource(
        sk_u=0.5,
        reference_datetime=dt.datetime(2026, 1, 1, 9, 0, 0),
        model=model.name,
        half_life_days=model.half_life_h / 24.0,
        active_length_mm=model.active_length_mm,
    )
    plan = seed_implant(
        pos, [1, 1, 2, 2], source=source, prescription_dose_gy=145.0,
        referenced_structure_set_uid=structures.sop_instance_uid,
    )  # fmt: skip
    plan_uid = write_seed_rtplan(folder / "RP.dcm", plan, context=ct.context)
    dgrid = Grid((5, 8, 8), (-17.5, -17.5, -10.0), (5.0, 5.0, 5.0))
    dose = dose_on_grid(plan.to_seeds(), dgrid, model, backend="numpy")
    write_rtdose(folder / "RD.dcm", dose, dgrid, context=ct.context, referenced_plan_uid=plan_uid)
    ct_files = tuple(sorted((folder / "CT").glob("*.dcm")))
    return FuzzCase(folder, ct_files, folder / "RS.dcm", folder / "RP.dcm", folder / "RD.dcm")


# --------------------------------------------------------------------------- mutations


def _addresses(ds: Dataset, prefix: tuple = ()) -> list[tuple]:
    """Every element of ``ds`` (recursively, pixel data excluded) as (tag, item, tag, ...)."""
    out = []
    for elem in ds:
        here = (*prefix, elem.tag)
        if elem.tag != 0x7FE00010:
            out.append(here)
        if elem.VR == "SQ":
            for n, item in enumerate(elem.value):
                out.extend(_addresses(item, (*here, n)))
    return out


def _locate(ds: Dataset, address: tuple) -> tuple[Dataset, int]:
    parent = ds
    steps = list(address)
    while len(steps) > 1:
        tag, index = steps.pop(0), steps.pop(0)
        parent = parent[tag].value[index]
    return parent, steps[0]


def _vr(ds: Dataset, address: tuple) -> str:
    parent, tag = _locate(ds, address)
    return str(parent[tag].VR)


_NUMERIC_VRS = {"DS", "IS", "FL", "FD", "US", "SS", "UL", "SL"}
_TEXT_FOR = {"DS": "DS", "IS": "IS"}


def _special_value(vr: str, text: str, vm: int):
    """``text`` (a number) in the element's own VR, ``vm`` times."""
    if vr in ("DS", "IS"):
        value = text if vr == "DS" else str(int(float(text))) if _finite(text) else text
        return [value] * vm if vm > 1 else value
    number = float(text)
    if vr in ("US", "SS", "UL", "SL"):
        number = int(np.clip(np.nan_to_num(number), -(2**31), 2**32 - 1))
    return [number] * vm if vm > 1 else number


def _finite(text: str) -> bool:
    return bool(np.isfinite(float(text)))


def _mutate_element(ds: Dataset, rng: np.random.Generator, action: str) -> str:
    """Mutate one element of ``ds`` in place; return a description (or raise to skip)."""
    addresses = _addresses(ds)
    if action in ("special_number", "special_vector"):
        numeric = [a for a in addresses if _vr(ds, a) in _NUMERIC_VRS]
        addresses = numeric or addresses
    if action in ("duplicate_item", "drop_item"):
        addresses = [a for a in addresses if _vr(ds, a) == "SQ"]
    address = addresses[int(rng.integers(len(addresses)))]
    parent, tag = _locate(ds, address)
    elem = parent[tag]
    name = elem.keyword or str(elem.tag)
    if action == "delete":
        del parent[tag]
    elif action == "empty":
        parent[tag] = DataElement(tag, elem.VR, [] if elem.VR == "SQ" else None)
    elif action == "wrong_vr_text":
        text = GARBAGE_TEXT[int(rng.integers(len(GARBAGE_TEXT)))]
        parent[tag] = DataElement(tag, "LO", text)
        return f"{name} -> LO {text!r}"
    elif action == "wrong_vr_bytes":
        blob = rng.integers(0, 256, size=int(rng.integers(0, 24)), dtype=np.uint8).tobytes()
        parent[tag] = DataElement(tag, "UN", blob)
    elif action == "wrong_type":
        other = "SQ" if elem.VR != "SQ" else "DS"
        parent[tag] = DataElement(tag, other, [] if other == "SQ" else "1")
        return f"{name} -> {other}"
    elif action in ("special_number", "special_vector"):
        text = SPECIAL_NUMBERS[int(rng.integers(len(SPECIAL_NUMBERS)))]
        vm = max(1, len(elem.value) if elem.VM > 1 else 1)
        if action == "special_vector" and vm > 1:
            values = list(elem.value)
            values[int(rng.integers(vm))] = _special_value(elem.VR, text, 1)
            parent[tag] = DataElement(tag, elem.VR, values)
        else:
            parent[tag] = DataElement(tag, elem.VR, _special_value(elem.VR, text, vm))
        return f"{name} = {text}"
    elif action == "duplicate_item":
        items = elem.value
        if not items:
            raise ValueError("empty sequence")
        items.append(copy.deepcopy(items[int(rng.integers(len(items)))]))
    elif action == "drop_item":
        if not elem.value:
            raise ValueError("empty sequence")
        del elem.value[int(rng.integers(len(elem.value)))]
    return f"{name}: {action}"


def _scale(ds: Dataset, keyword: str, factor: float, index: int | None = None) -> None:
    """Multiply (one value of) a DS element by ``factor``, where the element exists."""
    if keyword not in ds:
        return
    values = [float(v) for v in (ds[keyword].value if ds[keyword].VM > 1 else [ds[keyword].value])]
    for n in range(len(values)) if index is None else [index % len(values)]:
        values[n] = values[n] * factor
    texts = [f"{v:.6g}" for v in values]
    ds[keyword].value = texts if len(texts) > 1 else texts[0]


def _absurd_geometry(ds: Dataset, kind: str, rng: np.random.Generator) -> str:
    """PixelSpacing, frame offsets, slice positions, contour or seed coordinates scaled."""
    factor = GEOMETRY_SCALES[int(rng.integers(len(GEOMETRY_SCALES)))]
    if kind == "ct":
        choice = ("PixelSpacing", "ImagePositionPatient")[int(rng.integers(2))]
        _scale(ds, choice, factor, None if choice == "PixelSpacing" else 2)
        return f"{choice} x {factor:g} (every slice)"
    if kind == "rtdose":
        choice = ("PixelSpacing", "GridFrameOffsetVector", "DoseGridScaling")[int(rng.integers(3))]
        _scale(ds, choice, factor)
        return f"{choice} x {factor:g}"
    if kind == "rtstruct":
        roi = ds.ROIContourSequence[int(rng.integers(len(ds.ROIContourSequence)))]
        contour = roi.ContourSequence[int(rng.integers(len(roi.ContourSequence)))]
        whole = bool(rng.integers(2))
        _scale(contour, "ContourData", factor, None if whole else int(rng.integers(10**6)))
        return f"ContourData {'all' if whole else 'one value'} x {factor:g}"
    setup = ds.ApplicationSetupSequence[0]
    channel = setup.ChannelSequence[int(rng.integers(len(setup.ChannelSequence)))]
    for cp in channel.BrachyControlPointSequence:
        _scale(cp, "ControlPoint3DPosition", factor, int(rng.integers(3)))
    return f"ControlPoint3DPosition x {factor:g}"


def mutate(data: bytes, rng: np.random.Generator, action: str, kind: str = "") -> tuple[bytes, str]:
    """``data`` (a DICOM file) mutated by ``action``; raises when it cannot be encoded."""
    if action == "flip_bytes":
        raw = bytearray(data)
        n = int(rng.integers(1, 7))
        for _ in range(n):
            raw[int(rng.integers(132, len(raw)))] = int(rng.integers(256))
        return bytes(raw), f"{n} byte(s) flipped"
    if action == "truncate":
        cut = int(rng.integers(0, len(data)))
        return data[:cut], f"truncated at byte {cut} of {len(data)}"
    saved = pydicom.config.replace_un_with_known_vr
    pydicom.config.replace_un_with_known_vr = False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pydicom warns about the invalid values we write
            ds = pydicom.dcmread(io.BytesIO(data))
            if action == "geometry":
                what = _absurd_geometry(ds, kind, rng)
            else:
                what = _mutate_element(ds, rng, action)
            buf = io.BytesIO()
            ds.save_as(buf)
            return buf.getvalue(), what
    finally:
        pydicom.config.replace_un_with_known_vr = saved


# --------------------------------------------------------------------------- pipelines


@dataclass
class _Valid:
    """The unmutated objects a pipeline combines with the mutated one."""

    ct_grid: Grid
    structures: object
    dose: object
    plan: object


def _rasterise_and_dvh(structures, dose, grid: Grid) -> None:
    from brachycryo.dicom_io.rasterize import roi_mask, roi_volume_cc
    from brachycryo.qa.evaluate import evaluate_plan, volume_rois

    rois, _ = volume_rois(structures, None)
    for roi in rois:
        roi_mask(roi, grid)
        roi_volume_cc(roi)
    evaluate_plan(dose.dose_gy, dose.grid, rois, prescription_gy=145.0, target=None)


def _tg43(plan, grid: Grid) -> None:
    from brachycryo.dose_kernels import dose_on_grid, load_seed_model

    if plan.n_seeds == 0:
        return
    model = load_seed_model("6711")
    dose_on_grid(plan.to_seeds(), grid, model, backend="numpy")


def _run_ct(path: Path, valid: _Valid) -> None:
    from brachycryo.dicom_io.ct_series import load_ct_series
    from brachycryo.dicom_io.rasterize import roi_mask
    from brachycryo.dicom_io.summary import summarise_folder

    ct = load_ct_series(path.parent)
    for roi in valid.structures.rois:  # type: ignore[attr-defined]
        roi_mask(roi, ct.grid)
    _tg43(valid.plan, ct.grid)
    summarise_folder(path.parent)


def _run_rtstruct(path: Path, valid: _Valid) -> None:
    from brachycryo.dicom_io.rtstruct import check_against_image, read_rtstruct

    structures = read_rtstruct(path)
    check_against_image(structures, frame_of_reference_uid=structures.frame_of_reference_uid)
    _rasterise_and_dvh(structures, valid.dose, valid.ct_grid)


def _run_rtdose(path: Path, valid: _Valid) -> None:
    from brachycryo.dicom_io.rtdose import read_rtdose
    from brachycryo.qa.evaluate import evaluate_plan, volume_rois

    dose = read_rtdose(path)
    rois, _ = volume_rois(valid.structures, None)  # type: ignore[arg-type]
    evaluate_plan(dose.dose_gy, dose.grid, rois, prescription_gy=145.0)
    _tg43(valid.plan, dose.grid)


def _run_rtplan(path: Path, valid: _Valid) -> None:
    from brachycryo.dicom_io.rtplan import read_rtplan

    plan = read_rtplan(path)
    if plan.n_seeds:  # ``dose --spacing-mm 2``: the seeds' box (refused when absurdly large)
        lo = plan.positions_mm.min(axis=0) - 10.0
        hi = plan.positions_mm.max(axis=0) + 10.0
        box = Grid.from_bounds(lo, hi, 2.0)
        if box.n_voxels <= MAX_FUZZ_DOSE_VOXELS:  # larger boxes are valid, only slow
            _tg43(plan, box)
    _tg43(plan, valid.dose.grid)  # type: ignore[attr-defined]


_PIPELINES: dict[str, Callable[[Path, _Valid], None]] = {
    "ct": _run_ct,
    "rtstruct": _run_rtstruct,
    "rtdose": _run_rtdose,
    "rtplan": _run_rtplan,
}


def _read_valid(case: FuzzCase) -> _Valid:
    from brachycryo.dicom_io.ct_series import load_ct_series
    from brachycryo.dicom_io.rtdose import read_rtdose
    from brachycryo.dicom_io.rtplan import read_rtplan
    from brachycryo.dicom_io.rtstruct import read_rtstruct

    return _Valid(
        load_ct_series(case.ct_files[0].parent).grid,
        read_rtstruct(case.rtstruct),
        read_rtdose(case.rtdose),
        read_rtplan(case.rtplan),
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_fuzz(
    n_cases: int,
    *,
    seed: int = 0,
    workdir: Path | None = None,
    progress: Callable[[int], None] | None = None,
) -> FuzzCounts:
    """``n_cases`` mutated inputs through the pipelines; the counts of what happened."""
    rng = np.random.default_rng(seed)
    counts = FuzzCounts()
    own = workdir is None
    root = Path(tempfile.mkdtemp(prefix="brachycryo-fuzz-")) if own else Path(workdir)
    try:
        case = build_case(root / "case")
        valid = _read_valid(case)
        originals = {
            "ct": [p.read_bytes() for p in case.ct_files],
            "rtstruct": case.rtstruct.read_bytes(),
            "rtdose": case.rtdose.read_bytes(),
            "rtplan": case.rtplan.read_bytes(),
        }
        work = root / "work"
        shutil.copytree(case.ct_files[0].parent, work / "CT")
        for n in range(n_cases):
            _one_case(n, rng, case, valid, originals, work, counts)
            if progress is not None:
                progress(n + 1)
    finally:
        if own:
            shutil.rmtree(root, ignore_errors=True)
    return counts


def _one_case(n, rng, case: FuzzCase, valid: _Valid, originals, work: Path, counts) -> None:
    kind = KINDS[int(rng.integers(len(KINDS)))]
    action = ACTIONS[int(rng.integers(len(ACTIONS)))]
    counts.cases += 1
    counts.by_kind[kind] += 1
    counts.by_action[action] += 1
    if kind == "ct":
        index = int(rng.integers(len(case.ct_files)))
        source = originals["ct"][index]
        path = work / "CT" / case.ct_files[index].name
    else:
        source = originals[kind]
        path = work / f"{kind}.dcm"
    state = rng.bit_generator.state
    try:
        data, what = mutate(source, rng, action, kind)
        if kind == "ct" and action == "geometry":  # the same geometry on every slice
            for other, raw in zip(case.ct_files, originals["ct"], strict=True):
                rng.bit_generator.state = state
                (work / "CT" / other.name).write_bytes(mutate(raw, rng, action, kind)[0])
    except Exception:  # pydicom cannot build or encode this mutation: nothing to test
        counts.not_encodable += 1
        return
    path.write_bytes(data)
    before = _sha256(path)
    outcome = _drive(kind, path, valid)
    if _sha256(path) != before:
        counts.inputs_modified += 1
    if outcome is None:
        counts.accepted += 1
    elif isinstance(outcome, BrachyCryoError):
        counts.refused += 1
        counts.refusals_by_type[type(outcome).__name__] += 1
    else:
        counts.escaped += 1
        counts.escapes.append(
            {
                "case": n,
                "kind": kind,
                "action": action,
                "mutation": what,
                "exception": f"{type(outcome).__name__}: {str(outcome)[:300]}",
                "where": _where(outcome),
            }
        )
    if kind == "ct":
        for other, raw in zip(case.ct_files, originals["ct"], strict=True):
            (work / "CT" / other.name).write_bytes(raw)


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    inside = [f for f in frames if "brachycryo" in f.filename or "dicom_io" in f.filename]
    f = (inside or frames)[-1] if (inside or frames) else None
    return "" if f is None else f"{Path(f.filename).name}:{f.lineno} {f.name}"


def _drive(kind: str, path: Path, valid: _Valid) -> BaseException | None:
    """Run the pipeline; None when it went through, else the exception it ended with."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            _PIPELINES[kind](path, valid)
        except (Exception, MemoryError) as exc:  # the point of the fuzzer: catch everything
            return exc
    return None


def main(argv: list[str] | None = None) -> int:
    from benchmarks.common import machine_info, write_results

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cases", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=20260101)
    ap.add_argument(
        "--out", default="fuzz_readers", help="results name (benchmarks/results/NAME.json)"
    )
    args = ap.parse_args(argv)
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    counts = run_fuzz(args.cases, seed=args.seed)
    elapsed = time.perf_counter() - t0
    result = {
        "benchmark": "fuzz_readers",
        "seed": args.seed,
        "memory_budget_env": os.environ.get("BRACHYCRYO_MEMORY_BUDGET_GIB", "(default)"),
        **counts.to_json(),
        "elapsed_s": round(elapsed, 1),
        "machine": machine_info(),
    }
    write_results(args.out, result)
    print({k: v for k, v in result.items() if k not in ("escapes", "machine")})
    for e in counts.escapes[:40]:
        print(e)
    return 1 if counts.escaped or counts.inputs_modified else 0


if __name__ == "__main__":
    sys.exit(main())
