"""Synthetic patient anatomy defined in continuous patient coordinates (mm, LPS).

Every organ is an implicit shape: a function of positions returning True inside.  Shapes
do not depend on the voxel grid, so one phantom (one ``seed``) is the same patient at any
resolution; only the CT noise and the voxelisation change.

Sites:

* ``abdomen``: a bulky left para-aortic / para-vertebral mass between the left kidney, the
  aorta and the spine (the typical CT-guided seed + cryoablation target in metastatic
  disease), a liver metastasis and an abdominal-wall metastasis.
* ``pelvis``: a bulky pelvic side-wall recurrence beside the rectum and bladder, with a
  sacral-ala and an inguinal metastasis.

Tumours are lobulated: a union of ellipsoids whose surface is perturbed by a smooth random
field (a sum of plane waves with 25-60 mm wavelengths), so they are neither spheres nor
ellipsoids, and they are carved so that they never overlap an organ at risk.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np

from brachycryo.core.errors import ConfigError

Shape = Callable[[np.ndarray], np.ndarray]


def ellipsoid(centre_mm, semi_axes_mm, rotation: np.ndarray | None = None) -> Shape:
    c = np.asarray(centre_mm, float)
    a = np.asarray(semi_axes_mm, float)
    rot = np.eye(3) if rotation is None else np.asarray(rotation, float)

    def inside(p: np.ndarray) -> np.ndarray:
        q = (p - c) @ rot
        return np.sum((q / a) ** 2, axis=-1) <= 1.0

    return inside


def elliptic_cylinder_z(centre_xy, semi_xy, z_range=(-np.inf, np.inf)) -> Shape:
    cx, cy = centre_xy
    ax, ay = semi_xy

    def inside(p: np.ndarray) -> np.ndarray:
        r = ((p[..., 0] - cx) / ax) ** 2 + ((p[..., 1] - cy) / ay) ** 2
        return (r <= 1.0) & (p[..., 2] >= z_range[0]) & (p[..., 2] <= z_range[1])

    return inside


def tube(points_mm: np.ndarray, radius_mm: float) -> Shape:
    """A tube of given radius around a polyline (capsule segments)."""
    pts = np.asarray(points_mm, float)

    def inside(p: np.ndarray) -> np.ndarray:
        out = np.zeros(p.shape[:-1], dtype=bool)
        for a, b in itertools.pairwise(pts):
            ab = b - a
            t = np.clip(((p - a) @ ab) / (ab @ ab), 0.0, 1.0)
            d = np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)
            out |= d <= radius_mm
        return out

    return inside


def union(*shapes: Shape) -> Shape:
    def inside(p):
        out = np.zeros(p.shape[:-1], dtype=bool)
        for s in shapes:
            out |= s(p)
        return out

    return inside


def difference(a: Shape, *others: Shape) -> Shape:
    def inside(p):
        out = a(p)
        for s in others:
            out &= ~s(p)
        return out

    return inside


def intersection(*shapes: Shape) -> Shape:
    def inside(p):
        out = np.ones(p.shape[:-1], dtype=bool)
        for s in shapes:
            out &= s(p)
        return out

    return inside


def grown(shape_fn: Callable[[np.ndarray, float], np.ndarray], margin_mm: float) -> Shape:
    return lambda p: shape_fn(p, margin_mm)


def scaled(shape: Shape, centre_mm, factor: float) -> Shape:
    """``shape`` scaled by ``factor`` about ``centre_mm`` (its volume by ``factor`` cubed);
    ``shape`` itself when ``factor`` is 1, so the unscaled phantom stays bit for bit."""
    if factor == 1.0:
        return shape
    c = np.asarray(centre_mm, float)
    return lambda p: shape(c + (p - c) / factor)


def _check_bulky_scale(bulky_scale: float) -> float:
    if not 0.5 <= float(bulky_scale) <= 2.0:
        raise ConfigError(f"must be in 0.5-2.0, got {bulky_scale}", key="bulky_scale")
    return float(bulky_scale)


@dataclass(frozen=True)
class Lobulated:
    """Union of ellipsoidal lobes with a smoothly perturbed surface.

    Inside where ``max_l (1 - rho_l(p)) + amplitude * noise(p) > 0``, with ``rho_l`` the
    ellipsoidal radius of lobe ``l`` and ``noise`` a sum of unit plane waves.
    """

    centres_mm: np.ndarray
    semi_axes_mm: np.ndarray
    wave_vectors: np.ndarray
    wave_phases: np.ndarray
    amplitude: float

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        centre_mm,
        main_semi_axes_mm,
        *,
        n_lobes: int = 4,
        lobe_radius_mm=(14.0, 22.0),
        amplitude: float = 0.12,
    ) -> Lobulated:
        centre = np.asarray(centre_mm, float)
        main = np.asarray(main_semi_axes_mm, float)
        centres = [centre]
        axes = [main]
        for _ in range(n_lobes):
            d = rng.normal(size=3)
            d /= np.linalg.norm(d)
            centres.append(centre + 0.8 * main * d)
            r = rng.uniform(*lobe_radius_mm)
            axes.append(np.array([r, r * rng.uniform(0.8, 1.2), r * rng.uniform(0.8, 1.2)]))
        n_waves = 10
        dirs = rng.normal(size=(n_waves, 3))
        dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
        wavelengths = rng.uniform(25.0, 60.0, size=n_waves)
        return cls(
            centres_mm=np.asarray(centres),
            semi_axes_mm=np.asarray(axes),
            wave_vectors=dirs * (2 * np.pi / wavelengths)[:, None],
            wave_phases=rng.uniform(0, 2 * np.pi, size=n_waves),
            amplitude=amplitude,
        )

    def level(self, p: np.ndarray, margin_mm: float = 0.0) -> np.ndarray:
        best = np.full(p.shape[:-1], -np.inf)
        for c, a in zip(self.centres_mm, self.semi_axes_mm, strict=True):
            rho = np.sqrt(np.sum(((p - c) / (a + margin_mm)) ** 2, axis=-1))
            best = np.maximum(best, 1.0 - rho)
        noise = np.cos(p @ self.wave_vectors.T + self.wave_phases).sum(axis=-1)
        return best + self.amplitude * noise / np.sqrt(len(self.wave_phases))

    def __call__(self, p: np.ndarray) -> np.ndarray:
        return self.level(p) > 0.0


@dataclass(frozen=True)
class Organ:
    """A named structure of the phantom with its HU and RT interpreted type."""

    name: str
    shape: Shape
    hu: float
    interpreted_type: str = "ORGAN"
    color_rgb: tuple[int, int, int] = (160, 160, 160)
    hu_noise: float = 12.0
    is_oar: bool = False
    no_go: bool = False
    roi: bool = True  # False: painted into the CT only (no RTSTRUCT ROI)


@dataclass(frozen=True)
class Anatomy:
    """A phantom patient: body outline, organs painted in order, tumours and extent."""

    site: str
    body: Shape
    organs: tuple[Organ, ...]
    tumours: tuple[Organ, ...]
    extent_mm: tuple[tuple[float, float], tuple[float, float], tuple[float, float]]
    index_tumour: str


def _rotation_z(deg: float) -> np.ndarray:
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1.0]])


def abdomen(rng: np.random.Generator, bulky_scale: float = 1.0) -> Anatomy:
    """Abdomen at the renal level: bulky left para-aortic mass, two metastases.

    ``bulky_scale`` scales the bulky mass about its centre before the organs' keep-out is
    cut from it (volume up to ``bulky_scale`` cubed; 1: the standard phantom)."""
    bulky_scale = _check_bulky_scale(bulky_scale)
    zr = (-80.0, 80.0)
    body = elliptic_cylinder_z((0.0, 5.0), (165.0, 115.0), zr)
    fat_inner = elliptic_cylinder_z((0.0, 5.0), (150.0, 100.0), zr)
    vb = elliptic_cylinder_z((0.0, 62.0), (22.0, 18.0), zr)  # vertebral body
    arch = difference(
        elliptic_cylinder_z((0.0, 90.0), (16.0, 14.0), zr),
        elliptic_cylinder_z((0.0, 90.0), (9.0, 8.0), zr),
    )
    spinous = elliptic_cylinder_z((0.0, 108.0), (5.0, 9.0), zr)
    vertebra = union(vb, arch, spinous)
    cord = elliptic_cylinder_z((0.0, 90.0), (5.0, 4.5), zr)
    aorta = elliptic_cylinder_z((18.0, 36.0), (12.0, 12.0), zr)
    ivc = elliptic_cylinder_z((-22.0, 32.0), (14.0, 10.0), zr)
    kidney_l = ellipsoid((78.0, 55.0, 0.0), (28.0, 22.0, 50.0), _rotation_z(-30))
    kidney_r = ellipsoid((-78.0, 55.0, -10.0), (28.0, 22.0, 50.0), _rotation_z(30))
    liver = difference(
        ellipsoid((-75.0, -10.0, 70.0), (80.0, 75.0, 90.0)),
        kidney_r,
        elliptic_cylinder_z((0.0, 5.0), (40.0, 200.0), zr),
    )
    liver = intersection(liver, fat_inner)
    bowel = union(
        tube(
            np.array(
                [
                    [-60, -70, -70],
                    [-20, -80, -40],
                    [30, -75, -60],
                    [70, -60, -30],
                    [60, -75, 10],
                    [10, -85, 25],
                    [-40, -70, 10],
                ],
                float,
            ),
            14.0,
        ),
    )
    bowel_gas = union(
        ellipsoid((30.0, -82.0, -58.0), (7.0, 5.0, 9.0)),
        ellipsoid((-38.0, -76.0, 8.0), (6.0, 5.0, 7.0)),
    )
    skin = difference(body, elliptic_cylinder_z((0.0, 5.0), (160.0, 110.0), zr))

    lob = Lobulated.random(
        rng, (50.0, 16.0, 0.0), (38.0, 26.0, 33.0), n_lobes=5, lobe_radius_mm=(12.0, 18.0)
    )
    bulky_lob = scaled(lob, (50.0, 16.0, 0.0), bulky_scale)
    oar_keepout = union(
        lambda p: ellipsoid((78.0, 55.0, 0.0), (31.0, 25.0, 53.0), _rotation_z(-30))(p),
        elliptic_cylinder_z((18.0, 36.0), (15.0, 15.0), zr),
        elliptic_cylinder_z((0.0, 62.0), (25.0, 21.0), zr),
        elliptic_cylinder_z((0.0, 90.0), (19.0, 17.0), zr),
        tube(
            np.array(
                [
                    [-60, -70, -70],
                    [-20, -80, -40],
                    [30, -75, -60],
                    [70, -60, -30],
                    [60, -75, 10],
                    [10, -85, 25],
                    [-40, -70, 10],
                ],
                float,
            ),
            17.0,
        ),
        lambda p: ~elliptic_cylinder_z((0.0, 5.0), (145.0, 95.0), zr)(p),
    )
    bulky = difference(bulky_lob, oar_keepout)
    met1 = intersection(
        Lobulated.random(
            rng,
            (-95.0, -20.0, 55.0),
            (11.0, 10.0, 10.0),
            n_lobes=2,
            lobe_radius_mm=(5.0, 7.0),
            amplitude=0.08,
        ),
        liver,
    )
    met2 = difference(
        Lobulated.random(
            rng,
            (-85.0, -75.0, -40.0),
            (9.0, 8.0, 9.0),
            n_lobes=2,
            lobe_radius_mm=(4.0, 6.0),
            amplitude=0.08,
        ),
        skin,
        bowel,
    )
    organs = (
        Organ("BODY", body, 40.0, "EXTERNAL", (0, 255, 0), hu_noise=12.0),
        Organ(
            "Fat", difference(body, fat_inner), -100.0, "ORGAN", (255, 230, 160), 15.0, roi=False
        ),
        Organ("Liver", liver, 60.0, "ORGAN", (150, 75, 0), 12.0, is_oar=True),
        Organ("Kidney_L", kidney_l, 32.0, "ORGAN", (255, 140, 0), 12.0, is_oar=True),
        Organ("Kidney_R", kidney_r, 32.0, "ORGAN", (255, 165, 40), 12.0, is_oar=True),
        Organ("Bowel", bowel, 20.0, "ORGAN", (200, 120, 60), 15.0, is_oar=True, no_go=True),
        Organ(
            "BowelGas",
            intersection(bowel_gas, bowel),
            -850.0,
            "ORGAN",
            (90, 90, 90),
            40.0,
            roi=False,
        ),
        Organ("Aorta", aorta, 45.0, "ORGAN", (255, 0, 0), 10.0, is_oar=True, no_go=True),
        Organ("IVC", ivc, 40.0, "ORGAN", (0, 80, 255), 10.0, is_oar=False, no_go=True),
        Organ("Vertebra", vertebra, 550.0, "ORGAN", (240, 240, 240), 60.0, is_oar=True, no_go=True),
        Organ("SpinalCord", cord, 30.0, "ORGAN", (255, 255, 0), 8.0, is_oar=True, no_go=True),
        Organ("Skin", skin, 40.0, "ORGAN", (255, 200, 200), 12.0, is_oar=True),
    )
    tumours = (
        Organ("GTV_Bulky", bulky, 48.0, "GTV", (255, 0, 255), 14.0),
        Organ("GTV_Met1", met1, 85.0, "GTV", (200, 0, 120), 14.0),
        Organ("GTV_Met2", met2, 50.0, "GTV", (140, 0, 200), 14.0),
    )
    return Anatomy(
        site="abdomen",
        body=body,
        organs=organs,
        tumours=tumours,
        extent_mm=((-175.0, 175.0), (-120.0, 130.0), zr),
        index_tumour="GTV_Bulky",
    )


#: The most extra metastases a phantom can carry (the trials implant seeds into 5-10).
MAX_EXTRA_METASTASES = 12
#: Extra metastases keep this far (mm) from every organ at risk, other tumour and the skin.
_MET_CLEARANCE_MM = 8.0
_MAX_DRAWS = 4000


def with_metastases(anatomy: Anatomy, count: int, rng: np.random.Generator) -> Anatomy:
    """``anatomy`` with ``count`` extra small metastases ``GTV_Met3``, ``GTV_Met4``, ...

    Each is a lobulated nodule of 7-11 mm mean radius in soft tissue or liver, its centre
    drawn uniformly inside the body (rejection sampling with ``rng``) and kept only where a
    ball of its radius plus 8 mm touches no organ at risk, no other tumour and no body
    surface, so every nodule can be implanted; the site's own tumours are unchanged.
    """
    if not 0 <= int(count) <= MAX_EXTRA_METASTASES:
        raise ConfigError(f"must be 0-{MAX_EXTRA_METASTASES}, got {count}", key="extra_metastases")
    keep_out = [o.shape for o in anatomy.organs if o.is_oar and o.name != "Liver"]
    keep_out += [o.shape for o in anatomy.tumours]
    tumours = list(anatomy.tumours)
    (x0, x1), (y0, y1), (z0, z1) = anatomy.extent_mm
    ball = _unit_ball_points()
    draws = 0
    while len(tumours) < len(anatomy.tumours) + count and draws < _MAX_DRAWS:
        draws += 1
        centre = rng.uniform((x0, y0, z0 + 15.0), (x1, y1, z1 - 15.0))
        radius = rng.uniform(7.0, 11.0)
        around = centre + (radius + _MET_CLEARANCE_MM) * ball
        if not anatomy.body(around).all() or any(s(around).any() for s in keep_out):
            continue
        shape = Lobulated.random(
            rng, centre, (radius, radius, radius), n_lobes=2,
            lobe_radius_mm=(0.5 * radius, 0.7 * radius), amplitude=0.08,
        )  # fmt: skip
        n = len(tumours) - len(anatomy.tumours) + 3
        tumours.append(Organ(f"GTV_Met{n}", shape, 50.0, "GTV", (120, 0, 220), 14.0))
        keep_out.append(shape)
    if len(tumours) < len(anatomy.tumours) + count:
        raise ConfigError(
            f"found room for {len(tumours) - len(anatomy.tumours)} extra metastases "
            f"after {draws} draws, not {count}",
            key="extra_metastases",
        )
    return replace(anatomy, tumours=tuple(tumours))


def _unit_ball_points() -> np.ndarray:
    """Centre, 26 directions on the unit sphere and their halves: a ball probe."""
    d = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)], float)
    d = d[np.any(d != 0, axis=1)]
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return np.vstack([np.zeros((1, 3)), d, 0.5 * d])


def pelvis(rng: np.random.Generator, bulky_scale: float = 1.0) -> Anatomy:
    """Pelvis: bulky left side-wall recurrence beside rectum and bladder, two metastases.

    ``bulky_scale`` as in :func:`abdomen`."""
    bulky_scale = _check_bulky_scale(bulky_scale)
    zr = (-70.0, 70.0)
    body = elliptic_cylinder_z((0.0, 0.0), (175.0, 120.0), zr)
    fat_inner = elliptic_cylinder_z((0.0, 0.0), (158.0, 103.0), zr)
    sacrum = elliptic_cylinder_z((0.0, 80.0), (45.0, 16.0), zr)
    ilium_l = ellipsoid((105.0, 40.0, 20.0), (16.0, 45.0, 80.0), _rotation_z(20))
    ilium_r = ellipsoid((-105.0, 40.0, 20.0), (16.0, 45.0, 80.0), _rotation_z(-20))
    bone = union(sacrum, ilium_l, ilium_r)
    cauda = elliptic_cylinder_z((0.0, 82.0), (8.0, 5.0), zr)
    rectum = elliptic_cylinder_z((0.0, 45.0), (18.0, 16.0), zr)
    bladder = ellipsoid((0.0, -35.0, -10.0), (45.0, 38.0, 40.0))
    iliac_l = tube(np.array([[40, 30, 70], [70, 20, 0], [90, 0, -70]], float), 7.0)
    iliac_r = tube(np.array([[-40, 30, 70], [-70, 20, 0], [-90, 0, -70]], float), 7.0)
    vessels = union(iliac_l, iliac_r)
    bowel = tube(
        np.array([[-50, -80, 65], [0, -90, 50], [50, -80, 60], [30, -70, 35]], float), 13.0
    )
    skin = difference(body, elliptic_cylinder_z((0.0, 0.0), (170.0, 115.0), zr))
    lob = Lobulated.random(
        rng, (50.0, 12.0, 5.0), (27.0, 31.0, 34.0), n_lobes=5, lobe_radius_mm=(12.0, 18.0)
    )
    bulky_lob = scaled(lob, (50.0, 12.0, 5.0), bulky_scale)
    keepout = union(
        elliptic_cylinder_z((0.0, 45.0), (22.0, 20.0), zr),
        ellipsoid((0.0, -35.0, -10.0), (49.0, 42.0, 44.0)),
        lambda p: ellipsoid((105.0, 40.0, 20.0), (19.0, 48.0, 83.0), _rotation_z(20))(p),
        tube(np.array([[40, 30, 70], [70, 20, 0], [90, 0, -70]], float), 10.0),
        elliptic_cylinder_z((0.0, 80.0), (48.0, 19.0), zr),
    )
    bulky = difference(bulky_lob, keepout)
    met1 = difference(
        Lobulated.random(
            rng,
            (-70.0, 75.0, 30.0),
            (10.0, 9.0, 10.0),
            n_lobes=2,
            lobe_radius_mm=(4.0, 6.0),
            amplitude=0.08,
        ),
        sacrum,
        ilium_r,
    )
    met2 = intersection(
        Lobulated.random(
            rng,
            (-95.0, -70.0, -45.0),
            (12.0, 10.0, 11.0),
            n_lobes=2,
            lobe_radius_mm=(5.0, 7.0),
            amplitude=0.08,
        ),
        fat_inner,
    )
    organs = (
        Organ("BODY", body, 40.0, "EXTERNAL", (0, 255, 0)),
        Organ(
            "Fat", difference(body, fat_inner), -100.0, "ORGAN", (255, 230, 160), 15.0, roi=False
        ),
        Organ("Bladder", bladder, 10.0, "ORGAN", (255, 255, 0), 8.0, is_oar=True),
        Organ("Rectum", rectum, 25.0, "ORGAN", (150, 75, 0), 14.0, is_oar=True, no_go=True),
        Organ("Bowel", bowel, 20.0, "ORGAN", (200, 120, 60), 15.0, is_oar=True, no_go=True),
        Organ("IliacVessels", vessels, 45.0, "ORGAN", (255, 0, 0), 10.0, is_oar=True, no_go=True),
        Organ("PelvicBone", bone, 600.0, "ORGAN", (240, 240, 240), 70.0, is_oar=False, no_go=True),
        Organ("CaudaEquina", cauda, 30.0, "ORGAN", (255, 200, 0), 8.0, is_oar=True, no_go=True),
        Organ("Skin", skin, 40.0, "ORGAN", (255, 200, 200), 12.0, is_oar=True),
    )
    tumours = (
        Organ("GTV_Bulky", bulky, 48.0, "GTV", (255, 0, 255), 14.0),
        Organ("GTV_Met1", met1, 45.0, "GTV", (200, 0, 120), 14.0),
        Organ("GTV_Met2", met2, 50.0, "GTV", (140, 0, 200), 14.0),
    )
    return Anatomy(
        site="pelvis",
        body=body,
        organs=organs,
        tumours=tumours,
        extent_mm=((-185.0, 185.0), (-125.0, 125.0), zr),
        index_tumour="GTV_Bulky",
    )


SITES = {"abdomen": abdomen, "pelvis": pelvis}
