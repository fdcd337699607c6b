"""Grid geometry: index <-> patient-mm transforms in every orientation."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.transform import Rotation

from brachycryo.core.errors import GeometryError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.orientation import PATIENT_POSITION_IOP, direction_from_iop

finite = st.floats(-500, 500, allow_nan=False)


@given(
    quat=st.lists(st.floats(-1, 1, allow_nan=False), min_size=4, max_size=4).filter(
        lambda q: np.linalg.norm(q) > 0.1
    ),
    origin=st.tuples(finite, finite, finite),
    spacing=st.tuples(*(st.floats(0.1, 10) for _ in range(3))),
    ijk=st.tuples(*(st.floats(-50, 50) for _ in range(3))),
)
@settings(max_examples=200, deadline=None)
def test_index_mm_round_trip_any_orientation(quat, origin, spacing, ijk):
    rot = Rotation.from_quat(quat).as_matrix()
    g = Grid((5, 6, 7), origin, spacing, rot.reshape(-1))
    p = g.ijk_to_mm(ijk)
    np.testing.assert_allclose(g.mm_to_ijk(p), ijk, atol=1e-8)
    # distances are preserved along each axis: one index step = one spacing in mm
    for axis in range(3):
        step = np.zeros(3)
        step[axis] = 1
        d = np.linalg.norm(g.ijk_to_mm(np.add(ijk, step)) - p)
        assert d == pytest.approx(spacing[axis], rel=1e-9)


@pytest.mark.parametrize("position", sorted(PATIENT_POSITION_IOP))
def test_standard_patient_positions(position):
    """Each position's IOP gives a right-handed grid whose axes point where DICOM says."""
    iop = PATIENT_POSITION_IOP[position]
    d = direction_from_iop(iop)
    g = Grid((4, 3, 2), (10.0, 20.0, 30.0), (0.5, 0.75, 2.0), d.reshape(-1))
    assert np.linalg.det(g.direction_matrix) == pytest.approx(1.0)
    np.testing.assert_allclose(g.ijk_to_mm([0, 0, 0]), [10, 20, 30])
    # one column step moves along the row cosines, one row step along the column cosines
    np.testing.assert_allclose(g.ijk_to_mm([1, 0, 0]) - g.origin_mm, 0.5 * np.array(iop[:3]))
    np.testing.assert_allclose(g.ijk_to_mm([0, 1, 0]) - g.origin_mm, 0.75 * np.array(iop[3:]))
    normal = np.cross(iop[:3], iop[3:])
    np.testing.assert_allclose(g.ijk_to_mm([0, 0, 1]) - g.origin_mm, 2.0 * normal)
    # supine/prone, head/feet first: axial images; decubitus: still axial slices
    assert abs(normal[2]) == pytest.approx(1.0)
    centres = g.voxel_centres_mm()
    assert centres.shape == (4, 3, 2, 3)
    np.testing.assert_allclose(centres[3, 2, 1], g.ijk_to_mm([1, 2, 3]))


def test_known_positions_match_published_table():
    """HFS / FFS / HFP rows as in DICOM PS3.3 C.7.6.2.1.1 and common scanner output."""
    assert PATIENT_POSITION_IOP["HFS"] == (1, 0, 0, 0, 1, 0)
    assert PATIENT_POSITION_IOP["HFP"] == (-1, 0, 0, 0, -1, 0)
    assert PATIENT_POSITION_IOP["FFS"] == (-1, 0, 0, 0, 1, 0)
    assert PATIENT_POSITION_IOP["FFP"] == (1, 0, 0, 0, -1, 0)


def test_oblique_orientation_from_real_file_values():
    iop = [0.9541666, -0.2080757, 0.2151061, 0.2785886, 0.880128, -0.3843997]
    d = direction_from_iop(iop)
    np.testing.assert_allclose(d.T @ d, np.eye(3), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"shape": (0, 2, 2)}, "shape"),
        ({"origin_mm": (0, np.nan, 0)}, "origin_mm"),
        ({"spacing_mm": (1, 0, 1)}, "spacing_mm"),
        ({"spacing_mm": (1, 1)}, "spacing_mm"),
        ({"direction": (1, 0, 0, 0, 1, 0, 0, 0, 2)}, "orthonormal"),
        ({"direction": (1, 0.2, 0, 0, 1, 0, 0, 0, 1)}, "orthonormal"),
    ],
)
def test_invalid_grids_raise_geometry_error(kwargs, match):
    base = {"shape": (2, 2, 2), "origin_mm": (0, 0, 0), "spacing_mm": (1, 1, 1)}
    with pytest.raises(GeometryError, match=match):
        Grid(**{**base, **kwargs})


def test_from_bounds_and_resampled_keep_extent():
    g = Grid.from_bounds((-10, -20, -5), (10, 20, 5), 2.0)
    assert g.size_ijk == (11, 21, 6)
    np.testing.assert_allclose(g.ijk_to_mm([0, 0, 0]), [-10, -20, -5])
    fine = g.resampled(1.0)
    lo, hi = g.bounds_mm()
    flo, fhi = fine.bounds_mm()
    np.testing.assert_allclose(lo, flo)
    np.testing.assert_allclose(hi, fhi)
    assert g.same_as(Grid(g.shape, g.origin_mm, g.spacing_mm))
    assert not g.same_as(fine)


def test_contains_and_crop():
    g = Grid((3, 4, 5), (0, 0, 0), (1, 1, 1))
    assert g.contains_mm(np.array([[0, 0, 0], [4.4, 3.4, 2.4]])).all()
    assert not g.contains_mm(np.array([[4.6, 0, 0]])).any()
    c = g.cropped((1, 1, 1), (3, 3, 2))
    assert c.shape == (1, 2, 2)
    np.testing.assert_allclose(c.origin_mm, [1, 1, 1])
    with pytest.raises(GeometryError):
        g.cropped((0, 0, 0), (6, 1, 1))


def test_sample_nearest_inside_and_outside():
    g = Grid((2, 3, 4), (10.0, 20.0, 30.0), (1.0, 2.0, 5.0))
    vol = np.arange(24, dtype=np.int32).reshape(g.shape)
    pts = np.array([[10.4, 20.9, 30.0], [13.0, 24.0, 35.0], [9.6, 20.0, 30.0], [10, 20, 50.0]])
    got = g.sample_nearest(vol, pts, outside=-1)
    assert got.tolist() == [vol[0, 0, 0], vol[1, 2, 3], vol[0, 0, 0], -1]
    assert got.dtype == np.int32
