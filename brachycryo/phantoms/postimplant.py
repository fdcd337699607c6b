"""Synthetic post-implant CTs with known seeds: truth for testing seed detection.

Three steps, each a function:

1. :func:`needle_seed_layout` places I-125 seeds on parallel needles inside a target mask
   (needle spacing and seed spacing 5-10 mm, like a template implant) and makes clusters
   of *touching* seeds on purpose: end-to-end (the next seed on the needle moved up to
   touch, centre distance one seed length plus a small gap) and side-by-side (a second
   seed parallel to an existing one, centres one diameter plus a small gap apart).
2. :func:`postimplant_grid` chooses the CT grid (1-3 mm slices) around the seeds, keeping
   the orientation of the phantom's grid (oblique grids work the same way).
3. :func:`render_postimplant_ct` renders the CT on that grid:

   * background: the phantom HU resampled (trilinear) onto the CT grid;
   * seeds: each seed is a cylinder of ``SEED_LENGTH_MM`` x ``SEED_DIAMETER_MM`` (the
     titanium capsule of e.g. the model 6711 / 6702 seeds, 4.5 mm x 0.8 mm) of uniform
     effective CT number ``ScannerModel.seed_hu``.  Its volume fraction in every voxel is
     found by supersampling the voxel over its pixel area and over the slice thickness
     (a rectangular slice sensitivity profile of width ``slice_thickness_mm``); the image
     is then ``hu_bg (1 - f) + seed_hu f`` (CT numbers mix linearly in attenuation).
     Effective CT number: a 6711 seed's silver rod (0.5 mm x 3 mm, mu ~ 20 cm^-1 at the
     ~70 keV effective energy of a 120 kVp beam) and titanium wall (mu ~ 1.6 cm^-1) give
     a capsule-averaged mu near 6 cm^-1, i.e. ~3e4 HU against water's 0.19 cm^-1 (NIST
     XCOM attenuation coefficients); the default 25 000 HU is of that order;
   * the scanner's in-plane blur: a Gaussian point spread function of
     ``inplane_fwhm_mm`` FWHM (0.6-0.8 mm for a standard body kernel);
   * metal streak artefacts, a documented phenomenological model of the patterns shown
     by Barrett & Keat (RadioGraphics 24:1679, 2004, "Artifacts in CT: recognition and
     avoidance"): in each slice a seed crosses, ``n_streaks`` lines through the seed at
     random angles, alternately bright and dark, of amplitude ``streak_hu`` decaying as
     ``r0 / max(r, r0)`` with distance r from the seed (r0 = 3 mm) and a Gaussian profile
     of ``streak_width_mm`` across the line; and a dark band (beam hardening,
     ``-pair_streak_hu``) along the segment joining every pair of seeds that share a
     slice and lie within 40 mm of each other;
   * white Gaussian noise of ``noise_sd_hu``;
   * the stored range of the scanner: values clipped to [-1024, ``max_hu``] (3071 HU, the
     12-bit range of most clinical scanners, is where metal saturates).

Everything is deterministic given ``seed``.  :func:`postimplant_case` does all three for
a phantom case; :func:`layout_from_plan` takes the known seeds from a plan instead;
:func:`write_postimplant_ct` writes the CT as a DICOM series
(``brachycryo.dicom_io.ct_series.write_ct_series``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from brachycryo.core.errors import ConfigError, GeometryError
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, report
from brachycryo.core.seed_capsule import SEED_DIAMETER_MM, SEED_LENGTH_MM
from brachycryo.dicom_io.common import SERIES_NUMBERS, StudyContext
from brachycryo.dicom_io.ct_series import CTImage, write_ct_series
from brachycryo.dicom_io.rtplan import BrachyPlan
from brachycryo.phantoms import PhantomCase

_FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


# ---------------------------------------------------------------------------- layout
@dataclass(frozen=True)
class SeedLayout:
    """Known seeds: centres (n, 3) LPS mm, unit axes (n, 3), needle number and cluster kind.

    ``kind[m]`` is ``"isolated"``, ``"end_to_end"`` or ``"side_by_side"`` (the latter two
    for every seed of a touching pair/chain).  ``cluster[m]`` numbers the groups of
    touching seeds (equal for the seeds of one pair; None: every seed its own group).
    """

    positions_mm: np.ndarray
    directions: np.ndarray
    needles: np.ndarray
    kind: tuple[str, ...]
    cluster: np.ndarray | None = None

    @property
    def n_seeds(self) -> int:
        return int(self.positions_mm.shape[0])

    @property
    def isolated(self) -> np.ndarray:
        return np.array([k == "isolated" for k in self.kind], dtype=bool)


def _unit(v) -> np.ndarray:
    v = np.asarray(v, dtype=float).reshape(3)
    n = np.linalg.norm(v)
    if not np.isfinite(n) or n < 1e-9:
        raise ConfigError(f"direction must be a non-zero finite 3-vector, got {v.tolist()}")
    return v / n


def _perpendicular_basis(axis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    return u, np.cross(axis, u)


def _template_positions(
    mask: np.ndarray,
    grid: Grid,
    frame: tuple[np.ndarray, np.ndarray, np.ndarray],
    *,
    needle_spacing_mm: float,
    seed_spacing_mm: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """(candidate seed centres (n, 3) mm, needle number of each): a template of needles
    along ``frame[0]`` (in-plane axes ``frame[1:]``) at a random offset, every position
    whose whole seed (both ends and centre) lies in ``mask``."""
    axis, u, v = frame
    pts = grid.voxel_centres_mm()[np.asarray(mask, dtype=bool)]
    if pts.shape[0] == 0:
        raise ConfigError("target mask is empty; no seeds can be placed", key="mask")
    centre = pts.mean(axis=0)
    rel = pts - centre
    a_u, a_v, a_w = rel @ u, rel @ v, rel @ axis
    gu = np.arange(np.floor(a_u.min() / needle_spacing_mm), a_u.max() / needle_spacing_mm + 1)
    gv = np.arange(np.floor(a_v.min() / needle_spacing_mm), a_v.max() / needle_spacing_mm + 1)
    gw = np.arange(np.floor(a_w.min() / seed_spacing_mm), a_w.max() / seed_spacing_mm + 1)
    offset = rng.uniform(0.0, 1.0, 3)
    cu, cv, cw = np.meshgrid(
        (gu + offset[0]) * needle_spacing_mm,
        (gv + offset[1]) * needle_spacing_mm,
        (gw + offset[2]) * seed_spacing_mm,
        indexing="ij",
    )
    needle_id = np.broadcast_to(
        (np.arange(gu.size)[:, None] * gv.size + np.arange(gv.size)[None, :])[:, :, None],
        cu.shape,
    )
    cand = centre + cu.reshape(-1, 1) * u + cv.reshape(-1, 1) * v + cw.reshape(-1, 1) * axis
    needle_id = needle_id.reshape(-1)
    # keep candidates whose whole seed (both ends) lies in the mask
    ok = np.ones(cand.shape[0], dtype=bool)
    for end in (-0.5, 0.0, 0.5):
        ijk = np.rint(grid.mm_to_ijk(cand + end * SEED_LENGTH_MM * axis)).astype(int)
        inside = np.all((ijk >= 0) & (ijk < np.asarray(grid.size_ijk)), axis=1)
        hit = np.zeros_like(inside)
        hit[inside] = mask[ijk[inside, 2], ijk[inside, 1], ijk[inside, 0]]
        ok &= hit
    return cand[ok], needle_id[ok]


def _tilted_axes(
    frame: tuple[np.ndarray, np.ndarray, np.ndarray],
    n: int,
    tilt_sd_deg: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """(n, 3) unit seed axes: the needle axis ``frame[0]`` tilted by a random angle (SD
    ``tilt_sd_deg``) towards a random direction of the plane ``frame[1:]``."""
    axis, u, v = frame
    tilt = np.radians(rng.normal(0.0, tilt_sd_deg, n))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    dirs = (
        np.cos(tilt)[:, None] * axis
        + (np.sin(tilt) * np.cos(phi))[:, None] * u
        + (np.sin(tilt) * np.sin(phi))[:, None] * v
    )
    return dirs / np.linalg.norm(dirs, axis=1, keepdims=True)


def needle_seed_layout(
    mask: np.ndarray,
    grid: Grid,
    *,
    n_seeds: int,
    seed: int = 0,
    needle_direction=(0.0, 0.15, 1.0),
    needle_spacing_mm: float = 9.0,
    seed_spacing_mm: float = 9.0,
    n_end_to_end: int = 4,
    n_side_by_side: int = 4,
    touch_gap_mm: float = 0.3,
    tilt_sd_deg: float = 3.0,
) -> SeedLayout:
    """Seeds on parallel needles inside ``mask`` (on ``grid``), with touching clusters.

    Needles run along ``needle_direction`` on a square template of ``needle_spacing_mm``;
    seeds sit every ``seed_spacing_mm`` along each needle wherever the mask is true.  From
    these candidate positions ``n_seeds`` are drawn (``seed`` fixes the draw); then
    ``n_end_to_end`` seeds are each given a partner on the same needle whose centre is
    ``SEED_LENGTH_MM + touch_gap_mm`` further along (replacing drawn seeds, so the count
    stays ``n_seeds``), and ``n_side_by_side`` seeds a parallel partner
    ``SEED_DIAMETER_MM + touch_gap_mm`` to the side.  Every seed's axis is the needle axis
    tilted by a random angle of ``tilt_sd_deg`` (seeds turn a little when released).
    Raises ConfigError when the mask cannot hold the requested seeds.
    """
    grid.check_volume(mask, "mask")
    if n_seeds < 1:
        raise ConfigError(f"n_seeds must be >= 1, got {n_seeds}", key="n_seeds")
    if 2 * (n_end_to_end + n_side_by_side) > n_seeds:
        raise ConfigError(
            f"{n_end_to_end} end-to-end and {n_side_by_side} side-by-side pairs need more "
            f"than {n_seeds} seeds",
            key="n_seeds",
        )
    rng = np.random.default_rng([int(seed), 4242])
    axis = _unit(needle_direction)
    u, v = _perpendicular_basis(axis)
    cand, needle_id = _template_positions(
        mask,
        grid,
        (axis, u, v),
        needle_spacing_mm=needle_spacing_mm,
        seed_spacing_mm=seed_spacing_mm,
        rng=rng,
    )
    n_base = n_seeds - n_end_to_end - n_side_by_side
    if cand.shape[0] < n_base:
        raise ConfigError(
            f"the target holds {cand.shape[0]} seed positions at {needle_spacing_mm} x "
            f"{seed_spacing_mm} mm spacing; {n_seeds} seeds requested",
            key="n_seeds",
        )
    chosen = np.sort(rng.choice(cand.shape[0], size=n_base, replace=False))
    pos = [cand[c] for c in chosen]
    ndl = [int(needle_id[c]) for c in chosen]
    kind = ["isolated"] * n_base
    partners = _spread_anchors(np.asarray(pos), n_end_to_end + n_side_by_side, rng)
    # every seed's axis: the needle axis tilted at random (seeds turn a little when
    # released); a touching partner is parallel to the seed it touches
    dirs = _tilted_axes((axis, u, v), n_base + len(partners), tilt_sd_deg, rng)
    for m, c in enumerate(partners):
        d = dirs[c]
        dirs[n_base + m] = d
        if m < n_end_to_end:
            pos.append(pos[c] + (SEED_LENGTH_MM + touch_gap_mm) * d)
            kind[c] = "end_to_end"
            kind.append("end_to_end")
        else:
            ang = rng.uniform(0.0, 2.0 * np.pi)
            du, dv = _perpendicular_basis(d)
            side = np.cos(ang) * du + np.sin(ang) * dv
            pos.append(pos[c] + (SEED_DIAMETER_MM + touch_gap_mm) * side)
            kind[c] = "side_by_side"
            kind.append("side_by_side")
        ndl.append(ndl[c])
    positions = np.asarray(pos, dtype=float)
    # a partner may come close to a drawn isolated seed: such seeds move elsewhere
    positions, ndl, kind = _remove_overlaps(positions, ndl, kind, cand, needle_id, rng)
    cluster = np.arange(positions.shape[0])
    for m, c in enumerate(partners):
        cluster[n_base + m] = c
    return SeedLayout(
        positions_mm=positions,
        directions=dirs,
        needles=np.asarray(ndl, dtype=int),
        kind=tuple(kind),
        cluster=cluster,
    )


def _spread_anchors(pos: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n`` seeds to receive a touching partner, far apart from one another.

    Two clusters closer than two seed lengths plus the separation of isolated seeds could
    touch each other (a partner overlapping the next cluster); anchors are therefore at
    least ``2 (L + 0.5) + L + 2.5`` mm apart.
    """
    min_sep = 2.0 * (SEED_LENGTH_MM + 0.5) + SEED_LENGTH_MM + 2.5
    chosen: list[int] = []
    if n == 0:  # no touching clusters asked for
        return np.zeros(0, dtype=int)
    for c in rng.permutation(pos.shape[0]):
        if all(np.linalg.norm(pos[c] - pos[o]) >= min_sep for o in chosen):
            chosen.append(int(c))
            if len(chosen) == n:
                return np.asarray(chosen)
    raise ConfigError(
        f"the target is too small for {n} well-separated touching clusters", key="n_seeds"
    )


