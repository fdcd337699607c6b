"""TG-43U1 dose checked against the published consensus data and analytic identities."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brachycryo.core.errors import BackendUnavailableError, ConfigError, GeometryError
from brachycryo.core.grid import Grid
from brachycryo.core.seeds import U_PER_MCI_I125, Seeds, apparent_mci_to_u
from brachycryo.dose_kernels import (
    dose_at_points,
    dose_between,
    dose_on_grid,
    list_seed_models,
    load_seed_model,
)

CPU_BACKENDS = ("numpy", "numba")
MODELS = list_seed_models()
PHI_MODELS = [n for n in MODELS if load_seed_model(n).has_phi_an]


def geometry_line_independent(r_mm: float, theta_deg: float, length_mm: float) -> float:
    """G_L(r, θ) = β / (L r sin θ), TG-43U1 Eq. 4, β = angle subtended by the two source ends
    (computed with arccos of the end vectors; on the axis 1/(r² − L²/4))."""
    th = math.radians(theta_deg)
    p = np.array([r_mm * math.sin(th), 0.0, r_mm * math.cos(th)])
    if abs(math.sin(th)) < 1e-12:
        return 1.0 / (r_mm**2 - length_mm**2 / 4)
    a = np.array([0, 0, length_mm / 2]) - p
    b = np.array([0, 0, -length_mm / 2]) - p
    beta = math.acos(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))
    return beta / (length_mm * r_mm * math.sin(th))


def gl_tg43(r_mm, m) -> np.ndarray:
    """g_L as TG-43U1 recommends: log-linear inside, nearest below r_min, log-linear
    continuation of the last two tabulated points beyond r_max."""
    r = np.asarray(r_mm, float)
    lg = np.log(m.gl)
    slope = (lg[-1] - lg[-2]) / (m.gl_r_mm[-1] - m.gl_r_mm[-2])
    tail = lg[-1] + (r - m.gl_r_mm[-1]) * slope
    return np.exp(np.where(r > m.gl_r_mm[-1], tail, np.interp(r, m.gl_r_mm, lg)))


def _frame(direction):
    """An orthonormal frame (e1, e2, u) with the seed axis u."""
    u = np.asarray(direction, float) / np.linalg.norm(direction)
    helper = np.array([1.0, 0, 0]) if abs(u[0]) < 0.9 else np.array([0, 1.0, 0])
    e1 = np.cross(u, helper)
    e1 /= np.linalg.norm(e1)
    return e1, np.cross(u, e1), u


OBLIQUE = np.array([0.3, -0.5, 0.8]) / np.linalg.norm([0.3, -0.5, 0.8])
CENTRE = np.array([12.5, -40.25, 7.0])


def _polar_points(r_mm, theta_deg, direction=OBLIQUE, centre=CENTRE):
    e1, _, u = _frame(direction)
    r = np.atleast_1d(np.asarray(r_mm, float))
    th = np.radians(np.atleast_1d(np.asarray(theta_deg, float)))
    return centre + r[:, None] * (np.sin(th)[:, None] * e1 + np.cos(th)[:, None] * u)


def _one_seed(sk_u=1.0, direction=OBLIQUE):
    return Seeds([CENTRE], sk_u, [direction])


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", MODELS)
def test_dose_rate_at_reference_point_is_lambda(name, backend):
    """Ḋ(1 cm, 90°) / S_K = Λ (TG-43U1 Eq. 1 at the reference point), to 1e-6."""
    m = load_seed_model(name)
    pts = _polar_points([10.0, 10.0], [90.0, 90.0])
    rate = dose_at_points(_one_seed(0.7), pts, m, backend=backend, quantity="rate")
    lam = m.dose_rate_constant_gy_per_h_per_u
    np.testing.assert_allclose(rate / 0.7, lam, rtol=1e-6)
    if m.has_phi_an:  # 1D formalism: Ḋ(r0) = S_K Λ φ_an(r0) (TG-43U1 Eq. 11)
        phi0 = np.interp(10.0, m.phi_r_mm, m.phi_an)
        rate1 = dose_at_points(
            _one_seed(0.7), pts, m, backend=backend, quantity="rate", formalism="point"
        )
        np.testing.assert_allclose(rate1 / 0.7, lam * phi0, rtol=1e-6)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("name", MODELS)
def test_transverse_axis_reproduces_gL_at_nodes(name, backend):
    m = load_seed_model(name)
    r = m.gl_r_mm
    rate = dose_at_points(
        _one_seed(), _polar_points(r, 90.0 + 0 * r), m, backend=backend, quantity="rate"
    )
    g0 = geometry_line_independent(10.0, 90.0, m.active_length_mm)
    geom = np.array([geometry_line_independent(x, 90.0, m.active_length_mm) for x in r])
    g_l = rate / (m.dose_rate_constant_gy_per_h_per_u * geom / g0)
    np.testing.assert_allclose(g_l, m.gl, rtol=1e-6)


@pytest.mark.parametrize("name", MODELS)
def test_anisotropy_reproduced_at_nodes_and_folded(name):
    m = load_seed_model(name)
    half = m.active_length_mm / 2
    rr, tt = np.meshgrid(m.f_r_mm, m.f_theta_deg)
    rr, tt = rr.ravel(), tt.ravel()
    # keep nodes outside the near-source zone (>= 0.5 mm from the active segment)
    z, rho = rr * np.cos(np.radians(tt)), rr * np.sin(np.radians(tt))
    dist = np.hypot(rho, np.maximum(np.abs(z) - half, 0))
    keep = dist >= 0.5 + 1e-9
    rr, tt = rr[keep], tt[keep]
    expected = m.f_table.ravel()[keep]
    g0 = geometry_line_independent(10.0, 90.0, m.active_length_mm)
    g_l = gl_tg43(rr, m)
    for theta in (tt, 180.0 - tt):  # F(r, 180° − θ) = F(r, θ)
        rate = dose_at_points(
            _one_seed(), _polar_points(rr, theta), m, backend="numba", quantity="rate"
        )
        geom = np.array(
            [geometry_line_independent(a, b, m.active_length_mm) for a, b in zip(rr, theta)]
        )
        f = rate / (m.dose_rate_constant_gy_per_h_per_u * g_l * geom / g0)
        np.testing.assert_allclose(f, expected, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("name", PHI_MODELS)
def test_point_formalism_reproduces_phi_an_at_nodes(name):
    m = load_seed_model(name)
    r = m.phi_r_mm
    rate = dose_at_points(
        _one_seed(),
        _polar_points(r, 17.0 + 0 * r),
        m,
        backend="numpy",
        quantity="rate",
        formalism="point",
    )
    g0 = geometry_line_independent(10.0, 90.0, m.active_length_mm)
    geom = np.array([geometry_line_independent(x, 90.0, m.active_length_mm) for x in r])
    g_l = gl_tg43(r, m)
    phi = rate / (m.dose_rate_constant_gy_per_h_per_u * g_l * geom / g0)
    np.testing.assert_allclose(phi, m.phi_an, rtol=1e-6)


def test_2d_solid_angle_average_matches_consensus_phi_an():
    """φ_an(r) = ∫ Ḋ(r,θ) sin θ dθ / (2 Ḋ(r,θ₀)) (TG-43U1 Eq. 8): the 2D engine fed the
    consensus F table reproduces the consensus φ_an of model 6711 within 0.5 % (measured:
    0.2 % at 0.5 cm, <= 0.1 % from 1 to 5 cm)."""
    m = load_seed_model("6711")
    theta = np.linspace(0.0, 180.0, 3601)
    for r, phi in zip(m.phi_r_mm, m.phi_an):
        rate = dose_at_points(
            _one_seed(),
            _polar_points(np.full_like(theta, r), theta),
            m,
            backend="numba",
            quantity="rate",
        )
        ref = dose_at_points(
            _one_seed(), _polar_points([r], [90.0]), m, quantity="rate", backend="numba"
        )
        avg = np.trapezoid(rate * np.sin(np.radians(theta)), np.radians(theta)) / 2 / ref[0]
        assert avg == pytest.approx(phi, rel=0.005), r


@pytest.mark.parametrize("theta", [0.0, 30.0, 90.0, 150.0, 180.0])
def test_line_source_tends_to_point_source_far_away(theta):
    """G_L(r, θ) → 1/r² as r ≫ L: line dose → S_K Λ g_L F (r₀²/r²)·[1/(r₀² G_L(r₀))]."""
    m = load_seed_model("6711")
    g0 = geometry_line_independent(10.0, 90.0, m.active_length_mm)
    for r, tol in ((50.0, 2e-3), (100.0, 5e-4), (200.0, 1.5e-4)):
        rate = dose_at_points(
            _one_seed(), _polar_points([r], [theta]), m, quantity="rate", backend="numpy"
        )[0]
        g_l = dose_at_points(
            _one_seed(), _polar_points([r], [90.0]), m, quantity="rate", backend="numpy"
        )[0] / (
            m.dose_rate_constant_gy_per_h_per_u
            * geometry_line_independent(r, 90.0, m.active_length_mm)
            / g0
        )
        f = np.interp(min(theta, 180 - theta), m.f_theta_deg, m.f_table[:, -1])
        point = m.dose_rate_constant_gy_per_h_per_u * g_l * f / (r * r * g0)
        assert rate == pytest.approx(point, rel=tol)


def test_total_dose_permanent_implant_6711():
    """D = Ḋ₀ T½/ln 2: 1984.7 cGy per U at (1 cm, 90°) for model 6711 (SOURCES.md)."""
    d = dose_at_points(_one_seed(), _polar_points([10.0], [90.0]), "6711", backend="numpy")
    assert d[0] * 100 == pytest.approx(1984.7, abs=0.05)


def test_dose_between_times():
    seeds, pts = _one_seed(0.5), _polar_points([8.0, 22.0], [40.0, 100.0])
    total = dose_at_points(seeds, pts, "6711", backend="numpy", dtype=np.float64)
    t_half = load_seed_model("6711").half_life_h
    first = dose_between(
        seeds, pts, "6711", start_h=0, end_h=t_half, backend="numpy", dtype=np.float64
    )
    rest = dose_between(seeds, pts, "6711", start_h=t_half, backend="numpy", dtype=np.float64)
    np.testing.assert_allclose(first, total / 2, rtol=1e-12)
    np.testing.assert_allclose(first + rest, total, rtol=1e-12)
    with pytest.raises(ConfigError, match="end_h"):
        dose_between(seeds, pts, "6711", start_h=10.0, end_h=5.0)


def test_apparent_activity_conversion():
    assert U_PER_MCI_I125 == 1.270
    assert apparent_mci_to_u(0.5) == pytest.approx(0.635)
    s = Seeds.from_apparent_activity([[0, 0, 0]], 0.4)
    assert s.sk_u[0] == pytest.approx(0.508)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("formalism", ["line", "point"])
def test_finite_everywhere_near_and_on_the_seed(backend, formalism):
    """Voxels at the seed centre, on its axis inside the source, at the tips: finite."""
    m = load_seed_model("6711")
    seeds = Seeds([[0.0, 0.0, 0.0], [0.0, 0.0, 4.5]], [0.6, 0.6], [[0, 0, 1.0], [0, 0, 1.0]])
    grid = Grid(shape=(25, 5, 5), origin_mm=(-1.0, -1.0, -3.0), spacing_mm=(0.5, 0.5, 0.5))
    for dtype in (np.float32, np.float64):
        d = dose_on_grid(seeds, grid, m, backend=backend, formalism=formalism, dtype=dtype)
        assert d.dtype == dtype
        assert np.all(np.isfinite(d)) and np.all(d > 0)
    # near-source rule: a point on the segment is evaluated min_distance (0.5 mm) off the
    # axis at the same z (line); at r = min_distance (point formalism)
    on = np.array([[0, 0, 0], [0, 0, 1.0], [0, 0, 0.3]])
    moved = np.array([[0.5, 0, 0], [0.5, 0, 1.0], [0.5, 0, 0.3]])
    if formalism == "point":
        on, moved = on[[0, 2]], np.array([[0.5, 0, 0], [0, 0.5, 0]])
    s1 = Seeds([[0, 0, 0]], 1.0)
    got = dose_at_points(s1, on, m, backend=backend, formalism=formalism, dtype=np.float64)
    cap = dose_at_points(s1, moved, m, backend=backend, formalism=formalism, dtype=np.float64)
    np.testing.assert_allclose(got, cap, rtol=1e-12)


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_superposition(backend):
    rng = np.random.default_rng(3)
    pos = rng.uniform(-15, 15, (2, 3))
    dirs = rng.normal(size=(2, 3))
    dirs /= np.linalg.norm(dirs, axis=1)[:, None]
    pts = rng.uniform(-25, 25, (300, 3))
    both = dose_at_points(Seeds(pos, [0.4, 0.9], dirs), pts, "Best2301", backend=backend)
    one = dose_at_points(Seeds(pos[:1], [0.4], dirs[:1]), pts, "Best2301", backend=backend)
    two = dose_at_points(Seeds(pos[1:], [0.9], dirs[1:]), pts, "Best2301", backend=backend)
    np.testing.assert_allclose(both, one + two, rtol=1e-12)


def _rotation(a, b, c):
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rx = np.array([[1, 0, 0], [0, cc, -sc], [0, sc, cc]])
    return rz @ ry @ rx


@settings(max_examples=25, deadline=None)
@given(
    angles=st.tuples(*[st.floats(-math.pi, math.pi)] * 3),
    shift=st.tuples(*[st.floats(-100, 100)] * 3),
)
def test_rotating_seeds_and_grid_together_changes_nothing(angles, shift):
    """Rotate and translate seeds and an (oblique) grid together: the same dose volume."""
    rot, t = _rotation(*angles), np.asarray(shift)
    pos = np.array([[1.0, 2.0, 3.0], [-4.0, 0.5, -2.0], [3.0, -3.0, 0.0]])
    dirs = np.array([[0, 0, 1.0], [0.6, 0.0, 0.8], [0.0, -0.8, 0.6]])
    grid = Grid(shape=(6, 5, 7), origin_mm=(-9.0, -7.0, -8.0), spacing_mm=(2.5, 3.0, 2.0))
    ref = dose_on_grid(Seeds(pos, 0.5, dirs), grid, "6711", backend="numba", dtype=np.float64)
    grid2 = Grid(
        shape=grid.shape,
        origin_mm=rot @ np.asarray(grid.origin_mm) + t,
        spacing_mm=grid.spacing_mm,
        direction=(rot @ grid.direction_matrix).ravel(),
    )
    seeds2 = Seeds(pos @ rot.T + t, 0.5, dirs @ rot.T, normalize=True)
    got = dose_on_grid(seeds2, grid2, "6711", backend="numba", dtype=np.float64)
    np.testing.assert_allclose(got, ref, rtol=1e-9)


def test_oblique_grid_uses_grid_transform():
    rot = _rotation(0.3, -0.7, 1.1)
    grid = Grid(
        shape=(4, 5, 6),
        origin_mm=(3.0, -2.0, 10.0),
        spacing_mm=(2.0, 1.5, 3.0),
        direction=rot.ravel(),
    )
    seeds = Seeds([[5.0, 1.0, 12.0]], 0.8, [OBLIQUE])
    vol = dose_on_grid(seeds, grid, "6702", backend="numba", dtype=np.float64)
    pts = dose_at_points(seeds, grid.voxel_centres_mm(), "6702", backend="numpy")
    np.testing.assert_allclose(vol, pts, rtol=1e-12)


def test_cutoff_drops_far_seeds():
    seeds = Seeds([[0, 0, 0], [60.0, 0, 0]], 1.0)
    pts = np.array([[5.0, 0, 0]])
    near_only = dose_at_points(Seeds([[0, 0, 0]], 1.0), pts, "6711", backend="numpy")
    for be in CPU_BACKENDS:
        cut = dose_at_points(seeds, pts, "6711", backend=be, cutoff_mm=40.0)
        np.testing.assert_allclose(cut, near_only, rtol=1e-12)


def test_errors_name_the_problem():
    seeds = _one_seed()
    with pytest.raises(BackendUnavailableError, match="unknown backend"):
        dose_at_points(seeds, [[1, 2, 3]], "6711", backend="fortran")
    with pytest.raises(ConfigError, match="cutoff_mm"):
        dose_at_points(seeds, [[1, 2, 3]], "6711", cutoff_mm=-1)
    with pytest.raises(ConfigError, match="formalism"):
        dose_at_points(seeds, [[1, 2, 3]], "6711", formalism="spline")
    with pytest.raises(ConfigError, match="quantity"):
        dose_at_points(seeds, [[1, 2, 3]], "6711", quantity="kerma")
    with pytest.raises(ConfigError, match="dtype"):
        dose_at_points(seeds, [[1, 2, 3]], "6711", dtype=np.int32)
    with pytest.raises(GeometryError, match="points_mm"):
        dose_at_points(seeds, [[1, 2, np.nan]], "6711")
    with pytest.raises(GeometryError, match="seed 1: direction"):
        Seeds([[0, 0, 0], [1, 1, 1]], 1.0, [[0, 0, 1], [0, 0, 2]])
    with pytest.raises(GeometryError, match="seed 0: air-kerma strength"):
        Seeds([[0, 0, 0]], 0.0)


def test_dtype_kept_and_shape():
    pts = np.tile([10.0, 0.0, 0.0], (2, 3, 1))
    for dt in (np.float32, np.float64):
        d = dose_at_points(_one_seed(), pts, "6711", dtype=dt, backend="numpy")
        assert d.dtype == dt and d.shape == (2, 3)
