"""Rigid registration of a follow-up CT to the planning CT (SimpleITK), and given transforms.

Convention (ITK's): the planning CT is the *fixed* image and the follow-up CT the *moving*
one; a :class:`LinearTransform` maps a point of the planning frame to the point of the
follow-up frame that shows the same tissue, ``x_fu = A (x_plan - c) + c + t``.  Follow-up
masks are carried onto planning grids by sampling them at ``T(x_plan)``.

The registration maximises Mattes mutual information (Mattes et al., IEEE TMI 22(1) 2003;
SimpleITK ``SetMetricAsMattesMutualInformation``) over a 6-parameter Euler transform, with a
regular-step gradient descent on a multi-resolution pyramid.  It is deterministic: the
metric samples a fixed REGULAR lattice perturbed with a fixed seed, and SimpleITK runs on
one thread, so the same pair gives the same transform on any machine (multi-threaded
metric sums are added in an order that depends on the thread count).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from brachycryo.core.errors import BrachyCryoError, GeometryError
from brachycryo.core.grid import Grid

if TYPE_CHECKING:
    from brachycryo.followup.reg_quality import RegistrationChecks

#: Seed of the metric's sampling lattice perturbation (any fixed value: determinism).
SAMPLING_SEED = 20260105
#: Fraction of the fixed image's voxels the metric samples at each level ...
SAMPLING_FRACTION = 0.1
#: ... but at most this many samples (a 512 x 512 x 100 CT would otherwise give 2.6 M)
MAX_SAMPLES = 50_000
#: A CT of more voxels than this is averaged down (SimpleITK BinShrink, integer factors per
#: axis, the finest axes first) before the rigid step: the registration method smooths and
#: shrinks its full-size images at every pyramid level, which on a 512 x 512 x 100 CT was
#: most of the step's time.  There (0.8 x 0.8 x 2.5 mm -> 2.4 x 2.4 x 2.5 mm) the rigid
#: step took 1/4-1/5 of the CPU time for a transform within 0.03 mm of the full-size one
#: at the landmarks around the lesion (benchmarks/followup_speed.py).
RIGID_MAX_VOXELS = 4_000_000
#: Coarsest voxel (mm) a pyramid level may reach; levels coarser than this are skipped.
COARSEST_LEVEL_MM = 10.0
#: The quality block's HU correlation and overlap are measured on at most about this many
#: planning voxels (every n-th voxel in-plane; a 512 x 512 x 100 CT: every 4th, 1.6 M).
QUALITY_MAX_VOXELS = 2_000_000
#: Below this fraction of the planning CT overlapping the follow-up CT after registration,
#: the result is refused (the images do not show the same region).
MIN_OVERLAP_FRACTION = 0.2


class RegistrationError(BrachyCryoError):
    """The follow-up CT could not be registered to the planning CT (no overlap, bad file)."""


@dataclass(frozen=True)
class LinearTransform:
    """``x_fu = matrix @ (x_plan - centre_mm) + centre_mm + translation_mm`` (mm, LPS).

    ``matrix`` is 3x3 row-major; a rigid transform has an orthonormal matrix with
    determinant +1.
    """

    matrix: tuple[float, ...]
    translation_mm: tuple[float, float, float]
    centre_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        m = np.asarray(self.matrix, dtype=float)
        if m.size != 9 or not np.all(np.isfinite(m)):
            raise GeometryError(f"transform matrix must be 9 finite numbers, got {self.matrix}")
        if not np.linalg.det(m.reshape(3, 3)) > 0:
            raise GeometryError(
                "transform matrix has determinant <= 0 (a reflection or a folding): "
                f"{m.reshape(3, 3).tolist()}"
            )

    @property
    def matrix_3x3(self) -> np.ndarray:
        return np.asarray(self.matrix, dtype=float).reshape(3, 3)

    def apply(self, points_mm: np.ndarray) -> np.ndarray:
        """Planning-frame points (N, 3) -> follow-up-frame points (N, 3)."""
        p = np.asarray(points_mm, dtype=float).reshape(-1, 3)
        c = np.asarray(self.centre_mm)
        return (p - c) @ self.matrix_3x3.T + c + np.asarray(self.translation_mm)

    def inverse_apply(self, points_fu_mm: np.ndarray) -> np.ndarray:
        """Follow-up-frame points (N, 3) -> planning frame (the inverse map)."""
        p = np.asarray(points_fu_mm, dtype=float).reshape(-1, 3)
        c = np.asarray(self.centre_mm)
        inv = np.linalg.inv(self.matrix_3x3)
        return (p - c - np.asarray(self.translation_mm)) @ inv.T + c

    def inverted(self) -> LinearTransform:
        """The inverse map (follow-up -> planning), about the same centre."""
        inv = np.linalg.inv(self.matrix_3x3)
        t = -inv @ np.asarray(self.translation_mm)
        return LinearTransform(
            tuple(float(v) for v in inv.reshape(-1)),
            (float(t[0]), float(t[1]), float(t[2])),
            self.centre_mm,
        )

    def sitk_transform(self):
        """The SimpleITK AffineTransform of this map."""
        import SimpleITK as sitk

        tx = sitk.AffineTransform(3)
        tx.SetMatrix(self.matrix)
        tx.SetTranslation(self.translation_mm)
        tx.SetCenter(self.centre_mm)
        return tx

    @property
    def rotation_deg(self) -> float:
        """Angle of the rotation part (degrees): ``acos((trace R - 1) / 2)`` of the polar
        factor R of the matrix (R = the matrix itself for a rigid transform)."""
        u, _, vt = np.linalg.svd(self.matrix_3x3)
        r = u @ vt
        return math.degrees(math.acos(float(np.clip((np.trace(r) - 1.0) / 2.0, -1.0, 1.0))))

    @property
    def is_rigid(self) -> bool:
        m = self.matrix_3x3
        return bool(np.allclose(m.T @ m, np.eye(3), atol=1e-6))

    def displacement_mm(self, point_mm: np.ndarray) -> float:
        """How far the transform moves ``point_mm`` (mm)."""
        p = np.asarray(point_mm, dtype=float).reshape(1, 3)
        return float(np.linalg.norm(self.apply(p) - p))

    def to_json(self) -> dict:
        return {
            "matrix": [list(r) for r in self.matrix_3x3.tolist()],
            "translation_mm": list(self.translation_mm),
            "centre_mm": list(self.centre_mm),
            "rotation_deg": self.rotation_deg,
            "rigid": self.is_rigid,
        }


IDENTITY = LinearTransform((1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0), (0.0, 0.0, 0.0))


class Transform(Protocol):
    """A planning -> follow-up map: :class:`LinearTransform` (rigid / affine) or
    :class:`~brachycryo.followup.deformable.BSplineTransform` (rigid after a B-spline)."""

    @property
    def rotation_deg(self) -> float: ...

    def apply(self, points_mm: np.ndarray) -> np.ndarray: ...

    def inverse_apply(self, points_fu_mm: np.ndarray) -> np.ndarray: ...

    def sitk_transform(self): ...

    def displacement_mm(self, point_mm: np.ndarray) -> float: ...

    def to_json(self) -> dict: ...


@dataclass(frozen=True)
class RegistrationQuality:
    """How well the two CTs agree.

    ``correlation_before`` / ``correlation_after``: Pearson correlation of the HU of the
    planning CT and of the follow-up CT sampled through the identity / the found transform,
    over the planning voxels the follow-up CT covers; ``overlap_fraction``: the fraction of
    planning voxels covered.  Both on the planning voxels of :func:`quality_lattice` (every
    voxel of a small CT, every 4th in-plane of a 512 x 512 x 100 one).  ``metric_value`` is
    the final Mattes MI metric (SimpleITK's sign:
    more negative = better; None for a given transform).
    """

    correlation_before: float
    correlation_after: float
    overlap_fraction: float
    metric_value: float | None
    iterations: int | None
    stop_condition: str

    def to_json(self) -> dict:
        return {
            "correlation_before": self.correlation_before,
            "correlation_after": self.correlation_after,
            "overlap_fraction": self.overlap_fraction,
            "mattes_mi_metric": self.metric_value,
            "iterations": self.iterations,
            "stop_condition": self.stop_condition,
        }


@dataclass(frozen=True)
class Registration:
    """The transform planning -> follow-up, where it came from and its quality."""

    transform: Transform
    source: str  # "rigid-mi", "rigid-mi + bspline-mi" or the path of a given transform file
    quality: RegistrationQuality
    checks: RegistrationChecks | None = None

    def to_json(self) -> dict:
        return {
            "source": self.source,
            "transform": self.transform.to_json(),
            "quality": self.quality.to_json(),
            "checks": None if self.checks is None else self.checks.to_json(),
        }


# ---------------------------------------------------------------------------- SimpleITK glue
def sitk_image(values: np.ndarray, grid: Grid):
    """A SimpleITK float32 image of ``values`` (indexed [k, j, i]) on ``grid``."""
    import SimpleITK as sitk

    img = sitk.GetImageFromArray(np.ascontiguousarray(values, dtype=np.float32))
    img.SetOrigin(grid.origin_mm)
    img.SetSpacing(grid.spacing_mm)
    img.SetDirection(grid.direction)
    return img


def to_sitk(transform: Transform):
    return transform.sitk_transform()


@contextmanager
def one_thread(reg) -> Iterator[None]:
    """Run a SimpleITK registration method (and the filters it calls) on one thread: the
    metric's sums are then added in one order on any machine (determinism)."""
    import SimpleITK as sitk

    reg.SetNumberOfThreads(1)
    previous = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    try:
        yield
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(previous)