def _remove_overlaps(
    positions: np.ndarray,
    ndl: list[int],
    kind: list[str],
    cand: np.ndarray,
    needle_id: np.ndarray,
    rng: np.random.Generator,
) -> tuple[np.ndarray, list[int], list[str]]:
    """Replace isolated seeds that come closer than a seed length to another seed."""
    positions = positions.copy()
    ndl, kind = list(ndl), list(kind)
    min_d = SEED_LENGTH_MM + 2.5
    for _ in range(50):
        d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
        np.fill_diagonal(d, np.inf)
        clash = [m for m in range(len(kind)) if kind[m] == "isolated" and np.min(d[m]) < min_d]
        if not clash:
            break
        for m in clash:
            dc = np.linalg.norm(cand[:, None] - positions[None], axis=-1).min(axis=1)
            free = np.flatnonzero(dc >= min_d)
            if free.size == 0:
                raise ConfigError("the target is too small to separate the seeds", key="mask")
            c = int(rng.choice(free))
            positions[m] = cand[c]
            ndl[m] = int(needle_id[c])
    else:
        raise ConfigError("could not separate the isolated seeds in the target", key="mask")
    return positions, ndl, kind


# ---------------------------------------------------------------------------- scanner
@dataclass(frozen=True)
class ScannerModel:
    """Imaging chain of the synthetic CT (see the module docstring for each term)."""

    inplane_fwhm_mm: float = 0.7
    slice_thickness_mm: float | None = None  # None: equal to the slice spacing
    seed_hu: float = 25000.0
    noise_sd_hu: float = 15.0
    streak_hu: float = 150.0
    n_streaks: int = 6
    streak_width_mm: float = 0.7
    pair_streak_hu: float = 60.0
    max_hu: float = 3071.0
    supersample: int = 4

    def __post_init__(self) -> None:
        for name in ("inplane_fwhm_mm", "seed_hu", "streak_width_mm", "max_hu"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) > 0):
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}", key=name)
        for name in ("noise_sd_hu", "streak_hu", "pair_streak_hu"):
            if not (np.isfinite(getattr(self, name)) and getattr(self, name) >= 0):
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}", key=name)
        if self.slice_thickness_mm is not None and not self.slice_thickness_mm > 0:
            raise ConfigError("slice_thickness_mm must be > 0", key="slice_thickness_mm")
        if self.supersample < 1 or self.n_streaks < 0:
            raise ConfigError("supersample must be >= 1 and n_streaks >= 0", key="supersample")


