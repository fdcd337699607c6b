"""Brachytherapy RT Plans: write a permanent seed implant, read any brachy plan.

The data types are plain and shared by writer and reader:

* :class:`BrachySource` — one item of the Source Sequence (PS3.3 C.8.8.15): isotope,
  half-life, Reference Air Kerma Rate (= air-kerma strength S_K in U = µGy m² h⁻¹, since
  the standard gives it in µGy h⁻¹ at 1 m) at a reference date and time, model and maker.
* :class:`SeedSource` — one source position: a seed of a permanent implant, or a dwell
  position of an afterloader (with its dwell time), with its channel (needle) number and
  the unit vector of the source axis.
* :class:`Channel` — per-channel data read from a plan (total time, movement, pulses).
* :class:`BrachyPlan` — the plan: sources, seeds, technique/type, label, prescription.

Encoding of a permanent seed implant (:func:`write_seed_rtplan`)
-----------------------------------------------------------------
RT General Plan (C.8.8.9) with RTPlanGeometry PATIENT and the Frame of Reference of the
study context; optional RT Prescription (C.8.8.10, one SITE/TARGET dose reference with the
prescription dose); RT Fraction Scheme (C.8.8.13, one fraction, one application setup); RT
Brachy Application Setups (C.8.8.15): BrachyTreatmentTechnique PERMANENT, BrachyTreatment
Type LDR, one Treatment Machine item (MANUAL), one Source Sequence item per source model /
strength, one Application Setup whose Channel Sequence has one item per needle.  Each seed
is a pair of control points at the seed position (ControlPoint3DPosition) with its
orientation (ControlPointOrientation); Source Movement Type is FIXED.

Time weights follow C.8.8.15.6 (time at a control point = ChannelTotalTime x
CumulativeTimeWeight / FinalCumulativeTimeWeight): within a channel the weights run
0, 1, 1, 2, ..., n-1, n (seed m dwells from weight m to m + 1), FinalCumulativeTimeWeight
is n and ChannelTotalTime is n x the mean life T½/ln 2.  Every seed therefore gets the
"treatment time" of a permanent implant, the mean life, so that S_K x time summed over
seeds equals TotalReferenceAirKerma and the total dose = initial dose rate x T½/ln 2.
ControlPointRelativePosition is the seed's distance (mm) from the deepest seed of its needle
along the needle axis.

Reading other systems' plans (:func:`read_rtplan`)
--------------------------------------------------
Dwell positions are runs of consecutive control points at one position; a run's dwell time
is ChannelTotalTime x (weight at the end of the run - weight at its start) /
FinalCumulativeTimeWeight (for PDR: per pulse, C.8.8.15.6).  Non-conformant encodings are
accepted with a :class:`~brachycryo.dicom_io.common.DicomConformanceWarning` (also listed in
``BrachyPlan.warnings``); e.g. a Cumulative Time Weight that resets to 0 at each dwell
(RobustBrachy's PL001) is read as per-dwell weights.  Without ControlPointOrientation a
source's direction is the channel's track direction at that position (from the neighbouring
dwell positions, pointing along increasing control point index).
"""

from __future__ import annotations

import datetime as _dt
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence as DicomSequence

from brachycryo.core.errors import DataModelError, DicomInputError
from brachycryo.core.seeds import Seeds, directions_or_default
from brachycryo.dicom_io.common import (
    RT_PLAN_STORAGE,
    RT_STRUCTURE_SET_STORAGE,
    SERIES_NUMBERS,
    DicomConformanceWarning,
    StudyContext,
    check_coordinates,
    format_ds,
    get_floats,
    get_sequence,
    get_value,
    new_dataset,
    new_uid,
    read_dataset,
    save_dataset,
)

#: I-125 half-life used by AAPM TG-43U1 (Rivard et al., Med. Phys. 31:633, 2004): 59.40 d.
I125_HALF_LIFE_DAYS = 59.40

_SOURCE_TYPES = ("POINT", "LINE", "CYLINDER", "SPHERE")
#: ApplicationSetupType (300A,0232) of the seed plans we write.  The attribute is Type 1 with
#: Defined Terms (PS3.3 C.8.8.15): FLETCHER_SUIT, DELCLOS, BLOEDORN, JOSLIN_FLYNN,
#: CHANDIGARH, MANCHESTER, HENSCHKE (intracavitary applicators), NASOPHARYNGEAL, OESOPHAGEAL,
#: ENDOBRONCHIAL, ENDORECTAL (intraluminal), SYED_NEBLETT (a gynaecological interstitial
#: template) and PERINEAL (the perineal template of interstitial needle implants).  Our
#: implants are interstitial needles through a template (planning/needles.py); PERINEAL is
#: the one term for a template of interstitial needles that is not tied to a gynaecological
#: applicator, so it is written (the former "OTHER" is no defined term; dciodvfy warned).
#: The approach actually used (e.g. percutaneous, abdomen) is not encoded by any term; the
#: plan's label goes into ApplicationSetupName.
SEED_APPLICATION_SETUP_TYPE = "PERINEAL"
#: BrachyTreatmentType defined terms of remote afterloaders (PS3.3 C.8.8.15).
AFTERLOADER_TYPES = ("HDR", "MDR", "PDR")
_SAME_POSITION_MM = 1e-3
_SECONDS_PER_DAY = 86400.0


def _ds(value: float) -> str:
    """A float as a DICOM DS string of at most 16 characters."""
    return format_ds(value)


def _unit(v: Sequence[float] | np.ndarray, what: str) -> tuple[float, float, float]:
    a = np.asarray(v, dtype=float).reshape(-1)
    if a.size != 3 or not np.all(np.isfinite(a)):
        raise DataModelError(f"{what} must be 3 finite numbers, got {np.asarray(v).tolist()}")
    n = float(np.linalg.norm(a))
    if n < 1e-9:
        raise DataModelError(f"{what} is the zero vector")
    a = a / n
    return (float(a[0]), float(a[1]), float(a[2]))


