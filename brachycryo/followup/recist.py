"""RECIST 1.1 diameters and response class, and the mRECIST-like enhancing-only volume.

* **Diameters** (Eisenhauer et al., New response evaluation criteria in solid tumours: revised
  RECIST guideline (version 1.1), Eur J Cancer 45(2):228-247, 2009): the *longest diameter*
  of a lesion is the largest distance between two points of its outline within one axial
  plane, over all its axial planes; the *perpendicular* is the longest extent of the outline
  in the same plane along the direction perpendicular to it.  Both are measured on the
  contours themselves (polygons, no grid): the longest diameter is the largest distance
  between two vertices of a plane (exact for polygons), the perpendicular the largest
  ``max t - min t`` of the outline's crossings with a line perpendicular to the long axis,
  which as a piecewise-linear function of the line's position peaks where the line passes
  through a vertex (so every vertex is tried: exact for polygons).
* **Response of the target lesions** from the sum of their longest diameters: CR when every
  target lesion has disappeared; PR for a decrease of the sum by >= 30 %; PD for an
  increase by >= 20 % that is also >= 5 mm; SD otherwise.  RECIST compares PD with the
  smallest sum on study (the nadir); with one follow-up the nadir is the baseline.  Not
  assessed here: non-target and new lesions, lymph nodes (short axis < 10 mm for CR).
* **Enhancing-only volume** (mRECIST-like: Lencioni & Llovet, Modified RECIST (mRECIST)
  assessment for hepatocellular carcinoma, Semin Liver Dis 30(1):52-60, 2010, count only the
  viable, arterially enhancing tumour): the follow-up tumour minus the ablation zone (the
  non-enhancing necrosis), on the analysis grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

#: RECIST 1.1 thresholds (Eisenhauer et al. 2009, section 4.3.1).
PR_DECREASE_FRACTION = 0.30
PD_INCREASE_FRACTION = 0.20
PD_INCREASE_MM = 5.0
CLASSES = {
    "CR": "complete response",
    "PR": "partial response",
    "SD": "stable disease",
    "PD": "progressive disease",
}


@dataclass(frozen=True)
class AxialDiameters:
    """Longest axial diameter and its perpendicular (mm), and the plane's z (mm)."""

    longest_mm: float
    perpendicular_mm: float
    z_mm: float | None


NO_LESION = AxialDiameters(0.0, 0.0, None)


def _longest_pair(points: np.ndarray) -> tuple[float, np.ndarray]:
    """The largest distance between two of ``points`` (N, 2) and the unit direction."""
    d2 = ((points[:, None, :] - points[None, :, :]) ** 2).sum(axis=-1)
    a, b = np.unravel_index(int(d2.argmax()), d2.shape)
    length = float(np.sqrt(d2[a, b]))
    if length == 0.0:
        return 0.0, np.array([1.0, 0.0])
    return length, (points[b] - points[a]) / length


def perpendicular_extent_mm(polygons: Sequence[np.ndarray], direction: np.ndarray) -> float:
    """The longest extent of the outline ``polygons`` ((N, 2) closed polygons of one plane)
    along lines perpendicular to the unit vector ``direction`` (see the module docstring)."""
    v = np.asarray(direction, dtype=float)
    u = np.array([-v[1], v[0]])
    ends = [np.asarray(poly, dtype=float).reshape(-1, 2) for poly in polygons]
    p = np.concatenate(ends, axis=0)
    q = np.concatenate([np.roll(e, -1, axis=0) for e in ends], axis=0)  # each edge's end
    sa, sb, ta, tb = p @ v, q @ v, p @ u, q @ u
    lines = np.unique(sa)[:, None]  # one line through each vertex (M, 1) x edges (E,)
    lo, hi = np.minimum(sa, sb), np.maximum(sa, sb)
    crosses = (lines >= lo) & (lines <= hi)
    ds = np.where(sb != sa, sb - sa, 1.0)
    frac = np.clip((lines - sa) / ds, 0.0, 1.0)
    t = ta + frac * (tb - ta)
    # an edge along the line (sa == sb == s) contributes both of its ends
    flat = crosses & (sa == sb)
    t_hi = np.where(crosses, np.where(flat, np.maximum(ta, tb), t), -np.inf).max(axis=1)
    t_lo = np.where(crosses, np.where(flat, np.minimum(ta, tb), t), np.inf).min(axis=1)
    width = np.where(np.isfinite(t_hi) & np.isfinite(t_lo), t_hi - t_lo, 0.0)
    return float(width.max()) if width.size else 0.0


