"""The ice-ball configuration file (TOML) of ``brachycryo iceball``.

Example::

    [medium]
    tissue = "gel"            # a row of cryo_iceball/data/tissues.csv (or of [catalogue] tissues)
    initial_temp_c = 39.0

    [grid]
    spacing_mm = 1.0
    margin_mm = 30.0          # grid extends this far beyond every probe's active zone

    [[probe]]
    model = "generic_2p4mm"
    tip_mm = [0.0, 0.0, -20.0]
    direction = [0.0, 0.0, 1.0]   # unit vector from the tip toward the handle
    entry_mm = [0.0, 0.0, 60.0]   # optional: where it enters the patient (skin)

    [[protocol]]
    phase = "freeze"          # freeze | passive_thaw | active_thaw
    minutes = 15

    [output]                  # optional
    isotherms_c = [0, -20, -40]
    lethal_isotherm_c = -40

    [solver]                  # optional
    arterial_temp_c = 37.0
    outer_boundary = "fixed"  # or "adiabatic"

    [catalogue]               # optional user files with the packaged files' columns
    probes = "my_probes.csv"
    tissues = "my_tissues.csv"

    [[vessel]]                # optional large vessel (heat sink held at 37 C): a cylinder
    start_mm = [-30, 12, 0]
    end_mm = [30, 12, 0]
    radius_mm = 3

    [[oar]]                   # optional simple organ shapes (distance from the 0 C isotherm)
    name = "rectum"
    centre_mm = [0, 30, 0]
    radius_mm = 8             # a sphere; or size_mm = [x, y, z] for an axis-aligned box

Instead of ``[medium]``, a **CT + RTSTRUCT** case (read and rasterised by
:mod:`brachycryo.planning.cryo_case`; this module only validates the names and paths)::

    [ct]
    series = "CT"                 # folder of the CT series (relative to this file)
    rtstruct = "RS.phantom.dcm"   # its structure set (same Frame of Reference)
    # series_uid = "1.2.3..."     # when the folder holds several CT series
    initial_temp_c = 37.0
    vessels = ["Aorta", "IVC"]    # large vessels: heat sinks held at 37 C
    oars = ["Kidney_L", "SpinalCord"]   # min distance from the 0 C isotherm in summary.json
    # body = "BODY"               # the body outline (default: BODY, else the EXTERNAL ROI)

    [structures]                  # optional: tissue class per ROI (rows of the tissue table),
    Liver = "liver"               # overriding the CT-number classes; later lines win where
    GTV_Bulky = "tumor"           # ROIs overlap

Probe direction and handle (the convention of :class:`~brachycryo.cryo_iceball.probes.Probe`
and of the planner's ``probes.csv``): ``direction`` points from the tip toward the handle,
back out along the track; a direction written as the insertion (skin -> tip) puts the
handle inside the patient.  What can be checked of that, and is (:func:`handle_flags`):

* always, with ``entry_mm``: the entry lies on the probe's axis (within 1 mm) on the handle
  side, beyond the active zone (else a :class:`~brachycryo.core.errors.ConfigError`);
* with a body (a ``[ct]`` case with a BODY / EXTERNAL ROI, or ``[ct] body``): the tip lies
  in the body, and the axis from the tip toward the handle leaves the body within the CT
  (else the handle would lie inside the patient); with ``entry_mm``, the entry lies within
  a voxel of where it does;
* without a body (``[medium]``): the medium has no skin, so a probe is taken to enter from
  the simulated block's edge and nothing is checked; with ``entry_mm``, an entry more than
  a voxel inside the block is flagged: the block's tissue then runs on past the skin along
  the shaft toward the handle, where the patient has none.

Flags are warnings (printed and kept in ``run_info.json``), not errors: the simulation is
still physics of the probes as given.

The simulation grid is then the CT's grid (its direction matrix kept, oblique or not)
cropped to the probes' active zones plus ``margin_mm`` and resampled to ``spacing_mm``.
Tissue classes come from the CT numbers (:func:`brachycryo.cryo_iceball.tissue.classes_from_hu`:
lung below -500 HU, soft tissue otherwise; fat and bone have no sourced thermal values, so
they count as soft tissue unless the ``[catalogue] tissues`` file has rows named ``fat``
and ``bone``), then from ``[structures]``.  The isotherms are also written as an RTSTRUCT
on the CT.  ``[[vessel]]`` and ``[[oar]]`` shapes may be given in either form.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brachycryo.core.errors import ConfigError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.bioheat import DEFAULT_ISOTHERMS_C, BioheatOptions
from brachycryo.cryo_iceball.probes import Phase, Probe, ProbeModel, load_probe_catalogue
from brachycryo.cryo_iceball.tissue import Tissue, get_tissue, load_tissues

_TOP = {
    "medium",
    "ct",
    "structures",
    "grid",
    "probe",
    "protocol",
    "output",
    "solver",
    "catalogue",
    "oar",
    "vessel",
}


@dataclass(frozen=True)
class OarShape:
    """A sphere (``radius_mm``) or an axis-aligned box (``size_mm``) centred at ``centre_mm``."""

    name: str
    centre_mm: tuple[float, float, float]
    radius_mm: float | None = None
    size_mm: tuple[float, float, float] | None = None

    def mask(self, grid: Grid) -> np.ndarray:
        rel = grid.voxel_centres_mm() - np.asarray(self.centre_mm)
        if self.radius_mm is not None:
            return np.linalg.norm(rel, axis=-1) <= self.radius_mm
        return np.all(np.abs(rel) <= 0.5 * np.asarray(self.size_mm), axis=-1)


@dataclass(frozen=True)
class VesselSegment:
    """A straight vessel: cylinder from ``start_mm`` to ``end_mm`` of ``radius_mm``."""

    start_mm: tuple[float, float, float]
    end_mm: tuple[float, float, float]
    radius_mm: float

    def mask(self, grid: Grid) -> np.ndarray:
        from brachycryo.cryo_iceball.probes import cylinder_sdf_mm

        a, b = np.asarray(self.start_mm), np.asarray(self.end_mm)
        return cylinder_sdf_mm(grid.voxel_centres_mm(), a, b, self.radius_mm) <= 0


@dataclass(frozen=True)
class CtSource:
    """The ``[ct]`` + ``[structures]`` tables: paths and ROI names, as plain data.

    ``structures`` is the ordered ``(ROI name, tissue name)`` list of ``[structures]``.
    """

    series_dir: Path
    rtstruct: Path
    series_uid: str | None = None
    structures: tuple[tuple[str, str], ...] = ()
    vessels: tuple[str, ...] = ()
    oars: tuple[str, ...] = ()
    body: str | None = None  # the body outline ROI (None: BODY, else the EXTERNAL one)


@dataclass(frozen=True)
class ProbeFlag:
    """A probe placed where a physician could not have inserted it (see the module
    docstring): ``probe`` indexes ``[[probe]]`` (0-based)."""

    probe: int
    message: str


@dataclass(frozen=True)
class IceballConfig:
    """A validated config.  With ``[medium]``: ``tissue`` and ``grid`` are set, ``ct`` is
    None.  With ``[ct]``: ``tissue`` and ``grid`` are None (the grid and the tissue map come
    from the CT, :mod:`brachycryo.planning.cryo_case`) and ``ct`` holds the paths and ROI names."""

    tissue: Tissue | None
    initial_temp_c: float
    grid: Grid | None
    probes: tuple[Probe, ...]
    phases: tuple[Phase, ...]
    isotherms_c: tuple[float, ...]
    lethal_isotherm_c: float
    options: BioheatOptions
    oars: tuple[OarShape, ...] = field(default_factory=tuple)
    vessels: tuple[VesselSegment, ...] = field(default_factory=tuple)
    ct: CtSource | None = None
    tissue_table: dict[str, Tissue] = field(default_factory=dict)
    spacing_mm: float = 1.0
    margin_mm: float = 30.0
    #: ``[[probe]] entry_mm`` of each probe (None: not given), in ``probes`` order
    entries_mm: tuple[tuple[float, float, float] | None, ...] = ()

    def vessel_mask(self, grid: Grid | None = None) -> np.ndarray | None:
        """The ``[[vessel]]`` cylinders on ``grid`` (default: the config's grid)."""
        target = grid if grid is not None else self.grid
        if not self.vessels:
            return None
        if target is None:
            raise ValueError("a [ct] config has no grid of its own: pass the simulation grid")
        return np.any([v.mask(target) for v in self.vessels], axis=0)


def _table(doc: dict, key: str, *, required: bool) -> dict:
    val = doc.get(key)
    if val is None:
        if required:
            raise ConfigError(f"missing [{key}] table", key=key)
        return {}
    if not isinstance(val, dict):
        raise ConfigError(f"[{key}] must be a table", key=key)
    return val


def _num(tab: dict, key: str, where: str, default=None) -> float:
    if key not in tab:
        if default is None:
            raise ConfigError(f"missing {where}.{key}", key=f"{where}.{key}")
        return float(default)
    v = tab[key]
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
        raise ConfigError(f"{where}.{key} must be a finite number, got {v!r}", key=f"{where}.{key}")
    return float(v)


def _vec3(tab: dict, key: str, where: str) -> tuple[float, float, float]:
    v = tab.get(key)
    if (
        not isinstance(v, list)
        or len(v) != 3
        or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in v)
        or not all(math.isfinite(x) for x in v)
    ):
        raise ConfigError(f"{where}.{key} must be 3 numbers, got {v!r}", key=f"{where}.{key}")
    return (float(v[0]), float(v[1]), float(v[2]))