def _linear_from_sitk(tx) -> LinearTransform:
    tx = tx.Downcast()
    if not all(hasattr(tx, f) for f in ("GetMatrix", "GetTranslation", "GetCenter")):
        raise RegistrationError(f"{tx.GetName()} is not a linear (rigid or affine) transform")
    return LinearTransform(tuple(tx.GetMatrix()), tuple(tx.GetTranslation()), tuple(tx.GetCenter()))


def from_sitk(tx) -> LinearTransform:
    """A SimpleITK linear transform (Euler, Versor, Similarity, Affine; or a composite of
    exactly one of them) as a :class:`LinearTransform`; other composites are refused here
    (:func:`brachycryo.followup.deformable.read_any_transform` reads rigid + B-spline)."""
    import SimpleITK as sitk

    if tx.GetName() != "CompositeTransform":
        return _linear_from_sitk(tx)
    comp = sitk.CompositeTransform(tx)
    n = comp.GetNumberOfTransforms()
    if n != 1:
        raise RegistrationError(f"a composite of {n} transforms is not a rigid or affine transform")
    return _linear_from_sitk(comp.GetNthTransform(0))


def read_sitk_transform(path: str | os.PathLike):
    """The SimpleITK transform in a file; :class:`RegistrationError` naming it if unreadable."""
    import SimpleITK as sitk

    p = Path(path)
    if not p.is_file():
        raise RegistrationError(f"transform file {p} does not exist")
    try:
        return sitk.ReadTransform(str(p))
    except RuntimeError as exc:
        raise RegistrationError(f"transform file {p} cannot be read: {exc}") from None