def axial_diameters(planes: Sequence[tuple[float, Sequence[np.ndarray]]]) -> AxialDiameters:
    """RECIST diameters of a lesion given as ``(z_mm, [polygon (N, 2), ...])`` per axial plane;
    of planes tied for the longest diameter, the one with the longest perpendicular."""
    best = NO_LESION
    for z, polygons in planes:
        polys = [np.asarray(p, dtype=float).reshape(-1, 2) for p in polygons]
        pts = np.concatenate(polys, axis=0) if polys else np.zeros((0, 2))
        if len(pts) < 2:
            continue
        longest, direction = _longest_pair(pts)
        if longest < best.longest_mm - 1e-9:
            continue
        perp = perpendicular_extent_mm(polys, direction)
        if longest > best.longest_mm + 1e-9 or perp > best.perpendicular_mm:
            best = AxialDiameters(longest, perp, float(z))
    return best


def response_class(baseline_sum_mm: float, followup_sum_mm: float) -> str:
    """RECIST 1.1 class of the target lesions from the sums of longest diameters (mm); a
    follow-up sum of 0 is CR (every target lesion gone)."""
    if followup_sum_mm <= 0.0:
        return "CR"
    change = followup_sum_mm - baseline_sum_mm
    if change <= -PR_DECREASE_FRACTION * baseline_sum_mm + 1e-9:
        return "PR"
    if change >= PD_INCREASE_FRACTION * baseline_sum_mm - 1e-9 and change >= PD_INCREASE_MM - 1e-9:
        return "PD"
    return "SD"


@dataclass(frozen=True)
class RecistResponse:
    """The target lesions' sums of longest diameters and their RECIST 1.1 class; ``missing``
    names lesions without a follow-up tumour ROI (then no follow-up sum and no class)."""

    lesions: tuple[str, ...]
    baseline_sum_mm: float
    followup_sum_mm: float | None
    missing: tuple[str, ...] = ()

    @property
    def change_pct(self) -> float | None:
        if self.followup_sum_mm is None or self.baseline_sum_mm == 0:
            return None
        return 100.0 * (self.followup_sum_mm / self.baseline_sum_mm - 1.0)

    @property
    def response(self) -> str | None:
        if self.followup_sum_mm is None or self.baseline_sum_mm <= 0:
            return None
        return response_class(self.baseline_sum_mm, self.followup_sum_mm)

    def to_json(self) -> dict:
        r = self.response
        return {
            "criteria": "RECIST 1.1 (Eisenhauer et al., Eur J Cancer 2009;45:228), target "
            "lesions = the analysed lesions; PD against the baseline sum (no nadir on study); "
            "non-target and new lesions not assessed",
            "target_lesions": list(self.lesions),
            "sum_longest_diameters_plan_mm": self.baseline_sum_mm,
            "sum_longest_diameters_followup_mm": self.followup_sum_mm,
            "sum_change_pct": self.change_pct,
            "response": r,
            "response_name": None if r is None else CLASSES[r],
            "lesions_without_followup_tumour_roi": list(self.missing),
        }


def target_response(
    names: Sequence[str], baseline_mm: Sequence[float], followup_mm: Sequence[float | None]
) -> RecistResponse:
    """The sums over the target lesions (longest diameters at plan and at follow-up)."""
    missing = tuple(n for n, f in zip(names, followup_mm) if f is None)
    fu_sum = None if missing else float(sum(f for f in followup_mm if f is not None))
    return RecistResponse(tuple(names), float(sum(baseline_mm)), fu_sum, missing)