def _check_keys(tab: dict, allowed: set, where: str) -> None:
    if not isinstance(tab, dict):
        raise ConfigError(f"{where} must be a table, got {type(tab).__name__}", key=where)
    extra = set(tab) - allowed
    if extra:
        raise ConfigError(
            f"unknown key(s) {sorted(extra)} in {where}; allowed: {sorted(allowed)}",
            key=f"{where}.{sorted(extra)[0]}",
        )


def load_config(path: str | Path, *, isotherms_c: list[float] | None = None) -> IceballConfig:
    """Read and validate a config file; ``isotherms_c`` overrides ``[output] isotherms_c``.

    The tables are checked in a fixed order (the first problem found is reported): the
    top-level keys, ``[catalogue]``, ``[medium]`` or ``[ct]``, ``[[probe]]``,
    ``[[protocol]]``, ``[grid]``, ``[output]``, ``[solver]``, ``[[oar]]``, ``[[vessel]]``.
    """
    p = Path(path)
    doc = _read_toml(p)
    base = p.parent
    _check_keys(doc, _TOP, "the config")
    probe_cat, tissues = _catalogues(doc, base)
    tissue, ct, t0 = _medium_or_ct(doc, base, tissues)
    probes, entries = _probes(doc, probe_cat)
    phases = _phases(doc)
    spacing, margin = _grid_spacing_margin_mm(doc)
    grid = None if ct is not None else _medium_grid(probes, spacing_mm=spacing, margin_mm=margin)
    isos, lethal = _isotherms(doc, override_c=isotherms_c)
    options = _solver_options(doc, isotherms_c=isos)
    oars = _oar_shapes(doc)
    vessels = _vessel_segments(doc)
    return IceballConfig(
        tissue=tissue,
        initial_temp_c=t0,
        grid=grid,
        probes=probes,
        phases=phases,
        isotherms_c=isos,
        lethal_isotherm_c=lethal,
        options=options,
        oars=oars,
        vessels=vessels,
        ct=ct,
        tissue_table=tissues,
        spacing_mm=spacing,
        margin_mm=margin,
        entries_mm=entries,
    )


