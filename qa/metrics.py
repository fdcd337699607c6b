"""Plan metrics from DVHs: Dx, Vx, and the seed-implant indices CI, EI, HI.

Definitions (AAPM TG-137: Nath et al., "AAPM recommendations on dose prescription and
reporting methods for permanent interstitial brachytherapy for prostate cancer", Med Phys
36:5310-5322, 2009; ABS: Davis et al., Brachytherapy 11:6-19, 2012):

* **Dx %** - the minimum dose received by the hottest x % of the structure's volume, i.e.
  the dose D at which the cumulative DVH V(>= D) equals x % of the volume (D90, D98, D50;
  D100 is the minimum dose).
* **Dx cc** - the minimum dose to the hottest x cm³ (D2cc, D0.1cc): the dose at which
  V(>= D) = x cm³.  Undefined (NaN, JSON null) when the structure is smaller than x cm³.
* **Vx %** - the percentage of the volume receiving at least x % of the prescription dose
  (V100, V150, V200); **Vx Gy** - the volume receiving at least x Gy.

Dx is read from the piecewise-linear cumulative DVH (:meth:`brachycryo.qa.dvh.DVH.cumulative_curve`)
by linear interpolation between its nodes, never snapped to a bin edge.  Where the curve is
flat at exactly x (no volume between two doses) Dx is the upper end of the flat part, the
largest dose that still covers x.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import TypedDict

import numpy as np

from brachycryo.core.errors import ConfigError, GeometryError
from brachycryo.core.grid import Grid
from brachycryo.qa.dvh import DVH

DEFAULT_D_PCT = (90.0, 98.0, 100.0, 50.0)
DEFAULT_D_CC = (2.0, 0.1)
DEFAULT_V_PCT = (100.0, 150.0, 200.0)


def dose_at_volume_cc(dvh: DVH, volume_cc: float) -> float:
    """Minimum dose (Gy) to the hottest ``volume_cc`` cm³ (ABS / TG-137 "Dx cc").

    NaN when ``volume_cc`` exceeds the structure's volume; ``dmax_gy`` for 0.
    """
    x = float(volume_cc)
    if not np.isfinite(x) or x < 0:
        raise ConfigError(f"volume must be finite and >= 0, got {volume_cc}", key="volume_cc")
    d, v = dvh.cumulative_curve()
    total = dvh.volume_cc
    if total <= 0 or x > total * (1 + 1e-12):
        return float("nan")
    if x <= 0:
        return float(dvh.dmax_gy)
    x = min(x, total)
    j = int(np.searchsorted(-v, -x, side="right"))  # first node with v < x
    if j <= 0:
        return float(d[0])
    if j >= d.size:
        return float(dvh.dmax_gy)
    v0, v1 = v[j - 1], v[j]
    t = (v0 - x) / (v0 - v1)
    dose = d[j - 1] + t * (d[j] - d[j - 1])
    # a point mass's step ends one ulp above its dose (the curve's doses must increase):
    # Dx is a dose of the structure, in [Dmin, Dmax]
    return float(min(max(dose, dvh.dmin_gy), dvh.dmax_gy))


def dose_at_volume_pct(dvh: DVH, percent: float) -> float:
    """Minimum dose (Gy) to the hottest ``percent`` % of the volume (TG-137 "Dx", e.g. D90)."""
    p = float(percent)
    if not (0.0 <= p <= 100.0):
        raise ConfigError(f"percent must be in [0, 100], got {percent}", key="percent")
    return dose_at_volume_cc(dvh, dvh.volume_cc * p / 100.0)


def volume_at_dose_cc(dvh: DVH, dose_gy: float) -> float:
    """Volume (cm³) receiving at least ``dose_gy`` (TG-137 "Vx" in absolute volume)."""
    d, v = dvh.cumulative_curve()
    if dvh.volume_cc <= 0:
        return 0.0
    dose = float(dose_gy)
    if dose <= d[0]:
        return dvh.volume_cc
    return float(np.interp(dose, d, v, left=dvh.volume_cc, right=0.0))


def volume_at_dose_pct(dvh: DVH, dose_gy: float) -> float:
    """Percentage of the volume receiving at least ``dose_gy``."""
    total = dvh.volume_cc
    return float("nan") if total <= 0 else 100.0 * volume_at_dose_cc(dvh, dose_gy) / total


def isodose_volume_cc(
    dose_gy: np.ndarray, grid: Grid, level_gy: float, *, within: np.ndarray | None = None
) -> float:
    """Volume (cm³) of the dose grid receiving at least ``level_gy`` (voxel counting).

    ``within`` (a boolean mask or occupancy fractions on ``grid``, e.g. the body) limits
    the count.  This is V_ref of the conformity indices: the whole volume enclosed by the
    reference isodose.
    """
    grid.check_volume(dose_gy, "dose_gy")
    hot = np.asarray(dose_gy) >= level_gy
    if within is None:
        n = float(np.count_nonzero(hot))
    else:
        grid.check_volume(within, "within")
        n = float(np.sum(np.asarray(within, dtype=np.float64)[hot]))
    return n * grid.voxel_volume_mm3 / 1000.0


def isodose_volumes_by_target_cc(
    dose_gy: np.ndarray,
    grid: Grid,
    targets: Sequence[np.ndarray],
    levels_gy: Sequence[float],
    *,
    within: np.ndarray | None = None,
) -> list[float]:
    """V_ref of each of several targets in one dose: the volume (cm³) receiving at least
    that target's ``levels_gy[n]`` and lying nearer to ``targets[n]`` than to any other.

    With several lesions in one plan the whole-body prescription isodose volume belongs to
    all of them, and CI / EI computed with it charge each lesion with the others' treated
    volume (a small lesion beside a bulky one gets CI ≈ 0 and a huge EI).  Here every voxel
    is attributed to its nearest target (Euclidean distance in mm from the voxel centre to
    the nearest voxel of the target mask, 0 inside it; ties to the first target), so the
    attributed volumes partition each isodose cloud and a single target gets exactly
    :func:`isodose_volume_cc`.  Voxel counting, ``within`` as there.
    """
    from scipy import ndimage

    grid.check_volume(dose_gy, "dose_gy")
    if len(targets) != len(levels_gy):
        raise GeometryError(f"{len(targets)} targets but {len(levels_gy)} isodose levels")
    if not targets:
        return []
    owner = np.full(grid.shape, -1, dtype=np.int32)
    for n in range(len(targets) - 1, -1, -1):  # the first target wins where targets overlap
        grid.check_volume(targets[n], f"targets[{n}]")
        owner[np.asarray(targets[n], dtype=bool)] = n
    if (owner < 0).all():
        raise GeometryError("every target mask is empty")
    _, nearest = ndimage.distance_transform_edt(
        owner < 0, sampling=grid.spacing_mm[::-1], return_indices=True
    )
    owner = owner[tuple(nearest)]
    weight = np.ones(grid.shape) if within is None else np.asarray(within, dtype=np.float64)
    if within is not None:
        grid.check_volume(within, "within")
    dose = np.asarray(dose_gy)
    voxel_cc = grid.voxel_volume_mm3 / 1000.0
    return [
        float(np.sum(weight[(dose >= level) & (owner == n)])) * voxel_cc
        for n, level in enumerate(levels_gy)
    ]


def _check_rx(prescription_gy: float) -> float:
    rx = float(prescription_gy)
    if not np.isfinite(rx) or rx <= 0:
        raise ConfigError(f"must be positive, got {prescription_gy}", key="prescription_gy")
    return rx


def conformity_index(target: DVH, reference_isodose_cc: float, prescription_gy: float) -> float:
    """CI = (V_T,ref / V_T) * (V_T,ref / V_ref) (van't Riet et al., IJROBP 37:731, 1997;
    the COIN of Baltas et al., IJROBP 40:515, 1998, without critical-organ factors).

    V_T is the target volume, V_T,ref the target volume receiving at least the
    prescription (reference) dose and V_ref the whole volume enclosed by the reference
    isodose (:func:`isodose_volume_cc`).  1 is ideal; it drops for under-coverage and for
    dose spilling outside the target.
    """
    rx = _check_rx(prescription_gy)
    vt = target.volume_cc
    vt_ref = volume_at_dose_cc(target, rx)
    if vt <= 0 or reference_isodose_cc <= 0:
        return float("nan")
    return (vt_ref / vt) * (vt_ref / float(reference_isodose_cc))


def external_volume_index(
    target: DVH, reference_isodose_cc: float, prescription_gy: float
) -> float:
    """EI = V_N,ref / V_T (Saw et al., IJROBP 48:1231, 2000; reported in TG-137, Nath 2009).

    V_N,ref = V_ref - V_T,ref is the normal-tissue volume receiving at least the
    prescription dose; 0 is ideal.
    """
    rx = _check_rx(prescription_gy)
    vt = target.volume_cc
    if vt <= 0:
        return float("nan")
    v_n_ref = max(float(reference_isodose_cc) - volume_at_dose_cc(target, rx), 0.0)
    return v_n_ref / vt


def homogeneity_index(target: DVH, prescription_gy: float) -> float:
    """HI = (V_T,ref - V_T,1.5ref) / V_T,ref (Saw et al. 2000; TG-137, Nath et al. 2009):
    the fraction of the covered target volume receiving 100-150 % of the prescription.
    """
    rx = _check_rx(prescription_gy)
    vt_ref = volume_at_dose_cc(target, rx)
    if vt_ref <= 0:
        return float("nan")
    return (vt_ref - volume_at_dose_cc(target, 1.5 * rx)) / vt_ref


def _fmt(x: float) -> str:
    return f"{float(x):g}"


def structure_metrics(
    dvh: DVH,
    *,
    prescription_gy: float | None = None,
    d_pct: Iterable[float] = DEFAULT_D_PCT,
    d_cc: Iterable[float] = DEFAULT_D_CC,
    v_pct: Iterable[float] = DEFAULT_V_PCT,
    v_gy: Iterable[float] = (),
) -> dict[str, float | None]:
    """The metrics of one structure under the key names of ``brachycryo dvh --json``.

    Keys: ``volume_cc``, ``dmin_gy``, ``dmean_gy``, ``dmax_gy``, ``d{x}_gy`` for each x in
    ``d_pct`` (D90 -> ``d90_gy``), ``d{x}cc_gy`` for ``d_cc`` (``d2cc_gy``, ``d0.1cc_gy``),
    ``v{x}_pct`` for ``v_pct`` (% of the volume receiving x % of ``prescription_gy``; None
    without a prescription), ``v{x}gy_pct`` / ``v{x}gy_cc`` for ``v_gy``, and
    ``volume_outside_dose_cc``.  Undefined values (e.g. D2cc of a 1 cm³ structure) are None.
    """

    def clean(x: float) -> float | None:
        return None if x is None or not math.isfinite(x) else float(x)

    out: dict[str, float | None] = {
        "volume_cc": clean(dvh.volume_cc),
        "dmin_gy": clean(dvh.dmin_gy),
        "dmean_gy": clean(dvh.dmean_gy),
        "dmax_gy": clean(dvh.dmax_gy),
    }
    for x in d_pct:
        out[f"d{_fmt(x)}_gy"] = clean(dose_at_volume_pct(dvh, x))
    for x in d_cc:
        out[f"d{_fmt(x)}cc_gy"] = clean(dose_at_volume_cc(dvh, x))
    rx = None if prescription_gy is None else _check_rx(prescription_gy)
    for x in v_pct:
        out[f"v{_fmt(x)}_pct"] = (
            None if rx is None else clean(volume_at_dose_pct(dvh, rx * float(x) / 100.0))
        )
    for x in v_gy:
        out[f"v{_fmt(x)}gy_pct"] = clean(volume_at_dose_pct(dvh, x))
        out[f"v{_fmt(x)}gy_cc"] = clean(volume_at_dose_cc(dvh, x))
    out["volume_outside_dose_cc"] = clean(dvh.volume_outside_dose_cc)
    return out


_METRIC_RE = re.compile(
    r"^(?:(?P<named>dmin|dmean|dmax|volume)|d(?P<dx>\d+(?:\.\d+)?)(?P<dcc>cc)?"
    r"|v(?P<vx>\d+(?:\.\d+)?)(?P<vgy>gy)?(?P<vcc>_cc)?)$"
)


def metric_value(dvh: DVH, metric: str, *, prescription_gy: float | None = None) -> float:
    """Evaluate a metric named as planners write it (case-insensitive).

    ``Dmin``/``Dmean``/``Dmax`` (Gy), ``Volume`` (cm³), ``D90`` (Gy to the hottest 90 %),
    ``D2cc`` (Gy to the hottest 2 cm³), ``V100`` (% of the volume receiving 100 % of the
    prescription), ``V150Gy`` (% of the volume receiving 150 Gy), ``V150Gy_cc`` (cm³).
    """
    m = _METRIC_RE.match(metric.strip().lower())
    if m is None:
        raise ConfigError(
            f"unknown metric {metric!r} (use Dmin, Dmean, Dmax, Volume, D90, D2cc, V100, "
            "V150Gy or V150Gy_cc)",
            key="metric",
        )
    if m["named"]:
        return {
            "dmin": dvh.dmin_gy,
            "dmean": dvh.dmean_gy,
            "dmax": dvh.dmax_gy,
            "volume": dvh.volume_cc,
        }[m["named"]]
    if m["dx"] is not None:
        x = float(m["dx"])
        return dose_at_volume_cc(dvh, x) if m["dcc"] else dose_at_volume_pct(dvh, x)
    x = float(m["vx"])
    if m["vgy"]:
        return volume_at_dose_cc(dvh, x) if m["vcc"] else volume_at_dose_pct(dvh, x)
    if m["vcc"]:
        raise ConfigError(f"{metric!r}: _cc goes with VxGy only", key="metric")
    if prescription_gy is None:
        raise ConfigError(f"{metric!r} needs a prescription dose", key="prescription_gy")
    return volume_at_dose_pct(dvh, _check_rx(prescription_gy) * x / 100.0)


class PlanIndices(TypedDict):
    """The implant quality indices of a target (:func:`plan_indices`), None where undefined:
    the target's name, CI, EI, HI, and the volumes (cc) behind them: V_T, V_T,ref, V_ref."""

    target: str
    ci: float | None
    ei: float | None
    hi: float | None
    v_t_cc: float | None
    v_t_ref_cc: float | None
    v_ref_cc: float | None


