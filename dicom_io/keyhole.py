"""Holes joined to their outer contour by zero-width cuts: the "keyhole" encoding.

DICOM PS3.3 (2024c) C.8.8.6.3 "Representing Inner and Outer Contours" offers two encodings
of a region with an excluded inner part.  With the keyhole technique "an arbitrarily narrow
channel is used to connect the outer contour to the inner contour, so that it is drawn as a
single contour" (Figure C.8.8.6-1); the other is CLOSEDPLANAR_XOR.  A plain CLOSED_PLANAR
outer contour with a separate inner CLOSED_PLANAR contour on the same plane is not one of
them, and readers differ on it: the even-odd readers (dicompyler-core, rt-utils, ours)
see a hole, plastimatch fills each contour and sees none.  A keyhole contour leaves no
choice: each connected region of a plane becomes one closed polygon whose boundary runs
around the outer contour, along a cut to a hole, around the hole in the opposite sense and
back along the same cut, so every point of a hole is outside that single polygon under the
even-odd and the non-zero winding rules alike.  An island inside a hole is its own
connected region, hence its own polygon, lying in the hole of the enclosing one.

Construction (for non-crossing loops on one plane):

1. The nesting depth of each loop (how many other loops contain it) tells outer boundaries
   (even depth) from hole boundaries (odd depth); outers are made counter-clockwise and
   holes clockwise, so that the region always lies to the left of the boundary.
2. Each hole loop in turn is joined to the first boundary met by a horizontal ray cast from
   its rightmost point on a line ``y0`` that passes through no vertex of the plane (the
   midpoint of the widest gap between vertex ordinates within the hole's span).  From the
   hole's rightmost crossing the ray runs through the region's interior until it meets
   the region's outer boundary or another of its holes (possibly already joined): the
   cut crosses nothing, and since every cut is horizontal and the next ray's line holds no
   vertex, no later ray meets an earlier cut.  Joining a hole to a hole gives a longer
   "hole" loop that is joined to the outer boundary later; the cuts form a tree.
3. Both ends of a cut are new points inside existing edges (linearly interpolated in every
   carried coordinate), so the shape is unchanged; each end appears twice in the polygon,
   never consecutively.

Signed areas add up: the keyhole polygon's area is the outer area minus the holes'.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brachycryo.core.errors import GeometryError


def signed_area(xy: np.ndarray) -> float:
    """Signed area of a closed polygon (shoelace); positive when counter-clockwise."""
    x, y = xy[:, 0], xy[:, 1]
    return 0.5 * float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def _crossings(xy: np.ndarray, y0: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Edges crossing the line ``y = y0`` (which holds no vertex): (edge index, x, t)."""
    y = xy[:, 1]
    y1 = np.roll(y, -1)
    edge = np.nonzero((y < y0) != (y1 < y0))[0]
    t = (y0 - y[edge]) / (y1[edge] - y[edge])
    x = xy[edge, 0]
    x1 = np.roll(xy[:, 0], -1)[edge]
    return edge, x + t * (x1 - x), t