@dataclass(frozen=True)
class PostImplantCT:
    """A rendered post-implant CT: HU (float32, [k, j, i]) on its grid, with the truth."""

    hu: np.ndarray
    grid: Grid
    layout: SeedLayout
    scanner: ScannerModel
    notes: tuple[str, ...] = field(default=())


def postimplant_grid(
    source_grid: Grid,
    points_mm: np.ndarray,
    *,
    spacing_mm=(0.8, 0.8, 1.0),
    margin_mm: float = 20.0,
) -> Grid:
    """CT grid with the orientation of ``source_grid`` around ``points_mm`` (plus a margin).

    ``spacing_mm`` is (column, row, slice) spacing; 1-3 mm slices are typical.
    """
    sp = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    if not np.all(np.isfinite(sp)) or np.any(sp <= 0):
        raise GeometryError(f"spacing_mm must be positive, got {sp.tolist()}")
    d = source_grid.direction_matrix
    local = (np.asarray(points_mm, dtype=float).reshape(-1, 3)) @ d  # coordinates along i,j,k
    lo = local.min(axis=0) - margin_mm
    hi = local.max(axis=0) + margin_mm
    n = np.floor((hi - lo) / sp).astype(int) + 1
    origin = d @ lo
    return Grid(
        shape=(int(n[2]), int(n[1]), int(n[0])),
        origin_mm=tuple(origin),
        spacing_mm=tuple(sp),
        direction=source_grid.direction,
    )


