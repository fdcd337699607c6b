"""Post-implant dosimetry: post-implant CT -> detected seeds -> TG-43 dose -> DVH metrics,
compared with the pre-plan (the ``brachycryo postimplant`` API).

Steps of :func:`run_postimplant`:

1. Read the post-implant CT series, the RTSTRUCT contoured on it and, optionally, the
   pre-plan RTPLAN; check that they share one Frame of Reference
   (:class:`~brachycryo.core.errors.FrameOfReferenceError` otherwise: a pre-plan made on
   another image must first be registered to the post-implant CT).
2. Detect the seeds (:func:`brachycryo.postimplant.seed_detection.detect_seeds`).  A ``seed_count``
   given
   by the user (the implanted count from the implant record) reconciles the per-cluster
   counts.  Without it the pre-plan's seed count is used as a *guarded* default
   (:func:`detect_with_plan_count`): seeds are implanted beyond the plan or lost
   (migrated out of the imaged region) often enough that forcing the plan's count would
   split a single seed into a ghost pair, or drop a real seed; the count changes it asks
   for are kept only in clusters where the image or the plan supports them.
3. Source strength (``sk_u``), TG-43 seed model and prescription come from the pre-plan
   unless given; without a pre-plan they must be given (:class:`ConfigError` naming the
   option).  The detected seeds become a permanent-implant RTPLAN (one channel per seed,
   each with its detected orientation).
4. Dose grid: in the CT's orientation, covering every seed (detected and planned) plus
   ``dose_margin_mm``, clipped to the CT, at ``dose_spacing_mm``.  The post-implant dose
   (TG-43U1 line source, total dose of the permanent implant) is computed there; so is the
   **pre-plan's dose, recomputed from its RTPLAN on the same grid with the same engine**,
   so that the comparison is like for like (a stored RTDOSE would differ in grid,
   interpolation and engine).
5. DVH metrics of every structure with closed contours
   (:func:`brachycryo.qa.evaluate.evaluate_plan`,
   the keys of ``brachycryo dvh --json``) for both doses, and the comparison: per
   structure ΔD90, ΔV100 and ΔD2cc; seeds planned / detected / paired; displacement
   statistics; missing, far and surplus seeds (:mod:`brachycryo.postimplant.seed_comparison`);
   suspicious
   metal clusters from the detection.

:func:`write_postimplant_outputs` writes ``RP.postimplant.dcm``, ``RD.postimplant.dcm``,
``seeds.csv``, ``metrics.json`` and ``report.html`` (each atomically; nothing is written
when any of them exists and ``overwrite`` is False).
"""

from __future__ import annotations

import csv
import datetime as _dt
import io
import json
import math
import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from brachycryo.core.atomic import check_writable, write_text_atomic
from brachycryo.core.errors import (
    ConfigError,
    DataModelError,
    FrameOfReferenceError,
    StructureError,
)
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, report, scaled
from brachycryo.core.seeds import Seeds
from brachycryo.dicom_io.common import SERIES_NUMBERS
from brachycryo.dicom_io.ct_series import CTImage, load_ct_series
from brachycryo.dicom_io.plan_model import AUTO, choose_seed_model
from brachycryo.dicom_io.rtdose import write_rtdose
from brachycryo.dicom_io.rtplan import BrachyPlan, read_rtplan, write_seed_rtplan
from brachycryo.dicom_io.rtstruct import ROI, StructureSet, check_against_image, read_rtstruct
from brachycryo.dose_kernels import SeedModel, dose_on_grid, load_seed_model
from brachycryo.postimplant.seed_comparison import MIGRATION_GATE_MM, SeedComparison, compare_seeds
from brachycryo.postimplant.seed_detection import (
    DetectionOptions,
    SeedDetection,
    detect_seeds,
    match_seeds,
    to_plan,
)
from brachycryo.qa.evaluate import PlanEvaluation, evaluate_plan, volume_rois

#: Dose grid margin around the seeds (mm): I-125 dose there is a few % of the dose at 1 cm.
DOSE_MARGIN_MM = 30.0
#: Default dose grid spacing (mm).
DOSE_SPACING_MM = 1.0
#: ROI interpreted types treated as targets (ΔD90 / ΔV100 are their headline figures).
TARGET_TYPES = ("PTV", "CTV", "GTV")
#: Metrics compared between plan and post-implant dose, with the unit of their difference.
COMPARED_METRICS = (
    ("d90_gy", "Gy"),
    ("v100_pct", "percentage points"),
    ("v150_pct", "percentage points"),
    ("d2cc_gy", "Gy"),
    ("d0.1cc_gy", "Gy"),
)
_I125 = {"I-125", "I125", "125I"}
#: Seeds below this detection confidence are listed for review.
LOW_CONFIDENCE = 0.5
#: Detection confidence (count fit) from which a cluster's image supports its seed count;
#: 0.25 lets a cluster of 1.2 seeds' signal be split in two, not one of 1.0 (a ghost).
SUPPORT_CONFIDENCE = 0.25
#: A planned seed within this distance (mm) of a detected seed supports its existence.
PLAN_SUPPORT_MM = 3.0


