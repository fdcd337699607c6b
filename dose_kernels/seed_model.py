"""TG-43 seed models: consensus dosimetry tables loaded from CSV folders.

A seed model is a folder holding

* ``params.csv`` - ``parameter,value,unit`` rows: ``name``, ``aliases`` (``;``-separated),
  ``manufacturer`` (``;``-separated names a plan's SourceManufacturer may carry),
  ``nuclide``, ``Lambda`` (dose-rate constant, cGy h^-1 U^-1), ``L`` (active length used
  in the line-source geometry function, cm), ``half_life`` (d), ``consensus_report``;
* ``gL.csv`` - ``r_cm,gL``: the line-source radial dose function g_L(r);
* ``F.csv`` - ``theta_deg,r=<r>cm,...``: the 2D anisotropy function F(r, θ), one row per
  polar angle from 0 to 90° (F is symmetric about 90°; a missing 90° row is added with
  F = 1, its value by definition, TG-43U1 Eq. 4), one column per radius;
* ``phi_an.csv`` (optional) - ``r_cm,phi_an``: the 1D anisotropy function of the
  point-source (1D) formalism.  Without it, φ_an(r) is derived from F(r, θ) at F's radii
  (:func:`derive_phi_an`), and :attr:`SeedModel.phi_an_source` says so.

Lines starting with ``#`` are provenance comments.  The tables are in the units of the
AAPM reports (cm, cGy h^-1 U^-1, days); :func:`read_seed_model` converts them **once**
into the units the kernels use: mm, Gy h^-1 U^-1 and hours.  References: TG-43U1 (Rivard
et al., Med Phys 31:633, 2004), TG-43U1S1 (Med Phys 34:2187, 2007), TG-43U1S2 (Med Phys
44:e297, 2017).
"""

from __future__ import annotations

import csv
import functools
import math
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from brachycryo.core.errors import DataModelError

__all__ = [
    "SeedModel",
    "SeedModelSuggestion",
    "derive_phi_an",
    "list_seed_models",
    "load_seed_model",
    "read_seed_model",
    "suggest_seed_models",
]

CM_TO_MM = 10.0
CGY_TO_GY = 0.01
DAY_TO_H = 24.0
_R_COLUMN = re.compile(r"^\s*r\s*=\s*([-+0-9.eE]+)\s*cm\s*$")


@dataclass(frozen=True, eq=False)
class SeedModel:
    """Consensus TG-43 data for one seed model, in kernel units (mm, Gy, h).

    ``f_table`` has shape ``(len(f_theta_deg), len(f_r_mm))``; ``f_theta_deg`` runs from 0
    to 90.  ``phi_r_mm`` / ``phi_an`` are ``None`` when the model has no 1D anisotropy
    function.
    """

    name: str
    nuclide: str
    dose_rate_constant_gy_per_h_per_u: float
    active_length_mm: float
    half_life_h: float
    gl_r_mm: np.ndarray
    gl: np.ndarray
    f_r_mm: np.ndarray
    f_theta_deg: np.ndarray
    f_table: np.ndarray
    phi_r_mm: np.ndarray | None = None
    phi_an: np.ndarray | None = None
    aliases: tuple[str, ...] = ()
    manufacturers: tuple[str, ...] = ()
    consensus_report: str = ""
    source: str = ""
    provenance: tuple[str, ...] = field(default=(), repr=False)

    @property
    def mean_life_h(self) -> float:
        """T½ / ln 2: total dose of a permanent implant is Ḋ₀ times this (TG-43U1 §IV)."""
        return self.half_life_h / math.log(2.0)

    @property
    def has_phi_an(self) -> bool:
        """True when the model folder gives a published φ_an(r) table (``phi_an.csv``)."""
        return self.phi_an is not None

    @property
    def phi_an_source(self) -> str:
        """Where the 1D formalism's φ_an(r) comes from: the model's table, or F(r, θ)."""
        if self.has_phi_an:
            return "phi_an.csv table"
        return "derived from F(r,theta) (solid-angle-weighted mean, TG-43U1)"

    def phi_an_table(self) -> tuple[np.ndarray, np.ndarray]:
        """(r_mm, φ_an) for the point-source formalism: the published table if the model has
        one, else :func:`derive_phi_an` at the radii of F(r, θ)."""
        if self.phi_r_mm is not None and self.phi_an is not None:
            return self.phi_r_mm, self.phi_an
        return derive_phi_an(self)


