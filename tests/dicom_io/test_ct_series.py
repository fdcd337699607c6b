"""CT series reading and writing: geometry, HU, grouping and every broken-series error."""

import shutil

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000Lossless, RLELossless

from brachycryo.core.errors import BrachyCryoError, DataModelError, DicomInputError, SeriesError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.common import StudyContext, read_dataset
from brachycryo.dicom_io.ct_series import load_ct_series, write_ct_series
from brachycryo.dicom_io.orientation import PATIENT_POSITION_IOP, direction_from_iop


def _hu(shape, seed=0):
    return np.random.default_rng(seed).integers(-1000, 2000, size=shape).astype(np.float32)


def _write(tmp_path, grid=None, name="ct", **kw):
    grid = grid or Grid((5, 6, 7), (-3.0, -4.0, 10.0), (0.8, 0.9, 2.0))
    hu = _hu(grid.shape)
    ct = write_ct_series(tmp_path / name, hu, grid, context=kw.pop("context", StudyContext()), **kw)
    return ct, hu, grid


@pytest.mark.parametrize("position", sorted(PATIENT_POSITION_IOP))
def test_round_trip_every_patient_position(tmp_path, position):
    d = direction_from_iop(PATIENT_POSITION_IOP[position])
    grid = Grid((4, 5, 6), (12.0, -30.0, 100.0), (0.7, 0.9, 1.5), d.reshape(-1))
    ct, hu, _ = _write(tmp_path, grid, context=StudyContext(patient_position=position))
    back = load_ct_series(tmp_path / "ct")
    assert back.grid.same_as(grid, tol_mm=1e-4)
    np.testing.assert_array_equal(back.hu, hu)
    assert back.context.patient_position == position
    assert back.sop_instance_uids == ct.sop_instance_uids


def test_oblique_and_left_handed_grids(tmp_path):
    d = direction_from_iop([0.9541666, -0.2080757, 0.2151061, 0.2785886, 0.880128, -0.3843997])
    grid = Grid((3, 4, 5), (123.0, -432.0, 30.0), (2.5, 3.5, 4.0), d.reshape(-1))
    _, hu, _ = _write(tmp_path, grid)
    back = load_ct_series(tmp_path / "ct")
    assert back.grid.same_as(grid, tol_mm=1e-4)
    np.testing.assert_array_equal(back.hu, hu)
    # a grid whose k axis runs against row x column is written flipped: same voxels in space
    flipped = d.copy()
    flipped[:, 2] *= -1
    grid2 = Grid((3, 4, 5), (0.0, 0.0, 0.0), (1.0, 1.0, 2.0), flipped.reshape(-1))
    hu2 = _hu(grid2.shape, 3)
    write_ct_series(tmp_path / "ct2", hu2, grid2, context=StudyContext())
    back2 = load_ct_series(tmp_path / "ct2")
    np.testing.assert_allclose(
        back2.grid.voxel_centres_mm()[::-1], grid2.voxel_centres_mm(), atol=1e-4
    )
    np.testing.assert_array_equal(back2.hu[::-1], hu2)


def test_files_found_recursively_sorted_by_position_non_dicom_skipped(tmp_path):
    ct, hu, grid = _write(tmp_path)
    mixed = tmp_path / "mixed"
    for n, p in enumerate(reversed(ct.paths)):  # reversed order, nested folders
        dest = mixed / f"sub{n % 2}" / f"x{n}.dcm"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(p, dest)
    (mixed / "notes.txt").write_text("not dicom")
    back = load_ct_series(mixed)
    np.testing.assert_array_equal(back.hu, hu)
    assert any("notes.txt" in n for n in back.notes)


def test_rescale_slope_and_intercept_applied(tmp_path):
    ct, hu, _ = _write(tmp_path)
    ds = pydicom.dcmread(ct.paths[0])
    ds.RescaleSlope = "2"
    ds.RescaleIntercept = "-2048"
    ds.save_as(ct.paths[0])
    back = load_ct_series(tmp_path / "ct")
    np.testing.assert_array_equal(back.hu[0], (hu[0] + 1024) * 2 - 2048)


def test_missing_slice_is_named(tmp_path):
    ct, _, _ = _write(tmp_path)
    ct.paths[2].unlink()
    with pytest.raises(SeriesError, match="missing slice") as e:
        load_ct_series(tmp_path / "ct")
    assert "CT.0002.dcm" in str(e.value) and "CT.0004.dcm" in str(e.value)


