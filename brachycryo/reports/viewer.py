"""The interactive part of the report page: a slice viewer and a DVH, inlined in the HTML.

Everything the page shows is embedded in the page itself (no network, no CDN): the CT,
the dose, the structure masks, the seeds and instruments travel as base64 arrays in a
``<script type="application/json">`` block, and a small vanilla-JS program
(``viewer.js``, next to this module) draws them on canvases.

Data on the page
----------------
* **CT** on the *display grid*: the CT grid block-averaged by an integer factor in the
  row/column directions (never across slices) until it holds at most
  :data:`MAX_CT_VOXELS` voxels, then quantised to uint8 in 10 HU steps over
  [-1000, 1550] HU (the window/level presets work on these values).
* **The scalar field** (the dose in Gy, or the ice ball's minimum temperature in °C; see
  :class:`FieldSpec`) on its own grid: every ``s``-th voxel along each axis (``s`` the
  smallest stride leaving at most :data:`MAX_DOSE_VOXELS` voxels; ``s = 1`` keeps the whole
  grid), quantised to uint16 with one offset and one scale (units per count), so the cursor
  readout is the value of the nearest kept voxel to within half a count.  Iso-lines (isodoses
  at % of the prescription, isotherms in °C) and the colour wash interpolate the field
  trilinearly at the display pixels (marching squares in the page, the method of Lorensen &
  Cline 1987 restricted to 2-D).  A page may have no field (a follow-up without a dose).
* **Structures and isotherms**: ROIs rasterised on the display grid, masks on other grids
  (:class:`MaskLayer`) resampled to it, stored as bit-packed bounding boxes; the page draws
  their edges (a pixel inside whose 4-neighbour is outside).
* **Seeds, needles, probes**: display-grid index coordinates; a seed is drawn on the
  slices within half a slice of its centre, a needle or probe track where it crosses the
  slab of the slice (clipped to it and projected).

The DVH panel (:class:`DvhPlot`) draws cumulative DVH curves, solid or dashed (a plan
overlaid on the post-implant dose), and bands shaded between two curves (the 5-95 % band
of the robustness scenarios); a page may carry the DVH without a slice viewer.

Positions are read out in mm in the patient (LPS) frame through the CT grid's affine
(DICOM PS3.3 C.7.6.2.1.1), which also handles oblique CTs.
"""

from __future__ import annotations

import base64
import html as _html
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brachycryo.core.errors import StructureError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.rasterize import roi_mask
from brachycryo.dicom_io.rtstruct import ROI
from brachycryo.qa.dvh import DVH, sample_dose_at_points
from brachycryo.reports.plots import NO_INSTRUMENTS, Instruments

MAX_CT_VOXELS = 12_000_000
"""Display-grid voxel budget (uint8 each): 512x512x150 becomes 256x256x150."""
MAX_DOSE_VOXELS = 4_000_000
"""Dose voxel budget (uint16 each)."""
DVH_POINTS = 1000
"""Most points per structure of the page's DVH (each DVH of a seed plan has ~10^5 bins)."""
CT_HU_MIN = -1000.0
CT_HU_STEP = 10.0
DEFAULT_LEVELS_PCT = (50.0, 100.0, 150.0, 200.0)


@dataclass(frozen=True)
class ViewerLayer:
    """One outlined mask on the display grid: a structure or an isotherm."""

    name: str
    colour_rgb: tuple[int, int, int]
    kind: str  # "structure", "isotherm" or "zone"
    mask: np.ndarray


@dataclass(frozen=True)
class FieldSpec:
    """What the viewer's scalar field is and how its iso-lines are given.

    ``relative``: the levels are % of the prescription (isodoses); otherwise they are in
    ``unit`` (isotherms in °C).  ``wash_below``: the colour wash marks values at or below the
    highest level (cold) instead of at or above the lowest (dose).  ``outside``: the value
    off the field's grid (0 Gy; the far-field temperature).
    """

    name: str = "dose"
    unit: str = "Gy"
    grid_label: str = "RTDOSE"
    levels: tuple[float, ...] = DEFAULT_LEVELS_PCT
    relative: bool = True
    wash_below: bool = False
    outside: float = 0.0
    lines: str = "Isodoses"

    def levels_label(self, prescription_gy: float | None) -> str:
        if self.relative:
            rx = f"{prescription_gy:g} Gy" if prescription_gy else "– (no prescription)"
            return f"{self.lines} (% of {rx})"
        return f"{self.lines} ({self.unit})"