# ---------------------------------------------------------------------------- data types
@dataclass(frozen=True)
class BrachySource:
    """A source model at a reference strength (one item of the Source Sequence).

    ``sk_u`` is the Reference Air Kerma Rate (300A,022A) at ``reference_datetime``:
    µGy h⁻¹ at 1 m, numerically the air-kerma strength in U (µGy m² h⁻¹).
    """

    sk_u: float
    reference_datetime: _dt.datetime | None
    isotope: str = "I-125"
    half_life_days: float = I125_HALF_LIFE_DAYS
    model: str = ""
    manufacturer: str = ""
    source_type: str = "LINE"
    active_length_mm: float | None = None
    number: int = 1

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sk_u) and self.sk_u > 0):
            raise DataModelError(f"source {self.number}: sk_u must be > 0, got {self.sk_u}")
        if not (math.isfinite(self.half_life_days) and self.half_life_days > 0):
            raise DataModelError(
                f"source {self.number}: half_life_days must be > 0, got {self.half_life_days}"
            )
        if self.source_type not in _SOURCE_TYPES:
            raise DataModelError(
                f"source {self.number}: source_type must be one of {_SOURCE_TYPES}, "
                f"got {self.source_type!r}"
            )

    @property
    def mean_life_s(self) -> float:
        """T½ / ln 2 in seconds: the effective irradiation time of a permanent implant."""
        return self.half_life_days * _SECONDS_PER_DAY / math.log(2.0)


@dataclass(frozen=True)
class SeedSource:
    """One source position: a seed, or an afterloader dwell position.

    ``direction`` is the unit vector of the source axis in patient (LPS) coordinates, or
    None when a plan read from file gives no way to know it.  ``dwell_time_s`` is the dwell
    time of an HDR/PDR/temporary plan (per pulse for PDR); None for permanent seeds.
    """

    position_mm: tuple[float, float, float]
    direction: tuple[float, float, float] | None
    channel: int
    source_number: int = 1
    dwell_time_s: float | None = None
    relative_position_mm: float | None = None


@dataclass(frozen=True)
class Channel:
    """Per-channel data of a plan read from file."""

    number: int
    source_number: int
    total_time_s: float | None
    movement_type: str
    applicator_id: str = ""
    number_of_pulses: int | None = None
    pulse_repetition_interval_s: float | None = None
    application_setup_number: int = 1


@dataclass(frozen=True, eq=False)
class BrachyPlan:
    """A brachytherapy plan: sources, source positions and plan-level attributes."""

    seeds: tuple[SeedSource, ...]
    sources: tuple[BrachySource, ...]
    technique: str = "PERMANENT"
    treatment_type: str = "LDR"
    label: str = "SEEDS"
    name: str = ""
    prescription_dose_gy: float | None = None
    referenced_structure_set_uid: str | None = None
    application_setup_type: str = SEED_APPLICATION_SETUP_TYPE
    channels: tuple[Channel, ...] = ()
    frame_of_reference_uid: str = ""
    sop_instance_uid: str = ""
    path: Path | None = None
    warnings: tuple[str, ...] = field(default=())
    #: TotalReferenceAirKerma (300A,0250) summed over the application setups (µGy at 1 m),
    #: None when no setup gives it.
    total_reference_air_kerma: float | None = None

    @property
    def is_afterloader(self) -> bool:
        """True for a remote-afterloading plan (BrachyTreatmentType HDR, MDR or PDR, PS3.3
        C.8.8.15): its source positions are dwell positions of one stepping source, not
        seeds, and S_K is that source's strength, not a per-position strength to sum."""
        return self.treatment_type in AFTERLOADER_TYPES

    # -- views as arrays
    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def positions_mm(self) -> np.ndarray:
        """(n, 3) float64 source positions in LPS mm."""
        return np.array([s.position_mm for s in self.seeds], dtype=float).reshape(-1, 3)

    @property
    def directions(self) -> np.ndarray:
        """(n, 3) unit vectors of the source axes (NaN rows where unknown)."""
        nan = (math.nan, math.nan, math.nan)
        return np.array(
            [s.direction if s.direction is not None else nan for s in self.seeds], dtype=float
        ).reshape(-1, 3)

    @property
    def n_unoriented(self) -> int:
        """Number of source positions whose axis is unknown (NaN rows of :attr:`directions`)."""
        return int(np.sum(~np.all(np.isfinite(self.directions), axis=1)))

    def to_seeds(self) -> Seeds:
        """The plan's source positions as :class:`~brachycryo.core.seeds.Seeds` for a dose engine.

        Each seed has the S_K of its source (:attr:`sk_u`) and its axis, rescaled to unit
        length; a seed without orientation gets
        :data:`~brachycryo.core.seeds.DEFAULT_DIRECTION` (count: :attr:`n_unoriented`).
        """
        directions = directions_or_default(self.directions)
        return Seeds(self.positions_mm, self.sk_u, directions, normalize=True)

    @property
    def channel_numbers(self) -> np.ndarray:
        return np.array([s.channel for s in self.seeds], dtype=int)

    def summary(self) -> dict[str, Any]:
        """A JSON-ready overview (for ``brachycryo info``): counts, sources, times, warnings."""
        t = self.treatment_times_s
        timed = bool(np.any(np.isfinite(t)))
        return {
            "label": self.label,
            "technique": self.technique,
            "treatment_type": self.treatment_type,
            "afterloader": self.is_afterloader,
            "n_channels": len({s.channel for s in self.seeds}),
            "n_sources_positions": self.n_seeds,
            "sources": [
                {
                    "number": s.number,
                    "isotope": s.isotope,
                    "model": s.model,
                    "sk_u": s.sk_u,
                    "half_life_days": s.half_life_days,
                    "reference": None
                    if s.reference_datetime is None
                    else s.reference_datetime.isoformat(),
                }
                for s in self.sources
            ],
            # an afterloader's dwell positions share one source: no sum of strengths
            "total_sk_u": None if self.is_afterloader else float(np.sum(self.sk_u)),
            "total_reference_air_kerma_ugy_at_1m": self.total_reference_air_kerma,
            "total_treatment_time_s": float(np.nansum(t)) if timed else None,
            "prescription_dose_gy": self.prescription_dose_gy,
            "warnings": list(self.warnings),
        }

    def source(self, number: int) -> BrachySource:
        """The Source Sequence item with SourceNumber ``number``."""
        for src in self.sources:
            if src.number == number:
                return src
        raise DataModelError(f"plan has no source number {number}")

    @property
    def sk_u(self) -> np.ndarray:
        """(n,) air-kerma strength (U) of each seed's source at its reference date."""
        by_number = {src.number: src.sk_u for src in self.sources}
        return np.array([by_number[s.source_number] for s in self.seeds], dtype=float)

    @property
    def treatment_times_s(self) -> np.ndarray:
        """(n,) dwell time x number of pulses of the seed's channel (PDR; 1 otherwise)."""
        pulses = {c.number: c.number_of_pulses or 1 for c in self.channels}
        return self.dwell_times_s * np.array([pulses.get(s.channel, 1) for s in self.seeds])

    @property
    def dwell_times_s(self) -> np.ndarray:
        """(n,) dwell times (per pulse for PDR; NaN where none, e.g. permanent seeds)."""
        return np.array(
            [math.nan if s.dwell_time_s is None else s.dwell_time_s for s in self.seeds],
            dtype=float,
        )


