"""Find implanted seeds on a post-implant CT: positions, orientations, confidences.

Method (each step is a function below):

1. **Threshold.**  Metal voxels are those at or above ``metal_threshold_hu`` (default
   2000 HU).  The rule: seeds reconstruct far above any tissue (a titanium / silver seed's
   effective CT number is ~10^4 HU and saturates the stored range, 3071 HU on 12-bit
   scanners), while cortical bone stays below ~1900 HU and streak artefacts add at most a
   few hundred HU to tissue.  2000 HU keeps bone and streaks out and partial-volume seeds
   (a seed across a 3 mm slice still peaks near 3000 HU) in.
2. **Connected components** of the metal voxels in 3D (26-connectivity: a thin oblique
   seed may touch only at voxel corners).  Each component is grown by one voxel into its
   neighbours above ``edge_threshold_hu`` (hysteresis): those partial-volume edge voxels
   carry the sub-voxel position information the saturated core has lost.
3. **Single-seed signal.**  A component's metal signal V is the sum of its voxels' HU
   above ``edge_threshold_hu`` times the voxel volume.  One seed's signal v1 depends on the
   scanner (blur, slice thickness, clipping) and is estimated from the image itself: the
   median of the components' signals, refined three times as the median of those between
   0.5 and 1.5 times the previous estimate (isolated seeds outnumber clusters in any
   implant).  With fewer than three components and a known seed count, the total signal
   divided by the count is used.  The shape of one seed (eigenvalues of its voxel
   covariance) is the median over components of 0.75-1.25 v1.
4. **Seeds per component** from the signal ratio ``V / v1`` and the shape
   (:func:`_seeds_in_component`): on thin slices the shape (chain length along the axis,
   side-by-side width across) when it agrees with the signal within one seed; on thick
   slices the rounded signal ratio, the shape breaking ties.  Below
   ``min_volume_fraction`` of v1 a component is dropped as suspicious.  When the
   implanted ``seed_count`` is given, the counts are reconciled (:func:`_reconcile`):
   while too few seeds, one is added to the component that most wants one more (estimate
   minus count, plus half its shape evidence for one more: an under-split cluster, or a
   dropped small component); while too many, one is removed from the component whose
   estimate best supports one seed fewer, round seed-unlike blobs first.
5. **Splitting** a component of ``k > 1`` seeds (:func:`_split`): a hard-assignment
   Gaussian mixture with the single-seed covariance oriented along the component's
   principal axis (k-means in that Mahalanobis metric, voxels weighted by HU above the
   edge threshold), started from k points spread along the principal axis (end-to-end
   chains), along the second axis (side-by-side pairs) and from farthest-point seeding;
   the partition of least inertia wins.
6. **Per seed**: the centroid (HU-weighted mean of its voxels); the orientation
   (principal axis of the weighted covariance after subtracting the voxel's own box
   covariance ``diag(spacing^2 / 12)`` - the second moments of a blurred object are the
   object's plus the blur's), signed to point along +k of the grid; a confidence in
   [0, 1], the product of a count-fit term ``exp(-((x - k) / (0.35 sqrt(k)))^2 / 2)``
   (x = the component's continuous seed-count estimate), a contrast term (peak HU above
   the threshold) and a shape term (0.25 for a round blob).  Components that are too
   small, too large (more than ``max_seeds_per_cluster``), of ambiguous count
   (``|x - k| > 0.35``) or round are listed as suspicious clusters with the reason.
7. **Thick slices** (slice spacing >= 1.5 x the pixel size): where a seed shares no slice
   with another seed of its component, its position along the slice axis comes from its
   two end slices and the nominal seed length (:mod:`brachycryo.postimplant.seed_end_slices`), not
   from the
   centroid, which clipping pulls towards slice boundaries.

Everything works in the grid's index space and maps to patient mm through the Grid, so
oblique grids and anisotropic voxels need nothing special.  Plain numpy / scipy, no
backend choice: the work is a few thousand voxels per implant (about 0.3 s for 120
seeds, see benchmarks/seed_detection.py).
"""

from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field, replace

import numpy as np
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from brachycryo.core.errors import ConfigError, GeometryError
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, report
from brachycryo.core.seed_capsule import SEED_DIAMETER_MM, SEED_LENGTH_MM
from brachycryo.core.seeds import Seeds
from brachycryo.dicom_io.rtplan import BrachyPlan, BrachySource, seed_implant
from brachycryo.postimplant.seed_end_slices import (
    measure_end_slices,
    refined_position,
    unit_overlap_signal,
)

