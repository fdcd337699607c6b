"""Empirical ice-ball mode: isotherm ellipsoids per probe, merged by superposition.

**An approximation for interactive planning**, not a substitute for the physics mode
(:func:`brachycryo.cryo_iceball.bioheat.simulate`).  Each probe model carries a table of isotherm
ellipsoids of revolution (full width across the probe, full length along it, centre offset
along it) for one medium and protocol, either

* **calibrated** from a single-probe physics run (:func:`calibrate_from_physics`), or
* taken from **published** single-probe sizes in ``data/probe_isotherms.csv``
  (:func:`from_catalogue`; only where both width and length are known).

From the table a per-probe temperature estimate is built: linear in the normalised
ellipsoidal radius between consecutive isotherms, linear from the probe temperature on the
axis to the coldest isotherm, and a logarithmic tail (the quasi-steady radial law
``T ~ A + B ln r``, fitted to the two warmest isotherms) out to the medium temperature.
Several probes are merged by a **power mean of their cooling**,
``T = T_body - (sum_p (T_body - T_p)^m)^(1/m)`` (clipped at the probe temperature).
``m = 1`` is linear superposition of temperatures, which is wrong for fixed-temperature
probes (it double-counts: each probe's neighbour would cool it below its own temperature) and
over-estimated the merged volumes by 50-115 % against the physics mode; ``m = inf`` is the
union of the single-probe ice balls, which misses the multi-probe synergy (-10 to -48 %).
The default ``m = 2`` is an empirical choice made against physics runs of 2 and 3 generic
17G probes (gel, 37 C, 4 min freeze, 12-16 mm apart): Dice 0.89-0.96 except 0.77 for the
-40 C isotherm of the 3-probe layout.

Measured error against the physics mode (``benchmarks/results/cryo_empirical.json``:
generic 17G probes, gel at 37 C, 10 min freeze, 1 mm grid, table calibrated from the
single-probe physics run; 2 in a line, 3 on a triangle, 4 on a square, 15 mm apart):

=========  =====================  =====================  =====================
probes     0 C vol. ratio (Dice)  -20 C                  -40 C
=========  =====================  =====================  =====================
1          1.004 (0.991)          1.017 (0.984)          1.030 (0.978)
2          1.153 (0.929)          1.009 (0.983)          0.843 (0.906)
3          1.010 (0.942)          0.817 (0.899)          0.634 (0.776)
4          1.183 (0.916)          1.008 (0.977)          0.826 (0.905)
=========  =====================  =====================  =====================

**Measured lethal ceiling.**  A physics calibration never gives a lethal ellipsoid wider
than a *measured* lethal width of the same probe model (``data/probe_isotherms.csv``
rows of kind bench/clinical with an isotherm at or below -20 C): every calibrated
ellipsoid at or below that isotherm is narrowed to the measured width.  For the 2.4 mm
probe this is Littrup et al. (JVIR 2009;20:1343): -30 C diameter 12 mm for one probe in
agar at 39 C after 15 min, which no parameter set of the probe model reproduces together
with the 2-4 probe arrays (``data/probe_fit.json``: the fitted model gives a wider
single-probe lethal zone).  Agar without perfusion is the favourable case, so the ceiling
keeps a lone probe's planned lethal zone from exceeding what was measured; the cap is
recorded in the table's ``source``.

So: the 0 C ice edge is over-estimated by up to 18 % in volume and the lethal -40 C zone
under-estimated by 16-37 % for multi-probe layouts; use it to search, and verify the chosen
layout with the physics mode (:func:`brachycryo.cryo_iceball.bioheat.simulate`).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

import numpy as np

from brachycryo.core.errors import DataModelError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.bioheat import BioheatOptions, simulate
from brachycryo.cryo_iceball.probes import Phase, Probe, ProbeModel
from brachycryo.cryo_iceball.tissue import Tissue

DEFAULT_CALIBRATION_ISOTHERMS_C = (0.0, -10.0, -20.0, -30.0, -40.0, -60.0, -80.0, -100.0)


@dataclass(frozen=True)
class IsothermEllipsoid:
    """One isotherm of one probe: full width (across) and length (along), in mm."""

    temp_c: float
    width_mm: float
    length_mm: float
    centre_offset_mm: float = 0.0  # along the probe direction, from the active-zone centre

    def __post_init__(self) -> None:
        if not (self.width_mm > 0 and self.length_mm > 0):
            raise DataModelError(
                f"isotherm {self.temp_c} C ellipsoid needs width and length > 0, got "
                f"{self.width_mm} x {self.length_mm} mm"
            )


@dataclass(frozen=True)
class EmpiricalProbe:
    """Isotherm table of one probe model for one medium and protocol."""

    model: str
    ellipsoids: tuple[IsothermEllipsoid, ...]
    probe_temp_c: float
    body_temp_c: float
    probe_radius_mm: float
    source: str = ""

    def __post_init__(self) -> None:
        if not self.ellipsoids:
            raise DataModelError(f"empirical model {self.model!r} has no isotherm")
        ordered = tuple(sorted(self.ellipsoids, key=lambda e: e.temp_c))  # cold -> warm
        object.__setattr__(self, "ellipsoids", ordered)


def calibrate_from_physics(
    model: ProbeModel,
    *,
    tissue: Tissue,
    phases: Sequence[Phase],
    initial_temp_c: float = 37.0,
    spacing_mm: float = 1.0,
    margin_mm: float = 28.0,
    isotherms_c: Sequence[float] = DEFAULT_CALIBRATION_ISOTHERMS_C,
    backend: str = "auto",
    options: BioheatOptions | None = None,
) -> EmpiricalProbe:
    """Isotherm ellipsoids of one probe from a single-probe physics run.

    Width and length are those of the ellipsoid of revolution with the isotherm's second
    moments in the probe frame (``var_across = a^2/5``, ``var_along = b^2/5``).
    """
    half = model.active_length_mm / 2
    tip = (0.0, 0.0, -half - model.active_offset_mm)
    probe = Probe(model, tip, (0.0, 0.0, 1.0))
    grid = Grid.from_bounds(
        (-margin_mm, -margin_mm, -half - margin_mm), (margin_mm, margin_mm, half + margin_mm),
        spacing_mm,
    )  # fmt: skip
    opts = options or BioheatOptions(arterial_temp_c=initial_temp_c)
    res = simulate(
        grid, [probe], phases, tissues=[tissue], initial_temp_c=initial_temp_c,
        backend=backend, options=opts,
    )  # fmt: skip
    pts = grid.voxel_centres_mm()
    h2 = np.asarray(grid.spacing_mm) ** 2 / 12.0
    ells = []
    for t in isotherms_c:
        mask = res.min_temp_c <= t
        if np.count_nonzero(mask) < 8:
            continue
        p = pts[mask]
        zc = p[:, 2].mean()
        var_along = p[:, 2].var() + h2[2]
        var_across = 0.5 * (np.mean(p[:, 0] ** 2) + np.mean(p[:, 1] ** 2) + h2[0] + h2[1])
        ells.append(
            IsothermEllipsoid(
                float(t),
                2 * math.sqrt(5 * var_across),
                2 * math.sqrt(5 * var_along),
                float(zc),
            )
        )
    coldest = float(res.min_temp_c.min())
    # a Robin probe's surface follows its load (its freeze_temp_c is not used)
    probe_temp = coldest if model.is_robin else min(model.freeze_temp_c, coldest)
    capped, note = cap_to_measured_lethal_width(model.model, ells)
    return EmpiricalProbe(
        model.model, tuple(capped), probe_temp, initial_temp_c, model.radius_mm,
        source=f"physics calibration: {tissue.name}, {initial_temp_c} C, "
        + ", ".join(f"{ph.phase} {ph.minutes} min" for ph in phases) + note,
    )  # fmt: skip


#: isotherms at or below this temperature count as lethal for the measured ceiling
LETHAL_CEILING_MAX_TEMP_C = -20.0


@dataclass(frozen=True)
class MeasuredLethalWidth:
    """A measured single-probe lethal width (mm) at ``temp_c`` and where it comes from."""

    temp_c: float
    width_mm: float
    source: str


def _catalogue_rows() -> list[dict[str, str]]:
    text = (
        resources.files("brachycryo.cryo_iceball").joinpath("data/probe_isotherms.csv").read_text()
    )
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    return list(csv.DictReader(io.StringIO("\n".join(lines))))


def measured_lethal_widths(model: str) -> list[MeasuredLethalWidth]:
    """Measured (bench or clinical, not simulated) widths of ``model``'s isotherms at or
    below :data:`LETHAL_CEILING_MAX_TEMP_C` in ``data/probe_isotherms.csv``."""
    out = []
    for rec in _catalogue_rows():
        if rec["model"] != model or rec.get("kind", "") not in ("bench", "clinical"):
            continue
        t = float(rec["isotherm_c"])
        if t <= LETHAL_CEILING_MAX_TEMP_C and rec["width_mm"]:
            out.append(MeasuredLethalWidth(t, float(rec["width_mm"]), rec["source"]))
    return out


def cap_to_measured_lethal_width(
    model: str, ellipsoids: Sequence[IsothermEllipsoid]
) -> tuple[list[IsothermEllipsoid], str]:
    """Narrow every ellipsoid at or below a measured lethal isotherm of ``model`` to the
    measured width (the ceiling of the module docstring); returns the ellipsoids and a note
    for the table's source ("" when nothing was capped)."""
    out = list(ellipsoids)
    notes = []
    for meas in measured_lethal_widths(model):
        for n, e in enumerate(out):
            if e.temp_c <= meas.temp_c and e.width_mm > meas.width_mm:
                out[n] = IsothermEllipsoid(e.temp_c, meas.width_mm, e.length_mm, e.centre_offset_mm)
                notes.append(f"{e.temp_c:g} C {e.width_mm:.1f}->{meas.width_mm:g} mm")
        if notes:
            notes.insert(0, f"capped to measured {meas.temp_c:g} C width ({meas.source})")
    return out, ("; " + ", ".join(notes)) if notes else ""


