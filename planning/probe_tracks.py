"""Cryo probe tracks as a physician inserts them: skin entry, depth, and what they cross.

Convention (the one of :class:`brachycryo.cryo_iceball.probes.Probe`): ``tip_mm`` is the
deep end, ``direction`` the unit axis tip -> handle, pointing back out of the patient; the
freezing zone runs from ``tip + active_offset`` for ``active_length`` along it.  The entry
point is where the axis, followed from the tip toward the handle, leaves the body outline
(sampled every quarter voxel on the planning grid); the insertion depth is the distance
from entry to tip.  The track from entry to tip is checked against the plan's no-go
structures (``[needles] no_go``) with the seed needles' clearance (``[needles]
oar_clearance_mm``): a probe whose shaft would pass through the aorta or a kidney is
reported with the structure it crosses, as the seed needles are stopped before them.

Placement avoids crossings rather than reporting them (:class:`TrackObstacles`, used by
:mod:`brachycryo.planning.cryo_layout` as the probe search's candidate check): a candidate
probe is refused when its track from tip to skin passes within ``[cryo] track_clearance_mm``
(default: the needles' ``oar_clearance_mm``) of a no-go structure, an OAR (except the one
the track enters through, e.g. a skin ROI) or another probe's track, or within ``[cryo]
seed_clearance_mm`` of an implanted seed or its needle track
(:mod:`brachycryo.planning.implanted`).  Only when every candidate of every approach is
refused does the plan fail, naming what blocks.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from brachycryo.core.grid import Grid
from brachycryo.cryo_iceball.probes import Probe
from brachycryo.dicom_io.rasterize import roi_mask
from brachycryo.planning.case import PlanningCase, body_roi_name
from brachycryo.planning.implanted import (
    ImplantedSeeds,
    segment_point_distance_mm,
    segment_segment_distance_mm,
)
from brachycryo.planning.spec import PlanSpec
from brachycryo.planning.zones import distance_outside_mm


@dataclass(frozen=True)
class ProbeTrack:
    """One probe of a lesion's layout with its track (all positions LPS mm)."""

    lesion: str
    number: int  # 1-based within the plan
    model: str
    tip_mm: tuple[float, float, float]
    direction: tuple[float, float, float]  # tip -> handle
    entry_mm: tuple[float, float, float]
    entry_on_skin: bool  # False: the planning grid ends before the body outline does
    insertion_depth_mm: float
    active_start_mm: tuple[float, float, float]
    active_end_mm: tuple[float, float, float]
    crosses: tuple[str, ...]  # no-go structures within the clearance of the track


def _triplet(v: np.ndarray) -> tuple[float, float, float]:
    return (float(v[0]), float(v[1]), float(v[2]))


def _entry(probe: Probe, body: np.ndarray, grid: Grid) -> tuple[np.ndarray, bool]:
    """The last point inside ``body`` along the axis from the tip outward, and whether the
    axis leaves the body there (rather than the grid)."""
    tip = np.asarray(probe.tip_mm)
    axis = np.asarray(probe.direction)
    step = 0.25 * min(grid.spacing_mm)
    reach = float(np.linalg.norm(np.asarray(grid.shape[::-1]) * grid.spacing_mm))
    t = np.arange(0.0, reach + step, step)
    pts = tip + t[:, None] * axis
    inside_grid = grid.contains_mm(pts)
    in_body = grid.sample_nearest(body, pts, outside=False) & inside_grid
    out = np.nonzero(~in_body)[0]
    if out.size == 0:
        return pts[-1], False
    last = max(int(out[0]) - 1, 0)
    return pts[last], bool(inside_grid[out[0]])


def _crossed(
    tip: np.ndarray,
    entry: np.ndarray,
    near: Mapping[str, np.ndarray],
    grid: Grid,
) -> tuple[str, ...]:
    """No-go structures whose clearance zone (``near``) the segment entry -> tip enters."""
    length = float(np.linalg.norm(entry - tip))
    n = max(2, int(np.ceil(length / (0.25 * min(grid.spacing_mm)))) + 1)
    pts = tip + np.linspace(0.0, 1.0, n)[:, None] * (entry - tip)
    return tuple(
        name for name, zone in near.items() if grid.sample_nearest(zone, pts, outside=False).any()
    )