def read_transform(path: str | os.PathLike) -> LinearTransform:
    """A rigid or affine transform file (ITK .tfm / .txt / .h5, planning -> follow-up)."""
    tx = read_sitk_transform(path)
    try:
        return from_sitk(tx)
    except (RegistrationError, GeometryError) as exc:
        raise RegistrationError(f"transform file {path}: {exc}") from None


def write_transform(path: str | os.PathLike, transform: Transform) -> None:
    import SimpleITK as sitk

    sitk.WriteTransform(transform.sitk_transform(), str(path))


def resample_onto(
    values: np.ndarray, grid: Grid, target: Grid, transform: Transform, *, linear: bool
) -> tuple[np.ndarray, np.ndarray]:
    """``values`` (on ``grid``, follow-up frame) sampled at ``transform(x)`` for the voxel
    centres x of ``target`` (planning frame); also the mask of target voxels whose sample
    point lies inside ``grid``."""
    import SimpleITK as sitk

    ref = sitk_image(np.zeros(target.shape, dtype=np.float32), target)
    interp = sitk.sitkLinear if linear else sitk.sitkNearestNeighbor
    tx = to_sitk(transform)
    out = sitk.Resample(sitk_image(values, grid), ref, tx, interp, 0.0, sitk.sitkFloat32)
    inside = sitk.Resample(
        sitk_image(np.ones(grid.shape, np.float32), grid), ref, tx, sitk.sitkNearestNeighbor, 0.0
    )
    return sitk.GetArrayFromImage(out), sitk.GetArrayFromImage(inside) > 0.5


