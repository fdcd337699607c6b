"""Pennes bioheat with phase change on a Grid: probes, vessels, protocols, outputs.

Model (Pennes, J Appl Physiol 1:93, 1948, with the enthalpy form of phase change,
Voller & Swaminathan, Numer Heat Transfer B 19:175, 1991)::

    dH/dt = div(k(T) grad T) + phi(T) [w_b rho_b c_b (T_a - T) + Q_m]

``H`` the volumetric enthalpy, ``phi`` the liquid fraction (perfusion and metabolism are
switched off when frozen); tissue properties from :mod:`brachycryo.cryo_iceball.tissue`.  Boundary
conditions: probe active zones held at the probe temperature of the protocol phase (off
during passive thaw; in the freeze phase of a Robin probe, the surface temperature of the
heat balance below), large vessels held at ``vessel_temp_c`` (heat sinks), and the grid's
outer layer held at the initial temperature (``outer_boundary="fixed"``) or insulated
(``"adiabatic"``).

Time stepping: **explicit** (forward Euler in ``H``) with a checked limit.  ``T(H)`` is
Lipschitz with constant ``1/C_min`` (``C_min`` the smallest volumetric heat capacity, frozen
or unfrozen; the mushy apparent capacity is larger).  Writing the update as
``H_v' = H_v + dt [sum_e a_e (T_e - T_v) + b_v (T_a - T_v) + ...]`` with face conductances
``a_e = k_face/h_e^2 <= k_max/h_e^2`` and perfusion ``b_v``, the update is monotone
(non-decreasing in every ``H``) when

    dt <= C_min,v / (k_max sum_e 1/h_e^2 + w_b rho_b c_b)     for every voxel v,

The sub-voxel probe coupling ``g_v (T_p - T_v)`` of the voxels beside a probe is taken
linearised-implicitly, ``H_v' = H_v + dt R_v / (1 + dt g_v / C_app(T_v))``: its factor
``(1 - dt sum/C)/(1 + dt g_v/C)`` stays non-negative under the same limit, so the stiff
coupling does not shorten the step and the steady state is unchanged.

**Robin probes** (:attr:`~brachycryo.cryo_iceball.probes.ProbeModel.cooling_h_w_m2k` > 0):
the probe's held voxels take, each step, the surface temperature ``T_s`` at which the
cryogen's extraction ``G (T_s - T_c)`` (``G = h pi d L``) equals the conductive load of the
tissue through the probe's faces, ``sum_f c_f (T_f - T_s)`` with the same face
conductances the step uses (``c_f = V k_face / h_f^2``, plus the sub-voxel coupling):

    T_s = (G T_c + sum_f c_f T_f) / (G + sum_f c_f),

evaluated with the temperatures at the start of the previous step (a weighted mean, so
``T_c <= T_s <= max T_f`` and the maximum principle holds; the probe's own heat capacity
is neglected).  ``G -> inf`` gives the Dirichlet surface at ``T_c``.  Where that load
exceeds the probe's extraction capacity ``Q_max``, the surface warms to
``T_s = (sum_f c_f T_f - Q_max) / sum_f c_f``, at which the load is ``Q_max`` (still between
``T_c`` and ``max T_f``).

which gives the discrete maximum principle and hence stability (the positive-coefficient
condition; e.g. LeVeque, *Finite Difference Methods*, 2007, sec. 9.4).  This is exact for
temperature-independent ``k``; with ``k(T)`` a ``safety`` factor (default 0.9) is applied and
every run checks the maximum principle (no voxel colder than the coldest boundary, all
values finite), raising :class:`~brachycryo.core.errors.BrachyCryoError` if it fails.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import numpy as np

from brachycryo.core.backend import resolve_backend
from brachycryo.core.errors import BrachyCryoError, ConfigError, GeometryError
from brachycryo.core.grid import Grid
from brachycryo.core.progress import ProgressCallback, report
from brachycryo.cryo_iceball.probes import Phase, Probe, ProbeRaster, rasterise_probes
from brachycryo.cryo_iceball.tissue import (
    P_CF,
    P_CU,
    P_KF,
    P_KU,
    P_PERF,
    Tissue,
    enthalpy_from_temp,
    kernel_table,
)

SLOT_OUTER = 0
SLOT_VESSEL = 1
SLOT_PROBE0 = 2

DEFAULT_ISOTHERMS_C = (0.0, -20.0, -40.0)


@dataclass(frozen=True)
class BioheatOptions:
    """Solver options (keyword-only construction recommended)."""

    arterial_temp_c: float = 37.0
    vessel_temp_c: float = 37.0
    outer_boundary: str = "fixed"
    safety: float = 0.9
    theta_min: float = 0.1
    record_every_s: float = 10.0
    isotherms_c: tuple[float, ...] = DEFAULT_ISOTHERMS_C
    dtype: str = "float32"
    #: numba backend only: True/False forces the parallel/serial kernels; None chooses by
    #: grid size (on a heavily shared CPU the serial kernels can be faster, see cryo_speed)
    parallel: bool | None = None

    def __post_init__(self) -> None:
        if self.outer_boundary not in ("fixed", "adiabatic"):
            raise ConfigError(
                f"outer_boundary must be 'fixed' or 'adiabatic', got {self.outer_boundary!r}",
                key="outer_boundary",
            )
        if not 0 < self.safety <= 1:
            raise ConfigError(f"safety must be in (0, 1], got {self.safety}", key="safety")
        if self.dtype not in ("float32", "float64"):
            raise ConfigError(f"dtype must be float32 or float64, got {self.dtype}", key="dtype")
        if not self.record_every_s > 0:
            raise ConfigError("record_every_s must be > 0", key="record_every_s")


@dataclass
class BioheatResult:
    """What a bioheat run produces (temperatures in deg C on ``grid``)."""

    grid: Grid
    min_temp_c: np.ndarray
    final_temp_c: np.ndarray
    times_s: np.ndarray
    volume_ml: dict[float, np.ndarray]
    dt_s: float
    n_steps: int
    backend: str
    held_mask: np.ndarray
    extra: dict = field(default_factory=dict)

    def isotherm_mask(self, temp_c: float) -> np.ndarray:
        """Voxels whose minimum temperature reached ``temp_c`` (probe voxels included)."""
        return self.min_temp_c <= temp_c

    def lethal_mask(self, lethal_temp_c: float = -40.0) -> np.ndarray:
        return self.isotherm_mask(lethal_temp_c)


def stable_time_step_s(
    grid: Grid,
    tissue_labels: np.ndarray,
    tissues: Sequence[Tissue],
    *,
    safety: float = 0.9,
) -> float:
    """The largest step satisfying the positive-coefficient condition (module docstring)."""
    table = kernel_table(list(tissues), np.float64)
    kmax = float(np.max(table[:, [P_KF, P_KU]]))
    cmin_t = np.minimum(table[:, P_CF], table[:, P_CU])
    perf_t = table[:, P_PERF]
    # faces per axis of an interior voxel: 2 (1 when the axis has 2 voxels, 0 when 1)
    n_ijk = grid.size_ijk
    faces = sum(min(2, n - 1) / (s * 1e-3) ** 2 for n, s in zip(n_ijk, grid.spacing_mm))
    denom = kmax * faces + perf_t[tissue_labels]
    return float(safety * np.min(cmin_t[tissue_labels] / denom))


def _phase_schedule(phases: Sequence[Phase], dt_max: float) -> list[tuple[Phase, int, float]]:
    out = []
    for ph in phases:
        n = max(1, math.ceil(ph.duration_s / dt_max - 1e-9))
        out.append((ph, n, ph.duration_s / n))
    return out


class _StepKernels(Protocol):
    """What a backend module (``kernels_numpy``, ``kernels_numba``, ``kernels_cuda``) offers."""

    def step(self, state: dict[str, Any], dt: float, arterial_c: float, hold_temp: Any) -> None: ...

    def temperature_only(self, state: dict[str, Any], hold_temp: Any) -> None: ...


def _backend_kernels(name: str) -> _StepKernels:
    """The kernel module of a resolved backend, imported on first use (numba compiles lazily)."""
    if name == "numpy":
        from brachycryo.cryo_iceball import kernels_numpy

        return kernels_numpy
    if name == "numba":
        from brachycryo.cryo_iceball import kernels_numba

        return kernels_numba
    from brachycryo.cryo_iceball import kernels_cuda

    return kernels_cuda


def _array_module(backend: str) -> ModuleType:
    """CuPy for the ``cupy`` backend, else numpy."""
    if backend == "cupy":
        import cupy

        return cupy
    return np


@dataclass(frozen=True)
class _BoundaryLayout:
    """Where the boundary conditions act on the grid.

    ``hold_slot`` (int16): the slot whose temperature holds a voxel (outer layer, vessel,
    probe ``p`` at ``SLOT_PROBE0 + p``), -1 where free.  ``couple_slot`` (int16) and
    ``couple_coef_per_m2``: the sub-voxel probe-surface coupling of the voxels beside a
    probe (:class:`~brachycryo.cryo_iceball.probes.ProbeRaster`).  ``probe_held``: the
    probes' active zones.
    """

    hold_slot: np.ndarray
    couple_slot: np.ndarray
    couple_coef_per_m2: np.ndarray
    probe_held: np.ndarray


@dataclass(frozen=True)
class _StepSchedule:
    """The time steps to run: their lengths and every hold slot's temperature per step.

    ``slot_temp_c`` (n_steps, n_slots) is in the state's dtype, NaN where a boundary is off;
    ``n_steps_full`` counts the whole protocol (``max_steps`` may cut ``dt_s`` shorter).
    """

    dt_s: np.ndarray
    slot_temp_c: np.ndarray
    n_steps_full: int
    #: (n_steps, n_slots) Robin extraction conductance G (W/K) of the slots whose surface
    #: follows the heat balance this step, 0 elsewhere; None when no probe is Robin
    robin_g_w_k: np.ndarray | None = None
    #: (n_slots,) extraction capacity Q_max (W) per slot, inf where unlimited
    robin_cap_w: np.ndarray | None = None


def _checked_tissue_labels(
    grid: Grid, tissue_labels: np.ndarray | None, n_tissues: int
) -> np.ndarray:
    """``tissue_labels`` as int8 (default: all zeros), checked to index the tissues."""
    if tissue_labels is None:
        tissue_labels = np.zeros(grid.shape, dtype=np.int8)
    grid.check_volume(tissue_labels, "tissue_labels")
    tissue_labels = np.asarray(tissue_labels)
    if tissue_labels.min() < 0 or tissue_labels.max() >= n_tissues:
        raise ConfigError(
            f"tissue_labels must index the {n_tissues} tissues given", key="tissue_labels"
        )
    return tissue_labels.astype(np.int8)


def _outer_shell_mask(shape: tuple[int, int, int]) -> np.ndarray:
    """The outer faces of every axis with >= 3 voxels.

    A thinner axis is a symmetry (zero-flux) direction, which gives 1D and 2D problems on a
    3D grid.
    """
    shell = np.zeros(shape, dtype=bool)
    for ax, n in enumerate(shape):
        if n >= 3:
            sl: list[slice | int] = [slice(None)] * 3
            sl[ax] = 0
            shell[tuple(sl)] = True
            sl[ax] = -1
            shell[tuple(sl)] = True
    return shell


def _boundary_layout(
    grid: Grid,
    probes: Sequence[Probe],
    vessel_mask: np.ndarray | None,
    opts: BioheatOptions,
) -> _BoundaryLayout:
    """Rasterise the probes and assign the hold slots of probes, vessels and the outer layer."""
    if probes:
        raster = rasterise_probes(grid, probes, theta_min=opts.theta_min)
    else:
        raster = ProbeRaster(
            held=np.full(grid.shape, -1, dtype=np.int16),
            couple_coef_per_m2=np.zeros(grid.shape),
            couple_probe=np.full(grid.shape, -1, dtype=np.int16),
        )
    hold = np.where(raster.held >= 0, raster.held + SLOT_PROBE0, -1).astype(np.int16)
    if vessel_mask is not None:
        grid.check_volume(vessel_mask, "vessel_mask")
        vm = np.asarray(vessel_mask, dtype=bool)
        if np.any(vm & (hold >= 0)):
            raise GeometryError("a probe's active zone overlaps a vessel")
        hold[vm] = SLOT_VESSEL
    if opts.outer_boundary == "fixed":
        hold[_outer_shell_mask(grid.shape) & (hold < 0)] = SLOT_OUTER
    couple_slot = np.where(raster.couple_probe >= 0, raster.couple_probe + SLOT_PROBE0, -1)
    return _BoundaryLayout(
        hold_slot=hold,
        couple_slot=couple_slot.astype(np.int16),
        couple_coef_per_m2=raster.couple_coef_per_m2,
        probe_held=raster.held >= 0,
    )


def _step_schedule(
    phases: Sequence[Phase],
    probes: Sequence[Probe],
    *,
    dt_max_s: float,
    outer_temp_c: float,
    start_temp_c: float,
    opts: BioheatOptions,
    max_steps: int | None,
    inside_fraction: Sequence[float] | None = None,
) -> _StepSchedule:
    """Every step of the protocol (stable lengths) with its slot temperatures.

    ``inside_fraction[p]``: the share of probe ``p``'s active length inside the grid, which
    scales its Robin conductance and capacity (:func:`active_fraction_inside`)."""
    n_slots = SLOT_PROBE0 + len(probes)
    inside = inside_fraction or [1.0] * len(probes)
    rows = []
    g_rows = []
    for ph, n, dt in _phase_schedule(phases, dt_max_s):
        g_row = np.zeros(n_slots)
        if ph.phase == "freeze":
            for p, probe in enumerate(probes):
                g_row[SLOT_PROBE0 + p] = probe.model.cooling_conductance_w_k() * inside[p]
        for s in range(n):
            row = np.full(n_slots, np.nan)
            row[SLOT_OUTER] = outer_temp_c
            row[SLOT_VESSEL] = opts.vessel_temp_c
            for p, probe in enumerate(probes):
                row[SLOT_PROBE0 + p] = probe.model.boundary_temp_c(ph.phase, s * dt, start_temp_c)
            rows.append((dt, row))
            g_rows.append(g_row)
    n_steps_full = len(rows)
    if max_steps is not None:
        rows = rows[: int(max_steps)]
        g_rows = g_rows[: int(max_steps)]
    robin = np.stack(g_rows) if g_rows and any(p.model.is_robin for p in probes) else None
    cap = np.full(n_slots, np.inf)
    for p, probe in enumerate(probes):
        cap[SLOT_PROBE0 + p] = probe.model.max_extraction_w * inside[p]
    return _StepSchedule(
        dt_s=np.array([d for d, _ in rows]),
        slot_temp_c=np.stack([r for _, r in rows]).astype(np.dtype(opts.dtype)),
        n_steps_full=n_steps_full,
        robin_g_w_k=robin,
        robin_cap_w=cap,
    )


def active_fraction_inside(grid: Grid, probe: Probe) -> float:
    """Share of ``probe``'s active segment inside the grid's box (voxel faces included).

    Only that part cools the simulated tissue, so a Robin probe's conductance ``h pi d L``
    and capacity are scaled by it.  On a section one voxel thick (a symmetry direction)
    this makes a long probe's extraction per unit length right.  (Liang-Barsky clipping in
    index coordinates.)
    """
    a, b = (np.asarray(x, dtype=float) for x in probe.active_segment_mm())
    ia, ib = grid.mm_to_ijk(a), grid.mm_to_ijk(b)
    lo, hi = -0.5, np.asarray(grid.size_ijk, dtype=float) - 0.5
    t0, t1 = 0.0, 1.0
    d = ib - ia
    for ax in range(3):
        if abs(d[ax]) < 1e-12:
            if not lo <= ia[ax] <= hi[ax]:
                return 0.0
            continue
        u0, u1 = sorted(((lo - ia[ax]) / d[ax], (hi[ax] - ia[ax]) / d[ax]))
        t0, t1 = max(t0, u0), min(t1, u1)
    return max(0.0, t1 - t0)


@dataclass(frozen=True)
class _ProbeFaces:
    """The faces between free voxels and probe voxels, for the Robin heat balance.

    Entry ``e``: free voxel ``free_index[e]`` (flat), probe voxel ``probe_index[e]`` (flat,
    whose conductivity enters the face average), hold slot ``slot[e]`` and geometric weight
    ``weight_m3_per_m2[e]`` = voxel volume x (``1/h^2`` of the face, or the sub-voxel
    coupling coefficient), so that the face conductance is ``weight * k_face`` (W/K).
    """

    free_index: Any
    probe_index: Any
    slot: Any
    weight_m3_per_m2: Any
    n_slots: int

    def surface_temp_c(self, state: dict[str, Any], g_w_k: Any, cryogen_c: Any, cap_w: Any) -> Any:
        """``(G T_c + sum c T_f) / (G + sum c)`` per slot, from ``state``'s temp and cond;
        ``(sum c T_f - Q_max) / sum c`` where the load would exceed ``cap_w``."""
        xp = _array_module("cupy") if type(state["temp"]).__module__.startswith("cupy") else np
        temp = state["temp"].reshape(-1)
        cond = state["cond"].reshape(-1)
        c = self.weight_m3_per_m2 * 0.5 * (cond[self.free_index] + cond[self.probe_index])
        load = xp.bincount(self.slot, weights=c * temp[self.free_index], minlength=self.n_slots)
        cond_sum = xp.bincount(self.slot, weights=c, minlength=self.n_slots)
        with np.errstate(invalid="ignore", divide="ignore"):  # 0/0 in slots without faces
            robin = (g_w_k * cryogen_c + load) / (g_w_k + cond_sum)
            capped = (load - cap_w) / cond_sum
        return xp.where(load - cond_sum * robin > cap_w, capped, robin)


def _probe_faces(grid: Grid, layout: _BoundaryLayout, n_slots: int, xp: ModuleType) -> _ProbeFaces:
    """Every face between a free voxel and a probe voxel (:class:`_ProbeFaces`)."""
    hold = layout.hold_slot
    flat = np.arange(hold.size).reshape(hold.shape)
    vol_m3 = grid.voxel_volume_mm3 * 1e-9
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
    for ax in range(3):
        inv_h2 = 1.0 / (grid.spacing_mm[2 - ax] * 1e-3) ** 2
        n = hold.shape[ax]
        for lo, hi in ((slice(0, n - 1), slice(1, n)), (slice(1, n), slice(0, n - 1))):
            a = [slice(None)] * 3
            b = [slice(None)] * 3
            a[ax], b[ax] = lo, hi  # a: the free voxel, b: its neighbour
            ha, hb = hold[tuple(a)], hold[tuple(b)]
            m = (ha < 0) & (hb >= SLOT_PROBE0)
            parts.append(
                (flat[tuple(a)][m], flat[tuple(b)][m], hb[m], np.full(m.sum(), vol_m3 * inv_h2))
            )
    free, probe, slot, w = (np.concatenate([p[i] for p in parts]) for i in range(4))
    # the sub-voxel coupling of each coupled voxel, paired with one of its probe faces
    coupled = np.flatnonzero((layout.couple_slot.reshape(-1) >= 0) & (hold.reshape(-1) < 0))
    couple_slot = layout.couple_slot.reshape(-1)
    first = {(int(v), int(sl)): n for n, (v, sl) in reversed(list(enumerate(zip(free, slot))))}
    keys = [(int(v), int(couple_slot[v])) for v in coupled]
    pick = np.array([first[k] for k in keys if k in first], dtype=np.int64)
    coupled = np.array([k[0] for k in keys if k in first], dtype=np.int64)
    if len(coupled):
        free = np.concatenate([free, coupled])
        probe = np.concatenate([probe, probe[pick]])
        slot = np.concatenate([slot, slot[pick]])
        w = np.concatenate([w, layout.couple_coef_per_m2.reshape(-1)[coupled] * vol_m3])
    return _ProbeFaces(
        free_index=xp.asarray(free.astype(np.int64)),
        probe_index=xp.asarray(probe.astype(np.int64)),
        slot=xp.asarray(slot.astype(np.int64)),
        weight_m3_per_m2=xp.asarray(w),
        n_slots=n_slots,
    )


def _solver_state(
    grid: Grid,
    layout: _BoundaryLayout,
    tissue_labels: np.ndarray,
    table64: np.ndarray,
    h0: np.ndarray,
    opts: BioheatOptions,
    xp: ModuleType,
) -> dict[str, Any]:
    """The kernels' arrays (on the device for CuPy), in the options' dtype.

    Keys as the kernel modules read them: ``h`` (enthalpy), ``tissue``, ``params``, ``hold``,
    ``couple_coef``, ``couple_slot``, ``temp``, ``cond``, ``tmin``, ``inv_h2`` (per index
    axis k, j, i, 1/m^2) and ``parallel`` (numba only).
    """
    dtype = np.dtype(opts.dtype)
    state: dict[str, Any] = {
        "h": xp.asarray(h0.astype(dtype)),
        "tissue": xp.asarray(tissue_labels),
        "params": xp.asarray(table64.astype(dtype)),
        "hold": xp.asarray(layout.hold_slot),
        "couple_coef": xp.asarray(layout.couple_coef_per_m2.astype(dtype)),
        "couple_slot": xp.asarray(layout.couple_slot),
        "temp": xp.zeros(grid.shape, dtype=dtype),
        "cond": xp.zeros(grid.shape, dtype=dtype),
        "tmin": xp.full(grid.shape, np.inf, dtype=dtype),
        "inv_h2": xp.asarray(
            np.array([1.0 / (grid.spacing_mm[a] * 1e-3) ** 2 for a in (2, 1, 0)], dtype=dtype)
        ),
    }
    state["parallel"] = opts.parallel
    return state


class _IsothermLog:
    """Isotherm volumes over time; every record also checks the maximum principle."""

    def __init__(
        self, isotherms_c: Sequence[float], *, voxel_ml: float, coldest_c: float, xp: ModuleType
    ) -> None:
        self.isotherms_c = tuple(float(t) for t in isotherms_c)
        self.voxel_ml = voxel_ml
        self.coldest_c = coldest_c
        self.xp = xp
        self.times_s: list[float] = []
        self.volume_ml: dict[float, list[float]] = {t: [] for t in self.isotherms_c}

    def record(self, t_s: float, temp: Any) -> None:
        """Log the volumes inside each isotherm at ``t_s``; raise if the step went unstable."""
        self.times_s.append(t_s)
        for iso in self.isotherms_c:
            self.volume_ml[iso].append(float(self.xp.count_nonzero(temp <= iso)) * self.voxel_ml)
        lo = float(temp.min())
        coldest = self.coldest_c
        if not math.isfinite(lo) or lo < coldest - 1e-2 * max(1.0, abs(coldest)):
            raise BrachyCryoError(
                f"bioheat step went unstable at t = {t_s:.1f} s (T_min = {lo} C below the "
                f"coldest boundary {coldest} C); reduce options.safety"
            )


def _run_steps(
    kernels: _StepKernels,
    state: dict[str, Any],
    schedule: _StepSchedule,
    slot_temp_dev: Any,
    *,
    arterial_temp_c: float,
    record_every_s: float,
    log: _IsothermLog,
    progress: ProgressCallback | None,
    faces: _ProbeFaces | None = None,
) -> None:
    """The time loop: one kernel step per scheduled step, recording every ``record_every_s``.

    With Robin probes (``faces`` and ``schedule.robin_g_w_k``), each step's surface
    temperatures are first set from the heat balance (module docstring) and written into
    ``slot_temp_dev``.  Ends with the final temperatures (the last step's boundary values)
    recorded.
    """
    n_total = len(schedule.dt_s)
    t_now, next_rec = 0.0, 0.0
    g = schedule.robin_g_w_k
    cap = log.xp.asarray(schedule.robin_cap_w) if schedule.robin_cap_w is not None else None
    if faces is not None and g is not None and n_total:
        # temperatures of the initial state, the probes' voxels included (slots off)
        first = slot_temp_dev[0].copy()
        first[log.xp.asarray(np.flatnonzero(g[0] > 0))] = np.nan
        kernels.temperature_only(state, first)
    xp = log.xp
    for n in range(n_total):
        if faces is not None and g is not None and g[n].any():
            on = np.flatnonzero(g[n] > 0)
            row = slot_temp_dev[n]
            ts = faces.surface_temp_c(state, xp.asarray(g[n]), row.astype(np.float64), cap)
            row[xp.asarray(on)] = ts[xp.asarray(on)].astype(row.dtype)
        kernels.step(state, float(schedule.dt_s[n]), float(arterial_temp_c), slot_temp_dev[n])
        if t_now >= next_rec - 1e-9:
            log.record(t_now, state["temp"])
            next_rec += record_every_s
            report(progress, (n + 1) / n_total, f"t = {t_now:.0f} s")
        t_now += float(schedule.dt_s[n])
    if n_total:
        last = slot_temp_dev[n_total - 1]
    else:
        n_slots = schedule.slot_temp_c.shape[1]
        last = log.xp.asarray(np.full(n_slots, np.nan, dtype=schedule.slot_temp_c.dtype))
    kernels.temperature_only(state, last)
    log.record(t_now, state["temp"])  # (its device-to-host copy also waits for a GPU to finish)


def simulate(
    grid: Grid,
    probes: Sequence[Probe],
    phases: Sequence[Phase],
    *,
    tissues: Sequence[Tissue],
    tissue_labels: np.ndarray | None = None,
    initial_temp_c: float | np.ndarray = 37.0,
    vessel_mask: np.ndarray | None = None,
    backend: str = "auto",
    options: BioheatOptions | None = None,
    max_steps: int | None = None,
    progress: ProgressCallback | None = None,
) -> BioheatResult:
    """Run the protocol ``phases`` with ``probes`` on ``grid``.

    ``tissue_labels`` (int, grid shape) indexes ``tissues`` (default: all voxels are
    ``tissues[0]``).  ``max_steps`` stops early (benchmarks time a part of a run).
    """
    opts = options or BioheatOptions()
    be = resolve_backend(backend)
    # Any orientation works: Grid guarantees an orthonormal direction matrix, so the
    # finite-difference operator (spacing per index axis) is the same in the rotated frame,
    # and probes and vessels are rasterised in patient coordinates (an oblique CT's grid
    # is simulated as it is, without resampling onto an axis-aligned one).
    if not phases:
        raise ConfigError("the protocol has no phase", key="protocol")
    if not probes and vessel_mask is None:
        raise ConfigError("no probe given", key="probe")
    tissues = list(tissues)
    labels = _checked_tissue_labels(grid, tissue_labels, len(tissues))
    layout = _boundary_layout(grid, probes, vessel_mask, opts)
    hold = layout.hold_slot

    init = np.broadcast_to(np.asarray(initial_temp_c, dtype=float), grid.shape)
    outer_temp = float(np.mean(init[hold == SLOT_OUTER])) if np.any(hold == SLOT_OUTER) else 37.0
    table64 = kernel_table(tissues, np.float64)
    h0 = enthalpy_from_temp(init, table64[labels])
    dt_max = stable_time_step_s(grid, labels, tissues, safety=opts.safety)
    schedule = _step_schedule(
        phases,
        probes,
        dt_max_s=dt_max,
        outer_temp_c=outer_temp,
        start_temp_c=float(np.mean(init)),
        opts=opts,
        max_steps=max_steps,
        inside_fraction=[active_fraction_inside(grid, p) for p in probes],
    )
    coldest = float(np.nanmin(np.concatenate([schedule.slot_temp_c.ravel(), init.ravel()])))

    xp = _array_module(be)
    state = _solver_state(grid, layout, labels, table64, h0, opts, xp)
    log = _IsothermLog(
        opts.isotherms_c, voxel_ml=grid.voxel_volume_mm3 * 1e-3, coldest_c=coldest, xp=xp
    )
    slot_temp_dev = xp.asarray(schedule.slot_temp_c)
    kernels = _backend_kernels(be)
    faces = (
        _probe_faces(grid, layout, schedule.slot_temp_c.shape[1], xp)
        if schedule.robin_g_w_k is not None
        else None
    )
    t_loop = time.perf_counter()
    _run_steps(
        kernels,
        state,
        schedule,
        slot_temp_dev,
        arterial_temp_c=opts.arterial_temp_c,
        record_every_s=opts.record_every_s,
        log=log,
        progress=progress,
        faces=faces,
    )
    loop_s = time.perf_counter() - t_loop
    report(progress, 1.0, "done")

    def host(a: Any) -> np.ndarray:
        return a.get() if be == "cupy" else np.array(a)

    dts = schedule.dt_s
    extra: dict[str, Any] = {}
    if faces is not None:
        # each probe's surface temperature per step (the Robin balance in its freeze phases)
        extra["probe_surface_temp_c"] = host(slot_temp_dev)[:, SLOT_PROBE0:].astype(float)
        extra["step_start_s"] = np.concatenate([[0.0], np.cumsum(dts)[:-1]])
    return BioheatResult(
        grid=grid,
        min_temp_c=host(state["tmin"]),
        final_temp_c=host(state["temp"]),
        times_s=np.asarray(log.times_s),
        volume_ml={t: np.asarray(v) for t, v in log.volume_ml.items()},
        dt_s=float(dts.max()) if len(dts) else 0.0,
        n_steps=len(dts),
        backend=be,
        held_mask=layout.probe_held,
        extra={
            "dt_max_s": dt_max,
            "coldest_boundary_c": coldest,
            "n_steps_full": schedule.n_steps_full,
            "loop_s": loop_s,
            **extra,
        },
    )
