"""RECIST 1.1 diameters (longest axial and its perpendicular) on outlines of known size, and
the response class at its thresholds (Eisenhauer et al., Eur J Cancer 45:228, 2009)."""

import math

import numpy as np
import pytest

from brachycryo.followup import recist


def turned(points, deg):
    t = math.radians(deg)
    r = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
    return np.asarray(points, float) @ r.T


def ellipse(a, b, n=360):
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.c_[a * np.cos(t), b * np.sin(t)]


@pytest.mark.parametrize("deg", [0.0, 30.0, 77.0])
def test_ellipse_gives_its_axes(deg):
    d = recist.axial_diameters([(0.0, [turned(ellipse(15, 6), deg)]),
                                (2.5, [turned(ellipse(7.5, 3), deg)])])  # fmt: skip
    assert d.longest_mm == pytest.approx(30.0, abs=1e-6)
    assert d.perpendicular_mm == pytest.approx(12.0, abs=1e-3)
    assert d.z_mm == 0.0


def test_rectangle_perpendicular_is_the_chord_across_the_diagonal():
    w, h = 10.0, 4.0
    d = recist.axial_diameters([(1.0, [turned([[0, 0], [w, 0], [w, h], [0, h]], 12.0)])])
    diag = math.hypot(w, h)
    assert d.longest_mm == pytest.approx(diag)
    # lines perpendicular to the diagonal cross both long sides: chord h * diag / w
    assert d.perpendicular_mm == pytest.approx(h * diag / w)


def test_two_outlines_in_a_plane_and_the_plane_of_the_longest_diameter():
    left = ellipse(3, 3, 64) + [-10.0, 0.0]
    right = ellipse(3, 5, 64) + [10.0, 0.0]
    big = ellipse(12, 12, 64)
    d = recist.axial_diameters([(0.0, [left, right]), (5.0, [big])])
    assert d.longest_mm == pytest.approx(26.0, abs=0.05) and d.z_mm == 0.0
    # the perpendicular spans the taller ellipse (its vertical extent 10 mm)
    assert d.perpendicular_mm == pytest.approx(10.0, abs=0.05)


def test_a_voxel_outline_gives_its_diameters_within_a_voxel():
    # the outline of a rasterised disc of radius 10 on a 1 mm grid (voxel corners)
    ii, jj = np.meshgrid(np.arange(-12, 13), np.arange(-12, 13), indexing="ij")
    inside = ii**2 + jj**2 <= 100
    corners = np.array([[i + di, j + dj] for i, j in zip(ii[inside], jj[inside])
                        for di in (-0.5, 0.5) for dj in (-0.5, 0.5)])  # fmt: skip
    from scipy.spatial import ConvexHull

    hull = corners[ConvexHull(corners).vertices]
    d = recist.axial_diameters([(0.0, [hull])])
    assert d.longest_mm == pytest.approx(21.0, abs=1.0)
    assert d.perpendicular_mm == pytest.approx(21.0, abs=1.0)


@pytest.mark.parametrize(
    ("base", "follow", "expected"),
    [
        (100.0, 0.0, "CR"),
        (100.0, 70.0, "PR"),  # -30 %
        (100.0, 70.1, "SD"),
        (100.0, 120.0, "PD"),  # +20 % and +20 mm
        (100.0, 119.9, "SD"),
        (20.0, 24.0, "SD"),  # +20 % but only +4 mm
        (20.0, 25.0, "PD"),  # +25 % and +5 mm
        (30.0, 30.0, "SD"),
    ],
)
def test_response_class_thresholds(base, follow, expected):
    assert recist.response_class(base, follow) == expected


def test_target_response_sums_and_missing_lesions():
    r = recist.target_response(["A", "B"], [20.0, 30.0], [10.0, 20.0])
    assert r.baseline_sum_mm == 50.0 and r.followup_sum_mm == 30.0
    assert r.change_pct == pytest.approx(-40.0) and r.response == "PR"
    assert recist.target_response(["A", "B"], [20.0, 30.0], [0.0, 0.0]).response == "CR"
    gap = recist.target_response(["A", "B"], [20.0, 30.0], [10.0, None])
    assert gap.response is None and gap.missing == ("B",)
    assert gap.to_json()["lesions_without_followup_tumour_roi"] == ["B"]