@dataclass
class PostImplantResult:
    """Everything :func:`run_postimplant` computed (see the module docstring)."""

    ct: CTImage
    structures: StructureSet
    rtstruct_path: Path
    detection: SeedDetection
    detected_plan: BrachyPlan
    model: SeedModel
    sk_u: float
    prescription_gy: float
    dose_grid: Grid
    dose_gy: np.ndarray
    evaluation: PlanEvaluation
    rois: tuple[ROI, ...]
    target: str | None = None
    pre_plan: BrachyPlan | None = None
    plan_dose_gy: np.ndarray | None = None
    plan_evaluation: PlanEvaluation | None = None
    seeds: SeedComparison | None = None
    settings: dict = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def role(self, roi_name: str) -> str:
        """``"target"``, ``"external"`` (body outline) or ``"oar"`` for a structure."""
        roi = next((r for r in self.rois if r.name == roi_name), None)
        kind = (roi.interpreted_type if roi else "").upper()
        if roi_name == self.target or kind in TARGET_TYPES:
            return "target"
        return "external" if kind == "EXTERNAL" else "oar"

    def comparison_doc(self) -> dict | None:
        """The ``comparison`` block of metrics.json (None without a pre-plan)."""
        if self.plan_evaluation is None or self.seeds is None:
            return None
        structures = {}
        for name, post in self.evaluation.metrics.items():
            plan = self.plan_evaluation.metrics.get(name, {})
            row: dict = {"role": self.role(name)}
            for key, _unit in COMPARED_METRICS:
                a, b = plan.get(key), post.get(key)
                row[f"{key}_plan"] = a
                row[f"{key}_postimplant"] = b
                row[f"delta_{key}"] = None if a is None or b is None else b - a
                if key.endswith("_gy"):
                    row[f"delta_{key.removesuffix('_gy')}_pct_of_plan"] = (
                        None if a is None or b is None or a == 0 else 100.0 * (b - a) / a
                    )
            structures[name] = row
        s = self.seeds
        return {
            "structures": structures,
            "delta_units": {f"delta_{k}": u for k, u in COMPARED_METRICS},
            "plan_dose": "recomputed from the RTPLAN on the post-implant dose grid (same engine)",
            "seeds": {
                "planned": s.n_planned,
                "detected": s.n_detected,
                "matched": s.n_matched,
                "gate_mm": s.gate_mm,
                "displacement": s.displacement_stats(),
                "missing": [self._plan_seed_doc(int(p)) for p in s.missing],
                "far_detections": [self._detection_doc(int(m)) for m in s.far],
                "surplus_detections": [self._detection_doc(int(m)) for m in s.surplus],
                "n_migrated": int(s.missing.size + s.far.size),
                "suspicious_clusters": self.detection_doc()["suspicious_clusters"],
            },
        }

    def _plan_seed_doc(self, p: int) -> dict:
        assert self.pre_plan is not None and self.seeds is not None
        seed = self.pre_plan.seeds[p]
        nearest = self.seeds.nearest_detection_mm(p)
        return {
            "plan_seed": p + 1,
            "channel": seed.channel,
            "position_mm": list(seed.position_mm),
            "nearest_detection_mm": nearest if math.isfinite(nearest) else None,
        }

    def _detection_doc(self, m: int) -> dict:
        assert self.seeds is not None
        seed = self.detection.seeds[m]
        nearest = self.seeds.nearest_plan_mm(m)
        return {
            "seed_id": m + 1,
            "position_mm": list(seed.position_mm),
            "confidence": seed.confidence,
            "nearest_plan_seed_mm": nearest if math.isfinite(nearest) else None,
        }

    def detection_doc(self) -> dict:
        d = self.detection
        return {
            "n_detected": d.n_seeds,
            "seed_count_given": d.seed_count_given,
            "n_metal_components": d.n_components,
            "metal_threshold_hu": d.metal_threshold_hu,
            "single_seed_signal_hu_mm3": d.single_seed_signal_hu_mm3,
            "low_confidence_seeds": [
                m + 1 for m, s in enumerate(d.seeds) if s.confidence < LOW_CONFIDENCE
            ],
            "suspicious_clusters": [
                {
                    "cluster": c.cluster,
                    "centroid_mm": list(c.centroid_mm),
                    "volume_mm3": c.volume_mm3,
                    "signal_ratio": c.signal_ratio,
                    "seeds_assigned": c.seeds_assigned,
                    "reason": c.reason,
                }
                for c in d.suspicious
            ],
            "notes": list(d.notes),
        }

    def metrics_doc(self) -> dict:
        """The content of metrics.json."""
        doc = self.evaluation.to_json()
        doc["target"] = self.target
        doc["seed_model"] = self.model.name
        doc["sk_u"] = self.sk_u
        doc["detection"] = self.detection_doc()
        comparison = self.comparison_doc()
        if comparison is not None:
            doc["comparison"] = comparison
            doc["plan_structures"] = self.plan_evaluation.metrics  # type: ignore[union-attr]
        doc["settings"] = {**doc.get("settings", {}), **self.settings}
        doc["files"] = dict(self.files)
        doc["warnings"] = list(self.notes) + list(doc.get("warnings", []))
        return _finite(doc)

    def seeds_csv(self) -> str:
        """One row per detected seed (see :func:`write_postimplant_outputs`)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(
            ["seed_id", "x_mm", "y_mm", "z_mm", "dir_x", "dir_y", "dir_z", "confidence",
             "cluster", "seeds_in_cluster", "matched_plan_seed", "plan_channel",
             "displacement_mm"]
        )  # fmt: skip
        for m, s in enumerate(self.detection.seeds):
            matched, channel, disp = "", "", ""
            if self.seeds is not None and self.pre_plan is not None:
                p = int(self.seeds.plan_of_detection[m])
                if p >= 0:
                    matched = str(p + 1)
                    channel = str(self.pre_plan.seeds[p].channel)
                    disp = f"{self.seeds.displacement_mm[m]:.3f}"
            w.writerow(
                [m + 1, *(f"{v:.3f}" for v in s.position_mm),
                 *(f"{v:.5f}" for v in s.direction), f"{s.confidence:.3f}", s.cluster,
                 s.seeds_in_cluster, matched, channel, disp]
            )  # fmt: skip
        return buf.getvalue()


def _finite(obj):
    """JSON-safe copy: NaN / inf become None, numpy scalars plain numbers."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


