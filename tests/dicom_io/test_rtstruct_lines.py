"""Open contours (lines such as a cryo probe's track) and points in an RTSTRUCT: written as
OPEN_PLANAR / OPEN_NONPLANAR and POINT (PS3.3 C.8.8.6.1), read back as lines and points,
never as volumes, and harmless to other readers' volumes (issue 21)."""

import numpy as np
import pydicom
import pytest

from brachycryo.core.errors import StructureError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.common import StudyContext
from brachycryo.dicom_io.ct_series import write_ct_series
from brachycryo.dicom_io.rasterize import roi_mask
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
from brachycryo.qa.evaluate import volume_rois
from tests import analytic_shapes as shapes

GRID = Grid((21, 40, 40), (-39.0, -39.0, -20.0), (2.0, 2.0, 2.0))  # slices at even z
OBLIQUE = np.array([[30.0, 5.0, 10.0], [2.0, 1.0, -3.0]])  # across slices: a probe's track
IN_SLICE = np.array([[30.0, 5.0, 4.0], [12.0, -6.0, 4.0], [2.0, 1.0, 4.0]])  # on slice z = 4
TIP = np.array([[2.0, 1.0, -3.0]])


def _sphere(z):
    return RoiSpec("Sphere", contours_mm=shapes.sphere_contours((0.0, 0.0, 0.0), 12.0, z))


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same sphere written alone and with two lines and a point."""
    d = tmp_path_factory.mktemp("lines")
    ct = write_ct_series(d / "CT", np.zeros(GRID.shape), GRID, context=StudyContext())
    z = [GRID.ijk_to_mm([0, 0, k])[2] for k in range(GRID.shape[0])]
    rois = [
        _sphere(z),
        RoiSpec("Probe1_track", lines_mm=[OBLIQUE], interpreted_type="CONTROL"),
        RoiSpec("Flat_track", lines_mm=[IN_SLICE], interpreted_type="CONTROL"),
        RoiSpec("Probe1_tip", points_mm=TIP, interpreted_type="MARKER"),
    ]
    write_rtstruct(d / "RS.lines.dcm", rois, ct)
    write_rtstruct(d / "RS.plain.dcm", [_sphere(z)], ct)
    return d, ct


def test_lines_and_points_read_back_as_such(files):
    d, ct = files
    ss = read_rtstruct(d / "RS.lines.dcm")
    track, flat, tip = ss.roi("Probe1_track"), ss.roi("Flat_track"), ss.roi("Probe1_tip")
    assert [c.geometric_type for c in track.contours] == ["OPEN_NONPLANAR"]
    assert track.contours[0].referenced_sop_instance_uid is None  # on no single image
    assert [c.geometric_type for c in flat.contours] == ["OPEN_PLANAR"]
    k = int(np.rint(GRID.mm_to_ijk(IN_SLICE[0])[2]))
    assert flat.contours[0].referenced_sop_instance_uid == ct.sop_instance_uids[k]
    np.testing.assert_allclose(track.lines_mm[0], OBLIQUE)
    np.testing.assert_allclose(flat.lines_mm[0], IN_SLICE)
    assert tip.is_point and tip.interpreted_type == "MARKER"
    np.testing.assert_allclose(tip.points_mm, TIP)
    assert track.points_mm.shape == (0, 3) and tip.lines_mm == ()
    for roi in (track, tip):
        with pytest.raises(StructureError, match=roi.name):
            roi_mask(roi, GRID)
    plain = read_rtstruct(d / "RS.plain.dcm")
    np.testing.assert_array_equal(roi_mask(ss.roi("Sphere"), GRID), roi_mask(plain.rois[0], GRID))


def test_dvh_skips_lines_and_points_with_a_note(files):
    d, _ = files
    rois, notes = volume_rois(read_rtstruct(d / "RS.lines.dcm"), None)
    assert [r.name for r in rois] == ["Sphere"]
    assert len(notes) == 3 and all("skipped" in n for n in notes)
    with pytest.raises(StructureError, match="Probe1_track"):
        volume_rois(read_rtstruct(d / "RS.lines.dcm"), ["Probe1_track"])


def test_lines_pass_dciodvfy_without_new_messages(files, dciodvfy):
    d, _ = files
    errors, warnings = dciodvfy(d / "RS.lines.dcm")
    plain_errors, plain_warnings = dciodvfy(d / "RS.plain.dcm")
    assert errors == plain_errors == []
    assert warnings == plain_warnings


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (np.array([[1.0, 2.0, 3.0]]), "N>=2"),
        (np.array([[1.0, 2.0, 3.0], [np.nan, 0.0, 0.0]]), "NaN"),
        (np.array([[1.0, 2.0, 3.0], [1.0, 2.0, 3.00001]]), "coincide"),
    ],
)
def test_writer_refuses_bad_lines(files, tmp_path, line, match):
    _, ct = files
    with pytest.raises(StructureError, match=match) as e:
        write_rtstruct(tmp_path / "bad.dcm", [RoiSpec("Track", lines_mm=[line])], ct)
    assert "Track" in str(e.value) and not (tmp_path / "bad.dcm").exists()
    with pytest.raises(StructureError, match="exactly one"):
        write_rtstruct(tmp_path / "b.dcm", [RoiSpec("T", lines_mm=[OBLIQUE], points_mm=TIP)], ct)


def test_written_contour_types_in_the_file(files):
    """The file itself (read with pydicom, not our reader) holds the types and the counts."""
    d, _ = files
    ds = pydicom.dcmread(d / "RS.lines.dcm")
    by_name = {r.ROINumber: r.ROIName for r in ds.StructureSetROISequence}
    kinds = {
        by_name[c.ReferencedROINumber]: [
            (x.ContourGeometricType, int(x.NumberOfContourPoints)) for x in c.ContourSequence
        ]
        for c in ds.ROIContourSequence
    }
    assert kinds["Probe1_track"] == [("OPEN_NONPLANAR", 2)]
    assert kinds["Flat_track"] == [("OPEN_PLANAR", 3)]
    assert kinds["Probe1_tip"] == [("POINT", 1)]
    types = {o.ReferencedROINumber: o.RTROIInterpretedType for o in ds.RTROIObservationsSequence}
    assert [types[n] for n in sorted(types)] == ["ORGAN", "CONTROL", "CONTROL", "MARKER"]


@pytest.mark.peer
def test_plastimatch_keeps_the_volume_and_makes_no_volume_of_lines(
    files, plastimatch_masks, tmp_path
):
    d, _ = files
    with_lines = plastimatch_masks(d / "RS.lines.dcm", d / "CT", tmp_path / "a")
    plain = plastimatch_masks(d / "RS.plain.dcm", d / "CT", tmp_path / "b")
    print(f"plastimatch: {with_lines} (with lines), {plain} (sphere alone)")
    assert with_lines["Sphere"] == pytest.approx(plain["Sphere"], abs=1e-9)
    assert all(with_lines.get(n, 0.0) == 0.0 for n in ("Probe1_track", "Probe1_tip"))


_DICOMPYLER_READ = r"""
import json, sys
from dicompylercore import dicomparser
p = dicomparser.DicomParser(sys.argv[1])
out = {}
for number, s in p.GetStructures().items():
    coords = p.GetStructureCoordinates(number)
    kinds = sorted({c["type"] for plane in coords.values() for c in plane})
    volume = p.CalculateStructureVolume(coords, p.CalculatePlaneThickness(coords)) if (
        kinds == ["CLOSED_PLANAR"]) else None
    out[s["name"]] = {"type": s["type"], "kinds": kinds, "volume": volume}
