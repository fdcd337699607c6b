"""The plan's cryo stage: a probe layout per cryo or cryo-cored lesion, planned first.

Its lethal zone becomes the ablated core of a zoned lesion (the seeds then cover what the
ice does not).  Probes are placed by :func:`brachycryo.cryo_iceball.placement.place_probes`
on the empirical isotherm model of the probe (published isotherms, else a calibration by
the physics mode), best effort: a layout short of the coverage goal is kept and reported.

Approaches (issue 21): each probe's whole track, tip to skin, must keep clear of the plan's
obstacles (:class:`~brachycryo.planning.probe_tracks.TrackObstacles`: no-go structures, OAR
margins, implanted seeds and their needle tracks, other lesions' probe tracks); candidates
that do not are left out of the search.  The layouts tried, one kept (those meeting the coverage
goal if any; among them the shorter mean insertion within 10 points of the best coverage,
:func:`_preferred`): parallel probes along the insertion direction (a
template; from either side when ``[cryo] direction`` is not given), then, if those miss the
coverage goal, probes converging from skin entry points around that direction
(``[needles] max_angle_deg`` off it, four azimuths) - free tracks.  When every candidate of
every approach is refused, :class:`~brachycryo.core.errors.InfeasiblePlanError` names the
obstacles that refused them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

from brachycryo.core.errors import ConfigError, DataModelError, InfeasiblePlanError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.empirical import EmpiricalProbe
from brachycryo.cryo_iceball.placement import PlacementRules
from brachycryo.cryo_iceball.probes import Probe, ProbeModel
from brachycryo.planning.case import PlanningStructures
from brachycryo.planning.spec import LesionSpec, PlanSpec
from brachycryo.planning.zones import shrink_mm

if TYPE_CHECKING:
    from brachycryo.cryo_iceball.placement import PlacementResult
    from brachycryo.planning.probe_tracks import TrackObstacles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CryoLayout:
    """The probes of one lesion and what their ice does on the planning grid.

    ``coverage``: fraction (0-1) of the core target inside the lethal isotherm; ``lethal``
    and ``ice_0c``: voxels (inside the body) at or below the lethal isotherm and 0 C;
    ``oar_min_distance_mm``: closest approach of the 0 C isotherm to each spared structure.
    """

    lesion: str
    probes: tuple[Probe, ...]
    coverage: float
    lethal: np.ndarray
    ice_0c: np.ndarray
    oar_min_distance_mm: dict[str, float]
    probe_model: str


def has_cryo(lesion: LesionSpec) -> bool:
    """Cryo treats the lesion: all of it, or the core of a zoned lesion."""
    return lesion.allocation == "cryo" or (lesion.allocation == "zoned" and lesion.core == "cryo")


def plan_cryo_layouts(
    spec: PlanSpec,
    structures: PlanningStructures,
    *,
    backend: str,
    obstacles: TrackObstacles | None = None,
) -> dict[str, CryoLayout]:
    """{lesion ROI: probe layout} of every lesion cryo treats, in the spec's order; with
    ``obstacles``, every probe's track keeps clear of them (and of the earlier lesions'
    probe tracks, added to them as each lesion is planned)."""
    empirical_cache: dict[str, EmpiricalProbe] = {}  # one calibration per plan and probe model
    grid_cache: dict[bytes, np.ndarray] = {}  # voxel centres, OAR distance maps: once per plan
    out: dict[str, CryoLayout] = {}
    for lesion in spec.lesions:
        if has_cryo(lesion):
            layout = _plan_cryo(
                spec, lesion, structures, backend, empirical_cache, obstacles, grid_cache
            )
            if obstacles is not None:
                obstacles.add_probes(lesion.roi, layout.probes)
            out[lesion.roi] = layout
    return out


def _probe_model(spec: PlanSpec) -> ProbeModel:
    from brachycryo.cryo_iceball.probes import load_probe_catalogue

    catalogue = load_probe_catalogue()
    if spec.cryo.probe_model not in catalogue:
        raise ConfigError(
            f"unknown probe model {spec.cryo.probe_model!r}; known: {sorted(catalogue)}",
            key="cryo.probe_model",
        )
    return catalogue[spec.cryo.probe_model]


def _empirical_probe(model: ProbeModel, backend: str) -> EmpiricalProbe:
    """Published isotherm ellipsoids of the probe, else a calibration by the physics mode.

    The calibration simulates one probe in tumour tissue at 37 C with the standard
    freeze 10 min - passive thaw 8 min - freeze 10 min protocol on a 2 mm grid (about 10 s
    on two cores) and fits ellipsoids to its isotherms (``brachycryo.cryo_iceball.empirical``).
    """
    from brachycryo.cryo_iceball.empirical import calibrate_from_physics, from_catalogue
    from brachycryo.cryo_iceball.probes import protocol
    from brachycryo.cryo_iceball.tissue import load_tissues

    try:
        return from_catalogue(model)
    except DataModelError:
        log.info("no published isotherms for %s: calibrating from the physics mode", model.model)
        return calibrate_from_physics(
            model,
            tissue=load_tissues()["tumor"],
            phases=protocol(("freeze", 10), ("passive_thaw", 8), ("freeze", 10)),
            spacing_mm=2.0,
            backend=backend,
        )


def core_target(lesion: LesionSpec, gtv: np.ndarray, grid: Grid) -> np.ndarray:
    """What the probes must ablate: the GTV shrunk by ``core_margin_mm`` for a zoned
    lesion, the whole GTV for a cryo lesion."""
    if lesion.allocation != "zoned":
        return gtv
    target = shrink_mm(gtv, grid, lesion.core_margin_mm) & gtv
    if not target.any():
        raise InfeasiblePlanError(
            f"lesion {lesion.roi}: nothing lies {lesion.core_margin_mm:g} mm inside the "
            "GTV for cryo to ablate",
            binding=[f"lesion {lesion.roi} core_margin_mm"],
        )
    return target


def _spared_masks(spec: PlanSpec, masks: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The OARs and the needles' no-go structures (present in the case) the ice keeps off."""
    sparing = {o.roi: masks[o.roi] for o in spec.oars if o.roi in masks}
    for name in spec.needles.no_go:
        if name in masks:
            sparing.setdefault(name, masks[name])
    return sparing