#: Default metal threshold (HU): above cortical bone, below partial-volume seed peaks.
METAL_THRESHOLD_HU = 2000.0
#: Default lower threshold (HU) of the one-voxel hysteresis growth of metal components.
EDGE_THRESHOLD_HU = 300.0


@dataclass(frozen=True)
class DetectionOptions:
    """Tunable rules of :func:`detect_seeds` (see the module docstring).

    * ``metal_threshold_hu``: voxels at or above are metal (step 1).
    * ``edge_threshold_hu``: one-voxel hysteresis growth of the components (step 2).
    * ``min_volume_fraction``: components with less than this fraction of one seed's
      signal are dropped as suspicious (step 4).
    * ``max_seeds_per_cluster``: components holding more seeds are flagged (step 6).
    * ``round_elongation``: sqrt of the largest / second eigenvalue below which a
      component is round, not seed-like (steps 4 and 6).
    * ``kmeans_iterations``: cap on the splitting iterations (step 5).
    * ``tie_fraction``: on thick slices, the excess of the signal ratio over its rounded
      value from which the shape may add a seed (step 4).
    * ``end_slice_refinement``: place seeds across thick slices from their end slices
      (step 7).
    """

    metal_threshold_hu: float = METAL_THRESHOLD_HU
    edge_threshold_hu: float = EDGE_THRESHOLD_HU
    min_volume_fraction: float = 0.3
    max_seeds_per_cluster: int = 8
    round_elongation: float = 1.5
    kmeans_iterations: int = 30
    tie_fraction: float = 0.3
    end_slice_refinement: bool = True

    def __post_init__(self) -> None:
        if not np.isfinite(self.metal_threshold_hu):
            raise ConfigError("metal_threshold_hu must be finite", key="metal_threshold_hu")
        if not (
            np.isfinite(self.edge_threshold_hu) and self.edge_threshold_hu < self.metal_threshold_hu
        ):
            raise ConfigError(
                f"edge_threshold_hu ({self.edge_threshold_hu}) must be below "
                f"metal_threshold_hu ({self.metal_threshold_hu})",
                key="edge_threshold_hu",
            )
        if not 0 < self.min_volume_fraction < 1:
            raise ConfigError("min_volume_fraction must be in (0, 1)", key="min_volume_fraction")
        if self.max_seeds_per_cluster < 1:
            raise ConfigError("max_seeds_per_cluster must be >= 1", key="max_seeds_per_cluster")
        if not self.round_elongation >= 1.0:
            raise ConfigError("round_elongation must be >= 1", key="round_elongation")
        if self.kmeans_iterations < 1:
            raise ConfigError("kmeans_iterations must be >= 1", key="kmeans_iterations")
        if not 0.0 <= self.tie_fraction < 0.5:
            raise ConfigError("tie_fraction must be in [0, 0.5)", key="tie_fraction")


@dataclass(frozen=True)
class DetectedSeed:
    """One seed: centroid (LPS mm), unit axis (pointing along +k of the grid), confidence."""

    position_mm: tuple[float, float, float]
    direction: tuple[float, float, float]
    confidence: float
    cluster: int
    seeds_in_cluster: int


@dataclass(frozen=True)
class SuspiciousCluster:
    """A metal component worth a look, with why.

    ``volume_mm3`` is its volume above the metal threshold, ``signal_ratio`` its metal
    signal in units of one seed's, ``seeds_assigned`` the seeds it holds in the result.
    """

    cluster: int
    centroid_mm: tuple[float, float, float]
    volume_mm3: float
    signal_ratio: float
    seeds_assigned: int
    reason: str