def test_duplicated_slice_is_named(tmp_path):
    ct, _, _ = _write(tmp_path)
    ds = pydicom.dcmread(ct.paths[1])
    ds.SOPInstanceUID = pydicom.uid.generate_uid()
    ds.save_as(tmp_path / "ct" / "copy.dcm")
    with pytest.raises(SeriesError, match="duplicated slice"):
        load_ct_series(tmp_path / "ct")


def test_mixed_frame_of_reference(tmp_path):
    ct, _, _ = _write(tmp_path)
    ds = pydicom.dcmread(ct.paths[3])
    ds.FrameOfReferenceUID = pydicom.uid.generate_uid()
    ds.save_as(ct.paths[3])
    with pytest.raises(SeriesError, match="mixed Frames of Reference") as e:
        load_ct_series(tmp_path / "ct")
    assert "CT.0004.dcm" in str(e.value)


def test_inconsistent_orientation(tmp_path):
    ct, _, _ = _write(tmp_path)
    ds = pydicom.dcmread(ct.paths[1])
    ds.ImageOrientationPatient = [0, 1, 0, 1, 0, 0]
    ds.save_as(ct.paths[1])
    with pytest.raises(SeriesError, match="inconsistent orientation"):
        load_ct_series(tmp_path / "ct")


def test_gantry_tilt(tmp_path):
    ct, _, _ = _write(tmp_path)
    ds = pydicom.dcmread(ct.paths[0])
    ds.GantryDetectorTilt = "15"
    ds.save_as(ct.paths[0])
    with pytest.raises(SeriesError, match="gantry tilt"):
        load_ct_series(tmp_path / "ct")
    # tilt visible only in the positions (each slice shifted in y)
    ct, _, _ = _write(tmp_path, name="ct2")
    for k, p in enumerate(ct.paths):
        ds = pydicom.dcmread(p)
        ipp = [float(v) for v in ds.ImagePositionPatient]
        ds.ImagePositionPatient = [ipp[0], ipp[1] + 0.5 * k, ipp[2]]
        ds.save_as(p)
    with pytest.raises(SeriesError, match="gantry tilt or sheared"):
        load_ct_series(tmp_path / "ct2")


def test_several_series_listed_and_one_chosen(tmp_path):
    ct_a, hu_a, _ = _write(tmp_path, name="both/a")
    ct_b, _, _ = _write(tmp_path, name="both/b")
    with pytest.raises(SeriesError, match="2 CT series") as e:
        load_ct_series(tmp_path / "both")
    assert ct_a.series_instance_uid in str(e.value) and ct_b.series_instance_uid in str(e.value)
    picked = load_ct_series(tmp_path / "both", series_uid=ct_a.series_instance_uid)
    np.testing.assert_array_equal(picked.hu, hu_a)
    with pytest.raises(SeriesError, match="no CT series with SeriesInstanceUID"):
        load_ct_series(tmp_path / "both", series_uid="1.2.3")


def test_no_ct_in_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeriesError, match="no CT images"):
        load_ct_series(tmp_path / "empty")


def test_rle_compressed_series_decodes(tmp_path):
    ct, hu, _ = _write(tmp_path)
    for p in ct.paths:
        ds = pydicom.dcmread(p)
        ds.compress(RLELossless)
        ds.save_as(p)
    back = load_ct_series(tmp_path / "ct")
    np.testing.assert_array_equal(back.hu, hu)


def test_undecodable_compression_names_transfer_syntax(tmp_path):
    ct, _, _ = _write(tmp_path)
    ds = pydicom.dcmread(ct.paths[0])
    ds.file_meta.TransferSyntaxUID = JPEG2000Lossless
    ds.PixelData = pydicom.encaps.encapsulate([b"\x00" * 64])
    ds["PixelData"].VR = "OB"
    ds.save_as(ct.paths[0], enforce_file_format=True)
    with pytest.raises(DicomInputError, match="JPEG 2000") as e:
        load_ct_series(tmp_path / "ct")
    assert "CT.0001.dcm" in str(e.value) and "PixelData" in str(e.value)