# ---------------------------------------------------------------------------- inputs
def _read_plan(path: str | os.PathLike, notes: list[str]) -> BrachyPlan:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        plan = read_rtplan(path)
    notes.extend(f"{path}: {w.message}" for w in caught)
    if plan.n_seeds == 0:
        raise DataModelError(f"{path} holds no source positions")
    isotopes = {s.isotope.replace(" ", "").upper() for s in plan.sources}
    if not isotopes <= _I125:
        raise DataModelError(
            f"{path}: sources are {sorted(isotopes)}; post-implant dosimetry here is for "
            "permanent I-125 seed implants (TG-43U1) only"
        )
    return plan


def _check_frames(ct: CTImage, ss: StructureSet, plan: BrachyPlan | None, notes: list[str]):
    ct_for = ct.frame_of_reference_uid
    if not ct_for:
        notes.append("the CT has no Frame of Reference UID; positions assumed to match")
        return
    notes.extend(
        check_against_image(
            ss,
            frame_of_reference_uid=ct_for,
            series_instance_uid=ct.series_instance_uid,
            sop_instance_uids=set(ct.sop_instance_uids),
            strict=False,
        )
    )
    if not ss.frame_of_reference_uid:
        notes.append(f"{ss.path}: no Frame of Reference UID; assumed to be the CT's")
    if plan is None:
        return
    if not plan.frame_of_reference_uid:
        notes.append(f"{plan.path}: no Frame of Reference UID; assumed to be the CT's")
    elif plan.frame_of_reference_uid != ct_for:
        raise FrameOfReferenceError(
            f"the pre-plan {plan.path} is in Frame of Reference {plan.frame_of_reference_uid}, "
            f"the post-implant CT in {ct_for}: register the pre-plan to the post-implant CT "
            "(and rewrite it in that frame) before comparing"
        )


def _uniform_sk_u(plan: BrachyPlan) -> float:
    values = np.unique(np.round(plan.sk_u, 9))
    if values.size != 1:
        raise ConfigError(
            f"the pre-plan {plan.path} has seeds of {values.size} strengths "
            f"({', '.join(f'{v:g}' for v in values)} U); give the strength of the implanted "
            "seeds (CLI: --sk-u)",
            key="sk_u",
        )
    return float(values[0])


@dataclass(frozen=True)
class _Source:
    """Strength, seed model and prescription, and where each came from (option / pre-plan)."""

    sk_u: float
    model: SeedModel
    prescription_gy: float
    origin: dict[str, str]


