"""TG-43U1 dose calculation for I-125 seeds (numpy reference, numba CPU, CUDA GPU).

Public API::

    from brachycryo.core.seeds import Seeds
    from brachycryo.dose_kernels import load_seed_model, dose_on_grid, dose_at_points
    dose_gy = dose_on_grid(Seeds(pos_mm, sk_u, dirs), grid, "6711", backend="auto")

Importing this package compiles nothing (numba kernels are built on first use).
"""

from brachycryo.dose_kernels.dose import dose_at_points, dose_between, dose_on_grid, time_factor_h
from brachycryo.dose_kernels.influence import influence_matrix
from brachycryo.dose_kernels.kernel_tables import DEFAULT_MIN_DISTANCE_MM
from brachycryo.dose_kernels.seed_model import (
    SeedModel,
    list_seed_models,
    load_seed_model,
    read_seed_model,
)

__all__ = [
    "DEFAULT_MIN_DISTANCE_MM",
    "SeedModel",
    "dose_at_points",
    "dose_between",
    "dose_on_grid",
    "influence_matrix",
    "list_seed_models",
    "load_seed_model",
    "read_seed_model",
    "time_factor_h",
]