# ---------------------------------------------------------------------------- building
def needle_directions(positions_mm: np.ndarray, needles: Sequence[int]) -> np.ndarray:
    """Unit axis of each seed's needle: principal axis of the needle's seeds, first -> last.

    Raises :class:`DataModelError` for a needle with a single seed (its axis is unknown:
    pass ``directions`` explicitly) or with two seeds at the same position.
    """
    pos = np.asarray(positions_mm, dtype=float).reshape(-1, 3)
    ids = np.asarray(needles)
    out = np.empty_like(pos)
    for needle in dict.fromkeys(ids.tolist()):
        idx = np.flatnonzero(ids == needle)
        pts = pos[idx]
        if len(idx) < 2:
            raise DataModelError(
                f"needle {needle} has one seed; its direction cannot be derived, pass directions"
            )
        d2 = np.sum((pts[:, None, :] - pts[None, :, :]) ** 2, axis=-1)
        np.fill_diagonal(d2, np.inf)
        if np.min(d2) < _SAME_POSITION_MM**2:
            raise DataModelError(f"needle {needle} has two seeds at the same position")
        centred = pts - pts.mean(axis=0)
        axis = np.linalg.svd(centred, full_matrices=False)[2][0]
        if axis @ (pts[-1] - pts[0]) < 0:
            axis = -axis
        out[idx] = axis / np.linalg.norm(axis)
    return out


def seed_implant(
    positions_mm: np.ndarray | Sequence[Sequence[float]],
    needles: Sequence[int],
    *,
    source: BrachySource | Sequence[BrachySource],
    directions: np.ndarray | Sequence[Sequence[float]] | None = None,
    source_numbers: Sequence[int] | None = None,
    label: str = "SEEDS",
    name: str = "",
    prescription_dose_gy: float | None = None,
    referenced_structure_set_uid: str | None = None,
    application_setup_type: str = SEED_APPLICATION_SETUP_TYPE,
) -> BrachyPlan:
    """A permanent-implant :class:`BrachyPlan` from seed positions and needle numbers.

    ``directions`` default to each needle's axis (:func:`needle_directions`).  Seeds use
    source 1 unless ``source_numbers`` says otherwise.
    """
    pos = np.asarray(positions_mm, dtype=float)
    if pos.ndim != 2 or pos.shape[1] != 3:
        raise DataModelError(f"positions_mm must have shape (n, 3), got {pos.shape}")
    n = pos.shape[0]
    if len(needles) != n:
        raise DataModelError(f"{len(needles)} needle numbers for {n} seeds")
    bad = np.flatnonzero(~np.all(np.isfinite(pos), axis=1))
    if bad.size:
        raise DataModelError(f"seed positions contain NaN or inf (seeds {bad.tolist()})")
    sources = (source,) if isinstance(source, BrachySource) else tuple(source)
    dirs = (
        needle_directions(pos, needles)
        if directions is None
        else np.asarray(directions, dtype=float).reshape(n, 3)
    )
    numbers = [1] * n if source_numbers is None else [int(s) for s in source_numbers]
    seeds = tuple(
        SeedSource(
            position_mm=(float(p[0]), float(p[1]), float(p[2])),
            direction=_unit(d, f"direction of seed {m}"),
            channel=int(c),
            source_number=sn,
        )
        for m, (p, d, c, sn) in enumerate(zip(pos, dirs, needles, numbers, strict=True))
    )
    return BrachyPlan(
        seeds=seeds,
        sources=sources,
        label=label,
        name=name,
        prescription_dose_gy=prescription_dose_gy,
        referenced_structure_set_uid=referenced_structure_set_uid,
        application_setup_type=application_setup_type,
    )


