"""Figures of a plan: the DVH plot and isodose lines over CT slices (matplotlib, Agg).

Figures are built with the object-oriented API (:class:`matplotlib.figure.Figure` and its
Agg canvas), never through ``pyplot``, so no global figure state is touched and the
functions are safe in servers and threads.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from brachycryo.core.grid import Grid
from brachycryo.qa.dvh import DVH, sample_dose_at_points

#: Isodose levels drawn, in % of the prescription, with their colours.
ISODOSE_LEVELS_PCT = (50, 100, 150, 200)
ISODOSE_COLOURS = {50: "#1f77ff", 100: "#ff2020", 150: "#ffb000", 200: "#ff00ff"}
PLANES = ("axial", "coronal", "sagittal")
#: Colours of the instrument overlays (the probe ones are the zones RTSTRUCT's colours).
PROBE_TRACK_COLOUR = "#ffe600"
PROBE_ACTIVE_COLOUR = "#00ffff"
PROBE_TIP_COLOUR = "#ff00c8"
NEEDLE_COLOUR = "#7cfc00"


@dataclass(frozen=True)
class ProbeOverlay:
    """A cryo probe as inserted (LPS mm): its track from the skin entry to the tip, and its
    freezing (active) zone on that track."""

    entry_mm: tuple[float, float, float]
    tip_mm: tuple[float, float, float]
    active_start_mm: tuple[float, float, float]
    active_end_mm: tuple[float, float, float]


@dataclass(frozen=True)
class NeedleOverlay:
    """A seed needle (LPS mm): from its skin entry to its deepest seed."""

    entry_mm: tuple[float, float, float]
    end_mm: tuple[float, float, float]


@dataclass(frozen=True)
class Instruments:
    """What was inserted: cryo probes and seed needles, drawn on the report's figures."""

    probes: Sequence[ProbeOverlay] = ()
    needles: Sequence[NeedleOverlay] = ()

    @property
    def active_zones_mm(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each probe's active zone as (tip-side end, handle-side end), mm."""
        return [(np.asarray(p.active_start_mm), np.asarray(p.active_end_mm)) for p in self.probes]


#: No probes, no needles (the default of the figures and the report).
NO_INSTRUMENTS = Instruments()


@dataclass(frozen=True)
class _PlaneView:
    """How a CT plane is drawn: the in-plane axes (h, v), the normal axis and the plane's
    index on it, and the grid (positions drawn in mm along the grid's axes)."""

    grid: Grid
    ha: int
    va: int
    index: int

    @property
    def normal_axis(self) -> int:
        return 3 - self.ha - self.va

    def hv(self, ijk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        sp = self.grid.spacing_mm
        return ijk[..., self.ha] * sp[self.ha], ijk[..., self.va] * sp[self.va]

    def in_slice(self, ijk: np.ndarray) -> np.ndarray:
        """Whether points lie in the slice: within half a voxel of the plane."""
        return np.abs(ijk[..., self.normal_axis] - self.index) <= 0.5


def _slab_part(view: _PlaneView, a_ijk: np.ndarray, b_ijk: np.ndarray) -> np.ndarray | None:
    """The part of segment a -> b (index coordinates) within the slice, as its two ends,
    or None when the segment does not reach the slice."""
    n = view.normal_axis
    lo, hi = view.index - 0.5, view.index + 0.5
    da = float(b_ijk[n] - a_ijk[n])
    if abs(da) < 1e-12:
        return np.array([a_ijk, b_ijk]) if lo <= a_ijk[n] <= hi else None
    t0, t1 = sorted(((lo - a_ijk[n]) / da, (hi - a_ijk[n]) / da))
    t0, t1 = max(t0, 0.0), min(t1, 1.0)
    if t0 > t1:
        return None
    return np.array([a_ijk + t0 * (b_ijk - a_ijk), a_ijk + t1 * (b_ijk - a_ijk)])


def _draw_segment(ax: Axes, view: _PlaneView, a_mm, b_mm, colour: str, width: float) -> None:
    """A straight segment: its projection onto the plane dashed, the part within the slice
    solid (a marker where it only crosses the slice)."""
    ends = view.grid.mm_to_ijk(np.vstack([a_mm, b_mm]).astype(float))
    h, v = view.hv(ends)
    ax.plot(h, v, "--", color=colour, lw=0.6 * width, alpha=0.7)
    part = _slab_part(view, ends[0], ends[1])
    if part is None:
        return
    ph, pv = view.hv(part)
    if float(np.hypot(np.ptp(ph), np.ptp(pv))) < min(view.grid.spacing_mm):
        ax.plot([ph.mean()], [pv.mean()], "X", color=colour, ms=6, mec="k", mew=0.5)
    else:
        ax.plot(ph, pv, "-", color=colour, lw=width)


def _draw_instruments(
    ax: Axes, view: _PlaneView, instruments: Instruments
) -> tuple[list, list[str]]:
    """Probe tracks, active zones and tips and seed needles; their legend entries."""
    probes, needles = instruments.probes, instruments.needles
    for needle in needles:
        _draw_segment(ax, view, needle.entry_mm, needle.end_mm, NEEDLE_COLOUR, 1.2)
    for probe in probes:
        _draw_segment(ax, view, probe.entry_mm, probe.tip_mm, PROBE_TRACK_COLOUR, 1.6)
        _draw_segment(ax, view, probe.active_start_mm, probe.active_end_mm,
                      PROBE_ACTIVE_COLOUR, 4.0)  # fmt: skip
        tip = view.grid.mm_to_ijk(np.asarray(probe.tip_mm, float))
        h, v = view.hv(tip)
        filled = bool(view.in_slice(tip))
        ax.plot([h], [v], "o", ms=6, mec=PROBE_TIP_COLOUR, mew=1.5,
                color=PROBE_TIP_COLOUR if filled else "none")  # fmt: skip
    handles: list = []
    labels: list[str] = []
    if probes:
        handles += [Line2D([], [], color=PROBE_TRACK_COLOUR, lw=1.6),
                    Line2D([], [], color=PROBE_ACTIVE_COLOUR, lw=4.0),
                    Line2D([], [], ls="none", marker="o", color=PROBE_TIP_COLOUR)]  # fmt: skip
        labels += ["probe tracks (skin -> tip)", "probe active zones", "probe tips"]
    if needles:
        handles.append(Line2D([], [], color=NEEDLE_COLOUR, lw=1.2))
        labels.append("seed needles")
    if probes or needles:
        handles += [Line2D([], [], color="0.6", ls="--", lw=1.0),
                    Line2D([], [], ls="none", marker="X", color="0.6", mec="k")]  # fmt: skip
        labels += ["dashed: projected onto the slice", "X: crosses the slice"]
    return handles, labels


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
    isotherms: Mapping[str, np.ndarray] | None = None,
    window: tuple[float, float] = (-160.0, 240.0),
    instruments: Instruments = NO_INSTRUMENTS,
) -> Figure:
    """One CT plane (axial k, coronal j or sagittal i) with isodose lines and overlays.

    ``structures`` maps names to (mask on ``ct_grid``, colour); ``isotherms`` maps labels
    to masks on ``ct_grid``; isodose lines are drawn at 50/100/150/200 % of
    ``prescription_gy`` from the dose interpolated (trilinear) onto the plane.  Seeds
    within one slice of the plane are marked.  The ``instruments``' probes (tracks from the
    skin to the tip, active zones, tips) and seed needles (entry to deepest seed) are drawn
    projected onto the plane (dashed), solid where they run within the slice (half a voxel
    of the plane), with an X where they only cross it; a probe's tip is filled when it lies
    in the slice.  Axes are in mm along the grid's own axes (patient LPS when aligned).
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
    more_handles, more_labels = _draw_instruments(
        ax, _PlaneView(ct_grid, ha, va, index), instruments
    )
    handles += more_handles
    labels += more_labels
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
    "NO_INSTRUMENTS",
    "PLANES",
    "Instruments",
    "NeedleOverlay",
    "ProbeOverlay",
    "dvh_figure",
    "figure_png",
    "slice_figure",
]