def from_catalogue(model: ProbeModel, *, body_temp_c: float = 37.0) -> EmpiricalProbe:
    """Published single-probe isotherms of ``model`` (rows with width and length known)."""
    ells, sources = {}, set()
    for rec in _catalogue_rows():
        if rec["model"] != model.model or not rec["width_mm"] or not rec["length_mm"]:
            continue
        t = float(rec["isotherm_c"])
        if t in ells:  # first row per isotherm wins (the file lists the preferred one first)
            continue
        ells[t] = IsothermEllipsoid(t, float(rec["width_mm"]), float(rec["length_mm"]))
        sources.add(rec["source"])
    if not ells:
        raise DataModelError(
            f"no published isotherm with both width and length for probe {model.model!r}; "
            "calibrate from the physics mode instead (calibrate_from_physics)"
        )
    return EmpiricalProbe(
        model.model, tuple(ells.values()), model.freeze_temp_c, body_temp_c, model.radius_mm,
        source="; ".join(sorted(sources)),
    )  # fmt: skip


def _tail_slope(emp: EmpiricalProbe) -> float:
    """Slope ``B`` (C per unit of ln q) of the logarithmic tail outside the warmest isotherm
    (``T = T_warm + B ln q``; ``q`` the normalised ellipsoidal radius of that isotherm)."""
    ells = emp.ellipsoids
    temps = [e.temp_c for e in ells]
    if len(ells) >= 2:
        a_in, a_out = 0.5 * ells[-2].width_mm, 0.5 * ells[-1].width_mm
        return (temps[-1] - temps[-2]) / max(math.log(a_out / a_in), 1e-6)
    a_out = 0.5 * ells[-1].width_mm
    return (temps[-1] - emp.probe_temp_c) / max(math.log(a_out / emp.probe_radius_mm), 1e-6)


