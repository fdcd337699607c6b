"""Deformable registration after the rigid step: a cubic B-spline free-form deformation
(SimpleITK ``BSplineTransform``), and the transform it gives.

Model: ``x_fu = L(B(x_plan))`` with ``L`` the rigid :class:`LinearTransform` of the first
step and ``B`` a cubic B-spline displacement on a control mesh over the planning frame
(Rueckert et al., IEEE TMI 18(8):712-721, 1999).  The mesh spacing is the regulariser: a
displacement field made of cubic B-splines on a ``mesh_spacing_mm`` lattice has no detail
finer than that (SimpleITK has no bending-energy term in its registration method, so
smoothness is imposed by the basis).  The metric is the mean squared HU difference by
default - both images are CTs in calibrated HU, and the rigid mutual-information step has
already absorbed any gross mismatch - or Mattes mutual information (``metric="mattes"``,
for contrast-enhanced against plain CT; about 3x slower here).  It is sampled on a REGULAR
lattice with a fixed seed and optimised by L-BFGS-B on a 2-level pyramid, on one SimpleITK
thread: deterministic.

The registration can be restricted to a box of the planning CT (``region``, e.g. the
lesions' zones + a margin): only that box is the fixed image and the mesh covers it, and
the follow-up CT is cropped to that box mapped through the rigid step +
:data:`MOVING_MARGIN_MM` (the registration method smooths and shrinks its whole moving
image at every pyramid level: on a 512 x 512 x 100 CT that was most of the step's time).
Outside the mesh the displacement of a B-spline transform is 0 (the rigid step alone).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import numpy as np

from brachycryo.core.errors import ConfigError, GeometryError
from brachycryo.core.grid import Grid
from brachycryo.followup.registration import (
    SAMPLING_SEED,
    LinearTransform,
    RegistrationError,
    Transform,
    from_sitk,
    one_thread,
    read_sitk_transform,
    sitk_image,
)

#: Margin (mm) around the rigidly mapped box kept of the follow-up CT (the moving image):
#: room for the B-spline displacement (the metric drops samples that map outside it).
MOVING_MARGIN_MM = 20.0


@dataclass(frozen=True)
class DeformableOptions:
    """``mesh_spacing_mm``: B-spline control point spacing (the regulariser, see the module
    docstring); ``max_samples``: metric samples per level (the REGULAR lattice's fraction is
    chosen to give about this many); ``iterations``: L-BFGS-B iterations per level."""

    mesh_spacing_mm: float = 25.0
    #: 10 000: on the 512 x 512 x 100 benchmark's lesion box + 30 mm (0.7 M voxels) the
    #: step converged (function tolerance) in 40 % less CPU time than with 20 000, landmark
    #: TRE 0.057 / 0.15 mm mean / max against 0.045 / 0.14; 5 000 ran out of iterations.
    max_samples: int = 10_000
    iterations: int = 30
    histogram_bins: int = 50
    metric: str = "mean_squares"

    def __post_init__(self) -> None:
        if not 5.0 <= self.mesh_spacing_mm <= 200.0:
            raise ConfigError(
                f"B-spline mesh spacing must be 5-200 mm, got {self.mesh_spacing_mm}",
                key="mesh_spacing_mm",
            )
        if self.metric not in ("mean_squares", "mattes"):
            raise ConfigError(f"metric must be mean_squares or mattes, got {self.metric!r}",
                              key="metric")  # fmt: skip
        if self.max_samples < 1000 or self.iterations < 1:
            raise ConfigError("max_samples >= 1000 and iterations >= 1", key="deformable")


@dataclass(frozen=True)
class BSplineTransform:
    """``x_fu = linear(B(x_plan))``; ``B`` given by SimpleITK's fixed parameters (mesh size,
    origin, spacing, direction) and parameters (control point displacements, mm)."""

    linear: LinearTransform
    fixed_parameters: tuple[float, ...]
    parameters: tuple[float, ...]

    # -- SimpleITK objects
    def bspline(self):
        import SimpleITK as sitk

        b = sitk.BSplineTransform(3, 3)
        b.SetFixedParameters(self.fixed_parameters)
        b.SetParameters(self.parameters)
        return b

    def sitk_transform(self):
        """A CompositeTransform applying ``B`` then ``linear`` (ITK applies the last added
        transform first)."""
        import SimpleITK as sitk

        comp = sitk.CompositeTransform(self.linear.sitk_transform())
        comp.AddTransform(self.bspline())
        return comp

    # -- points
    def apply(self, points_mm: np.ndarray) -> np.ndarray:
        """Planning-frame points (N, 3) -> follow-up-frame points (N, 3)."""
        b = self.bspline()
        p = np.asarray(points_mm, dtype=float).reshape(-1, 3)
        moved = np.array([b.TransformPoint(tuple(map(float, q))) for q in p]).reshape(-1, 3)
        return self.linear.apply(moved)

    def inverse_apply(self, points_fu_mm: np.ndarray, *, tol_mm: float = 1e-3) -> np.ndarray:
        """Follow-up-frame points -> planning frame: ``B^-1(L^-1(y))`` by the fixed-point
        iteration ``x <- z - u(x)`` (``u`` the B-spline displacement, ``z = L^-1(y)``), which
        converges while the displacement's gradient stays under 1 (no folding)."""
        z = self.linear.inverse_apply(points_fu_mm)
        b = self.bspline()
        x = z.copy()
        for _ in range(50):
            u = np.array([b.TransformPoint(tuple(map(float, q))) for q in x]).reshape(-1, 3) - x
            nxt = z - u
            step = float(np.abs(nxt - x).max()) if len(x) else 0.0
            x = nxt
            if step < tol_mm:
                return x
        raise RegistrationError(
            "the deformable transform cannot be inverted at these points (the fixed-point "
            "iteration did not converge: the deformation folds or is too large)"
        )

    @property
    def rotation_deg(self) -> float:
        return self.linear.rotation_deg

    @property
    def is_rigid(self) -> bool:
        return False

    @property
    def mesh_spacing_mm(self) -> tuple[float, float, float]:
        sp = self.fixed_parameters[6:9]
        return (float(sp[0]), float(sp[1]), float(sp[2]))

    @property
    def max_control_displacement_mm(self) -> float:
        c = np.asarray(self.parameters, dtype=float).reshape(3, -1)
        return float(np.linalg.norm(c, axis=0).max()) if c.size else 0.0

    def displacement_mm(self, point_mm: np.ndarray) -> float:
        p = np.asarray(point_mm, dtype=float).reshape(1, 3)
        return float(np.linalg.norm(self.apply(p) - p))

    def displacement_field(self, region: Grid):
        """The B-spline part's displacement field (a SimpleITK vector image) over ``region``,
        sampled at a fifth of the control-point spacing (at least ``region``'s own): fine
        enough for the Jacobian and the field inversion, which both read it."""
        import SimpleITK as sitk

        step = max(min(self.mesh_spacing_mm) / 5.0, min(region.spacing_mm))
        ref = region.resampled(step)
        return sitk.TransformToDisplacementField(
            self.bspline(), sitk.sitkVectorFloat64, ref.size_ijk, ref.origin_mm,
            ref.spacing_mm, ref.direction,
        )  # fmt: skip

    def to_json(self) -> dict:
        fp = self.fixed_parameters
        return {
            "rigid": self.linear.to_json(),
            "deformable": {
                "model": "cubic B-spline (SimpleITK BSplineTransform), applied before rigid",
                "mesh_size": [round(v) for v in fp[0:3]],
                "mesh_origin_mm": list(fp[3:6]),
                "mesh_spacing_mm": list(self.mesh_spacing_mm),
                "max_control_point_displacement_mm": self.max_control_displacement_mm,
            },
            "rotation_deg": self.rotation_deg,
        }

    @classmethod
    def from_sitk(cls, linear: LinearTransform, bspline) -> BSplineTransform:
        return cls(linear, tuple(bspline.GetFixedParameters()), tuple(bspline.GetParameters()))