def _strength_u(plan: BrachyPlan | None, sk_u: float | None) -> tuple[float, str]:
    """The seeds' air-kerma strength (U) and where it came from: the option, else the plan."""
    origin = "option"
    if sk_u is None:
        if plan is None:
            raise ConfigError(
                "the source strength is needed without a pre-plan (CLI: --sk-u)", key="sk_u"
            )
        sk_u, origin = _uniform_sk_u(plan), "pre-plan"
    if not (math.isfinite(float(sk_u)) and float(sk_u) > 0):
        raise ConfigError(f"sk_u must be a positive strength in U, got {sk_u}", key="sk_u")
    return float(sk_u), origin


def _seed_model_name(plan: BrachyPlan | None, model: str | None) -> tuple[str, str]:
    """The TG-43 seed model's name and where it came from: the option, else the plan's
    SourceModelID, else (``model="auto"``) the model suggested from the plan's sources."""
    if model is not None and model.lower() != AUTO:
        return model, "option"
    if plan is None:
        raise ConfigError("the seed model is needed without a pre-plan (CLI: --model)", key="model")
    choice = choose_seed_model(plan, model)
    return choice.name, "pre-plan" if choice.origin.startswith("the plan") else choice.origin


def _prescription_gy(plan: BrachyPlan | None, prescription_gy: float | None) -> tuple[float, str]:
    """The prescription dose (Gy) and where it came from: the option, else the plan."""
    origin = "option"
    if prescription_gy is None:
        if plan is None or plan.prescription_dose_gy is None:
            where = "without a pre-plan" if plan is None else f"(the pre-plan {plan.path} has none)"
            raise ConfigError(
                f"the prescription dose is needed {where} (CLI: --prescription-gy)",
                key="prescription_gy",
            )
        prescription_gy, origin = plan.prescription_dose_gy, "pre-plan"
    if not (math.isfinite(float(prescription_gy)) and float(prescription_gy) > 0):
        raise ConfigError(
            f"prescription_gy must be a positive dose, got {prescription_gy}",
            key="prescription_gy",
        )
    return float(prescription_gy), origin


def _resolve_source(
    plan: BrachyPlan | None,
    sk_u: float | None,
    model: str | None,
    prescription_gy: float | None,
) -> _Source:
    """Strength, model and prescription: each the option, else the plan's."""
    origin: dict[str, str] = {}
    strength_u, origin["sk_u"] = _strength_u(plan, sk_u)
    model_name, origin["model"] = _seed_model_name(plan, model)
    seed_model = load_seed_model(model_name)
    rx_gy, origin["prescription_gy"] = _prescription_gy(plan, prescription_gy)
    return _Source(strength_u, seed_model, rx_gy, origin)


def _volume_rois(ss: StructureSet, names: Sequence[str] | None, notes: list[str]) -> list[ROI]:
    rois, skipped = volume_rois(ss, names)
    notes.extend(skipped)
    if not rois:
        raise StructureError(f"{ss.path} has no ROI with closed contours to evaluate")
    return rois


def _choose_target(rois: Sequence[ROI], target: str | None) -> str | None:
    if target is not None:
        for r in rois:
            if r.name == target or r.name.lower() == target.lower():
                return r.name
        raise StructureError(
            f"target is not among the evaluated ROIs {[r.name for r in rois]}", roi=target
        )
    for kind in TARGET_TYPES:
        for r in rois:
            if r.interpreted_type.upper() == kind:
                return r.name
    return None


def dose_grid_around(
    ct_grid: Grid, points_mm: np.ndarray, *, spacing_mm: float, margin_mm: float
) -> Grid:
    """Grid in the orientation of ``ct_grid`` covering ``points_mm`` plus ``margin_mm``,
    clipped to the CT's extent (voxel boundaries), with ``spacing_mm`` voxels."""
    sp = float(spacing_mm)
    if not (math.isfinite(sp) and sp > 0):
        raise ConfigError(
            f"dose grid spacing must be > 0 mm, got {spacing_mm}", key="dose_spacing_mm"
        )
    if not (math.isfinite(float(margin_mm)) and margin_mm >= 0):
        raise ConfigError(f"dose margin must be >= 0 mm, got {margin_mm}", key="dose_margin_mm")
    d = ct_grid.direction_matrix
    origin = np.asarray(ct_grid.origin_mm)
    local = (np.asarray(points_mm, dtype=float).reshape(-1, 3) - origin) @ d
    ct_sp = np.asarray(ct_grid.spacing_mm)
    ct_lo = -0.5 * ct_sp
    ct_hi = (np.asarray(ct_grid.size_ijk) - 0.5) * ct_sp
    lo = np.maximum(local.min(axis=0) - margin_mm, ct_lo)
    hi = np.minimum(local.max(axis=0) + margin_mm, ct_hi)
    if np.any(hi <= lo):
        raise ConfigError("the seeds lie outside the CT; no dose grid can be made", key="ct")
    n = np.maximum(1, np.ceil((hi - lo) / sp - 1e-9).astype(int))
    centre = (lo + hi) / 2.0
    first = centre - (n - 1) * sp / 2.0
    return Grid(
        shape=(int(n[2]), int(n[1]), int(n[0])),
        origin_mm=origin + d @ first,
        spacing_mm=(sp, sp, sp),
        direction=ct_grid.direction,
    )


