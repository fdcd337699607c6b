"""Analytic geometry: concentric and offset spheres whose margins and volumes are known."""

import math

import numpy as np
import pytest

from brachycryo.core.grid import Grid
from brachycryo.followup import margins as mg

H = 0.5  # mm
GRID = Grid.from_bounds((-24, -24, -24), (24, 24, 24), H)


def ball(radius_mm, centre=(0.0, 0.0, 0.0)):
    p = GRID.voxel_centres_mm() - np.asarray(centre)
    return (p**2).sum(axis=-1) <= radius_mm**2


@pytest.mark.parametrize(("r_t", "r_a"), [(8.0, 13.0), (8.0, 11.0), (6.0, 16.5)])
def test_concentric_spheres_give_the_shell_width(r_t, r_a):
    mam = mg.minimal_ablative_margin_mm(ball(r_t), ball(r_a), GRID)
    assert mam == pytest.approx(r_a - r_t, abs=H)


def test_offset_ablation_gives_the_thinnest_side():
    # ablation sphere r 14 centred 3 mm off the tumour (r 8): thinnest margin 14 - 8 - 3 = 3
    mam = mg.minimal_ablative_margin_mm(ball(8.0), ball(14.0, (3.0, 0.0, 0.0)), GRID)
    assert mam == pytest.approx(3.0, abs=H)


def test_tumour_sticking_out_gives_a_negative_margin():
    # ablation r 10 centred 5 mm off a tumour of r 8: the tumour protrudes 8 + 5 - 10 = 3 mm
    mam = mg.minimal_ablative_margin_mm(ball(8.0), ball(10.0, (0.0, 5.0, 0.0)), GRID)
    assert mam == pytest.approx(-3.0, abs=H)


def test_shell_coverage_of_concentric_spheres_is_a_volume_ratio():
    t, a = ball(8.0), ball(11.0)
    cov = {w: mg.covered_fraction(mg.shell_mask(t, GRID, w), a) for w in mg.SHELL_WIDTHS_MM}
    assert cov[3.0] == pytest.approx(1.0, abs=0.01)
    # 5 mm shell (8..13 mm) covered out to 11 mm: (11^3 - 8^3) / (13^3 - 8^3)
    assert cov[5.0] == pytest.approx((11**3 - 8**3) / (13**3 - 8**3), rel=0.03)
    assert cov[10.0] == pytest.approx((11**3 - 8**3) / (18**3 - 8**3), rel=0.03)


def test_zone_split_of_a_sphere_across_core_and_margin():
    core, st = ball(6.0), ball(12.0)
    rec = ball(4.0, (0.0, 0.0, 7.5))  # centred in the margin, reaching into the core
    split = mg.zone_split(rec, core, st & ~core, GRID)
    v = 4 / 3 * math.pi * 4.0**3 / 1000
    assert split.total_cc == pytest.approx(v, rel=0.02)
    assert split.outside_cc == pytest.approx(0.0, abs=1e-9)  # 7.5 + 4 < 12
    # the lens of the recurrence inside the core: two spherical caps (r 6 and r 4, d 9)
    d, r1, r2 = 7.5, 6.0, 4.0
    lens = math.pi * (r1 + r2 - d) ** 2 * (d**2 + 2 * d * (r1 + r2) - 3 * (r1 - r2) ** 2) / (12 * d)
    assert split.core_cc == pytest.approx(lens / 1000, abs=0.003)
    assert mg.zone_at(mg.centroid_voxel(rec), core, st & ~core) == "margin"


def test_longest_diameter_of_an_ellipse_outline():
    t = np.linspace(0, 2 * np.pi, 360, endpoint=False)
    plane = np.c_[15 * np.cos(t), 6 * np.sin(t)]
    assert mg.longest_diameter_mm([plane, plane * 0.5]) == pytest.approx(30.0, abs=1e-9)


def test_empty_tumour_has_no_margin_and_empty_ablation_is_minus_infinity():
    assert math.isnan(mg.minimal_ablative_margin_mm(np.zeros(GRID.shape, bool), ball(5), GRID))
    assert mg.minimal_ablative_margin_mm(ball(5), np.zeros(GRID.shape, bool), GRID) == -np.inf


def ellipsoid(semi_axes_mm, rotation_deg=0.0):
    """An ellipsoid centred on the origin, turned by ``rotation_deg`` about (1, 1, 1)."""
    a = np.ones(3) / math.sqrt(3.0)
    t = math.radians(rotation_deg)
    k = np.array([[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]])
    rot = np.eye(3) + math.sin(t) * k + (1 - math.cos(t)) * k @ k
    p = GRID.voxel_centres_mm() @ rot  # body coordinates (rot^T p)
    return ((p / np.asarray(semi_axes_mm)) ** 2).sum(axis=-1) <= 1.0


@pytest.mark.parametrize("turn_deg", [0.0, 37.0])
def test_sphere_in_a_concentric_ellipsoid_has_its_shortest_semi_axis_as_margin(turn_deg):
    # the nearest ablation-surface point to a centred sphere is at the shortest semi-axis
    mam = mg.minimal_ablative_margin_mm(ball(6.0), ellipsoid((10.0, 13.0, 16.0), turn_deg), GRID)
    assert mam == pytest.approx(10.0 - 6.0, abs=H)


@pytest.mark.parametrize("turn_deg", [0.0, 23.0])
def test_ellipsoid_in_a_concentric_sphere_has_its_longest_semi_axis_as_margin(turn_deg):
    mam = mg.minimal_ablative_margin_mm(ellipsoid((9.0, 6.0, 4.0), turn_deg), ball(14.0), GRID)
    assert mam == pytest.approx(14.0 - 9.0, abs=H)


def test_surface_margin_histogram_of_concentric_spheres():
    t, a = ball(8.0), ball(13.0)
    margins = mg.surface_margins_mm(t, a, GRID)
    assert margins.size == np.count_nonzero(mg.surface_voxels(t)) > 0
    # every surface voxel lies 5 mm (to a voxel) inside the ablation surface
    assert margins.min() == pytest.approx(5.0, abs=H) and margins.max() <= 5.0 + 2 * H
    edges, counts = mg.margin_histogram(margins)
    assert np.allclose(np.diff(edges), 1.0) and counts.sum() == margins.size
    assert edges[0] <= margins.min() and edges[-1] > margins.max()
    edges, counts = mg.margin_histogram(np.array([-np.inf]))
    assert edges.size == 0 and counts.size == 0
