"""Rasterise RTSTRUCT contours onto any Grid: binary masks, partial-volume fractions, points.

The rules (documented for users in README "Structures and volumes"):

* **In-plane**: the even-odd rule.  A point is inside a ROI's cross-section when it lies
  inside an odd number of the ROI's closed contours on that plane, so holes (a contour
  inside another) and islands inside holes come out right whatever the contours'
  winding direction.  CLOSED_PLANAR and CLOSEDPLANAR_XOR contours are read alike: the
  XOR combination PS3.3 C.8.8.6.3 prescribes for the latter is the even-odd rule (see
  :mod:`brachycryo.dicom_io.rtstruct`), and a keyhole contour's zero-width cut is crossed
  twice or not at all.  A binary mask tests voxel centres.
* **Between planes (slab rule)**: a contour plane at offset ``h`` along the contour normal
  stands for the slab ``[h - t/2, h + t/2)``, where ``t`` is the ROI's slice thickness (the
  ``slice_thickness_mm`` given, normally the CT slice spacing; otherwise the smallest
  spacing between the ROI's contour planes; for a one-plane ROI, the grid's spacing along
  the normal).  A grid point between contour planes takes the cross-section of the plane
  whose slab holds it; a point more than ``t/2`` from every plane is outside (no
  interpolation across gaps).
* **End caps**: by default (``end_caps="full"``) the first and last planes' slabs reach
  ``t/2`` beyond them, so a ROI's volume is ``sum(area_p) * t``: each contour stands for
  the CT slice it was drawn on.  For a shape placed anywhere relative to the slices this
  is unbiased (the true end lies anywhere between the last contoured slice and the next)
  and it integrates round ends (spheres) by the midpoint rule, which keeps small
  structures accurate.  ``end_caps="half"`` instead ends a ROI at its outermost contour
  planes (the end planes own only the half slab facing the ROI: the trapezoidal rule,
  the convention of dicompyler-core's ``CalculateStructureVolume``); it is exact for flat
  end faces lying on contour planes and under-estimates round ends.  Planes more than
  1.5 t apart start a new run (e.g. two lesions in one ROI), each with its own end caps;
  a single-plane run keeps the full slab.
* **Partial volume**: :func:`roi_fraction` supersamples every voxel ``n x n x n`` and
  returns the fraction of sub-points inside (float32 in [0, 1]).
* **Any grid**: when the grid's slice axis is parallel to the contour normal (the CT grid
  or a dose grid in the same orientation, any spacing), voxel centres are tested exactly
  against the polygons.  Otherwise (a grid oblique to the contours) each contour plane is
  first rasterised at a fine resolution (default: 1/8 of the grid's smallest spacing) and
  points are looked up in it, so boundaries are placed to within that resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brachycryo.core.errors import GeometryError, StructureError
from brachycryo.core.grid import Grid
from brachycryo.core.memory import check_allocation
from brachycryo.dicom_io.rtstruct import CLOSED_PLANAR, ROI

_PLANE_MERGE_TOL_MM = 0.1
_PLANARITY_TOL_MM = 0.5
_PARALLEL_TOL = 1e-4


def _newell_normal(points: np.ndarray) -> np.ndarray:
    """Area vector of a closed polygon (Newell's method); its norm is twice the area."""
    p = points - points.mean(axis=0)
    q = np.roll(p, -1, axis=0)
    return np.cross(p, q).sum(axis=0)


def _point_in_polygon(point: np.ndarray, poly: np.ndarray) -> bool:
    """Whether ``point`` (2,) lies inside the closed polygon ``poly`` (N, 2), even-odd.

    The crossings-multiply test of E. Haines ("Point in Polygon Strategies", Graphics Gems
    IV, 1994): a ray from the point towards +x, each edge counted when its ends lie on
    either side of the point's row (an end on the row counts as above).  Written as
    ``matplotlib.path.Path.contains_point`` evaluates it (``point_in_path_impl``, radius 0),
    the same comparisons in the same float64 arithmetic, so the two agree on every point,
    boundary points included; here without importing matplotlib (a quarter of a second).
    """
    if poly.shape[0] < 3:
        return False
    tx, ty = float(point[0]), float(point[1])
    x0, y0 = poly[:, 0], poly[:, 1]
    x1, y1 = np.roll(x0, -1), np.roll(y0, -1)
    flag0 = y0 >= ty
    flag1 = y1 >= ty
    hit = (flag0 != flag1) & (((y1 - ty) * (x0 - x1) >= (x1 - tx) * (y0 - y1)) == flag1)
    return bool(np.count_nonzero(hit) & 1)


def _polygon_area_2d(x: np.ndarray, y: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


@dataclass(frozen=True)
class ContourStack:
    """A ROI's closed contours grouped into parallel planes.

    ``normal`` is the unit contour-plane normal, ``u``/``v`` complete a right-handed frame,
    ``plane_offsets_mm`` are the sorted plane positions along ``normal``, ``polygons[p]``
    the (u, v) polygons of plane ``p`` and ``thickness_mm`` the slab thickness ``t``.
    """

    roi_name: str
    normal: np.ndarray
    u: np.ndarray
    v: np.ndarray
    plane_offsets_mm: np.ndarray
    polygons: tuple[tuple[np.ndarray, ...], ...]
    polygons_mm: tuple[tuple[np.ndarray, ...], ...]
    thickness_mm: float
    end_caps: str = "full"

    def plane_extents_mm(self) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper offset of the slab each plane stands for (see module docstring).

        Every plane owns +- t/2.  With ``end_caps="half"``, planes closer than 1.5 t form a
        run and the first and last plane of a run own only the half towards the run; a
        plane alone keeps the full +- t/2.
        """
        h = self.plane_offsets_mm
        half = self.thickness_mm / 2.0
        lo = h - half
        hi = h + half
        if self.end_caps == "full":
            return lo, hi
        gaps = np.diff(h) > 1.5 * self.thickness_mm
        starts = np.concatenate([[True], gaps])
        ends = np.concatenate([gaps, [True]])
        alone = starts & ends
        lo = np.where(starts & ~alone, h, lo)
        hi = np.where(ends & ~alone, h, hi)
        return lo, hi

    def plane_index(self, offsets_mm: np.ndarray) -> np.ndarray:
        """Index of the plane whose slab holds each offset, or -1 (outside every slab)."""
        h = self.plane_offsets_mm
        z = np.asarray(offsets_mm, dtype=float)
        pos = np.searchsorted(h, z)
        lo_i = np.clip(pos - 1, 0, h.size - 1)
        hi_i = np.clip(pos, 0, h.size - 1)
        nearest = np.where(np.abs(z - h[lo_i]) <= np.abs(z - h[hi_i]), lo_i, hi_i)
        lo, hi = self.plane_extents_mm()
        eps = 1e-6
        inside = (z >= lo[nearest] - eps) & (z <= hi[nearest] + eps)
        return np.where(inside, nearest, -1)

    def bounds_mm(self) -> np.ndarray:
        """The 8 corners of the ROI's extent (contours plus end caps), shape (8, 3)."""
        pts = np.concatenate([p for plane in self.polygons_mm for p in plane], axis=0)
        uu, vv = pts @ self.u, pts @ self.v
        zlo, zhi = self.plane_extents_mm()
        lo = [uu.min(), vv.min(), zlo.min()]
        hi = [uu.max(), vv.max(), zhi.max()]
        frame = np.column_stack([self.u, self.v, self.normal])
        corners = np.array([[a, b, c] for a in (0, 1) for b in (0, 1) for c in (0, 1)], float)
        local = np.asarray(lo) + corners * (np.asarray(hi) - np.asarray(lo))
        return local @ frame.T


def contour_stack(
    roi: ROI, *, slice_thickness_mm: float | None = None, end_caps: str = "full"
) -> ContourStack:
    """Group ``roi``'s closed contours into planes; raise if they cannot enclose a volume."""
    if end_caps not in ("full", "half"):
        raise GeometryError(f"end_caps must be 'full' or 'half', got {end_caps!r}")
    closed = roi.closed_contours
    if not closed:
        if roi.is_empty:
            raise StructureError("is empty: it has no contours to rasterise", roi=roi.name)
        kinds = sorted({c.geometric_type for c in roi.contours})
        raise StructureError(
            f"has no closed contours (only {', '.join(kinds)}); it cannot enclose a volume",
            roi=roi.name,
        )
    normals = [_newell_normal(c.points_mm) for c in closed]
    areas2 = np.array([np.linalg.norm(n) for n in normals])
    if areas2.max() <= 1e-9:
        raise StructureError("every closed contour has zero area", roi=roi.name)
    ref = normals[int(np.argmax(areas2))] / areas2.max()
    keep = []
    for c, n, a2 in zip(closed, normals, areas2, strict=True):
        if a2 <= 1e-9:
            continue  # a degenerate (collinear) contour encloses nothing
        if abs(abs(float(n @ ref)) / a2 - 1.0) > 1e-3:
            raise StructureError(
                "its closed contours are not parallel to one another (contours must lie in "
                "parallel planes)",
                roi=roi.name,
            )
        offsets = c.points_mm @ ref
        if np.ptp(offsets) > _PLANARITY_TOL_MM:
            raise StructureError(
                f"a CLOSED_PLANAR contour is not planar (its points spread {np.ptp(offsets):.2f} "
                "mm along the contour normal)",
                roi=roi.name,
            )
        keep.append(c)
    # right-handed in-plane frame
    helper = np.array([1.0, 0, 0]) if abs(ref[0]) < 0.9 else np.array([0, 1.0, 0])
    u = np.cross(helper, ref)
    u /= np.linalg.norm(u)
    v = np.cross(ref, u)
    offsets = np.array([float(np.mean(c.points_mm @ ref)) for c in keep])
    order = np.argsort(offsets, kind="stable")
    planes: list[list[np.ndarray]] = []
    plane_h: list[float] = []
    for idx in order:
        h = offsets[idx]
        if plane_h and abs(h - plane_h[-1]) <= _PLANE_MERGE_TOL_MM:
            planes[-1].append(keep[idx].points_mm)
        else:
            planes.append([keep[idx].points_mm])
            plane_h.append(h)
    h_arr = np.array([float(np.mean([np.mean(p @ ref) for p in ps])) for ps in planes])
    if slice_thickness_mm is not None:
        if not np.isfinite(slice_thickness_mm) or slice_thickness_mm <= 0:
            raise GeometryError(f"slice_thickness_mm must be positive, got {slice_thickness_mm}")
        t = float(slice_thickness_mm)
    elif h_arr.size > 1:
        t = float(np.min(np.diff(h_arr)))
    else:
        t = float("nan")  # decided by the grid (see _thickness_for)
    polys_uv = tuple(tuple(np.column_stack([p @ u, p @ v]) for p in ps) for ps in planes)
    return ContourStack(
        roi_name=roi.name,
        normal=ref,
        u=u,
        v=v,
        plane_offsets_mm=h_arr,
        polygons=polys_uv,
        polygons_mm=tuple(tuple(ps) for ps in planes),
        thickness_mm=t,
        end_caps=end_caps,
    )


def _with_thickness(stack: ContourStack, grid: Grid) -> ContourStack:
    if np.isfinite(stack.thickness_mm):
        return stack
    # one-plane ROI and no thickness given: the grid's spacing along the contour normal
    d = grid.direction_matrix
    t = float(np.max(np.abs(d.T @ stack.normal) * np.asarray(grid.spacing_mm)))
    return ContourStack(**{**stack.__dict__, "thickness_mm": t})


def _even_odd_fill(polys_rc: list[tuple[np.ndarray, np.ndarray]], shape: tuple[int, int]):
    """Even-odd fill of several polygons (row, col coordinates) at pixel centres.

    Scanline form: a pixel centre is inside when a ray from it towards -col crosses an odd
    number of the polygons' edges (edges are half-open in rows, so a vertex on a pixel row
    is counted once).  Every edge's crossings with the pixel rows it spans toggle the
    parity of the pixels to their right; a cumulative sum along each row gives the parity.
    Cost O(pixels + crossings), independent of the number of vertices per pixel (the
    per-pixel point-in-polygon test of ``skimage.draw.polygon`` costs O(pixels x
    vertices), which made large structures at fine resolution slow).
    """
    nr, nc = int(shape[0]), int(shape[1])
    check_allocation((nr, nc + 1), 8, f"a contour plane raster of {nr} x {nc} pixels")
    toggles = []
    for rows, cols in polys_rc:
        r0 = np.asarray(rows, dtype=np.float64)
        c0 = np.asarray(cols, dtype=np.float64)
        r1 = np.roll(r0, -1)
        c1 = np.roll(c0, -1)
        lo = np.clip(np.ceil(np.minimum(r0, r1)), 0, nr).astype(np.int64)
        hi = np.clip(np.ceil(np.maximum(r0, r1)), 0, nr).astype(np.int64)
        count = np.maximum(hi - lo, 0)
        total = int(count.sum())
        if total == 0:
            continue
        check_allocation((total,), 48, f"{total} contour edge crossings of a plane raster")
        edge = np.repeat(np.arange(r0.size), count)
        first = np.cumsum(count) - count
        y = lo[edge] + (np.arange(total) - first[edge])
        dr = r1[edge] - r0[edge]  # never 0 here: a horizontal edge spans no pixel row
        x = c0[edge] + (y - r0[edge]) * (c1[edge] - c0[edge]) / dr
        start = np.clip(np.floor(x).astype(np.int64) + 1, 0, nc)
        toggles.append(y * (nc + 1) + start)
    if not toggles:
        return np.zeros((nr, nc), dtype=bool)
    flat = np.bincount(np.concatenate(toggles), minlength=nr * (nc + 1))
    # the parity of the running count: summed in uint8, whose wrap-around (mod 256, even)
    # keeps it, with an eighth of the memory traffic of int64
    parity = np.cumsum(flat.reshape(nr, nc + 1), axis=1, dtype=np.uint8)[:, :nc]
    parity &= 1
    return parity.view(bool)


def _crop_ijk(stack: ContourStack, grid: Grid) -> tuple[np.ndarray, np.ndarray] | None:
    """Index box [lo, hi) of voxels that can touch the ROI, or None if it misses the grid."""
    ijk = grid.mm_to_ijk(stack.bounds_mm())
    lo = np.floor(ijk.min(axis=0) - 1).astype(int)
    hi = np.ceil(ijk.max(axis=0) + 2).astype(int)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, np.asarray(grid.size_ijk))
    if np.any(hi <= lo):
        return None
    return lo, hi


def _subsample_offsets(n: int) -> np.ndarray:
    return (np.arange(n) + 0.5) / n - 0.5


def _plane_fill(stack: ContourStack, grid: Grid, p: int, n: int, lo, hi) -> np.ndarray:
    """Even-odd fill of contour plane ``p`` at the in-plane sub-point centres (``n``-fold)
    of the [lo, hi) crop of ``grid``, shape ``(nj * n, ni * n)``."""
    ni, nj = int(hi[0] - lo[0]), int(hi[1] - lo[1])
    polys = []
    for pts in stack.polygons_mm[p]:
        ijk = grid.mm_to_ijk(pts)
        rows = (ijk[:, 1] - lo[1] + 0.5) * n - 0.5
        cols = (ijk[:, 0] - lo[0] + 0.5) * n - 0.5
        polys.append((rows, cols))
    return _even_odd_fill(polys, (nj * n, ni * n))


def _slice_planes(stack: ContourStack, grid: Grid, n: int, lo, hi) -> np.ndarray:
    """The contour plane (or -1) of every sub-slice of slices [lo[2], hi[2]), (nk, n)."""
    sub = _subsample_offsets(n)
    k_pos = (np.arange(lo[2], hi[2])[:, None] + sub[None, :]).reshape(-1)
    z = grid.ijk_to_mm(np.column_stack([np.zeros_like(k_pos), np.zeros_like(k_pos), k_pos]))
    return stack.plane_index(z @ stack.normal).reshape(-1, n)


def _rasterise_aligned(stack: ContourStack, grid: Grid, n: int, lo, hi) -> np.ndarray:
    """Fraction map for a grid whose k axis is parallel to the contour normal."""
    ni, nj, nk = (hi - lo).tolist()
    out = np.zeros((nk, nj, ni), dtype=np.float32)
    planes = _slice_planes(stack, grid, n, lo, hi)
    cache: dict[int, np.ndarray] = {}
    for p in np.unique(planes[planes >= 0]):
        fine = _plane_fill(stack, grid, int(p), n, lo, hi)
        if n == 1:
            cache[int(p)] = fine.astype(np.float32)
        else:
            cache[int(p)] = fine.reshape(nj, n, ni, n).mean(axis=(1, 3), dtype=np.float32)
    for kk in range(nk):
        for s in range(n):
            p = int(planes[kk, s])
            if p >= 0:
                out[kk] += cache[p]
    if n > 1:
        out /= n
    return out


@dataclass
class _PlaneRaster:
    origin_uv: np.ndarray
    res_mm: float
    mask: np.ndarray  # [v, u]


def _plane_rasters(stack: ContourStack, res_mm: float) -> list[_PlaneRaster]:
    rasters = []
    for polys in stack.polygons:
        pts = np.concatenate(polys, axis=0)
        origin = pts.min(axis=0) - 2 * res_mm
        extent = np.ceil((pts.max(axis=0) + 2 * res_mm - origin) / res_mm) + 1
        check_allocation(extent, 1, f"a contour plane raster at {res_mm:.3g} mm")
        size = extent.astype(int)
        rc = [((p[:, 1] - origin[1]) / res_mm, (p[:, 0] - origin[0]) / res_mm) for p in polys]
        rasters.append(_PlaneRaster(origin, res_mm, _even_odd_fill(rc, (size[1], size[0]))))
    return rasters


def _lookup(stack: ContourStack, rasters: list[_PlaneRaster], pts_mm: np.ndarray) -> np.ndarray:
    z = pts_mm @ stack.normal
    plane = stack.plane_index(z)
    inside = np.zeros(pts_mm.shape[0], dtype=bool)
    uu, vv = pts_mm @ stack.u, pts_mm @ stack.v
    for p in np.unique(plane[plane >= 0]):
        sel = np.nonzero(plane == p)[0]
        r = rasters[int(p)]
        col = np.rint((uu[sel] - r.origin_uv[0]) / r.res_mm).astype(np.int64)
        row = np.rint((vv[sel] - r.origin_uv[1]) / r.res_mm).astype(np.int64)
        ok = (row >= 0) & (row < r.mask.shape[0]) & (col >= 0) & (col < r.mask.shape[1])
        hit = np.zeros(sel.size, dtype=bool)
        hit[ok] = r.mask[row[ok], col[ok]]
        inside[sel] = hit
    return inside


def _rasterise_general(
    stack: ContourStack, grid: Grid, n: int, lo, hi, res_mm: float
) -> np.ndarray:
    rasters = _plane_rasters(stack, res_mm)
    ni, nj, nk = (hi - lo).tolist()
    sub = _subsample_offsets(n)
    out = np.zeros((nk, nj, ni), dtype=np.float32)
    si, sj, sk = np.meshgrid(sub, sub, sub, indexing="ij")
    sub_ijk = np.column_stack([si.ravel(), sj.ravel(), sk.ravel()])
    jj, ii = np.meshgrid(np.arange(lo[1], hi[1]), np.arange(lo[0], hi[0]), indexing="ij")
    for kk in range(nk):
        base = np.column_stack([ii.ravel(), jj.ravel(), np.full(ii.size, lo[2] + kk)])
        acc = np.zeros(base.shape[0], dtype=np.float32)
        for off in sub_ijk:
            acc += _lookup(stack, rasters, grid.ijk_to_mm(base + off))
        out[kk] = (acc / len(sub_ijk)).reshape(nj, ni)
    return out


def roi_fraction(
    roi: ROI,
    grid: Grid,
    *,
    supersample: int = 4,
    slice_thickness_mm: float | None = None,
    end_caps: str = "full",
    resolution_mm: float | None = None,
    stack: ContourStack | None = None,
) -> np.ndarray:
    """Fraction of each voxel inside ``roi`` (float32, [k, j, i]) by ``supersample``^3 sub-points.

    ``supersample=1`` gives the voxel-centre mask as 0/1.  See the module docstring for
    the in-plane, between-plane and end-cap rules.  ``stack``, when given, is
    ``contour_stack(roi, slice_thickness_mm=..., end_caps=...)`` computed beforehand (a
    caller rasterising one ROI many times groups its contours once).
    """
    if int(supersample) < 1:
        raise GeometryError(f"supersample must be >= 1, got {supersample}")
    n = int(supersample)
    if stack is None:
        stack = contour_stack(roi, slice_thickness_mm=slice_thickness_mm, end_caps=end_caps)
    stack = _with_thickness(stack, grid)
    check_allocation(grid.shape, 4, f"ROI {roi.name!r} rasterised on a grid of {grid.shape}")
    out = np.zeros(grid.shape, dtype=np.float32)
    box = _crop_ijk(stack, grid)
    if box is None:
        return out
    lo, hi = box
    aligned = abs(abs(float(grid.slice_normal @ stack.normal)) - 1.0) < _PARALLEL_TOL
    if aligned:
        part = _rasterise_aligned(stack, grid, n, lo, hi)
    else:
        res = resolution_mm or min(grid.spacing_mm) / (8.0 * n)
        part = _rasterise_general(stack, grid, n, lo, hi, res)
    out[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]] = part
    return out


