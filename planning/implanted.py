"""Seeds already in the patient: the sequential seeds-then-cryo arm (``[case] implanted_plan``).

The trial this engine serves (SEED-CRYO) implants I-125 seeds first and ablates the core
later.  The plan of the later session reads the implanted seeds from an RTPLAN (ours, or the
one ``brachycryo postimplant`` writes from the post-implant CT) and treats them as fixed
sources: their dose (TG-43U1, each seed with the model and air-kerma strength of its
source in the RTPLAN) counts in every zone's coverage, and the cryo probes keep
``[cryo] seed_clearance_mm`` from every seed and from the seeds' needle tracks where the
RTPLAN holds them (a channel with two or more seeds: the segment from its first to its last
seed; ``postimplant`` writes one channel per detected seed, so there no track is known).

Checks, each a :class:`~brachycryo.core.errors.BrachyCryoError` naming the file: the RTPLAN
shares the planning CT's Frame of Reference (:class:`FrameOfReferenceError`, tag
``FrameOfReferenceUID``); every seed lies inside the CT (:class:`GeometryError`, naming the
seeds); the sources are I-125 seeds of a known model (:class:`DataModelError`).

Default clearance, 5 mm (:data:`SEED_CLEARANCE_MM`), our own budget, not a published
value: an I-125 seed is 4.5 mm long (model 6711: 4.5 mm x 0.8 mm; Rivard et al., TG-43U1,
Med Phys 31:633, 2004), so a probe passing a seed's centre in any orientation must clear
its half-length, 2.25 mm, plus the probe's radius (1.2 mm for a 2.4 mm probe, 0.7 mm for
17G); about 1.5 mm is left for the seed's localisation on CT under its metal streaks and
for its displacement since the CT (loose seeds move after implantation, mostly along their
needle tracks: Wang et al., J Contemp Brachytherapy 7:203-210, 2015).  A probe pushed
through a seed's position would push the seed and lose its dose where it was planned.

**New seeds beside the implanted ones** (``[prescription] add_seeds = true``): the implanted
seeds' dose is a fixed background in the seed optimiser (every zone's coverage, every OAR
limit: :mod:`brachycryo.planning.optimize`), so new seeds go only where the implanted ones
leave the goals unmet.  Candidates for them (:func:`clear_of_implanted`):

* no new seed closer than ``[needles] seed_spacing_mm`` (default 10 mm) to an implanted
  seed: the planner never lets two of its own seeds on a needle stand closer, and a new seed
  nearer an implanted one would make the hot spot that spacing rule prevents, at a distance
  that is itself uncertain by 1-2 mm (the implanted seed's localisation on CT and its
  displacement since the CT; Wang et al. 2015, above);
* no new needle passing within :data:`NEW_NEEDLE_SEED_CLEARANCE_MM` (3 mm) of an implanted
  seed on its way to a new seed: the seed's half-length, 2.25 mm (TG-43U1, above), plus an
  18G needle's radius, 0.64 mm, rounded up; a needle nearer than that would hit the seed
  (and push it) for some orientation of the seed.

If the implanted seeds alone already exceed an OAR limit, no seed can be added within it:
:func:`refuse_background_over_limits` raises
:class:`~brachycryo.core.errors.InfeasiblePlanError` naming the limit.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brachycryo.core.errors import (
    DataModelError,
    FrameOfReferenceError,
    GeometryError,
    InfeasiblePlanError,
)
from brachycryo.core.grid import Grid
from brachycryo.core.seeds import Seeds
from brachycryo.dicom_io.ct_series import CTImage
from brachycryo.planning.case import PlanningCase
from brachycryo.planning.influence import OarDvhLimit, OptimiserProblem
from brachycryo.planning.needles import Candidates

#: Default ``[cryo] seed_clearance_mm`` (see the module docstring for the budget).
SEED_CLEARANCE_MM = 5.0
#: Closest approach of a new needle (skin entry to a new seed) to an implanted seed, mm:
#: half a 4.5 mm seed plus an 18G needle's radius, rounded up (module docstring).
NEW_NEEDLE_SEED_CLEARANCE_MM = 3.0

_I125_NAMES = {"I-125", "I125", "125I"}


@dataclass(frozen=True)
class ImplantedSeeds:
    """The seeds of ``path`` as fixed sources of the plan.

    ``seeds``: positions (LPS mm), axes and S_K (U) of every seed; ``models``: the seed
    model of each; ``tracks_mm``: (n, 2, 3) needle-track segments where the RTPLAN holds
    them; ``dose_gy``: their total (permanent-implant) dose on the planning grid.
    """

    path: Path
    seeds: Seeds
    models: tuple[str, ...]
    tracks_mm: np.ndarray
    dose_gy: np.ndarray
    sop_instance_uid: str
    frame_of_reference_uid: str

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)


def _check_frame(path: Path, plan_uid: str, ct: CTImage) -> None:
    if plan_uid != ct.frame_of_reference_uid:
        raise FrameOfReferenceError(
            f"{path}: implanted plan (FrameOfReferenceUID) is in Frame of Reference "
            f"{plan_uid or '(none given)'!s}, the planning CT in {ct.frame_of_reference_uid}: "
            "register the post-implant CT to the planning CT and write the seeds in its frame"
        )


def _check_inside(path: Path, positions_mm: np.ndarray, ct_grid: Grid) -> None:
    outside = np.nonzero(~ct_grid.contains_mm(positions_mm, margin_voxels=0.5))[0]
    if outside.size:
        lo, hi = ct_grid.bounds_mm()
        first = np.round(positions_mm[outside[0]], 1).tolist()
        raise GeometryError(
            f"{path}: {outside.size} implanted seed(s) lie outside the planning CT (seed "
            f"{int(outside[0]) + 1} at {first} mm; the CT spans {np.round(lo, 1).tolist()} to "
            f"{np.round(hi, 1).tolist()} mm, LPS); numbers: {(outside + 1).tolist()[:10]}"
        )


def needle_tracks_mm(positions_mm: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """(n, 2, 3): for each channel with two or more seeds, the segment between its two
    seeds farthest apart (the part of the needle track the seeds mark)."""
    out = []
    for ch in np.unique(channels):
        pts = positions_mm[channels == ch]
        if len(pts) < 2:
            continue
        d = np.linalg.norm(pts[:, None] - pts[None], axis=-1)
        a, b = np.unravel_index(int(np.argmax(d)), d.shape)
        out.append((pts[a], pts[b]))
    return np.asarray(out, dtype=float).reshape(-1, 2, 3)


def load_implanted(
    path: Path, ct: CTImage, grid: Grid, *, backend: str, formalism: str
) -> ImplantedSeeds:
    """Read, check and dose the implanted seeds of ``path`` on the planning ``grid``."""
    from brachycryo.dicom_io.rtplan import read_rtplan
    from brachycryo.dose_kernels import dose_on_grid, load_seed_model

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # conformance notes stay in plan.warnings
        plan = read_rtplan(path)
    if plan.n_seeds == 0:
        raise DataModelError(f"{path}: the implanted plan holds no seed positions")
    _check_frame(path, plan.frame_of_reference_uid, ct)
    positions = np.asarray(plan.positions_mm, dtype=float)
    _check_inside(path, positions, ct.grid)
    by_number = {src.number: src for src in plan.sources}
    seeds = plan.to_seeds()
    models: list[str] = []
    dose = np.zeros(grid.shape)
    for number, src in by_number.items():
        if src.isotope.replace(" ", "").upper() not in _I125_NAMES:
            raise DataModelError(
                f"{path}: source {number} is {src.isotope!r}; the implanted seeds must be I-125"
            )
        if not src.model:
            raise DataModelError(f"{path}: source {number} names no seed model (SourceModelID)")
    numbers = np.array([s.source_number for s in plan.seeds])
    models = [by_number[int(n)].model for n in numbers]
    for number, src in by_number.items():
        sel = numbers == number
        if not sel.any():
            continue
        subset = Seeds(seeds.positions_mm[sel], seeds.sk_u[sel], seeds.directions[sel])
        dose += dose_on_grid(
            subset, grid, load_seed_model(src.model), backend=backend, formalism=formalism,
            dtype=np.float64,
        )  # fmt: skip
    return ImplantedSeeds(
        path=path,
        seeds=seeds,
        models=tuple(models),
        tracks_mm=needle_tracks_mm(positions, plan.channel_numbers),
        dose_gy=dose,
        sop_instance_uid=plan.sop_instance_uid,
        frame_of_reference_uid=plan.frame_of_reference_uid,
    )


def segment_point_distance_mm(a: np.ndarray, b: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance from each of ``points`` (n, 3) to the segment a-b (mm)."""
    ab = b - a
    length2 = float(ab @ ab)
    t = np.zeros(len(points)) if length2 == 0 else np.clip((points - a) @ ab / length2, 0, 1)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def segment_segment_distance_mm(
    p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray
) -> float:
    """Closest approach (mm) of segments p0-p1 and q0-q1, exact (Ericson, Real-Time
    Collision Detection, 2005, section 5.1.9: clamped closest points of two segments)."""
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a, e, f = float(d1 @ d1), float(d2 @ d2), float(d2 @ r)
    eps = 1e-12
    if a <= eps and e <= eps:
        return float(np.linalg.norm(r))
    if a <= eps:
        s, t = 0.0, float(np.clip(f / e, 0.0, 1.0))
    else:
        c = float(d1 @ r)
        if e <= eps:
            s, t = float(np.clip(-c / a, 0.0, 1.0)), 0.0
        else:
            b = float(d1 @ d2)
            denom = a * e - b * b
            s = float(np.clip((b * f - c * e) / denom, 0.0, 1.0)) if denom > eps else 0.0
            t = (b * s + f) / e
            if t < 0.0:
                s, t = float(np.clip(-c / a, 0.0, 1.0)), 0.0
            elif t > 1.0:
                s, t = float(np.clip((b - c) / a, 0.0, 1.0)), 1.0
    return float(np.linalg.norm(p0 + s * d1 - (q0 + t * d2)))


