"""The typed results of a registration's quality block (computed in
:mod:`brachycryo.followup.checks`): landmark pairs, their TRE against AAPM TG-132, the
Jacobian range and inverse consistency."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: TG-132 tolerances on landmark TRE used here (mm).
TG132_TRE_MEAN_MM = 2.0
TG132_TRE_MAX_MM = 5.0
#: Lattice step (mm) of the points where inverse consistency is measured.
IC_LATTICE_MM = 8.0
FOLDING_MESSAGE = "the transform folds (Jacobian determinant <= 0)"

LANDMARK_COLUMNS = (
    "plan_x_mm", "plan_y_mm", "plan_z_mm", "followup_x_mm", "followup_y_mm", "followup_z_mm",
)  # fmt: skip


@dataclass(frozen=True)
class Landmarks:
    """Corresponding points (N, 3) mm: ``plan_mm[i]`` in the planning frame is the same
    tissue as ``followup_mm[i]`` in the follow-up frame."""

    plan_mm: np.ndarray
    followup_mm: np.ndarray
    names: tuple[str, ...]


@dataclass(frozen=True)
class LandmarkTRE:
    per_point_mm: tuple[float, ...]
    rigid_per_point_mm: tuple[float, ...] | None  # the rigid step alone (deformable runs)

    @property
    def mean_mm(self) -> float:
        return float(np.mean(self.per_point_mm))

    @property
    def max_mm(self) -> float:
        return float(np.max(self.per_point_mm))

    @property
    def within_tg132(self) -> bool:
        return self.mean_mm <= TG132_TRE_MEAN_MM and self.max_mm <= TG132_TRE_MAX_MM

    def to_json(self) -> dict:
        rigid = self.rigid_per_point_mm
        return {
            "n": len(self.per_point_mm),
            "mean_mm": self.mean_mm,
            "max_mm": self.max_mm,
            "per_point_mm": list(self.per_point_mm),
            "rigid_only_mean_mm": None if rigid is None else float(np.mean(rigid)),
            "rigid_only_max_mm": None if rigid is None else float(np.max(rigid)),
            "tg132_mean_limit_mm": TG132_TRE_MEAN_MM,
            "tg132_max_limit_mm": TG132_TRE_MAX_MM,
            "within_tg132": self.within_tg132,
        }


@dataclass(frozen=True)
class RegistrationChecks:
    jacobian_min: float
    jacobian_max: float
    jacobian_spacing_mm: float | None  # None: a linear map (one determinant everywhere)
    inverse_consistency_mean_mm: float | None
    inverse_consistency_max_mm: float | None
    tre: LandmarkTRE | None

    @property
    def folding(self) -> bool:
        return not self.jacobian_min > 0.0

    @property
    def flags(self) -> tuple[str, ...]:
        out = []
        if self.folding:
            out.append(f"{FOLDING_MESSAGE}: minimum {self.jacobian_min:.3g}")
        if self.tre is not None and not self.tre.within_tg132:
            out.append(
                f"landmark TRE mean {self.tre.mean_mm:.2f} mm / max {self.tre.max_mm:.2f} mm "
                f"outside TG-132 ({TG132_TRE_MEAN_MM:g} mm mean, {TG132_TRE_MAX_MM:g} mm max)"
            )
        return tuple(out)

    def to_json(self) -> dict:
        return {
            "jacobian_determinant_min": self.jacobian_min,
            "jacobian_determinant_max": self.jacobian_max,
            "jacobian_sampling_mm": self.jacobian_spacing_mm,
            "folding": self.folding,
            "inverse_consistency_mean_mm": self.inverse_consistency_mean_mm,
            "inverse_consistency_max_mm": self.inverse_consistency_max_mm,
            "landmark_tre": None if self.tre is None else self.tre.to_json(),
            "flags": list(self.flags),
        }