def probe_tracks(
    layouts: Mapping[str, Sequence[Probe]],
    grid: Grid,
    body: np.ndarray,
    no_go: Mapping[str, np.ndarray],
    *,
    clearance_mm: float,
) -> list[ProbeTrack]:
    """The tracks of every probe of ``layouts`` ({lesion: probes}), numbered in order."""
    near = {
        name: distance_outside_mm(np.asarray(m, bool), grid) < max(clearance_mm, 1e-9)
        for name, m in no_go.items()
        if np.asarray(m).any()
    }
    tracks: list[ProbeTrack] = []
    for lesion, probes in layouts.items():
        for probe in probes:
            tip = np.asarray(probe.tip_mm)
            entry, on_skin = _entry(probe, body, grid)
            start, end = probe.active_segment_mm()
            tracks.append(
                ProbeTrack(
                    lesion=lesion,
                    number=len(tracks) + 1,
                    model=probe.model.model,
                    tip_mm=_triplet(tip),
                    direction=probe.direction,
                    entry_mm=_triplet(entry),
                    entry_on_skin=on_skin,
                    insertion_depth_mm=float(np.linalg.norm(entry - tip)),
                    active_start_mm=_triplet(start),
                    active_end_mm=_triplet(end),
                    crosses=_crossed(tip, entry, near, grid),
                )
            )
    return tracks


#: Voxel size (mm) of the CT-wide grid the tracks are followed on (at least the CT's own).
TRACK_GRID_MM = 2.0


def reversed_probe(probe: Probe) -> Probe:
    """The same freezing zone reached from the other side: the axis reversed, the tip moved
    to the other end so that ``active_segment_mm`` covers the same segment."""
    _, end = probe.active_segment_mm()
    axis = -np.asarray(probe.direction)
    tip = end - probe.model.active_offset_mm * axis
    return Probe(probe.model, _triplet(tip), _triplet(axis))


def track_grid(case: PlanningCase) -> Grid:
    """The CT's extent at :data:`TRACK_GRID_MM` (or the CT's own coarser spacing)."""
    spacing = np.maximum(np.asarray(case.ct.grid.spacing_mm), TRACK_GRID_MM)
    return case.ct.grid.resampled(_triplet(spacing))


def track_clearance_mm(spec: PlanSpec) -> float:
    """``[cryo] track_clearance_mm``, else the seed needles' ``oar_clearance_mm``."""
    if spec.cryo.track_clearance_mm is not None:
        return spec.cryo.track_clearance_mm
    return spec.needles.oar_clearance_mm


def _no_go_masks(spec: PlanSpec, case: PlanningCase, grid: Grid) -> dict[str, np.ndarray]:
    thickness = case.ct.grid.spacing_mm[2]
    return {
        name: roi_mask(case.structures.roi(name), grid, slice_thickness_mm=thickness)
        for name in spec.needles.no_go
        if name in case.structures.roi_names
    }


def _body_mask(case: PlanningCase, grid: Grid) -> np.ndarray:
    roi = case.structures.roi(body_roi_name(case))
    return roi_mask(roi, grid, slice_thickness_mm=case.ct.grid.spacing_mm[2])


