"""Tissue classes for the bioheat model: thermal properties, phase change, perfusion.

The packaged table ``data/tissues.csv`` cites its sources (Micromachines 2025 16:1321, the
Go-Smart cryo template, biotransport defaults, Sci Rep 2021 s41598-021-95204-2 for the latent
heat of liver, IT'IS V5.0 for lung).  A user file with the same columns adds or replaces rows.

Phase change is modelled by the **enthalpy method** (e.g. Voller & Swaminathan, Numer. Heat
Transfer B 19:175, 1991): the volumetric enthalpy ``H(T)`` is piecewise linear with

* ``T <= T_s`` (solidus): ``H = C_f (T - T_s)``, ``C_f = rho c_frozen``;
* ``T_s < T < T_l`` (mushy): ``H = C_m (T - T_s)``, ``C_m = rho L / (T_l - T_s) + (C_f + C_u)/2``;
* ``T >= T_l`` (liquidus): ``H = C_m (T_l - T_s) + C_u (T - T_l)``, ``C_u = rho c_unfrozen``.

The liquid fraction is ``phi = clip((T - T_s)/(T_l - T_s), 0, 1)``; conductivity
``k = k_f + phi (k_u - k_f)``; perfusion and metabolic heat are multiplied by ``phi`` (switched
off when frozen, as biotransport scales them by the liquid fraction).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from numpy.typing import DTypeLike

from brachycryo.core.errors import DataModelError

#: Volumetric heat capacity of blood, rho_b c_b = 1000 kg/m3 x 3600 J/kg/K (Go-Smart template;
#: Micromachines 2025 16:1321).
BLOOD_RHO_C_J_M3K = 1000.0 * 3600.0

_FLOAT_COLUMNS = (
    "k_unfrozen_w_mk",
    "k_frozen_w_mk",
    "c_unfrozen_j_kgk",
    "c_frozen_j_kgk",
    "rho_kg_m3",
    "latent_heat_j_kg",
    "liquidus_c",
    "solidus_c",
    "perfusion_per_s",
    "metabolic_w_m3",
)

# Column order of the parameter table handed to the kernels (see ``Tissue.kernel_row``).
P_CF, P_CU, P_CM, P_TS, P_TL, P_HL, P_KF, P_KU, P_PERF, P_QM = range(10)
N_PARAMS = 10


@dataclass(frozen=True)
class Tissue:
    """Thermal properties of one tissue class (SI units, temperatures in deg C)."""

    name: str
    k_unfrozen_w_mk: float
    k_frozen_w_mk: float
    c_unfrozen_j_kgk: float
    c_frozen_j_kgk: float
    rho_kg_m3: float
    latent_heat_j_kg: float
    liquidus_c: float
    solidus_c: float
    perfusion_per_s: float
    metabolic_w_m3: float
    notes: str = ""

    def __post_init__(self) -> None:
        for col in _FLOAT_COLUMNS:
            v = getattr(self, col)
            if not np.isfinite(v):
                raise DataModelError(f"tissue {self.name!r}: {col} is not finite ({v})")
        for col in ("k_unfrozen_w_mk", "k_frozen_w_mk", "c_unfrozen_j_kgk", "c_frozen_j_kgk"):
            if getattr(self, col) <= 0:
                raise DataModelError(f"tissue {self.name!r}: {col} must be > 0")
        if self.rho_kg_m3 <= 0:
            raise DataModelError(f"tissue {self.name!r}: rho_kg_m3 must be > 0")
        for col in ("latent_heat_j_kg", "perfusion_per_s", "metabolic_w_m3"):
            if getattr(self, col) < 0:
                raise DataModelError(f"tissue {self.name!r}: {col} must be >= 0")
        if not self.liquidus_c > self.solidus_c:
            raise DataModelError(
                f"tissue {self.name!r}: liquidus_c ({self.liquidus_c}) must exceed solidus_c "
                f"({self.solidus_c}); the enthalpy method needs a (possibly narrow) mushy range"
            )

    @property
    def c_frozen_vol(self) -> float:
        return self.rho_kg_m3 * self.c_frozen_j_kgk

    @property
    def c_unfrozen_vol(self) -> float:
        return self.rho_kg_m3 * self.c_unfrozen_j_kgk

    @property
    def c_mushy_vol(self) -> float:
        """Apparent volumetric heat capacity in the mushy range (latent heat spread evenly)."""
        dt = self.liquidus_c - self.solidus_c
        return self.rho_kg_m3 * self.latent_heat_j_kg / dt + 0.5 * (
            self.c_frozen_vol + self.c_unfrozen_vol
        )

    def kernel_row(self) -> np.ndarray:
        """The 10 numbers the kernels use, in the ``P_*`` column order (float64)."""
        cm = self.c_mushy_vol
        row = np.zeros(N_PARAMS)
        row[P_CF] = self.c_frozen_vol
        row[P_CU] = self.c_unfrozen_vol
        row[P_CM] = cm
        row[P_TS] = self.solidus_c
        row[P_TL] = self.liquidus_c
        row[P_HL] = cm * (self.liquidus_c - self.solidus_c)
        row[P_KF] = self.k_frozen_w_mk
        row[P_KU] = self.k_unfrozen_w_mk
        row[P_PERF] = self.perfusion_per_s * BLOOD_RHO_C_J_M3K
        row[P_QM] = self.metabolic_w_m3
        return row

    def enthalpy_j_m3(self, temp_c: np.ndarray | float) -> np.ndarray:
        """Volumetric enthalpy ``H(T)`` (J/m3, zero at the solidus)."""
        return enthalpy_from_temp(np.asarray(temp_c, dtype=float), self.kernel_row())

    def temp_c(self, enthalpy_j_m3: np.ndarray | float) -> np.ndarray:
        """Inverse of :meth:`enthalpy_j_m3`."""
        return temp_from_enthalpy(np.asarray(enthalpy_j_m3, dtype=float), self.kernel_row())


def enthalpy_from_temp(temp_c: np.ndarray, row: np.ndarray) -> np.ndarray:
    """``H(T)`` for parameters ``row`` (broadcasting over the last axis of ``row``)."""
    row = np.asarray(row)
    cf, cu, cm = row[..., P_CF], row[..., P_CU], row[..., P_CM]
    ts, tl, hl = row[..., P_TS], row[..., P_TL], row[..., P_HL]
    return np.where(
        temp_c <= ts,
        cf * (temp_c - ts),
        np.where(temp_c >= tl, hl + cu * (temp_c - tl), cm * (temp_c - ts)),
    )


def temp_from_enthalpy(h: np.ndarray, row: np.ndarray) -> np.ndarray:
    """``T(H)``, the inverse of :func:`enthalpy_from_temp`."""
    row = np.asarray(row)
    cf, cu, cm = row[..., P_CF], row[..., P_CU], row[..., P_CM]
    ts, tl, hl = row[..., P_TS], row[..., P_TL], row[..., P_HL]
    return np.where(h <= 0, ts + h / cf, np.where(h >= hl, tl + (h - hl) / cu, ts + h / cm))


def _parse_rows(text: str, origin: str) -> dict[str, Tissue]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    reader = csv.DictReader(io.StringIO("\n".join(lines)))
    out: dict[str, Tissue] = {}
    for n, rec in enumerate(reader, start=2):
        name = (rec.get("tissue") or "").strip()
        if not name:
            raise DataModelError(f"{origin}: row {n} has no tissue name")
        vals = {}
        for col in _FLOAT_COLUMNS:
            raw = rec.get(col)
            try:
                vals[col] = float(raw or "")  # a missing cell (None) fails as an empty one
            except (TypeError, ValueError):
                raise DataModelError(
                    f"{origin}: tissue {name!r} column {col!r} is not a number ({raw!r})"
                ) from None
        out[name] = Tissue(name=name, notes=(rec.get("notes") or "").strip(), **vals)
    return out


def load_tissues(extra_path: str | Path | None = None) -> dict[str, Tissue]:
    """The packaged tissue table, updated with the rows of ``extra_path`` (same columns)."""
    text = (
        resources.files("brachycryo.cryo_iceball").joinpath("data/tissues.csv").read_text("utf-8")
    )
    table = _parse_rows(text, "cryo_iceball/data/tissues.csv")
    if extra_path is not None:
        p = Path(extra_path)
        try:
            extra = p.read_text("utf-8")
        except OSError as exc:
            raise DataModelError(f"cannot read tissue file {p}: {exc}") from None
        table.update(_parse_rows(extra, str(p)))
    return table


def get_tissue(name: str, table: dict[str, Tissue] | None = None) -> Tissue:
    table = load_tissues() if table is None else table
    try:
        return table[name]
    except KeyError:
        raise DataModelError(
            f"unknown tissue {name!r}; known: {', '.join(sorted(table))} "
            "(add others with a tissue file of the same columns)"
        ) from None


#: HU windows used by :func:`classes_from_hu` (lower bound inclusive), conventional CT
#: windows: lung / air below -500, fat -150..-30 (here everything from -500 to -30, so no
#: HU is left unclassified), soft tissue -30..+300, bone from +300.
HU_LUNG_MAX = -500.0
HU_FAT_MAX = -30.0
HU_BONE_MIN = 300.0


def classes_from_hu(
    hu: np.ndarray,
    *,
    soft: str = "soft_tissue",
    lung: str = "lung",
    fat: str | None = None,
    bone: str | None = None,
) -> tuple[np.ndarray, list[str]]:
    """Map CT numbers to tissue classes: ``(label int8 volume, class names)``.

    HU < -500 is ``lung``; -500 <= HU < -30 is ``fat`` and HU >= +300 is ``bone`` when
    those class names are given, and ``soft`` otherwise.  The packaged table has **no fat
    or bone row**: the reference data (``bioheat_parameters.csv``) holds no sourced
    thermal values for them, so by default they are treated as soft tissue; pass
    ``fat=``/``bone=`` the names of rows of a user tissue file to separate them.
    """
    hu = np.asarray(hu)
    names = [soft, lung]
    labels = np.where(hu < HU_LUNG_MAX, 1, 0).astype(np.int8)
    if fat is not None:
        names.append(fat)
        labels[(hu >= HU_LUNG_MAX) & (hu < HU_FAT_MAX)] = len(names) - 1
    if bone is not None:
        names.append(bone)
        labels[hu >= HU_BONE_MIN] = len(names) - 1
    return labels, names


def tissue_label_map(
    hu: np.ndarray,
    table: dict[str, Tissue],
    *,
    overrides: Sequence[tuple[str, np.ndarray]] = (),
    soft: str = "soft_tissue",
) -> tuple[np.ndarray, list[Tissue], dict[str, int]]:
    """Per-voxel tissue classes from CT numbers, then per-structure overrides.

    ``hu`` (HU on the simulation grid) gives the classes of :func:`classes_from_hu`; fat
    and bone are separated only when ``table`` has rows named ``"fat"`` / ``"bone"``
    (supplied by the user: the packaged table has none, see :func:`classes_from_hu`).
    ``overrides`` is a sequence of ``(tissue name, boolean mask)``: each sets its voxels to
    that tissue, later entries winning where masks overlap.  Returns ``(labels int8,
    tissues indexed by the labels, voxel count per tissue name)``; tissues that end up with
    no voxel are kept in the list (harmless to the solver).
    """
    hu = np.asarray(hu)
    fat = "fat" if "fat" in table else None
    bone = "bone" if "bone" in table else None
    labels, names = classes_from_hu(hu, soft=soft, fat=fat, bone=bone)
    for name, mask in overrides:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != hu.shape:
            raise DataModelError(
                f"override mask for {name!r} has shape {mask.shape}, not {hu.shape}"
            )
        if name not in names:
            names.append(name)
        labels[mask] = names.index(name)
    if len(names) > 127:
        raise DataModelError("more than 127 tissue classes")
    tissues = [get_tissue(n, table) for n in names]
    counts = {n: int(np.count_nonzero(labels == i)) for i, n in enumerate(names)}
    return labels, tissues, counts


def kernel_table(tissues: list[Tissue], dtype: DTypeLike) -> np.ndarray:
    """(n_tissues, N_PARAMS) array for the kernels, in ``dtype``."""
    return np.stack([t.kernel_row() for t in tissues]).astype(dtype)
