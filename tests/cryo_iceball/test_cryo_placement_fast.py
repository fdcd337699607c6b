"""The sparse probe search equals the dense reference (``placement_reference.py``) to the
last bit: the same probes in the same order, the same coverage and OAR distances, the same
errors; and the cooling boxes leave ``empirical_min_temp`` unchanged."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brachycryo.core.errors import InfeasiblePlanError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball import placement
from brachycryo.cryo_iceball.empirical import (
    EmpiricalProbe,
    IsothermEllipsoid,
    cooling_box,
    cooling_extent_mm,
    empirical_min_temp,
)
from brachycryo.cryo_iceball.placement import PlacementRules, place_probes
from brachycryo.cryo_iceball.probes import Probe, load_probe_catalogue
from tests.cryo_iceball.placement_reference import ReferenceSearch, dense_min_temp

EMP = EmpiricalProbe(
    "generic_17g",
    (
        IsothermEllipsoid(-40.0, 10.0, 28.0),
        IsothermEllipsoid(-20.0, 14.0, 30.0, 1.5),
        IsothermEllipsoid(0.0, 20.0, 34.0),
    ),
    probe_temp_c=-140.0,
    body_temp_c=37.0,
    probe_radius_mm=0.75,
)
GRID = Grid.from_bounds((-25, -25, -25), (25, 25, 25), 1.0)
PTS = GRID.voxel_centres_mm()
MODEL = load_probe_catalogue()["generic_17g"]


def sphere(centre, r):
    return np.linalg.norm(PTS - np.asarray(centre), axis=-1) <= r


def _outcome(monkeypatch, search_cls, *args, **kwargs):
    monkeypatch.setattr(placement, "_Search", search_cls)
    try:
        res = place_probes(*args, **kwargs)
    except InfeasiblePlanError as exc:
        return ("infeasible", str(exc), exc.binding, exc.best)
    return (res.probes, res.coverage, res.oar_min_distance_mm, res.method)


CASES = {
    "parallel, OAR": dict(core=((0, 0, 0), 7.0), oars={"rectum": ((0, 21, 0), 3.0)}),
    "infeasible, OAR binds": dict(
        core=((0, 0, 0), 6.0), oars={"rectum": ((0, 14, 0), 3.0), "far": ((20, -20, 0), 2)}
    ),
    "best effort, tilted": dict(
        core=((1, -2, 0), 8.0),
        oars={"rectum": ((0, 16, 0), 3.0)},
        direction=(0.3, 0.2, 0.93),
        best_effort=True,
        rules=PlacementRules(max_probes=4),
    ),
    "converging": dict(
        core=((0, 0, 0), 6.0), oars={}, entry_points_mm=[(-50.0, 0.0, 80.0), (50.0, 0.0, 80.0)]
    ),
    "max merge, spacing binds": dict(
        core=((0, 0, 0), 8.0),
        oars={},
        merge_exponent=math.inf,
        rules=PlacementRules(min_spacing_mm=30.0, max_spacing_mm=40.0, max_probes=3),
    ),
    "linear merge, track checks": dict(
        core=((0, 0, 0), 7.0),
        oars={"rectum": ((0, 20, 0), 3.0)},
        merge_exponent=1.0,
        candidate_ok=lambda p: p.tip_mm[0] < 4.0,
        pair_ok=lambda a, b: abs(a.tip_mm[1] - b.tip_mm[1]) > 1.0,
    ),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fast_search_equals_dense_reference(monkeypatch, name):
    case = dict(CASES[name])
    core = sphere(*case.pop("core"))
    oars = {n: sphere(*c) for n, c in case.pop("oars").items()}
    args = (GRID, core, oars, MODEL, EMP)
    ref = _outcome(monkeypatch, ReferenceSearch, *args, **case)
    cache: dict = {}
    fast = _outcome(monkeypatch, placement._Search, *args, grid_cache=cache, **case)
    assert fast == ref
    again = _outcome(monkeypatch, placement._Search, *args, grid_cache=cache, **case)
    assert again == ref  # the shared distance maps give the same answer


@pytest.mark.parametrize("m", [2.0, 1.0, math.inf])
def test_cooling_boxes_leave_the_min_temp_unchanged(m):
    probes = [
        Probe(MODEL, (3.0, -2.0, -12.0), (0.0, 0.0, 1.0)),
        Probe(MODEL, (-22.0, 5.0, 4.0), (0.8, 0.0, 0.6)),  # tilted, its box clipped by the grid
        Probe(MODEL, (-4.0, 8.0, 20.0), (0.2, -0.3, -0.933)),
    ]
    fast = empirical_min_temp(GRID, probes, {MODEL.model: EMP}, merge_exponent=m)
    assert np.array_equal(fast, dense_min_temp(GRID, probes, EMP, m))


def test_cooling_box_holds_every_cooled_voxel():
    probe = Probe(MODEL, (2.0, -3.0, -10.0), (0.36, 0.48, 0.8))
    grid = Grid.from_bounds((-60, -60, -60), (60, 60, 60), 2.0)
    cooled = dense_min_temp(grid, [probe], EMP) < EMP.body_temp_c
    inside = np.zeros(grid.shape, dtype=bool)
    inside[cooling_box(grid, probe, EMP)] = True
    assert cooled.any() and not np.any(cooled & ~inside)
    assert inside.sum() < 0.5 * inside.size  # and it is a box around the probe, not the grid
    radius, lo, hi = cooling_extent_mm(EMP)
    assert radius > 10.0 and lo < -17.0 and hi > 17.0


@pytest.mark.parametrize(
    "emp",
    [
        EMP,
        EmpiricalProbe(  # one isotherm: the tail from the probe radius
            "one", (IsothermEllipsoid(-20.0, 14.0, 30.0),), -140.0, 37.0, 0.75
        ),
        EmpiricalProbe(  # not nested: offsets and a long thin cold isotherm
            "odd",
            (
                IsothermEllipsoid(-60.0, 3.0, 40.0, -4.0),
                IsothermEllipsoid(-40.0, 10.0, 22.0, 3.0),
                IsothermEllipsoid(0.0, 18.0, 30.0),
            ),
            -150.0,
            37.0,
            1.2,
        ),
    ],
)
def test_probe_temperature_equals_the_dense_one(emp):
    from brachycryo.cryo_iceball.empirical import _probe_temperature
    from tests.cryo_iceball.placement_reference import dense_probe_temperature

    probe = Probe(MODEL, (1.0, -2.0, -12.0), (0.36, 0.48, 0.8))
    pts = np.random.default_rng(3).normal(scale=15.0, size=(7, 9, 11, 3))
    assert np.array_equal(
        _probe_temperature(pts, probe, emp), dense_probe_temperature(pts, probe, emp)
    )
    flat = pts.reshape(-1, 3)
    assert np.array_equal(
        _probe_temperature(flat, probe, emp), dense_probe_temperature(flat, probe, emp)
    )
