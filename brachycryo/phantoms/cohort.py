"""Synthetic seed-implant cohorts: phantom patients with RTSTRUCT, RTPLAN and RTDOSE.

Each patient is :func:`brachycryo.phantoms.build_phantom` of its own phantom seed (so the
anatomy and tumour shape differ from patient to patient), written as a CT series and an
RTSTRUCT (:func:`brachycryo.phantoms.write_phantom`), with a simple permanent I-125 implant
of the index tumour and its TG-43 dose:

* **seeds** - on a regular grid of ``seed_spacing_mm`` (needles along +z, the cranio-caudal
  direction of a template implant) at the voxel centres of the index tumour's mask,
  one needle per (x, y) column;
* **strength** - every seed has the same air-kerma strength, chosen so that the D90 of
  the tumour (read from the dose-grid voxels inside the tumour mask) is
  ``d90_over_rx`` times the prescription; dose is linear in S_K (AAPM TG-43U1, Rivard
  et al., Med. Phys. 31:633, 2004, eq. 1), so one dose calculation at 1 U is rescaled;
* **dose** - :func:`brachycryo.dose_kernels.dose_on_grid` (line-source formalism, total dose of a
  permanent implant) on a box around the tumour (``dose_margin_mm``) at
  ``dose_spacing_mm``, written as an RTDOSE that references the RTPLAN; the RTPLAN
  references the RTSTRUCT and carries the prescription.

The files a patient folder holds: ``CT/``, ``RS.phantom.dcm``, ``RP.<label>.dcm``,
``RD.<label>.dcm``.  Everything but the UIDs and creation times is deterministic given the
phantom seed.  Used by the ``dvh-batch`` tests and ``benchmarks/cohort_batch.py``.
"""

from __future__ import annotations

import datetime as _dt
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brachycryo.core.errors import ConfigError
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, report, scaled
from brachycryo.core.seeds import Seeds
from brachycryo.dicom_io.rtdose import write_rtdose
from brachycryo.dicom_io.rtplan import BrachySource, seed_implant, write_seed_rtplan
from brachycryo.dose_kernels import dose_on_grid, load_seed_model
from brachycryo.phantoms import PhantomCase, build_phantom, write_phantom

#: A common I-125 LDR prescription (TG-137, Nath et al., Med Phys 36:5310, 2009: 145 Gy
#: monotherapy for the prostate); any positive value works for the synthetic cohort.
DEFAULT_PRESCRIPTION_GY = 145.0


@dataclass(frozen=True)
class CohortPatientFiles:
    """The files written for one synthetic patient."""

    folder: Path
    patient_id: str
    rtstruct: Path
    rtplans: tuple[Path, ...]
    rtdoses: tuple[Path, ...]
    n_seeds: int