def _seeds_of_plan(plan: BrachyPlan, notes: list[str]) -> Seeds:
    """The pre-plan's seeds, with a note when some lack an orientation (taken along +z)."""
    if plan.n_unoriented:
        notes.append(f"pre-plan: {plan.n_unoriented} seed(s) without orientation; taken along +z")
    return plan.to_seeds()


def _dose(seeds: Seeds, grid: Grid, model: SeedModel, backend: str, progress) -> np.ndarray:
    dose = dose_on_grid(
        seeds, grid, model, backend=backend, formalism="line", dtype=np.float64, progress=progress
    )
    if not np.all(np.isfinite(dose)):
        raise DataModelError("the computed dose contains NaN or inf")
    return dose


def _per_cluster(det: SeedDetection) -> dict[int, tuple[int, float, np.ndarray]]:
    """cluster -> (seeds in it, lowest confidence, positions (n, 3) mm)."""
    out: dict[int, tuple[int, float, list]] = {}
    for seed in det.seeds:
        k, conf, pos = out.get(seed.cluster, (seed.seeds_in_cluster, 1.0, []))
        out[seed.cluster] = (k, min(conf, seed.confidence), [*pos, seed.position_mm])
    return {c: (k, conf, np.asarray(pos, dtype=float)) for c, (k, conf, pos) in out.items()}


def _planned_near(positions_mm: np.ndarray, plan_mm: np.ndarray) -> int:
    """Distinct planned seeds within :data:`PLAN_SUPPORT_MM` of the given seeds."""
    return match_seeds(positions_mm, plan_mm, gate_mm=PLAN_SUPPORT_MM).n_matched


def detect_with_plan_count(
    hu: np.ndarray,
    grid: Grid,
    plan_mm: np.ndarray,
    *,
    options: DetectionOptions | None = None,
    progress: ProgressCallback | None = None,
) -> tuple[SeedDetection, str]:
    """Detection guided by the pre-plan's seed count where the image or the plan supports it.

    1. Detect without a count.  If that finds as many seeds as planned, done.
    2. Detect reconciled to the planned count; compare cluster by cluster.  A change of a
       cluster's count from a (no count) to b (reconciled) is kept when

       * the image supports it: b > 0 and the cluster's count-fit confidence in the
         reconciled detection is at least :data:`SUPPORT_CONFIDENCE`, or b = 0 and its
         confidence without a count was below that; or
       * the plan supports it: b > a and b distinct planned seeds lie within
         :data:`PLAN_SUPPORT_MM` of the cluster's b seeds (seeds merged on thick slices
         where planned), or b < a and at most b planned seeds lie near its a seeds.

       A single seed split in two to make up a lost seed's count has neither support
       (its halves share one planned seed, and its signal is one seed's).
    3. The supported changes set the count of the final detection (the reconciliation
       serves the clusters that want a change most first).

    Returns the detection and a sentence saying what was done.
    """
    plan_mm = np.asarray(plan_mm, dtype=float).reshape(-1, 3)
    n_plan = plan_mm.shape[0]
    free = detect_seeds(hu, grid, options=options, progress=scaled(progress, 0.0, 0.4))
    if free.n_seeds == n_plan:
        return free, f"{free.n_seeds} seeds found, as many as planned"
    forced = detect_seeds(
        hu, grid, seed_count=n_plan, options=options, progress=scaled(progress, 0.4, 0.7)
    )
    by_free, by_forced = _per_cluster(free), _per_cluster(forced)
    change = 0
    for cluster in set(by_free) | set(by_forced):
        a, conf_a, pos_a = by_free.get(cluster, (0, 1.0, np.zeros((0, 3))))
        b, conf_b, pos_b = by_forced.get(cluster, (0, 1.0, np.zeros((0, 3))))
        if b == a:
            continue
        image = conf_b >= SUPPORT_CONFIDENCE if b > 0 else conf_a < SUPPORT_CONFIDENCE
        if b > a:
            plan = _planned_near(pos_b, plan_mm) >= b
        else:
            plan = _planned_near(pos_a, plan_mm) <= b
        if image or plan:
            change += b - a
    target = free.n_seeds + change
    how = (
        f"the pre-plan has {n_plan} seeds, the image without a count shows "
        f"{free.n_seeds}; image and plan support {target}"
    )
    if target == n_plan:
        return forced, how
    if target == free.n_seeds:
        return free, how + (
            " (the difference may be seeds lost or added; give the implanted count to force it)"
        )
    final = detect_seeds(
        hu, grid, seed_count=target, options=options, progress=scaled(progress, 0.7, 1.0)
    )
    return final, how + " (give the implanted count to force it)"


