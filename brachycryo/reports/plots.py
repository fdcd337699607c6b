"""Figures of a plan: the DVH plot and isodose lines over CT slices (matplotlib, Agg).

Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure` and its
Agg canvas), never through ``pyplot``, so no global figure state is touched and the
functions are safe in servers and threads.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from brachycryo.core.grid import Grid
from brachycryo.qa.dvh import DVH, sample_dose_at_points

#: Isodose levels drawn, in % of the prescription, with their colours.
ISODOSE_LEVELS_PCT = (50, 100, 150, 200)
ISODOSE_COLOURS = {50: "#1f77ff", 100: "#ff2020", 150: "#ffb000", 200: "#ff00ff"}
PLANES = ("axial", "coronal", "sagittal")


def figure_png(fig: Figure, *, dpi: int = 100) -> bytes:
    """Render a Figure to PNG bytes with the Agg canvas."""
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()


def roi_colour(rgb: tuple[int, int, int] | None, index: int) -> tuple[float, float, float]:
    """Matplotlib colour of a structure: its RTSTRUCT display colour, else a fixed cycle."""
    if rgb is not None:
        r, g, b = rgb
        return (r / 255.0, g / 255.0, b / 255.0)
    cycle = ((0.12, 0.47, 0.71), (1.0, 0.5, 0.05), (0.17, 0.63, 0.17), (0.84, 0.15, 0.16))
    return cycle[index % len(cycle)]


def dvh_figure(
    dvhs: Sequence[DVH],
    *,
    prescription_gy: float | None = None,
    colours: Mapping[str, tuple[int, int, int] | None] | None = None,
    max_dose_gy: float | None = None,
) -> Figure:
    """Cumulative DVHs (% volume vs Gy) of several structures, with the prescription marked."""
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot(1, 1, 1)
    top = 0.0
    for n, dvh in enumerate(dvhs):
        d, v = dvh.cumulative_curve()
        if dvh.volume_cc <= 0:
            continue
        rgb = roi_colour((colours or {}).get(dvh.name), n)
        d = np.concatenate([[0.0], d])
        v = np.concatenate([[dvh.volume_cc], v])
        ax.plot(d, 100.0 * v / dvh.volume_cc, color=rgb, label=dvh.name, lw=1.5)
        top = max(top, float(dvh.dmax_gy))
    if prescription_gy:
        ax.axvline(prescription_gy, color="k", ls="--", lw=1, label=f"Rx {prescription_gy:g} Gy")
        top = min(top, 3.0 * prescription_gy)
    ax.set_xlim(0, max_dose_gy or max(top, 1e-6))
    ax.set_ylim(0, 102)
    ax.set_xlabel("Dose (Gy)")
    ax.set_ylabel("Volume (%)")
    ax.set_title("Cumulative DVH")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    fig.tight_layout()
    return fig


def _plane_geometry(grid: Grid, plane: str, index: int):
    """Index arrays (i, j, k) of a CT plane, the 2-D shape and the axes shown (h, v)."""
    nk, nj, ni = grid.shape
    if plane == "axial":
        jj, ii = np.meshgrid(np.arange(nj), np.arange(ni), indexing="ij")
        ijk = np.stack([ii, jj, np.full_like(ii, index)], axis=-1)
        return ijk, (0, 1)
    if plane == "coronal":
        kk, ii = np.meshgrid(np.arange(nk), np.arange(ni), indexing="ij")
        ijk = np.stack([ii, np.full_like(ii, index), kk], axis=-1)
        return ijk, (0, 2)
    if plane == "sagittal":
        kk, jj = np.meshgrid(np.arange(nk), np.arange(nj), indexing="ij")
        ijk = np.stack([np.full_like(jj, index), jj, kk], axis=-1)
        return ijk, (1, 2)
    raise ValueError(f"plane must be one of {PLANES}, got {plane!r}")


def slice_figure(
    ct_hu: np.ndarray,
    ct_grid: Grid,
    plane: str,
    index: int,
    *,
    dose_gy: np.ndarray | None = None,
    dose_grid: Grid | None = None,
    prescription_gy: float | None = None,
    structures: Mapping[str, tuple[np.ndarray, tuple[int, int, int] | None]] | None = None,
    seeds_mm: np.ndarray | None = None,
    probes_mm: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    isotherms: Mapping[str, np.ndarray] | None = None,
    window: tuple[float, float] = (-160.0, 240.0),
) -> Figure:
    """One CT plane (axial k, coronal j or sagittal i) with isodose lines and overlays.

    ``structures`` maps names to (mask on ``ct_grid``, colour); ``isotherms`` maps labels
    to masks on ``ct_grid``; isodose lines are drawn at 50/100/150/200 % of
    ``prescription_gy`` from the dose interpolated (trilinear) onto the plane.  Seeds
    within one slice of the plane are marked; probes are drawn as their projection with
    the tip marked.  Axes are in mm along the grid's own axes (patient LPS when aligned).
    """
    ijk, (ha, va) = _plane_geometry(ct_grid, plane, index)
    everything = slice(None)
    plane_slices: dict[str, tuple[int | slice, int | slice, int | slice]] = {
        "axial": (index, everything, everything),
        "coronal": (everything, index, everything),
        "sagittal": (everything, everything, index),
    }
    sl = plane_slices[plane]
    sp = ct_grid.spacing_mm
    h_mm = np.arange(ijk.shape[1]) * sp[ha]
    v_mm = np.arange(ijk.shape[0]) * sp[va]
    extent = (
        h_mm[0] - sp[ha] / 2,
        h_mm[-1] + sp[ha] / 2,
        v_mm[-1] + sp[va] / 2,
        v_mm[0] - sp[va] / 2,
    )
    aspect = 1.0
    fig = Figure(figsize=(6, 6 * (extent[2] - extent[3]) / max(extent[1] - extent[0], 1e-6) + 0.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(ct_hu[sl], cmap="gray", vmin=window[0], vmax=window[1], extent=extent, aspect=aspect)
    handles = []
    labels = []
    for n, (name, (mask, rgb)) in enumerate((structures or {}).items()):
        m = np.asarray(mask)[sl]
        if m.any():
            colour = roi_colour(rgb, n)
            cs = ax.contour(
                h_mm, v_mm, m.astype(float), levels=[0.5], colors=[colour], linewidths=1.2
            )
            handles.append(cs.legend_elements()[0][0])
            labels.append(name)
    for n, (label, mask) in enumerate((isotherms or {}).items()):
        m = np.asarray(mask)[sl]
        if m.any():
            cs = ax.contour(
                h_mm,
                v_mm,
                m.astype(float),
                levels=[0.5],
                colors=["#00e0ff"],
                linewidths=1.0,
                linestyles=[(0, (1, 1 + n))],
            )
            handles.append(cs.legend_elements()[0][0])
            labels.append(label)
    if dose_gy is not None and dose_grid is not None and prescription_gy:
        pts = ct_grid.ijk_to_mm(ijk.reshape(-1, 3).astype(float))
        d, inside = sample_dose_at_points(dose_gy, dose_grid, pts)
        d = np.where(inside, d, np.nan).reshape(ijk.shape[:2])
        for pct in ISODOSE_LEVELS_PCT:
            level = prescription_gy * pct / 100.0
            if np.nanmax(d, initial=0.0) >= level:
                cs = ax.contour(
                    h_mm, v_mm, d, levels=[level], colors=[ISODOSE_COLOURS[pct]], linewidths=1.4
                )
                handles.append(cs.legend_elements()[0][0])
                labels.append(f"{pct} % ({level:g} Gy)")
    if seeds_mm is not None and len(seeds_mm):
        s_ijk = ct_grid.mm_to_ijk(np.asarray(seeds_mm, dtype=float).reshape(-1, 3))
        axis_n = 3 - ha - va
        near = np.abs(s_ijk[:, axis_n] - index) <= 1.0
        if near.any():
            marks = ax.plot(
                s_ijk[near, ha] * sp[ha],
                s_ijk[near, va] * sp[va],
                "s",
                color="#ffff00",
                ms=4,
                mec="k",
                mew=0.5,
            )
            handles.append(marks[0])
            labels.append("seeds")
    for n, (tip, base) in enumerate(probes_mm):
        ends = ct_grid.mm_to_ijk(np.vstack([tip, base]).astype(float))
        line = ax.plot(ends[:, ha] * sp[ha], ends[:, va] * sp[va], "-", color="#00ffff", lw=2)
        ax.plot(ends[0, ha] * sp[ha], ends[0, va] * sp[va], "o", color="#00ffff", ms=4)
        if n == 0:
            handles.append(line[0])
            labels.append("cryoprobes")
    ax.set_xlim(extent[0], extent[1])
    ax.set_ylim(extent[2], extent[3])
    names = "ijk"
    ax.set_xlabel(f"{names[ha]} axis (mm)")
    ax.set_ylabel(f"{names[va]} axis (mm)")
    ax.set_title(f"{plane} plane {index}")
    if handles:
        ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


__all__ = [
    "ISODOSE_LEVELS_PCT",
    "PLANES",
    "dvh_figure",
    "figure_png",
    "slice_figure",
]
