"""The follow-up run as one call: choose the transform, name the ROIs of each lesion."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brachycryo.core.errors import ConfigError
from brachycryo.core.grid import Grid
from brachycryo.dicom_io.rtstruct import ROI
from brachycryo.followup.analysis import (
    FollowupData,
    LesionRois,
    PlanData,
    planned_lesions,
)
from brachycryo.followup.checks import (
    Landmarks,
    lattice_points,
    refuse_folding,
    registration_checks,
)
from brachycryo.followup.deformable import (
    BSplineTransform,
    DeformableOptions,
    read_any_transform,
    region_box,
    register_bspline,
)
from brachycryo.followup.registration import (
    IDENTITY,
    LinearTransform,
    Registration,
    register_rigid,
    registration_quality,
)


@dataclass(frozen=True)
class RegistrationOptions:
    """How to register: ``deformable`` adds a B-spline step after the rigid one;
    ``region_margin_mm`` restricts it to the box of the lesions' GTVs and zones + this margin
    (default 30 mm; None: the whole planning CT, several times slower on a large CT and
    less accurate over the lesion: ``benchmarks/followup_speed.py``);
    ``inverse_consistency`` registers the other way too to measure it (doubles the
    deformable time)."""

    deformable: bool = True
    region_margin_mm: float | None = 30.0
    inverse_consistency: bool = True
    bspline: DeformableOptions = dataclasses.field(default_factory=DeformableOptions)


def _deformable(plan, fu, rigid: Registration, region: Grid | None, opts, landmarks):
    args = (plan.ct.hu, plan.ct.grid, fu.ct.hu, fu.ct.grid)
    if not isinstance(rigid.transform, LinearTransform):
        raise TypeError("the deformable step starts from a rigid transform")
    run = register_bspline(*args, rigid.transform, region=region, options=opts.bspline)
    tx = run.transform
    backward = pts = None
    if opts.inverse_consistency:
        lattice = lattice_points(run.region)
        pts = lattice[fu.ct.grid.contains_mm(tx.linear.apply(lattice), margin_voxels=-2)]
        fu_region = region_box(fu.ct.grid, tx.linear.apply(lattice), 0.0)
        back = register_bspline(
            fu.ct.hu, fu.ct.grid, plan.ct.hu, plan.ct.grid, tx.linear.inverted(),
            region=fu_region, options=opts.bspline,
        )  # fmt: skip
        backward = back.transform
    checks = registration_checks(tx, run.region, backward=backward, ic_points_mm=pts,
                                 landmarks=landmarks)  # fmt: skip
    refuse_folding(checks)
    quality = registration_quality(
        *args, tx, metric_value=run.metric_value, iterations=run.iterations,
        stop_condition=run.stop_condition,
    )  # fmt: skip
    return Registration(tx, "rigid-mi + bspline", quality, checks)


def registration_for(
    plan: PlanData,
    fu: FollowupData,
    *,
    transform_path: str | os.PathLike | None = None,
    same_frame: bool = False,
    options: RegistrationOptions = RegistrationOptions(),
    region_points_mm: np.ndarray | None = None,
    landmarks: Landmarks | None = None,
) -> Registration:
    """The given transform file, the identity (``same_frame``: the follow-up CT is already
    in the planning frame) or a rigid mutual-information registration followed (by default)
    by a B-spline one; with its quality block (:mod:`brachycryo.followup.checks`).  A
    folding transform is refused.  ``region_points_mm`` (planning frame): the points whose
    box + ``options.region_margin_mm`` the deformable step is restricted to."""
    if transform_path is not None and same_frame:
        raise ConfigError("give either a transform file or same-frame, not both", key="--transform")
    args = (plan.ct.hu, plan.ct.grid, fu.ct.hu, fu.ct.grid)
    region = None
    if options.region_margin_mm is not None and region_points_mm is not None:
        region = region_box(plan.ct.grid, region_points_mm, options.region_margin_mm)
    if transform_path is not None or same_frame:
        tx = IDENTITY if transform_path is None else read_any_transform(transform_path)
        source = "identity (same frame)" if transform_path is None else f"file {transform_path}"
        checks = registration_checks(tx, region or plan.ct.grid, landmarks=landmarks)
        refuse_folding(checks)
        return Registration(tx, source, registration_quality(*args, tx), checks)
    rigid = register_rigid(*args)
    if not options.deformable:
        checks = registration_checks(rigid.transform, plan.ct.grid, landmarks=landmarks)
        return dataclasses.replace(rigid, checks=checks)
    return _deformable(plan, fu, rigid, region, options, landmarks)


def is_deformable(reg: Registration) -> bool:
    return isinstance(reg.transform, BSplineTransform)


def _assign(specs: Sequence[str], lesions: list[str], option: str) -> dict[str, str]:
    """``ROI`` (the one lesion) or ``LESION=ROI`` items -> {lesion: ROI}."""
    out: dict[str, str] = {}
    for spec in specs:
        lesion, sep, roi = spec.partition("=")
        if not sep:
            if len(lesions) != 1:
                raise ConfigError(
                    f"{spec!r}: with {len(lesions)} lesions ({', '.join(lesions)}) write "
                    "LESION=ROI",
                    key=option,
                )
            lesion, roi = lesions[0], spec
        if lesion not in lesions:
            raise ConfigError(f"{spec!r}: no planned lesion {lesion!r} in {lesions}", key=option)
        if lesion in out:
            raise ConfigError(f"lesion {lesion!r} is given twice", key=option)
        out[lesion] = roi
    return out


def lesion_rois(
    plan: PlanData,
    *,
    lesions: Sequence[str] = (),
    tumour: Sequence[str] = (),
    ablation: Sequence[str] = (),
    recurrence: Sequence[str] = (),
) -> list[LesionRois]:
    """The lesions to analyse (default: every planned lesion) with their follow-up ROIs."""
    planned = planned_lesions(plan.zones)
    for name in lesions:
        if name not in planned:
            raise ConfigError(f"no planned lesion {name!r}; planned: {planned}", key="--lesion")
    chosen = list(lesions) or planned
    if not chosen:
        raise ConfigError(
            f"{plan.zones.path} has no <lesion>_Core / _SeedTarget zones", key="--plan"
        )
    t = _assign(tumour, chosen, "--tumour")
    a = _assign(ablation, chosen, "--ablation")
    r = _assign(recurrence, chosen, "--recurrence")
    return [LesionRois(n, t.get(n), a.get(n), r.get(n)) for n in chosen]


def lesion_points(plan: PlanData, rois: Sequence[LesionRois]) -> np.ndarray:
    """The contour points (planning frame) of the lesions' GTVs and zones: what the
    deformable step may be restricted to (``RegistrationOptions.region_margin_mm``)."""
    pts = [c.points_mm for r in plan_rois_to_carry(plan, rois) for c in r.closed_contours]
    return np.concatenate(pts, axis=0) if pts else np.zeros((0, 3))


def plan_rois_to_carry(plan: PlanData, rois: Sequence[LesionRois]) -> list[ROI]:
    """The GTV of each lesion and its zones (``<lesion>_*`` in ``RS.zones.dcm``: core, seed
    target, isotherms) with closed contours: what is carried onto the follow-up CT."""
    out: list[ROI] = []
    for r in rois:
        gtv = plan.structures.roi(r.lesion)
        zones = [z for z in plan.zones.rois if z.name.startswith(f"{r.lesion}_")]
        out += [x for x in (gtv, *zones) if x.closed_contours]
    return out