def numeric_indices(indices: PlanIndices) -> dict[str, float | None]:
    """The indices without the target's name, in the order of :class:`PlanIndices`."""
    return {
        "ci": indices["ci"],
        "ei": indices["ei"],
        "hi": indices["hi"],
        "v_t_cc": indices["v_t_cc"],
        "v_t_ref_cc": indices["v_t_ref_cc"],
        "v_ref_cc": indices["v_ref_cc"],
    }


def plan_indices(target: DVH, reference_isodose_cc: float, prescription_gy: float) -> PlanIndices:
    """CI, EI and HI of ``target`` (keys ``ci``, ``ei``, ``hi``) plus the volumes behind them."""
    rx = _check_rx(prescription_gy)
    if reference_isodose_cc < 0:
        raise GeometryError(f"reference isodose volume must be >= 0, got {reference_isodose_cc}")

    def clean(x: float) -> float | None:
        return None if not math.isfinite(x) else float(x)

    return {
        "target": target.name,
        "ci": clean(conformity_index(target, reference_isodose_cc, rx)),
        "ei": clean(external_volume_index(target, reference_isodose_cc, rx)),
        "hi": clean(homogeneity_index(target, rx)),
        "v_t_cc": clean(target.volume_cc),
        "v_t_ref_cc": clean(volume_at_dose_cc(target, rx)),
        "v_ref_cc": clean(float(reference_isodose_cc)),
    }


__all__ = [
    "PlanIndices",
    "conformity_index",
    "dose_at_volume_cc",
    "dose_at_volume_pct",
    "external_volume_index",
    "homogeneity_index",
    "isodose_volume_cc",
    "isodose_volumes_by_target_cc",
    "metric_value",
    "numeric_indices",
    "plan_indices",
    "structure_metrics",
    "volume_at_dose_cc",
    "volume_at_dose_pct",
]