def read_any_transform(path: str | os.PathLike) -> Transform:
    """A transform file planning -> follow-up: rigid or affine, or the rigid + B-spline
    composite that :func:`~brachycryo.followup.registration.write_transform` writes for a
    :class:`BSplineTransform`."""
    import SimpleITK as sitk

    tx = read_sitk_transform(path)
    try:
        if tx.GetName() == "CompositeTransform":
            comp = sitk.CompositeTransform(tx)
            parts = [
                comp.GetNthTransform(i).Downcast() for i in range(comp.GetNumberOfTransforms())
            ]
            if len(parts) == 2 and parts[1].GetName() == "BSplineTransform":
                return BSplineTransform.from_sitk(from_sitk(parts[0]), parts[1])
        return from_sitk(tx)
    except (RegistrationError, GeometryError) as exc:
        raise RegistrationError(
            f"transform file {path}: {exc} (rigid, affine or rigid + B-spline are read)"
        ) from None


def region_box(plan_grid: Grid, points_mm: np.ndarray, margin_mm: float) -> Grid:
    """The sub-grid of ``plan_grid`` covering ``points_mm`` + ``margin_mm`` (clipped)."""
    ijk = plan_grid.mm_to_ijk(np.asarray(points_mm, float).reshape(-1, 3))
    pad = margin_mm / np.asarray(plan_grid.spacing_mm)
    size = np.asarray(plan_grid.size_ijk)
    lo = np.clip(np.floor(ijk.min(axis=0) - pad), 0, size - 1).astype(int)
    hi = np.clip(np.ceil(ijk.max(axis=0) + pad) + 1, lo + 1, size).astype(int)
    return plan_grid.cropped(lo, hi)


