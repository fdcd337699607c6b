"""Trilinear dose at points, and the dose interval of each DVH sample: a numpy reference and
numba kernels (used by :mod:`brachycryo.qa.dvh`).

**Interpolation.**  On dose index coordinates ``(i, j, k)`` of an array indexed
``dose[k, j, i]``, each coordinate clamped to ``[0, n - 1]`` (a point beyond the outermost
voxel centres takes the edge value; which points count as outside the grid is the caller's
decision), the dose is interpolated along i, then j, then k, every step written
``a + w (b - a)`` with ``0 <= w <= 1``.  That is the interpolant of
:func:`scipy.ndimage.map_coordinates` with ``order=1`` (tests compare them to rounding),
with properties it lacks in floating point: a constant dose comes back exactly
(``57 (1 - w) + 57 w`` need not be 57), a point on a node gets the node's value exactly,
and a result lies within the stored doses of its cell up to one rounding of the last step
(a relative 1e-16 in float64; none once rounded to a float32 dose).

**Sample intervals.**  A DVH sample at dose ``d`` stands for a volume element (a voxel or
sub-voxel of the sampling lattice: a parallelepiped with half-edges ``e0, e1, e2`` in index
coordinates, a box along the dose axes when the lattice shares their orientation) and
spreads its volume over ``[d - s/2, d + s/2]`` for a linear dose across the element
(``s = |grad D| x element size``).  Where the dose is not linear there (next to a seed the
central difference spans orders of magnitude) that interval leaves the dose the element
holds.  :func:`clip_intervals` therefore bounds it by the minimum and maximum of the
interpolated dose at the element's centre (``d``) and 8 corners (``c_lo``, ``c_hi``)::

    lo = max(d - s/2, min(c_lo, d)),   hi = min(d + s/2, max(c_hi, d))

Every dose in ``[min(c_lo, d), max(c_hi, d)]`` is the dose at some point of the element
(it is connected and the interpolant continuous), so each sample's volume stays within the
doses its own element takes (a non-negative dose needs no clipping at 0 Gy any more).
:func:`element_intervals` does this for samples given by their centres,
:func:`lattice_intervals` for the voxels of a regular lattice whose corner doses are known;
both give ``[0, 0]`` (a point at 0 Gy) to samples flagged outside the dose grid.  The numba
kernels (:mod:`brachycryo.qa.interp_kernels_numba`, imported on first use) compile on their
first call and are cached on disk (``cache=True``), never at import.
"""

from __future__ import annotations

import numpy as np

from brachycryo.core.backend import numba_unavailable_reason
from brachycryo.core.errors import BackendUnavailableError, GeometryError

_SIGNS = np.array([(a, b, c) for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)], dtype=float)


def _out_dtype(dose: np.ndarray) -> np.dtype:
    return dose.dtype if dose.dtype in (np.float32, np.float64) else np.dtype(np.float64)