def seed_grid_in_mask(
    mask: np.ndarray, grid: Grid, *, spacing_mm: float
) -> tuple[np.ndarray, list[int]]:
    """Seed positions (n, 3) on a ``spacing_mm`` lattice inside ``mask`` and needle numbers.

    The lattice is anchored at the mask's bounding-box centre; a lattice point is kept when
    the nearest voxel of ``grid`` is inside the mask.  Needles (numbered from 1) are the
    lattice's (x, y) columns, so seeds of one needle share x and y and differ in z.
    """
    if spacing_mm <= 0:
        raise ConfigError(f"must be > 0, got {spacing_mm}", key="seed_spacing_mm")
    idx = np.argwhere(mask)  # (k, j, i)
    if idx.size == 0:
        raise ConfigError("the target mask is empty; no seeds can be placed", key="target")
    pts = grid.ijk_to_mm(idx[:, ::-1].astype(float))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    centre = (lo + hi) / 2.0
    axes = [
        centre[a] + spacing_mm * np.arange(-(n := int((hi[a] - lo[a]) / 2 // spacing_mm)), n + 1)
        for a in range(3)
    ]
    xx, yy, zz = np.meshgrid(*axes, indexing="ij")
    lattice = np.stack([xx.ravel(), yy.ravel(), zz.ravel()], axis=1)
    inside = grid.sample_nearest(mask, lattice, outside=False).astype(bool)
    pos = lattice[inside]
    columns: dict[tuple[float, float], int] = {}
    needles = []
    for p in pos:
        key = (round(float(p[0]), 6), round(float(p[1]), 6))
        needles.append(columns.setdefault(key, len(columns) + 1))
    return pos, needles


def _dose_grid(mask: np.ndarray, grid: Grid, margin_mm: float, spacing_mm: float) -> Grid:
    idx = np.argwhere(mask)
    pts = grid.ijk_to_mm(idx[:, ::-1].astype(float))
    return Grid.from_bounds(pts.min(axis=0) - margin_mm, pts.max(axis=0) + margin_mm, spacing_mm)


def _d90_voxels(dose_gy: np.ndarray, dose_grid: Grid, mask: np.ndarray, grid: Grid) -> float:
    """D90 of the mask's voxels (voxel-centre sampling of the dose grid; for normalising)."""
    idx = np.argwhere(mask)
    pts = grid.ijk_to_mm(idx[:, ::-1].astype(float))
    d = dose_grid.sample_nearest(dose_gy, pts, outside=0.0)
    return float(np.percentile(d, 10.0))


def write_cohort_patient(
    folder: str | os.PathLike,
    *,
    phantom_seed: int,
    site: str = "abdomen",
    spacing_mm: tuple[float, float, float] = (4.0, 4.0, 5.0),
    seed_spacing_mm: float = 10.0,
    dose_spacing_mm: float = 3.0,
    dose_margin_mm: float = 20.0,
    prescription_gy: float = DEFAULT_PRESCRIPTION_GY,
    d90_over_rx: float | Sequence[float] = 1.1,
    seed_model: str = "6711",
    case: PhantomCase | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> CohortPatientFiles:
    """Write one synthetic patient (CT, RTSTRUCT, one RTPLAN + RTDOSE per D90 ratio).

    ``d90_over_rx`` is one ratio or a sequence of them: each gives one plan (its own
    RTPLAN and RTDOSE, e.g. two plans of one patient), with the seed strength scaled so the
    tumour's D90 is that ratio times ``prescription_gy``.
    """
    out = Path(folder)
    ratios = (
        tuple(d90_over_rx) if isinstance(d90_over_rx, Sequence | np.ndarray) else (d90_over_rx,)
    )
    if not ratios or any(not (r > 0) for r in ratios):
        raise ConfigError(f"must be positive, got {d90_over_rx}", key="d90_over_rx")
    if case is None:
        case = build_phantom(seed=phantom_seed, site=site, spacing_mm=spacing_mm)
    report(progress, 0.2, "phantom built")
    files = write_phantom(out, case, overwrite=overwrite)
    report(progress, 0.5, "CT and RTSTRUCT written")
    mask = case.masks[case.index_tumour]
    pos, needles = seed_grid_in_mask(mask, case.grid, spacing_mm=seed_spacing_mm)
    seeds_1u = Seeds(pos, 1.0)  # along the default direction, +z: the needles' axis
    model = load_seed_model(seed_model)
    dgrid = _dose_grid(mask, case.grid, dose_margin_mm, dose_spacing_mm)
    dose_1u = dose_on_grid(
        seeds_1u,
        dgrid,
        model,
        progress=scaled(progress, 0.5, 0.9),
    )
    d90_1u = _d90_voxels(dose_1u, dgrid, mask, case.grid)
    rtplans, rtdoses = [], []
    reference = _dt.datetime(2024, 1, 1, 9, 0, 0)
    for n, ratio in enumerate(ratios, start=1):
        sk_u = float(ratio) * prescription_gy / d90_1u
        source = BrachySource(
            sk_u=sk_u,
            reference_datetime=reference,
            isotope="I-125",
            half_life_days=model.half_life_h / 24.0,
            model=model.name,
            source_type="LINE",
            active_length_mm=model.active_length_mm,
        )
        label = f"SEEDS{n}"
        plan = seed_implant(
            pos,
            needles,
            source=source,
            directions=seeds_1u.directions,
            label=label,
            name=f"synthetic implant {n} (D90 {ratio:g} x Rx)",
            prescription_dose_gy=prescription_gy,
            referenced_structure_set_uid=files.structures.sop_instance_uid,
        )
        rp = out / f"RP.{label.lower()}.dcm"
        plan_uid = write_seed_rtplan(
            rp, plan, context=files.ct.context, series_number=200 + n, overwrite=overwrite
        )
        rd = out / f"RD.{label.lower()}.dcm"
        write_rtdose(
            rd,
            (dose_1u * np.float32(sk_u)).astype(np.float32),
            dgrid,
            context=files.ct.context,
            referenced_plan_uid=plan_uid,
            series_number=300 + n,
            overwrite=overwrite,
        )
        rtplans.append(rp)
        rtdoses.append(rd)
    report(progress, 1.0, "plan and dose written")
    return CohortPatientFiles(
        folder=out,
        patient_id=files.ct.context.patient_id,
        rtstruct=files.rtstruct,
        rtplans=tuple(rtplans),
        rtdoses=tuple(rtdoses),
        n_seeds=len(pos),
    )


def write_cohort(
    folder: str | os.PathLike,
    n_patients: int,
    *,
    first_seed: int = 0,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
    **patient_options,
) -> list[CohortPatientFiles]:
    """``n_patients`` patients (phantom seeds ``first_seed`` ...) in ``folder/patient_NNN``.

    ``patient_options`` go to :func:`write_cohort_patient`.  Folder names are arbitrary:
    the cohort tools identify patients by their PatientID.
    """
    if int(n_patients) < 1:
        raise ConfigError(f"must be >= 1, got {n_patients}", key="n_patients")
    root = Path(folder)
    out = []
    for n in range(int(n_patients)):
        seed = int(first_seed) + n
        out.append(
            write_cohort_patient(
                root / f"patient_{n:03d}",
                phantom_seed=seed,
                overwrite=overwrite,
                progress=scaled(progress, n / n_patients, (n + 1) / n_patients),
                **patient_options,
            )
        )
    return out


__all__ = [
    "DEFAULT_PRESCRIPTION_GY",
    "CohortPatientFiles",
    "seed_grid_in_mask",
    "write_cohort",
    "write_cohort_patient",
]
