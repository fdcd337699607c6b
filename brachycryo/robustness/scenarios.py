"""Scenario-based robustness of a seed implant to needle placement error.

Each scenario draws the errors of :mod:`brachycryo.robustness.error_model` (seeded numpy
Generator: the same scenarios on every run), moves the seeds, and recomputes the TG-43 dose
(:func:`brachycryo.dose_kernels.dose_at_points`, by seed superposition, at the sample
points of every zone and OAR at once, on the chosen backend).  Per zone and scenario: D90
and V100 of the point-sample DVH (:func:`brachycryo.qa.dvh.dvh_from_samples`, metrics by
:func:`brachycryo.qa.metrics.metric_value`) and the cumulative DVH on a fixed dose axis;
per OAR limit the limit's metric.  Summaries: P(D90 ≥ Rx), P(V100 ≥ 90 %), the 5/50/95 %
percentiles (``numpy.percentile``, linear) of D90, V100 and of the DVH at each dose, and per
limit P(met) and the 95th percentile; the nominal plan (no error) beside them.  The
scenario approach follows robust evaluation in HDR brachytherapy (RobustBrachy; Kennedy et
al.), here with needle-level correlated errors of LDR seed implants.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brachycryo.core.progress import ProgressCallback, report
from brachycryo.core.seeds import Seeds
from brachycryo.robustness.error_model import ErrorModel, perturb_seeds, sample_needle_errors
from brachycryo.robustness.plan_folder import PlanInputs, SampledStructure

__all__ = [
    "LimitRobustness",
    "RobustOptions",
    "RobustResult",
    "ZoneRobustness",
    "evaluate_robustness",
]

#: DVH bin width (Gy) for the per-scenario metrics: 0.1 Gy (well under 0.1 % of a 110+ Gy
#: prescription), coarsened by powers of ten for structures hotter than MAX_BINS bins
#: (3 x the nominal Dmax: 10,000 Gy next to a seed still gets 0.1 Gy bins).
BIN_WIDTH_GY = 0.1
MAX_BINS = 100_000
#: Points of the DVH band's dose axis.
DVH_AXIS_POINTS = 241
#: Coverage goal of the V100 probability (% of the zone).
V100_GOAL_PCT = 90.0


@dataclass(frozen=True)
class RobustOptions:
    """How many scenarios, their random seed, the dose backend, bands and worst cases."""

    n_scenarios: int = 1000
    seed: int = 0
    backend: str = "auto"
    percentiles: tuple[float, float, float] = (5.0, 50.0, 95.0)
    n_worst: int = 5


@dataclass(frozen=True)
class ZoneRobustness:
    name: str
    prescription_gy: float
    nominal_d90_gy: float
    nominal_v100_pct: float
    d90_gy: np.ndarray  # (n_scenarios,)
    v100_pct: np.ndarray
    dvh_dose_gy: np.ndarray  # (n_axis,)
    dvh_nominal_pct: np.ndarray  # (n_axis,)
    dvh_bands_pct: np.ndarray  # (3, n_axis) at the option's percentiles
    bin_width_gy: float  # of the DVHs the metrics are read from

    @property
    def p_d90(self) -> float:
        return float(np.mean(self.d90_gy >= self.prescription_gy))

    @property
    def p_v100(self) -> float:
        return float(np.mean(self.v100_pct >= V100_GOAL_PCT))


@dataclass(frozen=True)
class LimitRobustness:
    roi: str
    metric: str
    limit: float
    nominal: float
    values: np.ndarray  # (n_scenarios,)
    dvh_dose_gy: np.ndarray
    dvh_nominal_pct: np.ndarray
    dvh_bands_pct: np.ndarray
    bin_width_gy: float

    @property
    def p_met(self) -> float:
        return float(np.mean(self.values <= self.limit))

    @property
    def p95(self) -> float:
        return float(np.percentile(self.values, 95.0))


@dataclass(frozen=True)
class WorstScenario:
    """A scenario with the lowest D90/Rx of any zone, and its needles by tip displacement."""

    index: int
    worst_zone: str
    d90_over_rx: float
    needle_ids: tuple[int, ...]  # all needles, most displaced first
    tip_displacement_mm: tuple[float, ...]
    lost_seeds: int
    #: every needle (in PlanInputs order): planned entry and deepest seed, and moved
    entry_planned_mm: np.ndarray
    tip_planned_mm: np.ndarray
    entry_moved_mm: np.ndarray
    tip_moved_mm: np.ndarray


@dataclass(frozen=True)
class RobustResult:
    model: ErrorModel
    options: RobustOptions
    n_seeds: int
    n_needles: int
    zones: tuple[ZoneRobustness, ...]
    limits: tuple[LimitRobustness, ...]
    worst: tuple[WorstScenario, ...]
    tip_error_mm: tuple[float, float]  # mean, SD of the deepest seeds' displacement


def _bin_width(dmax_gy: float) -> float:
    w = BIN_WIDTH_GY
    while dmax_gy / w > MAX_BINS:
        w *= 10.0
    return w


def _dvh_metrics(dose: np.ndarray, s: SampledStructure, metrics, rx: float | None, width: float):
    from brachycryo.qa.dvh import dvh_from_samples
    from brachycryo.qa.metrics import metric_value

    dvh = dvh_from_samples(dose, s.point_cc, bin_width_gy=width, name=s.name)
    return [metric_value(dvh, m, prescription_gy=rx) for m in metrics]


def _cumulative_pct(dose: np.ndarray, cc: np.ndarray, axis_gy: np.ndarray) -> np.ndarray:
    """% of the volume receiving at least each dose of ``axis_gy`` (point-mass DVH)."""
    order = np.argsort(dose, kind="stable")
    tail = np.concatenate([np.cumsum(cc[order][::-1])[::-1], [0.0]])
    return 100.0 * tail[np.searchsorted(dose[order], axis_gy, side="left")] / cc.sum()


@dataclass
class _Accumulator:
    """Per-structure per-scenario values, filled scenario by scenario."""

    structure: SampledStructure
    offset: int
    metrics: tuple[str, ...]
    rx: float | None
    axis_gy: np.ndarray
    width_gy: float
    values: np.ndarray  # (n_scenarios, n_metrics)
    curves: np.ndarray  # (n_scenarios, n_axis)

    def add(self, i: int, dose_all: np.ndarray) -> None:
        n = self.structure.points_mm.shape[0]
        dose = dose_all[self.offset : self.offset + n]
        self.values[i] = _dvh_metrics(dose, self.structure, self.metrics, self.rx, self.width_gy)
        self.curves[i] = _cumulative_pct(dose, self.structure.point_cc, self.axis_gy)


def _dose(seeds: Seeds, kept: np.ndarray, points: np.ndarray, model: str, backend: str):
    from brachycryo.dose_kernels import dose_at_points

    if not kept.any():
        return np.zeros(points.shape[0])
    return dose_at_points(seeds.subset(kept), points, model, backend=backend)


def _accumulators(inputs: PlanInputs, nominal: np.ndarray, n: int) -> list[_Accumulator]:
    out, offset = [], 0
    for s, rx in zip(inputs.zones, inputs.zone_prescription_gy):
        axis = np.linspace(0.0, 3.0 * rx, DVH_AXIS_POINTS)
        dmax = float(nominal[offset : offset + len(s.point_cc)].max())
        out.append(
            _Accumulator(
                s,
                offset,
                ("D90", "V100"),
                rx,
                axis,
                _bin_width(3 * dmax),
                np.empty((n, 2)),
                np.empty((n, axis.size)),
            )
        )
        offset += len(s.point_cc)
    for name, s in inputs.oars.items():
        metrics = tuple(lim.metric for lim in inputs.limits if lim.roi == name)
        dmax = float(nominal[offset : offset + len(s.point_cc)].max())
        top = 1.5 * max([dmax, 1.0] + [lim.limit for lim in inputs.limits if lim.roi == name])
        axis = np.linspace(0.0, top, DVH_AXIS_POINTS)
        out.append(
            _Accumulator(
                s,
                offset,
                metrics,
                None,
                axis,
                _bin_width(3 * max(dmax, 1.0)),
                np.empty((n, len(metrics))),
                np.empty((n, axis.size)),
            )
        )
        offset += len(s.point_cc)
    return out


def _all_points(inputs: PlanInputs) -> np.ndarray:
    parts = [s.points_mm for s in inputs.zones] + [s.points_mm for s in inputs.oars.values()]
    return np.concatenate(parts, axis=0)


def _deepest_seed(inputs: PlanInputs) -> np.ndarray:
    """Index of each needle's deepest seed (its tip, as far as the dose is concerned)."""
    pos, e = inputs.seeds.positions_mm, inputs.needle_entry_mm[inputs.seed_needle]
    depth = np.sum((pos - e) * inputs.needle_direction[inputs.seed_needle], axis=1)
    out = np.empty(len(inputs.needle_ids), dtype=int)
    for k in range(len(inputs.needle_ids)):
        mine = np.nonzero(inputs.seed_needle == k)[0]
        out[k] = mine[np.argmax(depth[mine])]
    return out