def _placement_rules(spec: PlanSpec, core_target: np.ndarray, grid: Grid) -> PlacementRules:
    return PlacementRules(
        lethal_isotherm_c=spec.cryo.lethal_isotherm_c,
        coverage_min=spec.cryo.coverage_min_pct / 100.0,
        oar_margin_mm=spec.cryo.oar_margin_mm,
        min_spacing_mm=spec.cryo.min_spacing_mm,
        max_spacing_mm=spec.cryo.max_spacing_mm,
        max_probes=spec.cryo.max_probes,
        candidate_step_mm=_candidate_step_mm(core_target, grid, spec.cryo.candidate_step_mm),
    )


@dataclass(frozen=True)
class _Approach:
    """One way to reach the core: parallel probes along ``axis`` (tip -> handle), or
    probes converging from ``entries_mm`` (free tracks)."""

    label: str
    axis: tuple[float, float, float]
    entries_mm: tuple[tuple[float, float, float], ...] | None = None


def _approaches(
    spec: PlanSpec, core: np.ndarray, grid: Grid, obstacles: TrackObstacles | None
) -> tuple[list[_Approach], list[_Approach]]:
    """The parallel approaches (the insertion axis; also reversed when the spec leaves the
    side open) and the converging ones (entry points on the skin, ``max_angle_deg`` off
    each parallel axis, four azimuths; only with ``obstacles``, which hold the body)."""
    axis = np.asarray(probe_axis(spec))
    axes = [axis] if spec.cryo.direction is not None else [axis, -axis]
    parallel = [_Approach(f"parallel {_fmt(a)}", _triplet(a)) for a in axes]
    if obstacles is None:
        return parallel, []
    from brachycryo.cryo_iceball.placement import _basis
    from brachycryo.cryo_iceball.probes import Probe

    centroid = grid.voxel_centres_mm()[core].mean(axis=0)
    tilt = np.deg2rad(max(spec.needles.max_angle_deg, 1.0))
    converging = []
    for a in axes:
        e1, e2 = _basis(a)
        entries = []
        for phi in np.deg2rad([0.0, 90.0, 180.0, 270.0]):
            ray = np.cos(tilt) * a + np.sin(tilt) * (np.cos(phi) * e1 + np.sin(phi) * e2)
            probe = Probe(_probe_model(spec), _triplet(centroid), _triplet(ray))
            _, entry = obstacles.segment(probe)
            entries.append(_triplet(entry))
        converging.append(_Approach(f"converging {_fmt(a)}", _triplet(a), tuple(entries)))
    return parallel, converging


