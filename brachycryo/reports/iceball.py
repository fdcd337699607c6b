"""The ice-ball page (``iceball.html`` of ``brachycryo iceball``): one self-contained HTML file.

Contents: the isotherm table of ``summary.json`` (volume and principal axes of each
isotherm, the lethal one named; distance of the 0 °C isotherm to each OAR), the slice
viewer of :mod:`brachycryo.reports.viewer` on the minimum-temperature map - the isotherms
as iso-lines of the field (levels editable in the page), the probes' tracks and freezing
zones, the OARs as toggled outlines, a cursor readout of the temperature at the nearest
simulation voxel - over the patient CT, or over a uniform background for a ``[medium]`` run
(no CT), then the ice-ball volume over time and the notes.

The page takes plain inputs (the :class:`~brachycryo.cryo_iceball.bioheat.BioheatResult`,
the placed probes, masks on their grids), so the low ``cryo_iceball`` layer does not depend
on the reports; the ``iceball`` command composes it.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

import numpy as np

from brachycryo import __version__
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.bioheat import BioheatResult
from brachycryo.cryo_iceball.probes import Probe
from brachycryo.reports.html import _CSS, img_tag
from brachycryo.reports.plots import Instruments, ProbeOverlay
from brachycryo.reports.viewer import (
    VIEWER_CSS,
    MaskLayer,
    ViewerInputs,
    build_viewer_payload,
    html_document,
    temperature_field,
    viewer_section_html,
)

OUTPUT_NAME = "iceball.html"

#: Outline colours of the OARs (cycled).
_OAR_COLOURS = ((0, 220, 0), (255, 200, 0), (255, 0, 200), (0, 200, 255), (255, 255, 255))


def probe_overlays(probes: Sequence[Probe], grid: Grid) -> Instruments:
    """Each probe's track from its tip along its axis to the far edge of ``grid`` (the
    handle's side; the simulation does not know the skin entry) and its freezing zone."""
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], float)
    corners_mm = grid.ijk_to_mm(corners * (np.asarray(grid.size_ijk, float) - 1.0))
    out = []
    for p in probes:
        tip = np.asarray(p.tip_mm, dtype=float)
        reach_mm = float(np.max(np.linalg.norm(corners_mm - tip, axis=1)))
        end = tip + reach_mm * np.asarray(p.direction, dtype=float)
        a, b = p.active_segment_mm()
        out.append(
            ProbeOverlay(
                tuple(float(v) for v in end),  # type: ignore[arg-type]
                tuple(float(v) for v in tip),  # type: ignore[arg-type]
                tuple(float(v) for v in a),  # type: ignore[arg-type]
                tuple(float(v) for v in b),  # type: ignore[arg-type]
            )
        )
    return Instruments(probes=out)


def oar_layers(
    masks: Mapping[str, np.ndarray],
    grid: Grid,
    colours: Mapping[str, tuple[int, int, int] | None] | None = None,
) -> list[MaskLayer]:
    """The OAR masks (on ``grid``) as outlined layers, in their ROI colours when given."""
    out = []
    for n, (name, m) in enumerate(masks.items()):
        c = (colours or {}).get(name) or _OAR_COLOURS[n % len(_OAR_COLOURS)]
        out.append(MaskLayer(name, (int(c[0]), int(c[1]), int(c[2])), m, grid))
    return out


def iceball_viewer_inputs(
    result: BioheatResult,
    probes: Sequence[Probe],
    *,
    isotherms_c: Sequence[float],
    initial_temp_c: float,
    oars: Sequence[MaskLayer] = (),
    ct_hu: np.ndarray | None = None,
    ct_grid: Grid | None = None,
) -> ViewerInputs:
    """The viewer's data: the minimum temperature over the CT (without one, over a uniform
    0 HU background on the simulation grid); off the simulation grid the temperature reads
    as ``initial_temp_c`` (the far field)."""
    if ct_hu is None or ct_grid is None:
        ct_hu, ct_grid = np.zeros(result.grid.shape, dtype=np.float32), result.grid
    return ViewerInputs(
        ct_hu=ct_hu,
        ct_grid=ct_grid,
        field_values=result.min_temp_c,
        field_grid=result.grid,
        prescription_gy=None,
        instruments=probe_overlays(probes, result.grid),
        masks=list(oars),
        field=temperature_field(isotherms_c, initial_temp_c),
    )


def _summary_tables(summary: dict) -> str:
    lethal = summary["lethal_isotherm_c"]
    rows = []
    for key, iso in summary["isotherms"].items():
        axes = " × ".join(f"{a:g}" for a in iso["axes_mm"])
        tag = " (lethal)" if float(key) == float(lethal) else ""
        rows.append(
            f"<tr><td>{html.escape(key)} °C{tag}</td><td>{iso['volume_ml']:.2f}</td>"
            f"<td>{axes}</td></tr>"
        )
    out = (
        "<h2>Isotherms</h2><table><tr><th>Isotherm</th><th>Volume (ml)</th>"
        "<th>Principal axes (mm)</th></tr>" + "".join(rows) + "</table>"
    )
    oars = summary.get("oar_min_distance_mm") or {}
    if oars:
        cells = "".join(
            f"<tr><td>{html.escape(n)}</td><td>{'–' if d is None else f'{d:.2f}'}</td></tr>"
            for n, d in oars.items()
        )
        out += (
            "<h2>Organs at risk</h2><table><tr><th>ROI</th><th>Distance from the 0 °C "
            f"isotherm (mm)</th></tr>{cells}</table>"
        )
    return out


def build_iceball_html(
    viewer: ViewerInputs,
    summary: dict,
    *,
    title: str = "brachycryo ice ball",
    volume_png: bytes | None = None,
    notes: Sequence[str] = (),
    ct_shown: bool = True,
) -> str:
    """The page (module docstring); ``summary`` is the document of ``summary.json``;
    ``ct_shown`` false: the viewer's background is uniform (a ``[medium]`` run)."""
    payload = build_viewer_payload(viewer)
    all_notes = list(notes) + payload.notes
    if not ct_shown:
        all_notes.append("no CT: the medium is shown as a uniform background")
    parts = [
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="meta">brachycryo {__version__}; isotherms are lines of the minimum '
        "temperature reached at each voxel during the protocol.</p>",
        _summary_tables(summary),
        viewer_section_html(payload, None),
    ]
    if volume_png is not None:
        parts.append("<h2>Ice-ball volume over time</h2>" + img_tag(volume_png, "volume vs time"))
    if all_notes:
        items = "".join(f"<li>{html.escape(n)}</li>" for n in all_notes)
        parts.append(f"<h2>Notes</h2><ul>{items}</ul>")
    return html_document(title, "\n".join(parts), _CSS + VIEWER_CSS)


__all__ = [
    "OUTPUT_NAME",
    "build_iceball_html",
    "iceball_viewer_inputs",
    "oar_layers",
    "probe_overlays",
]
