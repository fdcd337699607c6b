"""Candidate needle tracks and candidate seed positions along them.

* **Template** (``mode = "template"``): parallel needles along the insertion direction,
  through the holes of a square template of ``spacing_mm`` pitch, as in template-guided
  CT implants.  The template's position is chosen among shifts by thirds of the pitch
  from the seed target's centroid by what its needles reach (:func:`_best_template`).
* **Free** (``mode = "free"``): percutaneous tracks from the skin entry region: the nominal
  direction plus a cone of directions up to ``max_angle_deg`` around it, each with its own
  family of parallel tracks; a track is kept only if it enters the body through
  ``entry_roi``.

Along each track, sampled every 1 mm from the skin entry inward, the needle may not cross a
no-go structure (bone, vessels, cord, bowel): seeds are only placed between the entry and
2 mm short of the first no-go voxel.  Candidate seeds lie inside the seed target on a
lattice of ``max(5 mm, seed_spacing / 2)`` along the track; two seeds closer than
``seed_spacing_mm`` on the same needle exclude each other (``exclusions``).  Seeds keep
``clearance_mm`` from the organs at risk (``avoid``): a seed beside an OAR gives it a
dose no prescription elsewhere can justify.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from brachycryo.core.errors import InfeasiblePlanError
from brachycryo.core.grid import Grid
from brachycryo.planning.case import PlanningStructures
from brachycryo.planning.spec import PlanSpec, Vec3
from brachycryo.planning.zones import distance_outside_mm

SAMPLE_STEP_MM = 1.0
NO_GO_CLEARANCE_MM = 2.0
MIN_SEED_SPACING_MM = 5.0


@dataclass(frozen=True)
class NeedleTrack:
    """A candidate needle: skin entry point and insertion direction (unit vector)."""

    number: int
    entry_mm: np.ndarray
    direction: np.ndarray


@dataclass(frozen=True)
class Candidates:
    """Candidate seed positions; ``needle[n]`` indexes ``tracks`` for candidate n."""

    positions_mm: np.ndarray
    directions: np.ndarray
    needle: np.ndarray
    depth_mm: np.ndarray
    tracks: tuple[NeedleTrack, ...]
    exclusions: np.ndarray  # (P, 2) candidate pairs that may not both be chosen
    rejected_tracks: dict[str, int]

    @property
    def n(self) -> int:
        return int(self.positions_mm.shape[0])


def _basis(d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0, 0]) if abs(d[0]) < 0.9 else np.array([0, 1.0, 0])
    u = np.cross(d, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(d, u)


def _lookup(mask: np.ndarray, grid: Grid, pts_mm: np.ndarray) -> np.ndarray:
    return grid.sample_nearest(mask, pts_mm, outside=False)


def cone_directions(nominal: np.ndarray, max_angle_deg: float, n: int) -> list[np.ndarray]:
    """The nominal direction plus ``n - 1`` directions on a cone of ``max_angle_deg``."""
    d = nominal / np.linalg.norm(nominal)
    out = [d]
    if n <= 1 or max_angle_deg <= 0:
        return out
    u, v = _basis(d)
    a = np.radians(max_angle_deg)
    for m in range(n - 1):
        phi = 2 * np.pi * m / (n - 1)
        out.append(np.cos(a) * d + np.sin(a) * (np.cos(phi) * u + np.sin(phi) * v))
    return out


#: Template positions tried per axis: offsets of 0, 1/3 and 2/3 of the pitch from the target
#: centroid (:func:`_best_template`).
TEMPLATE_SHIFTS = 3


def _reach(
    pts: np.ndarray, part: np.ndarray, seeds_mm: np.ndarray, radius_mm: float
) -> tuple[float, int]:
    """(the smallest fraction over the target's connected parts, the count) of ``pts``
    within ``radius_mm`` of a candidate seed; ``part``: each point's connected part."""
    if seeds_mm.size == 0:
        return 0.0, 0
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(seeds_mm).query(pts, distance_upper_bound=radius_mm)
    near = np.isfinite(dist)
    per_part = np.bincount(part, weights=near) / np.maximum(np.bincount(part), 1)
    present = np.bincount(part) > 0
    return float(per_part[present].min()), int(near.sum())


def _best_template(
    d: np.ndarray,
    target: np.ndarray,
    body: np.ndarray,
    no_go: np.ndarray,
    entry_region: np.ndarray | None,
    grid: Grid,
    pitch_mm: float,
    seed_step_mm: float,
    rejected: dict[str, int],
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """The tracks of the template position (of ``TEMPLATE_SHIFTS`` squared, shifted by
    fractions of the pitch from the target centroid) whose candidate seeds reach target
    voxels best: the largest share reached of the worst-reached connected part of the
    target (each metastasis), then the most voxels reached; the first on a tie.  A voxel
    is reached within half the diagonal of a pitch x seed-step cell of a candidate seed,
    the farthest a point of a loaded cell lies from its nearest seed.

    A template fixed on the centroid puts the tracks wherever the centroid falls: a few
    voxels more or less in any target move every track, and a row of tracks that runs
    along a voxel boundary beside a no-go structure flips between clear and blocked (the
    nearest-voxel test changes side), taking the candidates under a small lesion with it.
    Choosing the position by what it reaches (as a physician slides the template) makes a
    blocked row under a lesion something the planner avoids when a shift clears it, not a
    matter of the centroid's last decimals."""
    from scipy import ndimage

    pts = grid.voxel_centres_mm()[target]
    part = ndimage.label(target, structure=np.ones((3, 3, 3), bool))[0][target]
    radius_mm = 0.5 * float(np.hypot(pitch_mm, seed_step_mm)) + 1e-6
    best: tuple[tuple[float, int], list, dict[str, int]] | None = None
    for i in range(TEMPLATE_SHIFTS):
        for j in range(TEMPLATE_SHIFTS):
            shift = (pitch_mm * i / TEMPLATE_SHIFTS, pitch_mm * j / TEMPLATE_SHIFTS)
            rej: dict[str, int] = {}
            tracks = _tracks_for_direction(
                d, target, body, no_go, entry_region, grid, pitch_mm, seed_step_mm, rej,
                shift_mm=shift, target_mm=pts,
            )  # fmt: skip
            seeds = np.concatenate([t[1] for t in tracks]) if tracks else np.zeros((0, 3))
            score = _reach(pts, part, seeds, radius_mm)
            if best is None or score > best[0]:
                best = (score, tracks, rej)
    assert best is not None
    for k, n in best[2].items():
        rejected[k] = rejected.get(k, 0) + n
    return best[1]


def _tracks_for_direction(
    d: np.ndarray,
    target: np.ndarray,
    body: np.ndarray,
    no_go: np.ndarray,
    entry_region: np.ndarray | None,
    grid: Grid,
    pitch_mm: float,
    seed_step_mm: float,
    rejected: dict[str, int],
    *,
    shift_mm: tuple[float, float] = (0.0, 0.0),
    target_mm: np.ndarray | None = None,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(entry_mm, seed positions, depths) for each usable parallel track along ``d``, the
    template centred ``shift_mm`` (along the two template axes) from the target centroid;
    ``target_mm``: the target's voxel centres when the caller has them."""
    u, v = _basis(d)
    pts = grid.voxel_centres_mm()[target] if target_mm is None else target_mm
    pu, pv = pts @ u, pts @ v
    cu, cv = pu.mean() + shift_mm[0], pv.mean() + shift_mm[1]
    au = np.arange(np.floor((pu.min() - cu) / pitch_mm), np.ceil((pu.max() - cu) / pitch_mm) + 1)
    av = np.arange(np.floor((pv.min() - cv) / pitch_mm), np.ceil((pv.max() - cv) / pitch_mm) + 1)
    corners = grid.corners_mm() @ d
    t = np.arange(corners.min(), corners.max() + SAMPLE_STEP_MM, SAMPLE_STEP_MM)
    out = []
    for a in au:
        for b in av:
            base = (cu + a * pitch_mm) * u + (cv + b * pitch_mm) * v
            line = base[None, :] + t[:, None] * d[None, :]
            in_target = _lookup(target, grid, line)
            if not in_target.any():
                continue
            in_body = _lookup(body, grid, line)
            if not in_body.any():
                rejected["outside body"] = rejected.get("outside body", 0) + 1
                continue
            entry_idx = int(np.argmax(in_body))
            entry = line[entry_idx]
            if entry_region is not None and not _lookup(entry_region, grid, entry[None])[0]:
                rejected["entry outside the entry region"] = (
                    rejected.get("entry outside the entry region", 0) + 1
                )
                continue
            blocked = _lookup(no_go, grid, line) & (np.arange(t.size) >= entry_idx)
            limit = t[int(np.argmax(blocked))] - NO_GO_CLEARANCE_MM if blocked.any() else np.inf
            ts = t[in_target & (t < limit)]
            if ts.size == 0:
                rejected["no-go structure before the target"] = (
                    rejected.get("no-go structure before the target", 0) + 1
                )
                continue
            # seed lattice along the needle, from the deepest target point outward
            lattice = np.arange(ts.max(), ts.min() - 1e-9, -seed_step_mm)
            pos = base[None, :] + lattice[:, None] * d[None, :]
            keep = _lookup(target, grid, pos)
            if not keep.any():
                continue
            out.append((entry, pos[keep], lattice[keep] - t[entry_idx]))
    return out


def _clear_of(
    grid: Grid, target: np.ndarray, avoid: Mapping[str, np.ndarray], clearance_mm: float
) -> np.ndarray:
    """``target`` less what lies within ``clearance_mm`` of any OAR of ``avoid``; when
    nothing is left, :class:`InfeasiblePlanError` naming the OARs that took it."""
    near = {
        name: distance_outside_mm(np.asarray(m, bool), grid) < clearance_mm
        for name, m in avoid.items()
        if np.asarray(m).any()
    }
    left = target.copy()
    for m in near.values():
        left &= ~m
    if left.any() or not target.any():
        return left
    names = [name for name, m in near.items() if (m & target).any()]
    raise InfeasiblePlanError(
        f"no seed position keeps {clearance_mm:g} mm from the OARs: every point of the seed "
        f"target lies within that distance of {', '.join(names)}",
        binding=["seed-OAR clearance", *names],
    )


def candidate_seeds(
    grid: Grid,
    target: np.ndarray,
    body: np.ndarray,
    *,
    no_go: np.ndarray | None = None,
    entry_region: np.ndarray | None = None,
    mode: str = "template",
    direction: Vec3 = (0.0, 1.0, 0.0),
    pitch_mm: float = 10.0,
    seed_spacing_mm: float = 10.0,
    max_angle_deg: float = 30.0,
    n_directions: int = 7,
    avoid: Mapping[str, np.ndarray] | None = None,
    clearance_mm: float = 0.0,
) -> Candidates:
    """Candidate needle tracks and seed positions covering ``target`` (see module docstring)."""
    for name, m in (("target", target), ("body", body)):
        grid.check_volume(m, name)
    if not target.any():
        raise InfeasiblePlanError("the seed target is empty: no needle can be placed",
                                  binding=["seed_target"])  # fmt: skip
    no_go = np.zeros(grid.shape, bool) if no_go is None else no_go
    step = max(MIN_SEED_SPACING_MM, seed_spacing_mm / 2.0)
    d0 = np.asarray(direction, dtype=float)
    dirs = [d0 / np.linalg.norm(d0)]
    if mode == "free":
        dirs = cone_directions(d0, max_angle_deg, n_directions)
    rejected: dict[str, int] = {}
    if avoid and clearance_mm > 0:
        target = _clear_of(grid, target, avoid, clearance_mm)
    positions: list[np.ndarray] = []
    directions: list[np.ndarray] = []
    needles: list[np.ndarray] = []
    depths: list[np.ndarray] = []
    tracks: list[NeedleTrack] = []
    for d in dirs:
        for entry, pos, dep in _best_template(
            d, target, body, no_go, entry_region if mode == "free" else None, grid,
            pitch_mm, step, rejected,
        ):  # fmt: skip
            number = len(tracks)
            tracks.append(NeedleTrack(number + 1, entry, d.copy()))
            positions.append(pos)
            directions.append(np.repeat(d[None, :], len(pos), axis=0))
            needles.append(np.full(len(pos), number))
            depths.append(dep)
    if not tracks:
        raise InfeasiblePlanError(
            f"no needle track reaches the seed target (rejected: {rejected or 'none'})",
            binding=sorted(rejected) or ["needle geometry"],
        )
    needle = np.concatenate(needles)
    depth = np.concatenate(depths)
    pairs = []
    for k in range(len(tracks)):
        idx = np.nonzero(needle == k)[0]
        for a in range(idx.size):
            for b in range(a + 1, idx.size):
                if abs(depth[idx[a]] - depth[idx[b]]) < seed_spacing_mm - 1e-6:
                    pairs.append((idx[a], idx[b]))
    return Candidates(
        positions_mm=np.concatenate(positions),
        directions=np.concatenate(directions),
        needle=needle,
        depth_mm=depth,
        tracks=tuple(tracks),
        exclusions=np.asarray(pairs, dtype=np.int64).reshape(-1, 2),
        rejected_tracks=rejected,
    )


def merge_candidates(parts: list[Candidates]) -> Candidates:
    """One candidate set from several (e.g. one per lesion with its own needle direction)."""
    if len(parts) == 1:
        return parts[0]
    tracks: list[NeedleTrack] = []
    positions, directions, needle, depth, excl = [], [], [], [], []
    rejected: dict[str, int] = {}
    n_off = 0
    for part in parts:
        t_off = len(tracks)
        tracks += [NeedleTrack(t_off + t.number, t.entry_mm, t.direction) for t in part.tracks]
        positions.append(part.positions_mm)
        directions.append(part.directions)
        needle.append(part.needle + t_off)
        depth.append(part.depth_mm)
        excl.append(part.exclusions + n_off)
        n_off += part.n
        for k, v in part.rejected_tracks.items():
            rejected[k] = rejected.get(k, 0) + v
    return Candidates(
        positions_mm=np.concatenate(positions),
        directions=np.concatenate(directions),
        needle=np.concatenate(needle),
        depth_mm=np.concatenate(depth),
        tracks=tuple(tracks),
        exclusions=np.concatenate(excl).reshape(-1, 2),
        rejected_tracks=rejected,
    )


def candidate_needles(
    spec: PlanSpec, structures: PlanningStructures, seed_targets: Mapping[str, np.ndarray]
) -> Candidates:
    """The plan's candidate needles and seeds: one family per needle direction (a lesion
    may override the spec's), covering the ``seed_targets`` ({lesion ROI: seed target},
    :func:`brachycryo.planning.zones.seed_targets`), off the no-go structures, clear of
    every OAR."""
    grid, masks = structures.grid, structures.masks
    no_go = np.zeros(grid.shape, bool)
    for name in spec.needles.no_go:
        if name in masks:
            no_go |= masks[name]
    avoid = {limit.roi: masks[limit.roi] for limit in spec.oars}
    by_direction: dict[Vec3, np.ndarray] = {}
    for lesion in spec.lesions:
        if lesion.roi in seed_targets:
            d = lesion.needle_direction or spec.needles.direction
            by_direction.setdefault(d, np.zeros(grid.shape, bool))
            by_direction[d] |= seed_targets[lesion.roi]
    parts = [
        candidate_seeds(
            grid,
            target,
            masks[structures.body],
            no_go=no_go,
            entry_region=masks.get(spec.needles.entry_roi),
            mode=spec.needles.mode,
            direction=d,
            pitch_mm=spec.needles.spacing_mm,
            seed_spacing_mm=spec.needles.seed_spacing_mm,
            max_angle_deg=spec.needles.max_angle_deg,
            n_directions=spec.needles.n_directions,
            avoid=avoid,
            clearance_mm=spec.needles.oar_clearance_mm,
        )
        for d, target in by_direction.items()
    ]
    return merge_candidates(parts)