def evaluate_robustness(
    inputs: PlanInputs,
    model: ErrorModel,
    options: RobustOptions = RobustOptions(),
    *,
    progress: ProgressCallback | None = None,
) -> RobustResult:
    """Run ``options.n_scenarios`` scenarios of ``model`` on the plan (module docstring)."""
    from brachycryo.core.errors import ConfigError

    n = int(options.n_scenarios)
    if n < 1:
        raise ConfigError(f"the number of scenarios must be >= 1, got {n}", key="--scenarios")
    points = _all_points(inputs)
    seeds = inputs.seeds
    all_kept = np.ones(len(seeds), dtype=bool)
    nominal = _dose(seeds, all_kept, points, inputs.seed_model, options.backend)
    acc = _accumulators(inputs, nominal, n + 1)
    for a in acc:
        a.add(n, nominal)  # the last row: the nominal plan
    rng = np.random.default_rng(options.seed)
    deepest = _deepest_seed(inputs)
    tips = np.empty((n, len(deepest)))
    moved = np.empty((n, 2, len(deepest), 3))  # entry, deepest seed
    fixed = np.asarray(model.fixed_shift_mm, dtype=float)
    lost = np.empty(n, dtype=int)
    for i in range(n):
        err = sample_needle_errors(model, inputs.needle_direction, len(seeds), rng)
        pos, axes, kept = perturb_seeds(
            err,
            model,
            inputs.needle_entry_mm,
            inputs.needle_direction,
            inputs.seed_needle,
            seeds.positions_mm,
            seeds.directions,
        )
        tips[i] = np.linalg.norm(pos[deepest] - seeds.positions_mm[deepest], axis=1)
        moved[i, 0] = inputs.needle_entry_mm + err.entry_offset_mm + err.shift_mm + fixed
        moved[i, 1] = pos[deepest]
        lost[i] = int((~kept).sum())
        dose = _dose(
            Seeds(pos, seeds.sk_u, axes, normalize=True),
            kept,
            points,
            inputs.seed_model,
            options.backend,
        )
        for a in acc:
            a.add(i, dose)
        report(progress, (i + 1) / n, f"scenario {i + 1}/{n}")
    return _summarise(inputs, model, options, acc, (tips, moved, lost))