def _read_toml(p: Path) -> dict:
    try:
        return tomllib.loads(p.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None


def _catalogues(doc: dict, base: Path) -> tuple[dict[str, ProbeModel], dict[str, Tissue]]:
    """``[catalogue]``: the probe and tissue tables (packaged, or the user's files)."""
    cat = _table(doc, "catalogue", required=False)
    _check_keys(cat, {"probes", "tissues"}, "[catalogue]")
    probe_cat = load_probe_catalogue(base / cat["probes"] if "probes" in cat else None)
    tissues = load_tissues(base / cat["tissues"] if "tissues" in cat else None)
    return probe_cat, tissues


def _medium_or_ct(
    doc: dict, base: Path, tissues: dict[str, Tissue]
) -> tuple[Tissue | None, CtSource | None, float]:
    """``[medium]`` or ``[ct]`` (exactly one): (tissue, CT source, initial temperature in C)."""
    has_medium, has_ct = "medium" in doc, "ct" in doc
    if has_medium == has_ct:
        raise ConfigError(
            "give either a [medium] table (a uniform medium) or a [ct] table (a CT + RTSTRUCT)"
            + (", not both" if has_medium else ""),
            key="ct" if has_ct else "medium",
        )
    if has_medium:
        tissue, t0 = _medium(doc, tissues)
        return tissue, None, t0
    ct = _ct_source(doc, base, tissues)
    return None, ct, _num(doc["ct"], "initial_temp_c", "ct", default=37.0)


def _medium(doc: dict, tissues: dict[str, Tissue]) -> tuple[Tissue, float]:
    """``[medium]``: the uniform medium's tissue and initial temperature (C)."""
    if "structures" in doc:
        raise ConfigError("[structures] needs a [ct] case", key="structures")
    med = _table(doc, "medium", required=True)
    _check_keys(med, {"tissue", "initial_temp_c"}, "[medium]")
    if not isinstance(med.get("tissue"), str):
        raise ConfigError("[medium] tissue must be a tissue name", key="medium.tissue")
    try:
        tissue = get_tissue(med["tissue"], tissues)
    except Exception as exc:
        raise ConfigError(str(exc), key="medium.tissue") from None
    return tissue, _num(med, "initial_temp_c", "medium", default=37.0)


def _probes(
    doc: dict, probe_cat: dict[str, ProbeModel]
) -> tuple[tuple[Probe, ...], tuple[tuple[float, float, float] | None, ...]]:
    """``[[probe]]`` tables: catalogue model, tip, direction and the optional entry."""
    probes_raw = doc.get("probe")
    if not isinstance(probes_raw, list) or not probes_raw:
        raise ConfigError("at least one [[probe]] table is needed", key="probe")
    probes = []
    entries: list[tuple[float, float, float] | None] = []
    for n, pr in enumerate(probes_raw):
        where = f"probe[{n}]"
        _check_keys(pr, {"model", "tip_mm", "direction", "entry_mm"}, where)
        model = pr.get("model")
        if not isinstance(model, str) or model not in probe_cat:
            raise ConfigError(
                f"unknown probe model {model!r}; known: {sorted(probe_cat)}", key=f"{where}.model"
            )
        try:
            probe = Probe(
                probe_cat[model], _vec3(pr, "tip_mm", where), _vec3(pr, "direction", where)
            )
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(str(exc), key=where) from None
        probes.append(probe)
        given = "entry_mm" in pr
        entries.append(_entry(probe, _vec3(pr, "entry_mm", where), where) if given else None)
    return tuple(probes), tuple(entries)


#: How far (mm) ``entry_mm`` may lie off the probe's axis.
ENTRY_AXIS_TOLERANCE_MM = 1.0


def _entry(
    probe: Probe, entry: tuple[float, float, float], where: str
) -> tuple[float, float, float]:
    """``entry_mm`` checked against the probe: on its axis, on the handle side beyond the
    active zone (the handle lies outside the patient, the freezing zone inside)."""
    rel = np.asarray(entry) - np.asarray(probe.tip_mm)
    axis = np.asarray(probe.direction)
    along = float(rel @ axis)
    off_axis = float(np.linalg.norm(rel - along * axis))
    if off_axis > ENTRY_AXIS_TOLERANCE_MM:
        raise ConfigError(
            f"{where}: entry_mm lies {off_axis:.1f} mm off the probe's axis (through tip_mm "
            f"along direction); at most {ENTRY_AXIS_TOLERANCE_MM:g} mm",
            key=f"{where}.entry_mm",
        )
    _, active_end = probe.active_segment_mm()
    needed = float((active_end - np.asarray(probe.tip_mm)) @ axis)
    if along < needed:
        side = "the tip side" if along < 0 else "within the active zone"
        raise ConfigError(
            f"{where}: entry_mm lies on {side} ({along:.1f} mm from the tip along direction; "
            f"the active zone ends {needed:.1f} mm from it): direction points from the tip "
            "toward the handle, back out along the track, so the handle would lie inside the "
            "patient; give the reverse of the insertion direction",
            key=f"{where}.direction",
        )
    return entry


def _inside_run_mm(
    mask: np.ndarray, grid: Grid, start_mm: np.ndarray, axis: np.ndarray
) -> tuple[float, bool]:
    """How far the axis from ``start_mm`` runs inside ``mask`` (sampled every quarter of
    the finest voxel), and whether it leaves the mask before the grid ends."""
    step = 0.25 * min(grid.spacing_mm)
    reach = float(np.linalg.norm(np.asarray(grid.shape[::-1]) * grid.spacing_mm))
    t = np.arange(0.0, reach + step, step)
    pts = start_mm + t[:, None] * axis
    in_grid = grid.contains_mm(pts)
    inside = grid.sample_nearest(mask, pts, outside=False) & in_grid
    out = np.nonzero(~inside)[0]
    if out.size == 0:
        return float(t[-1]), False
    return float(t[max(int(out[0]) - 1, 0)]), bool(in_grid[out[0]])


def handle_flags(
    cfg: IceballConfig,
    *,
    body: np.ndarray | None = None,
    body_grid: Grid | None = None,
    body_name: str = "BODY",
    avoid: Mapping[str, np.ndarray] | None = None,
) -> list[ProbeFlag]:
    """Probes whose handle would lie inside the patient, as far as the config lets one
    tell (see the module docstring): with ``body`` (a mask on ``body_grid``, e.g. the CT's
    BODY ROI) the tip must lie in it, the axis toward the handle must leave it within the
    grid, and the shaft from the tip to the skin must not run through the ``avoid``
    structures (masks on ``body_grid``: the case's vessels and OARs; a direction written
    as the insertion sends the shaft on through the patient); without, only a
    ``[medium]`` probe's ``entry_mm`` is checked against the simulated block."""
    flags: list[ProbeFlag] = []
    entries = cfg.entries_mm or (None,) * len(cfg.probes)
    for n, (probe, entry) in enumerate(zip(cfg.probes, entries, strict=True)):
        tip, axis = np.asarray(probe.tip_mm), np.asarray(probe.direction)
        if body is not None and body_grid is not None:
            flags += _body_flags(n, tip, axis, entry, _Outline(body, body_grid, body_name))
            flags += _shaft_flags(n, tip, axis, _Outline(body, body_grid, body_name), avoid)
        elif entry is not None and cfg.grid is not None:
            flags += _medium_flags(n, np.asarray(entry), axis, cfg.grid)
    return flags


def _medium_flags(n: int, entry: np.ndarray, axis: np.ndarray, grid: Grid) -> list[ProbeFlag]:
    """The flag of probe ``n`` entering at ``entry`` inside a uniform block (empty: none)."""
    run_mm, _ = _inside_run_mm(np.ones(grid.shape, bool), grid, entry, axis)
    if run_mm <= max(grid.spacing_mm):
        return []
    message = (
        f"probe[{n}]: the simulated medium runs on {run_mm:.0f} mm past entry_mm toward the "
        "handle: the shaft there, outside the patient, lies in the modelled tissue (reduce "
        "[grid] margin_mm, or give a [ct] case)"
    )
    return [ProbeFlag(n, message)]


@dataclass(frozen=True)
class _Outline:
    """The body outline: its mask on its grid, and its ROI name."""

    mask: np.ndarray
    grid: Grid
    name: str


def _shaft_flags(
    n: int,
    tip: np.ndarray,
    axis: np.ndarray,
    body: _Outline,
    avoid: Mapping[str, np.ndarray] | None,
) -> list[ProbeFlag]:
    """Probe ``n``'s shaft from the tip to the skin through an ``avoid`` structure."""
    depth_mm, leaves = _inside_run_mm(body.mask, body.grid, tip, axis)
    if not avoid or not leaves:
        return []
    step = 0.25 * min(body.grid.spacing_mm)
    pts = tip + np.arange(0.0, depth_mm + step, step)[:, None] * axis
    crossed = [name for name, m in avoid.items()
               if body.grid.sample_nearest(m, pts, outside=False).any()]  # fmt: skip
    if not crossed:
        return []
    message = (
        f"probe[{n}]: its shaft from the tip to the skin ({depth_mm:.0f} mm toward the "
        f"handle) runs through {', '.join(crossed)}; direction points from the tip back "
        "out along the track: is it the insertion direction?"
    )
    return [ProbeFlag(n, message)]


def _body_flags(
    n: int,
    tip: np.ndarray,
    axis: np.ndarray,
    entry: tuple[float, float, float] | None,
    outline: _Outline,
) -> list[ProbeFlag]:
    """The flags of probe ``n`` against the body outline (empty: none)."""
    body, grid, body_name = outline.mask, outline.grid, outline.name
    if not grid.sample_nearest(body, tip[None, :], outside=False)[0]:
        return [ProbeFlag(n, f"probe[{n}]: its tip lies outside {body_name}")]
    depth_mm, leaves = _inside_run_mm(body, grid, tip, axis)
    if not leaves:
        message = (
            f"probe[{n}]: the axis from its tip toward the handle (direction) stays inside "
            f"{body_name} to the edge of the CT ({depth_mm:.0f} mm), no skin within the "
            "scan: the handle would lie inside the patient (unless the scan is cut short "
            "there); direction points from the tip back out along the track (the reverse "
            "of the insertion)"
        )
        return [ProbeFlag(n, message)]
    skin = tip + depth_mm * axis
    miss_mm = float(np.linalg.norm(np.asarray(entry) - skin)) if entry is not None else 0.0
    if miss_mm > max(grid.spacing_mm):
        where = ", ".join(f"{v:.1f}" for v in skin)
        message = f"probe[{n}]: entry_mm is {miss_mm:.1f} mm from where its axis leaves "
        return [ProbeFlag(n, message + f"{body_name} ({where})")]
    return []


def _phases(doc: dict) -> tuple[Phase, ...]:
    """``[[protocol]]`` phases in order."""
    prot_raw = doc.get("protocol")
    if not isinstance(prot_raw, list) or not prot_raw:
        raise ConfigError("at least one [[protocol]] phase is needed", key="protocol")
    phases = []
    for n, ph in enumerate(prot_raw):
        where = f"protocol[{n}]"
        _check_keys(ph, {"phase", "minutes"}, where)
        try:
            phases.append(Phase(str(ph.get("phase")), _num(ph, "minutes", where)))
        except ConfigError as exc:
            raise ConfigError(str(exc), key=f"{where}.phase") from None
    return tuple(phases)


def _grid_spacing_margin_mm(doc: dict) -> tuple[float, float]:
    """``[grid]``: (spacing_mm, margin_mm)."""
    gtab = _table(doc, "grid", required=True)
    _check_keys(gtab, {"spacing_mm", "margin_mm"}, "[grid]")
    spacing = _num(gtab, "spacing_mm", "grid")
    margin = _num(gtab, "margin_mm", "grid", default=30.0)
    if spacing <= 0 or margin < 0:
        raise ConfigError("grid.spacing_mm must be > 0 and margin_mm >= 0", key="grid")
    return spacing, margin


def _medium_grid(probes: Sequence[Probe], *, spacing_mm: float, margin_mm: float) -> Grid:
    """The axis-aligned grid of a ``[medium]`` case: the active zones plus the margin."""
    ends = np.array([e for pr in probes for e in pr.active_segment_mm()])
    grid = Grid.from_bounds(ends.min(axis=0) - margin_mm, ends.max(axis=0) + margin_mm, spacing_mm)
    check_grid_size(grid)
    return grid


def _isotherms(doc: dict, *, override_c: list[float] | None) -> tuple[tuple[float, ...], float]:
    """``[output]``: (isotherms, warmest first, the lethal one included; lethal isotherm)."""
    out = _table(doc, "output", required=False)
    _check_keys(out, {"isotherms_c", "lethal_isotherm_c"}, "[output]")
    given = override_c if override_c else out.get("isotherms_c", list(DEFAULT_ISOTHERMS_C))
    if not isinstance(given, list | tuple) or not given:
        raise ConfigError("output.isotherms_c must be a list of temperatures", key="isotherms_c")
    try:
        isos = tuple(sorted({float(t) for t in given}, reverse=True))
    except (TypeError, ValueError):
        raise ConfigError(f"bad isotherm temperatures {given!r}", key="isotherms_c") from None
    lethal = _num(out, "lethal_isotherm_c", "output", default=-40.0)
    if lethal not in isos:
        isos = tuple(sorted({*isos, lethal}, reverse=True))
    return isos, lethal


def _solver_options(doc: dict, *, isotherms_c: tuple[float, ...]) -> BioheatOptions:
    """``[solver]``: the bioheat options."""
    sol = _table(doc, "solver", required=False)
    _check_keys(sol, {"arterial_temp_c", "outer_boundary"}, "[solver]")
    return BioheatOptions(
        arterial_temp_c=_num(sol, "arterial_temp_c", "solver", default=37.0),
        outer_boundary=str(sol.get("outer_boundary", "fixed")),
        isotherms_c=isotherms_c,
    )


def _oar_shapes(doc: dict) -> tuple[OarShape, ...]:
    """``[[oar]]`` spheres and boxes."""
    oars = []
    for n, o in enumerate(doc.get("oar", []) or []):
        where = f"oar[{n}]"
        _check_keys(o, {"name", "centre_mm", "radius_mm", "size_mm"}, where)
        if not isinstance(o.get("name"), str):
            raise ConfigError("each [[oar]] needs a name", key=f"{where}.name")
        if ("radius_mm" in o) == ("size_mm" in o):
            raise ConfigError("give exactly one of radius_mm or size_mm", key=where)
        oars.append(
            OarShape(
                o["name"],
                _vec3(o, "centre_mm", where),
                radius_mm=_num(o, "radius_mm", where) if "radius_mm" in o else None,
                size_mm=_vec3(o, "size_mm", where) if "size_mm" in o else None,
            )
        )
    return tuple(oars)


def _vessel_segments(doc: dict) -> tuple[VesselSegment, ...]:
    """``[[vessel]]`` cylinders."""
    vessels = []
    for n, v in enumerate(doc.get("vessel", []) or []):
        where = f"vessel[{n}]"
        _check_keys(v, {"start_mm", "end_mm", "radius_mm"}, where)
        a, b = _vec3(v, "start_mm", where), _vec3(v, "end_mm", where)
        r = _num(v, "radius_mm", where)
        if r <= 0 or a == b:
            raise ConfigError("a vessel needs radius_mm > 0 and distinct ends", key=where)
        vessels.append(VesselSegment(a, b, r))
    return tuple(vessels)


#: Largest simulation grid accepted (voxels).
MAX_GRID_VOXELS = 400**3


def check_grid_size(grid: Grid) -> None:
    """ConfigError (key ``grid.spacing_mm``) for a grid too large to simulate."""
    if grid.n_voxels > MAX_GRID_VOXELS:
        raise ConfigError(
            f"grid of {grid.shape} voxels is too large (at most {MAX_GRID_VOXELS}); use a "
            "coarser spacing_mm or a smaller margin_mm",
            key="grid.spacing_mm",
        )


def _names(tab: dict, key: str, where: str) -> tuple[str, ...]:
    v = tab.get(key, [])
    if not isinstance(v, list) or not all(isinstance(x, str) and x.strip() for x in v):
        raise ConfigError(
            f"{where}.{key} must be a list of ROI names, got {v!r}", key=f"{where}.{key}"
        )
    if len(set(v)) != len(v):
        raise ConfigError(f"{where}.{key} repeats a ROI name: {v!r}", key=f"{where}.{key}")
    return tuple(v)


def _ct_source(doc: dict, base: Path, tissues: dict[str, Tissue]) -> CtSource:
    tab = _table(doc, "ct", required=True)
    _check_keys(
        tab,
        {"series", "rtstruct", "series_uid", "initial_temp_c", "vessels", "oars", "body"},
        "[ct]",
    )
    paths = {}
    for key in ("series", "rtstruct"):
        v = tab.get(key)
        if not isinstance(v, str) or not v.strip():
            raise ConfigError(
                f"[ct] {key} must be a path (relative to the config file)", key=f"ct.{key}"
            )
        paths[key] = base / v
    if not paths["series"].is_dir():
        raise ConfigError(f"CT series folder {paths['series']} does not exist", key="ct.series")
    if not paths["rtstruct"].is_file():
        raise ConfigError(f"RTSTRUCT file {paths['rtstruct']} does not exist", key="ct.rtstruct")
    uid = tab.get("series_uid")
    if uid is not None and not isinstance(uid, str):
        raise ConfigError("[ct] series_uid must be a string", key="ct.series_uid")
    vessels = _names(tab, "vessels", "ct")
    oars = _names(tab, "oars", "ct")
    body = tab.get("body")
    if body is not None and (not isinstance(body, str) or not body.strip()):
        raise ConfigError("[ct] body must name the body outline ROI", key="ct.body")
    structures = []
    for roi, name in _table(doc, "structures", required=False).items():
        if not isinstance(name, str):
            raise ConfigError(
                f"[structures] {roi} must name a tissue, got {name!r}", key=f"structures.{roi}"
            )
        if name not in tissues:
            raise ConfigError(
                f"[structures] {roi}: unknown tissue {name!r}; known: {sorted(tissues)} (add "
                "rows with a [catalogue] tissues file)",
                key=f"structures.{roi}",
            )
        structures.append((roi, name))
    return CtSource(
        series_dir=paths["series"],
        rtstruct=paths["rtstruct"],
        series_uid=uid,
        structures=tuple(structures),
        vessels=vessels,
        oars=oars,
        body=body,
    )
