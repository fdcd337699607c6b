"""3-D picture of a plan with pyvista, off screen: tumour, isotherms, prescription isodose, seeds.

Surfaces are extracted by marching cubes in each grid's index space and mapped to patient
mm through the Grid (any orientation).  Off-screen rendering needs an OpenGL that works
without a display (VTK's OSMesa/EGL builds, or a virtual X server); where it cannot,
:func:`render_plan_3d` returns ``(None, reason)`` and the report says why instead of
showing the picture.

Without a display (no ``DISPLAY``, on Linux) VTK's default window first tries X and prints
"bad X server connection" on stderr before it falls back; where the EGL library is present
:func:`_prefer_headless_window` selects VTK's EGL window through VTK's own switch, the
``VTK_DEFAULT_OPENGL_WINDOW`` environment variable (VTK >= 9.4; a value the user set is
kept), so the render is silent.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from skimage.measure import marching_cubes

from brachycryo.core.grid import Grid


def _surface(volume: np.ndarray, grid: Grid, level: float, *, step: int = 1):
    import pyvista as pv

    v = np.asarray(volume, dtype=np.float32)
    if not (v.min() < level < v.max()):
        return None
    padded = np.pad(v, 1, constant_values=float(v.min()))
    verts, faces, _, _ = marching_cubes(padded, level=level, step_size=step)
    ijk = verts[:, ::-1] - 1.0  # (k, j, i) -> (i, j, k), undo the padding
    pts = grid.ijk_to_mm(ijk)
    cells = np.column_stack([np.full(len(faces), 3), faces]).ravel()
    return pv.PolyData(pts, cells)


def _prefer_headless_window() -> None:
    """Select VTK's EGL render window when there is no X display and libEGL is found."""
    import ctypes.util
    import os
    import sys

    if sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
        if ctypes.util.find_library("EGL"):
            os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")


def render_plan_3d(
    *,
    tumour_mask: np.ndarray | None = None,
    tumour_grid: Grid | None = None,
    dose_gy: np.ndarray | None = None,
    dose_grid: Grid | None = None,
    prescription_gy: float | None = None,
    isotherms: Mapping[str, np.ndarray] | None = None,
    isotherm_grid: Grid | None = None,
    seeds_mm: np.ndarray | None = None,
    probes_mm: Sequence[tuple[np.ndarray, np.ndarray]] = (),
    window_size: tuple[int, int] = (800, 600),
) -> tuple[bytes | None, str]:
    """PNG bytes of the 3-D scene and ``""``, or ``(None, reason)`` when it cannot render."""
    try:
        import pyvista as pv
    except Exception as exc:  # pragma: no cover - pyvista is a dependency
        return None, f"pyvista is not importable ({exc})"
    _prefer_headless_window()
    try:
        plotter = pv.Plotter(off_screen=True, window_size=list(window_size))
        # pyvista delegates set_background / add_legend / view_isometric to its renderer
        # under functools.wraps(Renderer.<name>), whose stub takes the bound self for an
        # argument: hence the targeted ignores below
        plotter.set_background("white")  # type: ignore[arg-type]
        if tumour_mask is not None and tumour_grid is not None:
            s = _surface(tumour_mask, tumour_grid, 0.5)
            if s is not None:
                plotter.add_mesh(s, color="red", opacity=0.45, label="tumour")
        if dose_gy is not None and dose_grid is not None and prescription_gy:
            s = _surface(dose_gy, dose_grid, float(prescription_gy), step=2)
            if s is not None:
                plotter.add_mesh(s, color="gold", opacity=0.25, label="prescription isodose")
        colours = ("cyan", "deepskyblue", "blue")
        for n, (label, mask) in enumerate((isotherms or {}).items()):
            if isotherm_grid is None:
                break
            s = _surface(mask, isotherm_grid, 0.5)
            if s is not None:
                plotter.add_mesh(s, color=colours[n % 3], opacity=0.3, label=label)
        if seeds_mm is not None and len(seeds_mm):
            cloud = pv.PolyData(np.asarray(seeds_mm, dtype=float).reshape(-1, 3))
            glyphs = cloud.glyph(geom=pv.Sphere(radius=1.2), scale=False, orient=False)
            plotter.add_mesh(glyphs, color="black", label="seeds")
        for tip, base in probes_mm:
            plotter.add_mesh(
                pv.Line(np.asarray(base, float), np.asarray(tip, float)), color="teal", line_width=4
            )
        plotter.add_legend(bcolor="white", size=(0.25, 0.2))  # type: ignore[call-arg]
        plotter.view_isometric()  # type: ignore[call-arg]
        img = plotter.screenshot(return_img=True)
        plotter.close()
    except Exception as exc:
        return None, f"off-screen rendering failed ({exc.__class__.__name__}: {exc})"
    import io

    from matplotlib.image import imsave

    buf = io.BytesIO()
    imsave(buf, np.asarray(img), format="png")
    return buf.getvalue(), ""


__all__ = ["render_plan_3d"]
