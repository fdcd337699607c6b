"""The combined ice-or-dose map of the sequential arm (cryo planned around implanted seeds).

For each cryo lesion of a plan with ``[case] implanted_plan``: the planning-grid slice
through the GTV's centroid, each GTV voxel coloured by what treats it (the lethal isotherm,
the seeds' dose at >= the prescription, both, or neither), the implanted seeds within half
a slice, the probes' active zones, and the coverage figures of ``metrics.json``
(:class:`brachycryo.planning.evaluate.SequentialMetrics`).  Built with the object-oriented
matplotlib API (:mod:`brachycryo.reports.plots`).
"""

from __future__ import annotations

import html

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from brachycryo.planning.evaluate import PlanMetrics
from brachycryo.planning.pipeline import PlanResult
from brachycryo.reports.html import img_tag
from brachycryo.reports.plots import figure_png

#: Colours of: outside the GTV, untreated, ice only, dose only, both.
_CLASSES = ("outside", "untreated", "ice only", "dose only", "ice and dose")
_COLOURS = ListedColormap(["#00000000", "#d62728", "#1f77b4", "#ff7f0e", "#2ca02c"])


def combined_map(result: PlanResult, lesion: str) -> np.ndarray:
    """Class (index into ``_CLASSES``) of every planning-grid voxel for ``lesion``."""
    spec_lesion = next(x for x in result.spec.lesions if x.roi == lesion)
    rx = spec_lesion.prescription_gy or result.spec.prescription_gy
    gtv = result.zones[lesion].gtv
    ice = result.cryo[lesion].lethal
    dose = result.dose_gy >= rx
    out = np.zeros(gtv.shape, dtype=np.int8)
    out[gtv] = 1 + ice[gtv] + 2 * dose[gtv]
    return out


def _figure(result: PlanResult, lesion: str) -> Figure:
    grid = result.grid
    classes = combined_map(result, lesion)
    gtv = result.zones[lesion].gtv
    k = int(np.rint(np.argwhere(gtv)[:, 0].mean()))
    fig = Figure(figsize=(5.0, 4.6))
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(classes[k], cmap=_COLOURS, vmin=0, vmax=len(_CLASSES) - 1,
              interpolation="nearest", origin="upper")  # fmt: skip
    implanted = result.implanted
    if implanted is not None:
        ijk = grid.mm_to_ijk(implanted.seeds.positions_mm)
        near = np.abs(ijk[:, 2] - k) <= 0.5
        ax.plot(ijk[near, 0], ijk[near, 1], "k*", ms=7, label="implanted seed")
    for t in result.probe_tracks:
        if t.lesion == lesion:
            a, b = grid.mm_to_ijk(np.asarray([t.active_start_mm, t.active_end_mm]))
            ax.plot([a[0], b[0]], [a[1], b[1]], "-", color="#00bfff", lw=2.5)
    for n, name in enumerate(_CLASSES[1:], start=1):
        ax.plot([], [], "s", color=_COLOURS(n), label=name)
    ax.legend(loc="upper right", fontsize=7, framealpha=0.8)
    ax.set_title(f"{lesion}: treated by ice or dose (grid slice k = {k})", fontsize=9)
    ax.set_xlabel("i (voxel)")
    ax.set_ylabel("j (voxel)")
    return fig


def combined_coverage_section(result: PlanResult, plan_metrics: PlanMetrics) -> str:
    """The report's HTML section of the combined map ('' without implanted seeds)."""
    if result.implanted is None:
        return ""
    parts = ["<h2>Cryo around implanted seeds: combined coverage</h2>"]
    for lesion, block in plan_metrics.lesions.items():
        seq = block.sequential
        if seq is None or lesion not in result.cryo:
            continue
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td>{c.combined_pct}</td><td>{c.ice_pct}</td>"
            f"<td>{c.dose_pct}</td></tr>"
            for name, c in seq.coverage.items()
        )
        parts.append(
            f"<h3>{html.escape(lesion)}</h3><p>{seq.n_implanted_seeds} implanted seeds; "
            f"closest probe track {seq.min_probe_seed_distance_mm} mm from a seed "
            f"(clearance {seq.seed_clearance_mm:g} mm).</p>"
            "<table><tr><th>region</th><th>combined %</th><th>ice %</th><th>dose %</th></tr>"
            f"{rows}</table>"
            + img_tag(figure_png(_figure(result, lesion)), f"{lesion} combined coverage map")
        )
    return "\n".join(parts)
