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

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent(
    """
    import numpy as np
    from numba import config
    assert config.ENABLE_CUDASIM
    from cryo_iceball import kernels_cuda, kernels_numpy
    from cryo_iceball.tissue import load_tissues, kernel_table, enthalpy_from_temp

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