def _fmt(v: np.ndarray) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in v) + "]"


def _triplet(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def _tracks_apart(probes: Sequence[Probe], obstacles: TrackObstacles) -> bool:
    """Every two probes' tracks of one layout keep the track clearance."""
    return all(
        _two_tracks_apart(probes[i], probes[j], obstacles)
        for i in range(len(probes))
        for j in range(i + 1, len(probes))
    )


def _two_tracks_apart(a: Probe, b: Probe, obstacles: TrackObstacles) -> bool:
    """Two probes' tracks (tip to skin) keep the track clearance from each other."""
    from brachycryo.planning.implanted import segment_segment_distance_mm

    return segment_segment_distance_mm(*obstacles.segment(a), *obstacles.segment(b)) >= (
        obstacles.clearance_mm
    )


def _mean_depth_mm(probes: Sequence[Probe], obstacles: TrackObstacles | None) -> float:
    if obstacles is None or not probes:
        return 0.0
    return float(np.mean([np.linalg.norm(np.subtract(*obstacles.segment(p))) for p in probes]))


def _place(
    spec: PlanSpec,
    lesion: LesionSpec,
    structures: PlanningStructures,
    core_target: np.ndarray,
    model: ProbeModel,
    empirical: EmpiricalProbe,
    obstacles: TrackObstacles | None,
    grid_cache: dict[bytes, np.ndarray] | None = None,
) -> PlacementResult:
    """The preferred layout over the approaches (:func:`_preferred`: the shorter mean
    insertion among the layouts of about the best coverage); converging tracks only when
    no parallel layout meets the coverage goal."""
    from brachycryo.cryo_iceball.placement import place_probes

    grid = structures.grid
    parallel, converging = _approaches(spec, core_target, grid, obstacles)
    goal = spec.cryo.coverage_min_pct / 100.0
    candidates: list[tuple[float, float, PlacementResult]] = []
    errors: list[InfeasiblePlanError] = []
    for group in (parallel, converging):
        for approach in group:
            try:
                placed = place_probes(
                    grid, core_target, _spared_masks(spec, structures.masks), model, empirical,
                    direction=approach.axis, entry_points_mm=approach.entries_mm,
                    rules=_placement_rules(spec, core_target, grid), best_effort=True,
                    candidate_ok=None if obstacles is None else obstacles.allows,
                    pair_ok=None if obstacles is None else partial(
                        _two_tracks_apart, obstacles=obstacles
                    ), grid_cache=grid_cache,
                )  # fmt: skip
            except InfeasiblePlanError as exc:
                errors.append(exc)
                continue
            if obstacles is not None and not _tracks_apart(placed.probes, obstacles):
                obstacles.refused["another probe of the layout"] += 1
                continue
            candidates.append((placed.coverage, _mean_depth_mm(placed.probes, obstacles), placed))
        if any(c[0] >= goal - 1e-9 for c in candidates):
            break
    if not candidates:
        raise _blocked(lesion, errors, obstacles)
    meeting = [c for c in candidates if c[0] >= goal - 1e-9]
    return _preferred(meeting or candidates)


#: Approaches whose core coverage lies within this fraction of the best one's are taken as
#: equally good, and the shorter mean insertion wins among them: every extra centimetre of
#: track through the patient adds risk (bleeding, tissue and organs crossed), and a zoned
#: lesion's core that the ice misses is still treated by the seeds' dose. Without it a
#: 5-point gain in a debulking core sent the demo's probes 237 mm across the abdomen
#: instead of 130 mm from the near side.
APPROACH_COVERAGE_TOLERANCE = 0.10


def _preferred(candidates: list[tuple[float, float, PlacementResult]]) -> PlacementResult:
    """The layout with the shortest mean insertion among those whose coverage is within
    :data:`APPROACH_COVERAGE_TOLERANCE` of the best (ties: the higher coverage, then the
    first tried); the caller passes only the layouts that meet the goal when some do."""
    top = max(c[0] for c in candidates)
    near = [c for c in candidates if c[0] >= top - APPROACH_COVERAGE_TOLERANCE - 1e-12]
    return min(near, key=lambda c: (c[1], -c[0]))[2]


def _blocked(
    lesion: LesionSpec, errors: list[InfeasiblePlanError], obstacles: TrackObstacles | None
) -> InfeasiblePlanError:
    """Why no approach gave a layout: the obstacles that refused the candidates' tracks
    (most refusals first), else the placement's own binding constraints."""
    other = [e for e in errors if e.binding != ["probe tracks"]]
    if other:  # some approach had clear tracks but failed on the placement's own rules
        return other[0]
    if obstacles is not None and obstacles.refused:
        names = [name for name, _ in obstacles.refused.most_common()]
        counts = ", ".join(f"{n} ({c} candidates)" for n, c in obstacles.refused.most_common())
        return InfeasiblePlanError(
            f"lesion {lesion.roi}: no cryo probe position has a track clear of its "
            f"obstacles (parallel and converging approaches tried); blocked by: {counts}",
            binding=[f"cryo {lesion.roi}: {n}" for n in names],
        )
    binding = [b for e in errors for b in e.binding] or ["max_probes"]
    return InfeasiblePlanError(
        f"lesion {lesion.roi}: no cryo probe layout: {errors[0] if errors else 'none found'}",
        binding=binding,
    )


def _plan_cryo(
    spec: PlanSpec,
    lesion: LesionSpec,
    structures: PlanningStructures,
    backend: str,
    empirical_cache: dict[str, EmpiricalProbe],
    obstacles: TrackObstacles | None = None,
    grid_cache: dict[bytes, np.ndarray] | None = None,
) -> CryoLayout:
    from brachycryo.cryo_iceball.empirical import empirical_min_temp

    grid, masks = structures.grid, structures.masks
    model = _probe_model(spec)
    if model.model not in empirical_cache:
        empirical_cache[model.model] = _empirical_probe(model, backend)
    empirical = empirical_cache[model.model]
    target = core_target(lesion, masks[lesion.roi], grid)
    if obstacles is not None:
        obstacles.refused.clear()
    placed = _place(spec, lesion, structures, target, model, empirical, obstacles, grid_cache)
    temp = empirical_min_temp(grid, placed.probes, {model.model: empirical})
    body = masks[structures.body]
    return CryoLayout(
        lesion=lesion.roi,
        probes=tuple(placed.probes),
        coverage=float(placed.coverage),
        lethal=(temp <= spec.cryo.lethal_isotherm_c) & body,
        ice_0c=(temp <= 0.0) & body,
        oar_min_distance_mm=dict(placed.oar_min_distance_mm),
        probe_model=model.model,
    )


def _candidate_step_mm(core: np.ndarray, grid: Grid, largest_mm: float) -> float:
    """Probe-position lattice step: a sixth of the core's equivalent diameter, 2 mm at least."""
    volume_mm3 = float(core.sum()) * grid.voxel_volume_mm3
    diameter_mm = (6.0 * volume_mm3 / np.pi) ** (1.0 / 3.0)
    return float(np.clip(diameter_mm / 6.0, 2.0, largest_mm))


def probe_axis(spec: PlanSpec) -> tuple[float, float, float]:
    """The probes' axis tip -> handle (:class:`~brachycryo.cryo_iceball.probes.Probe`): the
    reverse of the insertion direction (``[cryo] direction``, else ``[needles] direction``,
    both skin -> depth), so the tip is the deep end and the handle outside the patient."""
    insertion = np.asarray(spec.cryo.direction or spec.needles.direction, dtype=float)
    return (-float(insertion[0]), -float(insertion[1]), -float(insertion[2]))
