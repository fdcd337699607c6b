"""Accumulators of the DVH histogram of dose intervals: a numpy reference and a numba kernel.

A sample is a volume ``w`` (cm³) spread uniformly over a dose interval ``[lo, hi]`` (Gy,
``0 <= lo <= hi``), a point mass at ``(lo + hi) / 2`` when ``hi - lo`` is negligible (see
:func:`brachycryo.qa.dvh.dvh_from_samples` for where the intervals come from).  Both
accumulators return the same five arrays on bins of ``width``: per bin ``b``

* ``point[b]``: volume of the point samples in bin b;
* ``a_hi[b], b_hi[b]``: sums of ``c * hi`` and ``c`` over spread samples whose upper end
  ``hi`` lies in bin b (``c = w / (hi - lo)``);
* ``a_lo[b], b_lo[b]``: the same for the lower ends ``lo``;

plus the exact minimum (of ``lo``), maximum (of ``hi``) and the volume-weighted mean dose.
The numba kernel does it in one pass over the samples (the numpy reference takes some
twenty); it is compiled lazily (on first use, ``cache=True``), never at import.
"""

from __future__ import annotations

import functools

import numpy as np

from brachycryo.core.backend import numba_unavailable_reason
from brachycryo.core.errors import BackendUnavailableError

_REL_TINY = 1e-6


def _bin_of(x: np.ndarray, edges: np.ndarray, width: float, n_bins: int) -> np.ndarray:
    idx = np.minimum((x / width).astype(np.int64), n_bins - 1)
    idx += (idx + 1 < n_bins) & (edges[np.minimum(idx + 1, n_bins)] <= x)
    idx -= (idx > 0) & (edges[idx] > x)
    return idx


def accumulate_numpy(lo, hi, w, width: float, n_bins: int):
    """Reference implementation (vectorised numpy)."""
    edges = np.arange(n_bins + 1, dtype=np.float64) * width
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    d = 0.5 * (lo + hi)
    spread = (hi - lo) > _REL_TINY * np.maximum(d, 1.0)
    pt = ~spread
    point = np.bincount(_bin_of(d[pt], edges, width, n_bins), weights=w[pt], minlength=n_bins)
    c = w[spread] / (hi[spread] - lo[spread])
    arrays = []
    for t in (hi[spread], lo[spread]):
        bt = np.minimum((t / width).astype(np.int64), n_bins)
        arrays.append(np.bincount(bt, weights=c * t, minlength=n_bins + 1))
        arrays.append(np.bincount(bt, weights=c, minlength=n_bins + 1))
    mean_num = float(np.dot(d, w))
    return (
        point[:n_bins],
        *(a[: n_bins + 1] for a in arrays),
        float(lo.min()),
        float(hi.max()),
        mean_num,
    )


@functools.cache
def _numba_kernel():
    import numba

    @numba.njit(cache=True)
    def kernel(lo_, hi_, w, width, n_bins, point, a_hi, b_hi, a_lo, b_lo):  # pragma: no cover
        dmin = np.inf
        dmax = -np.inf
        mean_num = 0.0
        for n in range(lo_.size):
            lo = np.float64(lo_[n])
            hi = np.float64(hi_[n])
            dn = 0.5 * (lo + hi)
            wn = w[n]
            if lo < dmin:
                dmin = lo
            if hi > dmax:
                dmax = hi
            if (hi - lo) > _REL_TINY * max(dn, 1.0):
                c = wn / (hi - lo)
                bt = min(np.int64(hi / width), n_bins)
                a_hi[bt] += c * hi
                b_hi[bt] += c
                bt = min(np.int64(lo / width), n_bins)
                a_lo[bt] += c * lo
                b_lo[bt] += c
            else:
                idx = min(np.int64(dn / width), n_bins - 1)
                if idx + 1 < n_bins and (idx + 1) * width <= dn:
                    idx += 1
                if idx > 0 and idx * width > dn:
                    idx -= 1
                point[idx] += wn
            mean_num += dn * wn
        return dmin, dmax, mean_num

    return kernel


def accumulate_numba(lo, hi, w, width: float, n_bins: int):
    """One-pass numba kernel; same results as :func:`accumulate_numpy` (to rounding)."""
    if (why := numba_unavailable_reason()) is not None:
        raise BackendUnavailableError(f"backend 'numba' was asked for but cannot run: {why}")
    point = np.zeros(n_bins)
    arrays = [np.zeros(n_bins + 1) for _ in range(4)]
    lo = np.ascontiguousarray(lo)
    hi = np.ascontiguousarray(hi, dtype=lo.dtype)
    w = np.ascontiguousarray(w, dtype=np.float64)
    dmin, dmax, mean_num = _numba_kernel()(lo, hi, w, float(width), int(n_bins), point, *arrays)
    return (point, *arrays, float(dmin), float(dmax), float(mean_num))


def accumulate(lo, hi, w, width: float, n_bins: int, *, backend: str = "auto"):
    """Dispatch: ``"auto"`` uses numba when importable, else numpy (this accumulation has
    no GPU implementation: ``"cupy"`` raises :class:`BackendUnavailableError`)."""
    if backend == "auto":
        backend = "numba" if numba_unavailable_reason() is None else "numpy"
    if backend == "numpy":
        return accumulate_numpy(lo, hi, w, width, n_bins)
    if backend == "numba":
        return accumulate_numba(lo, hi, w, width, n_bins)
    raise BackendUnavailableError(
        f"backend {backend!r}: the DVH histogram runs on 'numpy' or 'numba' only"
    )


__all__ = ["accumulate", "accumulate_numba", "accumulate_numpy"]
