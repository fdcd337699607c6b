"""RT Dose writer and reader.

dciodvfy (dicom3tools 2022) aborts with an assertion on 32-bit pixel data, so our default
32-bit files are checked by reading them back with pydicom (here) and with dicompyler-core
(``test_dicompyler_reads_our_dose``).  The header is the same for 16-bit files, which
dciodvfy can read: ``test_dciodvfy_on_16_bit_variant`` validates that.
"""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.data import get_testdata_file

from brachycryo.core.errors import (
    BrachyCryoError,
    DataModelError,
    DicomInputError,
    GeometryError,
    OutputExistsError,
)
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.common import DicomConformanceWarning, StudyContext, new_uid
from brachycryo.dicom_io.orientation import PATIENT_POSITION_IOP, direction_from_iop
from brachycryo.dicom_io.rtdose import choose_dose_grid_scaling, read_rtdose, write_rtdose

TOP32 = 2**32 - 1


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _grid(direction=None, shape=(5, 6, 7)) -> Grid:
    d = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    return Grid(shape, (-12.5, 40.25, -7.75), (2.0, 2.5, 3.0), tuple(d.reshape(-1)))


def _dose(grid: Grid, seed: int = 0, scale: float = 70.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.random(grid.shape) * scale


@pytest.fixture
def ctx() -> StudyContext:
    return StudyContext()


def _write(tmp_path, dose, grid, ctx, name="dose.dcm", **kw) -> Path:
    kw.setdefault("referenced_plan_uid", new_uid())
    return write_rtdose(tmp_path / name, dose, grid, context=ctx, **kw)


def _same_voxels(written: Grid, wdose: np.ndarray, read) -> None:
    """Every written voxel centre is a voxel centre of the read grid with the same dose."""
    centres = written.voxel_centres_mm().reshape(-1, 3)
    ijk = read.grid.mm_to_ijk(centres)
    idx = np.rint(ijk).astype(int)
    assert np.allclose(ijk, idx, atol=1e-6)
    got = read.values[idx[:, 2], idx[:, 1], idx[:, 0]]
    step = read.dose_grid_scaling
    assert np.max(np.abs(got - wdose.reshape(-1))) <= step / 2 * (1 + 1e-9)


# ------------------------------------------------------------------ round trips
def test_round_trip_exact_to_quantisation_step(tmp_path, ctx):
    grid = _grid()
    dose = _dose(grid)
    plan_uid = new_uid()
    path = _write(tmp_path, dose, grid, ctx, referenced_plan_uid=plan_uid)
    back = read_rtdose(path)
    assert back.grid.same_as(grid, tol_mm=1e-9)
    assert back.values.dtype == np.float64
    err = np.abs(back.dose_gy - dose)
    # quantisation step = max dose / (2^32 - 1): about 1.6e-8 Gy here
    assert back.dose_grid_scaling <= dose.max() / TOP32 * (1 + 1e-9)
    assert err.max() <= back.dose_grid_scaling / 2 * (1 + 1e-9)
    assert back.referenced_plan_uid == plan_uid
    assert back.frame_of_reference_uid == ctx.frame_of_reference_uid
    assert back.study_instance_uid == ctx.study_instance_uid
    assert (back.units, back.source_units, back.dose_type, back.summation_type) == (
        "GY",
        "GY",
        "PHYSICAL",
        "PLAN",
    )
    assert back.warnings == ()
    ds = pydicom.dcmread(path)
    assert ds.BitsAllocated == 32 and ds.PixelRepresentation == 0
    assert ds.ReferencedRTPlanSequence[0].ReferencedSOPClassUID == "1.2.840.10008.5.1.4.1.1.481.5"
    assert [float(v) for v in ds.GridFrameOffsetVector] == [0.0, 3.0, 6.0, 9.0, 12.0]
    assert ds.SOPInstanceUID != ds.SeriesInstanceUID != ctx.study_instance_uid


def test_values_are_rounded_not_truncated(tmp_path, ctx):
    grid = _grid(shape=(2, 3, 50))
    # 0.7 and 0.3 of a quantisation step above whole steps: truncation would read them low
    base = np.linspace(1.0, 60.0, grid.n_voxels).reshape(grid.shape)
    scaling = choose_dose_grid_scaling(float(base.max()) * 1.001)
    dose = (np.floor(base / scaling) + 0.7) * scaling
    dose[0] = (np.floor(base[0] / scaling) + 0.3) * scaling
    dose.flat[-1] = base.max() * 1.001
    path = _write(tmp_path, dose, grid, ctx)
    ds = pydicom.dcmread(path)
    stored = ds.pixel_array.astype(np.float64)
    s = float(ds.DoseGridScaling)
    assert np.array_equal(stored, np.rint(dose / s))
    assert np.count_nonzero(stored != np.floor(dose / s)) > grid.n_voxels // 3
    back = read_rtdose(path).dose_gy
    assert np.max(np.abs(back - dose)) <= s / 2 * (1 + 1e-9)
    # truncation would have a mean error near -0.5 step; rounding's is within (-0.5, 0.5)
    assert abs(np.mean(back - dose)) < 0.5 * s


def test_scaling_uses_the_full_32_bit_range(tmp_path, ctx):
    grid = _grid()
    for max_gy in (1e-3, 0.73, 145.0, 1.7e4):
        s = choose_dose_grid_scaling(max_gy)
        assert np.rint(max_gy / s) <= TOP32
        assert np.rint(max_gy / s) >= TOP32 * (1 - 1e-8)
        assert len(pydicom.valuerep.format_number_as_ds(s)) <= 16
    dose = _dose(grid, scale=145.0)
    ds = pydicom.dcmread(_write(tmp_path, dose, grid, ctx))
    assert int(ds.pixel_array.max()) >= TOP32 * (1 - 1e-8)
    assert len(str(ds["DoseGridScaling"].value)) <= 16


def test_zero_dose(tmp_path, ctx):
    grid = _grid()
    back = read_rtdose(_write(tmp_path, np.zeros(grid.shape), grid, ctx))
    assert np.all(back.dose_gy == 0.0)


def test_float32_input_and_single_frame(tmp_path, ctx):
    grid = _grid(shape=(1, 4, 5))
    dose = _dose(grid).astype(np.float32)
    back = read_rtdose(_write(tmp_path, dose, grid, ctx))
    assert back.grid.shape == (1, 4, 5)
    assert back.grid.spacing_mm[2] == 3.0
    assert np.max(np.abs(back.dose_gy - dose.astype(np.float64))) <= back.dose_grid_scaling


def _rotation(axis, angle_deg):
    axis = np.asarray(axis, float) / np.linalg.norm(axis)
    a = np.radians(angle_deg)
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    return np.eye(3) + np.sin(a) * k + (1 - np.cos(a)) * k @ k


ORIENTATIONS = {pos: direction_from_iop(iop) for pos, iop in PATIENT_POSITION_IOP.items()}
ORIENTATIONS["oblique"] = _rotation([1, 2, 3], 27.0)
ORIENTATIONS["oblique_sagittal"] = _rotation([0, 1, 0], 90.0) @ _rotation([1, 0, 0], 15.0)
ORIENTATIONS["left_handed_k"] = np.diag([1.0, 1.0, -1.0])
ORIENTATIONS["left_handed_oblique"] = _rotation([1, -1, 0.5], 40.0) @ np.diag([1.0, 1.0, -1.0])


@pytest.mark.parametrize("name", sorted(ORIENTATIONS))
def test_orientations_round_trip(tmp_path, ctx, name):
    grid = _grid(ORIENTATIONS[name])
    dose = _dose(grid, seed=3)
    back = read_rtdose(_write(tmp_path, dose, grid, ctx))
    normal = np.cross(back.grid.direction_matrix[:, 0], back.grid.direction_matrix[:, 1])
    assert np.allclose(back.grid.direction_matrix[:, 2], normal)  # read grids are right-handed
    if np.linalg.det(grid.direction_matrix) > 0:
        assert back.grid.same_as(grid, tol_mm=1e-9)
    _same_voxels(grid, dose, back)


def _rewrite(src: Path, dst: Path, edit) -> Path:
    ds = pydicom.dcmread(src)
    edit(ds)
    ds.save_as(dst, enforce_file_format=True)
    return dst


@pytest.mark.parametrize("position", ["HFS", "FFS", "HFP", "FFP"])
def test_absolute_grid_frame_offsets(tmp_path, ctx, position):
    grid = _grid(ORIENTATIONS[position])
    dose = _dose(grid)
    path = _write(tmp_path, dose, grid, ctx)
    n_z = grid.direction_matrix[2, 2]  # +1 head first, -1 feet first

    def to_absolute(ds):
        # option b of C.8.8.3.2: the frames' patient z coordinates
        z0 = float(ds.ImagePositionPatient[2])
        ds.GridFrameOffsetVector = [z0 + n_z * float(v) for v in ds.GridFrameOffsetVector]

    absolute = _rewrite(path, tmp_path / "abs.dcm", to_absolute)
    with pytest.warns(DicomConformanceWarning, match="absolute"):
        back = read_rtdose(absolute)
    assert back.grid.same_as(grid, tol_mm=1e-9)
    assert np.array_equal(back.values, read_rtdose(path).values)
    assert any("absolute" in w for w in back.warnings)

    def bad_absolute(ds):
        ds.GridFrameOffsetVector = [5.0 + float(v) for v in ds.GridFrameOffsetVector]

    bad = _rewrite(path, tmp_path / "bad.dcm", bad_absolute)
    with pytest.raises(DicomInputError, match="GridFrameOffsetVector") as exc:
        read_rtdose(bad)
    assert str(bad) in str(exc.value)


def test_absolute_offsets_on_sagittal_frames_rejected(tmp_path, ctx):
    grid = _grid(ORIENTATIONS["oblique_sagittal"])  # frames not stacked along z
    path = _write(tmp_path, _dose(grid), grid, ctx)

    def to_absolute(ds):
        ds.GridFrameOffsetVector = [7.0 + float(v) for v in ds.GridFrameOffsetVector]

    bad = _rewrite(path, tmp_path / "bad.dcm", to_absolute)
    with pytest.raises(DicomInputError, match=r"GridFrameOffsetVector.*transverse"):
        read_rtdose(bad)


def test_decreasing_offsets_are_flipped(tmp_path, ctx):
    grid = _grid()
    dose = _dose(grid)
    path = _write(tmp_path, dose, grid, ctx)

    def reverse(ds):
        frames = ds.pixel_array[::-1].copy()
        last = grid.ijk_to_mm([0, 0, grid.shape[0] - 1])
        ds.ImagePositionPatient = [float(v) for v in last]
        ds.GridFrameOffsetVector = [-3.0 * k for k in range(grid.shape[0])]
        ds.PixelData = frames.tobytes()

    flipped = _rewrite(path, tmp_path / "rev.dcm", reverse)
    with pytest.warns(DicomConformanceWarning, match="decreases"):
        back = read_rtdose(flipped)
    assert back.grid.same_as(grid, tol_mm=1e-9)
    assert np.array_equal(back.values, read_rtdose(path).values)


def test_non_uniform_offsets_rejected(tmp_path, ctx):
    grid = _grid()
    path = _write(tmp_path, _dose(grid), grid, ctx)
    bad = _rewrite(
        path,
        tmp_path / "gap.dcm",
        lambda ds: setattr(ds, "GridFrameOffsetVector", [0, 3, 6, 12, 15]),
    )
    with pytest.raises(DicomInputError, match=r"GridFrameOffsetVector.*uniform"):
        read_rtdose(bad)


def test_16_bit_round_trip(tmp_path, ctx):
    grid = _grid()
    dose = _dose(grid)
    back = read_rtdose(_write(tmp_path, dose, grid, ctx, bits_allocated=16))
    assert pydicom.dcmread(back.path).BitsAllocated == 16
    assert back.dose_grid_scaling <= dose.max() / 65535 * (1 + 1e-9)
    assert np.max(np.abs(back.dose_gy - dose)) <= back.dose_grid_scaling / 2 * (1 + 1e-9)


@pytest.mark.parametrize(
    ("name", "kw"),
    [
        ("axial", {}),
        ("oblique", {"direction": ORIENTATIONS["oblique"]}),
        ("single_frame", {"shape": (1, 6, 7)}),
        ("relative", {"dose_units": "RELATIVE"}),
        ("fraction", {"summation": "FRACTION"}),
        ("brachy", {"summation": "BRACHY", "dose_comment": "TG-43 seeds"}),
    ],
)
def test_dciodvfy_on_16_bit_variant(tmp_path, ctx, dciodvfy, name, kw):
    """Header conformance (the 32-bit file has the same header but crashes dciodvfy).

    Not covered: DoseType ERROR (signed pixels), which this dciodvfy's table rejects
    although PS3.3 C.8.8.3.4.6 requires PixelRepresentation 0001H for it.
    """
    grid = _grid(kw.pop("direction", None), shape=kw.pop("shape", (5, 6, 7)))
    path = _write(tmp_path, _dose(grid), grid, ctx, name=f"{name}.dcm", bits_allocated=16, **kw)
    errors, _warnings = dciodvfy(path)
    assert errors == [], errors
    back = read_rtdose(path)
    assert back.grid.same_as(grid) and back.summation_type == kw.get("summation", "PLAN")


def test_error_dose_is_signed(tmp_path, ctx):
    grid = _grid()
    dose = _dose(grid) - 35.0
    back = read_rtdose(_write(tmp_path, dose, grid, ctx, dose_type="ERROR"))
    assert pydicom.dcmread(back.path).PixelRepresentation == 1
    assert np.max(np.abs(back.dose_gy - dose)) <= back.dose_grid_scaling / 2 * (1 + 1e-9)


def test_cgy_files_are_converted_to_gy(tmp_path, ctx):
    grid = _grid()
    dose = _dose(grid)
    path = _write(tmp_path, dose, grid, ctx)

    def to_cgy(ds):
        ds.DoseUnits = "CGY"
        ds.DoseGridScaling = pydicom.valuerep.format_number_as_ds(float(ds.DoseGridScaling) * 100)

    with pytest.warns(DicomConformanceWarning, match="CGY"):
        back = read_rtdose(_rewrite(path, tmp_path / "cgy.dcm", to_cgy))
    assert back.units == "GY" and back.source_units == "CGY"
    assert np.allclose(back.dose_gy, dose, rtol=1e-9, atol=back.dose_grid_scaling)


def test_relative_dose_is_flagged(tmp_path, ctx):
    grid = _grid()
    back = read_rtdose(_write(tmp_path, _dose(grid, scale=1.0), grid, ctx, dose_units="RELATIVE"))
    assert back.is_relative and back.units == back.dose_units == "RELATIVE"
    with pytest.raises(DicomInputError, match="DoseUnits"):
        back.dose_gy  # noqa: B018


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_pydicom_sample_rtdose():
    """pydicom's rtdose.dcm: 15 frames of 10 x 10, 32-bit, RELATIVE, scaling 1e-6."""
    path = get_testdata_file("rtdose.dcm")
    before = _sha(path)
    back = read_rtdose(path)
    ds = pydicom.dcmread(path)
    assert back.is_relative
    assert back.grid.shape == (15, 10, 10)
    assert back.grid.spacing_mm[2] == 5.0
    assert np.allclose(back.grid.origin_mm, [float(v) for v in ds.ImagePositionPatient])
    assert np.allclose(back.values, ds.pixel_array * 1e-6)
    assert _sha(path) == before


# ------------------------------------------------------------------ writer errors
@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda d: d.__setitem__((0, 1, 1), np.nan), DataModelError, "NaN"),
        (lambda d: d.__setitem__((2, 0, 3), np.inf), DataModelError, "NaN or inf"),
        (lambda d: d.__setitem__((1, 1, 1), -0.1), DataModelError, "negative"),
    ],
)
def test_bad_dose_rejected_nothing_written(tmp_path, ctx, edit, error, match):
    grid = _grid()
    dose = _dose(grid)
    edit(dose)
    with pytest.raises(error, match=match):
        write_rtdose(tmp_path / "x.dcm", dose, grid, context=ctx, referenced_plan_uid=new_uid())
    assert list(tmp_path.iterdir()) == []


