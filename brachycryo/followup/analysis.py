"""Per-lesion follow-up analysis on a fine analysis grid in the planning frame.

For each planned lesion (a GTV of the planning structure set with zones ``<lesion>_Core`` /
``<lesion>_SeedTarget`` in ``RS.zones.dcm``) the follow-up ROIs the user names (tumour,
ablation zone, recurrence) are rasterised on a fine grid in the follow-up frame and carried
through the registration onto an analysis grid around the lesion in the planning frame
(linear interpolation of the mask, threshold 0.5).  The planning GTV and zones are
rasterised from their contours directly on that grid.  Measured there:

* the minimal ablative margin of the planning GTV in the ablation zone and the technical
  success verdict (MAM >= threshold; :mod:`brachycryo.followup.margins`), the coverage of
  the 3 / 5 / 10 mm shells around the GTV and of the planned core and margin;
* the follow-up tumour inside the core, the margin and outside both (residual tumour);
* tumour volume, RECIST 1.1 longest axial diameter and its perpendicular at plan and
  follow-up, each measured on its own CT's contours (no registration involved), their change
  and, with an ablation zone, the enhancing-only (mRECIST-like) follow-up tumour volume
  (:mod:`brachycryo.followup.recist`); across lesions the sums of longest diameters and the
  RECIST 1.1 class of the target lesions.  A follow-up tumour ROI present without contours
  means the lesion has disappeared (volume and diameters 0);
* for a recurrence: its volume by zone, the zone of its centroid (= its origin) and of its
  voxel closest to the original GTV, the planned dose there (D90 of the recurrence volume,
  dose at the centroid) and whether the centroid lay inside the planned lethal isotherm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from brachycryo.core.errors import FrameOfReferenceError, StructureError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.ct_series import CTImage
from brachycryo.dicom_io.rasterize import roi_mask, roi_volume_cc
from brachycryo.dicom_io.rtdose import DoseVolume
from brachycryo.dicom_io.rtstruct import ROI, StructureSet
from brachycryo.followup import margins as mg
from brachycryo.followup import recist
from brachycryo.followup.registration import Registration, Transform, resample_onto
from brachycryo.qa.dvh import sample_dose_at_points

ZONES = ("core", "margin", "outside")


@dataclass(frozen=True)
class PlanData:
    """What the analysis reads from a plan folder."""

    ct: CTImage
    structures: StructureSet  # the planning structure set (GTVs)
    zones: StructureSet  # RS.zones.dcm: <lesion>_Core, <lesion>_SeedTarget, isotherms
    dose: DoseVolume | None
    prescription_gy: float | None = None


@dataclass(frozen=True)
class FollowupData:
    ct: CTImage
    structures: StructureSet


@dataclass(frozen=True)
class LesionRois:
    """The follow-up ROI names of one planned lesion (None: not contoured)."""

    lesion: str
    tumour: str | None = None
    ablation: str | None = None
    recurrence: str | None = None


@dataclass(frozen=True)
class FollowupOptions:
    analysis_spacing_mm: float = 1.0
    box_margin_mm: float = 20.0
    mam_threshold_mm: float = mg.DEFAULT_MAM_THRESHOLD_MM


@dataclass(frozen=True)
class TumourResponse:
    plan_volume_cc: float
    followup_volume_cc: float | None
    plan_diameters: recist.AxialDiameters
    followup_diameters: recist.AxialDiameters | None
    residual: mg.ZoneSplit | None  # the follow-up tumour by planned zone
    #: the follow-up tumour outside the ablation zone (mRECIST-like; None: no ablation ROI)
    enhancing_volume_cc: float | None = None

    @property
    def plan_diameter_mm(self) -> float:
        return self.plan_diameters.longest_mm

    @property
    def followup_diameter_mm(self) -> float | None:
        return None if self.followup_diameters is None else self.followup_diameters.longest_mm

    @property
    def lesion_recist_class(self) -> str | None:
        """The RECIST 1.1 thresholds applied to this lesion's longest diameter alone."""
        if self.followup_diameters is None or self.plan_diameters.longest_mm <= 0:
            return None
        return recist.response_class(self.plan_diameter_mm, self.followup_diameters.longest_mm)

    @property
    def volume_change_pct(self) -> float | None:
        if self.followup_volume_cc is None or self.plan_volume_cc == 0:
            return None
        return 100.0 * (self.followup_volume_cc / self.plan_volume_cc - 1.0)

    @property
    def diameter_change_pct(self) -> float | None:
        if self.followup_diameter_mm is None or self.plan_diameter_mm == 0:
            return None
        return 100.0 * (self.followup_diameter_mm / self.plan_diameter_mm - 1.0)


