"""Numba kernels of :mod:`brachycryo.qa.interp_kernels` (same arithmetic as its numpy
reference; the parity tests compare them).

Imported only when a numba backend is asked for, so importing :mod:`brachycryo.qa` neither
imports numba nor compiles anything; each kernel compiles on its first call and is cached
on disk (``cache=True``).  The kernels and their inlined scalar helpers are module-level
functions: numba can cache a kernel that calls module-level jitted functions, not one that
calls jitted functions captured in a closure (such a kernel compiled again in every
process, about a second each).  No ``fastmath``: NaN must propagate.
"""

from __future__ import annotations

import numba
import numpy as np

_inline = numba.njit(cache=True, inline="always")
_kernel = numba.njit(cache=True)


@_inline
def axis(c, n):  # pragma: no cover - compiled
    c = min(max(c, 0.0), n - 1.0)
    i0 = np.int64(c)  # c >= 0: truncation is floor; a node gets weight 0, exactly
    return i0, min(i0 + 1, n - 1), c - i0


@_inline
def lerp4(dose, k, j0, j1, i0, i1, wi, wj):  # pragma: no cover - compiled
    a = np.float64(dose[k, j0, i0])
    v0 = a + wi * (np.float64(dose[k, j0, i1]) - a)
    a = np.float64(dose[k, j1, i0])
    v1 = a + wi * (np.float64(dose[k, j1, i1]) - a)
    return v0 + wj * (v1 - v0)


@_inline
def tri(dose, i, j, k):  # pragma: no cover - compiled
    nk, nj, ni = dose.shape
    i0, i1, wi = axis(i, ni)
    j0, j1, wj = axis(j, nj)
    k0, k1, wk = axis(k, nk)
    r0 = lerp4(dose, k0, j0, j1, i0, i1, wi, wj)
    r1 = lerp4(dose, k1, j0, j1, i0, i1, wi, wj)
    return r0 + wk * (r1 - r0)


@_inline
def box_cell(dose, x, y, z, hx, hy, hz):  # pragma: no cover - compiled
    """The cell of a box's lower corner along each dose axis: its nodes and the lower
    corner's weight (:func:`axis`), and the upper corner's weight in that same cell
    (<= 1: the same cell, its upper face included)."""
    nk, nj, ni = dose.shape
    i0, i1, wi0 = axis(x - hx, ni)
    j0, j1, wj0 = axis(y - hy, nj)
    k0, k1, wk0 = axis(z - hz, nk)
    wi1 = min(max(x + hx, 0.0), ni - 1.0) - i0
    wj1 = min(max(y + hy, 0.0), nj - 1.0) - j0
    wk1 = min(max(z + hz, 0.0), nk - 1.0) - k0
    return i0, i1, wi0, wi1, j0, j1, wj0, wj1, k0, k1, wk0, wk1


@_inline
def corners_box(dose, x, y, z, hx, hy, hz):  # pragma: no cover - compiled
    """Corner min / max of a box along the dose axes: from one cell's 8 values when it
    lies in one cell along every axis (the usual case), else 8 interpolations."""
    i0, i1, wi0, wi1, j0, j1, wj0, wj1, k0, k1, wk0, wk1 = box_cell(dose, x, y, z, hx, hy, hz)
    lo = np.inf
    hi = -np.inf
    r0 = r1 = 0.0
    one_cell = wi1 <= 1.0 and wj1 <= 1.0 and wk1 <= 1.0
    for wi, di in ((wi0, -hx), (wi1, hx)):
        for wj, dj in ((wj0, -hy), (wj1, hy)):
            if one_cell:
                r0 = lerp4(dose, k0, j0, j1, i0, i1, wi, wj)
                r1 = lerp4(dose, k1, j0, j1, i0, i1, wi, wj)
            for wk, dk in ((wk0, -hz), (wk1, hz)):
                v = r0 + wk * (r1 - r0) if one_cell else tri(dose, x + di, y + dj, z + dk)
                lo = min(lo, v)
                hi = max(hi, v)
    return lo, hi