# ---------------------------------------------------------------------------- writing
def _check_plan_for_writing(plan: BrachyPlan, out: Path) -> dict[int, list[SeedSource]]:
    if plan.technique != "PERMANENT" or plan.treatment_type != "LDR":
        raise DataModelError(
            f"write_seed_rtplan writes permanent LDR seed implants; plan {plan.label!r} is "
            f"{plan.technique}/{plan.treatment_type} (writing {out})"
        )
    if not plan.seeds:
        raise DataModelError(f"plan {plan.label!r} has no seeds (writing {out})")
    numbers = [s.number for s in plan.sources]
    if len(set(numbers)) != len(numbers) or not numbers:
        raise DataModelError(f"plan sources need unique numbers, got {numbers} (writing {out})")
    if plan.prescription_dose_gy is not None and not (
        math.isfinite(plan.prescription_dose_gy) and plan.prescription_dose_gy > 0
    ):
        raise DataModelError(f"prescription_dose_gy must be > 0, got {plan.prescription_dose_gy}")
    by_channel: dict[int, list[SeedSource]] = {}
    for m, s in enumerate(plan.seeds):
        p = np.asarray(s.position_mm, dtype=float)
        if p.shape != (3,) or not np.all(np.isfinite(p)):
            raise DataModelError(f"seed {m} position is not 3 finite numbers: {s.position_mm}")
        if s.direction is None:
            raise DataModelError(f"seed {m} has no direction (writing {out})")
        _unit(s.direction, f"direction of seed {m}")
        if s.source_number not in numbers:
            raise DataModelError(f"seed {m} refers to source {s.source_number}, not in {numbers}")
        if int(s.channel) < 1:
            raise DataModelError(f"seed {m}: channel (needle) numbers start at 1, got {s.channel}")
        by_channel.setdefault(int(s.channel), []).append(s)
    for ch, seeds in by_channel.items():
        if len({s.source_number for s in seeds}) > 1:
            raise DataModelError(
                f"needle {ch} holds seeds of several sources; a DICOM channel refers to one "
                "source (put them in separate needles)"
            )
    return by_channel


def _source_item(src: BrachySource) -> Dataset:
    item = Dataset()
    item.SourceNumber = src.number
    if src.model:
        item.SourceModelID = src.model
    item.SourceType = src.source_type
    if src.manufacturer:
        item.SourceManufacturer = src.manufacturer
    if src.active_length_mm is not None:
        item.ActiveSourceLength = _ds(src.active_length_mm)
    item.SourceIsotopeName = src.isotope
    item.SourceIsotopeHalfLife = _ds(src.half_life_days)
    item.ReferenceAirKermaRate = _ds(src.sk_u)
    # Source Strength Units / Source Strength are Type 1C: "Required if the source is not a
    # gamma-emitting (photon) source. May be present otherwise" (PS3.3 C.8.8.15, CP-484), so
    # for I-125 both presence and absence conform.  dicom3tools' dciodvfy encodes the
    # condition as "Reference Air Kerma Rate is zero" read as an integer (any value < 1 U
    # counts as zero) and rejects the attributes otherwise; we write them exactly when that
    # reading requires them, which keeps every file valid for the standard and the validator.
    if src.sk_u < 1.0:
        item.SourceStrengthUnits = "AIR_KERMA_RATE"
        item.SourceStrength = _ds(src.sk_u)
    when = src.reference_datetime
    if when is None:
        raise DataModelError(f"source {src.number} needs a reference_datetime for its strength")
    item.SourceStrengthReferenceDate = when.strftime("%Y%m%d")
    tm = when.strftime("%H%M%S")
    item.SourceStrengthReferenceTime = tm + (f".{when.microsecond:06d}" if when.microsecond else "")
    return item


def _direction_of(seed: SeedSource) -> tuple[float, float, float]:
    """A seed's axis, which :func:`_check_plan_for_writing` has checked it to have."""
    assert seed.direction is not None
    return seed.direction


def _channel_item(number: int, seeds: list[SeedSource], src: BrachySource) -> Dataset:
    pts = np.array([s.position_mm for s in seeds], dtype=float)
    directions = [_direction_of(s) for s in seeds]
    axis = np.asarray(_unit(np.sum(directions, axis=0), "needle axis"))
    along = pts @ axis
    rel = along.max() - along  # distance from the deepest seed along the needle
    n = len(seeds)
    ch = Dataset()
    ch.ChannelNumber = number
    ch.ChannelLength = ""
    ch.ChannelTotalTime = _ds(n * src.mean_life_s)
    ch.SourceMovementType = "FIXED"
    ch.TransferTubeNumber = ""
    ch.ReferencedSourceNumber = src.number
    ch.NumberOfControlPoints = 2 * n
    ch.FinalCumulativeTimeWeight = _ds(n)
    cps = []
    for m, (s, direction) in enumerate(zip(seeds, directions, strict=True)):
        for half in (0, 1):
            cp = Dataset()
            cp.ControlPointIndex = 2 * m + half
            cp.ControlPointRelativePosition = _ds(rel[m])
            cp.ControlPoint3DPosition = [_ds(v) for v in s.position_mm]
            cp.ControlPointOrientation = [float(v) for v in direction]
            cp.CumulativeTimeWeight = _ds(m + half)
            cps.append(cp)
    ch.BrachyControlPointSequence = DicomSequence(cps)
    return ch


