"""Compute-backend selection shared by every kernel package.

``backend`` is one of ``"auto" | "numpy" | "numba" | "cupy"``.  Asking for a backend that
cannot run here raises :class:`~brachycryo.core.errors.BackendUnavailableError`; there is never a
silent fallback.  ``"auto"`` picks CuPy when a CUDA device is usable, numba otherwise, and
logs its choice.
"""

from __future__ import annotations

import functools
import logging

from brachycryo.core.errors import BackendUnavailableError

log = logging.getLogger(__name__)

BACKENDS = ("numpy", "numba", "cupy")


@functools.cache
def cupy_unavailable_reason() -> str | None:
    """None when CuPy can use a CUDA device, else a sentence saying why not."""
    try:
        import cupy
    except Exception as exc:  # ImportError, or a broken CUDA install raising on import
        return f"CuPy is not importable ({exc.__class__.__name__}: {exc})"
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:
        return f"CuPy finds no usable CUDA runtime ({exc.__class__.__name__}: {exc})"
    if n < 1:
        return "CuPy is installed but no CUDA device is present"
    return None


@functools.cache
def numba_unavailable_reason() -> str | None:
    try:
        import numba  # noqa: F401
    except Exception as exc:
        return f"numba is not importable ({exc.__class__.__name__}: {exc})"
    return None


def gpu_available() -> bool:
    return cupy_unavailable_reason() is None


def resolve_backend(backend: str) -> str:
    """Return the concrete backend name for ``backend``, or raise if it cannot run."""
    if backend == "auto":
        if gpu_available():
            chosen = "cupy"
        elif numba_unavailable_reason() is None:
            chosen = "numba"
        else:
            chosen = "numpy"
        log.info("backend 'auto' chose %r", chosen)
        return chosen
    if backend not in BACKENDS:
        raise BackendUnavailableError(
            f"unknown backend {backend!r}; choose one of 'auto', {', '.join(map(repr, BACKENDS))}"
        )
    if backend == "cupy" and (why := cupy_unavailable_reason()) is not None:
        raise BackendUnavailableError(f"backend 'cupy' was asked for but cannot run: {why}")
    if backend == "numba" and (why := numba_unavailable_reason()) is not None:
        raise BackendUnavailableError(f"backend 'numba' was asked for but cannot run: {why}")
    return backend
