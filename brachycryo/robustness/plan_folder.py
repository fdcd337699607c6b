"""Read what the robustness evaluation needs from a ``brachycryo plan`` / ``demo`` folder.

* the seeds (positions, axes, strengths) from the RTPLAN (``RP.*.dcm``);
* each seed's needle (entry on the skin, direction) from ``needles.csv``: a seed belongs to
  the needle that lists its position (the CSV rounds to 0.1 mm);
* the seed-target zones (``<lesion>_SeedTarget`` of ``RS.zones.dcm``) and the high-risk
  sub-zones (``<lesion>_<ROI>``, listed under ``lesions.<lesion>.high_risk``) with their
  own prescriptions, and the OAR limits, from ``metrics.json``; the OARs' contours from
  the case's structure set (``case/RS*.dcm``).

Each zone and OAR is sampled on a regular lattice over its bounding box: the centres of the
voxels the ROI touches, each weighted by the volume of the ROI in it
(:func:`brachycryo.dicom_io.rasterize.roi_fraction`).  A structure that would have more than
``max_points`` points on the ``spacing_mm`` lattice is sampled on a coarser lattice instead
(spacing raised by the cube root of the excess, at least ``COARSEN_STEP``, until it has at
most ``max_points``), its points sharing out the volume found on the requested lattice: a regular
lattice is a systematic sample, whose volume-fraction error falls faster with the point count
than a random subsample's, and it has no random seed.  The dose of every scenario is computed
at every point, so the point count sets the cost; ``benchmarks/robust_demo.py`` measures what
the coarser sampling changes in the demo's probabilities and bands against 2 mm sampling.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brachycryo.core.errors import ConfigError, DataModelError, StructureError
from brachycryo.core.grid import Grid
from brachycryo.core.seeds import Seeds
from brachycryo.dicom_io.rasterize import roi_fraction
from brachycryo.dicom_io.rtplan import read_rtplan
from brachycryo.dicom_io.rtstruct import ROI, read_rtstruct

__all__ = ["OarLimit", "PlanInputs", "SampledStructure", "read_plan_folder", "sample_roi"]

#: Position match between the RTPLAN and needles.csv (the CSV has 0.1 mm: ≤ 0.087 mm off).
NEEDLE_MATCH_MM = 0.15
#: Smallest factor by which the lattice of a structure with too many points is coarsened.
COARSEN_STEP = 1.1
#: Sample points per structure at most (``--max-points``): the demo's 1,000 scenarios within
#: the issue's 3 min on two cores (``benchmarks/robust_demo.py``).
MAX_POINTS = 6000


@dataclass(frozen=True)
class SampledStructure:
    """A zone or OAR: its sample points (mm) and the volume (cm³) each stands for."""

    name: str
    points_mm: np.ndarray
    point_cc: np.ndarray

    @property
    def volume_cc(self) -> float:
        return float(self.point_cc.sum())


@dataclass(frozen=True)
class OarLimit:
    """An OAR limit of the plan (metrics.json ``constraints``): ``metric`` ≤ ``limit``."""

    roi: str
    metric: str
    limit: float


@dataclass(frozen=True)
class PlanInputs:
    """The implant as planned, its needles, and the structures to evaluate."""

    seeds: Seeds
    seed_needle: np.ndarray  # (n_seeds,) index into the needle arrays
    needle_ids: np.ndarray  # (n_needles,) needle numbers of needles.csv
    needle_entry_mm: np.ndarray  # (n_needles, 3)
    needle_direction: np.ndarray  # (n_needles, 3) unit
    seed_model: str
    zones: tuple[SampledStructure, ...]
    zone_prescription_gy: tuple[float, ...]
    oars: dict[str, SampledStructure]
    limits: tuple[OarLimit, ...]


@dataclass(frozen=True)
class _Needle:
    number: int
    entry_mm: np.ndarray
    direction: np.ndarray
    seeds_mm: np.ndarray


def _read_needles(path: Path) -> list[_Needle]:
    if not path.is_file():
        raise ConfigError(
            f"{path}: no needle list (needles.csv) in the plan folder", key="needles.csv"
        )
    out = []
    with path.open(newline="") as f:
        for row_no, row in enumerate(csv.DictReader(f), start=2):
            try:
                entry = np.array([float(row[f"entry_{a}_mm"]) for a in "xyz"])
                direction = np.array([float(row[f"dir_{a}"]) for a in "xyz"])
                seeds = [[float(v) for v in p.split()] for p in row["seed_positions_mm"].split(";")]
                number = int(row["needle_id"])
            except (KeyError, ValueError, TypeError, AttributeError) as exc:
                raise ConfigError(f"{path} row {row_no}: {exc!r}", key="needles.csv") from exc
            norm = float(np.linalg.norm(direction))
            if not np.isfinite(norm) or norm == 0 or np.shape(seeds)[-1:] != (3,):
                raise ConfigError(
                    f"{path} row {row_no}: bad direction or seed list", key="needles.csv"
                )
            out.append(_Needle(number, entry, direction / norm, np.array(seeds, dtype=float)))
    if not out:
        raise ConfigError(f"{path}: no needles listed", key="needles.csv")
    return out


def _assign_needles(seeds: Seeds, needles: list[_Needle], path: Path) -> np.ndarray:
    listed = np.concatenate([n.seeds_mm for n in needles])
    owner = np.concatenate([np.full(len(n.seeds_mm), i) for i, n in enumerate(needles)])
    out = np.empty(len(seeds), dtype=int)
    for s, p in enumerate(seeds.positions_mm):
        dist = np.linalg.norm(listed - p, axis=1)
        k = int(np.argmin(dist))
        if dist[k] > NEEDLE_MATCH_MM:
            raise DataModelError(
                f"{path}: seed {s + 1} at {np.round(p, 2).tolist()} mm is on no needle of the list "
                f"(nearest listed seed {dist[k]:.2f} mm away)"
            )
        out[s] = owner[k]
    return out


def _structure_set(folder: Path, pattern: str, what: str):
    found = sorted(folder.glob(pattern))
    if not found:
        raise ConfigError(f"{folder}: no {what} ({pattern})", key=pattern)
    return read_rtstruct(found[0])


def sample_roi(roi: ROI, spacing_mm: float, max_points: int) -> SampledStructure:
    """The ROI's sample points on a ``spacing_mm`` lattice over its bounding box, or on the
    first coarser lattice that gives at most ``max_points`` (module docstring)."""
    pts = (
        np.concatenate([c.points_mm for c in roi.closed_contours]) if roi.closed_contours else None
    )
    if pts is None:
        raise StructureError("has no closed contours to sample", roi=roi.name)
    spacing = float(spacing_mm)
    volume_cc = None
    while True:
        # sub-voxel sampling of the occupancy at least as fine as on the requested lattice
        supersample = math.ceil(2.0 * spacing / spacing_mm - 1e-9)
        points, cc = _lattice_sample(roi, pts, spacing, supersample)
        if points.shape[0] == 0:
            raise StructureError(f"covers no voxel of a {spacing:g} mm sampling lattice",
                                 roi=roi.name)  # fmt: skip
        if volume_cc is None:
            volume_cc = float(cc.sum())  # on the requested lattice
        if points.shape[0] <= max_points:
            # a coarse lattice's occupancies miss its volume by a few per cent on small
            # structures: its points share out the volume found on the requested lattice
            return SampledStructure(roi.name, points, cc * (volume_cc / float(cc.sum())))
        spacing *= max(COARSEN_STEP, 0.98 * (points.shape[0] / max_points) ** (1.0 / 3.0))


def _lattice_sample(roi: ROI, pts: np.ndarray, spacing_mm: float, supersample: int):
    lo = pts.min(axis=0) - 2.0 * spacing_mm
    hi = pts.max(axis=0) + 2.0 * spacing_mm
    grid = Grid.from_bounds(lo, hi, spacing_mm)
    frac = roi_fraction(roi, grid, supersample=supersample)
    inside = frac > 0
    points = grid.voxel_centres_mm()[inside]
    cc = frac[inside].astype(float) * grid.voxel_volume_mm3 / 1000.0
    return points, cc


def _metrics(folder: Path) -> dict:
    path = folder / "metrics.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}", key="metrics.json") from exc
    if not isinstance(doc, dict) or "lesions" not in doc or "seed_model" not in doc:
        raise ConfigError(
            f"{path}: not a plan's metrics (no lesions / seed_model)", key="metrics.json"
        )
    return doc


def _zone_targets(doc: dict, path: Path) -> list[tuple[str, float]]:
    out = []
    for lesion, block in doc["lesions"].items():
        seeds = block.get("seeds") if isinstance(block, dict) else None
        if not seeds:
            continue
        try:
            out.append((str(seeds["target"]), float(block["prescription_gy"])))
            subs = block.get("high_risk", [])
            out += [(str(h["zone"]), float(h["prescription_gy"])) for h in subs]
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{path}: lesions.{lesion}: {exc!r}", key=f"lesions.{lesion}"
            ) from exc
    if not out:
        raise ConfigError(f"{path}: no lesion has seeds", key="lesions")
    return out


def _limits(doc: dict, path: Path) -> tuple[OarLimit, ...]:
    out = []
    for i, c in enumerate(doc.get("constraints", [])):
        try:
            out.append(OarLimit(str(c["roi"]), str(c["metric"]), float(c["limit"])))
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(
                f"{path}: constraints[{i}]: {exc!r}", key=f"constraints[{i}]"
            ) from exc
    return tuple(out)


def read_plan_folder(
    folder: str | Path, *, spacing_mm: float = 2.0, max_points: int = MAX_POINTS
) -> PlanInputs:
    """Everything :func:`brachycryo.robustness.scenarios.evaluate_robustness` needs."""
    root = Path(folder)
    if not root.is_dir():
        raise ConfigError(f"{root}: not a folder", key="PLAN_DIR")
    plans = sorted(root.glob("RP*.dcm"))
    if not plans:
        raise ConfigError(
            f"{root}: no RTPLAN (RP*.dcm): a plan without seeds has no robustness", key="RP"
        )
    plan = read_rtplan(plans[0])
    seeds = plan.to_seeds()
    needles = _read_needles(root / "needles.csv")
    seed_needle = _assign_needles(seeds, needles, root / "needles.csv")
    used = sorted(set(seed_needle.tolist()))
    remap = {old: new for new, old in enumerate(used)}
    doc = _metrics(root)
    targets = _zone_targets(doc, root / "metrics.json")
    zones_rs = _structure_set(root, "RS.zones.dcm", "zones structure set")
    zones = tuple(sample_roi(zones_rs.roi(name), spacing_mm, max_points) for name, _ in targets)
    limits = _limits(doc, root / "metrics.json")
    oars: dict[str, SampledStructure] = {}
    if limits:
        case_rs = _structure_set(root / "case", "RS*.dcm", "case structure set")
        for lim in limits:
            if lim.roi not in oars:
                oars[lim.roi] = sample_roi(case_rs.roi(lim.roi), spacing_mm, max_points)
    return PlanInputs(
        seeds=seeds,
        seed_needle=np.array([remap[i] for i in seed_needle], dtype=int),
        needle_ids=np.array([needles[i].number for i in used], dtype=int),
        needle_entry_mm=np.array([needles[i].entry_mm for i in used]),
        needle_direction=np.array([needles[i].direction for i in used]),
        seed_model=str(doc["seed_model"]),
        zones=zones,
        zone_prescription_gy=tuple(rx for _, rx in targets),
        oars=oars,
        limits=limits,
    )