def test_truncated_slice_names_file(tmp_path):
    ct, _, _ = _write(tmp_path)
    data = ct.paths[2].read_bytes()
    ct.paths[2].write_bytes(data[: len(data) // 2])
    with pytest.raises(BrachyCryoError) as e:
        load_ct_series(tmp_path / "ct")
    assert "CT.0003.dcm" in str(e.value)


def test_wrong_modality_and_not_dicom(tmp_path, shared_data):
    rs = shared_data / "dicom" / "rt_utils" / "mock_data" / "rt.dcm"
    with pytest.raises(DicomInputError, match="modality is 'RTSTRUCT', expected CT"):
        read_dataset(rs, modality="CT")
    junk = tmp_path / "junk.dcm"
    junk.write_text("hello")
    with pytest.raises(DicomInputError, match="junk.dcm"):
        read_dataset(junk)


def test_real_files_load(shared_data):
    single = load_ct_series(shared_data / "dicom" / "dicompyler_core_example")
    assert single.grid.shape == (1, 512, 512)
    assert single.grid.spacing_mm == pytest.approx((1.074219, 1.074219, 3.0))
    mock = load_ct_series(shared_data / "dicom" / "rt_utils" / "mock_data")
    assert mock.grid.shape[0] == 2 and mock.grid.spacing_mm[2] == pytest.approx(5.0)
    oriented = load_ct_series(shared_data / "dicom" / "rt_utils" / "oriented_data")
    assert oriented.grid.shape[0] == 3
    assert not oriented.grid.is_axis_aligned()
    np.testing.assert_allclose(oriented.grid.origin_mm, [123, -432, 30])


def test_written_ct_passes_dciodvfy(tmp_path, dciodvfy):
    """No Error, and no Laterality warning for an unpaired body part: General Series
    Laterality is Type 2C (paired body parts only, PS3.3 C.7.3.1), so it is absent, not
    empty (issue 14.7).  With the body part unknown it stays empty ("unknown")."""
    ct, _, _ = _write(tmp_path, body_part="ABDOMEN")
    errors, warnings_ = dciodvfy(ct.paths[0])
    assert errors == []
    assert not [w for w in warnings_ if "Laterality" in w], warnings_
    ds = pydicom.dcmread(ct.paths[0], stop_before_pixels=True)
    assert "Laterality" not in ds and ds.BodyPartExamined == "ABDOMEN"
    unknown, _, _ = _write(tmp_path, name="unknown")
    errors, _ = dciodvfy(unknown.paths[0])
    assert errors == [] and pydicom.dcmread(unknown.paths[0]).Laterality == ""
    with pytest.raises(DataModelError, match="BREAST"):
        _write(tmp_path, name="paired", body_part="BREAST")


def test_write_refuses_overwrite_and_nan(tmp_path):
    _write(tmp_path)
    with pytest.raises(BrachyCryoError, match="exists"):
        _write(tmp_path)
    grid = Grid((2, 2, 2), (0, 0, 0), (1, 1, 1))
    bad = np.zeros(grid.shape)
    bad[0, 0, 0] = np.nan
    with pytest.raises(DicomInputError, match="NaN"):
        write_ct_series(tmp_path / "nan", bad, grid, context=StudyContext())


def test_mutated_ct_series_only_raises_project_errors(tmp_path, file_hashes):
    """Delete / empty elements, overwrite bytes or truncate one slice: only project errors."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    ct, _, _ = _write(tmp_path)
    target = ct.paths[2]
    raw = target.read_bytes()
    keywords = [e.keyword for e in pydicom.dcmread(target) if e.keyword]

    @given(
        st.sampled_from(keywords),
        st.sampled_from(["delete", "empty", "bytes", "truncate"]),
        st.integers(0, len(raw) - 1),
        st.binary(min_size=1, max_size=8),
    )
    @settings(max_examples=80, deadline=None)
    def check(keyword, action, position, junk):
        if action in ("delete", "empty"):
            ds = pydicom.dcmread(target)
            if action == "delete":
                delattr(ds, keyword)
            else:
                ds[keyword].value = None
            try:
                ds.save_as(target, enforce_file_format=False)
            except Exception:
                target.write_bytes(raw)
                return
        elif action == "bytes":
            target.write_bytes(raw[:position] + junk + raw[position + len(junk) :])
        else:
            target.write_bytes(raw[:position])
        before = file_hashes(tmp_path / "ct")
        try:
            load_ct_series(tmp_path / "ct")
        except BrachyCryoError:
            pass
        finally:
            assert file_hashes(tmp_path / "ct") == before
            target.write_bytes(raw)

    check()