@dataclass
class TrackObstacles:
    """What a probe's track (tip to skin entry) must keep clear of, on the CT-wide track
    grid.  ``near``: for each no-go structure and OAR, the voxels within the track
    clearance; ``seeds_mm`` / ``seed_tracks_mm``: the implanted seeds and their needle
    tracks (kept ``seed_clearance_mm`` away); ``probe_segments``: tracks already planned
    (other lesions' probes), kept the track clearance away.  ``refused`` counts, per
    obstacle, the candidate probes refused for it (what blocks, when everything is)."""

    grid: Grid
    body: np.ndarray
    near: dict[str, np.ndarray]
    oars: frozenset[str]
    clearance_mm: float
    seeds_mm: np.ndarray
    seed_tracks_mm: np.ndarray
    seed_clearance_mm: float
    probe_segments: list[tuple[str, np.ndarray, np.ndarray]] = field(default_factory=list)
    refused: Counter[str] = field(default_factory=Counter)
    _entries: dict[tuple[tuple[float, ...], tuple[float, ...]], np.ndarray] = field(
        default_factory=dict, repr=False
    )

    def segment(self, probe: Probe) -> tuple[np.ndarray, np.ndarray]:
        """The probe's track: tip and skin entry (mm); the entry is followed once per
        (tip, direction) and remembered (the layout search asks for pairs of tracks)."""
        key = (tuple(probe.tip_mm), tuple(probe.direction))
        if key not in self._entries:
            self._entries[key] = _entry(probe, self.body, self.grid)[0]
        return np.asarray(probe.tip_mm, dtype=float), self._entries[key]

    def min_seed_distance_mm(self, tip: np.ndarray, entry: np.ndarray) -> float | None:
        """Closest approach of the track tip-entry to an implanted seed (None: no seeds)."""
        if len(self.seeds_mm) == 0:
            return None
        return float(segment_point_distance_mm(tip, entry, self.seeds_mm).min())

    def blockers(self, probe: Probe) -> list[str]:
        """What the probe's track passes too close to (empty: the track is clear)."""
        tip, entry = self.segment(probe)
        out = [name for name in _crossed(tip, entry, self._zones(entry), self.grid)]
        near_seed = self.min_seed_distance_mm(tip, entry)
        if near_seed is not None and near_seed < self.seed_clearance_mm:
            out.append("implanted seeds")
        if any(
            segment_segment_distance_mm(tip, entry, a, b) < self.seed_clearance_mm
            for a, b in self.seed_tracks_mm
        ):
            out.append("implanted seeds' needle tracks")
        out += sorted({
            f"probe tracks of {lesion}"
            for lesion, a, b in self.probe_segments
            if segment_segment_distance_mm(tip, entry, a, b) < self.clearance_mm
        })  # fmt: skip
        return out

    def _zones(self, entry: np.ndarray) -> dict[str, np.ndarray]:
        """The clearance zones a track entering at ``entry`` is checked against: every one,
        less an OAR whose zone holds the entry (the structure every track enters through,
        e.g. a skin ROI)."""
        return {
            name: zone
            for name, zone in self.near.items()
            if name not in self.oars
            or not self.grid.sample_nearest(zone, entry[None, :], outside=False)[0]
        }

    def allows(self, probe: Probe) -> bool:
        """The probe search's candidate check: True for a clear track; a refusal is
        counted under each obstacle that blocks it."""
        blocking = self.blockers(probe)
        self.refused.update(blocking)
        return not blocking

    def add_probes(self, lesion: str, probes: Sequence[Probe]) -> None:
        """Later lesions' probes keep clear of these tracks too."""
        for p in probes:
            tip, entry = self.segment(p)
            self.probe_segments.append((lesion, tip, entry))


def track_obstacles(
    spec: PlanSpec, case: PlanningCase, implanted: ImplantedSeeds | None
) -> TrackObstacles:
    """The obstacles of the plan's probe tracks on :func:`track_grid`: the ``[needles]
    no_go`` structures and the ``[[oar]]`` ROIs (within :func:`track_clearance_mm`), the
    implanted seeds and their tracks (within ``[cryo] seed_clearance_mm``)."""
    grid = track_grid(case)
    clearance = track_clearance_mm(spec)
    masks = _no_go_masks(spec, case, grid)
    thickness = case.ct.grid.spacing_mm[2]
    oars = [o.roi for o in spec.oars if o.roi in case.structures.roi_names]
    for name in oars:
        if name not in masks:
            masks[name] = roi_mask(case.structures.roi(name), grid, slice_thickness_mm=thickness)
    near = {
        name: distance_outside_mm(np.asarray(m, bool), grid) < max(clearance, 1e-9)
        for name, m in masks.items()
        if np.asarray(m).any()
    }
    return TrackObstacles(
        grid=grid,
        body=_body_mask(case, grid),
        near=near,
        oars=frozenset(set(oars) - set(spec.needles.no_go)),
        clearance_mm=clearance,
        seeds_mm=np.zeros((0, 3)) if implanted is None else implanted.seeds.positions_mm,
        seed_tracks_mm=np.zeros((0, 2, 3)) if implanted is None else implanted.tracks_mm,
        seed_clearance_mm=spec.cryo.seed_clearance_mm,
    )


def plan_probe_tracks(
    spec: PlanSpec, case: PlanningCase, layouts: Mapping[str, Sequence[Probe]]
) -> list[ProbeTrack]:
    """Stage: the tracks of every lesion's probes ({lesion: probes}), followed over the
    whole CT (the body outline and the no-go structures rasterised on
    :func:`track_grid`).  The layouts come oriented and clear of their obstacles from
    :mod:`brachycryo.planning.cryo_layout`."""
    if not any(layouts.values()):
        return []
    grid = track_grid(case)
    return probe_tracks(
        layouts,
        grid,
        _body_mask(case, grid),
        _no_go_masks(spec, case, grid),
        clearance_mm=track_clearance_mm(spec),
    )