def roi_mask(
    roi: ROI,
    grid: Grid,
    *,
    slice_thickness_mm: float | None = None,
    end_caps: str = "full",
    resolution_mm: float | None = None,
    stack: ContourStack | None = None,
) -> np.ndarray:
    """Boolean mask of the voxels whose centres lie inside ``roi`` (even-odd, slab rule):
    ``roi_fraction(..., supersample=1) > 0.5``, on a grid whose k axis is the contour normal
    filled plane by plane as booleans (no float raster).  ``stack`` as in
    :func:`roi_fraction`."""
    if stack is None:
        stack = contour_stack(roi, slice_thickness_mm=slice_thickness_mm, end_caps=end_caps)
    stack = _with_thickness(stack, grid)
    if abs(abs(float(grid.slice_normal @ stack.normal)) - 1.0) >= _PARALLEL_TOL:
        frac = roi_fraction(roi, grid, supersample=1, resolution_mm=resolution_mm, stack=stack)
        return frac > 0.5
    check_allocation(grid.shape, 4, f"ROI {roi.name!r} rasterised on a grid of {grid.shape}")
    out = np.zeros(grid.shape, dtype=bool)
    box = _crop_ijk(stack, grid)
    if box is None:
        return out
    lo, hi = box
    planes = _slice_planes(stack, grid, 1, lo, hi)[:, 0]
    filled: dict[int, np.ndarray] = {}
    for kk, p in enumerate(planes.tolist()):
        if p >= 0:
            if p not in filled:
                filled[p] = _plane_fill(stack, grid, p, 1, lo, hi)
            out[lo[2] + kk, lo[1] : hi[1], lo[0] : hi[0]] = filled[p]
    return out


