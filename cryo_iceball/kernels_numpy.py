"""Numpy reference of one explicit enthalpy time step of the Pennes bioheat equation.

Per voxel ``v`` (free, i.e. not held at a boundary temperature this step)::

    H_v += dt * ( sum_faces k_f (T_n - T_v) / h^2                 conduction (conservative)
                  + c_v k_c (T_p - T_v)                            probe surface (implicit, below)
                  + phi_v w_b rho_b c_b (T_a - T_v)                Pennes perfusion
                  + phi_v Q_m )                                    metabolic heat

with ``k_f = (k_v + k_n)/2`` on each face, no flux through the array's outer faces
(Neumann; hold the outer layer to impose a far-field temperature), ``phi`` the liquid
fraction, and ``c_v``, ``T_p`` the probe correction of :mod:`brachycryo.cryo_iceball.probes`; where
it
applies, the increment is divided by ``1 + dt c_v k_c / C_app(T_v)`` (linearised-implicit
coupling, see :mod:`brachycryo.cryo_iceball.bioheat`).  Held voxels take ``H = H(T_hold)``.
Pennes, J Appl Physiol 1:93 (1948); enthalpy method after Voller & Swaminathan,
Numer Heat Transfer B 19:175 (1991).

The numba and CUDA kernels implement the same arithmetic; the parity tests compare them.
"""

from __future__ import annotations

import numpy as np

from brachycryo.cryo_iceball.tissue import (
    P_CF,
    P_CM,
    P_CU,
    P_HL,
    P_KF,
    P_KU,
    P_PERF,
    P_QM,
    P_TL,
    P_TS,
)


def _props(params: np.ndarray, tissue: np.ndarray):
    return [params[:, c][tissue] for c in range(params.shape[1])]


def temperature_pass(
    h: np.ndarray,
    tissue: np.ndarray,
    params: np.ndarray,
    hold: np.ndarray,
    hold_temp: np.ndarray,
    temp: np.ndarray,
    cond: np.ndarray,
    tmin: np.ndarray,
) -> None:
    """Fill ``temp`` and ``cond`` from ``h``; impose held temperatures; update ``tmin``."""
    p = _props(params, tissue)
    cf, cu, cm, ts, tl, hl, kf, ku = (
        p[P_CF], p[P_CU], p[P_CM], p[P_TS], p[P_TL], p[P_HL], p[P_KF], p[P_KU]
    )  # fmt: skip
    t = np.where(h <= 0, ts + h / cf, np.where(h >= hl, tl + (h - hl) / cu, ts + h / cm))
    slot_t = hold_temp[np.maximum(hold, 0)]
    active = (hold >= 0) & ~np.isnan(slot_t)
    t = np.where(active, slot_t, t)
    h_held = np.where(t <= ts, cf * (t - ts), np.where(t >= tl, hl + cu * (t - tl), cm * (t - ts)))
    h[...] = np.where(active, h_held, h)
    phi = np.clip((t - ts) / (tl - ts), 0, 1)
    temp[...] = t
    cond[...] = kf + phi * (ku - kf)
    np.minimum(tmin, temp, out=tmin)


def update_pass(
    h: np.ndarray,
    tissue: np.ndarray,
    params: np.ndarray,
    hold: np.ndarray,
    hold_temp: np.ndarray,
    couple_coef: np.ndarray,
    couple_slot: np.ndarray,
    temp: np.ndarray,
    cond: np.ndarray,
    inv_h2: np.ndarray,
    dt: float,
    arterial_c: float,
) -> None:
    """Advance the free voxels' enthalpy by one step of ``dt`` seconds."""
    t, k = temp, cond
    rate = np.zeros_like(h)
    for ax in range(3):
        lo_axes = [slice(None)] * 3
        hi_axes = [slice(None)] * 3
        lo_axes[ax] = slice(0, -1)
        hi_axes[ax] = slice(1, None)
        lo, hi = tuple(lo_axes), tuple(hi_axes)
        flux = 0.5 * (k[lo] + k[hi]) * (t[hi] - t[lo]) * inv_h2[ax]
        rate[lo] += flux
        rate[hi] -= flux
    p = _props(params, tissue)
    ts, tl, kf, ku = p[P_TS], p[P_TL], p[P_KF], p[P_KU]
    phi = np.clip((t - ts) / (tl - ts), 0, 1)
    rate += phi * (p[P_PERF] * (arterial_c - t) + p[P_QM])
    # probe-surface correction
    tp = hold_temp[np.maximum(couple_slot, 0)]
    on = (couple_slot >= 0) & ~np.isnan(tp)
    tp = np.where(on, tp, t)
    phip = np.clip((tp - ts) / (tl - ts), 0, 1)
    kp = kf + phip * (ku - kf)
    a = np.where(on, couple_coef * 0.5 * (k + kp), 0)
    rate += a * (tp - t)
    # the probe coupling is taken linearised-implicitly (T_v at the new time through the
    # apparent capacity), so it does not restrict the stable step
    capp = np.where(t <= ts, p[P_CF], np.where(t >= tl, p[P_CU], p[P_CM]))
    rate = rate / (1 + dt * a / capp)
    slot_t = hold_temp[np.maximum(hold, 0)]
    held = (hold >= 0) & ~np.isnan(slot_t)
    h += np.where(held, 0, dt * rate).astype(h.dtype)


def step(state: dict, dt: float, arterial_c: float, hold_temp: np.ndarray) -> None:
    """One full step on the arrays in ``state`` (see :mod:`brachycryo.cryo_iceball.bioheat`)."""
    s = state
    temperature_pass(s["h"], s["tissue"], s["params"], s["hold"], hold_temp, s["temp"], s["cond"],
                     s["tmin"])  # fmt: skip
    update_pass(s["h"], s["tissue"], s["params"], s["hold"], hold_temp, s["couple_coef"],
                s["couple_slot"], s["temp"], s["cond"], s["inv_h2"], dt, arterial_c)  # fmt: skip


def temperature_only(state: dict, hold_temp: np.ndarray) -> None:
    """Refresh ``temp``/``cond``/``tmin`` from ``h`` without advancing time."""
    s = state
    temperature_pass(s["h"], s["tissue"], s["params"], s["hold"], hold_temp, s["temp"], s["cond"],
                     s["tmin"])  # fmt: skip
