"""The quality block of a registration: Jacobian determinant range, inverse consistency and
landmark target registration error (TRE) against AAPM TG-132.

* **Jacobian determinant** of the planning -> follow-up map, sampled on the registered region
  at a fifth of the B-spline mesh spacing (SimpleITK ``DisplacementFieldJacobianDeterminant``
  of the B-spline's displacement field; the rigid part has determinant 1).  It must stay
  > 0: a value <= 0 means the map folds tissue onto itself (Brock et al., Use of image
  registration and fusion algorithms and techniques in radiotherapy: Report of the AAPM
  Radiation Therapy Committee Task Group No. 132, Med Phys 44(7):e43-e76, 2017, lists the
  Jacobian among the quantitative checks of a deformable registration), and the follow-up
  measures made through it are refused (:data:`FOLDING_MESSAGE`).
* **Inverse consistency**: the follow-up CT is also registered onto the planning CT the other
  way round (same method); ``|B(F(x)) - x|`` over a lattice of the region, with ``F`` the
  forward and ``B`` the backward map (Christensen & Johnson, IEEE TMI 20(7):568-582, 2001).
* **TRE** of user landmark pairs (``--landmarks CSV``): ``|F(p_plan) - p_fu|``, its mean and
  maximum against the TG-132 tolerances this project uses (2 mm mean, 5 mm max; TG-132
  asks for a landmark TRE within about the largest voxel dimension, 2-3 mm) - a result
  outside is flagged, not refused.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from brachycryo.core.errors import ConfigError
from brachycryo.core.grid import Grid
from brachycryo.followup.deformable import BSplineTransform
from brachycryo.followup.reg_quality import (
    FOLDING_MESSAGE,
    IC_LATTICE_MM,
    LANDMARK_COLUMNS,
    TG132_TRE_MAX_MM,
    TG132_TRE_MEAN_MM,
    Landmarks,
    LandmarkTRE,
    RegistrationChecks,
)
from brachycryo.followup.registration import LinearTransform, RegistrationError, Transform

__all__ = [
    "FOLDING_MESSAGE", "TG132_TRE_MAX_MM", "TG132_TRE_MEAN_MM", "LandmarkTRE", "Landmarks",
    "RegistrationChecks",
]  # fmt: skip


def read_landmarks(path: str | os.PathLike) -> Landmarks:
    """A CSV with a header holding :data:`LANDMARK_COLUMNS` (and optionally ``name``)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"landmark file {p} does not exist", key="--landmarks")
    with p.open(newline="") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in LANDMARK_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError(f"{p}: missing columns {missing}", key="--landmarks")
        rows, names = [], []
        for n, row in enumerate(reader, start=2):
            try:
                vals = [float(row[c]) for c in LANDMARK_COLUMNS]
            except (TypeError, ValueError):
                raise ConfigError(f"{p} line {n}: not 6 numbers", key="--landmarks") from None
            if not np.all(np.isfinite(vals)):
                raise ConfigError(f"{p} line {n}: not finite", key="--landmarks")
            rows.append(vals)
            names.append(row.get("name") or f"L{len(rows)}")
    if not rows:
        raise ConfigError(f"{p} holds no landmark pair", key="--landmarks")
    a = np.asarray(rows, dtype=float)
    return Landmarks(a[:, :3], a[:, 3:], tuple(names))


def landmark_tre(transform: Transform, landmarks: Landmarks) -> LandmarkTRE:
    """TRE of every landmark pair, and of the rigid part alone for a deformable map."""
    err = np.linalg.norm(transform.apply(landmarks.plan_mm) - landmarks.followup_mm, axis=1)
    rigid = None
    if isinstance(transform, BSplineTransform):
        moved = transform.linear.apply(landmarks.plan_mm)
        r = np.linalg.norm(moved - landmarks.followup_mm, axis=1)
        rigid = tuple(float(v) for v in r)
    return LandmarkTRE(tuple(float(v) for v in err), rigid)


def jacobian_range(transform: Transform, region: Grid) -> tuple[float, float, float | None]:
    """(min, max, sampling mm) of the Jacobian determinant over ``region`` (planning frame)."""
    if isinstance(transform, LinearTransform):
        det = float(np.linalg.det(transform.matrix_3x3))
        return det, det, None
    if not isinstance(transform, BSplineTransform):
        raise TypeError(f"no Jacobian for a {type(transform).__name__}")
    import SimpleITK as sitk

    field = transform.displacement_field(region)
    jac = sitk.GetArrayFromImage(sitk.DisplacementFieldJacobianDeterminant(field))
    det_linear = float(np.linalg.det(transform.linear.matrix_3x3))
    step_mm = float(field.GetSpacing()[0])  # isotropic: Grid.resampled(step)
    return float(jac.min()) * det_linear, float(jac.max()) * det_linear, step_mm


def lattice_points(region: Grid, step_mm: float = IC_LATTICE_MM) -> np.ndarray:
    """Points on a ``step_mm`` lattice inside ``region`` (at least its centre)."""
    return region.resampled(step_mm).voxel_centres_mm().reshape(-1, 3)


def inverse_consistency_mm(
    forward: Transform, backward: Transform, points_mm: np.ndarray
) -> tuple[float, float]:
    """(mean, max) of ``|backward(forward(x)) - x|`` over ``points_mm`` (planning frame);
    ``backward`` maps follow-up points to planning points."""
    err = np.linalg.norm(backward.apply(forward.apply(points_mm)) - points_mm, axis=1)
    if err.size == 0:
        raise RegistrationError("no point to measure inverse consistency at")
    return float(err.mean()), float(err.max())


def registration_checks(
    transform: Transform,
    region: Grid,
    *,
    backward: Transform | None = None,
    ic_points_mm: np.ndarray | None = None,
    landmarks: Landmarks | None = None,
) -> RegistrationChecks:
    """The quality block of ``transform`` over ``region`` (see the module docstring)."""
    jmin, jmax, step = jacobian_range(transform, region)
    ic: tuple[float | None, float | None] = (None, None)
    if backward is not None and ic_points_mm is not None:
        ic = inverse_consistency_mm(transform, backward, ic_points_mm)
    tre = None if landmarks is None else landmark_tre(transform, landmarks)
    return RegistrationChecks(jmin, jmax, step, ic[0], ic[1], tre)


def refuse_folding(checks: RegistrationChecks) -> None:
    """:class:`RegistrationError` when the transform folds (nothing measured through it)."""
    if checks.folding:
        raise RegistrationError(
            f"{FOLDING_MESSAGE}: minimum {checks.jacobian_min:.3g} over the registered "
            "region; no follow-up measure is made through a folding map (register again "
            "with a coarser B-spline mesh, or rigid only)"
        )
