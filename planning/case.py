"""The patient a plan is made on: CT + structures (from DICOM or the built-in phantom),
and the planning grid with the masks the planner needs.

The plan's first two stages: :func:`load_case` (the case) and :func:`structures_on_grid`
(the planning grid and every structure the plan uses, on it).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brachycryo.core.errors import ConfigError, OutputExistsError, StructureError
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, scaled
from brachycryo.dicom_io.ct_series import CTImage, load_ct_series
from brachycryo.dicom_io.rasterize import contour_stack, roi_fraction
from brachycryo.dicom_io.rtstruct import StructureSet, check_against_image, read_rtstruct
from brachycryo.phantoms import build_phantom, write_phantom
from brachycryo.planning.spec import CaseSpec, PlanSpec

log = logging.getLogger(__name__)

#: The planning grid extends this far beyond the lesions' margins (half of it on each side
#: of the outermost structure), so OARs next to the targets lie inside it.
OAR_NEIGHBOURHOOD_MM = 40.0


@dataclass(frozen=True)
class PlanningCase:
    ct: CTImage
    structures: StructureSet
    rtstruct_path: Path


def load_case(
    spec: CaseSpec,
    work_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> PlanningCase:
    """CT + RTSTRUCT of the plan; the phantom is written to ``work_dir/case`` first (an
    existing ``case/`` is replaced only with ``overwrite``: the plans of an earlier run
    reference its CT)."""
    if spec.phantom is not None:
        ph = spec.phantom
        case = build_phantom(
            seed=ph.seed, site=ph.site, spacing_mm=ph.spacing_mm,
            extra_metastases=ph.extra_metastases, progress=scaled(progress, 0, 0.5),
        )  # fmt: skip
        folder = Path(work_dir) / "case"
        if folder.exists() and not overwrite:
            raise OutputExistsError(
                f"{folder} exists (an earlier plan's phantom CT); pass overwrite=True "
                "(CLI: --overwrite) to replace it"
            )
        files = write_phantom(folder, case, overwrite=overwrite, progress=scaled(progress, 0.5, 1))
        return PlanningCase(files.ct, files.structures, files.rtstruct)
    assert spec.ct is not None and spec.rtstruct is not None  # the spec gives both, or a phantom
    ct = load_ct_series(spec.ct)
    ss = read_rtstruct(spec.rtstruct)
    check_against_image(
        ss,
        frame_of_reference_uid=ct.frame_of_reference_uid,
        series_instance_uid=ct.series_instance_uid,
        sop_instance_uids=set(ct.sop_instance_uids),
        strict=False,
    )
    return PlanningCase(ct, ss, Path(spec.rtstruct))


def planning_grid(
    ct_grid: Grid,
    rois,
    structures: StructureSet,
    pad_mm: float,
    spacing_mm: float,
    *,
    oars=(),
    oar_reach_mm: float = 80.0,
) -> Grid:
    """A grid in the CT's orientation covering the ROIs plus ``pad_mm``, clipped to the CT.

    The grid also grows to take in the ``oars`` (organs with dose limits) as far as
    ``oar_reach_mm`` beyond the ROIs, so their DVHs see the dose the seeds give them
    rather than 0 Gy outside the dose grid; parts farther away are reported as outside.
    """
    d = ct_grid.direction_matrix

    def local_extent(names):
        corners = []
        for name in names:
            stack = contour_stack(structures.roi(name), slice_thickness_mm=ct_grid.spacing_mm[2])
            corners.append(stack.bounds_mm())
        local = (np.concatenate(corners) - np.asarray(ct_grid.origin_mm)) @ d
        return local.min(axis=0), local.max(axis=0)

    # extents along the CT axes, in mm from the CT origin
    lo, hi = local_extent(rois)
    reach_lo, reach_hi = lo - oar_reach_mm, hi + oar_reach_mm
    lo = lo - pad_mm
    hi = hi + pad_mm
    if oars:
        olo, ohi = local_extent(oars)
        lo = np.minimum(lo, np.maximum(olo, reach_lo))
        hi = np.maximum(hi, np.minimum(ohi, reach_hi))
    ct_lo = -0.5 * np.asarray(ct_grid.spacing_mm)
    ct_hi = (np.asarray(ct_grid.size_ijk) - 0.5) * np.asarray(ct_grid.spacing_mm)
    lo = np.maximum(lo, ct_lo)
    hi = np.minimum(hi, ct_hi)
    n = np.maximum(1, np.floor((hi - lo) / spacing_mm).astype(int))
    origin_local = lo + 0.5 * spacing_mm
    origin = np.asarray(ct_grid.origin_mm) + d @ origin_local
    return Grid(
        shape=(int(n[2]), int(n[1]), int(n[0])),
        origin_mm=origin,
        spacing_mm=(spacing_mm, spacing_mm, spacing_mm),
        direction=ct_grid.direction,
    )


def roi_fractions(
    structures: StructureSet,
    names,
    grid: Grid,
    *,
    slice_thickness_mm: float,
    required: bool = True,
) -> dict[str, np.ndarray]:
    """Occupancy fractions (2x2x2 sub-points per voxel, float32) of the named ROIs."""
    out = {}
    present = {r.name for r in structures.rois}
    for name in dict.fromkeys(names):
        if name not in present:
            if required:
                raise StructureError(
                    f"is not in the structure set; ROIs present: {sorted(present)}", roi=name
                )
            continue
        out[name] = roi_fraction(
            structures.roi(name), grid, supersample=2, slice_thickness_mm=slice_thickness_mm
        )
    return out


def half_occupancy(fractions: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Masks of the voxels at least half inside each ROI."""
    return {name: frac >= 0.5 for name, frac in fractions.items()}


