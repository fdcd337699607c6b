"""Cryoprobe catalogue, probe placements, freeze protocols and their rasterisation on a Grid.

The catalogue (``data/probes.csv``) holds generic classes only: vendor charts were not found
in the reference data (see ``data/literature_isotherms.csv``), and each assumed number is
flagged in the file.  A user file with the same columns adds or replaces models.

A probe is a line segment in any orientation: ``tip_mm`` and the unit ``direction`` from the
tip toward the handle.  Its freezing (active) zone is the finite cylinder of the probe's
radius from ``tip + offset * direction`` to ``tip + (offset + length) * direction``.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from brachycryo.core.errors import ConfigError, DataModelError, GeometryError
from brachycryo.core.grid import Grid

PHASES = ("freeze", "passive_thaw", "active_thaw")

#: argon's normal boiling point (87.302 K, NIST Chemistry WebBook): the Joule-Thomson outlet
#: temperature of an argon probe exhausting at about 1 atm
ARGON_JT_TEMP_C = -185.85


@dataclass(frozen=True)
class ProbeModel:
    """One probe class of the catalogue (lengths in mm, temperatures in deg C)."""

    model: str
    diameter_mm: float
    active_length_mm: float
    active_offset_mm: float
    freeze_temp_c: float
    freeze_ramp_s: float
    active_thaw_temp_c: float
    cryogen: str = ""
    notes: str = ""
    #: Robin coupling of the surface to the cryogen (W m^-2 K^-1); 0 = Dirichlet surface
    cooling_h_w_m2k: float = 0.0
    #: cryogen temperature of the Robin mode (deg C)
    cryogen_temp_c: float = ARGON_JT_TEMP_C
    #: Robin mode: the most heat the probe's gas flow can take up (W); inf = no limit
    max_extraction_w: float = math.inf

    def __post_init__(self) -> None:
        for name in ("diameter_mm", "active_length_mm"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v > 0):
                raise DataModelError(f"probe model {self.model!r}: {name} must be > 0, got {v}")
        for name in ("active_offset_mm", "freeze_ramp_s"):
            v = getattr(self, name)
            if not (np.isfinite(v) and v >= 0):
                raise DataModelError(f"probe model {self.model!r}: {name} must be >= 0, got {v}")
        if not (np.isfinite(self.cooling_h_w_m2k) and self.cooling_h_w_m2k >= 0):
            raise DataModelError(
                f"probe model {self.model!r}: cooling_h_w_m2k must be >= 0, got "
                f"{self.cooling_h_w_m2k}"
            )
        if not self.max_extraction_w > 0:
            raise DataModelError(
                f"probe model {self.model!r}: max_extraction_w must be > 0 (inf: no limit), "
                f"got {self.max_extraction_w}"
            )
        for name in ("freeze_temp_c", "active_thaw_temp_c", "cryogen_temp_c"):
            v = getattr(self, name)
            if not (np.isfinite(v) and -273.15 < v < 100):
                raise DataModelError(f"probe model {self.model!r}: {name} out of range: {v}")

    @property
    def radius_mm(self) -> float:
        return 0.5 * self.diameter_mm

    @property
    def is_robin(self) -> bool:
        """True when the freeze phase couples the surface to the cryogen (Robin mode)."""
        return self.cooling_h_w_m2k > 0

    def cooling_conductance_w_k(self) -> float:
        """``h pi d L`` (W/K): the Robin extraction per kelvin above the cryogen (0: Dirichlet)."""
        return self.cooling_h_w_m2k * math.pi * self.diameter_mm * self.active_length_mm * 1e-6

    def boundary_temp_c(self, phase: str, time_in_phase_s: float, start_temp_c: float) -> float:
        """Probe-surface temperature, or NaN when the boundary is off (passive thaw).

        Freeze: exponential approach from ``start_temp_c`` to ``freeze_temp_c`` with time
        constant ``freeze_ramp_s`` (a step when 0).  In the Robin mode the same ramp applies
        to the *cryogen* temperature (``cryogen_temp_c``), which is what this returns; the
        solver then sets the surface from the heat balance.  Passive thaw: the probe boundary is
        switched off (the Go-Smart template's "BC off").  Active thaw: ``active_thaw_temp_c``.
        """
        if phase == "freeze":
            target = self.cryogen_temp_c if self.is_robin else self.freeze_temp_c
            if self.freeze_ramp_s <= 0:
                return target
            a = math.exp(-time_in_phase_s / self.freeze_ramp_s)
            return target + (start_temp_c - target) * a
        if phase == "passive_thaw":
            return math.nan
        if phase == "active_thaw":
            return self.active_thaw_temp_c
        raise ConfigError(f"unknown phase {phase!r}; choose one of {PHASES}", key="phase")


_PROBE_FLOATS = (
    "diameter_mm",
    "active_length_mm",
    "active_offset_mm",
    "freeze_temp_c",
    "freeze_ramp_s",
    "active_thaw_temp_c",
)
#: optional columns (a catalogue without them gives Dirichlet probes, the former behaviour)
_PROBE_OPTIONAL_FLOATS = {
    "cooling_h_w_m2k": 0.0,
    "cryogen_temp_c": ARGON_JT_TEMP_C,
    "max_extraction_w": math.inf,
}


def _parse_catalogue(text: str, origin: str) -> dict[str, ProbeModel]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    out: dict[str, ProbeModel] = {}
    for n, rec in enumerate(csv.DictReader(io.StringIO("\n".join(lines))), start=2):
        name = (rec.get("model") or "").strip()
        if not name:
            raise DataModelError(f"{origin}: row {n} has no model name")
        vals = {}
        for col in _PROBE_FLOATS + tuple(_PROBE_OPTIONAL_FLOATS):
            raw = rec.get(col)
            if col in _PROBE_OPTIONAL_FLOATS and not (raw or "").strip():
                vals[col] = _PROBE_OPTIONAL_FLOATS[col]
                continue
            try:
                vals[col] = float(raw or "")  # a missing cell (None) fails as an empty one
            except (TypeError, ValueError):
                raise DataModelError(
                    f"{origin}: probe model {name!r} column {col!r} is not a number ({raw!r})"
                ) from None
        out[name] = ProbeModel(
            model=name,
            cryogen=(rec.get("cryogen") or "").strip(),
            notes=(rec.get("notes") or "").strip(),
            **vals,
        )
    return out


def load_probe_catalogue(extra_path: str | Path | None = None) -> dict[str, ProbeModel]:
    """The packaged probe classes, updated with the models in ``extra_path`` (same columns)."""
    text = resources.files("brachycryo.cryo_iceball").joinpath("data/probes.csv").read_text("utf-8")
    cat = _parse_catalogue(text, "cryo_iceball/data/probes.csv")
    if extra_path is not None:
        p = Path(extra_path)
        try:
            cat.update(_parse_catalogue(p.read_text("utf-8"), str(p)))
        except OSError as exc:
            raise DataModelError(f"cannot read probe catalogue {p}: {exc}") from None
    return cat


@dataclass(frozen=True)
class Probe:
    """A placed probe: catalogue model, tip position (LPS mm), unit direction tip -> handle."""

    model: ProbeModel
    tip_mm: tuple[float, float, float]
    direction: tuple[float, float, float]

    def __post_init__(self) -> None:
        tip = np.asarray(self.tip_mm, dtype=float).reshape(-1)
        d = np.asarray(self.direction, dtype=float).reshape(-1)
        if tip.shape != (3,) or not np.all(np.isfinite(tip)):
            raise GeometryError(f"probe tip_mm must be 3 finite numbers, got {self.tip_mm}")
        if d.shape != (3,) or not np.all(np.isfinite(d)) or np.linalg.norm(d) < 1e-9:
            raise GeometryError(
                f"probe direction must be a non-zero 3-vector, got {self.direction}"
            )
        d = d / np.linalg.norm(d)
        object.__setattr__(self, "tip_mm", tuple(float(v) for v in tip))
        object.__setattr__(self, "direction", tuple(float(v) for v in d))

    def active_segment_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """End points (near tip, toward handle) of the freezing zone's axis."""
        tip = np.asarray(self.tip_mm)
        d = np.asarray(self.direction)
        a = tip + self.model.active_offset_mm * d
        return a, a + self.model.active_length_mm * d

    def active_centre_mm(self) -> np.ndarray:
        a, b = self.active_segment_mm()
        return 0.5 * (a + b)


@dataclass(frozen=True)
class Phase:
    """One protocol phase: ``freeze``, ``passive_thaw`` or ``active_thaw``, for ``minutes``."""

    phase: str
    minutes: float

    def __post_init__(self) -> None:
        if self.phase not in PHASES:
            raise ConfigError(f"unknown phase {self.phase!r}; choose one of {PHASES}", key="phase")
        if not (np.isfinite(self.minutes) and self.minutes > 0):
            raise ConfigError(f"phase minutes must be > 0, got {self.minutes}", key="minutes")

    @property
    def duration_s(self) -> float:
        return 60.0 * self.minutes


def protocol(*pairs: tuple[str, float]) -> tuple[Phase, ...]:
    """``protocol(("freeze", 10), ("passive_thaw", 8), ("freeze", 10))``."""
    return tuple(Phase(p, float(m)) for p, m in pairs)


# ---------------------------------------------------------------------------- rasterisation
def _cylinder_coords(points_mm: np.ndarray, a_mm: np.ndarray, b_mm: np.ndarray):
    """Axial position ``s`` from ``a`` and radial distance of ``points_mm`` (..., 3) relative
    to the axis ``a -> b``, and the axis length (mm)."""
    axis = np.asarray(b_mm) - a_mm
    length = float(np.linalg.norm(axis))
    u = axis / length
    rel = np.asarray(points_mm) - a_mm
    s = rel @ u
    return s, np.linalg.norm(rel - s[..., None] * u, axis=-1), length


def cylinder_sdf_mm(points_mm: np.ndarray, a_mm: np.ndarray, b_mm: np.ndarray, r_mm: float):
    """Signed distance-like function of the finite cylinder (axis a -> b, radius r).

    Negative inside, zero exactly on the surface (the value outside the rims is a bound, not
    the exact distance, which is all the surface search needs).
    """
    s, radial, length = _cylinder_coords(points_mm, a_mm, b_mm)
    return np.maximum(radial - r_mm, np.abs(s - 0.5 * length) - 0.5 * length)


@dataclass(frozen=True)
class ProbeRaster:
    """Probes on a grid: which voxels each probe holds and the boundary correction.

    ``held`` (int16): -1 where free, else the probe number.  ``couple_coef_per_m2`` (float64):
    for free voxels next to a held one, ``sum_faces (1/theta - 1)/h^2`` where ``theta h`` is
    the distance from the voxel centre to the probe surface along that face direction
    (Shortley-Weller-type correction, so the probe radius is represented below the voxel
    size); ``couple_probe`` (int16): which probe that is, -1 elsewhere.
    """

    held: np.ndarray
    couple_coef_per_m2: np.ndarray
    couple_probe: np.ndarray


def rasterise_probes(grid: Grid, probes: Sequence[Probe], *, theta_min: float = 0.1) -> ProbeRaster:
    """Rasterise probes (any orientation) onto ``grid``.

    Voxels whose centres lie inside a probe's active cylinder are held at the probe
    temperature, and so is every voxel that contains a point of the active zone's axis
    (centre between the end planes).  A probe thinner than the grid, or one whose axis runs
    between voxel centres, thus keeps an unbroken column of held voxels instead of holding
    nothing; beside such an axis voxel the coupling below uses the distance of the free
    voxel's centre from the probe, since the face line may miss the cylinder.  For a 17G
    probe on a 1.5 mm grid (between four voxel centres it was formerly refused), the 0, -20
    and -40 C radii after 10 min in soft tissue are up to 0.50 mm smaller than on the 0.5 mm
    grid (1 mm grid: up to 0.35 mm) and vary by at most 0.27 mm with where the axis falls
    (``tests/cryo_iceball/test_cryo_analytic.py``).

    For a free voxel next to a held one, ``theta h`` is the distance to the
    surface along that face; the face conductance becomes ``k/(theta h^2)`` instead of
    ``k/h^2``.  To bound that conductance, ``theta`` is rounded: below ``theta_min/2`` the
    voxel is snapped into the probe (surface moved out by at most ``theta_min h/2``),
    between ``theta_min/2`` and ``theta_min`` it is raised to ``theta_min`` (surface moved in
    by at most ``theta_min h/2``).  The coupling is taken implicitly by the solver
    (:mod:`brachycryo.cryo_iceball.bioheat`), so the bound does not shorten the time step; the
    default
    0.1 keeps the surface within 0.05 h of its true place.  With 0.5 a 17G probe (radius
    0.75 mm) on a 1 mm grid gave a 0 C ice ball of 10.6-13.3 ml after 10 min in soft tissue
    depending on where its axis fell within a voxel; with 0.1, 12.5-13.0 ml, against
    13.28-13.30 ml on a 0.5 mm grid.
    """
    if not 0 < theta_min <= 1:
        raise ConfigError(f"theta_min must be in (0, 1], got {theta_min}", key="theta_min")
    held = np.full(grid.shape, -1, dtype=np.int16)
    axis_only = np.zeros(grid.shape, dtype=bool)
    centres = grid.voxel_centres_mm()
    sdfs = []
    for n, probe in enumerate(probes):
        a, b = probe.active_segment_mm()
        in_cylinder = cylinder_sdf_mm(centres, a, b, probe.model.radius_mm) <= 0
        on_axis = _axis_voxels(grid, a, b)
        inside = in_cylinder | on_axis
        if not np.any(inside):
            raise GeometryError(
                f"probe {n} ({probe.model.model}) holds no voxel: its active zone lies outside "
                f"the grid"
            )
        if np.any(held[inside] >= 0):
            raise GeometryError(f"probe {n} overlaps probe {int(held[inside].max())}")
        held[inside] = n
        axis_only |= on_axis & ~in_cylinder
        sdfs.append((a, b, probe.model.radius_mm))

    # pass 1 snaps voxels lying within theta_min/2 of the surface into the probe; pass 2
    # computes the couplings of the (final) free neighbours
    for final in (False, True):
        coef = np.zeros(grid.shape, dtype=float)
        couple = np.full(grid.shape, -1, dtype=np.int16)
        snap = np.full(grid.shape, -1, dtype=np.int16)
        for idx, pid, theta, h_m in _surface_crossings(grid, held, axis_only, centres, sdfs):
            if not final:
                near = theta < 0.5 * theta_min
                snap[tuple(ix[near] for ix in idx)] = pid[near]
                continue
            theta = np.maximum(theta, theta_min)
            np.add.at(coef, idx, (1.0 / theta - 1.0) / h_m**2)
            couple[idx] = pid
        if not final:
            held = np.where(snap >= 0, snap, held).astype(np.int16)
    return ProbeRaster(held=held, couple_coef_per_m2=coef, couple_probe=couple)


#: samples along a face line when looking for the probe surface
SURFACE_SAMPLES = 32


def _distance_outside_mm(
    points_mm: np.ndarray, a_mm: np.ndarray, b_mm: np.ndarray, r_mm: float
) -> np.ndarray:
    """Euclidean distance (mm) of ``points_mm`` (..., 3) from the finite cylinder (axis
    ``a -> b``, radius ``r``); 0 inside."""
    s, radial, length = _cylinder_coords(points_mm, a_mm, b_mm)
    beyond_cap = np.maximum(np.abs(s - 0.5 * length) - 0.5 * length, 0.0)
    return np.hypot(np.maximum(radial - r_mm, 0.0), beyond_cap)


def _axis_voxels(grid: Grid, a_mm: np.ndarray, b_mm: np.ndarray) -> np.ndarray:
    """Mask of the voxels that contain a point of the segment ``a -> b`` (sampled every
    quarter of the smallest spacing) and whose centres lie between the segment's end planes.

    A point on a voxel boundary goes to the lower index (with a 1e-9 voxel tolerance, so
    that rounding cannot pick a different voxel on a rotated copy of the grid).
    """
    a_mm, b_mm = np.asarray(a_mm, dtype=float), np.asarray(b_mm, dtype=float)
    axis = b_mm - a_mm
    length = float(np.linalg.norm(axis))
    n = int(np.ceil(length / (0.25 * min(grid.spacing_mm)))) + 1
    pts = a_mm + np.linspace(0.0, 1.0, n)[:, None] * axis
    ijk = np.floor(grid.mm_to_ijk(pts) + 0.5 - 1e-9).astype(np.int64)
    ijk = ijk[np.all((ijk >= 0) & (ijk < np.asarray(grid.size_ijk)), axis=1)]
    s = (grid.ijk_to_mm(ijk) - a_mm) @ (axis / length)
    ijk = ijk[(s >= 0) & (s <= length)]
    mask = np.zeros(grid.shape, dtype=bool)
    mask[ijk[:, 2], ijk[:, 1], ijk[:, 0]] = True
    return mask


def _surface_crossings(
    grid: Grid, held: np.ndarray, axis_only: np.ndarray, centres: np.ndarray, sdfs: list
):
    """Yield, per face direction, free voxels next to a held one and the surface fraction.

    ``theta`` is the fraction of the centre-to-centre step at which the segment from the free
    voxel's centre toward its held neighbour enters the probe cylinder (first of 32 samples
    inside, then bisection).  When the segment misses the cylinder: 1 if the neighbour is a
    voxel snapped in from just outside (the surface is at its centre), or, beside a voxel
    held only because the probe's axis crosses it (``axis_only``: a probe thinner than the
    grid), the distance of this voxel's centre from the probe in units of the step.
    """
    dmat = grid.direction_matrix
    samples = np.linspace(0.0, 1.0, SURFACE_SAMPLES + 1)
    for axis_arr, axis_ijk in ((2, 0), (1, 1), (0, 2)):
        h_mm = grid.spacing_mm[axis_ijk]
        step_mm = dmat[:, axis_ijk] * h_mm
        for sign in (1, -1):
            nb = np.roll(held, -sign, axis=axis_arr)
            valid = np.ones(grid.shape, dtype=bool)
            sl = [slice(None)] * 3
            sl[axis_arr] = slice(-1, None) if sign == 1 else slice(0, 1)
            valid[tuple(sl)] = False
            cand = valid & (held < 0) & (nb >= 0)
            if not np.any(cand):
                continue
            idx = np.nonzero(cand)
            p0 = centres[idx]
            pid = nb[idx]
            nb_axis_only = np.roll(axis_only, -sign, axis=axis_arr)[idx]
            theta = np.ones(len(pid))
            for n, (a, b, r) in enumerate(sdfs):
                m = pid == n
                if not np.any(m):
                    continue
                seg = p0[m][:, None, :] + samples[None, 1:, None] * (sign * step_mm)
                inside_at = cylinder_sdf_mm(seg, a, b, r) <= 0
                crosses = inside_at.any(axis=1)
                first = np.argmax(inside_at, axis=1)
                hi = np.where(crosses, samples[first + 1], 1.0)
                lo = np.where(crosses, samples[first], 0.0)
                for _ in range(30):
                    mid = 0.5 * (lo + hi)
                    inside = cylinder_sdf_mm(p0[m] + mid[:, None] * sign * step_mm, a, b, r) <= 0
                    hi = np.where(inside, mid, hi)
                    lo = np.where(inside, lo, mid)
                radial = np.clip(_distance_outside_mm(p0[m], a, b, r) / h_mm, 0.0, 1.0)
                theta[m] = np.where(nb_axis_only[m], radial, np.where(crosses, hi, 1.0))
            yield idx, pid, theta, h_mm * 1e-3