def test_wrong_shape_and_options_rejected(tmp_path, ctx):
    grid = _grid()
    with pytest.raises(GeometryError, match="shape"):
        write_rtdose(tmp_path / "x.dcm", np.zeros((2, 2, 2)), grid, context=ctx)
    for kw in (
        {"dose_type": "MAGIC"},
        {"summation": "X"},
        {"summation": "RECORD"},  # needs a treatment record we do not have
        {"summation": "MULTI_PLAN"},
        {"dose_units": "RAD"},
        {"bits_allocated": 8},
    ):
        with pytest.raises(DataModelError):
            write_rtdose(tmp_path / "x.dcm", np.zeros(grid.shape), grid, context=ctx, **kw)
    assert list(tmp_path.iterdir()) == []


def test_plan_summation_without_plan_warns(tmp_path, ctx):
    grid = _grid()
    with pytest.warns(DicomConformanceWarning, match="Referenced RT Plan"):
        write_rtdose(tmp_path / "x.dcm", np.zeros(grid.shape), grid, context=ctx)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_rtdose(
            tmp_path / "y.dcm", np.zeros(grid.shape), grid, context=ctx, referenced_plan_uid="1.2"
        )


def test_never_overwrites_unless_asked(tmp_path, ctx):
    grid = _grid()
    path = _write(tmp_path, _dose(grid, seed=1), grid, ctx)
    before = _sha(path)
    with pytest.raises(OutputExistsError):
        _write(tmp_path, _dose(grid, seed=2), grid, ctx)
    assert _sha(path) == before
    _write(tmp_path, _dose(grid, seed=2), grid, ctx, overwrite=True)
    assert _sha(path) != before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dose.dcm"]  # no temp files left


