"""Dose-influence matrix for seed optimisation: dose per unit strength, candidate → voxel.

``A[m, n]`` is the dose (Gy per U of air-kerma strength; total permanent-implant dose by
default) that a seed at candidate position n would deliver to point m, so that the dose of a
plan with strengths ``s`` (U) is ``A @ s``.  One column per candidate, as a seed optimiser
consumes it (cf. matRad's dose-influence matrix).

Memory: dense float32 needs 4 bytes per entry - 2,000 candidates × 200,000 voxels is 1.6 GB
(under the 4 GB budget of the issue).  Larger problems use ``sparse=True`` with a
``cutoff_mm``: a ``scipy.sparse`` CSC matrix holding only the pairs within the cut-off (I-125
dose falls ~100× from 1 cm to 6 cm, so a 50-60 mm cut-off changes little).  Built in
chunks (rows for dense, columns for sparse) with a progress callback.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brachycryo.core.backend import resolve_backend
from brachycryo.core.errors import ConfigError
from brachycryo.core.progress import ProgressCallback, report
from brachycryo.core.seeds import Seeds
from brachycryo.dose_kernels.dose import _check_cutoff, _points_array, time_factor_h
from brachycryo.dose_kernels.kernel_tables import DEFAULT_MIN_DISTANCE_MM, pack_tables
from brachycryo.dose_kernels.seed_model import SeedModel, load_seed_model
from brachycryo.dose_kernels.tg43_numpy import matrix_points_numpy

__all__ = ["influence_matrix"]

#: Default ceiling on the memory of the returned matrix (bytes).
MAX_BYTES = 4 * 1024**3
#: Target size of one chunk's temporary block (bytes).
_CHUNK_BYTES = 128 * 1024**2


def _block(points, cands: Seeds, factor, t, cutoff, dt, be, out=None):
    if be == "numpy":
        res = matrix_points_numpy(
            points, cands.positions_mm, cands.directions, factor, t, cutoff
        ).astype(dt, copy=False)
        if out is not None:
            out[...] = res
            return out
        return res
    if be == "numba":
        from brachycryo.dose_kernels.tg43_numba import matrix_points_numba

        return matrix_points_numba(
            points, cands.positions_mm, cands.directions, factor, t, cutoff, dt, out=out
        )
    from brachycryo.dose_kernels.tg43_cuda import matrix_points_cuda

    res = matrix_points_cuda(points, cands.positions_mm, cands.directions, factor, t, cutoff, dt)
    if out is not None:
        out[...] = res
        return out
    return res


def influence_matrix(
    candidate_positions_mm: np.ndarray | Sequence[Sequence[float]],
    candidate_directions: np.ndarray | Sequence[Sequence[float]] | None,
    points_mm: np.ndarray | Sequence[Sequence[float]],
    model: str | SeedModel,
    *,
    backend: str = "auto",
    formalism: str = "line",
    dtype: type | np.dtype = np.float32,
    cutoff_mm: float | None = None,
    sparse: bool = False,
    quantity: str = "total",
    min_distance_mm: float = DEFAULT_MIN_DISTANCE_MM,
    max_bytes: int = MAX_BYTES,
    progress: ProgressCallback | None = None,
):
    """Matrix (n_points, n_candidates) of dose per unit strength (Gy/U, or Gy h⁻¹ U⁻¹ for
    ``quantity="rate"``).

    ``candidate_directions`` are unit seed axes (None: +z, the needle direction of a
    template implant).  Dense ``numpy.ndarray`` (C order) by default; ``sparse=True``
    (requires ``cutoff_mm``) returns a ``scipy.sparse.csc_matrix``.  A dense result larger
    than ``max_bytes`` is refused with a :class:`ConfigError` suggesting the sparse form.
    """
    m = load_seed_model(model)
    dt = np.dtype(dtype)
    t = pack_tables(m, formalism=formalism, dtype=dt, min_distance_mm=min_distance_mm)
    factor = time_factor_h(m, quantity)
    cands = Seeds(candidate_positions_mm, 1.0, candidate_directions)
    pts = _points_array(points_mm).reshape(-1, 3)
    cutoff = _check_cutoff(cutoff_mm)
    be = resolve_backend(backend)
    n_pts, n_c = pts.shape[0], len(cands)
    if sparse:
        if cutoff is None:
            raise ConfigError("a sparse influence matrix needs cutoff_mm", key="cutoff_mm")
        return _sparse(pts, cands, factor, t, cutoff, dt, be, progress)
    need = n_pts * n_c * dt.itemsize
    if need > max_bytes:
        raise ConfigError(
            f"dense influence matrix {n_pts} x {n_c} {dt.name} needs {need / 1e9:.2f} GB, more "
            f"than max_bytes={max_bytes / 1e9:.2f} GB; use sparse=True with cutoff_mm, float32, "
            "or fewer points",
            key="max_bytes",
        )
    out = np.empty((n_pts, n_c), dtype=dt)
    if n_pts == 0 or n_c == 0:
        return out
    rows = max(1, min(n_pts, _CHUNK_BYTES // max(1, n_c * dt.itemsize)))
    for a in range(0, n_pts, rows):
        b = min(n_pts, a + rows)
        _block(pts[a:b], cands, factor, t, cutoff, dt, be, out=out[a:b])
        report(progress, b / n_pts, f"influence matrix rows {b}/{n_pts}")
    return out


def _sparse(pts, cands: Seeds, factor, t, cutoff, dt, be, progress):
    import scipy.sparse as sp

    n_pts, n_c = pts.shape[0], len(cands)
    cols = max(1, min(n_c, _CHUNK_BYTES // max(1, n_pts * dt.itemsize)))
    indptr = [np.zeros(1, dtype=np.int64)]
    indices, data = [], []
    nnz = 0
    for a in range(0, max(n_c, 1), cols):
        b = min(n_c, a + cols)
        if b <= a:
            break
        sub = cands.subset(slice(a, b))
        # only points within reach of this chunk's candidates
        lo = sub.positions_mm.min(axis=0) - cutoff
        hi = sub.positions_mm.max(axis=0) + cutoff
        near = np.nonzero(np.all((pts >= lo) & (pts <= hi), axis=1))[0]
        block = _block(pts[near], sub, factor, t, cutoff, dt, be)  # (len(near), b - a)
        for c in range(b - a):
            nz = np.nonzero(block[:, c])[0]
            indices.append(near[nz])
            data.append(block[nz, c])
            nnz += nz.size
            indptr.append(np.array([nnz], dtype=np.int64))
        report(progress, b / n_c, f"influence matrix columns {b}/{n_c}")
    idx = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    val = np.concatenate(data) if data else np.zeros(0, dtype=dt)
    return sp.csc_matrix((val, idx, np.concatenate(indptr)), shape=(n_pts, n_c))