print(json.dumps(out))
"""


@pytest.mark.peer
def test_dicompyler_core_reads_lines_points_and_the_same_volume(files, dicompyler_peer):
    d, _ = files
    peer = dicompyler_peer(_DICOMPYLER_READ, d / "RS.lines.dcm")
    plain = dicompyler_peer(_DICOMPYLER_READ, d / "RS.plain.dcm")
    assert peer["Probe1_track"] == {"type": "CONTROL", "kinds": ["OPEN_NONPLANAR"], "volume": None}
    assert peer["Probe1_tip"]["type"] == "MARKER" and peer["Probe1_tip"]["kinds"] == ["POINT"]
    assert peer["Sphere"] == plain["Sphere"]


_RT_UTILS_READ = r"""
import json, sys
import numpy as np
from rt_utils import RTStructBuilder
out = {}
for rs in sys.argv[2:]:
    rt = RTStructBuilder.create_from(dicom_series_path=sys.argv[1], rt_struct_path=rs)
    out[rs] = {"names": rt.get_roi_names(), "sphere": int(rt.get_roi_mask_by_name("Sphere").sum())}
print(json.dumps(out))
"""


@pytest.mark.peer
def test_rt_utils_lists_the_probe_rois_and_keeps_the_volume(files, rt_utils_peer):
    """rt-utils 1.2.7 makes masks only; it cannot make one of a contour without a Contour
    Image Sequence (Type 3, absent for a track across slices): only names and the
    volume's mask are compared."""
    d, _ = files
    lines, plain = str(d / "RS.lines.dcm"), str(d / "RS.plain.dcm")
    peer = rt_utils_peer(_RT_UTILS_READ, d / "CT", lines, plain)
    assert peer[lines]["names"] == ["Sphere", "Probe1_track", "Flat_track", "Probe1_tip"]
    assert peer[lines]["sphere"] == peer[plain]["sphere"] > 0