# ---------------------------------------------------------------------------- workflow
@dataclass(frozen=True, kw_only=True)
class PostImplantOptions:
    """The choices of :func:`run_postimplant` (the ``brachycryo postimplant`` options).

    * ``seed_count`` - the implanted seed count (from the implant record); None: the
      pre-plan's count as a guarded default (:func:`detect_with_plan_count`), or, without a
      pre-plan, the count the image shows.
    * ``sk_u`` (air-kerma strength, U), ``model`` (TG-43 seed model name) and
      ``prescription_gy`` - None: the pre-plan's (required without one).
    * ``target`` - the ROI of the implant quality indices (None: the first PTV, CTV or
      GTV); ``roi_names`` - the evaluated structures (None: all with closed contours).
    * ``dose_spacing_mm``, ``dose_margin_mm`` - the dose grid (:func:`dose_grid_around`).
    * ``gate_mm`` - the migration gate of the seed comparison
      (:func:`~brachycryo.postimplant.seed_comparison.compare_seeds`).
    * ``detection_options`` - seed detection settings (None: the defaults);
      ``supersample`` - DVH supersampling (None: :func:`evaluate_plan`'s choice);
      ``backend`` - of the dose engine.

    Raises :class:`ConfigError` for a ``gate_mm`` that is not a positive distance.
    """

    seed_count: int | None = None
    sk_u: float | None = None
    model: str | None = None
    prescription_gy: float | None = None
    target: str | None = None
    roi_names: Sequence[str] | None = None
    dose_spacing_mm: float = DOSE_SPACING_MM
    dose_margin_mm: float = DOSE_MARGIN_MM
    gate_mm: float = MIGRATION_GATE_MM
    detection_options: DetectionOptions | None = None
    supersample: int | None = None
    backend: str = "auto"

    def __post_init__(self) -> None:
        if not (math.isfinite(float(self.gate_mm)) and self.gate_mm > 0):
            raise ConfigError(
                f"gate_mm must be a positive distance, got {self.gate_mm}", key="gate_mm"
            )


@dataclass(frozen=True)
class _Inputs:
    """The files read in step 1 (module docstring)."""

    ct: CTImage
    structures: StructureSet
    pre_plan: BrachyPlan | None


def _read_inputs(
    ct_dir: str | os.PathLike,
    rtstruct: str | os.PathLike,
    plan: str | os.PathLike | None,
    series_uid: str | None,
    notes: list[str],
) -> _Inputs:
    """Step 1: the CT, its RTSTRUCT and the pre-plan, checked to share a Frame of Reference."""
    ct = load_ct_series(ct_dir, series_uid=series_uid)
    notes.extend(ct.notes)
    ss = read_rtstruct(rtstruct)
    notes.extend(ss.warnings)
    pre_plan = None if plan is None else _read_plan(plan, notes)
    _check_frames(ct, ss, pre_plan, notes)
    return _Inputs(ct=ct, structures=ss, pre_plan=pre_plan)


def _detect(
    ct: CTImage,
    pre_plan: BrachyPlan | None,
    opts: PostImplantOptions,
    origin: dict[str, str],
    notes: list[str],
    progress: ProgressCallback | None,
) -> SeedDetection:
    """Step 2: the seeds, counted by the option, else by the pre-plan (guarded), else freely."""
    if pre_plan is not None and opts.seed_count is None:
        origin["seed_count"] = "pre-plan (guarded)"
        detection, how = detect_with_plan_count(
            ct.hu,
            ct.grid,
            pre_plan.positions_mm,
            options=opts.detection_options,
            progress=progress,
        )
        notes.append(f"seed count: {how}")
        return detection
    origin["seed_count"] = "option" if opts.seed_count is not None else "none"
    return detect_seeds(
        ct.hu,
        ct.grid,
        seed_count=opts.seed_count,
        options=opts.detection_options,
        progress=progress,
    )