def clear_of_implanted(
    candidates: Candidates, implanted_mm: np.ndarray, *, min_seed_distance_mm: float
) -> tuple[Candidates, dict[str, int]]:
    """``candidates`` less every new seed closer than ``min_seed_distance_mm`` to an
    implanted seed (``implanted_mm``, (n, 3)) or whose needle, from its skin entry to the
    seed, passes within :data:`NEW_NEEDLE_SEED_CLEARANCE_MM` of one (module docstring);
    and how many each rule removed.  Tracks keep their numbers; exclusions are renumbered.
    :class:`InfeasiblePlanError` when no candidate is left."""
    pos = candidates.positions_mm
    near = np.zeros(candidates.n, dtype=bool)
    crossing = np.zeros(candidates.n, dtype=bool)
    if len(implanted_mm):
        d = np.linalg.norm(pos[:, None, :] - implanted_mm[None, :, :], axis=-1)
        near = d.min(axis=1) < min_seed_distance_mm
        for i in np.nonzero(~near)[0]:
            entry = candidates.tracks[int(candidates.needle[i])].entry_mm
            track = segment_point_distance_mm(np.asarray(entry, float), pos[i], implanted_mm)
            crossing[i] = track.min() < NEW_NEEDLE_SEED_CLEARANCE_MM
    removed = {
        f"within {min_seed_distance_mm:g} mm of an implanted seed": int(near.sum()),
        f"needle within {NEW_NEEDLE_SEED_CLEARANCE_MM:g} mm of an implanted seed": int(
            crossing.sum()
        ),
    }
    keep = ~(near | crossing)
    if not keep.any():
        raise InfeasiblePlanError(
            f"no new seed position is left beside the {len(implanted_mm)} implanted seeds: "
            f"every candidate lies within {min_seed_distance_mm:g} mm ([needles] "
            f"seed_spacing_mm) of one, or its needle passes within "
            f"{NEW_NEEDLE_SEED_CLEARANCE_MM:g} mm of one",
            binding=["clearance from the implanted seeds"],
        )
    index = np.full(candidates.n, -1, dtype=np.int64)
    index[keep] = np.arange(int(keep.sum()))
    pairs = index[candidates.exclusions.reshape(-1, 2)]
    pairs = pairs[np.all(pairs >= 0, axis=1)]
    kept = Candidates(
        positions_mm=pos[keep],
        directions=candidates.directions[keep],
        needle=candidates.needle[keep],
        depth_mm=candidates.depth_mm[keep],
        tracks=candidates.tracks,
        exclusions=pairs.reshape(-1, 2),
        rejected_tracks=candidates.rejected_tracks,
    )
    return kept, removed