DOSE_FIELD = FieldSpec()
"""The default field: a dose in Gy, isodoses at 50 / 100 / 150 / 200 % of the prescription."""


def temperature_field(isotherms_c: Sequence[float], outside_c: float) -> FieldSpec:
    """An ice ball's minimum temperature (°C), isotherms at ``isotherms_c``."""
    return FieldSpec(
        name="temperature",
        unit="°C",
        grid_label="simulation",
        levels=tuple(sorted((float(t) for t in isotherms_c), reverse=True)),
        relative=False,
        wash_below=True,
        outside=float(outside_c),
        lines="Isotherms",
    )


@dataclass(frozen=True)
class MaskLayer:
    """A mask on its own grid, outlined in the viewer (resampled to the display grid)."""

    name: str
    colour_rgb: tuple[int, int, int]
    mask: np.ndarray
    grid: Grid
    kind: str = "structure"  # or "isotherm" (dashed), or "zone" (a planner's zone, solid)


@dataclass(frozen=True)
class CompareField:
    """A second field of the same kind on its own grid (the pre-plan's dose under the
    post-implant one), drawn as dashed iso-lines at the same levels and read out beside
    the first."""

    label: str
    values: np.ndarray
    grid: Grid


@dataclass(frozen=True)
class ViewerInputs:
    """What the viewer shows; masks and positions in any frame, converted on build.

    ``field_values`` on ``field_grid`` is the scalar field that ``field`` describes (a dose
    in Gy unless told otherwise); None (both) for a page without one.
    """

    ct_hu: np.ndarray
    ct_grid: Grid
    field_values: np.ndarray | None
    field_grid: Grid | None
    prescription_gy: float | None
    rois: Sequence[ROI] = ()
    isotherms: Mapping[str, np.ndarray] | None = None
    isotherm_grid: Grid | None = None
    seeds_mm: np.ndarray | None = None
    instruments: Instruments = NO_INSTRUMENTS
    target: str | None = None
    masks: Sequence[MaskLayer] = ()
    field: FieldSpec = DOSE_FIELD
    compare: CompareField | None = None


def _b64(a: np.ndarray) -> str:
    little = np.ascontiguousarray(a).astype(a.dtype.newbyteorder("<"))
    return base64.b64encode(little.tobytes()).decode("ascii")