@dataclass(frozen=True)
class AblationResult:
    ablation_volume_cc: float
    mam_mm: float
    mam_threshold_mm: float
    shell_coverage: Mapping[float, float]  # width mm -> fraction of the shell ablated
    core_covered: float | None  # fraction of the planned core inside the ablation zone
    margin_covered: float | None  # fraction of the planned margin inside the ablation zone
    #: the signed margin at each GTV surface voxel (mm; the histogram's data)
    surface_margins_mm: np.ndarray = field(default_factory=lambda: np.zeros(0), compare=False)
    #: width mm -> fraction of the shell where the planned seed dose >= prescription (None:
    #: no dose or no prescription in the plan) / ablated or at that dose
    shell_dose_coverage: Mapping[float, float] | None = None
    shell_either_coverage: Mapping[float, float] | None = None

    @property
    def technical_success(self) -> bool:
        return bool(math.isfinite(self.mam_mm) and self.mam_mm >= self.mam_threshold_mm)


@dataclass(frozen=True)
class RecurrenceResult:
    volume_cc: float
    split: mg.ZoneSplit
    origin_zone: str  # zone of the centroid
    closest_zone: str  # zone of the recurrence voxel closest to the original GTV
    centroid_mm: tuple[float, float, float]
    centroid_dose_gy: float | None
    d90_gy: float | None
    centroid_in_lethal_isotherm: bool | None


@dataclass(frozen=True)
class LesionMasks:
    """The masks on the analysis grid (for figures; not written)."""

    grid: Grid
    gtv: np.ndarray
    core: np.ndarray
    margin: np.ndarray
    followup: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class LesionFollowup:
    rois: LesionRois
    tumour: TumourResponse
    ablation: AblationResult | None
    recurrence: RecurrenceResult | None
    masks: LesionMasks = field(repr=False, compare=False)


# ---------------------------------------------------------------------------- inputs
def check_frames(plan: PlanData, fu: FollowupData) -> list[str]:
    """Frame of reference checks; the notes returned are informational."""
    if plan.zones.frame_of_reference_uid != plan.ct.frame_of_reference_uid:
        raise FrameOfReferenceError(
            f"{plan.zones.path}: the zones are in frame {plan.zones.frame_of_reference_uid}, "
            f"the planning CT in {plan.ct.frame_of_reference_uid}"
        )
    if fu.structures.frame_of_reference_uid != fu.ct.frame_of_reference_uid:
        raise FrameOfReferenceError(
            f"{fu.structures.path}: the follow-up contours are in frame "
            f"{fu.structures.frame_of_reference_uid}, the follow-up CT in "
            f"{fu.ct.frame_of_reference_uid}"
        )
    notes = []
    if fu.ct.frame_of_reference_uid == plan.ct.frame_of_reference_uid:
        notes.append("the follow-up CT shares the planning CT's frame of reference")
    if plan.ct.context.patient_id != fu.ct.context.patient_id:
        notes.append(
            f"patient IDs differ: plan {plan.ct.context.patient_id!r}, "
            f"follow-up {fu.ct.context.patient_id!r}"
        )
    return notes


def planned_lesions(zones: StructureSet) -> list[str]:
    """Lesions with a ``<lesion>_Core`` or ``<lesion>_SeedTarget`` zone, in file order."""
    out: list[str] = []
    for name in zones.roi_names:
        for suffix in ("_Core", "_SeedTarget"):
            if name.endswith(suffix) and name[: -len(suffix)] not in out:
                out.append(name[: -len(suffix)])
    return out


def _optional_roi(ss: StructureSet, name: str) -> ROI | None:
    return next((r for r in ss.rois if r.name == name), None)


def _contour_points(roi: ROI) -> np.ndarray:
    pts = [c.points_mm for c in roi.closed_contours]
    if not pts:
        raise StructureError("has no closed contours", roi=roi.name)
    return np.concatenate(pts, axis=0)


def _planes_xy(roi: ROI) -> list[tuple[float, list[np.ndarray]]]:
    """(z, outline polygons (N, 2)) per axial plane (contours sharing a z to 0.01 mm)."""
    by_z: dict[float, list[np.ndarray]] = {}
    for c in roi.closed_contours:
        by_z.setdefault(round(float(c.points_mm[0, 2]), 2), []).append(c.points_mm[:, :2])
    return sorted(by_z.items())


def _diameters(roi: ROI) -> recist.AxialDiameters:
    return recist.axial_diameters(_planes_xy(roi))


#: At most this many contour points are mapped back to size an analysis grid.
MAX_BOX_POINTS = 2000


