"""Ice-ball outputs: ``summary.json`` (schema of issue 4), run details, PNG slices.

Figures use matplotlib's object-oriented API on the Agg canvas (no global pyplot state).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brachycryo.core.atomic import atomic_path, check_writable, write_text_atomic
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.bioheat import BioheatResult
from brachycryo.cryo_iceball.isotherms import (
    isotherm_key,
    min_distance_mm,
    principal_axes,
    volume_ml,
)


def summary_dict(
    result: BioheatResult,
    isotherms_c: Sequence[float],
    *,
    lethal_isotherm_c: float,
    oar_masks: dict[str, np.ndarray] | None = None,
    oar_distances_mm: dict[str, float | None] | None = None,
) -> dict:
    """``{"isotherms": {"0": {"volume_ml", "axes_mm": [short, middle, long]}, ...},
    "lethal_isotherm_c": .., "oar_min_distance_mm": {ROI: ..}}`` (distance from the 0 C
    isotherm, voxel centre to voxel centre; 0 when they overlap).

    ``oar_distances_mm`` (distances computed by the caller, e.g. against OARs on a CT grid
    beyond the simulation grid) are reported as given, after those of ``oar_masks``.
    """
    grid = result.grid
    iso = {}
    for t in isotherms_c:
        mask = result.isotherm_mask(t)
        ax = principal_axes(mask, grid)
        iso[isotherm_key(t)] = {
            "volume_ml": round(volume_ml(mask, grid), 4),
            "axes_mm": [round(a, 2) for a in ax.axes_mm],
        }
    ice = result.isotherm_mask(0.0)
    oars: dict[str, float | None] = {}
    for name, m in (oar_masks or {}).items():
        d = min_distance_mm(ice, m, grid)
        oars[name] = None if not np.isfinite(d) else round(d, 2)
    for name, given in (oar_distances_mm or {}).items():
        oars[name] = None if given is None or not np.isfinite(given) else round(float(given), 2)
    return {
        "isotherms": iso,
        "lethal_isotherm_c": float(lethal_isotherm_c),
        "oar_min_distance_mm": oars,
    }


def run_info_dict(result: BioheatResult, **extra) -> dict:
    return {
        "backend": result.backend,
        "time_step_s": result.dt_s,
        "stable_limit_s": result.extra.get("dt_max_s"),
        "n_steps": result.n_steps,
        "grid": {
            "shape_kji": list(result.grid.shape),
            "origin_mm": list(result.grid.origin_mm),
            "spacing_mm": list(result.grid.spacing_mm),
        },
        "times_s": [round(float(t), 3) for t in result.times_s],
        "volume_ml_over_time": {
            isotherm_key(t): [round(float(v), 4) for v in vols]
            for t, vols in result.volume_ml.items()
        },
        **extra,
    }


def _slice_planes(grid: Grid, centre_mm: np.ndarray):
    i, j, k = np.clip(
        np.round(grid.mm_to_ijk(centre_mm)).astype(int), 0, np.array(grid.size_ijk) - 1
    )
    return {"axial": (0, k), "coronal": (1, j), "sagittal": (2, i)}


def write_slice_pngs(
    result: BioheatResult,
    out_dir: Path,
    isotherms_c: Sequence[float],
    *,
    centre_mm: np.ndarray,
    overwrite: bool = False,
    oar_masks: dict[str, np.ndarray] | None = None,
) -> list[Path]:
    """Three orthogonal slices of the minimum-temperature map with isotherm contours."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    grid = result.grid
    paths = []
    if grid.is_axis_aligned():
        lo = [grid.origin_mm[a] - 0.5 * grid.spacing_mm[a] for a in range(3)]
        names, unit = ("x", "y", "z"), "mm, LPS"
    else:  # oblique grid: distances along the grid's own axes from voxel [0, 0, 0]
        lo = [-0.5 * grid.spacing_mm[a] for a in range(3)]
        names, unit = ("i", "j", "k"), "mm along the grid axis"
    hi = [lo[a] + grid.size_ijk[a] * grid.spacing_mm[a] for a in range(3)]
    for plane, (axis, index) in _slice_planes(grid, centre_mm).items():
        img = np.take(result.min_temp_c, index, axis=axis)
        # image axes: rows/cols of the remaining array axes [k, j, i] minus ``axis``
        rest = [a for a in (0, 1, 2) if a != axis]  # array axes
        ijk_of = {0: 2, 1: 1, 2: 0}
        row_ax, col_ax = ijk_of[rest[0]], ijk_of[rest[1]]
        fig = Figure(figsize=(5.5, 4.5), dpi=100)
        FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        extent = (lo[col_ax], hi[col_ax], hi[row_ax], lo[row_ax])
        im = ax.imshow(img, cmap="coolwarm", extent=extent, vmin=-150, vmax=40, origin="upper")
        ys = lo[row_ax] + (np.arange(img.shape[0]) + 0.5) * grid.spacing_mm[row_ax]
        xs = lo[col_ax] + (np.arange(img.shape[1]) + 0.5) * grid.spacing_mm[col_ax]
        levels = sorted(float(t) for t in isotherms_c)
        if img.min() <= levels[-1] and min(img.shape) > 1:
            cs = ax.contour(xs, ys, img, levels=levels, colors="k", linewidths=0.8)
            ax.clabel(cs, fmt="%g °C", fontsize=7)
        for name, m in (oar_masks or {}).items():
            ms = np.take(m, index, axis=axis).astype(float)
            if ms.any() and min(ms.shape) > 1:
                ax.contour(xs, ys, ms, levels=[0.5], colors="g", linewidths=1.0)
                yy, xx = np.argwhere(ms > 0).mean(axis=0)
                ax.text(xs[int(xx)], ys[int(yy)], name, color="g", fontsize=7)
        ax.set_xlabel(f"{names[col_ax]} ({unit})")
        ax.set_ylabel(f"{names[row_ax]} ({unit})")
        ax.set_title(f"minimum temperature, {plane} slice {names[ijk_of[axis]]} index {index}")
        fig.colorbar(im, ax=ax, label="°C")
        path = out_dir / f"slice_{plane}.png"
        with atomic_path(path, overwrite=overwrite) as tmp:
            fig.savefig(tmp, format="png")
        paths.append(path)
    # ice-ball volume over time
    fig = Figure(figsize=(5.5, 3.5), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for t, vols in sorted(result.volume_ml.items(), reverse=True):
        ax.plot(result.times_s / 60.0, vols, label=f"{isotherm_key(t)} °C")
    ax.set_xlabel("time (min)")
    ax.set_ylabel("volume (ml)")
    ax.legend()
    path = out_dir / "volume_vs_time.png"
    with atomic_path(path, overwrite=overwrite) as tmp:
        fig.savefig(tmp, format="png")
    paths.append(path)
    return paths


OUTPUT_NAMES = ("summary.json", "run_info.json", "volume_vs_time.png") + tuple(
    f"slice_{p}.png" for p in ("axial", "coronal", "sagittal")
)


def check_outputs_writable(out_dir: str | Path, *, overwrite: bool = False) -> None:
    """OutputExistsError before any work when an output of :func:`write_outputs` exists."""
    for name in OUTPUT_NAMES:
        check_writable(Path(out_dir) / name, overwrite=overwrite)


def write_outputs(
    result: BioheatResult,
    out_dir: str | Path,
    *,
    isotherms_c: Sequence[float],
    lethal_isotherm_c: float,
    oar_masks: dict[str, np.ndarray] | None = None,
    centre_mm: np.ndarray,
    overwrite: bool = False,
    run_info: dict | None = None,
    oar_distances_mm: dict[str, float | None] | None = None,
) -> dict:
    """Write summary.json, run_info.json and the PNGs into ``out_dir``; return the summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    check_outputs_writable(out, overwrite=overwrite)
    summary = summary_dict(
        result,
        isotherms_c,
        lethal_isotherm_c=lethal_isotherm_c,
        oar_masks=oar_masks,
        oar_distances_mm=oar_distances_mm,
    )
    write_slice_pngs(
        result, out, isotherms_c, centre_mm=centre_mm, overwrite=overwrite, oar_masks=oar_masks
    )
    write_text_atomic(
        out / "run_info.json", json.dumps(run_info or {}, indent=2), overwrite=overwrite
    )
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2), overwrite=overwrite)
    return summary
