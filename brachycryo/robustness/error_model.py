"""Needle placement error model: what goes wrong, needle by needle, when seeds are implanted.

Errors occur per needle (all its seeds move together) and per seed:

* **entry offset** (mm): the needle enters the skin displaced in the plane perpendicular to
  its planned direction;
* **angle** (degrees): the needle is tilted about its (displaced) entry point, in a random
  plane containing its planned direction;
* **depth** (mm, signed): the needle goes deeper (+) or shallower (-) along its track;
* **shift** (mm): a rigid 3-D translation of the whole needle (used where only a tip error is
  published, e.g. the navigation figure below);
* **jitter** (mm, per seed, signed): each seed slides along the (perturbed) track;
* **seed loss** (probability per seed): the seed is missing from the implant (migration,
  stuck in the needle);
* **fixed shift** (mm, 3-vector): the same offset for every seed (e.g. a registration
  error); 0 by default.

How a published "mean ± SD" becomes a distribution
--------------------------------------------------
Placement studies report the *magnitude* of an error (a distance or an angle, never
negative) as its mean and SD.  We draw that magnitude from the gamma distribution with the
same mean μ and SD σ (shape k = (μ/σ)², scale θ = σ²/μ), which matches both moments exactly
for any ratio (a Rayleigh or Maxwell magnitude fixes σ/μ at 0.52 or 0.42 and could not);
its direction is uniform: the azimuth of an entry offset (in the plane perpendicular to the
needle) and of the tilt axis, uniform on [0, 2π); the direction of a 3-D shift uniform on
the sphere; the sign of the depth error and of the jitter ± with probability 1/2.  So the
sampled magnitudes have exactly the published mean and SD (the sampler test checks it over
10,000 draws).  A component with mean 0 and SD 0 is off; mean > 0 with SD 0 is a fixed
magnitude in a random direction.

Presets (Ji Z, Sun H, Jiang Y, et al., "Analysis on the accuracy of CT-guided radioactive
I-125 seed implantation with 3D printing template assistance in the treatment of thoracic
malignancies", J Radiat Res 2021;62(5):910-917; 28 patients, 318 needles):

* ``template`` (3-D printed template, their main result): entry 3.4 ± 1.7 mm, angle
  2.8 ± 1.7°, depth 5.2 ± 4.8 mm.  Their needle *tip* error, 4.4 ± 2.9 mm, is the result of
  these three together; it is not a separate input (it would count the same error twice).
  The scenarios' simulated tip errors are reported beside it as a check: drawn as
  independent components they come out larger (about 7 mm on a test plan); the paper's tip
  error is smaller than its depth error alone, so it cannot be the 3-D distance combining
  them, and this preset is a pessimistic reading of the paper.
* ``freehand`` (optical navigation, the same paper): tip 3.1 ± 1.8 mm, entered as a rigid
  3-D shift of the whole needle with that magnitude (only the tip error is published).

The paper gives no per-seed jitter or seed-loss figures: both are 0 in the presets; give
them in a TOML file (``[seed] jitter_mm = {mean, sd}``, ``loss_probability``).
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brachycryo.core.errors import ConfigError

__all__ = [
    "PRESETS",
    "ErrorModel",
    "Magnitude",
    "NeedleErrors",
    "load_error_model",
    "sample_needle_errors",
]


@dataclass(frozen=True)
class Magnitude:
    """Mean and SD of a non-negative error magnitude (mm or degrees)."""

    mean: float = 0.0
    sd: float = 0.0

    def __post_init__(self) -> None:
        for name in ("mean", "sd"):
            v = getattr(self, name)
            if not (isinstance(v, int | float) and math.isfinite(v) and v >= 0):
                raise ConfigError(f"{name} must be a finite number >= 0, got {v!r}", key=name)
        if self.mean == 0 and self.sd > 0:
            raise ConfigError("an error magnitude with mean 0 must have sd 0", key="sd")

    @property
    def is_zero(self) -> bool:
        return self.mean == 0

    def draw(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """``n`` magnitudes from the gamma distribution with this mean and SD."""
        if self.mean == 0:
            return np.zeros(n)
        if self.sd == 0:
            return np.full(n, float(self.mean))
        shape = (self.mean / self.sd) ** 2
        return rng.gamma(shape, self.sd**2 / self.mean, n)


@dataclass(frozen=True)
class ErrorModel:
    """Needle-level and per-seed placement errors (see the module docstring)."""

    name: str = "custom"
    entry_mm: Magnitude = Magnitude()
    angle_deg: Magnitude = Magnitude()
    depth_mm: Magnitude = Magnitude()
    shift_mm: Magnitude = Magnitude()
    jitter_mm: Magnitude = Magnitude()
    loss_probability: float = 0.0
    fixed_shift_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    sources: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        p = self.loss_probability
        if not (isinstance(p, int | float) and 0.0 <= p < 1.0):
            raise ConfigError(
                f"loss_probability must be in [0, 1), got {p!r}", key="loss_probability"
            )
        if len(self.fixed_shift_mm) != 3 or not all(math.isfinite(v) for v in self.fixed_shift_mm):
            raise ConfigError("fixed_shift_mm must be 3 finite numbers", key="fixed_shift_mm")

    def to_json(self) -> dict:
        out: dict = {"name": self.name}
        for key in ("entry_mm", "angle_deg", "depth_mm", "shift_mm", "jitter_mm"):
            m = getattr(self, key)
            out[key] = {"mean": m.mean, "sd": m.sd}
        out["loss_probability"] = self.loss_probability
        out["fixed_shift_mm"] = list(self.fixed_shift_mm)
        out["sources"] = list(self.sources)
        return out


_JI_2021 = (
    "Ji Z et al., Analysis on the accuracy of CT-guided radioactive I-125 seed implantation "
    "with 3D printing template assistance in the treatment of thoracic malignancies, "
    "J Radiat Res 2021;62(5):910-917"
)

#: The published error figures (module docstring).
PRESETS: dict[str, ErrorModel] = {
    "template": ErrorModel(
        name="template",
        entry_mm=Magnitude(3.4, 1.7),
        angle_deg=Magnitude(2.8, 1.7),
        depth_mm=Magnitude(5.2, 4.8),
        sources=(
            _JI_2021 + ": 3D-printed template, entry 3.4±1.7 mm, angle 2.8±1.7°, "
            "depth 5.2±4.8 mm (tip 4.4±2.9 mm results from them)",
        ),
    ),
    "freehand": ErrorModel(
        name="freehand",
        shift_mm=Magnitude(3.1, 1.8),
        sources=(_JI_2021 + ": optical navigation, tip 3.1±1.8 mm as a rigid needle shift",),
    ),
}

_MAGNITUDE_KEYS = {
    ("needle", "entry_mm"): "entry_mm",
    ("needle", "angle_deg"): "angle_deg",
    ("needle", "depth_mm"): "depth_mm",
    ("needle", "shift_mm"): "shift_mm",
    ("seed", "jitter_mm"): "jitter_mm",
}


def _magnitude(value, where: str) -> Magnitude:
    if not isinstance(value, dict) or set(value) - {"mean", "sd"}:
        raise ConfigError(f"{where}: give {{ mean = ..., sd = ... }}", key=where)
    try:
        return Magnitude(float(value.get("mean", 0.0)), float(value.get("sd", 0.0)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}", key=where) from exc
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}", key=where) from exc


def error_model_from_dict(doc: dict, name: str) -> ErrorModel:
    """An :class:`ErrorModel` from a TOML document::

    [needle]
    entry_mm = { mean = 3.4, sd = 1.7 }
    angle_deg = { mean = 2.8, sd = 1.7 }
    depth_mm = { mean = 5.2, sd = 4.8 }
    shift_mm = { mean = 0.0, sd = 0.0 }
    [seed]
    jitter_mm = { mean = 1.0, sd = 0.5 }
    loss_probability = 0.01
    fixed_shift_mm = [0.0, 0.0, 0.0]
    source = "where the figures come from"
    """
    unknown = set(doc) - {"needle", "seed", "fixed_shift_mm", "source"}
    if unknown:
        raise ConfigError(f"unknown keys {sorted(unknown)}", key=sorted(unknown)[0])
    values: dict = {}
    for table in ("needle", "seed"):
        sub = doc.get(table, {})
        if not isinstance(sub, dict):
            raise ConfigError(f"[{table}] must be a table", key=table)
        allowed = {k for t, k in _MAGNITUDE_KEYS if t == table}
        allowed |= {"loss_probability"} if table == "seed" else set()
        extra = set(sub) - allowed
        if extra:
            raise ConfigError(
                f"[{table}] unknown keys {sorted(extra)}", key=f"{table}.{min(extra)}"
            )
        for key in sub:
            if key == "loss_probability":
                values[key] = sub[key]
            else:
                values[_MAGNITUDE_KEYS[(table, key)]] = _magnitude(sub[key], f"{table}.{key}")
    if "fixed_shift_mm" in doc:
        shift = doc["fixed_shift_mm"]
        if not isinstance(shift, list) or len(shift) != 3:
            raise ConfigError("fixed_shift_mm must be [dx, dy, dz]", key="fixed_shift_mm")
        values["fixed_shift_mm"] = tuple(float(v) for v in shift)
    source = doc.get("source", "")
    return ErrorModel(name=name, sources=(str(source),) if source else (), **values)


def load_error_model(spec: str | os.PathLike) -> ErrorModel:
    """A preset name (``template``, ``freehand``) or a TOML file (:func:`error_model_from_dict`)."""
    if str(spec) in PRESETS:
        return PRESETS[str(spec)]
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(
            f"{spec!r} is neither a preset ({', '.join(PRESETS)}) nor a TOML file",
            key="--error-model",
        )
    try:
        doc = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}", key="--error-model") from exc
    try:
        return error_model_from_dict(doc, path.stem)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}", key=exc.key if hasattr(exc, "key") else None) from exc


@dataclass(frozen=True)
class NeedleErrors:
    """One scenario's sampled errors: per needle (n_needles, ...) and per seed (n_seeds,)."""

    entry_offset_mm: np.ndarray  # (n_needles, 3), perpendicular to the planned direction
    tilt_axis: np.ndarray  # (n_needles, 3) unit, perpendicular to the planned direction
    tilt_deg: np.ndarray  # (n_needles,)
    depth_mm: np.ndarray  # (n_needles,) signed, + deeper
    shift_mm: np.ndarray  # (n_needles, 3)
    jitter_mm: np.ndarray  # (n_seeds,) signed, along the perturbed track
    kept: np.ndarray  # (n_seeds,) bool


