"""``roi_mask`` fills the contour planes as booleans on grids whose slices are parallel to the
contours; it must give exactly ``roi_fraction(supersample=1) > 0.5`` (its former
definition), on any such grid, with either end-cap convention."""

from __future__ import annotations

import numpy as np
import pytest

from brachycryo.core.grid import Grid
from brachycryo.dicom_io.rasterize import contour_stack, roi_fraction, roi_mask
from brachycryo.dicom_io.rtstruct import read_rtstruct
from brachycryo.phantoms import build_phantom, write_phantom


@pytest.fixture(scope="module")
def structures(tmp_path_factory):
    case = build_phantom(seed=0, spacing_mm=(2.0, 2.0, 4.0))
    files = write_phantom(tmp_path_factory.mktemp("phantom"), case, overwrite=True)
    return read_rtstruct(files.rtstruct)


GRIDS = {
    "ct-like": Grid((50, 60, 80), (-120.0, -90.0, -80.0), (2.0, 2.0, 4.0)),
    "fine-offset": Grid((90, 70, 90), (-60.3, -50.7, -70.1), (0.9, 1.1, 1.3)),
    "flipped-k": Grid(
        (40, 50, 60), (-60.0, -50.0, 80.0), (2.5, 2.0, 3.0), (1, 0, 0, 0, 1, 0, 0, 0, -1)
    ),
}


@pytest.mark.parametrize("grid_name", sorted(GRIDS))
@pytest.mark.parametrize("end_caps", ["full", "half"])
def test_roi_mask_is_fraction_threshold(structures, grid_name, end_caps):
    grid = GRIDS[grid_name]
    checked = 0
    for roi in structures.rois:
        if not roi.closed_contours:
            continue
        expected = roi_fraction(roi, grid, supersample=1, end_caps=end_caps) > 0.5
        got = roi_mask(roi, grid, end_caps=end_caps)
        assert got.dtype == bool and got.shape == grid.shape
        np.testing.assert_array_equal(got, expected, err_msg=roi.name)
        stack = contour_stack(roi, end_caps=end_caps)
        np.testing.assert_array_equal(
            roi_mask(roi, grid, end_caps=end_caps, stack=stack), expected, err_msg=roi.name
        )
        checked += int(expected.any())
    assert checked >= 5