def write_seed_rtplan(
    path: str | os.PathLike,
    plan: BrachyPlan,
    *,
    context: StudyContext,
    series_description: str = "brachycryo seed plan",
    series_number: int = SERIES_NUMBERS["rtplan"],
    overwrite: bool = False,
) -> str:
    """Write a permanent seed implant as an RT Plan (encoding: see the module docstring).

    Returns the SOPInstanceUID of the written plan (for RTDOSE's ReferencedRTPlanSequence).
    ``plan.referenced_structure_set_uid`` is required: PS3.3 C.8.8.9 requires the
    Referenced Structure Set Sequence for RTPlanGeometry PATIENT.  Bad plans raise
    :class:`DataModelError` before anything is written; an existing ``path`` is replaced
    only with ``overwrite``.
    """
    out = Path(path)
    by_channel = _check_plan_for_writing(plan, out)
    if not plan.referenced_structure_set_uid:
        raise DataModelError(
            f"plan {plan.label!r} has no referenced_structure_set_uid (the SOPInstanceUID of "
            "the RTSTRUCT the seeds were planned on); PS3.3 C.8.8.9 requires the Referenced "
            f"Structure Set Sequence for RTPlanGeometry PATIENT; nothing written to {out}"
        )
    sources = {s.number: s for s in plan.sources}

    ds = new_dataset(
        RT_PLAN_STORAGE,
        "RTPLAN",
        context,
        series_number=series_number,
        series_description=series_description,
    )
    ds.OperatorsName = ""
    ds.FrameOfReferenceUID = context.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    # RT General Plan (C.8.8.9)
    ds.RTPlanLabel = plan.label[:16]
    if plan.name:
        ds.RTPlanName = plan.name[:64]
    ds.RTPlanDate = ds.InstanceCreationDate
    ds.RTPlanTime = ds.InstanceCreationTime
    ds.RTPlanGeometry = "PATIENT"
    if plan.referenced_structure_set_uid:
        ref = Dataset()
        ref.ReferencedSOPClassUID = RT_STRUCTURE_SET_STORAGE
        ref.ReferencedSOPInstanceUID = plan.referenced_structure_set_uid
        ds.ReferencedStructureSetSequence = DicomSequence([ref])
    # RT Prescription (C.8.8.10)
    if plan.prescription_dose_gy is not None:
        dref = Dataset()
        dref.DoseReferenceNumber = 1
        dref.DoseReferenceUID = new_uid()
        dref.DoseReferenceStructureType = "SITE"
        dref.DoseReferenceDescription = "prescription"
        dref.DoseReferenceType = "TARGET"
        dref.TargetPrescriptionDose = _ds(plan.prescription_dose_gy)
        ds.DoseReferenceSequence = DicomSequence([dref])
    # RT Fraction Scheme (C.8.8.13)
    fg = Dataset()
    fg.FractionGroupNumber = 1
    fg.NumberOfFractionsPlanned = 1
    fg.NumberOfBeams = 0
    fg.NumberOfBrachyApplicationSetups = 1
    ref_setup = Dataset()
    if plan.prescription_dose_gy is not None:
        ref_setup.BrachyApplicationSetupDose = _ds(plan.prescription_dose_gy)
    ref_setup.ReferencedBrachyApplicationSetupNumber = 1
    fg.ReferencedBrachyApplicationSetupSequence = DicomSequence([ref_setup])
    ds.FractionGroupSequence = DicomSequence([fg])
    # RT Brachy Application Setups (C.8.8.15)
    ds.BrachyTreatmentTechnique = "PERMANENT"
    ds.BrachyTreatmentType = "LDR"
    machine = Dataset()
    machine.TreatmentMachineName = "MANUAL"
    ds.TreatmentMachineSequence = DicomSequence([machine])
    ds.SourceSequence = DicomSequence([_source_item(s) for s in plan.sources])
    setup = Dataset()
    setup.ApplicationSetupType = plan.application_setup_type
    setup.ApplicationSetupNumber = 1
    setup.ApplicationSetupName = plan.label[:64]
    # S_K x time over every seed, in µGy at 1 m (time: the mean life, in hours)
    total_kerma = sum(
        sources[s.source_number].sk_u * sources[s.source_number].mean_life_s / 3600.0
        for s in plan.seeds
    )
    setup.TotalReferenceAirKerma = _ds(total_kerma)
    setup.ChannelSequence = DicomSequence(
        [
            _channel_item(ch, seeds, sources[seeds[0].source_number])
            for ch, seeds in sorted(by_channel.items())
        ]
    )
    ds.ApplicationSetupSequence = DicomSequence([setup])
    ds.ApprovalStatus = "UNAPPROVED"
    save_dataset(ds, out, overwrite=overwrite)
    return str(ds.SOPInstanceUID)


# ---------------------------------------------------------------------------- reading
class _Reader:
    """Collects notes while reading one plan (no state survives the call)."""

    def __init__(self, path: Path):
        self.path = path
        self.notes: list[str] = []

    def note(self, message: str) -> None:
        self.notes.append(f"{self.path}: {message}")

    def value(self, ds: Dataset, keyword: str, default: Any = ...) -> Any:
        if default is ...:
            return get_value(ds, keyword, path=self.path)
        return get_value(ds, keyword, path=self.path, default=default)

    def integer(self, ds: Dataset, keyword: str, default: Any = ...) -> Any:
        v = self.value(ds, keyword, default)
        if v is default and default is not ...:
            return v
        try:
            return int(v)
        except (TypeError, ValueError) as exc:
            raise DicomInputError(f"is not an integer: {v!r}", path=self.path, tag=keyword) from exc

    def number(self, ds: Dataset, keyword: str, default: Any = ...) -> Any:
        if default is ...:
            return float(get_floats(ds, keyword, 1, path=self.path)[0])
        v = get_floats(ds, keyword, 1, path=self.path, default=None)
        return default if v is None else float(v[0])

    def text(self, ds: Dataset, keyword: str) -> str:
        return str(self.value(ds, keyword, "")).strip()

    def sequence(self, ds: Dataset, keyword: str, *, required: bool = True) -> list[Dataset]:
        return get_sequence(ds, keyword, path=self.path, required=required)


def _parse_datetime(date: str, time: str) -> _dt.datetime | None:
    date = (date or "").strip()
    time = (time or "").strip()
    if len(date) != 8:
        return None
    main, _, frac = time.partition(".")
    main = main.ljust(6, "0")[:6]
    try:
        when = _dt.datetime.strptime(date + main, "%Y%m%d%H%M%S")
    except ValueError:
        return None
    if frac.isdigit():
        when = when.replace(microsecond=int(frac.ljust(6, "0")[:6]))
    return when