def _perpendicular_basis(directions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two unit vectors perpendicular to each direction (n, 3), and to each other."""
    helper = np.where(np.abs(directions[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    a = np.cross(directions, helper)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    return a, np.cross(directions, a)


def _in_plane(rng, directions: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    a, b = _perpendicular_basis(directions)
    phi = rng.uniform(0.0, 2.0 * np.pi, directions.shape[0])
    return magnitude[:, None] * (np.cos(phi)[:, None] * a + np.sin(phi)[:, None] * b)


def _signed(rng, m: Magnitude, n: int) -> np.ndarray:
    return m.draw(rng, n) * rng.choice([-1.0, 1.0], n)


def _isotropic(rng, n: int) -> np.ndarray:
    v = rng.standard_normal((n, 3))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def sample_needle_errors(
    model: ErrorModel, directions: np.ndarray, n_seeds: int, rng: np.random.Generator
) -> NeedleErrors:
    """One scenario's errors for needles of planned unit ``directions`` (n_needles, 3).

    Every draw is made whatever the model (zeros where a component is off), so the random
    stream, and the scenarios, do not depend on which components are on."""
    d = np.asarray(directions, dtype=float).reshape(-1, 3)
    n = d.shape[0]
    entry = _in_plane(rng, d, model.entry_mm.draw(rng, n))
    axis = _in_plane(rng, d, np.ones(n))
    tilt = model.angle_deg.draw(rng, n)
    depth = _signed(rng, model.depth_mm, n)
    shift = _isotropic(rng, n) * model.shift_mm.draw(rng, n)[:, None]
    jitter = _signed(rng, model.jitter_mm, n_seeds)
    kept = rng.random(n_seeds) >= model.loss_probability
    return NeedleErrors(entry, axis, tilt, depth, shift, jitter, kept)


def _rotate(v: np.ndarray, axis: np.ndarray, angle_rad: np.ndarray) -> np.ndarray:
    """Rodrigues' rotation of rows ``v`` about unit rows ``axis`` by ``angle_rad``."""
    c, s = np.cos(angle_rad)[:, None], np.sin(angle_rad)[:, None]
    dot = np.sum(axis * v, axis=1, keepdims=True)
    return v * c + np.cross(axis, v) * s + axis * dot * (1.0 - c)


def perturb_seeds(
    errors: NeedleErrors,
    model: ErrorModel,
    needle_entry_mm: np.ndarray,
    needle_direction: np.ndarray,
    seed_needle: np.ndarray,
    seed_positions_mm: np.ndarray,
    seed_axes: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The perturbed seeds: (positions (n, 3), unit axes (n, 3), kept mask (n,)).

    A seed at ``p = e + t u + r`` (entry ``e``, planned direction ``u``, depth ``t``, ``r``
    its offset from the track) moves to ``e + δe + R(u (t + δt + j) + r) + s + f``: ``R``
    the tilt about the displaced entry, ``δt`` the needle's depth error, ``j`` the seed's
    jitter, ``s`` the needle's shift and ``f`` the fixed shift.  The seed's axis is ``R u``.
    Computed as ``p`` plus displacements, so that zero errors leave ``p`` bit for bit.
    """
    e = needle_entry_mm[seed_needle]
    u = needle_direction[seed_needle]
    slide = errors.depth_mm[seed_needle] + errors.jitter_mm
    v = seed_positions_mm - e + u * slide[:, None]  # t u + r + (δt + j) u
    angle = np.deg2rad(errors.tilt_deg)[seed_needle]
    axis = errors.tilt_axis[seed_needle]
    tilt = _rotate(v, axis, angle) - v
    pos = seed_positions_mm + (
        errors.entry_offset_mm[seed_needle]
        + u * slide[:, None]
        + tilt
        + errors.shift_mm[seed_needle]
    )
    pos = pos + np.asarray(model.fixed_shift_mm, dtype=float)
    axes = _rotate(seed_axes, axis, angle)
    return pos, axes, errors.kept.copy()
