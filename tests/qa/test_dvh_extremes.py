"""DVH extremes stay inside the dose the grid gives (issue 14, item 8).

Next to a seed the dose changes by orders of magnitude across one dose voxel; a sample's
spread (a linear dose over its volume element) must not carry the DVH beyond the dose
that the trilinearly interpolated grid takes in the structure.  The bound asserted here
is computed independently of the code under test, from the grid values alone: the
minimum and maximum of the stored dose at the corners of every dose cell that the
structure, grown by half a sub-voxel (the reach of a sample's volume element beyond the
contours), overlaps.  The trilinear dose anywhere in those cells is a convex combination
of those corner values, so no honest DVH of the structure can leave that interval.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brachycryo.core.grid import Grid
from brachycryo.dicom_io.rtstruct import ROI, Contour
from brachycryo.qa.dvh import dvh_from_roi
from brachycryo.qa.metrics import dose_at_volume_pct
from tests.analytic_shapes import circle
from tests.qa.analytic_dvh import rotation

SLICE_MM = 2.0
N_POLY = 64
#: area-preserving polygon: vertices lie this factor outside the circle (tests.analytic_shapes)
POLY_SCALE = np.sqrt(2 * np.pi / (N_POLY * np.sin(2 * np.pi / N_POLY)))


def _disc_stack(centre_mm, radius_mm):
    """A sphere contoured on 2 mm slices: (plane z, disc radius) of every contour."""
    cz = centre_mm[2]
    planes = np.arange(-40.0, 40.0, SLICE_MM) + 0.5
    return [
        (float(z), float(np.sqrt(radius_mm**2 - (z - cz) ** 2)))
        for z in planes
        if radius_mm**2 - (z - cz) ** 2 > 1.0
    ]


def _roi(centre_mm, discs) -> ROI:
    cx, cy, _ = centre_mm
    return ROI(1, "S", contours=tuple(Contour(circle(cx, cy, z, r, n=N_POLY)) for z, r in discs))


def _corner_bounds(dose_gy, grid: Grid, centre_mm, discs, reach_mm):
    """Min / max of the stored dose over the corners of the dose cells that the structure
    (each contour's slab, +-SLICE_MM/2 about its plane) grown by ``reach_mm`` overlaps.

    Written for an axis-aligned dose grid; a cell is a box between neighbouring nodes.
    """
    xs = grid.origin_mm[0] + grid.spacing_mm[0] * np.arange(grid.shape[2])
    ys = grid.origin_mm[1] + grid.spacing_mm[1] * np.arange(grid.shape[1])
    zs = grid.origin_mm[2] + grid.spacing_mm[2] * np.arange(grid.shape[0])
    used = np.zeros(grid.shape, dtype=bool)
    cx, cy, _ = centre_mm
    # in-plane distance from the disc axis to each cell's rectangle
    dx = np.maximum(np.maximum(xs[:-1] - cx, cx - xs[1:]), 0.0)
    dy = np.maximum(np.maximum(ys[:-1] - cy, cy - ys[1:]), 0.0)
    rho = np.hypot(dy[:, None], dx[None, :])  # (cells j, cells i)
    for z, r in discs:
        z_lo, z_hi = z - SLICE_MM / 2 - reach_mm, z + SLICE_MM / 2 + reach_mm
        cells_k = np.nonzero((zs[1:] >= z_lo) & (zs[:-1] <= z_hi))[0]
        hit = rho <= r * POLY_SCALE + reach_mm
        jj, ii = np.nonzero(hit)
        for k in cells_k:
            for a in (0, 1):
                for b in (0, 1):
                    for c in (0, 1):
                        used[k + a, jj + b, ii + c] = True
    return float(dose_gy[used].min()), float(dose_gy[used].max())


def _grid(spacing_mm=2.0, half_mm=24.0, shift_mm=(0.37, -0.21, 0.53)) -> Grid:
    n = round(2 * half_mm / spacing_mm) + 1
    origin = tuple(-half_mm + s for s in shift_mm)
    return Grid((n, n, n), origin, (spacing_mm,) * 3)


def _point_source(grid: Grid, seeds_mm, strength=2000.0, core_mm=0.3) -> np.ndarray:
    c = grid.voxel_centres_mm()
    dose = np.zeros(grid.shape)
    for s in np.atleast_2d(seeds_mm):
        dose += strength / (np.sum((c - s) ** 2, axis=-1) + core_mm**2)
    return dose


def _reach_mm(dvh, grid: Grid) -> float:
    """How far a sample's element can reach past the ROI: half a sub-voxel's diagonal (an
    element's corner lies half a sub-voxel beyond an inside sub-point along every axis)."""
    n = dvh.settings["supersample"]
    return np.sqrt(3) / 2 * max(dvh.settings["sampling_spacing_mm"]) / n + 1e-6


#: interior sampling: every sub-point (small structures) or voxel centres (body-sized ones)
INTERIOR = {"sub-points": 1 << 22, "voxel-centres": 0}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("interior", sorted(INTERIOR))
@pytest.mark.parametrize(
    "seed_mm",
    [(3.1, -2.3, 1.7), (6.9, 0.4, -0.6), (0.0, 0.0, 0.0), (9.2, 0.1, 0.2)],
    ids=["inside", "near-edge", "centre", "at-edge"],
)
def test_seed_inside_structure_extremes_within_interpolated_dose(seed_mm, interior, dtype):
    """1/r^2 from a seed inside a 10 mm sphere, 2 mm dose grid: Dmin, Dmax, D98, D100."""
    grid = _grid()
    centre = (0.0, 0.0, 0.0)
    discs = _disc_stack(centre, 10.0)
    dose = _point_source(grid, seed_mm).astype(dtype)
    dvh = dvh_from_roi(
        _roi(centre, discs),
        dose,
        grid,
        slice_thickness_mm=SLICE_MM,
        subpoint_limit=INTERIOR[interior],
    )
    lo, hi = _corner_bounds(dose, grid, centre, discs, _reach_mm(dvh, grid))
    assert dvh.volume_outside_dose_cc == 0.0
    rel = 1e-6 if dtype == np.float32 else 1e-12
    assert dvh.dmin_gy >= lo * (1 - rel), (dvh.dmin_gy, lo)
    assert dvh.dmax_gy <= hi * (1 + rel), (dvh.dmax_gy, hi)
    for x in (0, 2, 50, 90, 98, 100):
        assert lo * (1 - rel) <= dose_at_volume_pct(dvh, x) <= hi * (1 + rel), x
    assert dose_at_volume_pct(dvh, 100) == pytest.approx(dvh.dmin_gy, rel=1e-12)


@pytest.mark.parametrize("interior", sorted(INTERIOR))
def test_seed_outside_next_to_structure(interior):
    """A seed 1 mm outside the surface: the hottest dose in the structure, not the seed's."""
    grid = _grid()
    centre = (0.0, 0.0, 0.0)
    discs = _disc_stack(centre, 8.0)
    dose = _point_source(grid, (9.3, 0.2, 0.4))
    roi = _roi(centre, discs)
    dvh = dvh_from_roi(
        roi, dose, grid, slice_thickness_mm=SLICE_MM, subpoint_limit=INTERIOR[interior]
    )
    lo, hi = _corner_bounds(dose, grid, centre, discs, _reach_mm(dvh, grid))
    assert lo * (1 - 1e-12) <= dvh.dmin_gy <= dvh.dmax_gy <= hi * (1 + 1e-12)


@pytest.mark.parametrize("interior", sorted(INTERIOR))
@pytest.mark.parametrize("angle_deg", [0.0, 30.0])
def test_given_sampling_grid_extremes(interior, angle_deg):
    """A caller's sampling grid (the CT grid, or one oblique to the dose grid): the element
    of a sample is a voxel or sub-voxel of that grid, reaching half a sub-voxel diagonal."""
    grid = _grid()
    centre = (0.0, 0.0, 0.0)
    discs = _disc_stack(centre, 10.0)
    dose = _point_source(grid, (4.2, -3.3, 0.9))
    r = rotation((1.0, 1.0, 0.0), angle_deg)
    sampling = Grid((24, 24, 24), r @ np.full(3, -14.25), (1.25,) * 3, tuple(r.reshape(-1)))
    dvh = dvh_from_roi(
        _roi(centre, discs),
        dose,
        grid,
        sampling_grid=sampling,
        supersample=2,
        slice_thickness_mm=SLICE_MM,
        subpoint_limit=INTERIOR[interior],
    )
    reach = np.sqrt(3) / 2 * 1.25 / 2 + 1e-6
    lo, hi = _corner_bounds(dose, grid, centre, discs, reach)
    assert lo * (1 - 1e-12) <= dvh.dmin_gy <= dvh.dmax_gy <= hi * (1 + 1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("interior", sorted(INTERIOR))
def test_uniform_dose_in_structure_gives_that_dose_exactly(interior, dtype):
    """57 Gy at every grid node whose cell the structure reaches, a steep rise beyond (a
    seed's dose next to the target): every point of the structure gets 57 Gy, so must
    Dmin, Dmax, D98, D100 and the mean."""
    grid = _grid(shift_mm=(0.0, 0.0, 0.0))  # nodes on even mm
    centre = (0.0, 0.0, 0.0)
    discs = _disc_stack(centre, 8.6)  # planes -7.5 ... 8.5, slabs -8.5 ... 9.5
    c = grid.voxel_centres_mm()
    cheb = np.max(np.abs(c), axis=-1)  # the plateau is a cube
    # the structure reaches |x|, |y| <= 8.6 * 1.0016 + reach, |z| <= 9.5 + reach (reach
    # <= 0.44 mm): cells to 10 mm
    dose = np.where(cheb <= 10.0 + 1e-9, 57.0, 57.0 + 400.0 * (cheb - 10.0)).astype(dtype)
    dvh = dvh_from_roi(
        _roi(centre, discs),
        dose,
        grid,
        slice_thickness_mm=SLICE_MM,
        subpoint_limit=INTERIOR[interior],
    )
    lo, hi = _corner_bounds(dose, grid, centre, discs, _reach_mm(dvh, grid))
    assert lo == hi == 57.0  # the test's premise: the structure sees 57 Gy only
    assert dvh.dmin_gy == 57.0
    assert dvh.dmax_gy == 57.0
    for x in (0, 2, 50, 90, 98, 100):
        assert dose_at_volume_pct(dvh, x) == 57.0, x
    assert dvh.dmean_gy == pytest.approx(57.0, rel=1e-12)


def test_uniform_dose_everywhere():
    grid = _grid()
    discs = _disc_stack((1.0, -2.0, 0.3), 6.0)
    dvh = dvh_from_roi(
        _roi((1.0, -2.0, 0.3), discs), np.full(grid.shape, 57.0), grid, slice_thickness_mm=2.0
    )
    assert dvh.dmin_gy == dvh.dmax_gy == 57.0
    assert dose_at_volume_pct(dvh, 98) == 57.0


@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 4),  # sources
    st.sampled_from([1.0, 2.0, 2.5]),  # dose grid spacing, mm
    st.floats(5.0, 11.0),  # radius, mm
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from(sorted(INTERIOR)),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_extremes_within_grid_dose_random_fields(seed, n_src, spacing, radius, dtype, interior):
    """Random smooth fields (point sources inside and around the structure, a linear
    gradient, a constant): the extremes never leave the grid's dose in the structure."""
    rng = np.random.default_rng(seed)
    grid = _grid(spacing_mm=spacing, half_mm=20.0, shift_mm=tuple(rng.uniform(-0.5, 0.5, 3)))
    centre = tuple(rng.uniform(-2.0, 2.0, 3))
    discs = _disc_stack(centre, radius)
    seeds = np.asarray(centre) + rng.uniform(-radius - 3, radius + 3, (n_src, 3))
    c = grid.voxel_centres_mm()
    dose = _point_source(grid, seeds, strength=rng.uniform(100, 5000), core_mm=0.2)
    dose += rng.uniform(0, 50) + c @ rng.uniform(-2.0, 2.0, 3)
    dose = np.maximum(dose, 0.0).astype(dtype)
    dvh = dvh_from_roi(
        _roi(centre, discs),
        dose,
        grid,
        slice_thickness_mm=SLICE_MM,
        subpoint_limit=INTERIOR[interior],
    )
    lo, hi = _corner_bounds(dose, grid, centre, discs, _reach_mm(dvh, grid))
    rel = 1e-6 if dtype == np.float32 else 1e-12
    assert dvh.dmin_gy >= lo * (1 - rel) - 1e-12, (dvh.dmin_gy, lo)
    assert dvh.dmax_gy <= hi * (1 + rel), (dvh.dmax_gy, hi)
    assert lo * (1 - rel) - 1e-12 <= dose_at_volume_pct(dvh, 98) <= hi * (1 + rel)