#: Angular step (degrees) of the quadrature in :func:`derive_phi_an`.  F is linear between
#: tabulated angles and β(r, θ) is smooth, so the trapezoid rule on this grid is exact to
#: < 1e-5 relative (checked against a 10x finer grid in the tests).
PHI_AN_STEP_DEG = 0.05


def derive_phi_an(model: SeedModel) -> tuple[np.ndarray, np.ndarray]:
    """φ_an(r) at the radii of F(r, θ), from F and the line-source geometry function.

    TG-43U1 (Rivard et al., Med Phys 31:633, 2004) defines the 1D anisotropy function as the
    ratio of the solid-angle-weighted dose rate at distance r to the dose rate on the
    transverse axis at the same r (the φ_an of the 1D formalism, Eqs. 10-11):

        φ_an(r) = ∫₀^π Ḋ(r, θ) sin θ dθ / (2 Ḋ(r, θ₀)),   θ₀ = 90°.

    With the 2D formalism (Eq. 1), Ḋ(r, θ) / Ḋ(r, θ₀) = F(r, θ) G_L(r, θ) / G_L(r, θ₀)
    (F(r, θ₀) = 1); F is symmetric about 90°, and G_L(r, θ) sin θ = β(r, θ) / (L r) with
    β the angle the active line subtends (TG-43U1 Eq. 4), so

        φ_an(r) = ∫₀^{π/2} F(r, θ) β(r, θ) dθ / β(r, π/2),

    an integrand that stays finite on the axis (β → 0 beyond the tips, β → π inside
    r < L/2).  F is interpolated linearly in θ, as the 2D kernels do; the integral is the
    trapezoid rule on a :data:`PHI_AN_STEP_DEG` grid.  Against the consensus φ_an tables
    the derived values agree within the consensus data's few-% precision (tests).
    """
    theta = np.radians(np.linspace(0.0, 90.0, round(90.0 / PHI_AN_STEP_DEG) + 1))
    length = model.active_length_mm
    out = np.empty(model.f_r_mm.size)
    for j, r in enumerate(model.f_r_mm):
        f = np.interp(np.degrees(theta), model.f_theta_deg, model.f_table[:, j])
        beta = np.arctan2(length * r * np.sin(theta), r * r - 0.25 * length * length)
        integrand = f * beta
        integral = float(np.sum(0.5 * (integrand[1:] + integrand[:-1]) * np.diff(theta)))
        out[j] = integral / float(beta[-1])
    return model.f_r_mm.copy(), out


# --------------------------------------------------------------------------- reading
def _read_rows(path: Path) -> tuple[list[str], list[list[str]], list[str]]:
    """Header, data rows and ``#`` comment lines of a small CSV file."""
    if not path.is_file():
        raise DataModelError(f"seed model file {path} is missing")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataModelError(f"cannot read seed model file {path}: {exc}") from exc
    comments = [ln for ln in text.splitlines() if ln.lstrip().startswith("#")]
    body = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    rows = list(csv.reader(body))
    if not rows:
        raise DataModelError(f"seed model file {path} has no header row")
    return [c.strip() for c in rows[0]], [[c.strip() for c in r] for r in rows[1:]], comments


