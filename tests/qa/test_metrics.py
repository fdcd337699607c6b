"""Metric definitions on DVHs with known answers (uniform dose distributions)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brachycryo.core.errors import ConfigError, GeometryError
from brachycryo.qa.dvh import default_bin_width_gy, dvh_from_samples
from brachycryo.qa.metrics import (
    conformity_index,
    dose_at_volume_cc,
    dose_at_volume_pct,
    external_volume_index,
    homogeneity_index,
    isodose_volume_cc,
    metric_value,
    plan_indices,
    structure_metrics,
    volume_at_dose_cc,
    volume_at_dose_pct,
)


def uniform_dvh(lo=0.0, hi=100.0, volume_cc=100.0, n=1000):
    """n samples spread uniformly: the dose is uniform on [lo, hi] over ``volume_cc``.

    Exact: V(>= D) = volume (hi - D) / (hi - lo); Dx% = hi - x/100 (hi - lo).
    """
    w = (hi - lo) / n
    d = lo + (np.arange(n) + 0.5) * w
    return dvh_from_samples(d, np.full(n, volume_cc / n), spread_gy=np.full(n, w), name="U")


def test_uniform_distribution_dx_vx_exact():
    dvh = uniform_dvh()
    assert dvh.volume_cc == pytest.approx(100.0)
    assert dvh.dmin_gy == pytest.approx(0.0) and dvh.dmax_gy == pytest.approx(100.0)
    assert dvh.dmean_gy == pytest.approx(50.0)
    for x in (2, 10, 50, 90, 98):
        assert dose_at_volume_pct(dvh, x) == pytest.approx(100 - x, abs=1e-6)
    assert dose_at_volume_pct(dvh, 100) == pytest.approx(0.0, abs=1e-9)
    assert dose_at_volume_cc(dvh, 2.0) == pytest.approx(98.0, abs=1e-6)
    assert dose_at_volume_cc(dvh, 0.1) == pytest.approx(99.9, abs=1e-6)
    for d in (0.0, 12.345, 50.0, 99.99):
        assert volume_at_dose_cc(dvh, d) == pytest.approx(100 - d, abs=1e-6)
    assert volume_at_dose_cc(dvh, 150) == 0.0


def test_point_masses_dx_not_snapped_to_bins():
    # 100 cc at 10 Gy and 100 cc at 30 Gy: D50 is the hottest half's minimum, 30 Gy;
    # anything above 50 % reaches into the 10 Gy half
    dvh = dvh_from_samples(np.array([10.0, 30.0]), np.array([100.0, 100.0]))
    assert dose_at_volume_pct(dvh, 50) == pytest.approx(30.0)
    assert dose_at_volume_pct(dvh, 60) == pytest.approx(10.0, abs=0.01)
    assert dose_at_volume_pct(dvh, 100) == 10.0
    assert volume_at_dose_pct(dvh, 20.0) == pytest.approx(50.0)
    # odd doses: the value read back is the sample's dose, not a bin edge
    dvh = dvh_from_samples(np.array([12.3456789]), np.array([1.0]))
    assert dose_at_volume_pct(dvh, 100) == 12.3456789
    assert dose_at_volume_pct(dvh, 0) == 12.3456789


def test_dcc_larger_than_structure_is_undefined():
    dvh = uniform_dvh(volume_cc=1.0)
    assert math.isnan(dose_at_volume_cc(dvh, 2.0))
    m = structure_metrics(dvh, prescription_gy=50)
    assert m["d2cc_gy"] is None and m["d0.1cc_gy"] == pytest.approx(90.0, abs=1e-6)


def test_structure_metrics_keys_and_values():
    dvh = uniform_dvh()
    m = structure_metrics(dvh, prescription_gy=40.0, v_gy=(20,))
    for key in (
        "volume_cc",
        "dmin_gy",
        "dmean_gy",
        "dmax_gy",
        "d90_gy",
        "d98_gy",
        "d100_gy",
        "d50_gy",
        "d2cc_gy",
        "d0.1cc_gy",
        "v100_pct",
        "v150_pct",
        "v200_pct",
    ):
        assert key in m
    assert m["v100_pct"] == pytest.approx(60.0)  # >= 40 Gy
    assert m["v150_pct"] == pytest.approx(40.0)  # >= 60 Gy
    assert m["v200_pct"] == pytest.approx(20.0)  # >= 80 Gy
    assert m["v20gy_pct"] == pytest.approx(80.0) and m["v20gy_cc"] == pytest.approx(80.0)
    assert structure_metrics(dvh)["v100_pct"] is None  # no prescription


def test_indices_closed_form():
    """Target uniform on [0, 100] Gy over 100 cc, Rx 50 Gy, V_ref 80 cc:
    V_T,ref = 50, V_T,1.5ref = 25 -> CI = 0.5 * 50/80, EI = 30/100, HI = 25/50."""
    t = uniform_dvh()
    assert conformity_index(t, 80.0, 50.0) == pytest.approx(0.3125)
    assert external_volume_index(t, 80.0, 50.0) == pytest.approx(0.3)
    assert homogeneity_index(t, 50.0) == pytest.approx(0.5)
    p = plan_indices(t, 80.0, 50.0)
    assert p["ci"] == pytest.approx(0.3125) and p["v_t_ref_cc"] == pytest.approx(50.0)
    with pytest.raises(ConfigError):
        conformity_index(t, 80.0, 0.0)


def test_isodose_volume_counts_voxels():
    from brachycryo.core.grid import Grid

    g = Grid((4, 5, 6), (0, 0, 0), (2.0, 2.0, 2.5))
    dose = np.zeros(g.shape)
    dose[1:3, 1:4, 2:5] = 10.0
    assert isodose_volume_cc(dose, g, 10.0) == pytest.approx(18 * 10.0 / 1000)
    within = np.zeros(g.shape, bool)
    within[1] = True
    assert isodose_volume_cc(dose, g, 10.0, within=within) == pytest.approx(9 * 10.0 / 1000)


def test_metric_value_names():
    dvh = uniform_dvh()
    assert metric_value(dvh, "D90") == pytest.approx(10.0)
    assert metric_value(dvh, "d2cc") == pytest.approx(98.0)
    assert metric_value(dvh, "V100", prescription_gy=50) == pytest.approx(50.0)
    assert metric_value(dvh, "V30Gy") == pytest.approx(70.0)
    assert metric_value(dvh, "V30Gy_cc") == pytest.approx(70.0)
    assert metric_value(dvh, "Dmax") == pytest.approx(100.0)
    with pytest.raises(ConfigError):
        metric_value(dvh, "V100")  # needs a prescription
    with pytest.raises(ConfigError):
        metric_value(dvh, "Q5")


def test_bins_fine_enough():
    assert default_bin_width_gy(145.0) == 0.01
    assert default_bin_width_gy(2.0) == pytest.approx(1e-4)
    assert default_bin_width_gy(5e5) >= 0.25  # never more than 2e6 bins


def test_bad_samples_raise_project_errors():
    with pytest.raises(GeometryError):
        dvh_from_samples(np.array([1.0, np.nan]), np.ones(2))
    with pytest.raises(GeometryError):
        dvh_from_samples(np.array([-1.0]), np.ones(1))
    with pytest.raises(GeometryError):
        dvh_from_samples(np.ones(3), np.ones(2))


# ------------------------------------------------- reference isodose volume per target
def _two_lesion_field():
    """Two exponential dose clouds at x = -20 and +20 mm (the right one 3x hotter) and a
    5 mm target sphere in each; returns grid, dose, target masks and voxel x (mm)."""
    from brachycryo.core.grid import Grid

    grid = Grid.from_bounds((-40, -20, -20), (40, 20, 20), 2.0)
    kk, jj, ii = np.indices(grid.shape)
    pts = grid.ijk_to_mm(np.stack([ii, jj, kk], axis=-1).astype(float))
    r_a = np.linalg.norm(pts - np.array([-20.0, 0, 0]), axis=-1)
    r_b = np.linalg.norm(pts - np.array([20.0, 0, 0]), axis=-1)
    dose = 100.0 * (np.exp(-r_a / 6.0) + 3.0 * np.exp(-r_b / 6.0))
    return grid, dose, r_a <= 5.0, r_b <= 5.0, pts[..., 0]


def test_each_target_gets_the_isodose_cloud_around_it():
    from brachycryo.qa.metrics import isodose_volume_cc, isodose_volumes_by_target_cc

    grid, dose, a, b, x = _two_lesion_field()
    level = 50.0
    v_a, v_b = isodose_volumes_by_target_cc(dose, grid, [a, b], [level, level])
    total = isodose_volume_cc(dose, grid, level)
    assert v_a + v_b == pytest.approx(total)  # a partition of the isodose volume
    # the clouds do not meet: each target gets exactly its own
    assert v_a == pytest.approx(isodose_volume_cc(np.where(x < 0, dose, 0), grid, level))
    assert v_b > 3 * v_a  # the hotter lesion's cloud is larger
    # one target alone: the whole isodose volume
    assert isodose_volumes_by_target_cc(dose, grid, [a], [level]) == [pytest.approx(total)]


def test_each_target_at_its_own_prescription():
    from brachycryo.qa.metrics import isodose_volume_cc, isodose_volumes_by_target_cc

    grid, dose, a, b, x = _two_lesion_field()
    v_a, v_b = isodose_volumes_by_target_cc(dose, grid, [a, b], [50.0, 150.0])
    assert v_a == pytest.approx(isodose_volume_cc(np.where(x < 0, dose, 0), grid, 50.0))
    assert v_b == pytest.approx(isodose_volume_cc(np.where(x > 0, dose, 0), grid, 150.0))


def test_reference_isodose_per_target_refuses_bad_input():
    from brachycryo.qa.metrics import isodose_volumes_by_target_cc

    grid, dose, a, b, _ = _two_lesion_field()
    with pytest.raises(GeometryError, match="2 targets but 1"):
        isodose_volumes_by_target_cc(dose, grid, [a, b], [50.0])
    with pytest.raises(GeometryError, match="empty"):
        isodose_volumes_by_target_cc(dose, grid, [np.zeros_like(a)], [50.0])
