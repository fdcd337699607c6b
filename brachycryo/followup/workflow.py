"""The follow-up run as one call: choose the transform, name the ROIs of each lesion."""

from __future__ import annotations

import os
from collections.abc import Sequence

from brachycryo.core.errors import ConfigError
from brachycryo.followup.analysis import (
    FollowupData,
    LesionRois,
    PlanData,
    planned_lesions,
)
from brachycryo.followup.registration import (
    IDENTITY,
    Registration,
    read_transform,
    register_rigid,
    registration_quality,
)


def registration_for(
    plan: PlanData,
    fu: FollowupData,
    *,
    transform_path: str | os.PathLike | None = None,
    same_frame: bool = False,
) -> Registration:
    """The given transform file, the identity (``same_frame``: the follow-up CT is already
    in the planning frame) or a rigid mutual-information registration."""
    if transform_path is not None and same_frame:
        raise ConfigError("give either a transform file or same-frame, not both", key="--transform")
    args = (plan.ct.hu, plan.ct.grid, fu.ct.hu, fu.ct.grid)
    if transform_path is not None:
        tx = read_transform(transform_path)
        return Registration(tx, f"file {transform_path}", registration_quality(*args, tx))
    if same_frame:
        return Registration(
            IDENTITY, "identity (same frame)", registration_quality(*args, IDENTITY)
        )
    return register_rigid(*args)


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
