"""The patient a plan is made on: CT + structures (from DICOM or the built-in phantom),
and the planning grid with the masks the planner needs."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brachycryo.core.errors import StructureError
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, scaled
from brachycryo.dicom_io.ct_series import CTImage, load_ct_series
from brachycryo.dicom_io.rasterize import contour_stack, roi_fraction
from brachycryo.dicom_io.rtstruct import StructureSet, check_against_image, read_rtstruct
from brachycryo.phantoms import build_phantom, write_phantom
from brachycryo.planning.spec import CaseSpec


@dataclass(frozen=True)
class PlanningCase:
    ct: CTImage
    structures: StructureSet
    rtstruct_path: Path


def load_case(
    spec: CaseSpec, work_dir: str | os.PathLike, *, progress: ProgressCallback | None = None
) -> PlanningCase:
    """CT + RTSTRUCT of the plan; the phantom is written to ``work_dir/case`` first."""
    if spec.phantom is not None:
        ph = spec.phantom
        case = build_phantom(
            seed=ph.seed, site=ph.site, spacing_mm=ph.spacing_mm, progress=scaled(progress, 0, 0.5)
        )
        files = write_phantom(
            Path(work_dir) / "case", case, overwrite=True, progress=scaled(progress, 0.5, 1)
        )
        return PlanningCase(files.ct, files.structures, files.rtstruct)
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
