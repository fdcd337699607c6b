"""The plan's optimisation problem: sample points and the influence matrix of the candidates.

Sample points: the voxel centres of each seed-target zone (a random, volume-weighted
subsample beyond ``MAX_ZONE_POINTS``), then of each OAR with limits: every voxel whose dose
can enter the OAR's DVH (the voxels its contours touch, plus one voxel around them:
trilinear interpolation mixes the 8 neighbours), so a limit holds for the DVH of the
written dose, not only at sample points.  Dmax rows count every point (each may carry the
maximum); Dvcc / Vx rows weight each voxel by the ROI's occupancy, so the ring around the
ROI does not eat the volume allowance (the final DVH check of
:mod:`brachycryo.planning.selection` closes the gap).

The influence matrix (Gy per U of every candidate at every point) is cut into one
:class:`TargetZone` per zone and one :class:`OarConstraint` per OAR limit.  Seeds already
implanted (``[case] implanted_plan`` with ``add_seeds = true``) give every point a fixed
background dose (:func:`with_background`): their dose on the planning grid at the point's
voxel (every sample point is a voxel centre, so this is the voxel's value, the same dose
the final DVHs and coverage are computed from).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback
from brachycryo.dose_kernels import SeedModel, influence_matrix
from brachycryo.planning.case import PlanningStructures
from brachycryo.planning.needles import Candidates
from brachycryo.planning.optimize import OarConstraint, TargetZone
from brachycryo.planning.spec import OarLimitTerm, PlanSpec
from brachycryo.planning.zones import LesionZones

#: Cap on sample points per target zone in the influence matrix (a random, volume-weighted
#: subsample beyond it).
MAX_ZONE_POINTS = 30000
#: Seed of the random subsample of large zones (the same points on every run).
ZONE_SAMPLE_SEED = 0
#: Relative safety margin on the optimiser's OAR limits: float32 matrix vs float64 dose.
MATRIX_LIMIT_MARGIN = 1e-4


@dataclass(frozen=True)
class ZoneSamples:
    """A seed-target zone's sample points (mm) and the volume (cm³) each stands for."""

    name: str
    prescription_gy: float
    points_mm: np.ndarray
    point_cc: np.ndarray
    background_gy: np.ndarray | None = None  # fixed dose of implanted seeds at each point


@dataclass(frozen=True)
class OarDvhLimit:
    """One OAR limit: checked on the final DVH, and given to the optimiser as rows.

    ``allowed_cc``: the volume allowed above the limit (a limit in % of the OAR converted,
    0 for Dmax); ``voxels``: the voxels whose dose can enter the OAR's DVH.
    """

    roi: str
    term: OarLimitTerm
    allowed_cc: float
    voxels: np.ndarray

    @property
    def name(self) -> str:
        """``"Bowel d2cc"``: how the optimiser and the binding list name the limit."""
        return f"{self.roi} {self.term.metric}"


@dataclass(frozen=True)
class OarSamples:
    """An OAR's sample points (mm) and the volume each stands for (occupancy-weighted)."""

    points_mm: np.ndarray
    point_cc: np.ndarray
    background_gy: np.ndarray | None = None  # fixed dose of implanted seeds at each point


@dataclass(frozen=True)
class SamplePoints:
    """Every point the optimiser sees: zones first, then OARs (in this order in the matrix)."""

    zones: tuple[ZoneSamples, ...]
    oars: dict[str, OarSamples]
    limits: tuple[OarDvhLimit, ...]
    voxel_cc: float


@dataclass(frozen=True)
class OptimiserProblem:
    """What the seed optimiser sees: target zones and OAR constraints (with matrices)."""

    zones: tuple[TargetZone, ...]
    constraints: tuple[OarConstraint, ...]


def oar_dvh_limits(spec: PlanSpec, structures: PlanningStructures) -> tuple[OarDvhLimit, ...]:
    """Every limit of every OAR that the planning grid holds (spec order)."""
    grid = structures.grid
    out = []
    for limit in spec.oars:
        voxels = _constraint_voxels(structures.fractions[limit.roi])
        if not voxels.any():
            continue
        oar_cc = float(structures.masks[limit.roi].sum()) * grid.voxel_volume_mm3 / 1000.0
        for term in limit.terms():
            out.append(OarDvhLimit(limit.roi, term, term.allowed_cc(oar_cc), voxels))
    return tuple(out)


def sample_points(
    spec: PlanSpec,
    structures: PlanningStructures,
    zones: Mapping[str, LesionZones],
    limits: tuple[OarDvhLimit, ...],
) -> SamplePoints:
    """The sample points of the seed-target zones (and their high-risk sub-zones, each with
    its own prescription) of every lesion with seeds, and of the OARs of ``limits``."""
    grid = structures.grid
    rng = np.random.default_rng(ZONE_SAMPLE_SEED)
    centres = grid.voxel_centres_mm()
    zone_samples = []
    for name, mask, rx in _zone_masks(spec, zones):
        points, cc = _zone_points(mask, grid, centres, rng)
        zone_samples.append(ZoneSamples(name, rx, points, cc))
    return SamplePoints(
        tuple(zone_samples),
        _oar_samples(structures, centres, limits),
        limits,
        grid.voxel_volume_mm3 / 1000.0,
    )


