"""ROIs with holes: keyhole contours every reader fills the same, and CLOSEDPLANAR_XOR input.

PS3.3 (2024c) C.8.8.6.3 gives two reader-independent encodings of an excluded inner part:
a keyhole contour (the hole joined to its outer contour by a zero-width channel) and
CLOSEDPLANAR_XOR contours.  We write keyholes and read both.  The shell (a sphere minus a
concentric sphere) and an island inside a hole are checked against their analytic volumes
by our reader and by plastimatch, dicompyler-core and rt-utils.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pydicom
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence
from scipy import ndimage

from brachycryo.core.errors import StructureError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.common import StudyContext
from brachycryo.dicom_io.ct_series import write_ct_series
from brachycryo.dicom_io.keyhole import keyhole_loops, signed_area
from brachycryo.dicom_io.rasterize import roi_fraction, roi_mask, roi_volume_cc
from brachycryo.dicom_io.rtdose import write_rtdose
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
from tests import analytic_shapes as shapes

CT_GRID = Grid((41, 70, 70), (-69.0, -69.0, -40.0), (2.0, 2.0, 2.0))
CENTRE_MM = np.array([1.0, -2.0, 1.0])  # generic: not on a voxel centre or boundary


# ---- reader-independent geometry checks ------------------------------------------------


def _winding_numbers(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Winding number of ``poly`` (n, 2) around each point (m, 2)."""
    x, y = poly[:, 0][None, :], poly[:, 1][None, :]
    x1, y1 = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
    px, py = pts[:, 0][:, None], pts[:, 1][:, None]
    left = (x1 - x) * (py - y) - (px - x) * (y1 - y)
    up = (y <= py) & (y1 > py) & (left > 0)
    down = (y > py) & (y1 <= py) & (left < 0)
    return up.sum(axis=1) - down.sum(axis=1)