def crop_to(values: np.ndarray, grid: Grid, box: Grid) -> np.ndarray:
    """``values`` on ``grid`` restricted to its sub-grid ``box`` (from :func:`region_box`)."""
    lo = np.rint(grid.mm_to_ijk(np.asarray(box.origin_mm))).astype(int)
    n = box.size_ijk
    return values[lo[2] : lo[2] + n[2], lo[1] : lo[1] + n[1], lo[0] : lo[0] + n[0]]


def mesh_size(grid: Grid, spacing_mm: float) -> list[int]:
    """Control mesh intervals per axis: the physical extent over ``spacing_mm``, >= 1."""
    extent = np.asarray(grid.size_ijk) * np.asarray(grid.spacing_mm)
    return [max(1, math.ceil(e / spacing_mm - 1e-9)) for e in extent]


@dataclass(frozen=True)
class DeformableRun:
    transform: BSplineTransform
    metric_value: float
    iterations: int
    stop_condition: str
    region: Grid  # the part of the planning CT that was registered


def register_bspline(
    plan_hu: np.ndarray,
    plan_grid: Grid,
    fu_hu: np.ndarray,
    fu_grid: Grid,
    linear: LinearTransform,
    *,
    region: Grid | None = None,
    options: DeformableOptions = DeformableOptions(),
) -> DeformableRun:
    """B-spline registration of the follow-up CT (moving) onto the planning CT (fixed, or its
    sub-grid ``region``), starting from the rigid ``linear``; see the module docstring."""
    import SimpleITK as sitk

    box = plan_grid if region is None else region
    values = plan_hu if region is None else crop_to(plan_hu, plan_grid, box)
    fixed = sitk_image(values, box)
    if region is None:
        moving = sitk_image(fu_hu, fu_grid)
    else:
        fu_box = region_box(fu_grid, linear.apply(box.corners_mm()), MOVING_MARGIN_MM)
        moving = sitk_image(crop_to(fu_hu, fu_grid, fu_box), fu_box)
    bs = sitk.BSplineTransformInitializer(fixed, mesh_size(box, options.mesh_spacing_mm), 3)
    reg = sitk.ImageRegistrationMethod()
    if options.metric == "mattes":
        reg.SetMetricAsMattesMutualInformation(numberOfHistogramBins=options.histogram_bins)
    else:
        reg.SetMetricAsMeanSquares()
    reg.SetMetricSamplingStrategy(reg.REGULAR)
    # the coarse level has 1/8 of the voxels: the fraction gives max_samples at full size
    fraction = min(1.0, options.max_samples / float(values.size))
    reg.SetMetricSamplingPercentage(fraction, SAMPLING_SEED)
    reg.SetInterpolator(sitk.sitkLinear)
    reg.SetOptimizerAsLBFGSB(
        gradientConvergenceTolerance=1e-5,
        numberOfIterations=options.iterations,
        maximumNumberOfCorrections=5,
        maximumNumberOfFunctionEvaluations=3 * options.iterations,
        costFunctionConvergenceFactor=1e7,
    )
    reg.SetShrinkFactorsPerLevel([2, 1])
    reg.SetSmoothingSigmasPerLevel([1.0, 0.0])
    reg.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    reg.SetMovingInitialTransform(linear.sitk_transform())
    reg.SetInitialTransform(bs, inPlace=True)
    with one_thread(reg):
        try:
            reg.Execute(fixed, moving)
        except RuntimeError as exc:
            raise RegistrationError(f"SimpleITK B-spline registration failed: {exc}") from None
    return DeformableRun(
        transform=BSplineTransform.from_sitk(linear, bs),
        metric_value=float(reg.GetMetricValue()),
        iterations=int(reg.GetOptimizerIteration()),
        stop_condition=reg.GetOptimizerStopConditionDescription(),
        region=box,
    )