def _resample_linear(hu: np.ndarray, src: Grid, dst: Grid) -> np.ndarray:
    out = np.empty(dst.shape, dtype=np.float32)
    nj, ni = dst.shape[1], dst.shape[2]
    jj, ii = np.meshgrid(np.arange(nj), np.arange(ni), indexing="ij")
    for k in range(dst.shape[0]):
        ijk_dst = np.stack([ii, jj, np.full_like(ii, k)], axis=-1).astype(float)
        ijk_src = src.mm_to_ijk(dst.ijk_to_mm(ijk_dst))
        coords = np.stack([ijk_src[..., 2], ijk_src[..., 1], ijk_src[..., 0]])
        out[k] = ndimage.map_coordinates(hu, coords, order=1, mode="nearest")
    return out


def seed_volume_fraction(
    grid: Grid,
    positions_mm: np.ndarray,
    directions: np.ndarray,
    *,
    slice_thickness_mm: float | None = None,
    supersample: int = 4,
    length_mm: float = SEED_LENGTH_MM,
    diameter_mm: float = SEED_DIAMETER_MM,
) -> np.ndarray:
    """Fraction of each voxel (float32, [k, j, i]) inside the seed cylinders (capped at 1).

    Each voxel is sampled on ``supersample`` points per pixel side and per slice-spacing
    length over its slice thickness (rectangular slice sensitivity profile).
    """
    sp = np.asarray(grid.spacing_mm)
    thick = sp[2] if slice_thickness_mm is None else float(slice_thickness_mm)
    ns = np.array(
        [supersample, supersample, max(supersample, int(np.ceil(supersample * thick / sp[0])))]
    )
    ext = np.array([sp[0], sp[1], thick]) / sp  # sampled extent in voxel units (i, j, k)
    offs = [((np.arange(n) + 0.5) / n - 0.5) * e for n, e in zip(ns, ext, strict=True)]
    sub = np.stack(np.meshgrid(*offs, indexing="ij"), axis=-1).reshape(-1, 3)  # (s, 3) ijk
    frac = np.zeros(grid.shape, dtype=np.float32)
    half_len, radius = length_mm / 2.0, diameter_mm / 2.0
    reach = half_len + radius
    pad = np.ceil(reach / sp + ext / 2.0 + 1).astype(int)
    size = np.asarray(grid.size_ijk)
    for p, d in zip(positions_mm, directions, strict=True):
        c = grid.mm_to_ijk(p)
        lo = np.maximum(np.floor(c - pad).astype(int), 0)
        hi = np.minimum(np.ceil(c + pad).astype(int) + 1, size)
        if np.any(hi <= lo):
            continue
        ii, jj, kk = np.meshgrid(
            *(np.arange(a, b) for a, b in zip(lo, hi, strict=True)), indexing="ij"
        )
        vox = np.stack([ii, jj, kk], axis=-1).reshape(-1, 1, 3).astype(float)
        rel = grid.ijk_to_mm(vox + sub[None]) - p  # (nvox, s, 3)
        t = rel @ d
        r2 = np.sum(rel * rel, axis=-1) - t * t
        inside = (np.abs(t) <= half_len) & (r2 <= radius * radius)
        f = inside.mean(axis=1).reshape(ii.shape)  # [i, j, k] order
        block = frac[lo[2] : hi[2], lo[1] : hi[1], lo[0] : hi[0]]
        block += f.transpose(2, 1, 0).astype(np.float32)
    np.minimum(frac, 1.0, out=frac)
    return frac


