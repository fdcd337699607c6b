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

A CT + RTSTRUCT (``ct = ...``) is not supported yet: the loader says so.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brachycryo.errors import ConfigError
from brachycryo.grid import Grid
from cryo_iceball.bioheat import DEFAULT_ISOTHERMS_C, BioheatOptions
from cryo_iceball.probes import Phase, Probe, load_probe_catalogue
from cryo_iceball.tissue import Tissue, get_tissue, load_tissues

_TOP = {"medium", "grid", "probe", "protocol", "output", "solver", "catalogue", "oar", "vessel"}
_NOT_YET = {"ct", "rtstruct", "ct_dir", "structures"}


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
        from cryo_iceball.probes import cylinder_sdf_mm

        a, b = np.asarray(self.start_mm), np.asarray(self.end_mm)
        return cylinder_sdf_mm(grid.voxel_centres_mm(), a, b, self.radius_mm) <= 0


@dataclass(frozen=True)
class IceballConfig:
    tissue: Tissue
    initial_temp_c: float
    grid: Grid
    probes: tuple[Probe, ...]
    phases: tuple[Phase, ...]
    isotherms_c: tuple[float, ...]
    lethal_isotherm_c: float
    options: BioheatOptions
    oars: tuple[OarShape, ...] = field(default_factory=tuple)
    vessels: tuple[VesselSegment, ...] = field(default_factory=tuple)

    def vessel_mask(self) -> np.ndarray | None:
        if not self.vessels:
            return None
        return np.any([v.mask(self.grid) for v in self.vessels], axis=0)


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
    extra = set(tab) - allowed
    if extra:
        raise ConfigError(
            f"unknown key(s) {sorted(extra)} in {where}; allowed: {sorted(allowed)}",
            key=f"{where}.{sorted(extra)[0]}",
        )


def load_config(path: str | Path, *, isotherms_c: list[float] | None = None) -> IceballConfig:
    """Read and validate a config file; ``isotherms_c`` overrides ``[output] isotherms_c``."""
    p = Path(path)
    try:
        doc = tomllib.loads(p.read_text("utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from None
    base = p.parent
    for key in _NOT_YET & set(doc) | _NOT_YET & set(doc.get("medium", {}) or {}):
        raise ConfigError(
            "a CT + RTSTRUCT ice-ball case is not supported yet (needs the DICOM readers); "
            "give [medium] tissue and initial_temp_c instead",
            key=key,
        )
    _check_keys(doc, _TOP, "the config")

    cat = _table(doc, "catalogue", required=False)
    _check_keys(cat, {"probes", "tissues"}, "[catalogue]")
    probe_cat = load_probe_catalogue(base / cat["probes"] if "probes" in cat else None)
    tissues = load_tissues(base / cat["tissues"] if "tissues" in cat else None)

    med = _table(doc, "medium", required=True)
    _check_keys(med, {"tissue", "initial_temp_c"}, "[medium]")
    if not isinstance(med.get("tissue"), str):
        raise ConfigError("[medium] tissue must be a tissue name", key="medium.tissue")
    try:
        tissue = get_tissue(med["tissue"], tissues)
    except Exception as exc:
        raise ConfigError(str(exc), key="medium.tissue") from None
    t0 = _num(med, "initial_temp_c", "medium", default=37.0)

    probes_raw = doc.get("probe")
    if not isinstance(probes_raw, list) or not probes_raw:
        raise ConfigError("at least one [[probe]] table is needed", key="probe")
    probes = []
    for n, pr in enumerate(probes_raw):
        where = f"probe[{n}]"
        _check_keys(pr, {"model", "tip_mm", "direction"}, where)
        model = pr.get("model")
        if model not in probe_cat:
            raise ConfigError(
                f"unknown probe model {model!r}; known: {sorted(probe_cat)}", key=f"{where}.model"
            )
        try:
            probes.append(
                Probe(probe_cat[model], _vec3(pr, "tip_mm", where), _vec3(pr, "direction", where))
            )
        except ConfigError:
            raise
        except Exception as exc:
            raise ConfigError(str(exc), key=where) from None

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

    gtab = _table(doc, "grid", required=True)
    _check_keys(gtab, {"spacing_mm", "margin_mm"}, "[grid]")
    spacing = _num(gtab, "spacing_mm", "grid")
    margin = _num(gtab, "margin_mm", "grid", default=30.0)
    if spacing <= 0 or margin < 0:
        raise ConfigError("grid.spacing_mm must be > 0 and margin_mm >= 0", key="grid")
    ends = np.array([e for pr in probes for e in pr.active_segment_mm()])
    grid = Grid.from_bounds(ends.min(axis=0) - margin, ends.max(axis=0) + margin, spacing)
    if grid.n_voxels > 400**3:
        raise ConfigError(f"grid of {grid.shape} voxels is too large", key="grid.spacing_mm")

    out = _table(doc, "output", required=False)
    _check_keys(out, {"isotherms_c", "lethal_isotherm_c"}, "[output]")
    isos = isotherms_c if isotherms_c else out.get("isotherms_c", list(DEFAULT_ISOTHERMS_C))
    if not isinstance(isos, list | tuple) or not isos:
        raise ConfigError("output.isotherms_c must be a list of temperatures", key="isotherms_c")
    try:
        isos = tuple(sorted({float(t) for t in isos}, reverse=True))
    except (TypeError, ValueError):
        raise ConfigError(f"bad isotherm temperatures {isos!r}", key="isotherms_c") from None
    lethal = _num(out, "lethal_isotherm_c", "output", default=-40.0)
    if lethal not in isos:
        isos = tuple(sorted({*isos, lethal}, reverse=True))

    sol = _table(doc, "solver", required=False)
    _check_keys(sol, {"arterial_temp_c", "outer_boundary"}, "[solver]")
    options = BioheatOptions(
        arterial_temp_c=_num(sol, "arterial_temp_c", "solver", default=37.0),
        outer_boundary=str(sol.get("outer_boundary", "fixed")),
        isotherms_c=isos,
    )

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
    vessels = []
    for n, v in enumerate(doc.get("vessel", []) or []):
        where = f"vessel[{n}]"
        _check_keys(v, {"start_mm", "end_mm", "radius_mm"}, where)
        a, b = _vec3(v, "start_mm", where), _vec3(v, "end_mm", where)
        r = _num(v, "radius_mm", where)
        if r <= 0 or a == b:
            raise ConfigError("a vessel needs radius_mm > 0 and distinct ends", key=where)
        vessels.append(VesselSegment(a, b, r))
    return IceballConfig(
        tissue=tissue,
        initial_temp_c=t0,
        grid=grid,
        probes=tuple(probes),
        phases=tuple(phases),
        isotherms_c=isos,
        lethal_isotherm_c=lethal,
        options=options,
        oars=tuple(oars),
        vessels=tuple(vessels),
    )