# ----------------------------------------------------------------------- numpy reference
def _axis_numpy(c: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower and upper node and weight along one axis, the coordinate clamped to [0, n-1]."""
    c = np.clip(np.asarray(c, dtype=np.float64), 0.0, n - 1.0)
    i0 = np.minimum(np.floor(c).astype(np.intp), n - 1)  # a node: weight 0, exact
    i1 = np.minimum(i0 + 1, n - 1)
    return i0, i1, c - i0


def trilinear_numpy(dose: np.ndarray, i, j, k) -> np.ndarray:
    """Reference: the clamped trilinear dose at index coordinates (vectorised numpy)."""
    return _trilinear64(dose, i, j, k).astype(_out_dtype(dose), copy=False)


def _trilinear64(dose: np.ndarray, i, j, k) -> np.ndarray:
    i0, i1, wi = _axis_numpy(i, dose.shape[2])
    j0, j1, wj = _axis_numpy(j, dose.shape[1])
    k0, k1, wk = _axis_numpy(k, dose.shape[0])
    out = None
    for kk in (k0, k1):
        row = None
        for jj in (j0, j1):
            a = dose[kk, jj, i0].astype(np.float64)
            b = dose[kk, jj, i1].astype(np.float64)
            v = a + wi * (b - a)
            row = v if row is None else row + wj * (v - row)
        out = row if out is None else out + wk * (row - out)
    assert out is not None
    return out


def _take(a: np.ndarray, index: np.ndarray, axis: int) -> np.ndarray:
    """``np.take(a, index, axis)``, as a view when the indices are consecutive."""
    if index.size and index[-1] - index[0] == index.size - 1 and np.all(np.diff(index) == 1):
        sl = [slice(None)] * a.ndim
        sl[axis] = slice(int(index[0]), int(index[-1]) + 1)
        return a[tuple(sl)]
    return np.take(a, index, axis=axis)


def separable_numpy(dose: np.ndarray, k_table, j_table, i_table) -> np.ndarray:
    """Reference: trilinear dose on a lattice along the dose axes, given per axis the lower
    and upper node and weight of every lattice coordinate (``(x0, x1, w)``, 0 <= w <= 1).
    Interpolates along k, then j, then i (an axis whose points all fall on nodes is only
    indexed), in the dose's precision (float32 stays float32)."""
    out_dtype = np.result_type(dose.dtype, np.float32)
    a = dose.astype(out_dtype, copy=False)
    for axis, (x0, x1, w) in enumerate((k_table, j_table, i_table)):
        lo_ = _take(a, x0, axis)
        if np.all(np.abs(w) < 1e-9):
            a = lo_
            continue
        shape = [1, 1, 1]
        shape[axis] = -1
        w_ = np.asarray(w).astype(out_dtype).reshape(shape)
        a = lo_ + w_ * (_take(a, x1, axis) - lo_)
    return np.ascontiguousarray(a, dtype=out_dtype)


def corner_range_numpy(dose: np.ndarray, i, j, k, half_edges) -> tuple[np.ndarray, np.ndarray]:
    """Reference: min and max of the trilinear dose at the 8 corners of each element."""
    e = np.asarray(half_edges, dtype=np.float64)
    ijk = [np.asarray(x, dtype=np.float64) for x in (i, j, k)]
    lo = hi = None
    for s in _SIGNS:
        off = e @ s  # (di, dj, dk)
        v = _trilinear64(dose, ijk[0] + off[0], ijk[1] + off[1], ijk[2] + off[2])
        lo = v if lo is None else np.minimum(lo, v)
        hi = v if hi is None else np.maximum(hi, v)
    assert lo is not None and hi is not None
    return lo, hi


def clip_intervals(d, s, c_lo, c_hi) -> tuple[np.ndarray, np.ndarray]:
    """The sample intervals of the module docstring, in float64 (numpy)."""
    d = np.asarray(d, dtype=np.float64)
    half = 0.5 * np.asarray(s, dtype=np.float64)
    lo = np.maximum(d - half, np.minimum(np.asarray(c_lo, dtype=np.float64), d))
    hi = np.minimum(d + half, np.maximum(np.asarray(c_hi, dtype=np.float64), d))
    return lo, hi


def element_intervals_numpy(
    dose, i, j, k, half_edges, spread, inside
) -> tuple[np.ndarray, np.ndarray]:
    """Reference: the intervals of samples at ``(i, j, k)`` with the given elements."""
    d = _trilinear64(dose, i, j, k)
    lo, hi = clip_intervals(d, spread, *corner_range_numpy(dose, i, j, k, half_edges))
    dt = _out_dtype(dose)
    return np.where(inside, lo, 0).astype(dt), np.where(inside, hi, 0).astype(dt)


def voxel_corner_ranges(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min and max over the 8 corners of every voxel of a corner lattice (shape - 1 each)."""
    lo, hi = np.minimum(c[:-1], c[1:]), np.maximum(c[:-1], c[1:])
    lo, hi = np.minimum(lo[:, :-1], lo[:, 1:]), np.maximum(hi[:, :-1], hi[:, 1:])
    return np.minimum(lo[:, :, :-1], lo[:, :, 1:]), np.maximum(hi[:, :, :-1], hi[:, :, 1:])


def lattice_intervals_numpy(corners, mask, d, s, inside) -> tuple[np.ndarray, np.ndarray]:
    """Reference: intervals of the ``mask`` voxels (C order) of a lattice whose voxel-corner
    doses are ``corners`` (shape ``mask.shape + 1``), centre doses ``d``, spreads ``s`` and
    inside-dose-grid flags ``inside``."""
    c_lo, c_hi = voxel_corner_ranges(np.asarray(corners))
    lo, hi = clip_intervals(d[mask], s[mask], c_lo[mask], c_hi[mask])
    ins = inside[mask]
    dt = np.result_type(np.asarray(d).dtype, np.float32)
    return np.where(ins, lo, 0).astype(dt), np.where(ins, hi, 0).astype(dt)


def _numba_or_raise(name: str):
    """The numba kernel ``name`` (:mod:`brachycryo.qa.interp_kernels_numba`), or
    BackendUnavailableError saying why not."""
    if (why := numba_unavailable_reason()) is not None:
        raise BackendUnavailableError(f"backend 'numba' was asked for but cannot run: {why}")
    from brachycryo.qa import interp_kernels_numba

    return getattr(interp_kernels_numba, name)


def _prepared(dose, i, j, k):
    dose = np.ascontiguousarray(dose)
    if dose.ndim != 3 or dose.size == 0:
        raise GeometryError(f"dose must be a non-empty 3-D array, got shape {dose.shape}")
    if not np.issubdtype(dose.dtype, np.floating):
        dose = dose.astype(np.float64)
    ci, cj, ck = (np.ascontiguousarray(x, dtype=np.float64).reshape(-1) for x in (i, j, k))
    if not ci.size == cj.size == ck.size:
        raise GeometryError("i, j and k coordinates differ in number")
    return dose, (ci, cj, ck)


def _edges(half_edges) -> tuple[np.ndarray, bool]:
    """Half-edge matrix (columns e0, e1, e2 as (di, dj, dk)), and whether it is a box along
    the dose axes (then its diagonal holds the half-widths, made non-negative)."""
    e = np.array(half_edges, dtype=np.float64).reshape(3, 3)
    box = np.count_nonzero(e - np.diag(np.diag(e))) == 0
    if box:
        e = np.abs(e)
    return e, bool(box)


def trilinear_numba(dose: np.ndarray, i, j, k) -> np.ndarray:
    """One-pass numba kernel; the same values as :func:`trilinear_numpy` (same operations)."""
    points = _numba_or_raise("points")
    dose, cols = _prepared(dose, i, j, k)
    out = np.empty(cols[0].size, dtype=_out_dtype(dose))
    points(dose, *cols, out)
    return out


def corner_range_numba(dose: np.ndarray, i, j, k, half_edges) -> tuple[np.ndarray, np.ndarray]:
    """One-pass numba kernel; the same values as :func:`corner_range_numpy`."""
    corners = _numba_or_raise("corners")
    dose, cols = _prepared(dose, i, j, k)
    e, box = _edges(half_edges)
    lo = np.empty(cols[0].size, dtype=_out_dtype(dose))
    hi = np.empty_like(lo)
    corners(dose, *cols, e, _SIGNS, box, lo, hi)
    return lo, hi


def _per_sample(n: int, spread, inside) -> tuple[np.ndarray, np.ndarray]:
    sp = np.ascontiguousarray(spread).reshape(-1)
    ins = np.ascontiguousarray(inside, dtype=np.bool_).reshape(-1)
    if sp.size != n or ins.size != n:
        raise GeometryError("spread, inside and coordinates differ in number")
    return sp, ins


def element_intervals_numba(
    dose, i, j, k, half_edges, spread, inside
) -> tuple[np.ndarray, np.ndarray]:
    """One-pass numba kernel; the same values as :func:`element_intervals_numpy`."""
    intervals = _numba_or_raise("intervals")
    dose, cols = _prepared(dose, i, j, k)
    e, box = _edges(half_edges)
    sp, ins = _per_sample(cols[0].size, spread, inside)
    lo = np.empty(cols[0].size, dtype=_out_dtype(dose))
    hi = np.empty_like(lo)
    intervals(dose, *cols, e, _SIGNS, box, sp, ins, lo, hi)
    return lo, hi


def layered_intervals(
    dose: np.ndarray,
    tables: tuple[tuple[np.ndarray, np.ndarray], ...],
    fi: np.ndarray,
    fj: np.ndarray,
    count: np.ndarray,
    half: tuple[float, float, float],
    spread: np.ndarray,
    *,
    backend: str = "auto",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`element_intervals` of boxes along the dose axes (half-widths ``half`` in index
    units, (di, dj, dk)) at points given through per-axis tables: ``tables = ((ci, in_i),
    (cj, in_j), (ck, in_k))`` hold dose index coordinates and inside flags; point ``s`` is
    at ``(ci[fi[s]], cj[fj[s]], ck[L])`` for the layer ``L`` whose ``count[L]`` consecutive
    points hold it, inside when its three flags are.  Returns ``(lo, hi, inside)``: the
    values of ``element_intervals`` on the looked-up columns, without forming them (numba),
    or by forming them (numpy)."""
    (ci, in_i), (cj, in_j), (ck, in_k) = tables
    cnt = np.ascontiguousarray(count, dtype=np.int64)
    if not _use_numba(backend):
        cols = (ci.take(fi), cj.take(fj), np.repeat(ck, cnt))
        ins = in_i.take(fi) & in_j.take(fj) & np.repeat(in_k, cnt)
        lo, hi = element_intervals(dose, *cols, np.diag(half), spread, ins, backend="numpy")
        return lo, hi, ins
    layered = _numba_or_raise("layered")
    dose, _ = _prepared(dose, (), (), ())
    fi = np.ascontiguousarray(fi, dtype=np.int64)
    fj = np.ascontiguousarray(fj, dtype=np.int64)
    sp = np.ascontiguousarray(spread).reshape(-1)
    if not fi.size == fj.size == sp.size == int(cnt.sum()):
        raise GeometryError("fi, fj, spread and the layer counts differ in number")
    tabs = tuple(np.ascontiguousarray(t, dtype=np.float64) for t in (ci, cj, ck))
    ins_tabs = tuple(np.ascontiguousarray(t, dtype=np.bool_) for t in (in_i, in_j, in_k))
    lo = np.empty(fi.size, dtype=_out_dtype(dose))
    hi = np.empty_like(lo)
    ins = np.empty(fi.size, dtype=bool)
    h = tuple(abs(float(x)) for x in half)
    layered(dose, tabs, ins_tabs, fi, fj, cnt, h, sp, lo, hi, ins)
    redo = np.flatnonzero(np.isnan(lo))  # boxes spanning several cells (and NaN doses)
    if redo.size:
        layer = np.repeat(np.arange(cnt.size), cnt)[redo]
        cols = (tabs[0][fi[redo]], tabs[1][fj[redo]], tabs[2][layer])
        lo[redo], hi[redo] = element_intervals_numba(dose, *cols, np.diag(h), sp[redo], ins[redo])
    return lo, hi, ins


def lattice_intervals_numba(corners, mask, d, s, inside) -> tuple[np.ndarray, np.ndarray]:
    """One-pass numba kernel; the same values as :func:`lattice_intervals_numpy`."""
    lattice = _numba_or_raise("lattice")
    # views (a crop of a larger lattice) are read in place, not copied
    mask, ins = (np.asarray(x).astype(np.bool_, copy=False) for x in (mask, inside))
    c, d, s = (np.asarray(x) for x in (corners, d, s))
    if c.shape != tuple(n + 1 for n in mask.shape) or len({d.shape, s.shape, ins.shape}) > 1:
        raise GeometryError("corner, mask, dose, spread and inside lattices do not match")
    if d.shape != mask.shape:
        raise GeometryError("corner, mask, dose, spread and inside lattices do not match")
    n = int(np.count_nonzero(mask))
    dt = np.result_type(d.dtype, np.float32)
    lo = np.empty(n, dtype=dt)
    hi = np.empty(n, dtype=dt)
    lattice(c, mask, d, s, ins, lo, hi)
    return lo, hi


def separable_numba(dose: np.ndarray, k_table, j_table, i_table) -> np.ndarray:
    """Fused numba kernel (float64 arithmetic); :func:`separable_numpy`'s values to the
    rounding of the dose's precision."""
    separable = _numba_or_raise("separable")
    dose = np.asarray(dose)
    if not np.issubdtype(dose.dtype, np.floating):
        dose = dose.astype(np.float64)
    tables = []
    for x0, x1, w in (k_table, j_table, i_table):
        tables += [np.ascontiguousarray(x0, np.int64), np.ascontiguousarray(x1, np.int64)]
        tables.append(np.ascontiguousarray(w, np.float64))
    shape = (tables[0].size, tables[3].size, tables[6].size)
    out = np.empty(shape, dtype=np.result_type(dose.dtype, np.float32))
    separable(dose, *tables, out)
    return out


def gradient_norm_numpy(d: np.ndarray) -> np.ndarray:
    """Reference: ``|grad d|`` per voxel in index units (:func:`numpy.gradient`: central
    differences, one-sided at the edges; an axis of length 1 contributes nothing)."""
    d = np.asarray(d)
    if d.dtype != np.float32:
        d = d.astype(np.float64)
    acc = np.zeros(d.shape, dtype=d.dtype)
    for axis in range(3):
        if d.shape[axis] > 1:
            acc += np.gradient(d, axis=axis) ** 2
    return np.sqrt(acc)


def gradient_norm_numba(d: np.ndarray) -> np.ndarray:
    """Fused numba kernel (float64 arithmetic); :func:`gradient_norm_numpy`'s values to the
    rounding of ``d``'s precision."""
    grad_norm = _numba_or_raise("grad_norm")
    d = np.asarray(d)
    if d.dtype != np.float32:
        d = d.astype(np.float64)
    out = np.empty(d.shape, dtype=d.dtype)
    grad_norm(d, out)
    return out


def gradient_norm(d: np.ndarray, *, backend: str = "auto") -> np.ndarray:
    """``|grad d|`` per voxel of a 3-D array, in index units (see :func:`gradient_norm_numpy`)."""
    if _use_numba(backend):
        return gradient_norm_numba(d)
    return gradient_norm_numpy(d)


def separable(dose: np.ndarray, k_table, j_table, i_table, *, backend: str = "auto"):
    """Trilinear dose on a lattice along the dose axes from per-axis node tables (see
    :func:`separable_numpy`)."""
    if _use_numba(backend):
        return separable_numba(dose, k_table, j_table, i_table)
    return separable_numpy(np.asarray(dose), k_table, j_table, i_table)


def _use_numba(backend: str) -> bool:
    if backend == "auto":
        return numba_unavailable_reason() is None
    if backend in ("numpy", "numba"):
        return backend == "numba"
    raise BackendUnavailableError(
        f"backend {backend!r}: the DVH interpolation runs on 'numpy' or 'numba' only"
    )


def trilinear(dose: np.ndarray, i, j, k, *, backend: str = "auto") -> np.ndarray:
    """Clamped trilinear dose at index coordinates ``(i, j, k)`` (arrays of one shape, flat
    result); ``"auto"`` uses numba when importable, else numpy (no GPU implementation)."""
    if _use_numba(backend):
        return trilinear_numba(dose, i, j, k)
    dose, cols = _prepared(dose, i, j, k)
    return trilinear_numpy(dose, *cols)


def corner_range(
    dose: np.ndarray, i, j, k, half_edges, *, backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Min and max of the clamped trilinear dose at the corners ``c +- e0 +- e1 +- e2`` of
    each element centred at ``(i, j, k)``; ``half_edges[:, m]`` is ``e_m`` as
    ``(di, dj, dk)``.  Every value between them is the dose at some point of the element."""
    if _use_numba(backend):
        return corner_range_numba(dose, i, j, k, half_edges)
    dose, cols = _prepared(dose, i, j, k)
    e, _ = _edges(half_edges)
    lo, hi = corner_range_numpy(dose, cols[0], cols[1], cols[2], e)
    return lo.astype(_out_dtype(dose)), hi.astype(_out_dtype(dose))


def element_intervals(
    dose: np.ndarray, i, j, k, half_edges, spread, inside, *, backend: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Dose intervals ``(lo, hi)`` of samples centred at ``(i, j, k)`` with the elements of
    :func:`corner_range`, spreads ``spread`` (Gy) and inside-dose-grid flags ``inside``:
    see the module docstring."""
    if _use_numba(backend):
        return element_intervals_numba(dose, i, j, k, half_edges, spread, inside)
    dose, cols = _prepared(dose, i, j, k)
    e, _ = _edges(half_edges)
    sp, ins = _per_sample(cols[0].size, spread, inside)
    return element_intervals_numpy(dose, cols[0], cols[1], cols[2], e, sp, ins)


def lattice_intervals(
    corners: np.ndarray,
    mask: np.ndarray,
    d: np.ndarray,
    s: np.ndarray,
    inside: np.ndarray,
    *,
    backend: str = "auto",
) -> tuple[np.ndarray, np.ndarray]:
    """Dose intervals of the ``mask`` voxels of a lattice (C order): centre doses ``d``,
    spreads ``s``, inside flags (shape of ``mask``) and voxel-corner doses ``corners``
    (``mask.shape + 1``)."""
    if _use_numba(backend):
        return lattice_intervals_numba(corners, mask, d, s, inside)
    m = np.asarray(mask, dtype=bool)
    return lattice_intervals_numpy(corners, m, np.asarray(d), np.asarray(s), np.asarray(inside))


__all__ = [
    "clip_intervals",
    "corner_range",
    "corner_range_numba",
    "corner_range_numpy",
    "element_intervals",
    "element_intervals_numba",
    "element_intervals_numpy",
    "gradient_norm",
    "gradient_norm_numba",
    "gradient_norm_numpy",
    "lattice_intervals",
    "lattice_intervals_numba",
    "lattice_intervals_numpy",
    "layered_intervals",
    "separable",
    "separable_numba",
    "separable_numpy",
    "trilinear",
    "trilinear_numba",
    "trilinear_numpy",
    "voxel_corner_ranges",
]