def _streaks(
    grid: Grid, layout: SeedLayout, frac: np.ndarray, scanner: ScannerModel, rng
) -> np.ndarray:
    """Star-shaped streaks and inter-seed dark bands, slice by slice (module docstring)."""
    out = np.zeros(grid.shape, dtype=np.float32)
    if scanner.streak_hu == 0 and scanner.pair_streak_hu == 0:
        return out
    sp = np.asarray(grid.spacing_mm)
    nj, ni = grid.shape[1], grid.shape[2]
    # in-plane coordinates (mm) of the pixels of a slice, along i and j
    yy, xx = np.meshgrid(np.arange(nj) * sp[1], np.arange(ni) * sp[0], indexing="ij")
    seeds_ijk = grid.mm_to_ijk(layout.positions_mm)
    n = layout.n_seeds
    angles = rng.uniform(0.0, np.pi, (n, max(scanner.n_streaks, 1)))
    amps = scanner.streak_hu * rng.uniform(0.5, 1.0, (n, max(scanner.n_streaks, 1)))
    signs = np.where(np.arange(max(scanner.n_streaks, 1)) % 2 == 0, 1.0, -1.0)
    w2 = 2.0 * scanner.streak_width_mm**2
    r0 = 3.0
    reach_k = (SEED_LENGTH_MM / 2 + 1.0) / sp[2] + 0.5
    for k in range(grid.shape[0]):
        if not frac[k].any():
            continue
        near = np.flatnonzero(np.abs(seeds_ijk[:, 2] - k) <= reach_k)
        if near.size == 0:
            continue
        plane = np.zeros((nj, ni), dtype=np.float64)
        cx, cy = seeds_ijk[near, 0] * sp[0], seeds_ijk[near, 1] * sp[1]
        for m, x0, y0 in zip(near, cx, cy, strict=True):
            dx, dy = xx - x0, yy - y0
            r = np.hypot(dx, dy)
            decay = r0 / np.maximum(r, r0)
            for s in range(scanner.n_streaks):
                a = angles[m, s]
                perp = -dx * np.sin(a) + dy * np.cos(a)
                plane += signs[s] * amps[m, s] * decay * np.exp(-(perp * perp) / w2)
        if scanner.pair_streak_hu > 0:
            for a_ in range(near.size):
                for b_ in range(a_ + 1, near.size):
                    vx, vy = cx[b_] - cx[a_], cy[b_] - cy[a_]
                    length = np.hypot(vx, vy)
                    if length < 1e-6 or length > 40.0:
                        continue
                    t = ((xx - cx[a_]) * vx + (yy - cy[a_]) * vy) / length
                    perp = (-(xx - cx[a_]) * vy + (yy - cy[a_]) * vx) / length
                    on = (t > 0) & (t < length)
                    plane -= scanner.pair_streak_hu * on * np.exp(-(perp * perp) / (4 * w2))
        out[k] = plane
    return out


