"""Analytic DVH cases after Nelms et al. (Med Phys 42:4435, 2015), written as real DICOM files.

Each case is a structure (sphere, cylinder or cone) drawn as contours on the slices of a
CT series (2 mm slices) and a dose field with a closed-form cumulative DVH, sampled on a
dose grid (1 or 2 mm, any orientation) and written as RTDOSE.  The closed forms:

* **Sphere (radius R) in a linear field** ``D = D0 + g s`` (``s`` the coordinate along the
  gradient from the centre): the volume receiving >= D is the spherical cap ``s >= h``,
  ``h = (D - D0) / g``, of volume ``V(h) = pi (R - h)^2 (2R + h) / 3`` (-R <= h <= R).  Dx %
  solves ``(1 - u)^2 (2 + u) = 4 x / 100`` for ``u = h / R`` (one root in [-1, 1]).
* **Sphere in a radial field** ``D = A / (r^2 + a^2)`` about its centre (a point source
  regularised by ``a``): the volume receiving >= D is the ball of radius
  ``r(D) = sqrt(A / D - a^2)`` (capped at R), so ``V = 4/3 pi min(R, r(D))^3`` and
  ``Dx = A / (r_x^2 + a^2)`` with ``r_x = R (x / 100)^(1/3)``.
* **Cylinder (radius R, height H) in a radial field about its axis**
  ``D = A / (rho^2 + a^2)`` (a line source): ``V = pi min(R, rho(D))^2 H``,
  ``rho(D) = sqrt(A / D - a^2)``, ``Dx = A / (rho_x^2 + a^2)``, ``rho_x = R sqrt(x / 100)``.
* **Cone (base radius R, height H, apex up) in a linear field along its axis**
  ``D = D0 + g (z - z_base)``: the volume receiving >= D is the cone above
  ``z_D = z_base + (D - D0) / g``, similar to the whole with height ``z_top - z_D``, so
  ``V = pi R^2 (z_top - z_D)^3 / (3 H^2)`` and ``Dx = D0 + g H (1 - (x / 100)^(1/3))``.

Flat end faces (cylinder base and top, cone base) lie midway between CT slices and the
cone's apex on a slice boundary, so the default ``end_caps="full"`` convention (each
contour stands for its whole slice) represents them exactly; round ends are integrated by
the midpoint rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import brentq

from brachycryo.core.grid import Grid
from brachycryo.dicom_io.common import StudyContext
from brachycryo.dicom_io.ct_series import write_ct_series
from brachycryo.dicom_io.rtdose import write_rtdose
from brachycryo.dicom_io.rtstruct_write import RoiSpec, write_rtstruct
from tests.analytic_shapes import circle

CT_SLICE_MM = 2.0
CT_PIXEL_MM = 2.0


@dataclass(frozen=True)
class Case:
    """A structure with its contours (mm), an analytic dose field and its exact DVH."""

    name: str
    kind: str  # sphere | cylinder | cone
    field: str  # linear | radial
    centre_mm: tuple[float, float, float]
    radius_mm: float
    height_mm: float = 0.0  # cylinder / cone
    d0_gy: float = 0.0  # linear field value at the reference point
    gradient_gy_per_mm: float = 0.0
    gradient_dir: tuple[float, float, float] = (1.0, 0.0, 0.0)
    a_gy_mm2: float = 0.0  # radial field strength A
    core_mm: float = 0.0  # radial field regularisation a
    prescription_gy: float = 100.0

    # ------------------------------------------------------------------ geometry
    def z_range(self) -> tuple[float, float]:
        cz = self.centre_mm[2]
        if self.kind == "sphere":
            return cz - self.radius_mm, cz + self.radius_mm
        return cz - self.height_mm / 2, cz + self.height_mm / 2

    def contours(self, slice_z: np.ndarray) -> list[np.ndarray]:
        cx, cy, cz = self.centre_mm
        z0, z1 = self.z_range()
        out = []
        for z in slice_z:
            if not (z0 < z < z1):
                continue
            if self.kind == "sphere":
                rr = self.radius_mm**2 - (z - cz) ** 2
                r = np.sqrt(rr) if rr > 1e-6 else 0.0
            elif self.kind == "cylinder":
                r = self.radius_mm
            else:  # cone, apex at z1
                r = self.radius_mm * (z1 - z) / self.height_mm
            if r > 1e-3:
                out.append(circle(cx, cy, z, r))
        return out

    @property
    def volume_cc(self) -> float:
        r, h = self.radius_mm, self.height_mm
        v = {
            "sphere": 4 / 3 * np.pi * r**3,
            "cylinder": np.pi * r**2 * h,
            "cone": np.pi * r**2 * h / 3,
        }[self.kind]
        return v / 1000.0

    # ------------------------------------------------------------------ dose field
    def dose_at(self, pts_mm: np.ndarray) -> np.ndarray:
        c = np.asarray(self.centre_mm)
        rel = pts_mm - c
        if self.field == "linear":
            if self.kind == "cone":
                s = pts_mm[..., 2] - self.z_range()[0]
            else:
                s = rel @ np.asarray(self.gradient_dir)
            # clipped at 0 Gy far outside the structure (never within it or its voxels)
            return np.maximum(self.d0_gy + self.gradient_gy_per_mm * s, 0.0)
        if self.kind == "cylinder":
            r2 = rel[..., 0] ** 2 + rel[..., 1] ** 2
        else:
            r2 = np.sum(rel**2, axis=-1)
        return self.a_gy_mm2 / (r2 + self.core_mm**2)

    # ------------------------------------------------------------------ exact DVH
    def volume_at_dose_cc(self, dose_gy: float) -> float:
        """Exact V(>= dose) in cm³ (closed forms of the module docstring)."""
        R, H = self.radius_mm, self.height_mm
        if self.field == "linear" and self.kind == "sphere":
            h = np.clip((dose_gy - self.d0_gy) / self.gradient_gy_per_mm, -R, R)
            return np.pi * (R - h) ** 2 * (2 * R + h) / 3 / 1000
        if self.field == "linear" and self.kind == "cone":
            z_d = np.clip((dose_gy - self.d0_gy) / self.gradient_gy_per_mm, 0, H)
            return np.pi * R**2 * (H - z_d) ** 3 / (3 * H**2) / 1000
        r = np.sqrt(max(self.a_gy_mm2 / dose_gy - self.core_mm**2, 0.0))
        if self.kind == "sphere":
            return 4 / 3 * np.pi * min(R, r) ** 3 / 1000
        return np.pi * min(R, r) ** 2 * H / 1000

    def dose_at_volume_pct(self, pct: float) -> float:
        """Exact Dx % in Gy."""
        p = pct / 100.0
        R, H = self.radius_mm, self.height_mm
        if self.field == "linear" and self.kind == "sphere":
            u = brentq(lambda u: (1 - u) ** 2 * (2 + u) - 4 * p, -1.0, 1.0, xtol=1e-14)
            return self.d0_gy + self.gradient_gy_per_mm * u * R
        if self.field == "linear" and self.kind == "cone":
            return self.d0_gy + self.gradient_gy_per_mm * H * (1 - p ** (1 / 3))
        r = R * p ** (1 / 3) if self.kind == "sphere" else R * np.sqrt(p)
        return self.a_gy_mm2 / (r**2 + self.core_mm**2)


def cases() -> list[Case]:
    """The analytic cases: large (>= 5 cc) and small (0.5-5 cc) structures."""
    out = []
    for tag, r in (("L", 20.0), ("M", 9.0), ("S", 5.5)):
        out.append(
            Case(
                f"sphere_lin_{tag}",
                "sphere",
                "linear",
                (0.3, -0.7, 0.4),
                r,
                d0_gy=100.0,
                gradient_gy_per_mm=40.0 / r,  # +-40 % across the sphere
                gradient_dir=(0.6, 0.8, 0.0),
                prescription_gy=90.0,
            )
        )
        # radial: prescription isodose at r_rx = 0.93 R with a fall-off of 8 %/mm there
        # (2 r / (r^2 + a^2) = 0.08 /mm, the gradient at an I-125 implant's periphery)
        r_rx = 0.93 * r
        a = np.sqrt(r_rx / 0.04 - r_rx**2)
        rx = 145.0
        A = rx * (r_rx**2 + a**2)
        out.append(
            Case(
                f"sphere_rad_{tag}",
                "sphere",
                "radial",
                (0.3, -0.7, 0.4),
                r,
                a_gy_mm2=A,
                core_mm=a,
                prescription_gy=rx,
            )
        )
    # cylinders: ends between CT slices (odd mm); line-source-like radial field with the
    # prescription isodose at 0.9 R and an 8 %/mm fall-off there
    rx = 145.0
    for tag, r, h in (("", 12.0, 28.0), ("_S", 5.0, 12.0)):
        r_rx = 0.9 * r
        a = np.sqrt(r_rx / 0.04 - r_rx**2)
        out.append(
            Case(
                f"cylinder_rad{tag}",
                "cylinder",
                "radial",
                (0.3, -0.7, 0.0),
                r,
                height_mm=h,
                a_gy_mm2=rx * (r_rx**2 + a**2),
                core_mm=a,
                prescription_gy=rx,
            )
        )
    # cone: base radius 15 at z = -20, apex at z = +20
    out.append(
        Case(
            "cone_lin",
            "cone",
            "linear",
            (0.3, -0.7, 0.0),
            15.0,
            height_mm=40.0,
            d0_gy=80.0,
            gradient_gy_per_mm=1.5,
            prescription_gy=84.0,
        )
    )
    return out


def ct_grid_for(cases_: list[Case], margin_mm: float = 10.0) -> Grid:
    """Axis-aligned CT grid, 2 mm slices at odd z (..., -1, 1, ...) covering the cases."""
    ext = max(max(c.radius_mm, c.height_mm / 2) for c in cases_) + margin_mm
    n_xy = int(np.ceil(2 * ext / CT_PIXEL_MM)) + 1
    n_z = int(np.ceil(ext / CT_SLICE_MM)) * 2
    origin = (-(n_xy - 1) * CT_PIXEL_MM / 2, -(n_xy - 1) * CT_PIXEL_MM / 2, -(n_z - 1))
    return Grid((n_z, n_xy, n_xy), origin, (CT_PIXEL_MM, CT_PIXEL_MM, CT_SLICE_MM))


def rotation(axis, angle_deg: float) -> np.ndarray:
    ax = np.asarray(axis, dtype=float)
    ax /= np.linalg.norm(ax)
    t = np.radians(angle_deg)
    K = np.array([[0, -ax[2], ax[1]], [ax[2], 0, -ax[0]], [-ax[1], ax[0], 0]])
    return np.eye(3) + np.sin(t) * K + (1 - np.cos(t)) * K @ K


def dose_grid_for(case: Case, spacing_mm: float, *, direction=None, shift_mm=0.37) -> Grid:
    """A dose grid around the case (spacing, optional direction), off the CT lattice."""
    half = max(case.radius_mm, case.height_mm / 2) + 3 * spacing_mm
    n = int(np.ceil(2 * half / spacing_mm)) + 1
    d = np.eye(3) if direction is None else np.asarray(direction)
    centre = np.asarray(case.centre_mm) + shift_mm
    origin = centre - d @ np.full(3, (n - 1) * spacing_mm / 2)
    return Grid((n, n, n), origin, (spacing_mm,) * 3, tuple(d.reshape(-1)))


@dataclass(frozen=True)
class CaseFiles:
    rtstruct: Path
    rtdose: Path
    dose_grid: Grid


def write_case_files(
    folder: Path, case: Case, dose_spacing_mm: float, *, direction=None
) -> CaseFiles:
    """CT series + RTSTRUCT (the case's contours) + RTDOSE (its dose field) in ``folder``."""
    folder = Path(folder)
    ctx = StudyContext(patient_id="ANALYTIC-DVH")
    grid = ct_grid_for([case])
    ct = write_ct_series(folder / "CT", np.zeros(grid.shape, np.float32), grid, context=ctx)
    slice_z = slice_positions(grid)
    rs = folder / "RS.dcm"
    spec = RoiSpec(case.name, contours_mm=case.contours(slice_z), interpreted_type="PTV")
    write_rtstruct(rs, [spec], ct)
    dgrid = dose_grid_for(case, dose_spacing_mm, direction=direction)
    dose = case.dose_at(dgrid.voxel_centres_mm())
    rd = folder / "RD.dcm"
    write_rtdose(
        rd,
        dose,
        dgrid,
        context=ctx,
        summation="PLAN",
        referenced_plan_uid="1.2.826.0.1.3680043.10.1",
    )
    return CaseFiles(rs, rd, dgrid)


# ---------------------------------------------------------------------------- as contoured
def _segment_area(r: float, h: float) -> float:
    """Area of the part of a disk of radius r beyond a chord at signed distance h."""
    if h >= r:
        return 0.0
    if h <= -r:
        return np.pi * r * r
    return r * r * np.arccos(h / r) - h * np.sqrt(r * r - h * h)


class ContouredDVH:
    """Exact cumulative DVH of a case's structure *as contoured* (slab rule, full end caps).

    The contour stack stands for one cylinder per contour plane p (radius r_p, the plane's
    slab ``[z_p - t/2, z_p + t/2]``).  The volume receiving >= D is the sum over slabs of
    the integral over the slab of the cross-section area where the dose is >= D, and each
    cross-section has a closed form: a circular segment (linear field across the slices:
    ``r^2 acos(h/r) - h sqrt(r^2 - h^2)``), the whole disk or nothing (linear field along
    the axis), or a concentric disk of radius ``min(r_p, sqrt(r(D)^2 - (z - c_z)^2))``
    (radial fields).  The slab integral is done by Gauss-Legendre quadrature (exact where
    the area is constant along z, else to < 1e-6).  This isolates the DVH engine's error
    from the contour representation's (the staircase at 2 mm slices), which dominates D98
    of small spheres in steep radial fields.
    """

    def __init__(self, case: Case, slice_z: np.ndarray, thickness_mm: float = CT_SLICE_MM):
        self.case = case
        self.t = thickness_mm
        cx, cy, cz = case.centre_mm
        z0, z1 = case.z_range()
        self.planes = []
        for z in slice_z:
            if not (z0 < z < z1):
                continue
            if case.kind == "sphere":
                rr = case.radius_mm**2 - (z - cz) ** 2
                r = np.sqrt(rr) if rr > 1e-6 else 0.0
            elif case.kind == "cylinder":
                r = case.radius_mm
            else:
                r = case.radius_mm * (z1 - z) / case.height_mm
            if r > 1e-3:
                self.planes.append((float(z), float(r)))
        self.volume_cc = sum(np.pi * r * r * self.t for _, r in self.planes) / 1000.0
        self._gz, self._gw = np.polynomial.legendre.leggauss(64)

    def _area(self, z: float, r: float, dose: float) -> float:
        c = self.case
        cz = c.centre_mm[2]
        if c.field == "linear" and c.kind == "cone":
            hot = c.d0_gy + c.gradient_gy_per_mm * (z - c.z_range()[0]) >= dose
            return np.pi * r * r if hot else 0.0
        if c.field == "linear":
            if dose <= 0:
                return np.pi * r * r
            return _segment_area(r, (dose - c.d0_gy) / c.gradient_gy_per_mm)
        rd2 = c.a_gy_mm2 / dose - c.core_mm**2
        if c.kind == "sphere":
            rd2 = rd2 - (z - cz) ** 2
        return np.pi * min(r * r, max(rd2, 0.0))

    def volume_at_dose_cc(self, dose_gy: float) -> float:
        total = 0.0
        for zp, r in self.planes:
            zs = zp + self._gz * self.t / 2
            total += self.t / 2 * sum(w * self._area(z, r, dose_gy) for z, w in zip(zs, self._gw))
        return total / 1000.0

    def dose_at_volume_pct(self, pct: float) -> float:
        target = self.volume_cc * pct / 100.0
        lo, hi = 1e-6, 1e4
        return brentq(lambda d: self.volume_at_dose_cc(d) - target, lo, hi, xtol=1e-9)


def slice_positions(grid: Grid) -> np.ndarray:
    """z of each CT slice of an axis-aligned grid."""
    k = np.arange(grid.shape[0], dtype=float)
    return grid.ijk_to_mm(np.column_stack([np.zeros_like(k), np.zeros_like(k), k]))[:, 2]
