"""Empirical mode against the physics mode (the reference it approximates)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from brachycryo.core.errors import DataModelError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.bioheat import simulate
from brachycryo.cryo_iceball.empirical import (
    calibrate_from_physics,
    empirical_min_temp,
    from_catalogue,
)
from brachycryo.cryo_iceball.probes import Probe, load_probe_catalogue, protocol
from brachycryo.cryo_iceball.tissue import load_tissues

PHASES = protocol(("freeze", 2.5))


@pytest.fixture(scope="module")
def setup():
    cat = load_probe_catalogue()
    gel = load_tissues()["gel"]
    m = cat["generic_17g"]
    emp = calibrate_from_physics(
        m, tissue=gel, phases=PHASES, initial_temp_c=37.0, margin_mm=16.0, backend="numba"
    )
    return m, gel, emp


def _dice(a, b):
    return 2 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def _physics(m, gel, xs):
    probes = [Probe(m, (x, 0.0, -11.0), (0, 0, 1)) for x in xs]
    grid = Grid.from_bounds((min(xs) - 18, -18, -28), (max(xs) + 18, 18, 28), 1.0)
    res = simulate(grid, probes, PHASES, tissues=[gel], initial_temp_c=37.0, backend="numba")
    return grid, probes, res.min_temp_c


def test_catalogue_tables():
    cat = load_probe_catalogue()
    emp = from_catalogue(cat["generic_17g"])
    assert [e.temp_c for e in emp.ellipsoids] == [-40.0, -20.0, 0.0]
    assert emp.ellipsoids[-1].width_mm == 16.6  # published (simulated) 0 C width
    with pytest.raises(DataModelError, match="calibrate"):
        from_catalogue(cat["generic_2p4mm"])  # Littrup gives the width only


def test_single_probe_reproduces_its_calibration(setup):
    m, gel, emp = setup
    grid, probes, phys = _physics(m, gel, [0.0])
    est = empirical_min_temp(grid, probes, {m.model: emp})
    for iso in (0.0, -20.0, -40.0):
        assert _dice(phys <= iso, est <= iso) > 0.9, iso


def test_two_probes_merge_between_union_and_superposition(setup):
    m, gel, emp = setup
    grid, probes, phys = _physics(m, gel, [-5.0, 5.0])
    models = {m.model: emp}
    vol = {iso: np.count_nonzero(phys <= iso) for iso in (0.0, -20.0)}
    union = empirical_min_temp(grid, probes, models, merge_exponent=math.inf)
    linear = empirical_min_temp(grid, probes, models, merge_exponent=1.0)
    default = empirical_min_temp(grid, probes, models)
    for iso, v in vol.items():
        assert np.count_nonzero(union <= iso) < v < np.count_nonzero(linear <= iso)
        assert _dice(phys <= iso, default <= iso) > 0.85