def render_postimplant_ct(
    background_hu: np.ndarray,
    background_grid: Grid,
    layout: SeedLayout,
    *,
    ct_grid: Grid,
    scanner: ScannerModel | None = None,
    seed: int = 0,
    progress: ProgressCallback | None = None,
) -> PostImplantCT:
    """Render the post-implant CT of ``layout`` on ``ct_grid`` (see the module docstring).

    ``background_hu`` (any HU volume on ``background_grid``, e.g. a phantom case) is
    resampled onto ``ct_grid``; seeds, blur, streaks, noise and clipping follow.
    """
    scanner = scanner or ScannerModel()
    background_grid.check_volume(background_hu, "background_hu")
    if not np.all(np.isfinite(background_hu)):
        raise ConfigError("background_hu contains NaN or inf", key="background_hu")
    rng = np.random.default_rng([int(seed), 1729])
    report(progress, 0.0, "resampling background")
    bg = _resample_linear(np.asarray(background_hu, dtype=np.float32), background_grid, ct_grid)
    report(progress, 0.3, "rendering seeds")
    frac = seed_volume_fraction(
        ct_grid,
        layout.positions_mm,
        layout.directions,
        slice_thickness_mm=scanner.slice_thickness_mm,
        supersample=scanner.supersample,
    )
    sigma_mm = scanner.inplane_fwhm_mm * _FWHM_TO_SIGMA
    sp = ct_grid.spacing_mm
    frac = ndimage.gaussian_filter(frac, sigma=(0.0, sigma_mm / sp[1], sigma_mm / sp[0]))
    report(progress, 0.6, "metal streaks")
    hu = bg * (1.0 - frac) + np.float32(scanner.seed_hu) * frac
    hu += _streaks(ct_grid, layout, frac, scanner, rng)
    if scanner.noise_sd_hu > 0:
        hu += rng.normal(0.0, scanner.noise_sd_hu, hu.shape).astype(np.float32)
    np.clip(hu, -1024.0, scanner.max_hu, out=hu)
    report(progress, 1.0, "done")
    return PostImplantCT(hu=hu.astype(np.float32), grid=ct_grid, layout=layout, scanner=scanner)


