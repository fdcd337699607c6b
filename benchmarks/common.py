"""Helpers shared by the benchmarks: machine info, the dicompyler-core peer, JSON output."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
PEER_VENV = (
    Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    / "brachycryo"
    / "peer-venvs"
    / "dicompyler-core-0.5.6"
)


def machine_info() -> dict:
    info = {
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "processor": platform.processor() or platform.machine(),
    }
    try:
        info["load_average_1min"] = os.getloadavg()[0]
    except OSError:
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
        mem = Path("/proc/meminfo").read_text().splitlines()[0].split()[1]
        info["memory_gib"] = round(int(mem) / 2**20, 1)
    except OSError:
        pass
    return info


def peer_python() -> Path | None:
    """The dicompyler-core virtualenv's python (built by the test fixture), or None."""
    python = PEER_VENV / "bin" / "python"
    return python if (PEER_VENV / ".complete").exists() and python.exists() else None


def run_peer(script: str, *args: str, timeout_s: float = 3600) -> dict:
    python = peer_python()
    if python is None:
        raise RuntimeError(
            f"dicompyler-core venv missing at {PEER_VENV}; run the peer tests once "
            "(pytest -m peer) to build it"
        )
    proc = subprocess.run(
        [str(python), "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"dicompyler-core peer failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def write_results(name: str, data: dict) -> Path:
    from brachycryo.core.atomic import write_text_atomic

    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    write_text_atomic(path, json.dumps(data, indent=2) + "\n", overwrite=True)
    return path