# ---------------------------------------------------------------------------- quality
def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    if a.size < 2 or np.std(a) == 0 or np.std(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def quality_lattice(plan_hu: np.ndarray, plan_grid: Grid) -> tuple[np.ndarray, Grid]:
    """Every n-th planning voxel along i and j (n the smallest giving at most
    :data:`QUALITY_MAX_VOXELS`), as values and their grid."""
    n = max(1, math.ceil(math.sqrt(plan_hu.size / QUALITY_MAX_VOXELS)))
    if n == 1:
        return plan_hu, plan_grid
    sub = plan_hu[:, ::n, ::n]
    si, sj, sk = plan_grid.spacing_mm
    nk, nj, ni = sub.shape
    grid = Grid((nk, nj, ni), plan_grid.origin_mm, (si * n, sj * n, sk), plan_grid.direction)
    return sub, grid


def registration_quality(
    plan_hu: np.ndarray,
    plan_grid: Grid,
    fu_hu: np.ndarray,
    fu_grid: Grid,
    transform: Transform,
    *,
    metric_value: float | None = None,
    iterations: int | None = None,
    stop_condition: str = "",
) -> RegistrationQuality:
    """HU correlation before / after and the overlap; :class:`RegistrationError` when under
    :data:`MIN_OVERLAP_FRACTION` of the planning CT lies in the follow-up CT."""
    plan_hu, plan_grid = quality_lattice(plan_hu, plan_grid)
    before, in_before = resample_onto(fu_hu, fu_grid, plan_grid, IDENTITY, linear=True)
    after, in_after = resample_onto(fu_hu, fu_grid, plan_grid, transform, linear=True)
    overlap = float(in_after.mean())
    if overlap < MIN_OVERLAP_FRACTION:
        raise RegistrationError(
            f"after registration only {overlap:.0%} of the planning CT lies inside the "
            f"follow-up CT (minimum {MIN_OVERLAP_FRACTION:.0%}): not the same region"
        )
    return RegistrationQuality(
        correlation_before=_correlation(plan_hu[in_before], before[in_before]),
        correlation_after=_correlation(plan_hu[in_after], after[in_after]),
        overlap_fraction=overlap,
        metric_value=metric_value,
        iterations=iterations,
        stop_condition=stop_condition,
    )


# ---------------------------------------------------------------------------- registering
def pyramid(grid: Grid) -> tuple[list[int], list[float]]:
    """Shrink factors (4, 2, 1 where the coarse voxel stays under :data:`COARSEST_LEVEL_MM`)
    and Gaussian smoothing sigmas (voxels of the level: factor / 2)."""
    coarse = max(grid.spacing_mm)
    shrink = [f for f in (4, 2) if f * coarse <= COARSEST_LEVEL_MM] + [1]
    return shrink, [f / 2.0 if f > 1 else 0.0 for f in shrink]


def bin_factors(grid: Grid, max_voxels: int = RIGID_MAX_VOXELS) -> tuple[int, int, int]:
    """Integer factors (i, j, k) that bring ``grid`` under ``max_voxels``: each axis is
    binned to about a common target voxel, raised from the finest spacing in 25 % steps
    (so fine in-plane axes are binned before thick slices)."""
    size = np.asarray(grid.size_ijk)
    spacing = np.asarray(grid.spacing_mm, dtype=float)
    most = np.maximum(1, size // 8)  # keep 8 voxels an axis
    target = float(spacing.min())
    factors = np.ones(3, dtype=int)
    while np.prod(size // factors) > max_voxels and not np.all(factors >= most):
        target *= 1.25
        factors = np.minimum(np.maximum(1, np.floor(target / spacing + 1e-9)), most).astype(int)
    return int(factors[0]), int(factors[1]), int(factors[2])


def _binned(values: np.ndarray, grid: Grid):
    """The SimpleITK image of ``values`` on ``grid``, averaged by :func:`bin_factors`."""
    import SimpleITK as sitk

    img = sitk_image(values, grid)
    f = bin_factors(grid)
    return img if f == (1, 1, 1) else sitk.BinShrink(img, list(f))


def register_rigid(plan_hu: np.ndarray, plan_grid: Grid, fu_hu: np.ndarray, fu_grid: Grid):
    """Rigid (Euler 3D) registration, Mattes MI, multi-resolution; see the module docstring.

    Starts from the transform that aligns the two images' geometric centres.  A CT over
    :data:`RIGID_MAX_VOXELS` voxels is averaged down first.
    """
    import SimpleITK as sitk

    fixed = _binned(plan_hu, plan_grid)
    moving = _binned(fu_hu, fu_grid)
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Euler3DTransform(), sitk.CenteredTransformInitializerFilter.GEOMETRY
    )
    reg = sitk.ImageRegistrationMethod()
    reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=50)
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    fraction = min(SAMPLING_FRACTION, MAX_SAMPLES / float(fixed.GetNumberOfPixels()))
    reg.SetMetricSamplingPercentage(fraction, SAMPLING_SEED)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsRegularStepGradientDescent(
        learningRate=2.0, minStep=1e-4, numberOfIterations=300, relaxationFactor=0.5
    )
    reg.SetOptimizerScalesFromPhysicalShift()
    shrink, sigmas = pyramid(Grid(plan_grid.shape, plan_grid.origin_mm, fixed.GetSpacing(),
                                  plan_grid.direction))  # fmt: skip
    reg.SetShrinkFactorsPerLevel(shrink)
    reg.SetSmoothingSigmasPerLevel(sigmas)
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetInitialTransform(initial, inPlace=False)
    with one_thread(reg):
        try:
            found = reg.Execute(fixed, moving)
        except RuntimeError as exc:
            raise RegistrationError(f"SimpleITK registration failed: {exc}") from None
    transform = from_sitk(found)
    if not isinstance(transform, LinearTransform):  # an Euler3DTransform was optimised
        raise RegistrationError(f"rigid registration returned a {found.GetName()}")
    quality = registration_quality(
        plan_hu,
        plan_grid,
        fu_hu,
        fu_grid,
        transform,
        metric_value=float(reg.GetMetricValue()),
        iterations=int(reg.GetOptimizerIteration()),
        stop_condition=reg.GetOptimizerStopConditionDescription(),
    )
    return Registration(transform, "rigid-mi", quality)
