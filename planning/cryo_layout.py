"""The plan's cryo stage: a probe layout per cryo or cryo-cored lesion, planned first.

Its lethal zone becomes the ablated core of a zoned lesion (the seeds then cover what the
ice does not).  Probes are placed by :func:`brachycryo.cryo_iceball.placement.place_probes`
on the empirical isotherm model of the probe (published isotherms, else a calibration by
the physics mode), best effort: a layout short of the coverage goal is kept and reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from brachycryo.core.errors import ConfigError, DataModelError, InfeasiblePlanError
from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.empirical import EmpiricalProbe
from brachycryo.cryo_iceball.placement import PlacementRules
from brachycryo.cryo_iceball.probes import Probe, ProbeModel
from brachycryo.planning.case import PlanningStructures
from brachycryo.planning.spec import LesionSpec, PlanSpec
from brachycryo.planning.zones import shrink_mm

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
    spec: PlanSpec, structures: PlanningStructures, *, backend: str
) -> dict[str, CryoLayout]:
    """{lesion ROI: probe layout} of every lesion cryo treats, in the spec's order."""
    empirical_cache: dict[str, EmpiricalProbe] = {}  # one calibration per plan and probe model
    return {
        lesion.roi: _plan_cryo(spec, lesion, structures, backend, empirical_cache)
        for lesion in spec.lesions
        if has_cryo(lesion)
    }


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


def _core_target(lesion: LesionSpec, gtv: np.ndarray, grid: Grid) -> np.ndarray:
    """What the probes must ablate: the GTV shrunk by ``core_margin_mm`` for a zoned
    lesion, the whole GTV for a cryo lesion."""
    if lesion.allocation != "zoned":
        return gtv
    core_target = shrink_mm(gtv, grid, lesion.core_margin_mm) & gtv
    if not core_target.any():
        raise InfeasiblePlanError(
            f"lesion {lesion.roi}: nothing lies {lesion.core_margin_mm:g} mm inside the "
            "GTV for cryo to ablate",
            binding=[f"lesion {lesion.roi} core_margin_mm"],
        )
    return core_target


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


def _plan_cryo(
    spec: PlanSpec,
    lesion: LesionSpec,
    structures: PlanningStructures,
    backend: str,
    empirical_cache: dict[str, EmpiricalProbe],
) -> CryoLayout:
    from brachycryo.cryo_iceball.empirical import empirical_min_temp
    from brachycryo.cryo_iceball.placement import place_probes

    grid, masks = structures.grid, structures.masks
    model = _probe_model(spec)
    if model.model not in empirical_cache:
        empirical_cache[model.model] = _empirical_probe(model, backend)
    empirical = empirical_cache[model.model]
    core_target = _core_target(lesion, masks[lesion.roi], grid)
    placed = place_probes(
        grid,
        core_target,
        _spared_masks(spec, masks),
        model,
        empirical,
        direction=probe_axis(spec),
        rules=_placement_rules(spec, core_target, grid),
        best_effort=True,
    )
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