# ------------------------------------------------------------------ reader errors
@pytest.fixture
def dose_file(tmp_path, ctx) -> Path:
    grid = _grid()
    return _write(tmp_path, _dose(grid), grid, ctx)


def test_truncated_file(tmp_path, dose_file):
    data = dose_file.read_bytes()
    for cut in (100, len(data) // 2, len(data) - 7):
        bad = tmp_path / f"cut{cut}.dcm"
        bad.write_bytes(data[:cut])
        with pytest.raises(DicomInputError) as exc:
            read_rtdose(bad)
        assert str(bad) in str(exc.value)


def test_wrong_modality(tmp_path):
    with pytest.raises(DicomInputError, match="Modality"):
        read_rtdose(get_testdata_file("rtplan.dcm"))
    with pytest.raises(DicomInputError, match="no such file"):
        read_rtdose(tmp_path / "missing.dcm")


@pytest.mark.parametrize(
    ("tag", "edit"),
    [
        ("ImagePositionPatient", lambda ds: delattr(ds, "ImagePositionPatient")),
        ("ImageOrientationPatient", lambda ds: delattr(ds, "ImageOrientationPatient")),
        (
            "ImageOrientationPatient",
            lambda ds: setattr(ds, "ImageOrientationPatient", [1, 0, 0, 1, 0, 0]),
        ),
        ("PixelSpacing", lambda ds: delattr(ds, "PixelSpacing")),
        ("PixelSpacing", lambda ds: setattr(ds, "PixelSpacing", [0, 2])),
        ("GridFrameOffsetVector", lambda ds: delattr(ds, "GridFrameOffsetVector")),
        ("GridFrameOffsetVector", lambda ds: setattr(ds, "GridFrameOffsetVector", [0, 3, 6])),
        ("DoseUnits", lambda ds: delattr(ds, "DoseUnits")),
        ("DoseUnits", lambda ds: setattr(ds, "DoseUnits", "RAD")),
        ("DoseGridScaling", lambda ds: setattr(ds, "DoseGridScaling", "-1")),
        ("PixelData", lambda ds: delattr(ds, "PixelData")),
        ("PixelData", lambda ds: setattr(ds, "PixelData", ds.PixelData[:-8])),
        ("BitsAllocated", lambda ds: setattr(ds, "BitsAllocated", 8)),
        ("Rows", lambda ds: delattr(ds, "Rows")),
    ],
)
def test_missing_or_bad_tags_are_named(tmp_path, dose_file, tag, edit):
    bad = _rewrite(dose_file, tmp_path / "bad.dcm", edit)
    before = _sha(bad)
    with pytest.raises(DicomInputError) as exc:
        read_rtdose(bad)
    assert str(bad) in str(exc.value)
    assert tag in str(exc.value)
    assert _sha(bad) == before


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_nan_position_is_named(tmp_path, dose_file):
    def nan_ipp(ds):
        ds["ImagePositionPatient"].value = ["NaN", "0", "0"]

    bad = _rewrite(dose_file, tmp_path / "nan.dcm", nan_ipp)
    with pytest.raises(DicomInputError, match="ImagePositionPatient"):
        read_rtdose(bad)


def test_reader_never_modifies_input(dose_file):
    before = _sha(dose_file)
    read_rtdose(dose_file)
    assert _sha(dose_file) == before


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_only_project_errors_escape(tmp_path, dose_file):
    """A handful of fixed corruptions (the hypothesis test mutates at random)."""
    data = bytearray(dose_file.read_bytes())
    rng = np.random.default_rng(7)
    for trial in range(20):
        mutated = bytearray(data)
        for pos in rng.integers(132, len(data), size=8):
            mutated[pos] = int(rng.integers(0, 256))
        path = tmp_path / f"m{trial}.dcm"
        path.write_bytes(bytes(mutated))
        try:
            read_rtdose(path)
        except BrachyCryoError:
            pass


# ------------------------------------------------------------------ peer
_PEER_SCRIPT = r"""
import json, sys
import numpy as np
from dicompylercore import dicomparser
dp = dicomparser.DicomParser(sys.argv[1])
data = dp.GetDoseData()
ipp = [float(v) for v in dp.ds.ImagePositionPatient]
gfov = [float(v) for v in dp.ds.GridFrameOffsetVector]
scale = float(data["dosegridscaling"])
planes = []
for off in gfov:
    planes.append((np.asarray(dp.GetDoseGrid(ipp[2] + off), dtype=float) * scale).tolist())
col_lut, row_lut = data["lut"]
print(json.dumps({"planes": planes, "x": list(map(float, col_lut)), "y": list(map(float, row_lut)),
                  "dosemax_gy": data["dosemax"] * scale, "units": data["doseunits"],
                  "plan": dp.GetReferencedRTPlan()}))
"""


@pytest.mark.peer
def test_dicompyler_reads_our_dose(tmp_path, ctx, dicompyler_peer):
    grid = _grid()
    dose = _dose(grid)
    plan_uid = new_uid()
    path = _write(tmp_path, dose, grid, ctx, referenced_plan_uid=plan_uid)
    out = dicompyler_peer(_PEER_SCRIPT, path)
    step = read_rtdose(path).dose_grid_scaling
    planes = np.asarray(out["planes"])
    assert planes.shape == grid.shape
    assert np.max(np.abs(planes - dose)) <= step / 2 * (1 + 1e-6)
    assert abs(out["dosemax_gy"] - dose.max()) <= step
    centres = grid.voxel_centres_mm()
    assert np.allclose(out["x"], centres[0, 0, :, 0])
    assert np.allclose(out["y"], centres[0, :, 0, 1])
    assert out["units"] == "GY"
    assert out["plan"] == plan_uid


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
@pytest.mark.parametrize("name", ["rtdose_expb.dcm", "rtdose_rle.dcm"])
def test_pydicom_sample_encodings_read_alike(name):
    """Explicit big endian and RLE-compressed copies of rtdose.dcm give the same dose."""
    ref = read_rtdose(get_testdata_file("rtdose.dcm"))
    back = read_rtdose(get_testdata_file(name))
    assert back.grid.same_as(ref.grid)
    assert np.array_equal(back.values, ref.values)


@pytest.mark.filterwarnings("ignore:Invalid value for VR")
def test_pydicom_sample_with_inconsistent_frames():
    """rtdose_1frame.dcm keeps 15 GridFrameOffsetVector values for its single frame."""
    with pytest.raises(DicomInputError, match=r"GridFrameOffsetVector.*15 values for 1 frames"):
        read_rtdose(get_testdata_file("rtdose_1frame.dcm"))


def test_format_ds_never_exceeds_16_characters():
    """pydicom's formatter gives 17 characters for -9.999999999999996 ("-10.0000000000000")."""
    from brachycryo.dicom_io.common import format_ds

    rng = np.random.default_rng(5)
    values = [-9.999999999999996, 99999.99999999999, -0.0, 1e-300, 1.79769313e308]
    values += list(rng.normal(size=300) * 10.0 ** rng.integers(-20, 20, size=300))
    for v in values:
        text = format_ds(v)
        assert len(text) <= 16
        assert abs(float(text) - v) <= 1e-9 * abs(v)
    assert np.isfinite(float(format_ds(1.7976931348623157e308)))  # never rounded up to inf
    for bad in (float("nan"), float("inf")):
        with pytest.raises(ValueError):
            format_ds(bad)
