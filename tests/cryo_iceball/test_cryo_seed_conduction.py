"""Maxwell-Garnett conductivity of tissue with implanted seeds: the formula's analytic limits."""

from __future__ import annotations

import math

import pytest

from brachycryo.core.errors import ConfigError
from brachycryo.cryo_iceball.seed_conduction import (
    maxwell_garnett_random_spheroids,
    maxwell_garnett_spheres,
    prolate_depolarisation,
    seed_volume_fraction,
    tissue_with_seeds,
)
from brachycryo.cryo_iceball.tissue import load_tissues

KM, KI = 0.5, 22.0  # unfrozen tissue, titanium (W/m/K)


@pytest.mark.parametrize("rule", ["spheres", "spheroids"])
def test_trivial_limits(rule):
    def mg(km, ki, phi):
        if rule == "spheres":
            return maxwell_garnett_spheres(km, ki, phi)
        return maxwell_garnett_random_spheroids(km, ki, phi, 5.6)

    assert mg(KM, KI, 0.0) == pytest.approx(KM)  # no inclusion
    assert mg(KM, KM, 0.3) == pytest.approx(KM)  # inclusions of the matrix itself
    assert KM < mg(KM, KI, 0.01) < mg(KM, KI, 0.02) < KI  # monotone, between the phases


def test_sphere_rule_limits():
    assert maxwell_garnett_spheres(KM, KI, 1.0) == pytest.approx(KI)  # all inclusion
    # Maxwell (1873): dilute spheres raise k by 3 phi (k_i - k_m) / (k_i + 2 k_m)
    phi = 1e-6
    slope = (maxwell_garnett_spheres(KM, KI, phi) / KM - 1) / phi
    assert slope == pytest.approx(3 * (KI - KM) / (KI + 2 * KM), rel=1e-5)
    # perfect conductor: (1 + 2 phi) / (1 - phi), and the finite rule tends to it
    assert maxwell_garnett_spheres(KM, math.inf, 0.1) == pytest.approx(1.2 / 0.9 * KM)
    assert maxwell_garnett_spheres(KM, 1e9, 0.1) == pytest.approx(1.2 / 0.9 * KM, rel=1e-6)
    # Hashin-Shtrikman lower bound (k_i > k_m): k_m + phi / (1/(k_i-k_m) + (1-phi)/(3 k_m))
    for phi in (0.05, 0.3, 0.7):
        hs = KM + phi / (1 / (KI - KM) + (1 - phi) / (3 * KM))
        assert maxwell_garnett_spheres(KM, KI, phi) == pytest.approx(hs)


def test_spheroid_rule_limits():
    assert prolate_depolarisation(1.0) == pytest.approx((1 / 3, 1 / 3, 1 / 3))
    for aspect in (1.0001, 2.0, 5.6, 50.0):
        assert sum(prolate_depolarisation(aspect)) == pytest.approx(1.0)
        # aspect -> 1 is the sphere
    assert maxwell_garnett_random_spheroids(KM, KI, 0.2, 1.0) == pytest.approx(
        maxwell_garnett_spheres(KM, KI, 0.2)
    )
    assert maxwell_garnett_random_spheroids(KM, KI, 0.2, 1.0001) == pytest.approx(
        maxwell_garnett_spheres(KM, KI, 0.2), rel=1e-4
    )
    # long needles: N_long -> (ln(2 a) - 1) / a^2 (Osborn 1945, asymptotic)
    a = 1000.0
    assert prolate_depolarisation(a)[0] == pytest.approx((math.log(2 * a) - 1) / a**2, rel=1e-3)
    # dilute, perfectly conducting: slope (1/3) sum_j 1 / N_j (3 for spheres)
    n = prolate_depolarisation(5.6)
    phi = 1e-6
    slope = (maxwell_garnett_random_spheroids(KM, math.inf, phi, 5.6) / KM - 1) / phi
    assert slope == pytest.approx(sum(1 / x for x in n) / 3, rel=1e-4)
    # elongated inclusions conduct more than spheres of the same volume
    assert maxwell_garnett_random_spheroids(KM, KI, 0.01, 5.6) > maxwell_garnett_spheres(
        KM, KI, 0.01
    )


def test_seed_fraction_and_tissue():
    # 0.8 mm x 4.5 mm capsule: 2.262 mm^3; 2.5 seeds per cc -> 0.565 %
    assert seed_volume_fraction(2.5) == pytest.approx(2.5 * math.pi * 0.16 * 4.5 / 1000)
    t = load_tissues()["tumor"]
    ts = tissue_with_seeds(t, 0.01)
    assert ts.k_frozen_w_mk > t.k_frozen_w_mk and ts.k_unfrozen_w_mk > t.k_unfrozen_w_mk
    assert ts.latent_heat_j_kg == t.latent_heat_j_kg
    with pytest.raises(ConfigError, match="volume fraction"):
        maxwell_garnett_spheres(KM, KI, 1.5)
    with pytest.raises(ConfigError, match="aspect"):
        prolate_depolarisation(0.5)