def _detected_plan(
    detection: SeedDetection, pre_plan: BrachyPlan | None, source: _Source, ss: StructureSet
) -> BrachyPlan:
    """Step 3: the detected seeds as a permanent-implant RTPLAN (reference date and maker
    of the pre-plan's first source, if any; else now)."""
    reference = None
    manufacturer = ""
    if pre_plan is not None and pre_plan.sources:
        reference = pre_plan.sources[0].reference_datetime
        manufacturer = pre_plan.sources[0].manufacturer
    return to_plan(
        detection,
        sk_u=source.sk_u,
        model=source.model.name,
        reference_datetime=reference or _dt.datetime.now().replace(microsecond=0),
        manufacturer=manufacturer,
        prescription_dose_gy=source.prescription_gy,
        referenced_structure_set_uid=ss.sop_instance_uid or None,
    )


def _dose_grid(
    ct: CTImage, detection: SeedDetection, pre_plan: BrachyPlan | None, opts: PostImplantOptions
) -> Grid:
    """Step 4: the dose grid around the detected and the planned seeds."""
    points = detection.positions_mm
    if pre_plan is not None:
        points = np.concatenate([points, pre_plan.positions_mm])
    return dose_grid_around(
        ct.grid, points, spacing_mm=opts.dose_spacing_mm, margin_mm=opts.dose_margin_mm
    )


def _evaluate(
    dose_gy: np.ndarray,
    grid: Grid,
    rois: Sequence[ROI],
    *,
    prescription_gy: float,
    target: str | None,
    opts: PostImplantOptions,
    progress: ProgressCallback | None,
) -> PlanEvaluation:
    """Step 5: the DVH metrics of one dose."""
    return evaluate_plan(
        dose_gy,
        grid,
        rois,
        prescription_gy=prescription_gy,
        target=target,
        supersample=opts.supersample,
        progress=progress,
    )


def _settings(
    opts: PostImplantOptions, pre_plan: BrachyPlan | None, origin: dict[str, str]
) -> dict:
    """The ``settings`` block of metrics.json."""
    return {
        "dose_engine": "TG-43U1 line source, total permanent-implant dose",
        "dose_spacing_mm": float(opts.dose_spacing_mm),
        "dose_margin_mm": float(opts.dose_margin_mm),
        "migration_gate_mm": float(opts.gate_mm),
        "backend": opts.backend,
        "seed_count": opts.seed_count
        if opts.seed_count is not None
        else (None if pre_plan is None else pre_plan.n_seeds),
        "from": origin,
    }


def run_postimplant(
    ct_dir: str | os.PathLike,
    rtstruct: str | os.PathLike,
    *,
    plan: str | os.PathLike | None = None,
    series_uid: str | None = None,
    options: PostImplantOptions | None = None,
    progress: ProgressCallback | None = None,
    **option_values: Any,
) -> PostImplantResult:
    """Post-implant dosimetry of a CT, compared with the pre-plan when given (module doc).

    ``options`` (:class:`PostImplantOptions`), or its fields given here as keywords
    (``run_postimplant(ct, rs, sk_u=0.4, model="6711", prescription_gy=145)``; they
    override those of ``options``).  Raises :class:`ConfigError` for a missing strength /
    model / prescription, :class:`FrameOfReferenceError` for inputs in different frames,
    and the readers' errors (naming the file) for unusable DICOM.
    """
    opts = replace(options or PostImplantOptions(), **option_values)
    notes: list[str] = []
    report(progress, 0.0, "reading CT")
    inputs = _read_inputs(ct_dir, rtstruct, plan, series_uid, notes)
    ct, ss, pre_plan = inputs.ct, inputs.structures, inputs.pre_plan
    source = _resolve_source(pre_plan, opts.sk_u, opts.model, opts.prescription_gy)
    rois = _volume_rois(ss, opts.roi_names, notes)
    target_name = _choose_target(rois, opts.target)
    report(progress, 0.05, "detecting seeds")
    detection = _detect(ct, pre_plan, opts, source.origin, notes, scaled(progress, 0.05, 0.25))
    detected_plan = _detected_plan(detection, pre_plan, source, ss)
    grid = _dose_grid(ct, detection, pre_plan, opts)
    report(progress, 0.25, "post-implant dose")
    post_seeds = detection.to_seeds(source.sk_u)
    dose = _dose(post_seeds, grid, source.model, opts.backend, scaled(progress, 0.25, 0.5))
    plan_dose = None
    if pre_plan is not None:
        report(progress, 0.5, "pre-plan dose")
        plan_seeds = _seeds_of_plan(pre_plan, notes)
        plan_dose = _dose(plan_seeds, grid, source.model, opts.backend, scaled(progress, 0.5, 0.75))
    report(progress, 0.75, "DVH metrics")
    rx = source.prescription_gy
    top = 1.0 if pre_plan is None else 0.875
    evaluation = _evaluate(
        dose,
        grid,
        rois,
        prescription_gy=rx,
        target=target_name,
        opts=opts,
        progress=scaled(progress, 0.75, top),
    )
    plan_eval = None
    if plan_dose is not None:
        plan_eval = _evaluate(
            plan_dose,
            grid,
            rois,
            prescription_gy=rx,
            target=target_name,
            opts=opts,
            progress=scaled(progress, 0.875, 1),
        )
    files = {"ct": str(ct_dir), "rtstruct": str(rtstruct)}
    if plan is not None:
        files["plan"] = str(plan)
    evaluation.files = dict(files)
    comparison = None
    if pre_plan is not None:
        comparison = compare_seeds(
            pre_plan.positions_mm, detection.positions_mm, gate_mm=opts.gate_mm
        )
    report(progress, 1.0, f"{detection.n_seeds} seeds")
    return PostImplantResult(
        ct=ct,
        structures=ss,
        rtstruct_path=Path(rtstruct),
        detection=detection,
        detected_plan=detected_plan,
        model=source.model,
        sk_u=source.sk_u,
        prescription_gy=rx,
        dose_grid=grid,
        dose_gy=dose,
        evaluation=evaluation,
        rois=tuple(rois),
        target=target_name,
        pre_plan=pre_plan,
        plan_dose_gy=plan_dose,
        plan_evaluation=plan_eval,
        seeds=comparison,
        settings=_settings(opts, pre_plan, source.origin),
        files=files,
        notes=notes,
    )