def _crossing_parity(poly: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Even-odd membership of each point in ``poly`` alone."""
    x, y = poly[:, 0][None, :], poly[:, 1][None, :]
    x1, y1 = np.roll(x, -1, axis=1), np.roll(y, -1, axis=1)
    px, py = pts[:, 0][:, None], pts[:, 1][:, None]
    span = (y > py) != (y1 > py)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x + (py - y) * (x1 - x) / (y1 - y)
    return (np.count_nonzero(span & (px < xc), axis=1) % 2).astype(bool)


def _union_nonzero(polys, pts) -> np.ndarray:
    """The "fill each contour, take the union" reading (plastimatch's), non-zero rule."""
    inside = np.zeros(pts.shape[0], dtype=bool)
    for p in polys:
        inside |= _winding_numbers(p, pts) != 0
    return inside


def _even_odd(polys, pts) -> np.ndarray:
    inside = np.zeros(pts.shape[0], dtype=bool)
    for p in polys:
        inside ^= _crossing_parity(p, pts)
    return inside


def _proper_self_crossings(poly: np.ndarray) -> int:
    """Edge pairs of one polygon that cross at an interior point of both."""
    p, p1 = poly[:, None, :], np.roll(poly, -1, axis=0)[:, None, :]
    q, q1 = poly[None, :, :], np.roll(poly, -1, axis=0)[None, :, :]

    def orient(o, s, t):
        return np.sign(
            (s[..., 0] - o[..., 0]) * (t[..., 1] - o[..., 1])
            - (s[..., 1] - o[..., 1]) * (t[..., 0] - o[..., 0])
        )

    proper = (orient(q, q1, p) * orient(q, q1, p1) < 0) & (orient(p, p1, q) * orient(p, p1, q1) < 0)
    return int(np.count_nonzero(proper)) // 2


def _check_valid_polygon(poly: np.ndarray) -> None:
    assert poly.shape[0] >= 3
    assert not np.any(np.all(poly == np.roll(poly, 1, axis=0), axis=1)), "repeated point"
    assert _proper_self_crossings(poly) == 0


def _star(cx, cy, r, n, rng):
    """A simple polygon of ``n`` vertices at radii in [0.8 r, r] and jittered angles
    (counter-clockwise).  For n >= 8 the angular gaps stay below 1.6 x 2 pi / n, so it
    contains the disc of radius 0.8 r cos(0.8 x 2 pi / 8) = 0.647 r."""
    a = (np.arange(n) + rng.uniform(-0.3, 0.3, n)) * 2 * np.pi / n
    rad = r * rng.uniform(0.8, 1.0, n)
    return np.column_stack([cx + rad * np.cos(a), cy + rad * np.sin(a)])


def _nested_loops(rng):
    """An outer loop, holes that do not overlap, islands in some holes, holes in islands."""
    loops = [_star(0, 0, 50, 60, rng)]  # contains the disc of radius 39.8
    holes: list[tuple[float, float, float]] = []
    for _ in range(200):
        if len(holes) == 5:
            break
        r = rng.uniform(4, 14)
        c = rng.uniform(-30, 30, 2)
        if np.hypot(*c) + r > 38 or any(
            np.hypot(c[0] - h[0], c[1] - h[1]) < r + h[2] + 1 for h in holes
        ):
            continue
        holes.append((c[0], c[1], r))
    for cx, cy, r in holes:
        island = r > 7 and rng.random() < 0.7
        hole = _star(cx, cy, r, int(rng.integers(8 if island else 3, 30)), rng)
        # random winding: the writer must not rely on its input's orientation
        loops.append(hole[::-1] if rng.random() < 0.5 else hole)
        if island:
            loops.append(_star(cx, cy, 0.5 * r, 12, rng))
            if rng.random() < 0.5:
                loops.append(_star(cx, cy, 0.25 * r, 8, rng))
    loops.append(_star(70, 70, 5, 7, rng))  # a separate region
    return loops


@pytest.mark.parametrize("seed", range(12))
def test_keyhole_polygons_fill_the_same_under_every_rule(seed):
    """Even-odd over the keyholes, each keyhole filled alone by the non-zero rule and
    unioned (plastimatch's reading), and even-odd over the original loops all agree."""
    rng = np.random.default_rng(seed)
    loops = _nested_loops(rng)
    out = keyhole_loops(loops)
    pts = rng.uniform(-60, 80, (20000, 2))
    truth = _even_odd(loops, pts)
    assert np.array_equal(_even_odd(out, pts), truth)
    assert np.array_equal(_union_nonzero(out, pts), truth)
    # one polygon per connected region: the outer, the islands, the islands' islands, the
    # separate one; areas add up (outer counter-clockwise, holes clockwise)
    depths = [sum(_crossing_parity(o, lp[:1])[0] for o in loops if o is not lp) for lp in loops]
    assert len(out) == sum(1 for d in depths if d % 2 == 0)
    even_odd_area = sum((-1) ** d * abs(signed_area(lp)) for lp, d in zip(loops, depths))
    assert sum(signed_area(p) for p in out) == pytest.approx(even_odd_area, rel=1e-12)
    assert all(signed_area(p) > 0 for p in out)
    for p in out:
        _check_valid_polygon(p)


def test_keyhole_carries_other_coordinates_and_keeps_simple_loops():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    hole = np.array([[3, 3], [3, 7], [7, 7], [7, 3]], float)
    full = [np.column_stack([lp, lp[:, 0] * 2 + 5]) for lp in (square, hole)]
    (out,) = keyhole_loops([square, hole], full)
    assert out.shape[1] == 3
    np.testing.assert_allclose(out[:, 2], out[:, 0] * 2 + 5)  # interpolated linearly
    assert abs(signed_area(out[:, :2])) == pytest.approx(100 - 16)
    # a loop without holes comes back as it was (made counter-clockwise)
    (alone,) = keyhole_loops([square[::-1]])
    assert signed_area(alone) == pytest.approx(100)


# ---- written masks: shell and island in a hole -----------------------------------------


def _sphere_cc(r_mm: float) -> float:
    return shapes.sphere_volume_cc(r_mm)


@pytest.fixture(scope="module")
def holes_case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("holes")
    ct = write_ct_series(folder / "CT", np.zeros(CT_GRID.shape), CT_GRID, context=StudyContext())
    r = np.linalg.norm(CT_GRID.voxel_centres_mm() - CENTRE_MM, axis=-1)
    masks = {
        "Shell": (r < 30) & (r > 18),
        "IslandInHole": ((r < 30) & (r > 20)) | (r < 10),
    }
    truth = {
        "Shell": _sphere_cc(30) - _sphere_cc(18),
        "IslandInHole": _sphere_cc(30) - _sphere_cc(20) + _sphere_cc(10),
    }
    path = folder / "RS.holes.dcm"
    ss = write_rtstruct(path, [RoiSpec(n, mask=m) for n, m in masks.items()], ct)
    return SimpleNamespace(folder=folder, ct=ct, path=path, ss=ss, masks=masks, truth=truth)


def _planes_ij(roi, grid: Grid) -> dict[int, list[np.ndarray]]:
    planes: dict[int, list[np.ndarray]] = {}
    for c in roi.closed_contours:
        ijk = grid.mm_to_ijk(c.points_mm)
        k = int(np.rint(ijk[0, 2]))
        planes.setdefault(k, []).append(ijk[:, :2])
    return planes


@pytest.mark.parametrize("name", ["Shell", "IslandInHole"])
def test_one_keyhole_contour_per_connected_region(holes_case, name):
    """Every plane holds one contour per 4-connected region of the mask slice (no separate
    hole contours), valid polygons, and any reading rule gives the mask's voxels."""
    mask = holes_case.masks[name]
    planes = _planes_ij(holes_case.ss.roi(name), CT_GRID)
    assert sorted(planes) == [int(k) for k in np.nonzero(mask.any(axis=(1, 2)))[0]]
    jj, ii = np.mgrid[0 : CT_GRID.shape[1], 0 : CT_GRID.shape[2]]
    centres_ij = np.column_stack([ii.ravel(), jj.ravel()]).astype(float)
    holes_seen = 0
    for k, polys in planes.items():
        _, n_regions = ndimage.label(mask[k])
        assert len(polys) == n_regions, k
        holes_seen += ndimage.label(~mask[k])[1] - 1
        for p in polys:
            _check_valid_polygon(p)
            # cuts (and all horizontal edges) run between rows of voxel centres
            flat = np.isclose(p[:, 1], np.roll(p[:, 1], -1), atol=1e-6)
            assert not np.any(np.isclose(p[flat, 1], np.rint(p[flat, 1]), atol=1e-3)), k
        expected = mask[k].ravel()
        assert np.array_equal(_union_nonzero(polys, centres_ij), expected), k
        assert np.array_equal(_even_odd(polys, centres_ij), expected), k
    assert holes_seen > 10  # the case does exercise holes


@pytest.mark.parametrize("name", ["Shell", "IslandInHole"])
def test_our_reader_reads_holes_back(holes_case, name):
    roi = holes_case.ss.roi(name)
    truth = holes_case.truth[name]
    assert np.array_equal(roi_mask(roi, CT_GRID), holes_case.masks[name])
    assert roi_volume_cc(roi) == pytest.approx(truth, rel=0.01)
    frac = roi_fraction(roi, CT_GRID, supersample=4)
    assert frac.sum() * CT_GRID.voxel_volume_mm3 / 1000 == pytest.approx(truth, rel=0.01)
    # a dose grid of another spacing: cuts there are not on grid rows
    dose_grid = Grid.from_bounds((-70, -70, -41), (70, 70, 41), 2.5)
    frac2 = roi_fraction(roi, dose_grid, supersample=2)
    assert frac2.sum() * dose_grid.voxel_volume_mm3 / 1000 == pytest.approx(truth, rel=0.01)


def test_written_holes_pass_dciodvfy(holes_case, dciodvfy):
    errors, _ = dciodvfy(holes_case.path)
    assert errors == []


@pytest.mark.peer
def test_plastimatch_reads_holes(holes_case, plastimatch_masks, tmp_path):
    """plastimatch fills every contour and unions them: with separate hole contours it read
    the shell as the full sphere (112.8 cc instead of 88.7 cc); keyholes keep the hole."""
    peer = plastimatch_masks(holes_case.path, holes_case.folder / "CT", tmp_path / "pm")
    for name, truth in holes_case.truth.items():
        voxels = holes_case.masks[name].sum() * CT_GRID.voxel_volume_mm3 / 1000
        print(f"{name}: truth {truth:.3f} cc, mask {voxels:.3f}, plastimatch {peer[name]:.3f}")
        assert peer[name] == pytest.approx(truth, rel=0.01), name


_DICOMPYLER_VOLUMES = r"""
import json, sys
from dicompylercore import dicomparser, dvhcalc
rtss, rtdose = sys.argv[1], sys.argv[2]
out = {}
for number, s in dicomparser.DicomParser(rtss).GetStructures().items():
    out[s["name"]] = float(dvhcalc.get_dvh(rtss, rtdose, number).volume)
print(json.dumps(out))
"""


@pytest.mark.peer
def test_dicompyler_core_reads_holes(holes_case, dicompyler_peer, tmp_path):
    rd = tmp_path / "RD.dcm"
    write_rtdose(
        rd,
        np.full(CT_GRID.shape, 10.0),
        CT_GRID,
        context=holes_case.ct.context,
        referenced_plan_uid="1.2.3.4",
    )
    peer = dicompyler_peer(_DICOMPYLER_VOLUMES, holes_case.path, rd)
    for name, truth in holes_case.truth.items():
        print(f"{name}: truth {truth:.3f} cc, dicompyler-core {peer[name]:.3f}")
        assert peer[name] == pytest.approx(truth, rel=0.01), name


_RT_UTILS_MASKS = r"""
import json, sys
import numpy as np
from rt_utils import RTStructBuilder
rt = RTStructBuilder.create_from(dicom_series_path=sys.argv[1], rt_struct_path=sys.argv[2])
names = rt.get_roi_names()
for i, n in enumerate(names):  # rt-utils masks are [row, column, slice]
    np.save(f"{sys.argv[3]}/{i}.npy", rt.get_roi_mask_by_name(n).transpose(2, 0, 1))
print(json.dumps(names))
"""


@pytest.mark.peer
def test_rt_utils_reads_holes(holes_case, rt_utils_peer, tmp_path):
    """rt-utils reads the holes and islands.  Its volume is not the truth within 1 %, for
    any structure, holes or not: it fills polygons rounded to whole pixels with OpenCV,
    boundary pixels included, so it adds up to one in-plane layer of boundary voxels (a
    solid 30 mm sphere written by us reads 122.1 cc against 112.9 cc of voxel centres).
    So: every voxel of ours is in its mask, and every voxel it adds touches ours
    in-plane; a filled hole would break the latter."""
    names = rt_utils_peer(_RT_UTILS_MASKS, holes_case.folder / "CT", holes_case.path, tmp_path)
    ring = np.zeros((3, 3, 3), dtype=bool)
    ring[1] = ndimage.generate_binary_structure(2, 1)
    for i, name in enumerate(names):
        theirs = np.load(tmp_path / f"{i}.npy")
        ours = holes_case.masks[name]
        print(
            f"{name}: truth {holes_case.truth[name]:.3f} cc, mask "
            f"{ours.sum() * CT_GRID.voxel_volume_mm3 / 1000:.3f}, rt-utils "
            f"{theirs.sum() * CT_GRID.voxel_volume_mm3 / 1000:.3f}"
        )
        assert theirs.shape == ours.shape
        assert not np.any(ours & ~theirs), name
        assert not np.any(theirs & ~ndimage.binary_dilation(ours, ring)), name


@given(seed=st.integers(0, 2**31 - 1), sigma=st.floats(0.8, 2.0), level=st.floats(0.35, 0.6))
@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_random_masks_with_holes_read_the_same_by_every_rule(tmp_path, seed, sigma, level):
    """Random blobs (many holes and islands): our reader gives the voxels back, and each
    plane's contours give the same voxels filled one by one and unioned (non-zero rule)."""
    grid = Grid((3, 40, 40), (0, 0, 0), (1.0, 1.0, 2.0))
    ct = write_ct_series(
        tmp_path / f"ct{seed}", np.zeros(grid.shape), grid, context=StudyContext(), overwrite=True
    )
    noise = ndimage.gaussian_filter(np.random.default_rng(seed).random(grid.shape), sigma)
    blob = noise > np.quantile(noise, level)
    blob[:, :2, :] = False
    if not blob.any():
        return
    ss = write_rtstruct(
        tmp_path / f"rs{seed}.dcm", [RoiSpec("Blob", mask=blob)], ct, overwrite=True
    )
    roi = ss.roi("Blob")
    assert np.array_equal(roi_mask(roi, grid), blob)
    jj, ii = np.mgrid[0 : grid.shape[1], 0 : grid.shape[2]]
    centres_ij = np.column_stack([ii.ravel(), jj.ravel()]).astype(float)
    for k, polys in _planes_ij(roi, grid).items():
        assert len(polys) == ndimage.label(blob[k])[1]
        assert np.array_equal(_union_nonzero(polys, centres_ij), blob[k].ravel())


# ---- explicit contours ---------------------------------------------------------------


def test_nested_explicit_contours_become_keyholes(holes_case, tmp_path):
    z = float(CT_GRID.ijk_to_mm([0, 0, 20])[2])
    layers = [shapes.square(0, 0, z, h) for h in (30, 20, 10)]
    ss = write_rtstruct(tmp_path / "rs.dcm", [RoiSpec("N", contours_mm=layers)], holes_case.ct)
    contours = ss.roi("N").contours
    assert len(contours) == 2  # the 60 mm square with its 40 mm hole, and the island
    areas = sorted(abs(signed_area(c.points_mm[:, :2])) for c in contours)
    assert areas == pytest.approx([400.0, 3600.0 - 1600.0])


def test_crossing_explicit_contours_are_refused(holes_case, tmp_path):
    z = float(CT_GRID.ijk_to_mm([0, 0, 20])[2])
    crossing = [shapes.square(0, 0, z, 10), shapes.square(8, 8, z, 10)]
    with pytest.raises(StructureError, match=r"Cross.*cross or touch"):
        write_rtstruct(tmp_path / "rs.dcm", [RoiSpec("Cross", contours_mm=crossing)], holes_case.ct)
    assert not (tmp_path / "rs.dcm").exists()


def test_repeated_closing_point_is_not_written(holes_case, tmp_path):
    """PS3.3 C.8.8.6.1: a closed contour does not repeat its first point."""
    z = float(CT_GRID.ijk_to_mm([0, 0, 20])[2])
    sq = shapes.square(0, 0, z, 10)
    closed = np.vstack([sq, sq[:1], sq[:1] + 1e-6])
    ss = write_rtstruct(tmp_path / "rs.dcm", [RoiSpec("S", contours_mm=[closed])], holes_case.ct)
    (c,) = ss.roi("S").contours
    assert c.points_mm.shape[0] == 4


# ---- CLOSEDPLANAR_XOR input ------------------------------------------------------------


def _xor_item(points_mm: np.ndarray) -> Dataset:
    item = Dataset()
    item.ContourGeometricType = "CLOSEDPLANAR_XOR"
    item.NumberOfContourPoints = int(points_mm.shape[0])
    item.ContourData = [f"{v:.4f}" for v in points_mm.reshape(-1)]
    return item


def _rtstruct_with_xor(ct, path, rois: dict[str, list[np.ndarray]], tmp_path):
    """An RTSTRUCT whose ROIs are given as CLOSEDPLANAR_XOR contours, written by hand
    (pydicom) on the skeleton of a file of ours."""
    z = float(CT_GRID.ijk_to_mm([0, 0, 20])[2])
    skeleton = tmp_path / "skeleton.dcm"
    names = list(rois)
    write_rtstruct(
        skeleton, [RoiSpec(n, contours_mm=[shapes.square(0, 0, z, 5)]) for n in names], ct
    )
    ds = pydicom.dcmread(skeleton)
    for item, name in zip(ds.ROIContourSequence, names, strict=True):
        item.ContourSequence = DicomSequence([_xor_item(p) for p in rois[name]])
    ds.save_as(path)
    return path


def test_closedplanar_xor_contours_are_read(holes_case, tmp_path):
    """Nested XOR squares (60, 40, 20 mm: outer, hole, island; Figure C.8.8.6-3) on three
    slices and two partly overlapping XOR squares (their overlap excluded).  Square edges
    lie midway between voxel centres, so voxel counts are exact."""
    k0 = 20
    zs = [float(CT_GRID.ijk_to_mm([0, 0, k])[2]) for k in (k0 - 1, k0, k0 + 1)]
    nested = [shapes.square(2, 2, z, h) for z in zs for h in (30, 20, 10)]
    overlap = [sq for z in zs for sq in (shapes.square(2, 2, z, 10), shapes.square(10, 10, z, 10))]
    path = _rtstruct_with_xor(
        holes_case.ct, tmp_path / "RS.xor.dcm", {"Nested": nested, "Overlap": overlap}, tmp_path
    )
    ss = read_rtstruct(path)
    roi = ss.roi("Nested")
    assert {c.geometric_type for c in roi.contours} == {"CLOSEDPLANAR_XOR"}
    assert len(roi.closed_contours) == 9
    m = roi_mask(roi, CT_GRID)
    # 60^2 - 40^2 + 20^2 = 2400 mm^2 = 600 voxels of 4 mm^2 on each of 3 slices
    assert m.sum() == 3 * 600
    c = CT_GRID.voxel_centres_mm()
    dx, dy = np.abs(c[..., 0] - 2), np.abs(c[..., 1] - 2)
    ring = np.maximum(dx, dy)
    expected_plane = ((ring < 30) & (ring > 20)) | (ring < 10)
    expected = np.zeros(CT_GRID.shape, dtype=bool)
    expected[k0 - 1 : k0 + 2] = expected_plane[k0 - 1 : k0 + 2]
    assert np.array_equal(m, expected)
    assert roi_volume_cc(roi) == pytest.approx(2400 * 3 * 2 / 1000)
    # partial overlap: 2 x 400 - 2 x 144 mm^2 = 512 mm^2 = 128 voxels per slice
    assert roi_mask(ss.roi("Overlap"), CT_GRID).sum() == 3 * 128


def test_mixed_closed_types_are_read_with_a_warning(holes_case, tmp_path):
    z = float(CT_GRID.ijk_to_mm([0, 0, 20])[2])
    path = _rtstruct_with_xor(
        holes_case.ct, tmp_path / "RS.mixed.dcm", {"Mixed": [shapes.square(2, 2, z, 10)]}, tmp_path
    )
    ds = pydicom.dcmread(path)
    plain = _xor_item(shapes.square(2, 2, z, 4))
    plain.ContourGeometricType = "CLOSED_PLANAR"
    ds.ROIContourSequence[0].ContourSequence.append(plain)
    ds.save_as(path)
    ss = read_rtstruct(path)
    assert any("mixes CLOSED_PLANAR and CLOSEDPLANAR_XOR" in w for w in ss.warnings)
    assert roi_mask(ss.roi("Mixed"), CT_GRID).sum() == 100 - 16


def test_slices_too_long_for_one_contour_are_cut_into_bands(holes_case, tmp_path, monkeypatch):
    """PS3.3 C.8.8.6: Contour Data longer than 65534 bytes cannot be encoded in an explicit
    VR syntax.  With the limit lowered, the shell's slices are cut into bands of whole voxel
    rows: every contour fits, and every reading rule still gives the mask's voxels."""
    import brachycryo.dicom_io.rtstruct_write as writer

    monkeypatch.setattr(writer, "MAX_CONTOUR_DATA_BYTES", 400)
    mask = holes_case.masks["IslandInHole"]
    path = tmp_path / "RS.bands.dcm"
    ss = write_rtstruct(path, [RoiSpec("Bands", mask=mask)], holes_case.ct)
    roi = ss.roi("Bands")
    ds = pydicom.dcmread(path)
    items = ds.ROIContourSequence[0].ContourSequence
    assert max(len(c.get_item("ContourData").value) for c in items) <= 400
    planes = _planes_ij(roi, CT_GRID)
    assert any(len(p) > ndimage.label(mask[k])[1] for k, p in planes.items())  # cut
    assert np.array_equal(roi_mask(roi, CT_GRID), mask)
    assert roi_volume_cc(roi) == pytest.approx(holes_case.truth["IslandInHole"], rel=0.01)
    jj, ii = np.mgrid[0 : CT_GRID.shape[1], 0 : CT_GRID.shape[2]]
    centres_ij = np.column_stack([ii.ravel(), jj.ravel()]).astype(float)
    for k, polys in planes.items():
        assert np.array_equal(_union_nonzero(polys, centres_ij), mask[k].ravel()), k


@pytest.mark.peer
def test_plastimatch_reads_every_phantom_structure(plastimatch_masks, tmp_path):
    """The issue's case: plastimatch read the phantom's Skin (a shell) as 9647 cc, the whole
    body, instead of 679 cc, and the Vertebra without its canal (325 cc, not 290 cc).  Now
    it reads every structure as exactly the voxels of the mask that was written."""
    from brachycryo.phantoms import build_phantom, write_phantom

    case = build_phantom(seed=0, spacing_mm=(2.0, 2.0, 2.0))
    files = write_phantom(tmp_path / "ph", case)
    peer = plastimatch_masks(files.rtstruct, tmp_path / "ph" / "CT", tmp_path / "pm")
    voxel_cc = case.grid.voxel_volume_mm3 / 1000
    for name, mask in case.masks.items():
        print(f"{name}: mask {mask.sum() * voxel_cc:.2f} cc, plastimatch {peer[name]:.2f} cc")
        assert peer[name] == pytest.approx(mask.sum() * voxel_cc, abs=0.5 * voxel_cc), name
