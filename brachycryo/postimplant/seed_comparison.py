"""Compare detected seeds with a plan's seeds: displacement and migration.

Rule (documented, used by ``brachycryo postimplant``):

* Planned and detected seeds are paired by the Hungarian algorithm (minimum total
  distance, :func:`brachycryo.postimplant.seed_detection.match_seeds`) with pairs farther apart than
  ``gate_mm`` (default 10 mm, about one inter-seed spacing of a template implant)
  forbidden.  The distance of a pair is the seed's **displacement**.
* A planned seed left without a detection within the gate is **missing** (migrated out of
  the region, lost, or not implanted).
* A detection left unpaired is **far** when no planned seed lies within the gate (a seed
  that migrated within the imaged region, e.g. along a vessel or out of the target) and
  **surplus** otherwise (a seed implanted beyond the plan, or a cluster split into more
  seeds than it holds).

The gate is a trade-off: a seed displaced farther than the gate is reported as missing
plus far, and with seeds ~9 mm apart a missing seed's neighbour can be paired with it
when the neighbour's own planned seed is also free.  Displacements close to the gate
deserve a look at the images.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brachycryo.core.errors import ConfigError
from brachycryo.postimplant.seed_detection import match_seeds

#: Default pairing gate (mm) between a planned and a detected seed.
MIGRATION_GATE_MM = 10.0


@dataclass(frozen=True)
class SeedComparison:
    """Planned vs detected seeds (see the module docstring for the rule).

    ``plan_of_detection[m]`` is the index of the planned seed paired with detection ``m``
    (-1: unpaired); ``displacement_mm[m]`` the distance of that pair (NaN: unpaired).
    ``missing`` lists planned seeds without a detection, ``far`` / ``surplus`` the
    unpaired detections without / with a planned seed within the gate.
    """

    gate_mm: float
    planned_mm: np.ndarray
    detected_mm: np.ndarray
    plan_of_detection: np.ndarray
    displacement_mm: np.ndarray
    missing: np.ndarray
    far: np.ndarray
    surplus: np.ndarray

    @property
    def n_planned(self) -> int:
        return int(self.planned_mm.shape[0])

    @property
    def n_detected(self) -> int:
        return int(self.detected_mm.shape[0])

    @property
    def n_matched(self) -> int:
        return int(np.count_nonzero(self.plan_of_detection >= 0))

    @property
    def matched_displacements_mm(self) -> np.ndarray:
        return self.displacement_mm[self.plan_of_detection >= 0]

    def nearest_detection_mm(self, plan_index: int) -> float:
        """Distance from planned seed ``plan_index`` to the nearest detection (inf: none)."""
        if self.n_detected == 0:
            return float("inf")
        d = np.linalg.norm(self.detected_mm - self.planned_mm[plan_index], axis=1)
        return float(d.min())

    def nearest_plan_mm(self, detection_index: int) -> float:
        """Distance from detection ``detection_index`` to the nearest planned seed."""
        if self.n_planned == 0:
            return float("inf")
        d = np.linalg.norm(self.planned_mm - self.detected_mm[detection_index], axis=1)
        return float(d.min())

    def displacement_stats(self) -> dict[str, float | int | None]:
        """Median, 95th percentile, mean and maximum displacement of the paired seeds (mm)."""
        d = self.matched_displacements_mm
        if d.size == 0:
            return {"n": 0, "median_mm": None, "p95_mm": None, "mean_mm": None, "max_mm": None}
        return {
            "n": int(d.size),
            "median_mm": float(np.median(d)),
            "p95_mm": float(np.percentile(d, 95)),
            "mean_mm": float(np.mean(d)),
            "max_mm": float(np.max(d)),
        }


def compare_seeds(
    planned_mm: np.ndarray, detected_mm: np.ndarray, *, gate_mm: float = MIGRATION_GATE_MM
) -> SeedComparison:
    """Pair detections with planned seeds and classify the rest (module docstring)."""
    gate = float(gate_mm)
    if not (np.isfinite(gate) and gate > 0):
        raise ConfigError(f"gate_mm must be a positive distance, got {gate_mm}", key="gate_mm")
    plan = np.asarray(planned_mm, dtype=float).reshape(-1, 3)
    det = np.asarray(detected_mm, dtype=float).reshape(-1, 3)
    m = match_seeds(det, plan, gate_mm=gate)
    plan_of_det = np.full(det.shape[0], -1, dtype=int)
    disp = np.full(det.shape[0], np.nan)
    plan_of_det[m.detected_index] = m.truth_index
    disp[m.detected_index] = m.error_mm
    paired_plan = np.zeros(plan.shape[0], dtype=bool)
    paired_plan[m.truth_index] = True
    missing = np.flatnonzero(~paired_plan)
    unpaired = np.flatnonzero(plan_of_det < 0)
    if plan.shape[0] and unpaired.size:
        nearest = np.linalg.norm(det[unpaired, None, :] - plan[None], axis=-1).min(axis=1)
    else:
        nearest = np.full(unpaired.size, np.inf)
    return SeedComparison(
        gate_mm=gate,
        planned_mm=plan,
        detected_mm=det,
        plan_of_detection=plan_of_det,
        displacement_mm=disp,
        missing=missing,
        far=unpaired[nearest > gate],
        surplus=unpaired[nearest <= gate],
    )


__all__ = ["MIGRATION_GATE_MM", "SeedComparison", "compare_seeds"]