def with_background(samples: SamplePoints, grid: Grid, dose_gy: np.ndarray) -> SamplePoints:
    """``samples`` with the fixed dose ``dose_gy`` (on ``grid``, e.g. the implanted seeds'
    dose) at every point: the value of the voxel each point is the centre of."""
    zones = tuple(
        replace(z, background_gy=grid.sample_nearest(dose_gy, z.points_mm, outside=0.0))
        for z in samples.zones
    )
    oars = {
        roi: replace(o, background_gy=grid.sample_nearest(dose_gy, o.points_mm, outside=0.0))
        for roi, o in samples.oars.items()
    }
    return replace(samples, zones=zones, oars=oars)


def optimiser_problem(
    samples: SamplePoints,
    candidates: Candidates,
    model: SeedModel,
    *,
    backend: str,
    formalism: str,
    progress: ProgressCallback | None = None,
) -> OptimiserProblem:
    """The influence matrix of the candidates at every sample point, as target zones and
    OAR constraints (limits lowered by ``MATRIX_LIMIT_MARGIN``)."""
    all_pts = np.concatenate(
        [z.points_mm for z in samples.zones] + [o.points_mm for o in samples.oars.values()]
    )
    matrix = influence_matrix(
        candidates.positions_mm,
        candidates.directions,
        all_pts,
        model,
        backend=backend,
        formalism=formalism,
        progress=progress,
    )
    offset = 0
    target_zones = []
    for z in samples.zones:
        n = len(z.points_mm)
        target_zones.append(
            TargetZone(
                z.name, matrix[offset : offset + n], z.point_cc, z.prescription_gy,
                z.background_gy,
            )
        )  # fmt: skip
        offset += n
    oar_rows = {}
    for roi, o in samples.oars.items():
        n = len(o.points_mm)
        oar_rows[roi] = (matrix[offset : offset + n], o.point_cc, o.background_gy)
        offset += n
    constraints = []
    for lim in samples.limits:
        rows, cc, background = oar_rows[lim.roi]
        t = lim.term
        point_cc = np.full(len(cc), samples.voxel_cc) if t.kind == "dmax" else cc
        constraints.append(
            OarConstraint(
                lim.roi, t.metric, t.kind, t.limit_gy * (1 - MATRIX_LIMIT_MARGIN),
                lim.allowed_cc, rows, point_cc, background,
            )
        )  # fmt: skip
    return OptimiserProblem(tuple(target_zones), tuple(constraints))


def _zone_masks(
    spec: PlanSpec, zones: Mapping[str, LesionZones]
) -> list[tuple[str, np.ndarray, float]]:
    """(name, mask, prescription) of each seed-target zone and high-risk sub-zone."""
    out = []
    for lesion in spec.lesions:
        z = zones[lesion.roi]
        if z.seed_target is None:
            continue
        rx = lesion.prescription_gy or spec.prescription_gy
        out.append((f"{lesion.roi} seed target", z.seed_target, rx))
        for h in lesion.high_risk:
            out.append((f"{lesion.roi} {h.roi}", z.high_risk[h.roi], h.prescription_gy))
    return out


def _oar_samples(
    structures: PlanningStructures, centres_mm: np.ndarray, limits: tuple[OarDvhLimit, ...]
) -> dict[str, OarSamples]:
    """One point set per OAR: every constraint voxel for an OAR with a Dmax limit, else
    only the voxels the OAR occupies (volume limits: the ring carries no weight)."""
    voxel_cc = structures.grid.voxel_volume_mm3 / 1000.0
    with_dmax = {lim.roi for lim in limits if lim.term.kind == "dmax"}
    out: dict[str, OarSamples] = {}
    for lim in limits:
        if lim.roi in out:
            continue
        fraction = structures.fractions[lim.roi]
        m = lim.voxels if lim.roi in with_dmax else lim.voxels & (fraction > 0)
        out[lim.roi] = OarSamples(centres_mm[m], voxel_cc * fraction[m].astype(float))
    return out


def _constraint_voxels(fraction: np.ndarray) -> np.ndarray:
    """Voxels a ROI touches (any occupancy), grown by one voxel in all 26 directions."""
    from scipy import ndimage

    return ndimage.binary_dilation(fraction > 0, structure=np.ones((3, 3, 3), bool))


def _zone_points(
    mask: np.ndarray, grid: Grid, centres_mm: np.ndarray, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    pts = centres_mm[mask]
    cc = np.full(pts.shape[0], grid.voxel_volume_mm3 / 1000.0)
    if pts.shape[0] > MAX_ZONE_POINTS:
        idx = np.sort(rng.choice(pts.shape[0], MAX_ZONE_POINTS, replace=False))
        cc = np.full(idx.size, cc.sum() / idx.size)
        pts = pts[idx]
    return pts, cc
