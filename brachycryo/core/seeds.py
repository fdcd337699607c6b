"""A set of implanted (or candidate) seeds: positions, axis directions and strengths.

Strength is the air-kerma strength S_K in U (1 U = 1 µGy m² h⁻¹ = 1 cGy cm² h⁻¹).  Apparent
activity converts with 1 mCi (apparent) of I-125 = 1.270 U (AAPM TG-43, Nath et al., Med Phys
22:209, 1995; TG-43U1 Rivard et al. 2004, §II.A.1 keeps S_K as the quantity of record).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from brachycryo.core.errors import GeometryError

__all__ = [
    "DEFAULT_DIRECTION",
    "U_PER_MCI_I125",
    "Seeds",
    "apparent_mci_to_u",
    "directions_or_default",
    "u_to_apparent_mci",
]

#: Air-kerma strength of 1 mCi apparent activity of I-125, in U (TG-43, 1995).
U_PER_MCI_I125 = 1.270

#: The axis of a seed whose orientation is not known: +z, cranio-caudal, the usual needle
#: direction of a perineal template.
DEFAULT_DIRECTION = (0.0, 0.0, 1.0)

_UNIT_TOL = 1e-6


def apparent_mci_to_u(activity_mci: np.ndarray | float) -> np.ndarray | float:
    """Apparent activity of I-125 (mCi) to air-kerma strength (U): × 1.270 (TG-43, 1995)."""
    return np.multiply(activity_mci, U_PER_MCI_I125)


def u_to_apparent_mci(sk_u: np.ndarray | float) -> np.ndarray | float:
    """Air-kerma strength (U) to apparent I-125 activity (mCi)."""
    return np.divide(sk_u, U_PER_MCI_I125)


def directions_or_default(directions: np.ndarray) -> np.ndarray:
    """A copy of (n, 3) seed axes whose unknown rows (any value not finite, e.g. the NaN rows
    of a plan without orientations) are :data:`DEFAULT_DIRECTION`."""
    out = np.array(directions, dtype=np.float64).reshape(-1, 3)
    out[~np.all(np.isfinite(out), axis=1)] = DEFAULT_DIRECTION
    return out


@dataclass(frozen=True, eq=False)
class Seeds:
    """``positions_mm`` (N, 3) LPS, ``directions`` (N, 3) unit axis vectors, ``sk_u`` (N,).

    Arrays are float64 copies, read-only.  ``directions`` defaults to
    :data:`DEFAULT_DIRECTION` (+z, cranio-caudal, the usual needle direction of a perineal
    template); pass the needle direction of each seed where it is known.  Validation raises
    :class:`GeometryError` (non-finite position, zero or non-unit direction, non-positive
    strength).
    """

    positions_mm: np.ndarray
    directions: np.ndarray
    sk_u: np.ndarray

    def __init__(
        self,
        positions_mm: np.ndarray | Sequence[Sequence[float]],
        sk_u: np.ndarray | Sequence[float] | float,
        directions: np.ndarray | Sequence[Sequence[float]] | None = None,
        *,
        normalize: bool = False,
    ) -> None:
        pos = (
            np.array(positions_mm, dtype=np.float64).reshape(-1, 3)
            if np.size(positions_mm)
            else np.zeros((0, 3))
        )
        n = pos.shape[0]
        if not np.all(np.isfinite(pos)):
            bad = int(np.nonzero(~np.all(np.isfinite(pos), axis=1))[0][0])
            raise GeometryError(f"seed {bad}: position {pos[bad].tolist()} is not finite")
        if directions is None:
            d = np.tile(DEFAULT_DIRECTION, (n, 1))
        else:
            d = np.array(directions, dtype=np.float64)
            if d.shape == (3,):
                d = np.tile(d, (n, 1))
            if d.shape != (n, 3):
                raise GeometryError(f"directions must have shape ({n}, 3), got {d.shape}")
        norms = np.linalg.norm(d, axis=1)
        if not np.all(np.isfinite(norms)) or np.any(norms == 0):
            bad = int(np.nonzero(~np.isfinite(norms) | (norms == 0))[0][0])
            raise GeometryError(f"seed {bad}: direction {d[bad].tolist()} is zero or not finite")
        if normalize:
            d = d / norms[:, None]
        elif np.any(np.abs(norms - 1.0) > _UNIT_TOL):
            bad = int(np.nonzero(np.abs(norms - 1.0) > _UNIT_TOL)[0][0])
            raise GeometryError(
                f"seed {bad}: direction {d[bad].tolist()} is not a unit vector (norm "
                f"{norms[bad]:.6g}); pass normalize=True to rescale"
            )
        sk = np.array(np.broadcast_to(np.asarray(sk_u, dtype=np.float64), (n,)))
        if not np.all(np.isfinite(sk)) or np.any(sk <= 0):
            bad = int(np.nonzero(~np.isfinite(sk) | (sk <= 0))[0][0])
            raise GeometryError(f"seed {bad}: air-kerma strength {sk[bad]} U must be > 0")
        for a in (pos, d, sk):
            a.flags.writeable = False
        object.__setattr__(self, "positions_mm", pos)
        object.__setattr__(self, "directions", d)
        object.__setattr__(self, "sk_u", sk)

    @classmethod
    def from_apparent_activity(
        cls,
        positions_mm: np.ndarray | Sequence[Sequence[float]],
        activity_mci: np.ndarray | Sequence[float] | float,
        directions: np.ndarray | Sequence[Sequence[float]] | None = None,
        *,
        normalize: bool = False,
    ) -> Seeds:
        """Seeds whose strength is given as apparent I-125 activity in mCi (1.270 U/mCi)."""
        return cls(
            positions_mm,
            apparent_mci_to_u(np.asarray(activity_mci, dtype=np.float64)),
            directions,
            normalize=normalize,
        )

    def __len__(self) -> int:
        return int(self.positions_mm.shape[0])

    def subset(self, index: np.ndarray | Sequence[int] | slice) -> Seeds:
        """The seeds selected by ``index`` (a numpy index)."""
        return Seeds(self.positions_mm[index], self.sk_u[index], self.directions[index])