def roi_contains_points(
    roi: ROI,
    points_mm: np.ndarray,
    *,
    slice_thickness_mm: float | None = None,
    end_caps: str = "full",
    resolution_mm: float = 0.1,
) -> np.ndarray:
    """Which points (N, 3) lie inside ``roi``; in-plane boundaries to ``resolution_mm``."""
    pts = np.asarray(points_mm, dtype=float).reshape(-1, 3)
    if not np.all(np.isfinite(pts)):
        raise GeometryError("points_mm contains NaN or inf")
    stack = contour_stack(roi, slice_thickness_mm=slice_thickness_mm, end_caps=end_caps)
    if not np.isfinite(stack.thickness_mm):
        raise StructureError(
            "has a single contour plane: give slice_thickness_mm to test points", roi=roi.name
        )
    return _lookup(stack, _plane_rasters(stack, resolution_mm), pts)


def roi_volume_cc(
    roi: ROI,
    *,
    slice_thickness_mm: float | None = None,
    end_caps: str = "full",
    stack: ContourStack | None = None,
) -> float:
    """Volume of ``roi`` from its contours (even-odd areas x slab thickness), in cm³.

    Independent of any grid: ``sum over planes of (even-odd area) * slab width`` (t, or t/2
    for the end planes of a run; see the module docstring), where the even-odd
    area of a plane adds each contour's area with the sign of its nesting depth (contours
    inside an odd number of others are holes).  Exact for non-intersecting contours.
    ``stack``: as for :func:`roi_fraction`.
    """
    if stack is None:
        stack = contour_stack(roi, slice_thickness_mm=slice_thickness_mm, end_caps=end_caps)
    if not np.isfinite(stack.thickness_mm):
        raise StructureError(
            "has a single contour plane: give slice_thickness_mm to compute a volume", roi=roi.name
        )
    zlo, zhi = stack.plane_extents_mm()
    total_mm3 = 0.0
    for polys, width_mm in zip(stack.polygons, zhi - zlo, strict=True):
        plane_mm2 = 0.0
        for idx, poly in enumerate(polys):
            # nesting depth: how many other contours of the plane contain this one
            depth = sum(
                1
                for other, path in enumerate(polys)
                if other != idx and _point_in_polygon(poly[0], path)
            )
            sign = -1.0 if depth % 2 else 1.0
            plane_mm2 += sign * _polygon_area_2d(poly[:, 0], poly[:, 1])
        total_mm3 += plane_mm2 * width_mm
    return total_mm3 / 1000.0


__all__ = [
    "CLOSED_PLANAR",
    "ContourStack",
    "contour_stack",
    "roi_contains_points",
    "roi_fraction",
    "roi_mask",
    "roi_volume_cc",
]