@dataclass(frozen=True)
class SeedDetection:
    """Result of :func:`detect_seeds`.

    ``single_seed_signal_hu_mm3`` is the metal signal of one seed estimated from the image
    (module docstring, step 3); ``notes`` say how it was found and what was reconciled.
    """

    seeds: tuple[DetectedSeed, ...]
    suspicious: tuple[SuspiciousCluster, ...]
    single_seed_signal_hu_mm3: float
    metal_threshold_hu: float
    n_components: int
    seed_count_given: int | None = None
    notes: tuple[str, ...] = field(default=())

    @property
    def n_seeds(self) -> int:
        return len(self.seeds)

    @property
    def positions_mm(self) -> np.ndarray:
        return np.array([s.position_mm for s in self.seeds], dtype=float).reshape(-1, 3)

    @property
    def directions(self) -> np.ndarray:
        return np.array([s.direction for s in self.seeds], dtype=float).reshape(-1, 3)

    @property
    def confidences(self) -> np.ndarray:
        return np.array([s.confidence for s in self.seeds], dtype=float)

    def to_seeds(self, sk_u: float) -> Seeds:
        """The detected seeds as :class:`~brachycryo.core.seeds.Seeds` of strength ``sk_u`` (U),
        each along its detected axis (rescaled to unit length)."""
        return Seeds(self.positions_mm, sk_u, self.directions, normalize=True)


# ---------------------------------------------------------------------------- helpers
@dataclass
class _Component:
    label: int
    ijk: np.ndarray  # (n, 3) voxel indices (i, j, k) of the grown component
    pos_mm: np.ndarray  # (n, 3) voxel centres
    weight: np.ndarray  # (n,) HU above the edge threshold
    core_volume_mm3: float
    signal: float  # sum of HU above the edge threshold x voxel volume (HU mm3)
    peak_hu: float
    clipped: np.ndarray  # (n,) voxel at the image maximum (clipped stored range)
    elongation: float = 1.0
    eig: np.ndarray = field(default_factory=lambda: np.ones(3))
    axis_voxel_mm: float = 1.0  # voxel extent along the component's principal axis
    shape_more: float = 0.0  # in [0, 1]: shape evidence for one seed more
    estimate: float = 0.0  # continuous estimate of the number of seeds
    ratio: float = 0.0
    k: int = 0


