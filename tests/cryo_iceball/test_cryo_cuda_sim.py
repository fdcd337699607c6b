"""The numba.cuda kernels' logic on the CPU, under numba's CUDA simulator.

``NUMBA_ENABLE_CUDASIM`` must be set before ``numba.cuda`` is imported, so the check runs
in a subprocess.  It steps a tiny grid with every feature switched on (two tissues, held
voxels active and inactive, probe-surface couplings, perfusion, metabolism) on the
simulated GPU and on the numpy reference, for float32 and float64.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from numba import config
    assert config.ENABLE_CUDASIM
    from brachycryo.cryo_iceball import kernels_cuda, kernels_numpy
    from brachycryo.cryo_iceball.tissue import load_tissues, kernel_table, enthalpy_from_temp

    tis = load_tissues()
    rng = np.random.default_rng(5)
    shape = (3, 4, 5)
    for dtype in (np.float32, np.float64):
        table = kernel_table([tis["soft_tissue"], tis["gel"]], np.float64)
        labels = rng.integers(0, 2, size=shape).astype(np.int8)
        temp0 = rng.uniform(-60, 40, size=shape)
        hold = np.full(shape, -1, np.int16)
        hold[0, 0, :] = 0; hold[1, 2, 3] = 1; hold[2, 3, 4] = 2
        couple_slot = np.full(shape, -1, np.int16)
        couple_slot[1, 2, 2] = 1; couple_slot[1, 1, 3] = 2; couple_slot[2, 2, 4] = 2
        couple = np.where(couple_slot >= 0, 3.0e5, 0.0)
        hold_temp = np.array([37.0, -140.0, np.nan])  # slot 2 switched off
        def state():
            return {
                "h": enthalpy_from_temp(temp0, table[labels]).astype(dtype),
                "tissue": labels, "params": table.astype(dtype), "hold": hold,
                "couple_coef": couple.astype(dtype), "couple_slot": couple_slot,
                "temp": np.zeros(shape, dtype), "cond": np.zeros(shape, dtype),
                "tmin": np.full(shape, np.inf, dtype),
                "inv_h2": np.array([1e6, 0.5e6, 0.25e6], dtype),
            }
        a, b = state(), state()
        ht = hold_temp.astype(dtype)
        for _ in range(4):
            kernels_numpy.step(a, 0.05, 37.0, ht)
            kernels_cuda.step(b, 0.05, 37.0, ht)
        kernels_numpy.temperature_only(a, ht)
        kernels_cuda.temperature_only(b, ht)
        tol = 1e-9 if dtype == np.float64 else 1e-3
        for key in ("h", "temp", "cond", "tmin"):
            scale = max(1.0, float(np.abs(a[key]).max()))
            err = float(np.abs(a[key] - b[key]).max()) / scale
            assert err < tol, (dtype, key, err)
        assert not np.allclose(a["temp"], temp0)
    print("CUDASIM-PARITY-OK")
    """
)


def test_cuda_kernels_under_simulator():
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    if "No module named 'numba.cuda'" in proc.stderr:  # pragma: no cover
        pytest.skip("numba-cuda is not installed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CUDASIM-PARITY-OK" in proc.stdout


SIMULATE_SCRIPT = textwrap.dedent(
    """
    import sys, types
    import numpy as np
    from numba import config
    assert config.ENABLE_CUDASIM

    # A stand-in for CuPy on the simulator: host arrays with CuPy's ``.get()``.
    class DevArray(np.ndarray):
        def get(self):
            return np.asarray(self).copy()

    def wrap(a):
        return np.asarray(a).view(DevArray)

    fake = types.ModuleType("cupy")
    fake.asarray = lambda a, dtype=None: wrap(np.array(a, dtype=dtype))
    fake.zeros = lambda shape, dtype=float: wrap(np.zeros(shape, dtype))
    fake.full = lambda shape, v, dtype=float: wrap(np.full(shape, v, dtype))
    fake.count_nonzero = np.count_nonzero
    sys.modules["cupy"] = fake

    from brachycryo.core.grid import Grid
    from brachycryo.cryo_iceball import bioheat
    from brachycryo.cryo_iceball.bioheat import BioheatOptions, simulate
    from brachycryo.cryo_iceball.probes import Probe, load_probe_catalogue, protocol
    from brachycryo.cryo_iceball.tissue import load_tissues

    cat = load_probe_catalogue()
    tis = load_tissues()
    grid = Grid(shape=(7, 6, 8), origin_mm=(-4, -3, -3), spacing_mm=(1.0, 1.0, 1.0))
    labels = np.zeros(grid.shape, np.int8)
    labels[:, :, 5:] = 1
    probes = [Probe(cat["generic_17g"], (-1.2, 0.3, -4.0), (0.1, 0.2, 1.0))]
    phases = protocol(("freeze", 0.05), ("passive_thaw", 0.02), ("active_thaw", 0.02))
    kw = dict(tissues=[tis["soft_tissue"], tis["gel"]], tissue_labels=labels,
              initial_temp_c=37.0, options=BioheatOptions(dtype="float64", record_every_s=1.0))
    ref = simulate(grid, probes, phases, backend="numpy", **kw)
    bioheat.resolve_backend = lambda name: "cupy"
    got = simulate(grid, probes, phases, backend="cupy", **kw)
    assert got.backend == "cupy" and type(got.min_temp_c) is np.ndarray
    assert ref.min_temp_c.min() < -100
    for a, b in ((ref.min_temp_c, got.min_temp_c), (ref.final_temp_c, got.final_temp_c)):
        assert np.abs(a - b).max() < 1e-8, np.abs(a - b).max()
    for t in ref.volume_ml:
        assert np.allclose(ref.volume_ml[t], got.volume_ml[t])
    print("CUDASIM-SIMULATE-OK")
    """
)


def test_cupy_code_path_of_simulate_under_simulator():
    """The whole ``backend="cupy"`` path of simulate (device arrays, launches, copies back),
    with a host-array stand-in for CuPy and the CUDA simulator for the kernels."""
    env = dict(os.environ, NUMBA_ENABLE_CUDASIM="1", PYTHONPATH=str(ROOT))
    proc = subprocess.run(
        [sys.executable, "-c", SIMULATE_SCRIPT], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=600,
    )  # fmt: skip
    if "No module named 'numba.cuda'" in proc.stderr:  # pragma: no cover
        pytest.skip("numba-cuda is not installed")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "CUDASIM-SIMULATE-OK" in proc.stdout
