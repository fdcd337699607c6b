"""Shared fixtures: reference data, the DICOM validator, and peer readers.

dicompyler-core 0.5.6 (its latest release) imports only with pydicom < 3 while brachycryo
uses pydicom 3, so the peer runs in its own virtualenv, built once per machine under the
user's cache folder and called in a subprocess; rt-utils (which needs OpenCV) gets its own
virtualenv the same way.  Tests that need a peer skip with the reason when it cannot be
installed (e.g. no access to the package index).  plastimatch is a system tool (Debian
package ``plastimatch``, installed by ``.ci/run``); its tests skip when it is missing.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

DICOMPYLER_CORE_VERSION = "0.5.6"
RT_UTILS_VERSION = "1.2.7"
_RT_UTILS_REQUIREMENTS = [f"rt-utils=={RT_UTILS_VERSION}"]
_PEER_REQUIREMENTS = [
    f"dicompyler-core=={DICOMPYLER_CORE_VERSION}",
    "pydicom>=2.4,<3",
    "numpy<2.3",
    "matplotlib",
    "scikit-image",
    "shapely",
]


def gpu_skip_reason() -> str | None:
    from brachycryo.core.backend import cupy_unavailable_reason

    return cupy_unavailable_reason()


def pytest_collection_modifyitems(config, items):
    reason = None
    for item in items:
        if "gpu" in item.keywords:
            if reason is None:
                reason = gpu_skip_reason() or ""
            if reason:
                item.add_marker(pytest.mark.skip(reason=f"GPU test: {reason}"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the repository (reference tables and real DICOM files)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"reference data folder {SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def dciodvfy():
    """Callable ``path -> (errors, warnings)`` running dicom3tools' ``dciodvfy`` validator.

    ``errors`` are the validator's lines starting with ``Error``; ``warnings`` those starting
    with ``Warning``.  Skips when dicom3tools is not installed (``.ci/run`` installs it).
    """
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.skip("dciodvfy (Debian package dicom3tools) is not installed")

    def run(path: str | os.PathLike) -> tuple[list[str], list[str]]:
        proc = subprocess.run(
            [exe, "-new", str(path)], capture_output=True, text=True, timeout=120, check=False
        )
        lines = (proc.stdout + proc.stderr).splitlines()
        errors = [ln for ln in lines if ln.startswith("Error")]
        warnings = [ln for ln in lines if ln.startswith("Warning")]
        if proc.returncode < 0:
            errors.append(f"Error - dciodvfy crashed with signal {-proc.returncode}")
        for w in warnings:
            print(f"dciodvfy {Path(path).name}: {w}")
        return errors, warnings

    return run


def _peer_venv_dir(name: str = f"dicompyler-core-{DICOMPYLER_CORE_VERSION}") -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "brachycryo" / "peer-venvs" / name


def _build_peer_venv(
    target: Path, requirements: list[str] = _PEER_REQUIREMENTS
) -> tuple[Path | None, str]:
    python = target / "bin" / "python"
    marker = target / ".complete"
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists():
            return python, ""
        if target.exists():
            shutil.rmtree(target)
        venv.EnvBuilder(with_pip=True, clear=True).create(target)
        proc = subprocess.run(
            [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
            + requirements,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        if proc.returncode != 0:
            return None, proc.stderr[-2000:]
        marker.write_text("ok")
        return python, ""


@pytest.fixture(scope="session")
def dicompyler_peer():
    """Callable ``(script, *args) -> JSON`` running ``script`` under dicompyler-core 0.5.6.

    The script gets ``args`` in ``sys.argv[1:]`` and must print one JSON document as the
    last line of its standard output.
    """
    return _peer_runner(
        f"dicompyler-core {DICOMPYLER_CORE_VERSION}", _peer_venv_dir(), _PEER_REQUIREMENTS
    )


def _peer_runner(label: str, target: Path, requirements: list[str]):
    """Callable ``(script, *args) -> JSON`` in the peer virtualenv ``target`` (or skip)."""
    try:
        python, err = _build_peer_venv(target, requirements)
    except Exception as exc:  # no network, no venv module, ...
        python, err = None, f"{exc.__class__.__name__}: {exc}"
    if python is None:
        pytest.skip(f"{label} peer could not be installed: {err}")

    def run(script: str, *args: str | os.PathLike):
        proc = subprocess.run(
            [str(python), "-c", script, *map(str, args)],
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"{label} peer failed:\n{proc.stderr[-4000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    return run


@pytest.fixture(scope="session")
def rt_utils_peer():
    """Callable ``(script, *args) -> JSON`` running ``script`` under rt-utils 1.2.7.

    Same contract as :func:`dicompyler_peer`, in a virtualenv of its own.
    """
    return _peer_runner(
        f"rt-utils {RT_UTILS_VERSION}",
        _peer_venv_dir(f"rt-utils-{RT_UTILS_VERSION}"),
        _RT_UTILS_REQUIREMENTS,
    )


@pytest.fixture(scope="session")
def plastimatch_masks():
    """Callable ``(rtstruct, ct_dir, out_dir) -> {roi name: volume cc}`` from plastimatch.

    ``plastimatch convert --input RS --referenced-ct CT --output-prefix OUT`` rasterises
    every ROI onto the CT grid as ``OUT/<name>.mha``; the volume is the count of its
    non-zero voxels times the voxel volume.  Skips when plastimatch is not installed
    (Debian package ``plastimatch``; ``.ci/run`` installs it).
    """
    exe = shutil.which("plastimatch")
    if exe is None:
        pytest.skip("plastimatch (Debian package plastimatch) is not installed")

    def run(rtstruct: str | os.PathLike, ct_dir: str | os.PathLike, out_dir: str | os.PathLike):
        import numpy as np
        import SimpleITK as sitk

        cmd = [exe, "convert", "--input", str(rtstruct), "--referenced-ct", str(ct_dir)]
        proc = subprocess.run(
            cmd + ["--output-prefix", str(out_dir)],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"plastimatch failed:\n{(proc.stdout + proc.stderr)[-4000:]}")
        out = {}
        for mha in sorted(Path(out_dir).glob("*.mha")):
            image = sitk.ReadImage(str(mha))
            voxel_mm3 = float(np.prod(image.GetSpacing()))
            out[mha.stem] = np.count_nonzero(sitk.GetArrayFromImage(image)) * voxel_mm3 / 1000
        return out

    return run


@pytest.fixture
def file_hashes():
    """Callable returning {path: sha256} for all files under the given folders/files."""
    import hashlib

    def run(*paths: Path) -> dict[str, str]:
        out = {}
        for root in paths:
            root = Path(root)
            files = [root] if root.is_file() else sorted(p for p in root.rglob("*") if p.is_file())
            for f in files:
                out[str(f)] = hashlib.sha256(f.read_bytes()).hexdigest()
        return out

    return run


sys.path.insert(0, str(REPO_ROOT))