def _weighted_moments(pos: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    wsum = float(w.sum())
    mean = (w[:, None] * pos).sum(axis=0) / wsum
    d = pos - mean
    cov = (w[:, None, None] * d[:, :, None] * d[:, None, :]).sum(axis=0) / wsum
    return mean, cov


def _axis_and_elongation(cov: np.ndarray, voxel_cov: np.ndarray) -> tuple[np.ndarray, float]:
    c = cov - voxel_cov
    vals, vecs = np.linalg.eigh((c + c.T) / 2.0)
    vals = np.maximum(vals, 1e-6)
    axis = vecs[:, -1]
    return axis, float(np.sqrt(vals[-1] / vals[-2]))


def _metric_d2(pos: np.ndarray, centres: np.ndarray, metric: np.ndarray) -> np.ndarray:
    d = pos[:, None, :] - centres[None]
    return np.einsum("nci,ij,ncj->nc", d, metric, d)


def _weighted_kmeans(
    pos: np.ndarray, w: np.ndarray, init: np.ndarray, iterations: int, metric: np.ndarray
) -> tuple[np.ndarray, float]:
    centres = init.copy()
    labels = np.zeros(pos.shape[0], dtype=int)
    for _ in range(iterations):
        d2 = _metric_d2(pos, centres, metric)
        new = np.argmin(d2, axis=1)
        for c in range(centres.shape[0]):
            sel = new == c
            if np.any(sel) and w[sel].sum() > 0:
                centres[c] = (w[sel, None] * pos[sel]).sum(axis=0) / w[sel].sum()
        if np.array_equal(new, labels):
            break
        labels = new
    d2 = _metric_d2(pos, centres, metric)
    labels = np.argmin(d2, axis=1)
    inertia = float((w * d2[np.arange(pos.shape[0]), labels]).sum())
    return labels, inertia


def _split(
    comp: _Component, k: int, iterations: int, seed_var_mm2: tuple[float, float]
) -> list[np.ndarray]:
    """Boolean masks (over the component's voxels) of k seeds.

    Hard-assignment Gaussian mixture with the single-seed covariance (``seed_var_mm2`` =
    variance along / across a seed, from the isolated seeds) oriented along the
    component's principal axis: k-means in that Mahalanobis metric, so a side-by-side
    pair splits across and an end-to-end chain along the seeds.
    """
    pos, w = comp.pos_mm, comp.weight
    if k <= 1:
        return [np.ones(pos.shape[0], dtype=bool)]
    k = min(k, pos.shape[0])
    mean, cov = _weighted_moments(pos, w)
    _, vecs = np.linalg.eigh(cov)
    a = vecs[:, -1]
    along = np.outer(a, a)
    metric = along / seed_var_mm2[0] + (np.eye(3) - along) / seed_var_mm2[1]
    inits = []
    for axis_index in (-1, -2):
        axis = vecs[:, axis_index]
        t = (pos - mean) @ axis
        qs = np.quantile(t, (np.arange(k) + 0.5) / k)
        inits.append(mean + qs[:, None] * axis)
    # farthest-point seeding from the heaviest voxel
    first = int(np.argmax(w))
    chosen = [first]
    d2 = np.sum((pos - pos[first]) ** 2, axis=1)
    for _ in range(k - 1):
        nxt = int(np.argmax(d2))
        chosen.append(nxt)
        d2 = np.minimum(d2, np.sum((pos - pos[nxt]) ** 2, axis=1))
    inits.append(pos[chosen].astype(float))
    best, best_inertia = None, np.inf
    for init in inits:
        labels, inertia = _weighted_kmeans(pos, w, init, iterations, metric)
        if np.unique(labels).size == k and inertia < best_inertia:
            best, best_inertia = labels, inertia
    if best is None:  # degenerate: fall back to slicing along the principal axis
        t = (pos - mean) @ vecs[:, -1]
        best = np.minimum((np.argsort(np.argsort(t)) * k) // pos.shape[0], k - 1)
    return [best == c for c in range(k)]


def _check_inputs(hu: np.ndarray, grid: Grid, seed_count: int | None) -> np.ndarray:
    if not isinstance(grid, Grid):
        raise GeometryError(f"grid must be a brachycryo Grid, got {type(grid).__name__}")
    arr = np.asarray(hu)
    if arr.ndim != 3:
        raise GeometryError(f"hu must be a 3D volume indexed [k, j, i], got {arr.ndim}D")
    grid.check_volume(arr, "hu")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ConfigError(f"hu must be real numbers, got dtype {arr.dtype}", key="hu")
    bad = ~np.isfinite(arr)
    if bad.any():
        k, j, i = np.argwhere(bad)[0]
        raise ConfigError(
            f"hu contains {int(bad.sum())} NaN/inf voxels (first at [k, j, i] = "
            f"[{k}, {j}, {i}]); fill or crop them before detecting seeds",
            key="hu",
        )
    if seed_count is not None and (int(seed_count) != seed_count or seed_count < 1):
        raise ConfigError(
            f"seed_count must be a positive integer, got {seed_count}", key="seed_count"
        )
    return arr


def _components(
    hu: np.ndarray, grid: Grid, opts: DetectionOptions
) -> tuple[list[_Component], np.ndarray]:
    """Metal components, each grown by one voxel into neighbours above the edge threshold.

    The growth works inside each component's bounding box (plus two voxels), so a full CT
    costs one labelling pass; a voxel touching the cores of two components goes to
    neither.
    """
    core = hu >= opts.metal_threshold_hu
    clip_hu = float(hu.max())
    cube = np.ones((3, 3, 3), dtype=bool)
    labels, n = ndimage.label(core, structure=cube)
    if n == 0:
        return [], labels
    voxel_mm3 = grid.voxel_volume_mm3
    comps = []
    for lab, sl in enumerate(ndimage.find_objects(labels), start=1):
        if sl is None:
            continue
        box = tuple(
            slice(max(s.start - 2, 0), min(s.stop + 2, size))
            for s, size in zip(sl, labels.shape, strict=True)
        )
        lab_box = labels[box]  # a view: growth is written back into ``labels``
        mine = lab_box == lab
        n_core = int(mine.sum())
        others = core[box] & (lab_box != lab) & (lab_box != 0)
        edge = (
            ndimage.binary_dilation(mine, structure=cube)
            & (lab_box == 0)
            & (hu[box] >= opts.edge_threshold_hu)
        )
        if others.any():  # voxels touching two components' cores go to neither
            edge &= ~ndimage.binary_dilation(others, structure=cube)
        lab_box[edge] = lab
        mine |= edge
        kji = np.argwhere(mine) + np.array([s.start for s in box])
        vals = hu[box][mine].astype(float)
        ijk = kji[:, ::-1].astype(float)
        above = np.maximum(vals - opts.edge_threshold_hu, 0.0)
        comps.append(
            _Component(
                label=lab,
                ijk=ijk,
                pos_mm=grid.ijk_to_mm(ijk),
                weight=above + 1e-3,
                core_volume_mm3=n_core * voxel_mm3,
                signal=float(above.sum()) * voxel_mm3,
                peak_hu=float(vals.max()),
                clipped=vals >= clip_hu,
            )
        )
    return comps, labels


def _single_seed_signal(signals: np.ndarray, seed_count: int | None) -> tuple[float, str]:
    if signals.size >= 3:
        v = float(np.median(signals))
        for _ in range(3):
            sel = signals[(signals > 0.5 * v) & (signals < 1.5 * v)]
            if sel.size == 0:
                break
            v = float(np.median(sel))
        return v, "median of isolated components"
    if seed_count:
        return float(signals.sum()) / seed_count, "total metal signal / seed count"
    return float(np.median(signals)), "median of fewer than 3 components (uncertain)"


def _single_seed_eigenvalues(eigs: list, spacing_mm: np.ndarray) -> np.ndarray:
    """Median eigenvalues (ascending, mm2) of one seed's voxel covariance, from isolated seeds.

    Fallback with no isolated seed: a 4.5 mm x 0.8 mm cylinder (L^2 / 12, d^2 / 16) plus
    the voxel's box variance.
    """
    if eigs:
        return np.median(np.asarray(eigs), axis=0)
    box = float(np.mean(spacing_mm**2)) / 12.0
    across = SEED_DIAMETER_MM**2 / 16.0 + box
    return np.array([across, across, SEED_LENGTH_MM**2 / 12.0 + box])


def _seeds_in_component(
    c: _Component, ref_eig: np.ndarray, opts: DetectionOptions
) -> tuple[int, float]:
    """Seeds in a component, and the continuous estimate behind it (module docstring, step 4).

    Shape: a chain of n seeds end to end at a centre distance of one seed length s adds
    ``s^2 (n^2 - 1) / 12`` to the variance along the axis (less a quarter voxel length
    squared along the axis for the quantisation of the ends); a side-by-side pair adds
    ``(d / 2)^2`` across (d = seed diameter), counted when above 80 % of that.  Where the
    voxel extent along the component's axis is at most a third of a seed length (thin
    slices) and the component is elongated, the shape estimate ``n_along x n_across``
    is used when it is within one seed of the signal estimate: clipping makes the signal
    of touching seeds vary from 1.3 to 2.6 single-seed signals for a pair.

    Otherwise (thick slices: seeds 8-10 mm apart on one needle merge into one component
    and mimic a longer touching chain) the signal decides, ``k = round(V / v1)``, and the
    shape only breaks ties: when ``V / v1 - k >= tie_fraction`` (or across-excess above
    1.5 (d/2)^2) and the shape says more, one seed is added; the length along the axis
    only counts to tell one seed from two (beyond that, a touching chain and seeds 8-10 mm
    apart merged by thick slices look alike).  The shape also caps the count: no more
    than ``floor(n_along + 0.75)`` seeds along the axis, times two across when the width
    exceeds a single seed's by 0.3 (d/2)^2 (clipping can make a pair's signal look like
    three seeds').
    """
    if c.ratio < opts.min_volume_fraction:
        return 0, c.ratio
    along, across = _shape_excess(c, ref_eig)
    n_across = 2 if across > 0.8 else 1
    elongated = c.elongation >= opts.round_elongation
    thin = c.axis_voxel_mm <= SEED_LENGTH_MM / 3.0
    shape_estimate = along * n_across
    if thin and elongated and abs(shape_estimate - c.ratio) <= 1.0:
        return max(1, int(np.rint(shape_estimate))), shape_estimate
    k_signal = max(1, int(np.rint(c.ratio)))
    if not elongated:  # a round blob is no chain or pair of seeds
        return k_signal, c.ratio
    tie = c.ratio - k_signal >= opts.tie_fraction
    # the length along the axis tells one seed from two, but beyond that it cannot tell a
    # touching chain from seeds 8-10 mm apart merged by thick slices
    n_along = min(int(np.rint(along)), 2) if k_signal == 1 else 1
    if n_along * n_across > k_signal and (tie or across > 1.5):
        return k_signal + 1, c.ratio
    # ... nor can the signal exceed what the shape can hold: seeds along the axis (the
    # merged-spaced-seed ambiguity only ever lengthens) times two across, if any width
    cap = max(1, int(np.floor(along + 0.75))) * (2 if across > 0.3 else 1)
    if k_signal > cap:
        return cap, float(cap)
    return k_signal, c.ratio


def _shape_excess(c: _Component, ref_eig: np.ndarray) -> tuple[float, float]:
    """(seeds along the axis implied by its variance, across variance excess / (d/2)^2)."""
    excess_along = float(c.eig[2] - ref_eig[2]) - c.axis_voxel_mm**2 / 4.0
    along = float(np.sqrt(1.0 + 12.0 * max(0.0, excess_along) / SEED_LENGTH_MM**2))
    across = float(c.eig[1] - ref_eig[1]) / (SEED_DIAMETER_MM / 2.0) ** 2
    return along, across


def _reconcile(
    comps: list[_Component], seed_count: int, round_elongation: float, notes: list[str]
) -> None:
    """Make the per-component counts add up to ``seed_count`` (module docstring, step 4)."""

    def wants_more(c: _Component) -> float:
        return c.estimate - c.k + 0.5 * c.shape_more

    total = sum(c.k for c in comps)
    start = total
    while total < seed_count:
        c = max(comps, key=wants_more)
        c.k += 1
        total += 1
    while total > seed_count:
        live = [c for c in comps if c.k > 0]
        c = min(live, key=lambda c: (c.estimate - (c.k - 1)) * _shape_factor(c, round_elongation))
        c.k -= 1
        total -= 1
    if start != seed_count:
        notes.append(
            f"seed count reconciled: {start} seeds from signals and shapes, {seed_count} implanted "
            f"({'split' if start < seed_count else 'removed'} {abs(seed_count - start)})"
        )


def _shape_factor(c: _Component, round_elongation: float) -> float:
    return 1.0 if c.elongation >= round_elongation else 0.25


def _describe(comps: list[_Component], grid: Grid, v1: float, opts: DetectionOptions) -> tuple:
    """Signal ratio, shape and seed count of every component (module docstring, 3-4).

    Returns the single-seed covariance eigenvalues and the voxel box covariance (mm2).
    """
    sp = np.asarray(grid.spacing_mm)
    d = grid.direction_matrix
    voxel_cov = d @ np.diag(sp**2 / 12.0) @ d.T
    eigs = []
    for c in comps:
        c.ratio = c.signal / v1
        _, cov = _weighted_moments(c.pos_mm, c.weight)
        _, c.elongation = _axis_and_elongation(cov, voxel_cov)
        c.eig, vecs = np.linalg.eigh(cov)
        c.axis_voxel_mm = float(np.sum(np.abs(d.T @ vecs[:, -1]) * sp))
        if 0.75 < c.ratio < 1.25:
            eigs.append(c.eig)
    ref_eig = _single_seed_eigenvalues(eigs, sp)
    for c in comps:
        c.k, c.estimate = _seeds_in_component(c, ref_eig, opts)
        along, across = _shape_excess(c, ref_eig)
        # shape evidence for one seed more than assigned (a pair's own across-excess is
        # already explained once it holds two seeds)
        more = max(across, along - 1.0) if c.k <= 1 else along * (2 if across > 0.8 else 1) - c.k
        c.shape_more = float(np.clip(more, 0.0, 1.0))
    return ref_eig, voxel_cov


def _suspicion(c: _Component, opts: DetectionOptions) -> SuspiciousCluster | None:
    reasons = []
    if c.k == 0:
        reasons.append(f"too small ({c.ratio:.2f} x a seed's signal): dropped")
    elif c.ratio < 0.5:
        reasons.append(f"small ({c.ratio:.2f} x a seed's signal)")
    if c.k > opts.max_seeds_per_cluster:
        reasons.append(f"too large ({c.ratio:.1f} x a seed's signal, {c.k} seeds)")
    elif c.k >= 1 and abs(c.estimate - c.k) > 0.35:
        reasons.append(
            f"ambiguous count ({c.ratio:.2f} x a seed's signal, estimate "
            f"{c.estimate:.2f}, {c.k} seeds)"
        )
    if c.k >= 1 and c.elongation < opts.round_elongation:
        reasons.append(f"round, not seed-like (elongation {c.elongation:.2f})")
    if not reasons:
        return None
    centroid = _weighted_moments(c.pos_mm, c.weight)[0]
    return SuspiciousCluster(
        cluster=c.label,
        centroid_mm=(float(centroid[0]), float(centroid[1]), float(centroid[2])),
        volume_mm3=c.core_volume_mm3,
        signal_ratio=c.ratio,
        seeds_assigned=c.k,
        reason="; ".join(reasons),
    )


def _confidence(c: _Component, opts: DetectionOptions) -> float:
    """Count fit x contrast x shape, in [0, 1] (module docstring, step 6)."""
    fit = float(np.exp(-0.5 * ((c.estimate - c.k) / (0.35 * np.sqrt(c.k))) ** 2))
    margin = 0.25 * abs(opts.metal_threshold_hu) + 1e-9
    contrast = float(np.clip((c.peak_hu - opts.metal_threshold_hu) / margin, 0.1, 1.0))
    shape = _shape_factor(c, opts.round_elongation)
    return float(np.clip(fit * contrast * shape, 0.0, 1.0))


def _own_slices(slices: list[np.ndarray], n: int) -> bool:
    """True when no other seed of the component has voxels within seed n's slice range."""
    lo, hi = slices[n].min(), slices[n].max()
    return all(not np.any((o >= lo) & (o <= hi)) for q, o in enumerate(slices) if q != n)


def detect_seeds(
    hu: np.ndarray,
    grid: Grid,
    *,
    seed_count: int | None = None,
    options: DetectionOptions | None = None,
    progress: ProgressCallback | None = None,
) -> SeedDetection:
    """Detect the seeds on a post-implant CT (``hu`` indexed [k, j, i] on ``grid``).

    ``seed_count``, when given, is the number of implanted seeds; the per-component counts
    are reconciled to it (module docstring, step 4).  Raises :class:`ConfigError` for NaN
    HU or when no voxel reaches the metal threshold, :class:`GeometryError` for a volume
    that does not fit the grid.
    """
    opts = options or DetectionOptions()
    arr = _check_inputs(hu, grid, seed_count)
    report(progress, 0.0, "thresholding")
    comps, _ = _components(arr, grid, opts)
    if not comps:
        raise ConfigError(
            f"no seeds found: no voxel reaches the metal threshold of "
            f"{opts.metal_threshold_hu:g} HU (image maximum {float(arr.max()):g} HU); is this a "
            "post-implant CT, and is its stored range clipped below the threshold?",
            key="metal_threshold_hu",
        )
    report(progress, 0.3, f"{len(comps)} metal components")
    v1, how = _single_seed_signal(np.array([c.signal for c in comps]), seed_count)
    notes = [f"single-seed metal signal {v1:.4g} HU mm3 ({how})"]
    ref_eig, voxel_cov = _describe(comps, grid, v1, opts)
    seed_var_mm2 = (float(ref_eig[2]), float(0.5 * (ref_eig[0] + ref_eig[1])))
    if seed_count is not None:
        _reconcile(comps, int(seed_count), opts.round_elongation, notes)
    sp = grid.spacing_mm
    thick = opts.end_slice_refinement and sp[2] >= 1.5 * max(sp[0], sp[1])
    seeds: list[DetectedSeed] = []
    suspicious = [s for s in (_suspicion(c, opts) for c in comps) if s is not None]
    ends: list = []
    for n_done, c in enumerate(comps):
        if c.k == 0:
            continue
        confidence = _confidence(c, opts)
        parts = _split(c, c.k, opts.kmeans_iterations, seed_var_mm2)
        slices = [np.rint(c.ijk[part, 2]).astype(int) for part in parts]
        for n_part, part in enumerate(parts):
            mean, cov = _weighted_moments(c.pos_mm[part], c.weight[part])
            axis, _ = _axis_and_elongation(cov, voxel_cov)
            if axis @ grid.slice_normal < 0:
                axis = -axis
            if thick and _own_slices(slices, n_part):
                m = measure_end_slices(
                    arr, grid, c.ijk[part, 2], c.weight[part], c.clipped[part], mean, axis
                )
                if m is not None:
                    ends.append((len(seeds), m, mean, axis))
            seeds.append(
                DetectedSeed(
                    position_mm=(float(mean[0]), float(mean[1]), float(mean[2])),
                    direction=(float(axis[0]), float(axis[1]), float(axis[2])),
                    confidence=confidence,
                    cluster=c.label,
                    seeds_in_cluster=c.k,
                )
            )
        report(progress, 0.3 + 0.7 * (n_done + 1) / len(comps), "splitting clusters")
    report(progress, 1.0, f"{len(seeds)} seeds")
    if not seeds:
        raise ConfigError(
            f"no seeds found: {len(comps)} metal components, all smaller than "
            f"{opts.min_volume_fraction} x the single-seed signal",
            key="metal_threshold_hu",
        )
    if ends:
        unit = unit_overlap_signal([m for _, m, _, _ in ends])
        for index, m, mean, axis in ends:
            p = refined_position(m, mean, axis, grid, unit)
            seeds[index] = replace(
                seeds[index], position_mm=(float(p[0]), float(p[1]), float(p[2]))
            )
        notes.append(
            f"{len(ends)} seeds placed across thick slices from their end slices "
            + ("(signal per unit overlap calibrated)" if unit else "(uncalibrated)")
        )
    return SeedDetection(
        seeds=tuple(seeds),
        suspicious=tuple(suspicious),
        single_seed_signal_hu_mm3=v1,
        metal_threshold_hu=opts.metal_threshold_hu,
        n_components=len(comps),
        seed_count_given=None if seed_count is None else int(seed_count),
        notes=tuple(notes),
    )


# ---------------------------------------------------------------------------- plan
def to_plan(
    detection: SeedDetection,
    *,
    sk_u: float,
    model: str,
    reference_datetime: _dt.datetime,
    manufacturer: str = "",
    label: str = "POSTIMPLANT",
    prescription_dose_gy: float | None = None,
    referenced_structure_set_uid: str | None = None,
) -> BrachyPlan:
    """A permanent I-125 :class:`BrachyPlan` of the detected seeds (air-kerma strength ``sk_u``).

    A CT does not show which needle delivered a seed, so each seed is its own channel
    (numbered in detection order) with its detected orientation.
    """
    if detection.n_seeds == 0:
        raise ConfigError("the detection holds no seeds; no plan to build", key="detection")
    source = BrachySource(
        sk_u=float(sk_u),
        reference_datetime=reference_datetime,
        isotope="I-125",
        model=model,
        manufacturer=manufacturer,
        source_type="LINE",
    )
    return seed_implant(
        detection.positions_mm,
        list(range(1, detection.n_seeds + 1)),
        source=source,
        directions=detection.directions,
        label=label,
        prescription_dose_gy=prescription_dose_gy,
        referenced_structure_set_uid=referenced_structure_set_uid,
    )


# ---------------------------------------------------------------------------- scoring
@dataclass(frozen=True)
class SeedMatch:
    """Detections matched to known seeds (Hungarian assignment within a gate)."""

    detected_index: np.ndarray
    truth_index: np.ndarray
    error_mm: np.ndarray
    n_detected: int
    n_truth: int

    @property
    def n_matched(self) -> int:
        return int(self.truth_index.size)

    @property
    def detection_rate(self) -> float:
        return self.n_matched / self.n_truth if self.n_truth else 0.0

    @property
    def false_positives(self) -> int:
        return self.n_detected - self.n_matched

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.n_truth if self.n_truth else 0.0


def match_seeds(
    detected_mm: np.ndarray, truth_mm: np.ndarray, *, gate_mm: float = 3.0
) -> SeedMatch:
    """Match detections to true positions: minimum total distance, pairs above ``gate_mm`` cut.

    Uses the Hungarian algorithm (scipy.optimize.linear_sum_assignment) on the distance
    matrix with distances beyond the gate priced out.
    """
    det = np.asarray(detected_mm, dtype=float).reshape(-1, 3)
    tru = np.asarray(truth_mm, dtype=float).reshape(-1, 3)
    if det.shape[0] == 0 or tru.shape[0] == 0:
        empty = np.zeros(0, dtype=int)
        return SeedMatch(empty, empty, np.zeros(0), det.shape[0], tru.shape[0])
    dist = np.linalg.norm(det[:, None, :] - tru[None, :, :], axis=-1)
    cost = np.where(dist <= gate_mm, dist, 1e6)
    r, c = linear_sum_assignment(cost)
    keep = dist[r, c] <= gate_mm
    return SeedMatch(r[keep], c[keep], dist[r[keep], c[keep]], det.shape[0], tru.shape[0])