@dataclass(frozen=True)
class PlanningStructures:
    """The structures a plan uses, on its planning grid.

    ``fractions``: occupancy (0-1, 2x2x2 sub-points per voxel) of the body, the lesions, the
    OARs, the high-risk zones and the needles' no-go and entry ROIs present in the case;
    ``masks``: the voxels at least half inside each; ``body``: the BODY / EXTERNAL ROI's name.
    """

    grid: Grid
    fractions: dict[str, np.ndarray]
    masks: dict[str, np.ndarray]
    body: str


def body_roi_name(case: PlanningCase) -> str:
    """``BODY`` if the structure set has it, else its first ROI of type EXTERNAL."""
    names = case.structures.roi_names
    if "BODY" in names:
        return "BODY"
    for roi in case.structures.rois:
        if roi.interpreted_type.upper() == "EXTERNAL":
            return roi.name
    raise ConfigError("the structure set has no BODY / EXTERNAL ROI", key="case")


def structures_on_grid(spec: PlanSpec, case: PlanningCase) -> PlanningStructures:
    """The planning grid (the lesions plus their largest margin and half of
    ``OAR_NEIGHBOURHOOD_MM``, grown to take in the limited OARs) and the structures on it.

    The needles' no-go ROIs are optional (a missing one is logged and ignored); the entry
    ROI of free-hand needles is required.
    """
    body = body_roi_name(case)
    thickness = case.ct.grid.spacing_mm[2]
    lesion_rois = [lesion.roi for lesion in spec.lesions]
    pad = max(lesion.margin_mm for lesion in spec.lesions) + OAR_NEIGHBOURHOOD_MM / 2
    grid = planning_grid(
        case.ct.grid,
        lesion_rois,
        case.structures,
        pad,
        spec.dose.spacing_mm,
        oars=[o.roi for o in spec.oars],
    )
    wanted = [body, *lesion_rois, *(o.roi for o in spec.oars)]
    wanted += [h.roi for lesion in spec.lesions for h in lesion.high_risk]
    fractions = roi_fractions(case.structures, wanted, grid, slice_thickness_mm=thickness)
    optional = _checked_needle_rois(spec, case)
    fractions.update(
        roi_fractions(case.structures, optional, grid, slice_thickness_mm=thickness, required=False)
    )
    return PlanningStructures(grid, fractions, half_occupancy(fractions), body)


def _checked_needle_rois(spec: PlanSpec, case: PlanningCase) -> list[str]:
    """The needles' no-go ROIs (and the entry ROI of free-hand needles); a missing no-go
    ROI is logged, a missing entry ROI is a :class:`ConfigError`.  Returns them all (the
    missing ones are skipped when rasterised)."""
    optional = [*spec.needles.no_go]
    if spec.needles.mode == "free":
        optional.append(spec.needles.entry_roi)
    missing = [n for n in optional if n not in case.structures.roi_names]
    if spec.needles.mode == "free" and spec.needles.entry_roi in missing:
        raise ConfigError(
            f"entry ROI {spec.needles.entry_roi!r} is not in the structure set",
            key="needles.entry_roi",
        )
    for name in missing:
        log.warning("no-go structure %r is not in the structure set; ignored", name)
    return optional