def refuse_background_over_limits(
    case: PlanningCase,
    grid: Grid,
    dose_gy: np.ndarray,
    problem: OptimiserProblem,
    limits: tuple[OarDvhLimit, ...],
) -> None:
    """:class:`InfeasiblePlanError` naming every OAR limit the implanted seeds' dose alone
    (``dose_gy`` on ``grid``) already exceeds: on the contour DVH, as the plan's limits are
    checked, or on the optimiser's points for the limit (the OAR's voxels, and for a Dmax
    limit one voxel around them), where no new seed could then be added.
    ``limits[n]`` is the limit of ``problem.constraints[n]``, whose rows carry the
    background (:func:`brachycryo.planning.influence.with_background`)."""
    from brachycryo.planning.selection import limits_on_dvh

    _, on_dvh = limits_on_dvh(case, grid, dose_gy, limits)
    found = {
        e.name: f"{e.name} = {e.value_gy:.2f} Gy on its DVH > {e.limit_gy:g} Gy" for e in on_dvh
    }
    for c, lim in zip(problem.constraints, limits, strict=True):
        base = c.base_gy()
        if lim.name not in found and c.excess_cc(base) > c.allowed_cc() + 1e-9:
            found[lim.name] = (
                f"{lim.name}: {float(base.max()):.2f} Gy at the voxels it is optimised on > "
                f"{lim.term.limit_gy:g} Gy"
            )
    if found:
        raise InfeasiblePlanError(
            "add_seeds = true, but the implanted seeds' dose alone already exceeds "
            + "; ".join(found.values())
            + ": no new seed can be added within that limit (plan with add_seeds = false)",
            binding=list(found),
        )