@_inline
def box_interval(dose, x, y, z, hx, hy, hz, sp):  # pragma: no cover - compiled
    """:func:`clip` of the centre dose and the corner min / max of a box along the dose
    axes lying in one cell along every axis (the usual case; the values of
    ``corners_box`` and ``tri``, the same operations in the same order), NaN for a box
    spanning several cells.  The 8 nodes are read once, the 8 corners share their i- and
    j-steps (24 steps, not 32) and the centre, when in the same cell, uses the same nodes.
    (The several-cell path, inlined, doubled the kernel's compile time.)"""
    i0, i1, wi0, wi1, j0, j1, wj0, wj1, k0, k1, wk0, wk1 = box_cell(dose, x, y, z, hx, hy, hz)
    if not (wi1 <= 1.0 and wj1 <= 1.0 and wk1 <= 1.0):
        return np.nan, np.nan  # several cells (rare): the caller runs ``intervals`` there
    a000 = np.float64(dose[k0, j0, i0])
    a001 = np.float64(dose[k0, j0, i1])
    a010 = np.float64(dose[k0, j1, i0])
    a011 = np.float64(dose[k0, j1, i1])
    a100 = np.float64(dose[k1, j0, i0])
    a101 = np.float64(dose[k1, j0, i1])
    a110 = np.float64(dose[k1, j1, i0])
    a111 = np.float64(dose[k1, j1, i1])
    lo = np.inf
    hi = -np.inf
    for wi in (wi0, wi1):
        e00 = a000 + wi * (a001 - a000)  # (k0, j0)
        e01 = a010 + wi * (a011 - a010)  # (k0, j1)
        e10 = a100 + wi * (a101 - a100)  # (k1, j0)
        e11 = a110 + wi * (a111 - a110)  # (k1, j1)
        for wj in (wj0, wj1):
            r0 = e00 + wj * (e01 - e00)
            r1 = e10 + wj * (e11 - e10)
            for wk in (wk0, wk1):
                v = r0 + wk * (r1 - r0)
                lo = min(lo, v)
                hi = max(hi, v)
    nk, nj, ni = dose.shape
    ci0, _, wci = axis(x, ni)
    cj0, _, wcj = axis(y, nj)
    ck0, _, wck = axis(z, nk)
    if ci0 == i0 and cj0 == j0 and ck0 == k0:
        v0 = a000 + wci * (a001 - a000)
        v1 = a010 + wci * (a011 - a010)
        r0 = v0 + wcj * (v1 - v0)
        v0 = a100 + wci * (a101 - a100)
        v1 = a110 + wci * (a111 - a110)
        r1 = v0 + wcj * (v1 - v0)
        d = r0 + wck * (r1 - r0)
    else:
        d = tri(dose, x, y, z)
    return clip(d, sp, lo, hi)


@_inline
def corners_any(dose, x, y, z, e, signs):  # pragma: no cover - compiled
    lo = np.inf
    hi = -np.inf
    for c in range(8):
        a, b, g = signs[c, 0], signs[c, 1], signs[c, 2]
        i = x + (e[0, 0] * a + e[0, 1] * b + e[0, 2] * g)
        j = y + (e[1, 0] * a + e[1, 1] * b + e[1, 2] * g)
        k = z + (e[2, 0] * a + e[2, 1] * b + e[2, 2] * g)
        v = tri(dose, i, j, k)
        lo = min(lo, v)
        hi = max(hi, v)
    return lo, hi


@_inline
def clip(d, s, c_lo, c_hi):  # pragma: no cover - compiled
    lo = max(d - 0.5 * s, min(c_lo, d))
    hi = min(d + 0.5 * s, max(c_hi, d))
    return lo, hi


@_kernel
def points(dose, ci, cj, ck, out):  # pragma: no cover - compiled
    for s in range(ci.size):
        out[s] = tri(dose, ci[s], cj[s], ck[s])


@_kernel
def corners(dose, ci, cj, ck, e, signs, box, out_lo, out_hi):  # pragma: no cover
    for s in range(ci.size):
        if box:
            lo, hi = corners_box(dose, ci[s], cj[s], ck[s], e[0, 0], e[1, 1], e[2, 2])
        else:
            lo, hi = corners_any(dose, ci[s], cj[s], ck[s], e, signs)
        out_lo[s] = lo
        out_hi[s] = hi


@_kernel
def intervals(dose, ci, cj, ck, e, signs, box, sp, ins, out_lo, out_hi):  # pragma: no cover
    for s in range(ci.size):
        if not ins[s]:
            out_lo[s] = 0.0
            out_hi[s] = 0.0
            continue
        x, y, z = ci[s], cj[s], ck[s]
        if box:
            c_lo, c_hi = corners_box(dose, x, y, z, e[0, 0], e[1, 1], e[2, 2])
        else:
            c_lo, c_hi = corners_any(dose, x, y, z, e, signs)
        d = tri(dose, x, y, z)
        out_lo[s], out_hi[s] = clip(d, np.float64(sp[s]), c_lo, c_hi)


