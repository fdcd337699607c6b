"""The contour-nesting test of ``roi_volume_cc`` agrees with matplotlib's ``contains_point``.

``brachycryo.dicom_io.rasterize._point_in_polygon`` replaced ``matplotlib.path.Path`` there
(importing matplotlib cost a quarter of a second of every ``brachycryo dvh``); it evaluates
the same crossings-multiply comparisons, so the answers must match point for point,
including points on vertices and edges (integer polygons and probes hit those often).
"""

from __future__ import annotations

import numpy as np
from matplotlib.path import Path

from brachycryo.dicom_io.rasterize import _point_in_polygon


def test_point_in_polygon_matches_matplotlib() -> None:
    rng = np.random.default_rng(0)
    for trial in range(600):
        m = int(rng.integers(3, 9))
        if trial % 2:
            poly = rng.integers(-3, 4, size=(m, 2)).astype(float)  # degenerate cases
        else:
            poly = rng.normal(size=(m, 2))
        probes = np.vstack([rng.integers(-3, 4, size=(10, 2)).astype(float), poly])
        path = Path(poly)
        for p in probes:
            assert _point_in_polygon(p, poly) == bool(path.contains_point(p)), (poly, p)


def test_point_in_polygon_square_with_hole_orientation() -> None:
    outer = np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    inner = np.array([[3.0, 3.0], [3.0, 6.0], [6.0, 6.0], [6.0, 3.0]])  # clockwise
    assert _point_in_polygon(inner[0], outer)
    assert not _point_in_polygon(outer[0] - 1.0, inner)
    assert not _point_in_polygon(np.array([1.0, 1.0]), outer[:2])  # < 3 vertices
