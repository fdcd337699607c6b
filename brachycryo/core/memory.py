"""A memory budget: grids and samplings too large to compute are refused before allocating.

A corrupt or absurd input (PixelSpacing 1e-9 mm, a seed at 1e30 mm, a 1 m structure box
sampled at a 1 µm dose spacing) can ask for arrays of exabytes.  Without a check numpy
raises ``MemoryError`` or ``ValueError: array is too big`` — or, worse, succeeds in
allocating tens of GiB and the machine swaps.  Code that sizes an array from input
geometry calls :func:`check_allocation` first; beyond the budget it raises
:class:`MemoryBudgetError`, which says the size and what asked for it (and, where the
caller knows them, the input files).

The budget is a fixed figure, not a fraction of the machine's RAM, so that whether an
input is accepted does not depend on the machine (results are deterministic):
:data:`DEFAULT_MEMORY_BUDGET_GIB` GiB per array, or the value of the environment variable
:data:`MEMORY_BUDGET_ENV` (GiB, a positive number).
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable
from os import PathLike

from brachycryo.core.errors import BrachyCryoError, ConfigError

#: Environment variable that sets the budget (GiB per array).
MEMORY_BUDGET_ENV = "BRACHYCRYO_MEMORY_BUDGET_GIB"
#: Budget (GiB) of one array when the environment variable is not set.  The largest arrays of
#: ordinary work are far smaller: a 512 x 512 x 300 CT dose grid in float64 is 0.6 GiB.
DEFAULT_MEMORY_BUDGET_GIB = 4.0

_GIB = 2.0**30


class MemoryBudgetError(BrachyCryoError):
    """An array sized from the input would exceed the memory budget; nothing was allocated."""

    def __init__(self, what: str, n_bytes: float, budget_bytes: float, *, files: str = ""):
        self.what = what
        self.n_bytes = float(n_bytes)
        self.budget_bytes = float(budget_bytes)
        self.files = files
        where = f"[{files}] " if files else ""
        super().__init__(
            f"{where}{what} would need {_format_bytes(self.n_bytes)}, more than the memory "
            f"budget of {_format_bytes(self.budget_bytes)} (environment variable "
            f"{MEMORY_BUDGET_ENV}); the input's geometry (spacing, extent, coordinates) is "
            "probably wrong"
        )

    def naming(self, *paths: str | PathLike | None) -> MemoryBudgetError:
        """The same error naming the input files that led to it."""
        files = ", ".join(f"file {p}" for p in paths if p is not None)
        return MemoryBudgetError(self.what, self.n_bytes, self.budget_bytes, files=files)


def _format_bytes(n: float) -> str:
    if not math.isfinite(n):
        return "an unbounded amount of memory"
    if n >= 2.0**50:
        return f"{n / 2.0**50:.3g} PiB"
    return f"{n / _GIB:.3g} GiB"


def memory_budget_bytes() -> float:
    """The budget in bytes (:data:`MEMORY_BUDGET_ENV`, else the default)."""
    text = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    if not text:
        return DEFAULT_MEMORY_BUDGET_GIB * _GIB
    try:
        gib = float(text)
    except ValueError:
        gib = math.nan
    if not (math.isfinite(gib) and gib > 0):
        raise ConfigError(f"must be a positive number of GiB, got {text!r}", key=MEMORY_BUDGET_ENV)
    return gib * _GIB


def check_allocation(shape: Iterable[float], itemsize: int, what: str) -> None:
    """Raise :class:`MemoryBudgetError` if an array of ``shape`` x ``itemsize`` bytes is over
    the budget (or has a NaN / infinite / negative extent).

    ``shape`` may hold floats (extents computed from input geometry before rounding): the
    product is taken in floating point, so it cannot overflow.
    """
    n_bytes = float(itemsize)
    for n in shape:
        v = float(n)
        if not math.isfinite(v) or v < 0:
            n_bytes = math.inf
            break
        n_bytes *= v
    budget = memory_budget_bytes()
    if not n_bytes <= budget:
        raise MemoryBudgetError(what, n_bytes, budget)


__all__ = [
    "DEFAULT_MEMORY_BUDGET_GIB",
    "MEMORY_BUDGET_ENV",
    "MemoryBudgetError",
    "check_allocation",
    "memory_budget_bytes",
]
