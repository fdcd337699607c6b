"""The placement error sampler: published means and SDs reproduced, geometry of the moves."""

import numpy as np
import pytest

from brachycryo.core.errors import ConfigError
from brachycryo.robustness.error_model import (
    PRESETS,
    ErrorModel,
    Magnitude,
    error_model_from_dict,
    load_error_model,
    perturb_seeds,
    sample_needle_errors,
)

N = 10_000


def _directions(n, rng):
    d = rng.standard_normal((n, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def _check_moments(values, m: Magnitude):
    assert abs(values.mean() - m.mean) <= 0.03 * m.mean, (values.mean(), m.mean)
    assert abs(values.std(ddof=1) - m.sd) <= 0.03 * m.sd, (values.std(ddof=1), m.sd)


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_sampler_reproduces_published_means_and_sds(name):
    """10,000 needles: the magnitudes measured on the sampled vectors (entry offset, tilt
    between planned and moved seed axis, |depth|, |shift|) have the input mean and SD
    within 3 %; the entry offset is perpendicular to the needle."""
    model = PRESETS[name]
    rng = np.random.default_rng(1)
    d = _directions(N, rng)
    err = sample_needle_errors(model, d, N, rng)
    if not model.entry_mm.is_zero:
        _check_moments(np.linalg.norm(err.entry_offset_mm, axis=1), model.entry_mm)
        assert np.abs(np.sum(err.entry_offset_mm * d, axis=1)).max() < 1e-9
    if not model.depth_mm.is_zero:
        _check_moments(np.abs(err.depth_mm), model.depth_mm)
        assert 0.45 < np.mean(err.depth_mm > 0) < 0.55  # deeper or shallower alike
    if not model.shift_mm.is_zero:
        _check_moments(np.linalg.norm(err.shift_mm, axis=1), model.shift_mm)
    if not model.angle_deg.is_zero:
        # the angle measured between the planned and the moved seed axis
        seeds = np.arange(N)
        _, axes, _ = perturb_seeds(err, model, np.zeros((N, 3)), d, seeds, 10.0 * d, d)
        tilt = np.degrees(np.arccos(np.clip(np.sum(axes * d, axis=1), -1, 1)))
        _check_moments(tilt, model.angle_deg)


def test_jitter_and_loss_from_toml(tmp_path):
    f = tmp_path / "mine.toml"
    f.write_text(
        "[needle]\nangle_deg = { mean = 2.0, sd = 1.0 }\n"
        "[seed]\njitter_mm = { mean = 1.5, sd = 0.8 }\nloss_probability = 0.05\n"
    )
    model = load_error_model(f)
    assert model.name == "mine" and model.angle_deg == Magnitude(2.0, 1.0)
    rng = np.random.default_rng(2)
    err = sample_needle_errors(model, _directions(10, rng), N, rng)
    _check_moments(np.abs(err.jitter_mm), model.jitter_mm)
    assert abs((~err.kept).mean() - 0.05) < 0.006  # binomial SD 0.0022


def test_zero_errors_leave_the_seeds_bit_for_bit():
    rng = np.random.default_rng(3)
    d = _directions(50, rng)
    entry = rng.normal(0, 50, (50, 3))
    pos = entry + d * rng.uniform(20, 90, (50, 1)) + rng.normal(0, 0.1, (50, 3))
    err = sample_needle_errors(ErrorModel(), d, 50, rng)
    moved, axes, kept = perturb_seeds(err, ErrorModel(), entry, d, np.arange(50), pos, d)
    np.testing.assert_array_equal(moved, pos)
    np.testing.assert_array_equal(axes, d)
    assert kept.all()


def test_depth_moves_along_and_tilt_pivots_at_the_entry():
    """A 2 mm deeper needle moves its seeds 2 mm along it; a tilt by a about the entry
    moves a seed at depth t by 2 t sin(a/2) and keeps its distance to the entry."""
    d = np.array([[0.0, 1.0, 0.0]])
    entry = np.array([[5.0, -40.0, 3.0]])
    pos = entry + 60.0 * d
    err = sample_needle_errors(ErrorModel(), d, 1, np.random.default_rng(0))
    deeper = type(err)(err.entry_offset_mm, err.tilt_axis, err.tilt_deg, np.array([2.0]),
                       err.shift_mm, err.jitter_mm, err.kept)  # fmt: skip
    moved, _, _ = perturb_seeds(deeper, ErrorModel(), entry, d, np.array([0]), pos, d)
    np.testing.assert_allclose(moved, entry + 62.0 * d, atol=1e-12)
    tilted = type(err)(err.entry_offset_mm, err.tilt_axis, np.array([3.0]), err.depth_mm,
                       err.shift_mm, err.jitter_mm, err.kept)  # fmt: skip
    moved, axes, _ = perturb_seeds(tilted, ErrorModel(), entry, d, np.array([0]), pos, d)
    assert np.linalg.norm(moved - entry) == pytest.approx(60.0, abs=1e-9)
    assert np.linalg.norm(moved - pos) == pytest.approx(2 * 60.0 * np.sin(np.radians(1.5)))
    assert np.degrees(np.arccos(axes[0] @ d[0])) == pytest.approx(3.0)


@pytest.mark.parametrize(
    ("doc", "key"),
    [
        ({"needle": {"entry_mm": {"mean": -1.0, "sd": 0.0}}}, "needle.entry_mm"),
        ({"needle": {"tip_mm": {"mean": 1.0, "sd": 0.0}}}, "needle.tip_mm"),
        ({"seed": {"loss_probability": 1.5}}, "loss_probability"),
        ({"fixed_shift_mm": [1.0, 2.0]}, "fixed_shift_mm"),
        ({"colour": 1}, "colour"),
    ],
)
def test_bad_error_models_name_the_key(doc, key):
    with pytest.raises(ConfigError) as e:
        error_model_from_dict(doc, "bad")
    assert key in str(e.value)


def test_unknown_model_name():
    with pytest.raises(ConfigError, match="neither a preset"):
        load_error_model("no-such-model")
