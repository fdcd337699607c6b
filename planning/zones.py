"""Treatment zones of a lesion: GTV, ablated core, seed target (peripheral margin), high risk.

For a *zoned* lesion (Deliver item 1 of the zoned-planning issue):

* **core**: what cryoablation kills - either the lethal zone of the cryo plan, or the GTV
  shrunk by ``core_margin_mm`` (points at least that far inside the GTV surface);
* **seed target** = (GTV expanded by ``margin_mm``) ∩ BODY − OARs − core.  The expansion is
  the clinical PTV = GTV + 1 cm of CT-guided seed implants (see shared clinical numbers);
  OARs are removed so that the target never asks for dose inside an organ at risk.

A *seeds* lesion has no core; a *cryo* lesion has no seed target.  Expansions and shrinks
use exact Euclidean distance transforms in mm (anisotropic voxels handled), so a 10 mm
margin is 10 mm in every direction.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from brachycryo.core.errors import InfeasiblePlanError, StructureError
from brachycryo.core.grid import Grid
from brachycryo.planning.case import PlanningStructures
from brachycryo.planning.spec import PlanSpec


def _sampling_kji(grid: Grid) -> tuple[float, float, float]:
    si, sj, sk = grid.spacing_mm
    return (sk, sj, si)


def distance_outside_mm(mask: np.ndarray, grid: Grid) -> np.ndarray:
    """Distance (mm) from each voxel centre to the nearest voxel of ``mask`` (0 inside)."""
    if not mask.any():
        return np.full(mask.shape, np.inf)
    return ndimage.distance_transform_edt(~mask, sampling=_sampling_kji(grid))


def distance_inside_mm(mask: np.ndarray, grid: Grid) -> np.ndarray:
    """Distance (mm) from each voxel centre inside ``mask`` to the nearest outside voxel."""
    padded = np.pad(mask, 1, constant_values=False)
    d = ndimage.distance_transform_edt(padded, sampling=_sampling_kji(grid))
    return d[1:-1, 1:-1, 1:-1]


def expand_mm(mask: np.ndarray, grid: Grid, margin_mm: float) -> np.ndarray:
    """``mask`` grown by ``margin_mm`` (voxel centres within that distance of the mask)."""
    if margin_mm <= 0:
        return mask.copy()
    return distance_outside_mm(mask, grid) <= margin_mm + 1e-6


def shrink_mm(mask: np.ndarray, grid: Grid, margin_mm: float) -> np.ndarray:
    """``mask`` shrunk by ``margin_mm`` (voxels at least that far inside its surface).

    The distance is measured between voxel centres, so a voxel next to the surface is at
    one voxel spacing; ``margin_mm`` is compared with that distance minus half a voxel.
    """
    if margin_mm <= 0:
        return mask.copy()
    half = 0.5 * min(grid.spacing_mm)
    return distance_inside_mm(mask, grid) - half >= margin_mm - 1e-6


@dataclass(frozen=True)
class LesionZones:
    """The zones of one lesion on the planning grid (boolean masks, [k, j, i])."""

    name: str
    allocation: str
    gtv: np.ndarray
    core: np.ndarray | None
    seed_target: np.ndarray | None
    high_risk: dict[str, np.ndarray]

    def volume_cc(self, which: str, grid: Grid) -> float:
        m = getattr(self, which)
        return 0.0 if m is None else float(m.sum()) * grid.voxel_volume_mm3 / 1000.0


def seed_target_mask(
    gtv: np.ndarray,
    grid: Grid,
    *,
    margin_mm: float,
    body: np.ndarray | None,
    oars: Mapping[str, np.ndarray],
    core: np.ndarray | None,
) -> np.ndarray:
    """(GTV + margin) ∩ BODY − OARs − core."""
    target = expand_mm(gtv, grid, margin_mm)
    if body is not None:
        target &= body
    for oar in oars.values():
        target &= ~oar
    if core is not None:
        target &= ~core
    return target


def lesion_zones(
    name: str,
    allocation: str,
    gtv: np.ndarray,
    grid: Grid,
    *,
    margin_mm: float = 10.0,
    core: np.ndarray | None = None,
    core_margin_mm: float | None = None,
    body: np.ndarray | None = None,
    oars: Mapping[str, np.ndarray] | None = None,
    high_risk: dict[str, np.ndarray] | None = None,
) -> LesionZones:
    """Build the zones of a lesion.

    A given ``core`` (e.g. a cryo lethal zone) takes precedence over ``core_margin_mm``.
    """
    grid.check_volume(gtv, f"GTV {name}")
    gtv = np.asarray(gtv, dtype=bool)
    if not gtv.any():
        raise StructureError("GTV is empty on the planning grid", roi=name)
    oars = oars or {}
    core_mask = None
    if allocation in ("zoned", "cryo"):
        if core is not None:
            core_mask = np.asarray(core, dtype=bool)
        elif allocation == "zoned" and core_margin_mm is not None:
            core_mask = shrink_mm(gtv, grid, core_margin_mm) & gtv
            if not core_mask.any():
                raise StructureError(
                    f"the GTV has no point {core_margin_mm:g} mm inside its surface; use a "
                    "smaller core_margin_mm or allocation 'seeds'",
                    roi=name,
                )
        elif allocation == "cryo":
            core_mask = gtv.copy()
    target = None
    if allocation in ("zoned", "seeds"):
        target = seed_target_mask(
            gtv,
            grid,
            margin_mm=margin_mm,
            body=body,
            oars=oars,
            core=core_mask if allocation == "zoned" else None,
        )
        if not target.any():
            _empty_seed_target(name, gtv, grid, margin_mm, body, oars, core_mask)
    hr = {}
    for hname, m in (high_risk or {}).items():
        grid.check_volume(m, f"high-risk zone {hname}")
        zone = np.asarray(m, dtype=bool)
        if target is not None:
            zone = zone & target
        if not zone.any():
            raise StructureError("high-risk zone does not overlap the seed target", roi=hname)
        hr[hname] = zone
    return LesionZones(name, allocation, gtv, core_mask, target, hr)


def plan_zones(
    spec: PlanSpec, structures: PlanningStructures, lethal: Mapping[str, np.ndarray]
) -> dict[str, LesionZones]:
    """The zones of every lesion (the plan's zones stage).

    ``lethal``: {lesion ROI: lethal zone of its cryo layout}; the part of it within the
    lesion's margin is the core of that lesion.  A lesion without one and ``core =
    "margin"`` gets the GTV shrunk by ``core_margin_mm`` as its core.
    """
    grid, masks = structures.grid, structures.masks
    oar_masks = {o.roi: masks[o.roi] for o in spec.oars}
    zones: dict[str, LesionZones] = {}
    for lesion in spec.lesions:
        core = None
        if lesion.roi in lethal:
            core = lethal[lesion.roi] & expand_mm(masks[lesion.roi], grid, lesion.margin_mm)
        zones[lesion.roi] = lesion_zones(
            lesion.roi,
            lesion.allocation,
            masks[lesion.roi],
            grid,
            margin_mm=lesion.margin_mm,
            core=core,
            core_margin_mm=lesion.core_margin_mm if lesion.core == "margin" else None,
            body=masks[structures.body],
            oars=oar_masks,
            high_risk={h.roi: masks[h.roi] for h in lesion.high_risk},
        )
    return zones


def _empty_seed_target(
    name: str,
    gtv: np.ndarray,
    grid: Grid,
    margin_mm: float,
    body: np.ndarray | None,
    oars: Mapping[str, np.ndarray],
    core: np.ndarray | None,
) -> None:
    """Raise :class:`InfeasiblePlanError` naming what takes the whole of GTV + margin: the
    body outline, the core, and each OAR with the share of GTV + margin it covers."""
    grown = expand_mm(gtv, grid, margin_mm)
    total = max(int(grown.sum()), 1)
    reasons, binding = [], []
    if body is not None and not (grown & body).any():
        reasons.append("it lies outside the body outline")
        binding.append("BODY")
    if core is not None and (grown & core).any():
        reasons.append(f"the core covers {100.0 * (grown & core).sum() / total:.0f} % of it")
        binding.append("core")
    for roi, mask in oars.items():
        share = 100.0 * (grown & mask).sum() / total
        if share > 0:
            reasons.append(f"OAR {roi} covers {share:.0f} % of it")
            binding.append(roi)
    raise InfeasiblePlanError(
        f"lesion {name}: the seed target is empty: GTV + {margin_mm:g} mm is removed "
        f"entirely ({'; '.join(reasons) or 'no reason found'})",
        binding=binding,
    )


def seed_targets(zones: Mapping[str, LesionZones]) -> dict[str, np.ndarray]:
    """{lesion ROI: seed target} of the lesions that have one, in the order of ``zones``."""
    return {roi: z.seed_target for roi, z in zones.items() if z.seed_target is not None}


def resample_mask_nearest(mask: np.ndarray, grid: Grid, target: Grid) -> np.ndarray:
    """``mask`` (on ``grid``) sampled at the voxel centres of ``target`` (nearest voxel)."""
    out = np.zeros(target.shape, dtype=bool)
    jj, ii = np.meshgrid(np.arange(target.shape[1]), np.arange(target.shape[2]), indexing="ij")
    for k in range(target.shape[0]):  # slice by slice: the CT grid can be large
        pts = target.ijk_to_mm(np.stack([ii, jj, np.full_like(ii, k)], axis=-1).astype(float))
        out[k] = grid.sample_nearest(mask, pts, outside=False)
    return out