@_kernel
def layered(dose, tabs, ins_tabs, fi, fj, cnt, half, sp, lo_, hi_, ins_):  # pragma: no cover
    """``intervals`` of boxes (half-widths ``half``) at sub-points given by table lookups:
    sub-point ``s`` of layer ``L`` (``cnt[L]`` consecutive sub-points each) is at dose index
    ``(tabs[0][fi[s]], tabs[1][fj[s]], tabs[2][L])``, inside when all three ``ins_tabs``
    flags are; ``ins_`` receives that flag (``lo_``, ``hi_`` the interval, NaN for a box
    spanning several cells: see ``box_interval``)."""
    ci, cj, ck = tabs
    ii, jj, kk = ins_tabs
    hx, hy, hz = half
    s = 0
    for layer in range(cnt.size):
        z = ck[layer]
        z_in = kk[layer]
        for _ in range(cnt[layer]):
            a, b = fi[s], fj[s]
            inside = z_in and ii[a] and jj[b]
            ins_[s] = inside
            if inside:
                d_s = np.float64(sp[s])
                lo_[s], hi_[s] = box_interval(dose, ci[a], cj[b], z, hx, hy, hz, d_s)
            else:
                lo_[s] = 0.0
                hi_[s] = 0.0
            s += 1


@_kernel
def lattice(c, mask, d, sp, ins, out_lo, out_hi):  # pragma: no cover - compiled
    nk, nj, ni = mask.shape
    n = 0
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                if not mask[k, j, i]:
                    continue
                if not ins[k, j, i]:
                    out_lo[n] = 0.0
                    out_hi[n] = 0.0
                    n += 1
                    continue
                lo = np.inf
                hi = -np.inf
                for a in range(2):
                    for b in range(2):
                        for g in range(2):
                            v = np.float64(c[k + a, j + b, i + g])
                            lo = min(lo, v)
                            hi = max(hi, v)
                out_lo[n], out_hi[n] = clip(np.float64(d[k, j, i]), np.float64(sp[k, j, i]), lo, hi)
                n += 1


@_kernel
def separable(dose, k0, k1, wk, j0, j1, wj, i0, i1, wi, out):  # pragma: no cover
    nj_d, ni_d = dose.shape[1], dose.shape[2]
    plane = np.empty((nj_d, ni_d))
    rows = np.empty((j0.size, ni_d))
    for a in range(k0.size):
        ka, kb, w = k0[a], k1[a], wk[a]
        for jn in range(nj_d):
            for n in range(ni_d):
                x = np.float64(dose[ka, jn, n])
                plane[jn, n] = x + w * (np.float64(dose[kb, jn, n]) - x)
        for b in range(j0.size):
            ja, jb, w = j0[b], j1[b], wj[b]
            for n in range(ni_d):
                x = plane[ja, n]
                rows[b, n] = x + w * (plane[jb, n] - x)
        for b in range(j0.size):
            for c in range(i0.size):
                x = rows[b, i0[c]]
                out[a, b, c] = x + wi[c] * (rows[b, i1[c]] - x)


@_kernel
def grad_norm(d, out):  # pragma: no cover - compiled
    """np.gradient's central / one-sided differences, squared and summed over the
    axes one axis at a time (contiguous inner loops), then the square root."""
    nk, nj, ni = d.shape
    out[:] = 0.0
    for k in range(nk):
        for j in range(nj):
            if ni > 1:
                for i in range(ni):
                    a, b = max(i - 1, 0), min(i + 1, ni - 1)
                    g = (np.float64(d[k, j, b]) - np.float64(d[k, j, a])) / (b - a)
                    out[k, j, i] = g * g
            if nj > 1:
                a, b = max(j - 1, 0), min(j + 1, nj - 1)
                for i in range(ni):
                    g = (np.float64(d[k, b, i]) - np.float64(d[k, a, i])) / (b - a)
                    out[k, j, i] += g * g
        if nk > 1:
            a, b = max(k - 1, 0), min(k + 1, nk - 1)
            for j in range(nj):
                for i in range(ni):
                    g = (np.float64(d[b, j, i]) - np.float64(d[a, j, i])) / (b - a)
                    out[k, j, i] += g * g
    for k in range(nk):
        for j in range(nj):
            for i in range(ni):
                out[k, j, i] = np.sqrt(out[k, j, i])
