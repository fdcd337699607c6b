"""The committed probe fit (data/probe_fit.json) is truthful, and the planner's lethal zone of
a lone 2.4 mm probe stays within the measured one."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.empirical import (
    calibrate_from_physics,
    empirical_min_temp,
    measured_lethal_widths,
)
from brachycryo.cryo_iceball.fit import (
    MEASUREMENTS,
    case_by_name,
    case_metrics,
    load_fit_report,
    simulate_case,
)
from brachycryo.cryo_iceball.probes import Probe, load_probe_catalogue, protocol
from brachycryo.cryo_iceball.tissue import load_tissues

REPORT = load_fit_report()
TABLES = ("residuals", "dirichlet_minus140_residuals")


@pytest.mark.parametrize("table", TABLES)
def test_every_measurement_is_reported_with_its_misfit(table):
    rows = REPORT[table]
    assert [(r["case"], r["metric"], r["measured"], r["tolerance"]) for r in rows] == [
        (m.case, m.metric, m.value, m.tolerance) for m in MEASUREMENTS
    ]
    for r in rows:
        assert r["misfit"] == pytest.approx(r["model"] - r["measured"], abs=2e-3)
        assert r["within_tolerance"] == (abs(r["misfit"]) <= r["tolerance"])


def test_packaged_probes_carry_the_fitted_parameters():
    cat = load_probe_catalogue()
    for name, fitted in REPORT["fitted"].items():
        assert cat[name].cooling_h_w_m2k == fitted["cooling_h_w_m2k"]
        assert cat[name].max_extraction_w == float(fitted["max_extraction_w"])


@pytest.mark.parametrize("case_name", ["littrup_1", "gel_17g_1"])
def test_reported_figures_match_a_fresh_simulation(case_name):
    """The single-probe rows of the table against a new run of the packaged probe on the
    fit grid (2 mm, about a second each)."""
    case = case_by_name(case_name)
    model = load_probe_catalogue()[case.probe_model]
    grid, res = simulate_case(case, model, grid_mm=REPORT["fit_grid_mm"], backend="numba")
    fresh = case_metrics(grid, res)
    rows = [r for r in REPORT["residuals"] if r["case"] == case_name]
    assert rows
    for r in rows:
        assert fresh[r["metric"]] == pytest.approx(r["model"], abs=0.05), r["metric"]


def _lethal_radius_mm(emp, model, temp_c: float) -> float:
    """Largest distance from the probe axis of the empirical map's ``temp_c`` region."""
    half = model.active_length_mm / 2
    probe = Probe(model, (0.0, 0.0, -half), (0.0, 0.0, 1.0))
    grid = Grid.from_bounds((-15, -15, -half), (15, 15, half), 0.5)
    temp = empirical_min_temp(grid, [probe], {model.model: emp})
    pts = grid.voxel_centres_mm()[temp <= temp_c]
    return float(np.hypot(pts[:, 0], pts[:, 1]).max())


@pytest.mark.parametrize(
    "tissue, body_c, phases",
    [
        ("gel", 39.0, (("freeze", 15.0),)),  # the measurement's conditions
        ("tumor", 37.0, (("freeze", 10.0), ("passive_thaw", 8.0), ("freeze", 10.0))),  # planner
    ],
)
def test_lone_probe_lethal_zone_within_the_measured_one(tissue, body_c, phases):
    """Littrup 2009: one 2.4 mm probe, -30 C diameter 12 mm.  The calibration the planner
    uses (planning.cryo_layout: tumour, 37 C, 10-8-10 min, 2 mm grid) and one under the
    measured conditions never plan a wider lethal zone, while the physics itself is wider
    (so the ceiling is what keeps it there)."""
    model = load_probe_catalogue()["generic_2p4mm"]
    (meas,) = measured_lethal_widths(model.model)
    assert (meas.temp_c, meas.width_mm) == (-30.0, 12.0)
    emp = calibrate_from_physics(
        model, tissue=load_tissues()[tissue], phases=protocol(*phases),
        initial_temp_c=body_c, spacing_mm=2.0, backend="numba",
    )  # fmt: skip
    assert "capped to measured -30 C width" in emp.source  # the physics was wider
    for e in emp.ellipsoids:
        if e.temp_c <= meas.temp_c:
            assert e.width_mm <= meas.width_mm
    for lethal_c in (-30.0, -40.0):
        assert _lethal_radius_mm(emp, model, lethal_c) <= meas.width_mm / 2 + 1e-9
    assert math.isfinite(emp.probe_temp_c)