def _read_source(r: _Reader, item: Dataset) -> BrachySource:
    number = r.integer(item, "SourceNumber")
    date = r.text(item, "SourceStrengthReferenceDate")
    time = r.text(item, "SourceStrengthReferenceTime")
    when = _parse_datetime(date, time)
    if when is None:
        r.note(f"source {number}: SourceStrengthReferenceDate/Time {date!r} {time!r} unusable")
    source_type = r.text(item, "SourceType").upper() or "POINT"
    if source_type not in _SOURCE_TYPES:
        r.note(f"source {number}: SourceType {source_type!r} is not a defined term; taken as POINT")
        source_type = "POINT"
    sk = r.number(item, "ReferenceAirKermaRate")
    half_life = r.number(item, "SourceIsotopeHalfLife")
    if not sk > 0:
        raise DicomInputError(
            f"source {number}: must be > 0, got {sk}", path=r.path, tag="ReferenceAirKermaRate"
        )
    if not half_life > 0:
        raise DicomInputError(
            f"source {number}: must be > 0, got {half_life}",
            path=r.path,
            tag="SourceIsotopeHalfLife",
        )
    units = r.text(item, "SourceStrengthUnits").upper()
    if units and units != "AIR_KERMA_RATE":
        r.note(f"source {number}: SourceStrengthUnits {units}; ReferenceAirKermaRate read as S_K")
    return BrachySource(
        sk_u=sk,
        reference_datetime=when,
        isotope=r.text(item, "SourceIsotopeName"),
        half_life_days=half_life,
        model=r.text(item, "SourceModelID") or r.text(item, "SourceDescription"),
        manufacturer=r.text(item, "SourceManufacturer"),
        source_type=source_type,
        active_length_mm=r.number(item, "ActiveSourceLength", None),
        number=number,
    )


