"""Backend parity of the bioheat step: numba (serial and parallel) and CUDA vs numpy.

Every setting is covered: dtype, outer boundary, all three protocol phases (with a freeze
ramp), perfusion and metabolism on and off, several tissues, a vessel, oblique probes.
"""

from __future__ import annotations

import numpy as np
import pytest

from brachycryo.core.backend import gpu_available
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.bioheat import BioheatOptions, simulate
from brachycryo.cryo_iceball.probes import Probe, ProbeModel, load_probe_catalogue, protocol
from brachycryo.cryo_iceball.tissue import load_tissues

TOL = {"float64": 1e-8, "float32": 2e-2}


def _case(dtype: str, outer: str, perfused: bool, backend: str, parallel: bool | None = None):
    tis = load_tissues()
    tissues = [tis["soft_tissue"] if perfused else tis["gel"], tis["liver"], tis["lung"]]
    grid = Grid(shape=(14, 15, 16), origin_mm=(-8, -7.5, -7), spacing_mm=(1.0, 1.0, 1.0))
    labels = np.zeros(grid.shape, dtype=np.int8)
    labels[:, :, 12:] = 1
    labels[10:, :3, :] = 2
    vessel = np.zeros(grid.shape, dtype=bool)
    vessel[:, 12, 2] = True
    cat = load_probe_catalogue()
    ramped = ProbeModel("ramped", 1.5, 6.0, 1.0, -120.0, 20.0, 20.0)
    probes = [
        Probe(cat["generic_17g"], (-3.3, -2.1, -6.0), (0.2, 0.1, 1.0)),
        Probe(ramped, (3.0, 2.5, 2.0), (1.0, -1.0, 1.0)),  # oblique
    ]
    phases = protocol(
        ("freeze", 0.5), ("passive_thaw", 0.25), ("active_thaw", 0.1), ("freeze", 0.2)
    )
    return simulate(
        grid,
        probes,
        phases,
        tissues=tissues,
        tissue_labels=labels,
        initial_temp_c=36.5,
        vessel_mask=vessel,
        backend=backend,
        options=BioheatOptions(
            dtype=dtype, outer_boundary=outer, record_every_s=5.0, parallel=parallel
        ),
    )


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("outer", ["fixed", "adiabatic"])
@pytest.mark.parametrize("perfused", [False, True])
@pytest.mark.parametrize("parallel", [False, True])
def test_numba_matches_numpy(dtype, outer, perfused, parallel):
    ref = _case(dtype, outer, perfused, "numpy")
    got = _case(dtype, outer, perfused, "numba", parallel)
    assert ref.final_temp_c.dtype == np.dtype(dtype) == got.final_temp_c.dtype
    assert ref.min_temp_c.min() < -100  # the probes froze something
    np.testing.assert_allclose(got.final_temp_c, ref.final_temp_c, rtol=0, atol=TOL[dtype])
    np.testing.assert_allclose(got.min_temp_c, ref.min_temp_c, rtol=0, atol=TOL[dtype])
    for iso in ref.volume_ml:
        np.testing.assert_allclose(got.volume_ml[iso], ref.volume_ml[iso], atol=2e-3)


@pytest.mark.gpu
@pytest.mark.skipif(not gpu_available(), reason="no CUDA device (CuPy cannot run here)")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("outer", ["fixed", "adiabatic"])
@pytest.mark.parametrize("perfused", [False, True])
def test_cupy_matches_numpy(dtype, outer, perfused):
    ref = _case(dtype, outer, perfused, "numpy")
    got = _case(dtype, outer, perfused, "cupy")
    np.testing.assert_allclose(got.final_temp_c, ref.final_temp_c, rtol=0, atol=TOL[dtype])
    np.testing.assert_allclose(got.min_temp_c, ref.min_temp_c, rtol=0, atol=TOL[dtype])