def cooling_extent_mm(emp: EmpiricalProbe) -> tuple[float, float, float] | None:
    """The cylinder around a probe's axis outside which :func:`_probe_temperature` is
    exactly ``body_temp_c`` (no cooling): (radius, lowest and highest position along the
    probe, from its active-zone centre), in mm.

    A voxel is cooled only inside an isotherm ellipsoid or where the logarithmic tail
    outside the warmest one is still below the body temperature, i.e. inside that
    ellipsoid scaled by ``exp((T_body - T_warm) / B)``; the cylinder holds all of these,
    with a 1 mm margin so that rounding cannot put a cooled voxel outside it.  None when
    the tail never reaches the body temperature (every voxel may be cooled)."""
    ells = emp.ellipsoids
    slope = _tail_slope(emp)
    if not (math.isfinite(slope) and slope > 0):
        return None
    q_tail = max(math.exp(min((emp.body_temp_c - ells[-1].temp_c) / slope, 700.0)), 1.0)
    radius, lo, hi = 0.0, math.inf, -math.inf
    for n, e in enumerate(ells):
        q = q_tail if n == len(ells) - 1 else 1.0
        radius = max(radius, q * 0.5 * e.width_mm)
        lo = min(lo, e.centre_offset_mm - q * 0.5 * e.length_mm)
        hi = max(hi, e.centre_offset_mm + q * 0.5 * e.length_mm)
    if not all(math.isfinite(v) for v in (radius, lo, hi)):
        return None
    return radius + 1.0, lo - 1.0, hi + 1.0


