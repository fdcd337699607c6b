"""Measured ice balls that the probe boundary model is fitted to, and their simulation.

The Robin probe model (:mod:`brachycryo.cryo_iceball.probes`) has one free parameter per
probe class, the heat-transfer coefficient ``h`` between the active surface and the argon
at its Joule-Thomson temperature.  ``benchmarks/cryo_fit.py`` fits it by least squares to
the measurements below (every row of ``literature_isotherms.csv`` whose conditions are
stated well enough to simulate) and writes the fitted values and the residual table to
``cryo_iceball/data/probe_fit.json``.

Measurements used (each a :class:`Measurement`; tolerances are this module's choice,
the sources state none):

* Littrup et al., JVIR 2009;20:1343 (PMC2762356): 2.4 mm argon probes, agar at 39 C, 15 min
  freeze, 1-4 probes 2 cm apart: -30 C diameter 12 / 33 / 41 / 49 mm and lethal (-30 C)
  share of the ice-ball cross-section 13 / 46 / 51 / 56 %.  Tolerance 1.5 mm (diameter:
  CT reading and the 1 mm grid) and 0.03 (share: two rounded areas).  Layouts (not
  stated in the abstract, assumed): 2 in a line, 3 on an equilateral triangle, 4 on a
  square, side 20 mm; the model's diameter is that of the equivalent circle of the
  isotherm on the mid plane (the caliper convention of the paper is not stated; the max
  caliper is reported beside it).
* PMC4850244 (17G needles in gel at 37 C): "-40 C about 1 cm inside the 0 C edge", -40 C
  about 10 mm in radius around a needle.  Used as: one 17G needle, 10 min freeze
  (duration NOT stated: assumed), gap between the 0 C and -40 C equivalent-circle radii
  on the mid plane 10 +- 3 mm, -40 C diameter 20 +- 6 mm.

Rows left out, and why: the 17G lung in vivo and PBS rows (thaw intervals and, for PBS,
the cycle durations not stated; aerated lung is not the gel the rule is about), the
"manufacturer spec" row (conditions unknown), the BWH planning ellipsoids (clinical,
spacing not stated), Visica2 / liver rows (liquid nitrogen, other devices).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.bioheat import BioheatOptions, BioheatResult, simulate
from brachycryo.cryo_iceball.probes import Probe, ProbeModel, protocol
from brachycryo.cryo_iceball.tissue import load_tissues

#: margin of the simulated box beyond the probes (mm); the outer layer is held at the medium
#: temperature (a larger margin changed the Littrup 1-probe -30 C diameter by < 0.1 mm)
MARGIN_MM = 28.0


@dataclass(frozen=True)
class FitCase:
    """One simulated configuration: probe class, count (layout below), medium, freeze time."""

    name: str
    probe_model: str
    n_probes: int
    spacing_mm: float
    medium_temp_c: float
    freeze_min: float


@dataclass(frozen=True)
class Measurement:
    """A measured figure of one case: ``metric`` (a key of :func:`case_metrics`)."""

    case: str
    metric: str
    value: float
    tolerance: float
    source: str


CASES = (
    FitCase("littrup_1", "generic_2p4mm", 1, 20.0, 39.0, 15.0),
    FitCase("littrup_2", "generic_2p4mm", 2, 20.0, 39.0, 15.0),
    FitCase("littrup_3", "generic_2p4mm", 3, 20.0, 39.0, 15.0),
    FitCase("littrup_4", "generic_2p4mm", 4, 20.0, 39.0, 15.0),
    FitCase("gel_17g_1", "generic_17g", 1, 15.0, 37.0, 10.0),
)

_LITTRUP = "Littrup et al. JVIR 2009;20:1343 (PMC2762356)"
MEASUREMENTS = tuple(
    [
        Measurement(f"littrup_{n}", "d_minus30_equiv_mm", d, 1.5, _LITTRUP)
        for n, d in ((1, 12.0), (2, 33.0), (3, 41.0), (4, 49.0))
    ]
    + [
        Measurement(f"littrup_{n}", "lethal_area_fraction_minus30", f, 0.03, _LITTRUP)
        for n, f in ((1, 0.13), (2, 0.46), (3, 0.51), (4, 0.56))
    ]
    + [
        Measurement("gel_17g_1", "gap_0_to_minus40_mm", 10.0, 3.0, "PMC4850244 abstract"),
        Measurement("gel_17g_1", "d_minus40_equiv_mm", 20.0, 6.0, "PMC4850244 abstract"),
    ]
)


def case_by_name(name: str) -> FitCase:
    for c in CASES:
        if c.name == name:
            return c
    raise KeyError(name)


def layout_xy_mm(n: int, spacing_mm: float) -> np.ndarray:
    """Probe positions across the probes: 1 centred, 2 in a line, 3 on an equilateral
    triangle, 4 on a square (side ``spacing_mm``), centred on the origin."""
    s = spacing_mm
    if n == 1:
        return np.zeros((1, 2))
    if n == 2:
        return np.array([[-s / 2, 0.0], [s / 2, 0.0]])
    if n == 3:
        r = s / math.sqrt(3)
        return np.array([[r * math.cos(a), r * math.sin(a)] for a in np.radians([90, 210, 330])])
    if n == 4:
        return np.array([[-s / 2, -s / 2], [s / 2, -s / 2], [s / 2, s / 2], [-s / 2, s / 2]])
    raise ValueError(f"layout of {n} probes not defined")


def simulate_case(
    case: FitCase, model: ProbeModel, *, grid_mm: float, backend: str = "auto"
) -> tuple[Grid, BioheatResult]:
    """Simulate ``case`` with ``model`` (parallel probes along +z, centred at z = 0)."""
    xy = layout_xy_mm(case.n_probes, case.spacing_mm)
    half = model.active_length_mm / 2
    probes = [Probe(model, (float(x), float(y), -half), (0.0, 0.0, 1.0)) for x, y in xy]
    lo = (xy[:, 0].min() - MARGIN_MM, xy[:, 1].min() - MARGIN_MM, -half - MARGIN_MM)
    hi = (xy[:, 0].max() + MARGIN_MM, xy[:, 1].max() + MARGIN_MM, half + MARGIN_MM)
    grid = Grid.from_bounds(lo, hi, grid_mm)
    t = case.medium_temp_c
    res = simulate(
        grid,
        probes,
        protocol(("freeze", case.freeze_min)),
        tissues=[load_tissues()["gel"]],
        initial_temp_c=t,
        backend=backend,
        options=BioheatOptions(arterial_temp_c=t, isotherms_c=(0.0, -30.0, -40.0)),
    )
    return grid, res


def slice_measures_mm(mask2d: np.ndarray, spacing_mm: float) -> tuple[float, float]:
    """Equivalent-circle diameter and max caliper (Feret, every 2 degrees, plus one voxel)
    of a 2-D mask with square pixels of ``spacing_mm``."""
    pts = np.argwhere(mask2d).astype(float) * spacing_mm
    if len(pts) == 0:
        return 0.0, 0.0
    equiv = 2.0 * math.sqrt(len(pts) * spacing_mm**2 / math.pi)
    widths = [
        float(np.ptp(pts @ np.array([math.cos(a), math.sin(a)])))
        for a in np.radians(np.arange(0, 180, 2))
    ]
    return equiv, max(widths) + spacing_mm


def case_metrics(grid: Grid, res: BioheatResult) -> dict[str, float]:
    """Figures of the mid plane (z = 0): equivalent-circle diameters of the 0, -30 and
    -40 C isotherms, the -30 C max caliper, the -30 C share of the 0 C area, and the gap
    between the 0 C and -40 C equivalent-circle radii."""
    k = round(float(grid.mm_to_ijk((0.0, 0.0, 0.0))[2]))
    sl = res.min_temp_c[k]
    h = float(grid.spacing_mm[0])
    d0, c0 = slice_measures_mm(sl <= 0.0, h)
    d30, c30 = slice_measures_mm(sl <= -30.0, h)
    d40, _ = slice_measures_mm(sl <= -40.0, h)
    surf = res.extra.get("probe_surface_temp_c")
    return {
        "d_0_equiv_mm": d0,
        "d_0_max_caliper_mm": c0,
        "d_minus30_equiv_mm": d30,
        "d_minus30_max_caliper_mm": c30,
        "d_minus40_equiv_mm": d40,
        "lethal_area_fraction_minus30": float(np.count_nonzero(sl <= -30.0))
        / max(1, int(np.count_nonzero(sl <= 0.0))),
        "gap_0_to_minus40_mm": 0.5 * (d0 - d40),
        "surface_temp_end_c": float(np.nanmean(surf[-1])) if surf is not None else math.nan,
    }


def with_cooling(
    model: ProbeModel, h_w_m2k: float | None, max_extraction_w: float = math.inf
) -> ProbeModel:
    """``model`` in the Robin mode with ``h`` and capacity ``max_extraction_w`` (``h`` None:
    the Dirichlet surface at the model's ``freeze_temp_c``)."""
    if h_w_m2k is None:
        return dataclasses.replace(model, cooling_h_w_m2k=0.0, max_extraction_w=math.inf)
    return dataclasses.replace(
        model, cooling_h_w_m2k=float(h_w_m2k), max_extraction_w=float(max_extraction_w)
    )


def load_fit_report() -> dict:
    """The committed fit (``data/probe_fit.json``, written by ``benchmarks/cryo_fit.py``)."""
    import json
    from importlib import resources

    path = resources.files("brachycryo.cryo_iceball").joinpath("data/probe_fit.json")
    return json.loads(path.read_text("utf-8"))
