"""numpy reference implementation of the TG-43U1 dose kernels.

Vectorised over points, looping over seeds; computes in float64 whatever the requested
dtype (the result is cast at the end), so it is the yardstick for the compiled backends.
Independent of :mod:`brachycryo.dose_kernels.tg43_scalar` (same rules, written with numpy), so a
parity test between them checks one against the other.
"""

from __future__ import annotations

import numpy as np

from brachycryo.dose_kernels.kernel_tables import SMALL_X, KernelTables

__all__ = ["matrix_points_numpy", "rate_per_u_numpy", "weighted_sum_points_numpy"]


def _log_linear_gl(r: np.ndarray, t: KernelTables) -> np.ndarray:
    """g_L(r): log-linear inside the table, g_L(r_min) below, log-linear tail above."""
    rr = t.gl_r_mm.astype(np.float64)
    lg = t.gl_log.astype(np.float64)
    inside = np.interp(r, rr, lg)  # np.interp holds the end values outside the table
    tail = lg[-1] + (r - rr[-1]) * float(t.gl_tail_slope)
    return np.exp(np.where(r >= rr[-1], tail, inside))


def _bilinear_f(r: np.ndarray, theta_deg: np.ndarray, t: KernelTables) -> np.ndarray:
    """F(r, θ), bilinear in (r, θ) with r clamped to the table, θ in [0, 90]."""
    fr = t.f_r_mm.astype(np.float64)
    ft = t.f_theta_deg.astype(np.float64)
    tab = t.f_table.astype(np.float64)
    rc = np.clip(r, fr[0], fr[-1])
    tc = np.clip(theta_deg, ft[0], ft[-1])
    if fr.size > 1:
        ir = np.clip(np.searchsorted(fr, rc, side="right") - 1, 0, fr.size - 2)
        ir1 = ir + 1
        wr = (rc - fr[ir]) / (fr[ir1] - fr[ir])
    else:
        ir = ir1 = np.zeros(rc.shape, dtype=np.intp)
        wr = np.zeros_like(rc)
    it = np.clip(np.searchsorted(ft, tc, side="right") - 1, 0, ft.size - 2)
    it1 = it + 1
    wt = (tc - ft[it]) / (ft[it1] - ft[it])
    f_lo = tab[it, ir] * (1 - wr) + tab[it, ir1] * wr
    f_hi = tab[it1, ir] * (1 - wr) + tab[it1, ir1] * wr
    return f_lo * (1 - wt) + f_hi * wt


def rate_per_u_numpy(d_mm: np.ndarray, u: np.ndarray, t: KernelTables) -> np.ndarray:
    """Dose rate per U (Gy h⁻¹ U⁻¹, float64) at displacements ``d_mm`` (M, 3) from a seed
    with unit axis ``u``; formulas in :mod:`brachycryo.dose_kernels.dose`."""
    d = np.asarray(d_mm, dtype=np.float64)
    u = np.asarray(u, dtype=np.float64)
    z = d @ u
    rho = np.linalg.norm(np.cross(d, u), axis=-1)
    length = float(t.length_mm)
    half = float(t.half_length_mm)
    dmin = float(t.min_distance_mm)
    if t.line:
        zc = np.clip(z, -half, half)
        dzs = z - zc
        dseg = np.hypot(rho, dzs)
        near = dseg < dmin
        on_seg = near & (dseg <= SMALL_X * dmin)  # numerically on the segment
        scale = np.where(near & ~on_seg, dmin / np.where(on_seg, 1.0, dseg), 1.0)
        rho = np.where(on_seg, dmin, rho * scale)
        z = np.where(on_seg, zc, zc + dzs * scale)
        r2 = rho * rho + z * z
        r = np.sqrt(r2)
        dd = r2 - half * half
        x = length * rho
        with np.errstate(divide="ignore", invalid="ignore"):
            geom = np.where(x < SMALL_X * dd, 1.0 / dd, np.arctan2(x, dd) / x)
        theta = np.degrees(np.arctan2(rho, np.abs(z)))
        aniso = _bilinear_f(r, theta, t)
    else:
        r = np.maximum(np.hypot(rho, z), dmin)
        dd = r * r - half * half
        x = length * r
        geom = np.arctan2(x, dd) / x
        aniso = np.interp(r, t.phi_r_mm.astype(np.float64), t.phi_an.astype(np.float64))
    return float(t.norm) * geom * _log_linear_gl(r, t) * aniso


def weighted_sum_points_numpy(
    points_mm: np.ndarray,
    seed_pos_mm: np.ndarray,
    seed_dir: np.ndarray,
    weights: np.ndarray,
    t: KernelTables,
    cutoff_mm: float | None,
) -> np.ndarray:
    """Σ_s weights[s] · rate_s(point) for points (M, 3); float64 result."""
    pts = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
    out = np.zeros(pts.shape[0], dtype=np.float64)
    cut2 = np.inf if cutoff_mm is None else float(cutoff_mm) ** 2
    for s in range(seed_pos_mm.shape[0]):
        d = pts - seed_pos_mm[s]
        r2 = np.einsum("ij,ij->i", d, d)
        sel = r2 <= cut2
        if cutoff_mm is None:
            out += weights[s] * rate_per_u_numpy(d, seed_dir[s], t)
        elif np.any(sel):
            out[sel] += weights[s] * rate_per_u_numpy(d[sel], seed_dir[s], t)
    return out


def matrix_points_numpy(
    points_mm: np.ndarray,
    seed_pos_mm: np.ndarray,
    seed_dir: np.ndarray,
    factor: float,
    t: KernelTables,
    cutoff_mm: float | None,
) -> np.ndarray:
    """Matrix (M, N): ``factor`` · rate of seed n (per U) at point m; float64."""
    pts = np.asarray(points_mm, dtype=np.float64).reshape(-1, 3)
    out = np.zeros((pts.shape[0], seed_pos_mm.shape[0]), dtype=np.float64)
    cut2 = np.inf if cutoff_mm is None else float(cutoff_mm) ** 2
    for s in range(seed_pos_mm.shape[0]):
        d = pts - seed_pos_mm[s]
        sel = np.einsum("ij,ij->i", d, d) <= cut2
        if np.any(sel):
            out[sel, s] = factor * rate_per_u_numpy(d[sel], seed_dir[s], t)
    return out