def layout_from_plan(plan: BrachyPlan) -> SeedLayout:
    """The seeds of a plan (e.g. a pre-plan) as known truth for a post-implant CT.

    Seeds without a direction in the plan get the default axis (+z, see
    :meth:`~brachycryo.dicom_io.rtplan.BrachyPlan.to_seeds`).  Touching clusters are not
    inferred: every seed is ``"isolated"`` in ``kind`` and its own cluster.
    """
    if plan.n_seeds == 0:
        raise ConfigError(f"plan {plan.label!r} has no seeds", key="plan")
    seeds = plan.to_seeds()
    return SeedLayout(
        positions_mm=seeds.positions_mm,
        directions=seeds.directions,
        needles=plan.channel_numbers,
        kind=("isolated",) * len(seeds),
        cluster=np.arange(len(seeds)),
    )


def postimplant_case(
    case: PhantomCase,
    *,
    n_seeds: int = 100,
    spacing_mm=(0.8, 0.8, 1.0),
    target: str = "GTV_Bulky",
    seed: int = 0,
    scanner: ScannerModel | None = None,
    margin_mm: float = 20.0,
    **layout_options,
) -> PostImplantCT:
    """One call: seeds on needles in ``target`` of a phantom case, rendered as a CT.

    ``layout_options`` go to :func:`needle_seed_layout` (needle / seed spacing, numbers
    of touching pairs, ...).
    """
    if target not in case.masks:
        raise ConfigError(
            f"phantom case has no ROI {target!r}; choose from {sorted(case.masks)}", key="target"
        )
    layout = needle_seed_layout(
        case.masks[target], case.grid, n_seeds=n_seeds, seed=seed, **layout_options
    )
    grid = postimplant_grid(
        case.grid, layout.positions_mm, spacing_mm=spacing_mm, margin_mm=margin_mm
    )
    return render_postimplant_ct(
        case.hu, case.grid, layout, ct_grid=grid, scanner=scanner, seed=seed
    )


def write_postimplant_ct(
    ct: PostImplantCT,
    folder: str | os.PathLike,
    *,
    context: StudyContext,
    overwrite: bool = False,
) -> CTImage:
    """Write the rendered CT as a DICOM CT series (one file per slice)."""
    return write_ct_series(
        folder,
        ct.hu,
        ct.grid,
        context=context,
        series_description="brachycryo post-implant CT (synthetic)",
        series_number=SERIES_NUMBERS["ct_postimplant"],
        overwrite=overwrite,
    )