def inverse_points(transform: Transform, points_fu_mm: np.ndarray) -> np.ndarray:
    """Follow-up-frame points -> planning frame (the inverse of ``transform``); for sizing
    a box, so at most :data:`MAX_BOX_POINTS` evenly picked points are mapped."""
    p = np.asarray(points_fu_mm, dtype=float).reshape(-1, 3)
    return transform.inverse_apply(p[:: max(1, len(p) // MAX_BOX_POINTS)])


# ---------------------------------------------------------------------------- masks
def analysis_grid(points_mm: np.ndarray, options: FollowupOptions) -> Grid:
    lo = points_mm.min(axis=0) - options.box_margin_mm
    hi = points_mm.max(axis=0) + options.box_margin_mm
    return Grid.from_bounds(lo, hi, options.analysis_spacing_mm)


def followup_mask(
    roi: ROI, transform: Transform, target: Grid, options: FollowupOptions
) -> np.ndarray:
    """A follow-up ROI rasterised on a fine grid of its own frame and carried onto ``target``
    (planning frame) through ``transform`` (linear interpolation, threshold 0.5)."""
    pts = _contour_points(roi)
    pad = 2.0 * options.analysis_spacing_mm
    fine = Grid.from_bounds(
        pts.min(axis=0) - pad, pts.max(axis=0) + pad, options.analysis_spacing_mm
    )
    frac = roi_mask(roi, fine).astype(np.float32)
    carried, _ = resample_onto(frac, fine, target, transform, linear=True)
    return carried >= 0.5


def _zone_mask(zones: StructureSet, name: str, grid: Grid) -> np.ndarray:
    roi = _optional_roi(zones, name)
    return np.zeros(grid.shape, bool) if roi is None else roi_mask(roi, grid)


# ---------------------------------------------------------------------------- measures
def _dose_at(plan: PlanData, points_mm: np.ndarray) -> np.ndarray | None:
    if plan.dose is None:
        return None
    values, _ = sample_dose_at_points(plan.dose.dose_gy, plan.dose.grid, points_mm)
    return np.asarray(values, dtype=float)


def _prescription_dose_mask(plan: PlanData, grid: Grid) -> np.ndarray | None:
    """Voxels of ``grid`` where the planned dose reaches the prescription (trilinear)."""
    if plan.dose is None or not plan.prescription_gy:
        return None
    dose = _dose_at(plan, grid.voxel_centres_mm().reshape(-1, 3))
    assert dose is not None
    return dose.reshape(grid.shape) >= plan.prescription_gy


def _ablation_result(plan, gtv, core, margin, ablation, grid, options) -> AblationResult:
    shells = {w: mg.shell_mask(gtv, grid, w) for w in mg.SHELL_WIDTHS_MM}
    rx = _prescription_dose_mask(plan, grid)
    return AblationResult(
        ablation_volume_cc=mg.volume_cc(ablation, grid),
        mam_mm=mg.minimal_ablative_margin_mm(gtv, ablation, grid),
        mam_threshold_mm=options.mam_threshold_mm,
        shell_coverage={w: mg.covered_fraction(sh, ablation) for w, sh in shells.items()},
        core_covered=mg.covered_fraction(core, ablation) if core.any() else None,
        margin_covered=mg.covered_fraction(margin, ablation) if margin.any() else None,
        surface_margins_mm=mg.surface_margins_mm(gtv, ablation, grid),
        shell_dose_coverage=None
        if rx is None
        else {w: mg.covered_fraction(sh, rx) for w, sh in shells.items()},
        shell_either_coverage=None
        if rx is None
        else {w: mg.covered_fraction(sh, rx | ablation) for w, sh in shells.items()},
    )


def _recurrence_result(plan: PlanData, lesion: str, masks: LesionMasks, rec: np.ndarray):
    grid = masks.grid
    centre = mg.centroid_voxel(rec)
    closest = mg.closest_voxel_to(rec, masks.gtv, grid)
    k, j, i = centre
    centroid_mm = grid.ijk_to_mm(np.array([[i, j, k]], dtype=float))[0]
    idx = np.argwhere(rec)[:, ::-1].astype(float)  # (i, j, k)
    doses = _dose_at(plan, grid.ijk_to_mm(idx))
    centre_dose = _dose_at(plan, centroid_mm.reshape(1, 3))
    lethal = next((r for r in plan.zones.rois if r.name.startswith(f"{lesion}_Lethal")), None)
    in_lethal = None if lethal is None else bool(roi_mask(lethal, grid)[centre])
    return RecurrenceResult(
        volume_cc=mg.volume_cc(rec, grid),
        split=mg.zone_split(rec, masks.core, masks.margin, grid),
        origin_zone=mg.zone_at(centre, masks.core, masks.margin),
        closest_zone=mg.zone_at(closest, masks.core, masks.margin),
        centroid_mm=(float(centroid_mm[0]), float(centroid_mm[1]), float(centroid_mm[2])),
        centroid_dose_gy=None if centre_dose is None else float(centre_dose[0]),
        # D90: the dose that 90 % of the recurrence volume receives at least
        d90_gy=None if doses is None else float(np.percentile(doses, 10.0)),
        centroid_in_lethal_isotherm=in_lethal,
    )


def analyse_lesion(
    plan: PlanData,
    fu: FollowupData,
    rois: LesionRois,
    transform: Transform,
    options: FollowupOptions,
) -> LesionFollowup:
    """The follow-up measures of one lesion (see the module docstring)."""
    gtv_roi = plan.structures.roi(rois.lesion)
    fu_rois = {
        kind: fu.structures.roi(name)
        for kind, name in (
            ("tumour", rois.tumour),
            ("ablation", rois.ablation),
            ("recurrence", rois.recurrence),
        )
        if name is not None
    }
    # a tumour ROI without contours: the lesion has disappeared (RECIST CR)
    gone = "tumour" in fu_rois and not fu_rois["tumour"].closed_contours
    tumour_roi = fu_rois.pop("tumour") if gone else fu_rois.get("tumour")
    zone_rois = [
        r for r in plan.zones.rois if r.name in (f"{rois.lesion}_Core", f"{rois.lesion}_SeedTarget")
    ]
    pts = [_contour_points(gtv_roi)] + [_contour_points(r) for r in zone_rois]
    pts += [inverse_points(transform, _contour_points(r)) for r in fu_rois.values()]
    grid = analysis_grid(np.concatenate(pts, axis=0), options)
    gtv = roi_mask(gtv_roi, grid)
    core = _zone_mask(plan.zones, f"{rois.lesion}_Core", grid)
    margin = _zone_mask(plan.zones, f"{rois.lesion}_SeedTarget", grid) & ~core
    carried = {k: followup_mask(r, transform, grid, options) for k, r in fu_rois.items()}
    for kind, mask in carried.items():
        if not mask.any():
            raise StructureError(
                f"(the follow-up {kind}) covers no voxel of the analysis grid around "
                f"{rois.lesion} once carried onto the planning CT: too small for "
                f"{options.analysis_spacing_mm:g} mm voxels, or the registration is wrong",
                roi=fu_rois[kind].name,
            )
    if gone:
        carried["tumour"] = np.zeros(grid.shape, dtype=bool)
    masks = LesionMasks(grid, gtv, core, margin, carried)
    enhancing = None
    if tumour_roi is not None and "ablation" in carried:
        enhancing = mg.volume_cc(carried["tumour"] & ~carried["ablation"], grid)
    tumour = TumourResponse(
        plan_volume_cc=roi_volume_cc(gtv_roi),
        followup_volume_cc=None
        if tumour_roi is None
        else (0.0 if gone else roi_volume_cc(tumour_roi)),
        plan_diameters=_diameters(gtv_roi),
        followup_diameters=None
        if tumour_roi is None
        else (recist.NO_LESION if gone else _diameters(tumour_roi)),
        residual=None
        if tumour_roi is None
        else mg.zone_split(carried["tumour"], core, margin, grid),
        enhancing_volume_cc=enhancing,
    )
    ablation = None
    if "ablation" in carried:
        ablation = _ablation_result(plan, gtv, core, margin, carried["ablation"], grid, options)
    recurrence = None
    if "recurrence" in carried:
        recurrence = _recurrence_result(plan, rois.lesion, masks, carried["recurrence"])
    return LesionFollowup(rois, tumour, ablation, recurrence, masks)


@dataclass(frozen=True)
class FollowupResult:
    registration: Registration
    lesions: tuple[LesionFollowup, ...]
    notes: tuple[str, ...] = ()

    @property
    def recist_response(self) -> recist.RecistResponse:
        """RECIST 1.1 sums and class with the analysed lesions as the target lesions."""
        return recist.target_response(
            [les.rois.lesion for les in self.lesions],
            [les.tumour.plan_diameter_mm for les in self.lesions],
            [les.tumour.followup_diameter_mm for les in self.lesions],
        )


def analyse_followup(
    plan: PlanData,
    fu: FollowupData,
    lesion_rois: list[LesionRois],
    registration: Registration,
    options: FollowupOptions = FollowupOptions(),
) -> FollowupResult:
    notes = check_frames(plan, fu)
    lesions = tuple(
        analyse_lesion(plan, fu, r, registration.transform, options) for r in lesion_rois
    )
    return FollowupResult(registration, lesions, tuple(notes))