def _number(text: str, path: Path, row: int, column: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise DataModelError(
            f"{path}: row {row}, column {column!r}: {text!r} is not a number"
        ) from None
    if not math.isfinite(value):
        raise DataModelError(f"{path}: row {row}, column {column!r}: value {text!r} is not finite")
    return value


def _two_column_table(path: Path, x_name: str, y_name: str) -> tuple[np.ndarray, np.ndarray]:
    header, rows, _ = _read_rows(path)
    if header[:2] != [x_name, y_name]:
        raise DataModelError(
            f"{path}: header must start with columns {x_name!r},{y_name!r}; got {header}"
        )
    if len(rows) < 2:
        raise DataModelError(f"{path}: needs at least 2 data rows, has {len(rows)}")
    xs, ys = [], []
    for n, r in enumerate(rows, start=1):
        if len(r) < 2:
            raise DataModelError(f"{path}: row {n} has {len(r)} values, needs 2")
        xs.append(_number(r[0], path, n, x_name))
        ys.append(_number(r[1], path, n, y_name))
    x, y = np.asarray(xs), np.asarray(ys)
    _check_increasing(x, path, x_name)
    if x[0] <= 0:
        raise DataModelError(f"{path}: row 1, column {x_name!r}: radius must be > 0, got {x[0]}")
    for n, v in enumerate(y, start=1):
        if v <= 0:
            raise DataModelError(f"{path}: row {n}, column {y_name!r}: value must be > 0, got {v}")
    return x, y


def _check_increasing(x: np.ndarray, path: Path, name: str) -> None:
    bad = np.nonzero(np.diff(x) <= 0)[0]
    if bad.size:
        n = int(bad[0]) + 2
        raise DataModelError(
            f"{path}: row {n}, column {name!r}: values must increase strictly "
            f"({x[n - 2]} then {x[n - 1]})"
        )


def _anisotropy_table(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    header, rows, _ = _read_rows(path)
    if not header or header[0] != "theta_deg":
        raise DataModelError(f"{path}: first column must be 'theta_deg'; got {header[:1]}")
    radii = []
    for col in header[1:]:
        m = _R_COLUMN.match(col)
        if m is None:
            raise DataModelError(f"{path}: column {col!r} is not of the form 'r=<radius>cm'")
        radii.append(_number(m.group(1), path, 0, col))
    if not radii:
        raise DataModelError(f"{path}: no radius columns")
    r = np.asarray(radii)
    if np.any(np.diff(r) <= 0):
        raise DataModelError(f"{path}: header radii must increase strictly; got {radii}")
    if r[0] <= 0:
        raise DataModelError(f"{path}: header radius {r[0]} cm must be > 0")
    thetas, table = [], []
    for n, row in enumerate(rows, start=1):
        if len(row) != len(header):
            raise DataModelError(f"{path}: row {n} has {len(row)} values, header has {len(header)}")
        t = _number(row[0], path, n, "theta_deg")
        if not 0.0 <= t <= 90.0:
            raise DataModelError(
                f"{path}: row {n}, column 'theta_deg': {t} is outside 0-90 deg (F is symmetric "
                "about 90 deg: store only 0-90)"
            )
        vals = [_number(v, path, n, c) for v, c in zip(row[1:], header[1:], strict=True)]
        for v, c in zip(vals, header[1:], strict=True):
            if v <= 0:
                raise DataModelError(f"{path}: row {n}, column {c!r}: value must be > 0, got {v}")
        thetas.append(t)
        table.append(vals)
    theta = np.asarray(thetas)
    if theta.size < 2:
        raise DataModelError(f"{path}: needs at least 2 angle rows")
    _check_increasing(theta, path, "theta_deg")
    if theta[0] != 0.0:
        raise DataModelError(f"{path}: row 1, column 'theta_deg': first angle must be 0")
    f = np.asarray(table)
    if theta[-1] != 90.0:
        # F(r, 90°) = 1 by definition (TG-43U1 Eq. 4); tables such as matRad's omit the row.
        theta = np.append(theta, 90.0)
        f = np.vstack([f, np.ones((1, r.size))])
    return r, theta, f


def _params(path: Path) -> tuple[dict[str, tuple[str, str]], list[str]]:
    header, rows, comments = _read_rows(path)
    if header[:2] != ["parameter", "value"]:
        raise DataModelError(f"{path}: header must be 'parameter,value,unit'; got {header}")
    out: dict[str, tuple[str, str]] = {}
    for n, r in enumerate(rows, start=1):
        if len(r) < 2 or not r[0]:
            raise DataModelError(f"{path}: row {n} needs a parameter name and a value")
        out[r[0]] = (r[1], r[2] if len(r) > 2 else "")
    return out, comments


def _positive_param(params: dict, key: str, unit: str, path: Path) -> float:
    if key not in params:
        raise DataModelError(f"{path}: parameter {key!r} ({unit}) is missing")
    value, given_unit = params[key]
    if given_unit and given_unit.replace(" ", "") != unit.replace(" ", ""):
        raise DataModelError(
            f"{path}: parameter {key!r} must be in {unit!r}, file says {given_unit!r}"
        )
    v = _number(value, path, 0, key)
    if v <= 0:
        raise DataModelError(f"{path}: parameter {key!r} must be > 0, got {v}")
    return v


def _split_list(params: dict, key: str) -> tuple[str, ...]:
    """A ``;``-separated parameter (``aliases``, ``manufacturer``) as a tuple of names."""
    return tuple(a.strip() for a in params.get(key, ("", ""))[0].split(";") if a.strip())


def read_seed_model(folder: str | Path) -> SeedModel:
    """Read and validate a seed model folder (format in the module docstring).

    Raises :class:`DataModelError` naming the file, column and row of the first problem.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DataModelError(f"seed model folder {folder} does not exist")
    params, comments = _params(folder / "params.csv")
    lam = _positive_param(params, "Lambda", "cGy h^-1 U^-1", folder / "params.csv")
    length_cm = _positive_param(params, "L", "cm", folder / "params.csv")
    half_life_d = _positive_param(params, "half_life", "d", folder / "params.csv")
    gl_r, gl = _two_column_table(folder / "gL.csv", "r_cm", "gL")
    f_r, f_theta, f = _anisotropy_table(folder / "F.csv")
    phi_r = phi = None
    if (folder / "phi_an.csv").exists():
        phi_r, phi = _two_column_table(folder / "phi_an.csv", "r_cm", "phi_an")
        phi_r = phi_r * CM_TO_MM
    name = params.get("name", (folder.name, ""))[0] or folder.name
    aliases = _split_list(params, "aliases")
    return SeedModel(
        name=name,
        nuclide=params.get("nuclide", ("I-125", ""))[0],
        dose_rate_constant_gy_per_h_per_u=lam * CGY_TO_GY,
        active_length_mm=length_cm * CM_TO_MM,
        half_life_h=half_life_d * DAY_TO_H,
        gl_r_mm=gl_r * CM_TO_MM,
        gl=gl,
        f_r_mm=f_r * CM_TO_MM,
        f_theta_deg=f_theta,
        f_table=f,
        phi_r_mm=phi_r,
        phi_an=phi,
        aliases=aliases,
        manufacturers=_split_list(params, "manufacturer"),
        consensus_report=params.get("consensus_report", ("", ""))[0],
        source=str(folder),
        provenance=tuple(comments),
    )


# --------------------------------------------------------------------------- registry
def _key(name: str) -> str:
    return re.sub(r"[^0-9a-z]", "", name.lower())


def _packaged_root() -> Path:
    return Path(str(resources.files("brachycryo.dose_kernels") / "data" / "seed_models"))


@functools.cache
def _packaged_index() -> dict[str, Path]:
    index: dict[str, Path] = {}
    for folder in sorted(p for p in _packaged_root().iterdir() if p.is_dir()):
        params, _ = _params(folder / "params.csv")
        names = [params.get("name", (folder.name, ""))[0], folder.name]
        names += params.get("aliases", ("", ""))[0].split(";")
        for n in names:
            if n.strip():
                index.setdefault(_key(n), folder)
    return index


@functools.cache
def _load_packaged(folder: Path) -> SeedModel:
    return read_seed_model(folder)


def list_seed_models() -> list[str]:
    """Names of the seed models shipped with the package."""
    return sorted({_load_packaged(p).name for p in _packaged_index().values()})


def load_seed_model(name_or_folder: str | Path | SeedModel) -> SeedModel:
    """A shipped model by name or alias (``"6711"``, ``"Best 2301"``, ``"AgX100"``, ...;
    case, spaces and punctuation ignored), or a user model from a folder path."""
    if isinstance(name_or_folder, SeedModel):
        return name_or_folder
    path = Path(name_or_folder)
    if isinstance(name_or_folder, Path) or (path.is_dir() and ("/" in str(name_or_folder))):
        return read_seed_model(path)
    folder = _packaged_index().get(_key(str(name_or_folder)))
    if folder is None:
        if path.is_dir():
            return read_seed_model(path)
        raise DataModelError(
            f"unknown seed model {str(name_or_folder)!r}; shipped models: "
            f"{', '.join(list_seed_models())} (or give the path of a model folder)"
        )
    return _load_packaged(folder)


# --------------------------------------------------------------------------- suggestion
_I125_KEYS = {"i125", "125i", "iodine125"}


@dataclass(frozen=True)
class SeedModelSuggestion:
    """Shipped seed models that fit a plan's source description, best first.

    ``unique`` is True when exactly one model fits best (a manufacturer named by the plan
    matched, and no other model of that maker has an active length as close); ``reason``
    says what matched, for the user to check.
    """

    candidates: tuple[str, ...]
    unique: bool
    reason: str

    @property
    def best(self) -> str | None:
        return self.candidates[0] if self.unique else None


def _maker_matches(model: SeedModel, manufacturer_key: str) -> bool:
    keys = [_key(m) for m in model.manufacturers] + [_key(a) for a in model.aliases]
    return any(k and (k in manufacturer_key or manufacturer_key in k) for k in keys)


def suggest_seed_models(
    manufacturer: str = "", isotope: str = "", active_length_mm: float | None = None
) -> SeedModelSuggestion:
    """Which shipped models a source without SourceModelID may be (PS3.3 C.8.8.15 Source
    Sequence: SourceManufacturer, SourceIsotopeName, ActiveSourceLength).

    Models of another nuclide are excluded (all shipped models are I-125).  When the
    manufacturer matches a model's ``manufacturer`` or alias names (case, spaces and
    punctuation ignored, either name containing the other), only those models remain.  The
    remaining models are ranked by |L - ActiveSourceLength|; L is the active length of the
    TG-43 geometry function, which may differ from the vendor's physical length, so the
    length ranks and never excludes.  The suggestion is ``unique`` only with a manufacturer
    match and a single closest length.
    """
    iso = _key(isotope)
    if iso and iso not in _I125_KEYS:
        return SeedModelSuggestion((), False, f"isotope {isotope!r}: only I-125 models ship")
    models = [_load_packaged(p) for p in sorted(set(_packaged_index().values()))]
    maker = _key(manufacturer)
    by_maker = [m for m in models if maker and _maker_matches(m, maker)]
    pool = by_maker or models
    why = [f"isotope {isotope or 'not given'}"]
    why.append(
        f"manufacturer {manufacturer!r} matches {len(by_maker)} model(s)"
        if by_maker
        else f"manufacturer {manufacturer or 'not given'} matches no shipped model"
    )
    if active_length_mm is not None and math.isfinite(active_length_mm):
        pool.sort(key=lambda m: (abs(m.active_length_mm - active_length_mm), m.name))
        gaps = [abs(m.active_length_mm - active_length_mm) for m in pool]
        n_best = sum(1 for g in gaps if g <= gaps[0] + 1e-6)
        why.append(
            f"ActiveSourceLength {active_length_mm:g} mm (closest model L "
            f"{pool[0].active_length_mm:g} mm)"
        )
    else:
        pool.sort(key=lambda m: m.name)
        n_best = len(pool)
        why.append("no ActiveSourceLength")
    unique = bool(by_maker) and n_best == 1
    return SeedModelSuggestion(tuple(m.name for m in pool), unique, "; ".join(why))
