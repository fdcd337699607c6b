"""The Robin probe boundary (cryogen coupling with a capacity) against analytic solutions."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from brachycryo.core.errors import DataModelError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.bioheat import BioheatOptions, simulate
from brachycryo.cryo_iceball.probes import (
    ARGON_JT_TEMP_C,
    Probe,
    ProbeModel,
    load_probe_catalogue,
    protocol,
)
from brachycryo.cryo_iceball.tissue import Tissue, load_tissues

H_MM = 0.5
R_OUT_MM = 10.0
T_OUT_C = 37.0
K_W_MK = 2.0
# constant k (frozen = unfrozen), no latent heat, no perfusion: steady radial conduction
PLAIN = Tissue("plain", K_W_MK, K_W_MK, 3600, 3600, 1000, 0.0, 0.0, -1.0, 0.0, 0.0)


def _steady_surface_c(h_w_m2k: float, cap_w: float, backend: str = "numba") -> float:
    """Surface temperature of a long 2.4 mm probe in a ring held at 37 C (radius 10 mm),
    after 4 min (about 8 times the slowest decay time R^2/(5.8 alpha) = 31 s), on a 2-D
    section one voxel thick."""
    model = ProbeModel(
        "robin", 2.4, H_MM, 0.0, -140.0, 0.0, 15.0,
        cooling_h_w_m2k=h_w_m2k, max_extraction_w=cap_w,
    )  # fmt: skip
    grid = Grid.from_bounds((-12.0, -12.0, 0.0), (12.0, 12.0, 0.0), H_MM)
    pts = grid.voxel_centres_mm()
    ring = np.hypot(pts[..., 0], pts[..., 1]) >= R_OUT_MM
    res = simulate(
        grid,
        [Probe(model, (0.0, 0.0, -H_MM / 2), (0.0, 0.0, 1.0))],
        protocol(("freeze", 4.0)),
        tissues=[PLAIN],
        initial_temp_c=T_OUT_C,
        vessel_mask=ring,
        backend=backend,
        options=BioheatOptions(vessel_temp_c=T_OUT_C, arterial_temp_c=T_OUT_C),
    )
    return float(res.extra["probe_surface_temp_c"][-1, 0])


def _log_ratio() -> float:
    return math.log(R_OUT_MM / 1.2)


def test_robin_steady_surface_matches_the_cylinder_solution():
    """Steady state: 2 pi k (T_out - T_s) / ln(R/a) = h 2 pi a (T_s - T_c) per length, so
    T_s = (h a ln(R/a) T_c + k T_out) / (h a ln(R/a) + k)."""
    h = K_W_MK / (1.2e-3 * _log_ratio())  # puts T_s half-way between T_c and T_out
    ha = h * 1.2e-3 * _log_ratio()
    expect = (ha * ARGON_JT_TEMP_C + K_W_MK * T_OUT_C) / (ha + K_W_MK)
    got = _steady_surface_c(h, math.inf)
    assert got == pytest.approx(expect, abs=1.5)  # the ring is a staircase of 0.5 mm voxels
    assert abs(got - ARGON_JT_TEMP_C) > 50  # far from a Dirichlet surface at the cryogen


def test_capacity_limit_sets_the_load():
    """With Q_max below the Robin load, the steady load is Q_max: per length of the slab,
    T_s = T_out - Q_max ln(R/a) / (2 pi k dz)."""
    dz_m = H_MM * 1e-3
    load_dirichlet = 2 * math.pi * K_W_MK * (T_OUT_C - ARGON_JT_TEMP_C) / _log_ratio() * dz_m
    cap = 0.4 * load_dirichlet
    expect = T_OUT_C - cap * _log_ratio() / (2 * math.pi * K_W_MK * dz_m)
    got = _steady_surface_c(1e7, cap)
    assert got == pytest.approx(expect, abs=1.5)
    # without the cap the same h holds the surface at the cryogen
    assert _steady_surface_c(1e7, math.inf) == pytest.approx(ARGON_JT_TEMP_C, abs=0.5)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numba_matches_numpy_with_robin_probes(dtype):
    cat = load_probe_catalogue()
    robin = dataclasses.replace(cat["generic_17g"], cooling_h_w_m2k=800.0, max_extraction_w=3.0)
    dirichlet = dataclasses.replace(cat["generic_17g"], cooling_h_w_m2k=0.0)
    grid = Grid(shape=(14, 15, 16), origin_mm=(-8, -7.5, -7), spacing_mm=(1.0, 1.0, 1.0))
    probes = [
        Probe(robin, (-3.3, -2.1, -6.0), (0.2, 0.1, 1.0)),
        Probe(dirichlet, (3.0, 2.5, -6.0), (0.0, 0.0, 1.0)),  # Dirichlet beside it
    ]
    phases = protocol(("freeze", 0.5), ("passive_thaw", 0.25), ("freeze", 0.2))
    out = {}
    for be in ("numpy", "numba"):
        out[be] = simulate(
            grid, probes, phases, tissues=[load_tissues()["gel"]], initial_temp_c=37.0, backend=be,
            options=BioheatOptions(dtype=dtype, record_every_s=5.0),
        )  # fmt: skip
    tol = 1e-8 if dtype == "float64" else 2e-2
    np.testing.assert_allclose(out["numba"].min_temp_c, out["numpy"].min_temp_c, atol=tol)
    surf = out["numpy"].extra["probe_surface_temp_c"]
    np.testing.assert_allclose(out["numba"].extra["probe_surface_temp_c"], surf, atol=tol)
    assert np.nanmin(surf[:, 0]) > ARGON_JT_TEMP_C + 5  # the Robin probe warmed under load
    assert np.nanmax(surf[:, 1]) == -140.0  # the Dirichlet one did not


def test_robin_parameters_are_checked():
    with pytest.raises(DataModelError, match="cooling_h_w_m2k"):
        ProbeModel("x", 1.5, 10, 0, -140, 0, 15, cooling_h_w_m2k=-1.0)
    with pytest.raises(DataModelError, match="max_extraction_w"):
        ProbeModel("x", 1.5, 10, 0, -140, 0, 15, cooling_h_w_m2k=100.0, max_extraction_w=0.0)
