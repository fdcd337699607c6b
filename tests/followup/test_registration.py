"""Registration recovers a known rigid transform; given transforms are read and checked."""

import math

import numpy as np
import pytest

from brachycryo.core.errors import GeometryError
from brachycryo.core.grid import Grid
from brachycryo.followup.registration import (
    LinearTransform,
    RegistrationError,
    read_transform,
    register_rigid,
    write_transform,
)
from brachycryo.phantoms.case import build_phantom
from tests.followup.synthetic import cropped, grid_centre, moved_ct, rotation


@pytest.fixture(scope="module")
def phantom():
    case = build_phantom(seed=2, site="abdomen", spacing_mm=4.0)
    return case.hu, case.grid


def test_recovers_a_known_rotation_and_shift(phantom):
    hu, grid = phantom
    rot = rotation((0.3, 0.2, 1.0), 4.0)
    true = LinearTransform(tuple(rot.reshape(-1)), (6.0, -4.0, 3.0), grid_centre(grid))
    fu_grid = cropped(grid, 4)
    fu = moved_ct(hu, grid, true, fu_grid)
    reg = register_rigid(hu, grid, fu, fu_grid)
    # compare where it matters: points over the body
    pts = grid.ijk_to_mm(np.argwhere(hu > -500)[::97, ::-1].astype(float))
    err = np.linalg.norm(reg.transform.apply(pts) - true.apply(pts), axis=1)
    assert err.max() < 1.0
    rel = reg.transform.matrix_3x3 @ true.matrix_3x3.T
    assert math.degrees(math.acos(np.clip((np.trace(rel) - 1) / 2, -1, 1))) < 0.5
    assert reg.quality.correlation_after > reg.quality.correlation_before
    assert reg.quality.correlation_after > 0.98
    # deterministic: the same pair gives the same transform, bit for bit
    again = register_rigid(hu, grid, fu, fu_grid)
    assert again.transform == reg.transform


def test_transform_file_round_trip_and_refusals(tmp_path):
    t = LinearTransform(tuple(rotation((0, 0, 1), 10).reshape(-1)), (1.0, 2.0, 3.0), (5.0, 0, 0))
    path = tmp_path / "t.tfm"
    write_transform(path, t)
    back = read_transform(path)
    assert np.allclose(back.apply(np.eye(3)), t.apply(np.eye(3)))
    with pytest.raises(RegistrationError, match="does not exist"):
        read_transform(tmp_path / "none.tfm")
    (tmp_path / "bad.tfm").write_text("not a transform")
    with pytest.raises(RegistrationError, match="bad.tfm"):
        read_transform(tmp_path / "bad.tfm")
    with pytest.raises(GeometryError, match="determinant"):
        LinearTransform((1, 0, 0, 0, 1, 0, 0, 0, -1), (0, 0, 0))


def test_no_overlap_is_refused(phantom):
    hu, grid = phantom
    from brachycryo.followup.registration import registration_quality

    far = LinearTransform((1, 0, 0, 0, 1, 0, 0, 0, 1), (2000.0, 0.0, 0.0))
    with pytest.raises(RegistrationError, match="not the same region"):
        registration_quality(hu, grid, hu, grid, far)


def test_large_cts_are_binned_before_the_rigid_step():
    from brachycryo.followup.registration import RIGID_MAX_VOXELS, bin_factors

    # 512 x 512 x 100 of 0.8 x 0.8 x 2.5 mm: in-plane first, to about the slice thickness
    big = Grid((100, 512, 512), (0.0, 0.0, 0.0), (0.8, 0.8, 2.5))
    assert bin_factors(big) == (3, 3, 1)
    thin = Grid((400, 512, 512), (0.0, 0.0, 0.0), (0.8, 0.8, 0.8))
    f = bin_factors(thin)
    assert f == (3, 3, 3) and (512 // 3) ** 2 * (400 // 3) <= RIGID_MAX_VOXELS
    # the small test CTs are registered as they are
    assert bin_factors(Grid((56, 56, 56), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))) == (1, 1, 1)