def _triplet(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def _track_directions(points: np.ndarray) -> list[tuple[float, float, float] | None]:
    """Direction of a channel's track at each of its distinct positions (central differences)."""
    n = len(points)
    out: list[tuple[float, float, float] | None] = []
    for m in range(n):
        a, b = points[max(m - 1, 0)], points[min(m + 1, n - 1)]
        d = b - a
        norm = float(np.linalg.norm(d))
        out.append(None if norm < _SAME_POSITION_MM else _triplet(d / norm))
    return out


def _channel_source_number(
    r: _Reader, ch: Dataset, where: str, sources: Mapping[int, BrachySource]
) -> int:
    """The channel's ReferencedSourceNumber (the only source where it is missing)."""
    src_number = r.integer(ch, "ReferencedSourceNumber", None)
    if src_number is None:
        if len(sources) != 1:
            raise DicomInputError(
                f"{where}: missing and the plan has {len(sources)} sources",
                path=r.path,
                tag="ReferencedSourceNumber",
            )
        src_number = next(iter(sources))
        r.note(f"{where}: ReferencedSourceNumber missing; using the only source {src_number}")
    if src_number not in sources:
        raise DicomInputError(
            f"{where}: source {src_number} is not in the Source Sequence",
            path=r.path,
            tag="ReferencedSourceNumber",
        )
    return int(src_number)


@dataclass(frozen=True, eq=False)
class _ControlPoints:
    """A channel's control points: positions (n, 3) mm, relative positions (n,) mm and
    cumulative time weights (n,) (NaN where absent), unit orientations (None where absent)."""

    positions_mm: np.ndarray
    relative_mm: np.ndarray
    weights: np.ndarray
    orientations: list[tuple[float, float, float] | None]


def _control_points(r: _Reader, cps: list[Dataset], where: str) -> _ControlPoints:
    pos = np.empty((len(cps), 3))
    rel = np.full(len(cps), math.nan)
    weights = np.full(len(cps), math.nan)
    orient: list[tuple[float, float, float] | None] = []
    for m, cp in enumerate(cps):
        if "ControlPoint3DPosition" not in cp:
            raise DicomInputError(
                f"{where}, control point {m}: missing (positions are needed)",
                path=r.path,
                tag="ControlPoint3DPosition",
            )
        pos[m] = get_floats(cp, "ControlPoint3DPosition", 3, path=r.path)
        check_coordinates(
            pos[m], f"{where}, control point {m}", path=r.path, tag="ControlPoint3DPosition"
        )
        rel[m] = r.number(cp, "ControlPointRelativePosition", math.nan)
        weights[m] = r.number(cp, "CumulativeTimeWeight", math.nan)
        o = get_floats(cp, "ControlPointOrientation", 3, path=r.path, default=None)
        if o is not None and np.linalg.norm(o) > 1e-6:
            orient.append(_triplet(o / np.linalg.norm(o)))
        else:
            orient.append(None)
    return _ControlPoints(pos, rel, weights, orient)


def _position_runs(positions_mm: np.ndarray) -> list[list[int]]:
    """Runs of consecutive control points at one position: one source position each."""
    runs: list[list[int]] = []
    for m in range(len(positions_mm)):
        if (
            runs
            and np.linalg.norm(positions_mm[m] - positions_mm[runs[-1][-1]]) < _SAME_POSITION_MM
        ):
            runs[-1].append(m)
        else:
            runs.append([m])
    return runs


def _resetting_weights(
    r: _Reader, where: str, weights: np.ndarray, runs: list[list[int]], final: float | None
) -> tuple[list[float], float]:
    """Dwell weights of a channel whose CumulativeTimeWeight resets at each dwell, and the
    final weight they are a fraction of (their sum, unless FinalCumulativeTimeWeight agrees)."""
    r.note(
        f"{where}: CumulativeTimeWeight decreases (resets at each dwell), which PS3.3 "
        "C.8.8.15.6 forbids; each dwell's weight is read as its own increment"
    )
    dwell_weights = [
        float(np.sum(np.clip(np.diff(weights[run]), 0, None))) if len(run) > 1 else 0.0
        for run in runs
    ]
    total_weight = float(sum(dwell_weights))
    if final is not None and abs(final - total_weight) > 1e-6 * max(1.0, final):
        r.note(
            f"{where}: dwell weights sum to {total_weight:g}, "
            f"FinalCumulativeTimeWeight is {final:g}; times scaled by the sum"
        )
        final = total_weight
    elif final is None:
        final = total_weight
    return dwell_weights, final


def _final_weight(r: _Reader, where: str, weights: np.ndarray, final: float | None) -> float:
    """FinalCumulativeTimeWeight of increasing weights (the last weight where it is missing)."""
    if final is None:
        r.note(f"{where}: FinalCumulativeTimeWeight missing; the last weight is used")
        return float(weights[-1])
    if abs(final - weights[-1]) > 1e-6 * max(1.0, final):
        r.note(
            f"{where}: FinalCumulativeTimeWeight {final:g} differs from the last "
            f"CumulativeTimeWeight {weights[-1]:g}"
        )
    return final


def _dwell_weights(
    r: _Reader,
    ch: Dataset,
    where: str,
    weights: np.ndarray,
    runs: list[list[int]],
    total_time: float | None,
) -> tuple[list[float] | None, float | None]:
    """(weight of each dwell, seconds per unit weight) by C.8.8.15.6; None where unknown."""
    if not np.all(np.isfinite(weights)):
        if np.any(np.isfinite(weights)):
            r.note(f"{where}: CumulativeTimeWeight missing in some control points; no dwell times")
        return None, None
    if weights[0] != 0:
        r.note(f"{where}: first CumulativeTimeWeight is {weights[0]:g}, not 0")
    dwell_weights = [float(weights[run[-1]] - weights[run[0]]) for run in runs]
    final = r.number(ch, "FinalCumulativeTimeWeight", None)
    if np.any(np.diff(weights) < 0):
        dwell_weights, final = _resetting_weights(r, where, weights, runs, final)
    else:
        final = _final_weight(r, where, weights, final)
    scale = total_time / final if total_time is not None and final and final > 0 else None
    return dwell_weights, scale


def _seed_positions(
    r: _Reader, where: str, runs: list[list[int]], dwell_weights: list[float] | None
) -> tuple[list[list[int]], list[float] | None]:
    """The position runs of a seed channel that hold a seed: those with time weight.

    C.8.8.15.6 gives a control point position a time only through the increase of the
    Cumulative Time Weight across it; a position whose weight does not increase has no
    source there.  Oncentra Prostate writes each seed as four control points, two at the
    seed (weights 0 -> 100) and two 1 mm further on with weights 0, 0: read as positions,
    every seed would count twice (the plan's TotalReferenceAirKerma shows the factor).
    Where a channel gives no weights at all, every position is a seed.
    """
    if dwell_weights is None or not any(w > 0 for w in dwell_weights):
        return runs, dwell_weights
    keep = [q for q, w in enumerate(dwell_weights) if w > 0]
    if len(keep) < len(runs):
        r.note(
            f"{where}: {len(runs) - len(keep)} of {len(runs)} control-point positions have no "
            "time weight and hold no seed (as Oncentra writes a zero-weight pair 1 mm beyond "
            "each seed); they are not read as seeds"
        )
    return [runs[q] for q in keep], [dwell_weights[q] for q in keep]


def _read_channel(
    r: _Reader,
    ch: Dataset,
    setup_number: int,
    sources: Mapping[int, BrachySource],
    permanent: bool,
) -> tuple[Channel, list[SeedSource]]:
    number = r.integer(ch, "ChannelNumber")
    where = f"application setup {setup_number}, channel {number}"
    src_number = _channel_source_number(r, ch, where, sources)
    total_time = r.number(ch, "ChannelTotalTime", None)
    movement = r.text(ch, "SourceMovementType").upper()
    pulses = r.integer(ch, "NumberOfPulses", None)
    interval = r.number(ch, "PulseRepetitionInterval", None)
    cps = r.sequence(ch, "BrachyControlPointSequence")
    n_declared = r.integer(ch, "NumberOfControlPoints", None)
    if n_declared is not None and n_declared != len(cps):
        r.note(f"{where}: NumberOfControlPoints {n_declared} but {len(cps)} control points")
    points = _control_points(r, cps, where)
    pos = points.positions_mm
    runs = _position_runs(pos)
    dwell_weights, scale = _dwell_weights(r, ch, where, points.weights, runs, total_time)
    if permanent:
        runs, dwell_weights = _seed_positions(r, where, runs, dwell_weights)
    track_dirs = _track_directions(np.array([pos[run[0]] for run in runs]))
    seeds = []
    for q, run in enumerate(runs):
        known = (points.orientations[m] for m in run if points.orientations[m] is not None)
        direction = next(known, None)
        if direction is None:
            direction = track_dirs[q]
        dwell = None
        if not permanent and dwell_weights is not None and scale is not None:
            dwell = dwell_weights[q] * scale
        rel = points.relative_mm[run[0]]
        seeds.append(
            SeedSource(
                position_mm=_triplet(pos[run[0]]),
                direction=direction,
                channel=number,
                source_number=src_number,
                dwell_time_s=dwell,
                relative_position_mm=None if math.isnan(rel) else float(rel),
            )
        )
    if any(s.direction is None for s in seeds):
        r.note(f"{where}: source direction unknown (no ControlPointOrientation, single position)")
    channel = Channel(
        number=number,
        source_number=src_number,
        total_time_s=total_time,
        movement_type=movement,
        applicator_id=r.text(ch, "SourceApplicatorID"),
        number_of_pulses=pulses,
        pulse_repetition_interval_s=interval,
        application_setup_number=setup_number,
    )
    return channel, seeds


def _referenced_source_numbers(r: _Reader, ds: Dataset) -> set[int]:
    """Every ReferencedSourceNumber of every channel of every application setup."""
    numbers = set()
    for setup in r.sequence(ds, "ApplicationSetupSequence"):
        for ch in r.sequence(setup, "ChannelSequence", required=False):
            number = r.integer(ch, "ReferencedSourceNumber", None)
            if number is not None:
                numbers.add(int(number))
    return numbers


def _read_sources(r: _Reader, ds: Dataset) -> dict[int, BrachySource]:
    """The Source Sequence by SourceNumber.  A source with no strength that no channel
    references (a spacer or dummy source: Oncentra writes isotope ``---`` with
    ReferenceAirKermaRate 0) is skipped with a note; a referenced one is an error."""
    referenced = _referenced_source_numbers(r, ds)
    sources: dict[int, BrachySource] = {}
    for item in r.sequence(ds, "SourceSequence"):
        number = r.integer(item, "SourceNumber")
        strength = r.number(item, "ReferenceAirKermaRate", None)
        if number not in referenced and not (strength is not None and strength > 0):
            isotope = r.text(item, "SourceIsotopeName")
            r.note(
                f"source {number} (isotope {isotope!r}, ReferenceAirKermaRate {strength}) has "
                "no strength and no channel uses it (a spacer or dummy source); ignored"
            )
            continue
        src = _read_source(r, item)
        if src.number in sources:
            raise DicomInputError(
                f"SourceNumber {src.number} appears twice", path=r.path, tag="SourceSequence"
            )
        sources[src.number] = src
    if not sources:
        raise DicomInputError("holds no source with a strength", path=r.path, tag="SourceSequence")
    return sources


def _read_setups(
    r: _Reader, ds: Dataset, sources: Mapping[int, BrachySource], permanent: bool
) -> tuple[list[Channel], list[SeedSource], str]:
    """Channels and sources of every application setup; a setup without channels (e.g. an
    UNDEFINED setup some systems add) is skipped with a note naming it."""
    channels: list[Channel] = []
    seeds: list[SeedSource] = []
    setup_type = ""
    for setup in r.sequence(ds, "ApplicationSetupSequence"):
        setup_number = r.integer(setup, "ApplicationSetupNumber", 1)
        kind = r.text(setup, "ApplicationSetupType")
        items = r.sequence(setup, "ChannelSequence", required=False)
        if not items:
            r.note(f"application setup {setup_number} ({kind or 'no type'}) has no channels")
            continue
        setup_type = setup_type or kind
        for ch in items:
            channel, ch_seeds = _read_channel(r, ch, setup_number, sources, permanent)
            channels.append(channel)
            seeds.extend(ch_seeds)
    if not channels:
        raise DicomInputError(
            "no application setup has a channel", path=r.path, tag="ChannelSequence"
        )
    return channels, seeds, setup_type


def read_rtplan(path: str | os.PathLike) -> BrachyPlan:
    """Read a brachytherapy RT Plan (ours or another system's) into a :class:`BrachyPlan`.

    A photon/proton plan (Beam Sequence, no Application Setup Sequence) raises
    :class:`DicomInputError` "not a brachytherapy plan".  Every problem names the file and
    tag; non-conformant but usable encodings warn (:class:`DicomConformanceWarning`) and
    are listed in ``BrachyPlan.warnings``.  The input file is never modified.
    """
    p = Path(path)
    ds = read_dataset(p, modality="RTPLAN")
    r = _Reader(p)
    if "ApplicationSetupSequence" not in ds or "BrachyTreatmentType" not in ds:
        kind = "it has a Beam Sequence" if "BeamSequence" in ds else "no brachy setup"
        raise DicomInputError(
            f"not a brachytherapy plan ({kind}; no Application Setup Sequence / "
            "BrachyTreatmentType)",
            path=p,
            tag="ApplicationSetupSequence",
        )
    technique = r.text(ds, "BrachyTreatmentTechnique").upper()
    treatment_type = r.text(ds, "BrachyTreatmentType").upper()
    permanent = technique == "PERMANENT"

    sources = _read_sources(r, ds)
    channels, seeds, setup_type = _read_setups(r, ds, sources, permanent)

    prescription = None
    for dref in r.sequence(ds, "DoseReferenceSequence", required=False):
        if r.text(dref, "DoseReferenceType").upper() == "TARGET":
            prescription = r.number(dref, "TargetPrescriptionDose", None)
            if prescription is not None and not prescription > 0:
                raise DicomInputError(
                    f"a prescription must be > 0 Gy, got {prescription:g}",
                    path=p,
                    tag="TargetPrescriptionDose",
                )
            if prescription is not None:
                break
    total_kerma = _total_reference_air_kerma(r, ds)
    struct_uid = None
    refs = r.sequence(ds, "ReferencedStructureSetSequence", required=False)
    if refs:
        struct_uid = r.text(refs[0], "ReferencedSOPInstanceUID") or None
    for note in r.notes:
        warnings.warn(note, DicomConformanceWarning, stacklevel=2)
    return BrachyPlan(
        seeds=tuple(seeds),
        sources=tuple(sources.values()),
        technique=technique,
        treatment_type=treatment_type,
        label=r.text(ds, "RTPlanLabel"),
        name=r.text(ds, "RTPlanName"),
        prescription_dose_gy=prescription,
        referenced_structure_set_uid=struct_uid,
        application_setup_type=setup_type or "OTHER",
        channels=tuple(channels),
        frame_of_reference_uid=r.text(ds, "FrameOfReferenceUID"),
        sop_instance_uid=r.text(ds, "SOPInstanceUID"),
        path=p,
        warnings=tuple(r.notes),
        total_reference_air_kerma=total_kerma,
    )


def _total_reference_air_kerma(r: _Reader, ds: Dataset) -> float | None:
    """TotalReferenceAirKerma (Type 1 in each Application Setup, PS3.3 C.8.8.15) summed over
    the setups that give one; None if none does."""
    values = [
        r.number(setup, "TotalReferenceAirKerma", None)
        for setup in r.sequence(ds, "ApplicationSetupSequence")
    ]
    given = [v for v in values if v is not None]
    return float(sum(given)) if given else None
