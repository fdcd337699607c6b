"""Zones carried both ways through the registration, and written as DICOM.

* Planning -> follow-up: the zones of ``RS.zones.dcm`` (core, seed target, isotherms) and the
  GTVs become an RTSTRUCT on the follow-up CT, and the planned dose an RTDOSE in the
  follow-up frame.  A follow-up voxel ``y`` takes the planning value at ``F^-1(y)`` (``F`` the
  planning -> follow-up map).  For a deformable map ``F = L o B`` the inverse is ``B^-1 o
  L^-1`` with ``B^-1`` the inverse of the B-spline's displacement field (SimpleITK
  ``InvertDisplacementField``, fixed-point iteration, Chen et al., Med Phys 35(1):81-88,
  2008) sampled over the registered region.
* Follow-up -> planning: the follow-up contours become an RTSTRUCT on the planning CT; a
  planning voxel ``x`` takes the follow-up value at ``F(x)``.

Masks are carried as their fraction: each ROI's partial-volume fraction is rasterised at
``spacing_mm`` in its own frame (:data:`SUPERSAMPLE`^3 sub-points per voxel), sampled
(trilinear) at the mapped voxel centres and thresholded at 0.5.  Dose is sampled
trilinearly (an intensive quantity: no Jacobian factor).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from brachycryo.core.grid import Grid
from brachycryo.dicom_io.ct_series import CTImage
from brachycryo.dicom_io.rasterize import roi_fraction
from brachycryo.dicom_io.rtdose import DoseVolume, write_rtdose
from brachycryo.dicom_io.rtstruct import ROI, StructureSet
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
from brachycryo.followup.deformable import BSplineTransform, region_box
from brachycryo.followup.registration import LinearTransform, Transform, sitk_image

#: Contour points mapped to size a carried ROI's box (evenly picked).
MAX_BOX_POINTS = 2000
#: Sub-points per axis of the partial-volume fraction that is carried (a binary mask of
#: the contours on a grid whose slices miss the contour planes would bias the volume).
SUPERSAMPLE = 2
#: Padding (mm) of a carried ROI's box.
BOX_PAD_MM = 4.0


def _inverse_sitk(transform: Transform, region: Grid):
    """A SimpleITK transform mapping follow-up points to planning points."""
    import SimpleITK as sitk

    if isinstance(transform, LinearTransform):
        return transform.inverted().sitk_transform()
    if not isinstance(transform, BSplineTransform):
        raise TypeError(f"no inverse for a {type(transform).__name__}")
    field = transform.displacement_field(region)
    inverse = sitk.InvertDisplacementField(
        field,
        maximumNumberOfIterations=50,
        maxErrorToleranceThreshold=0.05,
        meanErrorToleranceThreshold=0.001,
        enforceBoundaryCondition=True,
    )
    comp = sitk.CompositeTransform(sitk.DisplacementFieldTransform(inverse))
    comp.AddTransform(transform.linear.inverted().sitk_transform())  # applied first
    return comp


@dataclass(frozen=True)
class Carrier:
    """Both directions of one registration, ready to resample with."""

    transform: Transform
    inverse_sitk: Any  # a SimpleITK transform follow-up -> planning

    @classmethod
    def of(cls, transform: Transform, plan_region: Grid) -> Carrier:
        return cls(transform, _inverse_sitk(transform, plan_region))

    def inverse_points(self, points_fu_mm: np.ndarray) -> np.ndarray:
        p = np.asarray(points_fu_mm, float).reshape(-1, 3)
        t = self.inverse_sitk
        return np.array([t.TransformPoint(tuple(map(float, q))) for q in p]).reshape(-1, 3)


def _resample(values, grid: Grid, target: Grid, sitk_tx, *, linear: bool) -> np.ndarray:
    import SimpleITK as sitk

    ref = sitk_image(np.zeros(target.shape, np.float32), target)
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    out = sitk.Resample(sitk_image(values, grid), ref, sitk_tx, interp, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(out)


def _points(roi: ROI) -> np.ndarray:
    p = np.concatenate([c.points_mm for c in roi.closed_contours], axis=0)
    return p[:: max(1, len(p) // MAX_BOX_POINTS)]


def _embed(sub: np.ndarray, box: Grid, grid: Grid) -> np.ndarray:
    out = np.zeros(grid.shape, dtype=sub.dtype)
    lo = np.rint(grid.mm_to_ijk(np.asarray(box.origin_mm))).astype(int)
    n = box.size_ijk
    out[lo[2] : lo[2] + n[2], lo[1] : lo[1] + n[1], lo[0] : lo[0] + n[0]] = sub
    return out


def carry_fraction(
    roi: ROI, target: Grid, sitk_tx, mapped_points_mm: np.ndarray, *, spacing_mm: float
) -> np.ndarray:
    """The fraction of ``roi`` (contours in its own frame) carried onto ``target`` (float32):
    ``sitk_tx`` maps target points to the ROI's frame, ``mapped_points_mm`` are the ROI's
    points in the target frame (to size the box that is resampled).  Its sum times the
    voxel volume is the carried volume (partial volume kept)."""
    pts = np.concatenate([c.points_mm for c in roi.closed_contours], axis=0)
    pad = 2.0 * spacing_mm
    fine = Grid.from_bounds(pts.min(axis=0) - pad, pts.max(axis=0) + pad, spacing_mm)
    frac = roi_fraction(roi, fine, supersample=SUPERSAMPLE)
    inside = target.contains_mm(mapped_points_mm, margin_voxels=BOX_PAD_MM)
    if not inside.any():
        return np.zeros(target.shape, dtype=np.float32)
    box = region_box(target, mapped_points_mm[inside], BOX_PAD_MM)
    return _embed(_resample(frac, fine, box, sitk_tx, linear=True), box, target)


def carry_roi(
    roi: ROI, target: Grid, sitk_tx, mapped_points_mm: np.ndarray, *, spacing_mm: float
) -> np.ndarray:
    """:func:`carry_fraction` >= 0.5: the carried ROI as a mask on ``target``."""
    return carry_fraction(roi, target, sitk_tx, mapped_points_mm, spacing_mm=spacing_mm) >= 0.5


def carried_roi_specs(
    rois: list[ROI], target: Grid, sitk_tx, map_points, *, spacing_mm: float, suffix: str
) -> tuple[list[RoiSpec], list[str]]:
    """RoiSpecs of the ``rois`` carried onto ``target`` (see :func:`carry_roi`); the names of
    those that land outside ``target`` are returned apart."""
    specs, missed = [], []
    for roi in rois:
        if not roi.closed_contours:
            continue
        mask = carry_roi(roi, target, sitk_tx, map_points(_points(roi)), spacing_mm=spacing_mm)
        if not mask.any():
            missed.append(roi.name)
            continue
        kind = roi.interpreted_type or "ORGAN"
        specs.append(RoiSpec(f"{roi.name}{suffix}"[:64], mask=mask, interpreted_type=kind,
                             color_rgb=roi.color_rgb))  # fmt: skip
    return specs, missed


def dose_grid_on(fu: Grid, dose: Grid, transform: Transform) -> Grid | None:
    """A grid in the follow-up CT's orientation with the planned dose's spacing, covering
    the mapped dose grid within the follow-up CT (None: no overlap)."""
    corners = transform.apply(dose.corners_mm())
    ijk = fu.mm_to_ijk(corners)
    size = np.asarray(fu.size_ijk) - 1
    lo = np.clip(ijk.min(axis=0), 0, size)
    hi = np.clip(ijk.max(axis=0), 0, size)
    if np.any(hi <= lo):
        return None
    sp = np.asarray(dose.spacing_mm)
    extent_mm = (hi - lo) * np.asarray(fu.spacing_mm)
    n = np.maximum(1, np.floor(extent_mm / sp + 1e-9).astype(int) + 1)
    origin = fu.ijk_to_mm(lo)
    return Grid(
        shape=(int(n[2]), int(n[1]), int(n[0])),
        origin_mm=(float(origin[0]), float(origin[1]), float(origin[2])),
        spacing_mm=(float(sp[0]), float(sp[1]), float(sp[2])),
        direction=fu.direction,
    )


def carry_dose(dose: DoseVolume, fu: Grid, carrier: Carrier) -> tuple[np.ndarray, Grid] | None:
    """The planned dose (Gy) on :func:`dose_grid_on` (0 where the map leaves the dose grid)."""
    grid = dose_grid_on(fu, dose.grid, carrier.transform)
    if grid is None:
        return None
    values = _resample(dose.dose_gy, dose.grid, grid, carrier.inverse_sitk, linear=True)
    return np.clip(values.astype(np.float64), 0.0, None), grid


@dataclass(frozen=True)
class CarriedFiles:
    zones_on_followup: str | None
    dose_on_followup: str | None
    followup_on_plan: str | None
    #: ROIs with no voxel of the other CT at fraction >= 0.5: outside it, or smaller than
    #: its voxels (a 4 mm sphere on a 4 mm planning CT)
    outside: tuple[str, ...]

    def to_json(self) -> dict:
        return {
            "zones_on_followup_rtstruct": self.zones_on_followup,
            "dose_on_followup_rtdose": self.dose_on_followup,
            "followup_on_plan_rtstruct": self.followup_on_plan,
            "rois_not_carried": list(self.outside),
        }


def write_carried(
    out_dir: str | os.PathLike,
    names: dict[str, str],
    *,
    plan_ct: CTImage,
    plan_rois: list[ROI],
    plan_dose: DoseVolume | None,
    fu_ct: CTImage,
    fu_structures: StructureSet,
    carrier: Carrier,
    spacing_mm: float = 1.0,
) -> CarriedFiles:
    """Write the zones and dose onto the follow-up CT and the follow-up contours onto the
    planning CT into ``out_dir`` (file names from ``names``: keys ``zones_on_followup``,
    ``dose_on_followup``, ``followup_on_plan``)."""
    tx = carrier.transform
    to_fu, out1 = carried_roi_specs(plan_rois, fu_ct.grid, carrier.inverse_sitk, tx.apply,
                                    spacing_mm=spacing_mm, suffix="")  # fmt: skip
    to_plan, out2 = carried_roi_specs(list(fu_structures.rois), plan_ct.grid,
                                      tx.sitk_transform(), carrier.inverse_points,
                                      spacing_mm=spacing_mm, suffix="_FU")  # fmt: skip
    written: dict[str, str | None] = dict.fromkeys(names)
    if to_fu:
        write_rtstruct(
            os.path.join(out_dir, names["zones_on_followup"]), to_fu, fu_ct,
            label="zones on FU", series_description="brachycryo zones on follow-up",
        )  # fmt: skip
        written["zones_on_followup"] = names["zones_on_followup"]
    if to_plan:
        write_rtstruct(
            os.path.join(out_dir, names["followup_on_plan"]), to_plan, plan_ct,
            label="FU on plan", series_description="brachycryo follow-up on plan",
        )  # fmt: skip
        written["followup_on_plan"] = names["followup_on_plan"]
    carried = None if plan_dose is None else carry_dose(plan_dose, fu_ct.grid, carrier)
    if carried is not None and plan_dose is not None:
        values, grid = carried
        write_rtdose(
            os.path.join(out_dir, names["dose_on_followup"]), values, grid,
            context=fu_ct.context, referenced_plan_uid=plan_dose.referenced_plan_uid,
            dose_comment="planned dose carried onto the follow-up CT",
            series_description="brachycryo plan dose on follow-up",
        )  # fmt: skip
        written["dose_on_followup"] = names["dose_on_followup"]
    return CarriedFiles(written["zones_on_followup"], written["dose_on_followup"],
                        written["followup_on_plan"], tuple(out1 + out2))  # fmt: skip


def is_deformable(transform: Transform) -> bool:
    return isinstance(transform, BSplineTransform)