def cooling_box(grid: Grid, probe: Probe, emp: EmpiricalProbe) -> tuple[slice, slice, slice]:
    """The (k, j, i) slices of ``grid`` around the cylinder of :func:`cooling_extent_mm`
    (the whole grid when it is None): the probe cools no voxel outside them, so its field
    evaluated on the box alone has the values of the whole grid's."""
    size = np.asarray(grid.size_ijk)
    extent = cooling_extent_mm(emp)
    if extent is None:
        return (slice(0, int(size[2])), slice(0, int(size[1])), slice(0, int(size[0])))
    radius, lo_mm, hi_mm = extent
    u = np.asarray(probe.direction, dtype=float)
    centre = probe.active_centre_mm() + 0.5 * (lo_mm + hi_mm) * u
    u_ijk = grid.direction_matrix.T @ u  # the direction matrix is orthonormal
    half_mm = np.abs(u_ijk) * 0.5 * (hi_mm - lo_mm) + radius * np.sqrt(
        np.clip(1.0 - u_ijk**2, 0.0, 1.0)
    )
    ijk = grid.mm_to_ijk(centre)
    half = half_mm / np.asarray(grid.spacing_mm)
    lo = np.clip(np.floor(ijk - half) - 1, 0, size).astype(int)
    hi = np.clip(np.ceil(ijk + half) + 2, 0, size).astype(int)
    hi = np.maximum(hi, lo)
    return (
        slice(int(lo[2]), int(hi[2])),
        slice(int(lo[1]), int(hi[1])),
        slice(int(lo[0]), int(hi[0])),
    )


def _probe_temperature(points_mm: np.ndarray, probe: Probe, emp: EmpiricalProbe) -> np.ndarray:
    u = np.asarray(probe.direction)
    centre = probe.active_centre_mm()
    rel = points_mm - centre
    s = rel @ u
    rho = np.linalg.norm(rel - s[..., None] * u, axis=-1)
    ells = emp.ellipsoids
    q = [
        np.sqrt(
            (rho / (0.5 * e.width_mm)) ** 2 + ((s - e.centre_offset_mm) / (0.5 * e.length_mm)) ** 2
        )
        for e in ells
    ]
    temps = [e.temp_c for e in ells]
    # outside the warmest isotherm: logarithmic tail to the body temperature
    slope = _tail_slope(emp)
    with np.errstate(divide="ignore"):
        out = np.minimum(temps[-1] + slope * np.log(np.maximum(q[-1], 1.0)), emp.body_temp_c)
    # between consecutive isotherms, from the warm side inward (each value computed only
    # where it is used: the same elementwise operations, fewer voxels)
    for n in range(len(ells) - 2, -1, -1):
        inside = q[n + 1] <= 1.0
        qi, qo = q[n][inside], q[n + 1][inside]
        w = np.clip((qi - 1.0) / np.maximum((qi - 1.0) + (1.0 - qo), 1e-12), 0.0, 1.0)
        out[inside] = temps[n] + w * (temps[n + 1] - temps[n])
    inner = q[0] <= 1.0
    out[inner] = emp.probe_temp_c + (temps[0] - emp.probe_temp_c) * q[0][inner]
    return out


DEFAULT_MERGE_EXPONENT = 2.0


def empirical_min_temp(
    grid: Grid,
    probes: Sequence[Probe],
    models: dict[str, EmpiricalProbe],
    *,
    merge_exponent: float = DEFAULT_MERGE_EXPONENT,
) -> np.ndarray:
    """Estimated minimum-temperature map (deg C) of a probe layout (power-mean merge)."""
    if not merge_exponent >= 1:
        raise DataModelError(f"merge_exponent must be >= 1 (or inf), got {merge_exponent}")
    pts = grid.voxel_centres_mm()
    if not probes:
        raise DataModelError("no probe given")
    try:
        emps = [models[p.model.model] for p in probes]
    except KeyError as exc:
        raise DataModelError(f"no empirical table for probe model {exc.args[0]!r}") from None
    body = emps[0].body_temp_c
    cooling = np.zeros(grid.shape, dtype=float)
    for probe, emp in zip(probes, emps, strict=True):
        box = cooling_box(grid, probe, emp)  # zero cooling outside it: the same sums
        c = np.maximum(emp.body_temp_c - _probe_temperature(pts[box], probe, emp), 0.0)
        if math.isinf(merge_exponent):
            cooling[box] = np.maximum(cooling[box], c)
        else:
            cooling[box] += c**merge_exponent
    if not math.isinf(merge_exponent):
        cooling **= 1.0 / merge_exponent
    return np.maximum(body - cooling, min(e.probe_temp_c for e in emps))