def contains_point(xy: np.ndarray, point: np.ndarray) -> bool:
    """Even-odd point-in-polygon test (a point on an edge may fall either side)."""
    x, y = xy[:, 0], xy[:, 1]
    x1, y1 = np.roll(x, -1), np.roll(y, -1)
    span = (y > point[1]) != (y1 > point[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = x + (point[1] - y) * (x1 - x) / (y1 - y)
    return bool(np.count_nonzero(span & (point[0] < xc)) % 2)


def nesting_depths(loops_xy: Sequence[np.ndarray]) -> list[int]:
    """How many other loops contain each loop (tested at its first vertex).

    Exact for loops that neither cross nor touch one another.
    """
    lo = [xy.min(axis=0) for xy in loops_xy]
    hi = [xy.max(axis=0) for xy in loops_xy]
    depths = []
    for i, xy in enumerate(loops_xy):
        p = xy[0]
        depth = 0
        for j, other in enumerate(loops_xy):
            if j != i and np.all(p >= lo[j]) and np.all(p <= hi[j]) and contains_point(other, p):
                depth += 1
        depths.append(depth)
    return depths


def _segments_meet(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether any edge of closed polygon ``a`` meets (crosses or touches) one of ``b``."""
    p, p1 = a[:, None, :], np.roll(a, -1, axis=0)[:, None, :]
    q, q1 = b[None, :, :], np.roll(b, -1, axis=0)[None, :, :]

    def orient(o, s, t):
        return np.sign(
            (s[..., 0] - o[..., 0]) * (t[..., 1] - o[..., 1])
            - (s[..., 1] - o[..., 1]) * (t[..., 0] - o[..., 0])
        )

    d1, d2 = orient(q, q1, p), orient(q, q1, p1)
    d3, d4 = orient(p, p1, q), orient(p, p1, q1)
    proper = (d1 * d2 < 0) & (d3 * d4 < 0)
    if proper.any():
        return True

    def on_segment(o, s, t, d):
        lo = np.minimum(o, s)
        hi = np.maximum(o, s)
        return (d == 0) & np.all((t >= lo) & (t <= hi), axis=-1)

    touch = (
        on_segment(q, q1, p, d1)
        | on_segment(q, q1, p1, d2)
        | on_segment(p, p1, q, d3)
        | on_segment(p, p1, q1, d4)
    )
    return bool(touch.any())


def first_meeting_pair(loops_xy: Sequence[np.ndarray]) -> tuple[int, int] | None:
    """The first pair of loops whose boundaries cross or touch, or None."""
    lo = [xy.min(axis=0) for xy in loops_xy]
    hi = [xy.max(axis=0) for xy in loops_xy]
    for i in range(len(loops_xy)):
        for j in range(i + 1, len(loops_xy)):
            if np.any(lo[i] > hi[j]) or np.any(lo[j] > hi[i]):
                continue
            if _segments_meet(loops_xy[i], loops_xy[j]):
                return i, j
    return None


@dataclass
class _Loop:
    xy: np.ndarray  # (n, 2) coordinates the geometry is decided in
    full: np.ndarray  # (n, d) coordinates carried along (interpolated at cut ends)
    hole: bool


def _cut_line(loop: _Loop, all_y: np.ndarray) -> float:
    """A line ``y = y0`` through the loop's span that holds no vertex of the plane (nor any
    ordinate to avoid, which ``all_y`` includes)."""
    ylo, yhi = float(loop.xy[:, 1].min()), float(loop.xy[:, 1].max())
    ys = all_y[(all_y >= ylo) & (all_y <= yhi)]
    gaps = np.diff(ys)
    k = int(np.argmax(gaps))
    return 0.5 * (float(ys[k]) + float(ys[k + 1]))


def _point_on_edge(loop: _Loop, edge: int, t: float, y0: float) -> tuple[np.ndarray, np.ndarray]:
    nxt = (edge + 1) % loop.xy.shape[0]
    xy = loop.xy[edge] + t * (loop.xy[nxt] - loop.xy[edge])
    xy[1] = y0
    full = loop.full[edge] + t * (loop.full[nxt] - loop.full[edge])
    return xy, full


def _join(target: _Loop, a: int, i_pt: tuple, hole: _Loop, b: int, s_pt: tuple) -> _Loop:
    """``target`` with ``hole`` spliced in along the cut I (on edge a) -> S (on edge b)."""

    def splice(t_arr, h_arr, i_val, s_val):
        rotated = np.concatenate([s_val[None], h_arr[b + 1 :], h_arr[: b + 1], s_val[None]])
        return np.concatenate([t_arr[: a + 1], i_val[None], rotated, i_val[None], t_arr[a + 1 :]])

    return _Loop(
        xy=splice(target.xy, hole.xy, i_pt[0], s_pt[0]),
        full=splice(target.full, hole.full, i_pt[1], s_pt[1]),
        hole=target.hole,
    )


def _join_one_hole(loops: list[_Loop], h: int, avoid_y: np.ndarray) -> None:
    """Join hole loop ``loops[h]`` to the first boundary right of it (in place)."""
    hole = loops[h]
    y0 = _cut_line(hole, np.unique(np.concatenate([avoid_y] + [lp.xy[:, 1] for lp in loops])))
    edges, xs, ts = _crossings(hole.xy, y0)
    k = int(np.argmax(xs))
    b, s_x = int(edges[k]), float(xs[k])
    best: tuple[float, int, int, float] | None = None
    for idx, loop in enumerate(loops):
        if idx == h:
            continue
        e, x, t = _crossings(loop.xy, y0)
        right = x > s_x
        if right.any():
            m = int(np.argmin(np.where(right, x, np.inf)))
            if best is None or x[m] < best[0]:
                best = (float(x[m]), idx, int(e[m]), float(t[m]))
    if best is None:
        raise GeometryError("a hole contour is not enclosed by any outer contour of its plane")
    _, target_idx, a, t_a = best
    target = loops[target_idx]
    joined = _join(
        target, a, _point_on_edge(target, a, t_a, y0), hole, b, _point_on_edge(hole, b, ts[k], y0)
    )
    loops[target_idx] = joined
    del loops[h]


def keyhole_loops(
    loops_xy: Sequence[np.ndarray],
    loops_full: Sequence[np.ndarray] | None = None,
    *,
    avoid_y: np.ndarray | None = None,
) -> list[np.ndarray]:
    """One polygon per connected region of a plane, holes joined by zero-width cuts.

    ``loops_xy`` are the plane's closed loops ((n, 2), first point not repeated) that must
    neither cross nor touch one another (see :func:`first_meeting_pair`); the region is
    their even-odd combination.  ``loops_full`` ((n, d), the same points in any
    coordinates, e.g. patient mm) are carried along and returned; by default the xy loops
    themselves are.  No cut runs along a line ``y = v`` for ``v`` in ``avoid_y`` (e.g. the
    rows of voxel centres).  Loops of zero area are returned unchanged.
    """
    avoid = np.zeros(0) if avoid_y is None else np.asarray(avoid_y, dtype=float).ravel()
    full = list(loops_full) if loops_full is not None else list(loops_xy)
    areas = [signed_area(np.asarray(xy, dtype=float)) for xy in loops_xy]
    keep = [i for i, a in enumerate(areas) if a != 0.0]
    passed = [np.asarray(full[i]) for i, a in enumerate(areas) if a == 0.0]
    depths = nesting_depths([np.asarray(loops_xy[i], dtype=float) for i in keep])
    loops = []
    for i, depth in zip(keep, depths, strict=True):
        hole = depth % 2 == 1
        xy = np.asarray(loops_xy[i], dtype=float)
        pts = np.asarray(full[i], dtype=float)
        if (areas[i] > 0) == hole:  # outers counter-clockwise, holes clockwise
            xy, pts = xy[::-1].copy(), pts[::-1].copy()
        loops.append(_Loop(xy=xy, full=pts, hole=hole))
    while any(lp.hole for lp in loops):
        _join_one_hole(loops, next(i for i, lp in enumerate(loops) if lp.hole), avoid)
    return [lp.full for lp in loops] + passed
