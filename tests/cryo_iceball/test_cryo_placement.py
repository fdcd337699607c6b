"""Probe placement: coverage, OAR margin, spacing rules, and what binds when infeasible."""

from __future__ import annotations

import numpy as np
import pytest

from brachycryo.core.errors import InfeasiblePlanError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.empirical import EmpiricalProbe, IsothermEllipsoid, empirical_min_temp
from brachycryo.cryo_iceball.isotherms import min_distance_mm
from brachycryo.cryo_iceball.placement import PlacementRules, place_probes
from brachycryo.cryo_iceball.probes import load_probe_catalogue

# a fixed isotherm table (not physics: the search is what is tested here)
EMP = EmpiricalProbe(
    "generic_17g",
    (
        IsothermEllipsoid(-40.0, 10.0, 28.0),
        IsothermEllipsoid(-20.0, 14.0, 30.0),
        IsothermEllipsoid(0.0, 20.0, 34.0),
    ),
    probe_temp_c=-140.0,
    body_temp_c=37.0,
    probe_radius_mm=0.75,
)
GRID = Grid.from_bounds((-25, -25, -25), (25, 25, 25), 1.0)
PTS = GRID.voxel_centres_mm()


def sphere(centre, r):
    return np.linalg.norm(PTS - np.asarray(centre), axis=-1) <= r


def test_feasible_layout_meets_every_rule():
    core = sphere((0, 0, 0), 7.0)
    oar = sphere((0, 21, 0), 3.0)
    model = load_probe_catalogue()["generic_17g"]
    rules = PlacementRules()
    res = place_probes(GRID, core, {"rectum": oar}, model, EMP, rules=rules)
    temp = empirical_min_temp(GRID, res.probes, {model.model: EMP})
    cov = np.count_nonzero(core & (temp <= -40)) / np.count_nonzero(core)
    assert cov >= 0.95 and cov == pytest.approx(res.coverage)
    assert min_distance_mm(temp <= 0, oar, GRID) >= 5.0
    pos = np.array([p.active_centre_mm() for p in res.probes])
    if len(pos) > 1:
        d = np.linalg.norm(pos[:, None] - pos[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        assert d.min() >= 10.0 - 1e-9 and np.all(d.min(axis=1) <= 20.0)
    assert len(res.probes) >= 2  # one probe's -40 C ellipsoid (5 mm radius) is too small


def test_oar_too_close_names_the_oar():
    core = sphere((0, 0, 0), 6.0)
    oar = sphere((0, 14, 0), 3.0)  # some layouts keep clear of it, none covers the core
    model = load_probe_catalogue()["generic_17g"]
    with pytest.raises(InfeasiblePlanError, match="rectum") as exc:
        place_probes(GRID, core, {"rectum": oar, "far": sphere((20, -20, 0), 2)}, model, EMP)
    assert exc.value.binding == ["rectum"]
    assert 0 < exc.value.best.get("coverage", 0) < 0.95


def test_spacing_rule_binds():
    core = sphere((0, 0, 0), 8.0)
    model = load_probe_catalogue()["generic_17g"]
    rules = PlacementRules(
        min_spacing_mm=30.0, max_spacing_mm=40.0, max_probes=3, candidate_step_mm=4.0
    )
    with pytest.raises(InfeasiblePlanError) as exc:
        place_probes(GRID, core, {}, model, EMP, rules=rules)
    assert exc.value.binding == ["min_spacing_mm/max_spacing_mm"]


def test_probes_from_entry_points_converge():
    core = sphere((0, 0, 0), 6.0)
    model = load_probe_catalogue()["generic_17g"]
    entries = [(-50.0, 0.0, 80.0), (50.0, 0.0, 80.0)]
    rules = PlacementRules(candidate_step_mm=2.5)
    res = place_probes(GRID, core, {}, model, EMP, entry_points_mm=entries, rules=rules)
    assert res.coverage >= 0.95
    for p in res.probes:
        d = np.asarray(p.direction)
        to_entry = [np.asarray(e) - p.active_centre_mm() for e in entries]
        cos = max(float(d @ (v / np.linalg.norm(v))) for v in to_entry)
        assert cos == pytest.approx(1.0, abs=1e-9)  # each track points at an entry point
