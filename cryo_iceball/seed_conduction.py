"""Implanted I-125 seeds inside an ice ball: effective conductivity and isotherm shift.

Metal seeds conduct heat far better than tissue, frozen (k ~ 2 W/m/K) or not (~0.5).  At
the volume fractions of a permanent implant (below 1 %) their effect on the ice ball is
estimated by **Maxwell-Garnett effective-medium theory** rather than resolved voxel by
voxel (a seed is 0.8 mm across, below the solver's grid):

* Spheres (Maxwell, *A Treatise on Electricity and Magnetism*, 1873, vol. 1 sec. 314, for
  conduction through a medium with dilute spherical inclusions; Maxwell Garnett, Phil
  Trans R Soc A 203:385, 1904, the same mixing rule)::

      k_eff = k_m (k_i + 2 k_m + 2 phi (k_i - k_m)) / (k_i + 2 k_m - phi (k_i - k_m))

  Its limits: ``phi = 0`` gives ``k_m``, ``phi = 1`` gives ``k_i``, ``k_i = k_m`` gives
  ``k_m``; for ``k_i > k_m`` it is the Hashin-Shtrikman lower bound.
* Randomly oriented spheroids (the Maxwell-Garnett rule with depolarisation factors
  ``N_j`` of an ellipsoid, e.g. Sihvola, *Electromagnetic Mixing Formulas and
  Applications*, IEE 1999, eq. 4.36; Polder & van Santen, Physica 12:257, 1946)::

      k_eff = k_m (1 + (phi/3) sum_j (1 - N_j) b_j) / (1 - (phi/3) sum_j N_j b_j),
      b_j = (k_i - k_m) / (k_m + N_j (k_i - k_m)),

  which is the sphere rule when ``N_j = 1/3``.  A seed (Ti capsule 0.8 mm x 4.5 mm, a
  silver or ceramic core inside) is a prolate spheroid of aspect 5.6; the needle-like
  shape raises the effect several-fold over spheres.

The seed's own conductivity is bounded from above by a perfect conductor (``k_i -> inf``),
which ``benchmarks/cryo_seeds.py`` uses for its upper estimate: the titanium wall (k about 22
W/m/K) and silver core (429) with gas gaps in between conduct less.

**Finding** (``benchmarks/cryo_seeds.py``, ``benchmarks/results/cryo_seeds.json``): at 2.5
seeds per cc (a dense prostate implant; volume fraction 0.57 %) the rule raises ``k`` by
1.9 % (frozen) / 3.4 % (unfrozen) for titanium seeds and by 4.8 % for perfectly conducting
ones.  With that conductivity, the solver (2-D section of a long 2.4 mm or 17G probe,
tumour at 37 C, 10 min freeze, 0.5 mm grid) moves the 0 / -20 / -40 C radii by at most
0.33 mm (17G, perfect conductor; titanium: 0.14 mm).  That is below the 0.5 mm threshold
of issue 15, so the solver does not model the seeds.  (The seeds also take 0.6 % of the
latent heat and heat capacity away, which moves the front by less again.)
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from brachycryo.core.errors import ConfigError
from brachycryo.cryo_iceball.tissue import Tissue

#: I-125 seed capsule (titanium), typical of the 6711 / 6702 class: 0.8 mm x 4.5 mm
SEED_DIAMETER_MM = 0.8
SEED_LENGTH_MM = 4.5


def seed_volume_mm3(diameter_mm: float = SEED_DIAMETER_MM, length_mm: float = SEED_LENGTH_MM):
    """Volume of a cylindrical seed capsule (mm^3)."""
    return math.pi * (0.5 * diameter_mm) ** 2 * length_mm


def seed_volume_fraction(seeds_per_cc: float, **capsule_mm: float) -> float:
    """Volume fraction of seeds at ``seeds_per_cc`` (1 cc = 1000 mm^3)."""
    if not seeds_per_cc >= 0:
        raise ConfigError(f"seeds_per_cc must be >= 0, got {seeds_per_cc}", key="seeds_per_cc")
    return seeds_per_cc * seed_volume_mm3(**capsule_mm) / 1000.0


def _check(k_matrix: float, k_inclusion: float, phi: float) -> None:
    if not (k_matrix > 0 and k_inclusion > 0):
        raise ConfigError("conductivities must be > 0", key="k")
    if not 0 <= phi <= 1:
        raise ConfigError(f"volume fraction must be in [0, 1], got {phi}", key="phi")


def maxwell_garnett_spheres(k_matrix: float, k_inclusion: float, phi: float) -> float:
    """Effective conductivity of dilute spheres (Maxwell 1873; Maxwell Garnett 1904).

    ``k_inclusion = inf`` gives the perfect-conductor limit ``k_m (1 + 2 phi)/(1 - phi)``.
    """
    _check(k_matrix, k_inclusion, phi)
    if math.isinf(k_inclusion):
        return k_matrix * (1 + 2 * phi) / (1 - phi) if phi < 1 else math.inf
    d = k_inclusion - k_matrix
    s = k_inclusion + 2 * k_matrix
    return k_matrix * (s + 2 * phi * d) / (s - phi * d)


def prolate_depolarisation(aspect: float) -> tuple[float, float, float]:
    """Depolarisation factors ``(N_long, N_short, N_short)`` of a prolate spheroid of
    ``aspect = long/short`` axis (Osborn, Phys Rev 67:351, 1945); 1/3 each for a sphere."""
    if not aspect >= 1:
        raise ConfigError(f"aspect must be >= 1 (prolate), got {aspect}", key="aspect")
    if aspect == 1:
        return (1 / 3, 1 / 3, 1 / 3)
    e = math.sqrt(1 - 1 / aspect**2)
    n_long = (1 - e**2) / e**3 * (math.atanh(e) - e)
    n_short = 0.5 * (1 - n_long)
    return (n_long, n_short, n_short)


def maxwell_garnett_random_spheroids(
    k_matrix: float, k_inclusion: float, phi: float, aspect: float
) -> float:
    """Effective conductivity of dilute, randomly oriented prolate spheroids (module
    docstring; Sihvola 1999 eq. 4.36).  ``aspect = 1`` is :func:`maxwell_garnett_spheres`."""
    _check(k_matrix, k_inclusion, phi)
    ns = prolate_depolarisation(aspect)
    if math.isinf(k_inclusion):
        b = [1.0 / n for n in ns]
    else:
        b = [(k_inclusion - k_matrix) / (k_matrix + n * (k_inclusion - k_matrix)) for n in ns]
    num = 1 + phi / 3 * sum((1 - n) * bj for n, bj in zip(ns, b, strict=True))
    den = 1 - phi / 3 * sum(n * bj for n, bj in zip(ns, b, strict=True))
    return k_matrix * num / den


def tissue_with_seeds(
    tissue: Tissue, phi: float, *, k_seed_w_mk: float = math.inf, aspect: float | None = None
) -> Tissue:
    """``tissue`` with its frozen and unfrozen conductivity raised by seeds at volume
    fraction ``phi`` (random spheroids of the seed's aspect, or spheres when
    ``aspect=1``).  Heat capacity and latent heat are left as they are (the seeds take
    ``phi`` of both, below 1 %)."""
    a = SEED_LENGTH_MM / SEED_DIAMETER_MM if aspect is None else aspect

    def k(km: float) -> float:
        return maxwell_garnett_random_spheroids(km, k_seed_w_mk, phi, a)

    return dataclasses.replace(
        tissue,
        name=f"{tissue.name}+seeds",
        k_frozen_w_mk=k(tissue.k_frozen_w_mk),
        k_unfrozen_w_mk=k(tissue.k_unfrozen_w_mk),
    )


def equivalent_radius_mm(mask2d: np.ndarray, spacing_mm: float) -> float:
    """Radius of the circle with the area of a 2-D mask."""
    return math.sqrt(float(np.count_nonzero(mask2d)) * spacing_mm**2 / math.pi)