def inplane_factor(shape: tuple[int, int, int], max_voxels: int = MAX_CT_VOXELS) -> int:
    """Smallest integer in-plane block factor f with nk * (nj // f) * (ni // f) <= max_voxels."""
    nk, nj, ni = shape
    f = 1
    while nk * max(nj // f, 1) * max(ni // f, 1) > max_voxels and f < max(nj, ni):
        f += 1
    return f


def dose_stride(shape: tuple[int, int, int], max_voxels: int = MAX_DOSE_VOXELS) -> int:
    """Smallest stride s keeping at most max_voxels RTDOSE voxels (every s-th along each axis)."""
    s = 1
    while math.prod(-(-n // s) for n in shape) > max_voxels:
        s += 1
    return s


def display_grid(ct_grid: Grid, factor: int) -> Grid:
    """The CT grid block-averaged by ``factor`` along i and j: voxel centres at block centres."""
    nk, nj, ni = ct_grid.shape
    half = (factor - 1) / 2.0
    sx0, sy0, sz0 = (float(v) for v in ct_grid.ijk_to_mm([half, half, 0.0]))
    sx, sy, sz = ct_grid.spacing_mm
    return Grid(
        shape=(nk, nj // factor, ni // factor),
        origin_mm=(sx0, sy0, sz0),
        spacing_mm=(sx * factor, sy * factor, sz),
        direction=ct_grid.direction,
    )


def downsample_ct_u8(ct_hu: np.ndarray, factor: int) -> np.ndarray:
    """Block mean of ``factor`` x ``factor`` in-plane pixels, uint8 counts of 10 HU from -1000."""
    nk, nj, ni = ct_hu.shape
    a = np.asarray(ct_hu, dtype=np.float32)[:, : nj // factor * factor, : ni // factor * factor]
    a = a.reshape(nk, nj // factor, factor, ni // factor, factor).mean(axis=(2, 4))
    return np.clip(np.rint((a - CT_HU_MIN) / CT_HU_STEP), 0, 255).astype(np.uint8)


def quantise_field(values: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(uint16 counts, offset, units per count); value = offset + counts * scale within
    scale / 2.  The offset is 0 for a field without negative values (a dose), else its
    minimum (a temperature); NaN and infinities count as 0."""
    d = np.nan_to_num(np.asarray(values, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    offset = min(0.0, float(d.min())) if d.size else 0.0
    span = (float(d.max()) - offset) if d.size else 0.0
    scale = span / 65535.0 if span > 0 else 1.0
    return np.rint((d - offset) / scale).astype(np.uint16), offset, scale


def resample_mask(mask: np.ndarray, grid: Grid, target: Grid) -> np.ndarray:
    """``mask`` on ``grid`` sampled at the voxel centres of ``target`` (trilinear > 0.5).

    Only the target voxels within one voxel of the mask's bounding box are sampled: the
    trilinear value is 0 farther out (its 8 neighbours are all outside the mask)."""
    if grid.same_as(target):
        return np.asarray(mask, dtype=bool)
    out = np.zeros(target.shape, dtype=bool)
    box = _target_box(mask, grid, target)
    if box is None:
        return out
    lo, hi = box
    sub = target.cropped(lo, hi)
    vals, _ = sample_dose_at_points(
        np.asarray(mask, dtype=np.float32), grid, sub.voxel_centres_mm().reshape(-1, 3)
    )
    out[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]] = (vals > 0.5).reshape(sub.shape)
    return out


def _target_box(mask: np.ndarray, grid: Grid, target: Grid) -> tuple[list[int], list[int]] | None:
    """The (i, j, k) index range [lo, hi) of ``target`` that holds every voxel centre within
    one voxel of ``mask``'s non-zero voxels (on ``grid``), padded by one; None if empty."""
    nz = np.nonzero(mask)
    if nz[0].size == 0:
        return None
    lo_kji = [float(a.min()) - 1.0 for a in nz]
    hi_kji = [float(a.max()) + 1.0 for a in nz]
    corners = np.array(
        [[i, j, k] for i in (lo_kji[2], hi_kji[2]) for j in (lo_kji[1], hi_kji[1])
         for k in (lo_kji[0], hi_kji[0])]
    )  # fmt: skip
    ijk = target.mm_to_ijk(grid.ijk_to_mm(corners))
    size = np.asarray(target.size_ijk)
    lo = np.clip(np.floor(ijk.min(axis=0)).astype(int) - 1, 0, size)
    hi = np.clip(np.ceil(ijk.max(axis=0)).astype(int) + 2, 0, size)
    if np.any(hi <= lo):
        return None
    return lo.tolist(), hi.tolist()


def _layer_json(layer: ViewerLayer) -> dict | None:
    idx = np.nonzero(layer.mask)
    if idx[0].size == 0:
        return None
    lo = [int(a.min()) for a in idx]
    hi = [int(a.max()) + 1 for a in idx]
    box = layer.mask[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
    bits = np.packbits(box.reshape(-1).astype(np.uint8))  # big-endian bit order
    return {
        "name": layer.name,
        "colour": list(layer.colour_rgb),
        "kind": layer.kind,
        "lo": lo,
        "shape": [h - low for h, low in zip(hi, lo, strict=True)],
        "bits": base64.b64encode(bits.tobytes()).decode("ascii"),
    }


_ISO_COLOURS = ((0, 200, 255), (120, 120, 255), (255, 120, 255), (255, 255, 255))


def viewer_layers(inputs: ViewerInputs, disp: Grid) -> tuple[list[ViewerLayer], list[str]]:
    """The structure and isotherm masks on the display grid, with notes on what failed."""
    layers: list[ViewerLayer] = []
    notes: list[str] = []
    for r in inputs.rois:
        try:
            m = roi_mask(r, disp)
        except StructureError as exc:
            notes.append(f"viewer: {exc}")
            continue
        c = r.color_rgb or (255, 255, 0)
        layers.append(ViewerLayer(r.name, (int(c[0]), int(c[1]), int(c[2])), "structure", m))
    if inputs.isotherms and inputs.isotherm_grid is not None:
        for n, (name, m) in enumerate(inputs.isotherms.items()):
            mask = resample_mask(m, inputs.isotherm_grid, disp)
            layers.append(ViewerLayer(name, _ISO_COLOURS[n % 4], "isotherm", mask))
    for ml in inputs.masks:
        mask = resample_mask(ml.mask, ml.grid, disp)
        layers.append(ViewerLayer(ml.name, ml.colour_rgb, ml.kind, mask))
    return layers, notes


def _to_disp(points_mm, disp: Grid) -> list[list[float]]:
    p = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    if p.size == 0:
        return []
    return [[round(float(v), 3) for v in row] for row in disp.mm_to_ijk(p)]


def _instruments_json(instruments: Instruments, disp: Grid) -> dict:
    needles = [_to_disp([n.entry_mm, n.end_mm], disp) for n in instruments.needles]
    probes = [
        {
            "track": _to_disp([p.entry_mm, p.tip_mm], disp),
            "active": _to_disp([p.active_start_mm, p.active_end_mm], disp),
        }
        for p in instruments.probes
    ]
    return {"needles": needles, "probes": probes}


def _affine_list(g: Grid) -> list[float]:
    return [round(float(v), 6) for v in g.affine_mm[:3, :].reshape(-1)]


def _inverse_affine_list(g: Grid) -> list[float]:
    inv = np.linalg.inv(g.affine_mm)
    return [float(v) for v in inv[:3, :].reshape(-1)]


@dataclass(frozen=True)
class ViewerPayload:
    """The JSON the page reads and what the page says about how the data were reduced."""

    data: dict
    notes: list[str]
    description: str


def _field_json(values: np.ndarray, grid: Grid, spec: FieldSpec) -> tuple[dict, str]:
    """A field's page data and how it was reduced (words)."""
    s = dose_stride(grid.shape)
    sub = np.asarray(values)[::s, ::s, ::s]
    sub_grid = Grid(
        shape=(int(sub.shape[0]), int(sub.shape[1]), int(sub.shape[2])),
        origin_mm=grid.origin_mm,
        spacing_mm=(grid.spacing_mm[0] * s, grid.spacing_mm[1] * s, grid.spacing_mm[2] * s),
        direction=grid.direction,
    )
    counts, offset, scale = quantise_field(sub)
    data = {
        "shape": list(sub_grid.shape),
        "inv_affine": _inverse_affine_list(sub_grid),
        "offset": offset,
        "scale": scale,
        "outside": spec.outside,
        "b64": _b64(counts),
    }
    kept = (
        f"every {spec.grid_label} voxel"
        if s == 1
        else f"one {spec.grid_label} voxel in {s} along each axis ({'×'.join(map(str, sub.shape))})"
    )
    return data, f"{kept}, 16 bit ({scale:.3g} {spec.unit} per step)"


def _fields_json(inputs: ViewerInputs) -> tuple[dict | None, dict | None, str]:
    """(the field's page data, the compared field's, the words on both); None: absent."""
    spec = inputs.field
    if inputs.field_values is None or inputs.field_grid is None:
        return None, None, f"no {spec.name}."
    data, words = _field_json(inputs.field_values, inputs.field_grid, spec)
    words = f"{spec.name} {words}"
    other = None
    if inputs.compare is not None:
        c = inputs.compare
        other, cwords = _field_json(c.values, c.grid, spec)
        other["label"] = c.label
        words += f"; {c.label} {cwords}"
    return data, other, words + "."


def build_viewer_payload(inputs: ViewerInputs) -> ViewerPayload:
    """Reduce the CT, field, masks and positions to the page's arrays (module docstring)."""
    f = inplane_factor(inputs.ct_grid.shape)
    disp = display_grid(inputs.ct_grid, f)
    ct_u8 = downsample_ct_u8(inputs.ct_hu, f)
    field_data, compare_data, field_words = _fields_json(inputs)
    layers, notes = viewer_layers(inputs, disp)
    seeds = _to_disp(inputs.seeds_mm if inputs.seeds_mm is not None else [], disp)
    start = [n // 2 for n in disp.shape]  # the slices through the target's centroid
    target = next((ly.mask for ly in layers if ly.name == inputs.target), None)
    if target is not None and target.any():
        start = [round(float(np.mean(a))) for a in np.nonzero(target)]
    spec = inputs.field
    data = {
        "ct": {"shape": list(disp.shape), "affine": _affine_list(disp), "b64": _b64(ct_u8)},
        "ct_hu": {"min": CT_HU_MIN, "step": CT_HU_STEP},
        "spacing": list(disp.spacing_mm),
        "dose": field_data,
        "compare": compare_data,
        "field": {
            "name": spec.name,
            "unit": spec.unit,
            "grid_label": spec.grid_label,
            "relative": spec.relative,
            "wash_below": spec.wash_below,
            "levels_label": spec.levels_label(inputs.prescription_gy),
        },
        "rx": inputs.prescription_gy,
        "levels": list(spec.levels),
        "layers": [j for j in (_layer_json(ly) for ly in layers) if j is not None],
        "seeds": seeds,
        "start": start,
        "instruments": _instruments_json(inputs.instruments, disp),
    }
    nk, nj, ni = inputs.ct_grid.shape
    description = (
        f"CT {ni}×{nj}×{nk} shown as {disp.shape[2]}×{disp.shape[1]}×{disp.shape[0]} "
        f"(in-plane block mean ×{f}), 8 bit in {CT_HU_STEP:g} HU steps over "
        f"[{CT_HU_MIN:g}, {CT_HU_MIN + 255 * CT_HU_STEP:g}] HU; " + field_words
    )
    return ViewerPayload(data, notes, description)


def _json_script(element_id: str, obj) -> str:
    text = json.dumps(obj, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _dvh_points(d: DVH) -> tuple[np.ndarray, np.ndarray] | None:
    """(dose in Gy, volume in %) of a cumulative DVH: the bin edges up to the dose where the
    curve reaches 0 %, resampled (linear interpolation of the cumulative curve) on
    :data:`DVH_POINTS` doses when there are more edges than that; None for an empty one."""
    total = d.volume_cc
    if total <= 0:
        return None
    diff = np.asarray(d.differential_cc, dtype=float)
    cum = np.concatenate([np.cumsum(diff[::-1])[::-1], [0.0]]) / total * 100.0
    edges = np.asarray(d.bin_edges_gy, dtype=float)
    last = int(np.nonzero(cum > 0)[0].max()) + 1 if (cum > 0).any() else 1
    top = float(edges[min(last, len(edges) - 1)])
    if last + 1 > DVH_POINTS:
        dose = np.linspace(float(edges[0]), top, DVH_POINTS)
        return dose, np.interp(dose, edges, cum)
    return edges[: last + 1], cum[: last + 1]


def _rounded(a) -> list[float]:
    return [round(float(v), 4) for v in a]


def _thin(dose: np.ndarray, *curves: np.ndarray) -> tuple[np.ndarray, ...]:
    """Curves on a dose axis of at most :data:`DVH_POINTS` doses (linear interpolation)."""
    dose = np.asarray(dose, dtype=float)
    if dose.size <= DVH_POINTS:
        return (dose, *(np.asarray(c, dtype=float) for c in curves))
    new = np.linspace(float(dose[0]), float(dose[-1]), DVH_POINTS)
    return (new, *(np.interp(new, dose, c) for c in curves))


def dvh_payload(
    dvhs: Sequence[DVH],
    colours: Mapping[str, tuple[int, int, int] | None],
    *,
    label: str = "",
    dashed: bool = False,
) -> list:
    """Cumulative DVH curves (dose in Gy, volume in % of the structure) for the page, each
    named by its structure (the toggles) and labelled ``name`` or ``"name (label)"`` (the
    hover readout); ``dashed`` for an overlaid curve (a plan under the post-implant dose)."""
    out = []
    for d in dvhs:
        pts = _dvh_points(d)
        if pts is None:
            continue
        colour = colours.get(d.name) or (255, 255, 0)
        out.append(
            {
                "name": d.name,
                "label": f"{d.name} ({label})" if label else d.name,
                "colour": [int(c) for c in colour],
                "dash": dashed,
                "dose": _rounded(pts[0]),
                "vol": _rounded(pts[1]),
            }
        )
    return out


def curve_payload(
    name: str,
    label: str,
    colour: tuple[int, int, int],
    dose_gy: np.ndarray,
    volume_pct: np.ndarray,
    *,
    dashed: bool = False,
) -> dict:
    """One DVH curve given as points (dose in Gy, volume in %)."""
    dose, vol = _thin(dose_gy, volume_pct)
    return {
        "name": name,
        "label": label,
        "colour": [int(c) for c in colour],
        "dash": dashed,
        "dose": _rounded(dose),
        "vol": _rounded(vol),
    }


def band_payload(
    name: str,
    label: str,
    colour: tuple[int, int, int],
    dose_gy: np.ndarray,
    low_pct: np.ndarray,
    high_pct: np.ndarray,
) -> dict:
    """A DVH band: shaded between ``low_pct`` and ``high_pct`` on the dose axis ``dose_gy``."""
    dose, lo, hi = _thin(dose_gy, low_pct, high_pct)
    return {
        "name": name,
        "label": label,
        "colour": [int(c) for c in colour],
        "dose": _rounded(dose),
        "lo": _rounded(lo),
        "hi": _rounded(hi),
    }


@dataclass(frozen=True)
class DvhPlot:
    """The page's interactive DVH: curves (:func:`dvh_payload`, :func:`curve_payload`),
    bands (:func:`band_payload`), goal markers, the prescription line (None: none) and a
    caption (plain text) saying what the line styles mean."""

    curves: list
    bands: list = field(default_factory=list)
    goals: list = field(default_factory=list)
    prescription_gy: float | None = None
    caption: str = ""
    heading: str = "DVH"


_JS_PATH = Path(__file__).with_name("viewer.js")

VIEWER_CSS = """
#bc-viewer { display: flex; flex-wrap: wrap; gap: 1em; align-items: flex-start; }
body.bc-solo { margin: 0; }
body.bc-solo > :not(#bc-viewer), body.bc-solo:not(.bc-solo-controls) #bc-controls {
  display: none;
}
#bc-viewer canvas { border: 1px solid #888; background: #000; }
#bc-controls { font-size: 0.85em; max-width: 22em; }
#bc-controls fieldset { margin: 0 0 0.5em 0; }
#bc-readout { font-family: monospace; white-space: pre; }
#bc-dvh svg { border: 1px solid #ccc; background: #fff; }
#bc-dvh-readout { font-family: monospace; font-size: 0.85em; white-space: pre; }
@media print {
  #bc-controls, #bc-dvh-controls, .bc-noprint { display: none; }
  body { margin: 0.5cm; } h2 { page-break-after: avoid; } table { page-break-inside: avoid; }
}
"""


def slice_viewer_html(payload: ViewerPayload) -> str:
    """The slice viewer section: canvas, controls, how the data were reduced, the data."""
    return (
        '<h2>Slice viewer</h2><div id="bc-viewer"><canvas id="bc-canvas" width="512" '
        'height="512"></canvas><div id="bc-controls"></div></div>'
        f'<p class="meta" id="bc-reduction">{_html.escape(payload.description)}</p>'
        + _json_script("bc-data", payload.data)
    )


def dvh_section_html(plot: DvhPlot) -> str:
    """The interactive DVH section (with its data)."""
    caption = f'<p class="meta">{_html.escape(plot.caption)}</p>' if plot.caption else ""
    data = {
        "curves": plot.curves,
        "bands": plot.bands,
        "goals": plot.goals,
        "rx": plot.prescription_gy,
    }
    return (
        f"<h2>{_html.escape(plot.heading)}</h2>"
        '<div id="bc-dvh"></div><div id="bc-dvh-controls"></div><div id="bc-dvh-readout"></div>'
        + caption
        + _json_script("bc-dvh-data", data)
    )


def viewer_script_html() -> str:
    """The program of the viewer and the DVH (once per page, after their sections)."""
    js = _JS_PATH.read_text(encoding="utf-8")
    return f'<pre id="bc-state" hidden></pre><script>{js}</script>'


def viewer_section_html(payload: ViewerPayload | None, dvh: DvhPlot | None) -> str:
    """The slice viewer and / or the DVH sections with the script (HTML, data inlined)."""
    parts = []
    if payload is not None:
        parts.append(slice_viewer_html(payload))
    if dvh is not None:
        parts.append(dvh_section_html(dvh))
    return "".join(parts) + viewer_script_html()


CSP_META = (
    '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
    "script-src 'unsafe-inline'; style-src 'unsafe-inline'; img-src data:\">"
)


def html_document(title: str, body: str, css: str) -> str:
    """A whole self-contained page: the Content-Security-Policy that blocks every network
    source (so the page can fetch nothing), the title, the inlined ``css`` and ``body``."""
    return (
        f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">{CSP_META}'
        f"<title>{_html.escape(title)}</title><style>{css}</style></head>"
        f"<body>\n{body}\n</body></html>\n"
    )


__all__ = [
    "CSP_META",
    "DOSE_FIELD",
    "VIEWER_CSS",
    "CompareField",
    "DvhPlot",
    "FieldSpec",
    "MaskLayer",
    "ViewerInputs",
    "ViewerPayload",
    "band_payload",
    "build_viewer_payload",
    "curve_payload",
    "dose_stride",
    "dvh_payload",
    "dvh_section_html",
    "html_document",
    "inplane_factor",
    "quantise_field",
    "resample_mask",
    "slice_viewer_html",
    "temperature_field",
    "viewer_script_html",
    "viewer_section_html",
]