def _bands(curves: np.ndarray, pcts) -> np.ndarray:
    return np.percentile(curves, list(pcts), axis=0)


def _summarise(inputs, model, options, acc, needles) -> RobustResult:
    tips, moved, lost = needles
    n = options.n_scenarios
    tip_planned = inputs.seeds.positions_mm[_deepest_seed(inputs)]
    n_zones = len(inputs.zones)
    zones = []
    for a in acc[:n_zones]:
        zones.append(
            ZoneRobustness(
                a.structure.name,
                float(a.rx),
                float(a.values[n, 0]),
                float(a.values[n, 1]),
                a.values[:n, 0].copy(),
                a.values[:n, 1].copy(),
                a.axis_gy,
                a.curves[n].copy(),
                _bands(a.curves[:n], options.percentiles),
                a.width_gy,
            )
        )
    limits = []
    for a in acc[n_zones:]:
        for j, metric in enumerate(a.metrics):
            lim = next(x for x in inputs.limits if x.roi == a.structure.name and x.metric == metric)
            limits.append(
                LimitRobustness(
                    lim.roi,
                    metric,
                    lim.limit,
                    float(a.values[n, j]),
                    a.values[:n, j].copy(),
                    a.axis_gy,
                    a.curves[n].copy(),
                    _bands(a.curves[:n], options.percentiles),
                    a.width_gy,
                )
            )
    ratio = np.stack([z.d90_gy / z.prescription_gy for z in zones], axis=1)  # (n, zones)
    worst_zone = np.argmin(ratio, axis=1)
    score = ratio[np.arange(n), worst_zone]
    worst = []
    for i in np.argsort(score, kind="stable")[: options.n_worst]:
        order = np.argsort(-tips[i], kind="stable")
        worst.append(
            WorstScenario(
                int(i),
                zones[int(worst_zone[i])].name,
                float(score[i]),
                tuple(int(inputs.needle_ids[k]) for k in order),
                tuple(float(tips[i, k]) for k in order),
                int(lost[i]),
                inputs.needle_entry_mm,
                tip_planned,
                moved[i, 0],
                moved[i, 1],
            )
        )
    return RobustResult(
        model,
        options,
        len(inputs.seeds),
        len(inputs.needle_ids),
        tuple(zones),
        tuple(limits),
        tuple(worst),
        (float(tips.mean()), float(tips.std())),
    )