# ---------------------------------------------------------------------------- outputs
OUTPUT_NAMES = {
    "rtplan": "RP.postimplant.dcm",
    "rtdose": "RD.postimplant.dcm",
    "seeds": "seeds.csv",
    "metrics": "metrics.json",
    "report": "report.html",
}


def write_postimplant_outputs(
    result: PostImplantResult,
    out_dir: str | os.PathLike,
    *,
    overwrite: bool = False,
    report_html: bool = True,
    dose_bits: int = 32,
) -> dict[str, Path]:
    """Write the data files (module docstring) into ``out_dir``; returns {kind: path}.
    ``dose_bits``: RTDOSE pixel size, 32 or 16 (see :func:`write_rtdose`).

    With ``report_html`` the report's path is checked and listed with the others in
    ``metrics.json``; the page itself is written one floor up, by
    :func:`brachycryo.reports.postimplant.write_postimplant_folder`, right after these files.

    ``seeds.csv`` has one row per detected seed: ``seed_id``, position ``x_mm, y_mm,
    z_mm``, axis ``dir_x, dir_y, dir_z``, ``confidence``, metal ``cluster`` and
    ``seeds_in_cluster``, and with a pre-plan the ``matched_plan_seed`` (1-based, in the
    RTPLAN's order), its ``plan_channel`` (needle) and the ``displacement_mm``.
    """
    out = Path(out_dir)
    listed = {k: out / v for k, v in OUTPUT_NAMES.items() if k != "report" or report_html}
    for p in listed.values():  # refuse before writing anything
        check_writable(p, overwrite=overwrite)
    paths = {k: p for k, p in listed.items() if k != "report"}
    out.mkdir(parents=True, exist_ok=True)
    context = result.ct.context
    plan_uid = write_seed_rtplan(
        paths["rtplan"],
        result.detected_plan,
        context=context,
        series_description="brachycryo post-implant seeds",
        series_number=SERIES_NUMBERS["rtplan_postimplant"],
        overwrite=overwrite,
    )
    write_rtdose(
        paths["rtdose"],
        result.dose_gy,
        result.dose_grid,
        context=context,
        referenced_plan_uid=plan_uid,
        series_number=SERIES_NUMBERS["rtdose_postimplant"],
        bits_allocated=dose_bits,
        dose_comment=f"TG-43U1 line source, model {result.model.name}, post-implant seeds",
        series_description="brachycryo post-implant dose",
        overwrite=overwrite,
    )
    write_text_atomic(paths["seeds"], result.seeds_csv(), overwrite=overwrite)
    doc = result.metrics_doc()
    doc["files"]["outputs"] = {k: str(p) for k, p in listed.items()}
    write_text_atomic(
        paths["metrics"], json.dumps(doc, indent=2, allow_nan=False) + "\n", overwrite=overwrite
    )
    return paths


__all__ = [
    "DOSE_MARGIN_MM",
    "DOSE_SPACING_MM",
    "OUTPUT_NAMES",
    "PostImplantOptions",
    "PostImplantResult",
    "detect_with_plan_count",
    "dose_grid_around",
    "run_postimplant",
    "write_postimplant_outputs",
]
