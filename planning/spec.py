"""The plan specification: a TOML file read into frozen, validated dataclasses.

Every value is checked when the file is read; an error names the key (``lesion[0].margin_mm``)
and says why.  Unknown keys are errors too (a typo must not silently fall back to a default).
Paths are relative to the TOML file's folder.  Example (see ``planning/examples/``)::

    [case.phantom]             # or: [case] ct = "CT/", rtstruct = "RS.dcm"
    seed = 0
    site = "abdomen"
    extra_metastases = 0       # up to 12 more small nodules GTV_Met3, GTV_Met4, ...

    # [case] implanted_plan = "RP.postimplant.dcm"   # seeds already implanted: fixed
    #                          # sources, probes kept [cryo] seed_clearance_mm from them

    [prescription]
    dose_gy = 120.0            # matched peripheral dose, Gy
    seed_model = "6711"
    sk_u = 0.635               # or activity_mci = 0.5 (1 mCi apparent = 1.270 U)
    add_seeds = true           # plan seeds (default; false with an implanted_plan)

    [[lesion]]
    roi = "GTV_Bulky"
    allocation = "zoned"       # "seeds" | "cryo" | "zoned"
    margin_mm = 10.0           # seed target = GTV + margin, clipped to BODY, off OARs
    core = "cryo"              # core = lethal zone of the cryo plan, or "margin"
    core_margin_mm = 10.0      # with core = "margin": the GTV shrunk by this much
    v150_max_pct = 60.0        # hot-spot goals of this lesion (default: the plan's [goals])

    [[oar]]
    roi = "SpinalCord"
    dmax_gy = 45.0             # also d0_1cc_gy, d2cc_gy, and [[oar.v]] dose_gy / max_cc

    [needles]
    mode = "template"          # parallel needles through a template grid
    spacing_mm = 10.0
    direction = [0.0, 1.0, 0.0]
    seed_spacing_mm = 10.0
    max_needles = 40
    no_go = ["Vertebra", "Aorta", "SpinalCord", "Bowel"]

    [goals]                    # hot-spot goals of every seed target, reported pass/fail
    v150_max_pct = 60.0
    v200_max_pct = 20.0

    [optimizer]                # work limits only: the plan is the same on any machine
    max_wall_s = 600.0         # optional safety net: past it the run fails (exit 4)
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from brachycryo.core.errors import ConfigError
from brachycryo.planning.milp import MILP_NODE_LIMIT
from brachycryo.planning.optimize import LP_MAX_ITERATIONS

ALLOCATIONS = ("seeds", "cryo", "zoned")
U_PER_MCI_I125 = 1.270  # apparent activity of I-125: 1 mCi = 1.270 U (TG-43, 1995)

#: A 3-vector (x, y, z) in patient coordinates (LPS): a spacing in mm or a direction.
Vec3 = tuple[float, float, float]


@dataclass(frozen=True)
class PhantomCaseSpec:
    seed: int = 0
    site: str = "abdomen"
    spacing_mm: Vec3 = (2.0, 2.0, 2.0)
    extra_metastases: int = 0


@dataclass(frozen=True)
class CaseSpec:
    ct: Path | None = None
    rtstruct: Path | None = None
    phantom: PhantomCaseSpec | None = None
    #: RTPLAN of seeds already in the patient (the sequential seeds-then-cryo arm,
    #: :mod:`brachycryo.planning.implanted`); relative paths from the spec's folder
    implanted_plan: Path | None = None


@dataclass(frozen=True)
class HighRiskZone:
    roi: str
    prescription_gy: float


@dataclass(frozen=True)
class LesionSpec:
    roi: str
    allocation: str
    margin_mm: float = 10.0
    core: str = "cryo"
    core_margin_mm: float = 10.0
    prescription_gy: float | None = None
    high_risk: tuple[HighRiskZone, ...] = ()
    needle_direction: Vec3 | None = None
    v150_max_pct: float | None = None  # hot-spot goals of this lesion; None: the plan's
    v200_max_pct: float | None = None


#: Hot-spot goals of a seed target when the spec sets none: the upper ends of the ranges
#: the Seattle Prostate Institute recommends for I-125 prostate implants (V150 30-60 %,
#: V200 10-20 %; Rev Urol 2004;6 Suppl 4:S37-S48, Table 2).  Goals, reported pass/fail;
#: practice for other sites is institutional, so set them per plan or per lesion.
V150_MAX_PCT = 60.0
V200_MAX_PCT = 20.0


@dataclass(frozen=True)
class HotSpotGoals:
    """Upper goals (% of the seed target) for its V150 and V200, reported pass/fail."""

    v150_max_pct: float = V150_MAX_PCT
    v200_max_pct: float = V200_MAX_PCT


@dataclass(frozen=True)
class VolumeLimit:
    """At most ``max_cc`` cm³ (or ``max_pct`` %) of the OAR may receive ``dose_gy`` or more."""

    dose_gy: float
    max_cc: float | None = None
    max_pct: float | None = None


@dataclass(frozen=True)
class OarLimitTerm:
    """One limit of an OAR, as the optimiser and the plan's metrics use it.

    ``metric`` names it (``dmax``, ``d0.1cc``, ``d2cc``, ``v{dose}gy``); ``kind`` says how
    it is checked: ``"dmax"`` (no dose above ``limit_gy``), ``"dvcc"`` (D_vcc <= limit),
    ``"vx"`` (at most ``volume_cc`` cm³, or ``volume_pct`` % of the OAR, at ``limit_gy`` or
    more).  ``volume_cc`` is 0 for Dmax, 0.1 or 2 for D_vcc, and None for a Vx limit given
    in % (then ``volume_pct`` is set).
    """

    metric: str
    kind: str
    limit_gy: float
    volume_cc: float | None
    volume_pct: float | None = None

    def allowed_cc(self, oar_volume_cc: float) -> float:
        """The volume (cm³) allowed above ``limit_gy`` in an OAR of ``oar_volume_cc``."""
        if self.volume_pct is not None:
            return self.volume_pct / 100.0 * oar_volume_cc
        assert self.volume_cc is not None  # a limit in cm³ when not in %
        return self.volume_cc

    @property
    def dvh_metric(self) -> str:
        """The metric's name for :func:`brachycryo.qa.metrics.metric_value` and the report
        (``Dmax``, ``D0.1cc``, ``D2cc``, ``V20Gy`` in %, ``V20Gy_cc`` in cm³)."""
        if self.kind == "vx":
            return (
                f"V{self.limit_gy:g}Gy_cc" if self.volume_pct is None else f"V{self.limit_gy:g}Gy"
            )
        return _DOSE_METRIC_NAMES[self.metric]

    @property
    def label(self) -> str:
        """The limit's name in ``metrics.json`` (``V20Gy_pct`` for a Vx limit in %)."""
        if self.kind == "vx":
            return f"V{self.limit_gy:g}Gy_{'cc' if self.volume_pct is None else 'pct'}"
        return _DOSE_METRIC_NAMES[self.metric]

    @property
    def reported_limit(self) -> float:
        """The limit in the metric's own unit: Gy, or cm³ / % for a Vx limit."""
        if self.kind != "vx":
            return self.limit_gy
        if self.volume_pct is not None:
            return self.volume_pct
        assert self.volume_cc is not None  # a limit in cm³ when not in %
        return self.volume_cc


_DOSE_METRIC_NAMES = {"dmax": "Dmax", "d0.1cc": "D0.1cc", "d2cc": "D2cc"}


@dataclass(frozen=True)
class OarLimit:
    roi: str
    dmax_gy: float | None = None
    d0_1cc_gy: float | None = None
    d2cc_gy: float | None = None
    v: tuple[VolumeLimit, ...] = ()

    def terms(self) -> tuple[OarLimitTerm, ...]:
        """Every limit of this OAR: Dmax, D0.1cc, D2cc, then the Vx limits in file order."""
        out = []
        if self.dmax_gy is not None:
            out.append(OarLimitTerm("dmax", "dmax", self.dmax_gy, 0.0))
        if self.d0_1cc_gy is not None:
            out.append(OarLimitTerm("d0.1cc", "dvcc", self.d0_1cc_gy, 0.1))
        if self.d2cc_gy is not None:
            out.append(OarLimitTerm("d2cc", "dvcc", self.d2cc_gy, 2.0))
        for v in self.v:
            out.append(OarLimitTerm(f"v{v.dose_gy:g}gy", "vx", v.dose_gy, v.max_cc, v.max_pct))
        return tuple(out)


@dataclass(frozen=True)
class NeedleSpec:
    mode: str = "template"
    spacing_mm: float = 10.0
    direction: Vec3 = (0.0, 1.0, 0.0)
    seed_spacing_mm: float = 10.0
    max_needles: int = 40
    no_go: tuple[str, ...] = ()
    entry_roi: str = "BODY"
    max_angle_deg: float = 30.0
    n_directions: int = 7
    oar_clearance_mm: float = 5.0


@dataclass(frozen=True)
class CryoSpec:
    probe_model: str = "generic_17g"
    max_probes: int = 8
    lethal_isotherm_c: float = -40.0
    oar_margin_mm: float = 5.0
    min_spacing_mm: float = 10.0
    max_spacing_mm: float = 20.0
    direction: Vec3 | None = None  # probe insertion (skin -> depth); None: the needles'
    coverage_min_pct: float = 95.0
    candidate_step_mm: float = 5.0
    #: closest approach of a probe's track (tip to skin) to an implanted seed or its needle
    #: track (:data:`brachycryo.planning.implanted.SEED_CLEARANCE_MM`)
    seed_clearance_mm: float = 5.0
    #: clearance of a probe's track from no-go structures, OARs and other tracks; None:
    #: the seed needles' ``[needles] oar_clearance_mm``
    track_clearance_mm: float | None = None


@dataclass(frozen=True)
class DoseSpec:
    spacing_mm: float = 2.0
    backend: str = "auto"
    formalism: str = "line"


@dataclass(frozen=True)
class RobustSpec:
    """``[optimizer] robust = { scenarios = N, min_probability = 0.9 }``: select seeds so that
    D90 >= Rx in at least ``min_probability`` of ``scenarios`` needle placement error
    scenarios in every seed-target zone, and every OAR limit holds in at least
    ``oar_min_probability`` of them (:mod:`brachycryo.planning.robust`).  ``error_model``: a
    preset (``template``, ``freehand``) or a TOML file (relative to the spec's folder);
    ``seed``: the scenarios' random seed; ``max_rounds``: margin rounds at most."""

    scenarios: int = 200
    min_probability: float = 0.9
    oar_min_probability: float = 0.95
    error_model: str = "template"
    seed: int = 0
    max_rounds: int = 6


@dataclass(frozen=True)
class OptimizerSpec:
    """Optimiser settings.  Work is bounded by counts, never by elapsed time, so a plan is
    the same on a quiet or a loaded machine; ``max_wall_s`` (None: none) is a safety net
    that fails the run, with no plan, when it takes longer."""

    v100_min_pct: float = 95.0
    lp_max_iterations: int = LP_MAX_ITERATIONS
    milp_node_limit: int = MILP_NODE_LIMIT
    max_wall_s: float | None = None
    hot_spot_weight: float = 0.05
    needle_weight: float = 0.5
    oar_sparing_weight: float = 25.0
    method: str = "heuristic"  # or "milp" (planning/milp.py; small problems, a reference)
    robust: RobustSpec | None = None


@dataclass(frozen=True)
class PlanSpec:
    case: CaseSpec
    prescription_gy: float
    seed_model: str
    sk_u: float
    lesions: tuple[LesionSpec, ...]
    sk_u_choices: tuple[float, ...] = ()  # sk_u = "auto" or a list: chosen when planning
    oars: tuple[OarLimit, ...] = ()
    needles: NeedleSpec = field(default_factory=NeedleSpec)
    cryo: CryoSpec = field(default_factory=CryoSpec)
    dose: DoseSpec = field(default_factory=DoseSpec)
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    goals: HotSpotGoals = field(default_factory=HotSpotGoals)
    source: Path | None = None
    #: ``[prescription] add_seeds``: new seeds may be planned (default: true, but false
    #: when ``[case] implanted_plan`` names seeds already implanted)
    add_seeds: bool = True

    def hot_spot_goals(self, lesion: LesionSpec) -> HotSpotGoals:
        """The lesion's own hot-spot goals where it sets them, else the plan's ``[goals]``."""
        return HotSpotGoals(
            v150_max_pct=_first(lesion.v150_max_pct, self.goals.v150_max_pct),
            v200_max_pct=_first(lesion.v200_max_pct, self.goals.v200_max_pct),
        )


def _first(value: float | None, default: float) -> float:
    return default if value is None else value


# ----------------------------------------------------------------------------- checking
class _Table:
    """A TOML table being consumed: every key must be read, unknown keys are errors."""

    def __init__(self, data: Any, where: str):
        if not isinstance(data, dict):
            raise ConfigError(f"must be a table, got {type(data).__name__}", key=where or "(root)")
        self.data = dict(data)
        self.where = where
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def raw(self, name: str, default: Any = None) -> Any:
        self.used.add(name)
        return self.data.get(name, default)

    def optional_number(
        self,
        name: str,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        strict_min: bool = False,
    ) -> float | None:
        """The number at ``name``, checked against the bounds; None when it is absent."""
        value = self.raw(name, None)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"must be a number, got {value!r}", key=self.key(name))
        value = float(value)
        if not math.isfinite(value):
            raise ConfigError(f"must be finite, got {value}", key=self.key(name))
        if minimum is not None and (value < minimum or (strict_min and value == minimum)):
            op = ">" if strict_min else ">="
            raise ConfigError(f"must be {op} {minimum:g}, got {value:g}", key=self.key(name))
        if maximum is not None and value > maximum:
            raise ConfigError(f"must be <= {maximum:g}, got {value:g}", key=self.key(name))
        return value

    def number(
        self,
        name: str,
        default: float,
        *,
        minimum: float | None = None,
        maximum: float | None = None,
        strict_min: bool = False,
    ) -> float:
        """:meth:`optional_number`, ``default`` when the key is absent."""
        value = self.optional_number(name, minimum=minimum, maximum=maximum, strict_min=strict_min)
        return default if value is None else value

    def required_number(
        self, name: str, *, minimum: float | None = None, strict_min: bool = False
    ) -> float:
        """:meth:`optional_number`; an absent key is an error."""
        value = self.optional_number(name, minimum=minimum, strict_min=strict_min)
        if value is None:
            raise ConfigError("is required", key=self.key(name))
        return value

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self.raw(name, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"must be an integer, got {value!r}", key=self.key(name))
        if value < minimum:
            raise ConfigError(f"must be >= {minimum}, got {value}", key=self.key(name))
        return int(value)

    def optional_text(
        self, name: str, default: str | None = None, *, choices: Sequence[str] | None = None
    ) -> str | None:
        """The non-empty string at ``name`` (one of ``choices`` if given), else ``default``."""
        value = self.raw(name, default)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ConfigError(f"must be a non-empty string, got {value!r}", key=self.key(name))
        if choices is not None and value not in choices:
            raise ConfigError(f"must be one of {list(choices)}, got {value!r}", key=self.key(name))
        return value

    def text(self, name: str, default: str, *, choices: Sequence[str] | None = None) -> str:
        """:meth:`optional_text` with a default that is never None."""
        value = self.optional_text(name, default, choices=choices)
        assert value is not None  # the default is a string
        return value

    def optional_vector(
        self, name: str, default: Vec3 | None = None, *, unit: bool = False
    ) -> Vec3 | None:
        """Three finite numbers at ``name`` (normalised with ``unit``), else ``default``."""
        value = self.raw(name, default)
        if value is None:
            return None
        try:
            values = tuple(float(v) for v in value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"must be 3 numbers, got {value!r}", key=self.key(name)) from exc
        if len(values) != 3 or not all(math.isfinite(v) for v in values):
            raise ConfigError(f"must be 3 finite numbers, got {value!r}", key=self.key(name))
        vec = (values[0], values[1], values[2])
        if unit:
            norm = math.sqrt(sum(v * v for v in vec))
            if norm < 1e-9:
                raise ConfigError("must not be the zero vector", key=self.key(name))
            vec = (vec[0] / norm, vec[1] / norm, vec[2] / norm)
        return vec

    def vector(self, name: str, default: Vec3, *, unit: bool = False) -> Vec3:
        """:meth:`optional_vector` with a default that is never None."""
        value = self.optional_vector(name, default, unit=unit)
        assert value is not None  # the default is a vector
        return value

    def strings(self, name: str) -> tuple[str, ...]:
        value = self.raw(name, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"must be a list of strings, got {value!r}", key=self.key(name))
        return tuple(value)

    def tables(self, name: str) -> list[_Table]:
        value = self.raw(name, [])
        if not isinstance(value, list):
            raise ConfigError("must be an array of tables ([[...]])", key=self.key(name))
        return [_Table(v, f"{self.key(name)}[{i}]") for i, v in enumerate(value)]

    def table(self, name: str) -> _Table | None:
        value = self.raw(name, None)
        return None if value is None else _Table(value, self.key(name))

    def done(self) -> None:
        unknown = sorted(set(self.data) - self.used)
        if unknown:
            raise ConfigError(
                f"unknown key(s) {unknown}; allowed here: {sorted(self.used)}",
                key=self.where or "(root)",
            )


def _case(t: _Table, base: Path) -> CaseSpec:
    implanted = t.optional_text("implanted_plan")
    implanted_path = None if implanted is None else (base / implanted).resolve()
    phantom = t.table("phantom")
    ct = t.optional_text("ct")
    rs = t.optional_text("rtstruct")
    if phantom is not None:
        if ct or rs:
            raise ConfigError("give either phantom or ct + rtstruct, not both", key=t.where)
        spacing = phantom.raw("spacing_mm", [2.0, 2.0, 2.0])
        if isinstance(spacing, int | float):
            spacing = [spacing] * 3
        vec = _Table({"spacing_mm": spacing}, phantom.where).vector("spacing_mm", (2.0, 2.0, 2.0))
        if min(vec) <= 0:
            raise ConfigError("must be positive", key=phantom.key("spacing_mm"))
        spec = PhantomCaseSpec(
            seed=phantom.integer("seed", 0),
            site=phantom.text("site", "abdomen"),
            spacing_mm=vec,
            extra_metastases=phantom.integer("extra_metastases", 0),
        )
        phantom.done()
        t.done()
        return CaseSpec(phantom=spec, implanted_plan=implanted_path)
    if not (ct and rs):
        raise ConfigError("needs [case.phantom] or both ct and rtstruct", key=t.where)
    t.done()
    return CaseSpec(
        ct=(base / ct).resolve(), rtstruct=(base / rs).resolve(), implanted_plan=implanted_path
    )


def _lesion(t: _Table) -> LesionSpec:
    allocation = t.optional_text("allocation", choices=ALLOCATIONS)
    if allocation is None:
        raise ConfigError(f"is required ({' | '.join(ALLOCATIONS)})", key=t.key("allocation"))
    roi = t.optional_text("roi")
    if roi is None:
        raise ConfigError("is required", key=t.key("roi"))
    high = []
    for h in t.tables("high_risk"):
        name = h.optional_text("roi")
        if name is None:
            raise ConfigError("is required", key=h.key("roi"))
        high.append(
            HighRiskZone(name, h.required_number("prescription_gy", minimum=0, strict_min=True))
        )
        h.done()
    spec = LesionSpec(
        roi=roi,
        allocation=allocation,
        margin_mm=t.number("margin_mm", 10.0, minimum=0.0, maximum=50.0),
        core=t.text("core", "cryo", choices=("cryo", "margin")),
        core_margin_mm=t.number("core_margin_mm", 10.0, minimum=0.0, maximum=100.0),
        prescription_gy=t.optional_number("prescription_gy", minimum=0, strict_min=True),
        high_risk=tuple(high),
        needle_direction=t.optional_vector("needle_direction", unit=True),
        v150_max_pct=t.optional_number("v150_max_pct", minimum=0.0, maximum=100.0),
        v200_max_pct=t.optional_number("v200_max_pct", minimum=0.0, maximum=100.0),
    )
    t.done()
    return spec


def _goals(t: _Table | None) -> HotSpotGoals:
    """The plan's ``[goals]``: hot-spot goals of every seed target."""
    if t is None:
        return HotSpotGoals()
    goals = HotSpotGoals(
        v150_max_pct=t.number("v150_max_pct", V150_MAX_PCT, minimum=0.0, maximum=100.0),
        v200_max_pct=t.number("v200_max_pct", V200_MAX_PCT, minimum=0.0, maximum=100.0),
    )
    t.done()
    return goals


def _oar(t: _Table) -> OarLimit:
    roi = t.optional_text("roi")
    if roi is None:
        raise ConfigError("is required", key=t.key("roi"))
    vlims = []
    for v in t.tables("v"):
        max_cc = v.optional_number("max_cc", minimum=0.0)
        max_pct = v.optional_number("max_pct", minimum=0.0, maximum=100.0)
        if (max_cc is None) == (max_pct is None):
            raise ConfigError("give exactly one of max_cc or max_pct", key=v.where)
        vlims.append(
            VolumeLimit(v.required_number("dose_gy", minimum=0, strict_min=True), max_cc, max_pct)
        )
        v.done()
    spec = OarLimit(
        roi=roi,
        dmax_gy=t.optional_number("dmax_gy", minimum=0, strict_min=True),
        d0_1cc_gy=t.optional_number("d0_1cc_gy", minimum=0, strict_min=True),
        d2cc_gy=t.optional_number("d2cc_gy", minimum=0, strict_min=True),
        v=tuple(vlims),
    )
    if spec.dmax_gy is None and spec.d0_1cc_gy is None and spec.d2cc_gy is None and not vlims:
        raise ConfigError("an OAR needs at least one limit (dmax_gy, d0_1cc_gy, d2cc_gy, v)",
                          key=t.where)  # fmt: skip
    t.done()
    return spec


def _needles(t: _Table | None) -> NeedleSpec:
    if t is None:
        return NeedleSpec()
    spec = NeedleSpec(
        mode=t.text("mode", "template", choices=("template", "free")),
        spacing_mm=t.number("spacing_mm", 10.0, minimum=3.0, maximum=30.0),
        direction=t.vector("direction", (0.0, 1.0, 0.0), unit=True),
        seed_spacing_mm=t.number("seed_spacing_mm", 10.0, minimum=5.0, maximum=30.0),
        max_needles=t.integer("max_needles", 40, minimum=1),
        no_go=t.strings("no_go"),
        entry_roi=t.text("entry_roi", "BODY"),
        max_angle_deg=t.number("max_angle_deg", 30.0, minimum=0.0, maximum=80.0),
        n_directions=t.integer("n_directions", 7, minimum=1),
        oar_clearance_mm=t.number("oar_clearance_mm", 5.0, minimum=0.0, maximum=20.0),
    )
    t.done()
    return spec


def _cryo(t: _Table | None) -> CryoSpec:
    if t is None:
        return CryoSpec()
    spec = CryoSpec(
        probe_model=t.text("probe_model", "generic_17g"),
        max_probes=t.integer("max_probes", 8, minimum=1),
        lethal_isotherm_c=t.number("lethal_isotherm_c", -40.0, minimum=-80.0, maximum=-10.0),
        oar_margin_mm=t.number("oar_margin_mm", 5.0, minimum=0.0),
        min_spacing_mm=t.number("min_spacing_mm", 10.0, minimum=0.0),
        max_spacing_mm=t.number("max_spacing_mm", 20.0, minimum=0.0),
        direction=t.optional_vector("direction", unit=True),
        coverage_min_pct=t.number("coverage_min_pct", 95.0, minimum=1.0, maximum=100.0),
        candidate_step_mm=t.number("candidate_step_mm", 5.0, minimum=1.0, maximum=20.0),
        seed_clearance_mm=t.number("seed_clearance_mm", 5.0, minimum=0.0, maximum=50.0),
        track_clearance_mm=t.optional_number("track_clearance_mm", minimum=0.0, maximum=50.0),
    )
    if spec.min_spacing_mm > spec.max_spacing_mm:
        raise ConfigError("min_spacing_mm exceeds max_spacing_mm", key=t.key("min_spacing_mm"))
    t.done()
    return spec


def _dose(t: _Table | None) -> DoseSpec:
    if t is None:
        return DoseSpec()
    spec = DoseSpec(
        spacing_mm=t.number("spacing_mm", 2.0, minimum=0.5, maximum=5.0),
        backend=t.text("backend", "auto", choices=("auto", "numpy", "numba", "cupy")),
        formalism=t.text("formalism", "line", choices=("line", "point")),
    )
    t.done()
    return spec


def _robust(t: _Table | None, base: Path) -> RobustSpec | None:
    if t is None:
        return None
    from brachycryo.robustness.error_model import PRESETS

    model = t.text("error_model", "template")
    if model not in PRESETS:
        path = (base / model).resolve()
        if not path.is_file():
            raise ConfigError(
                f"{model!r} is neither a preset ({', '.join(PRESETS)}) nor a file",
                key=t.key("error_model"),
            )
        model = str(path)
    spec = RobustSpec(
        scenarios=t.integer("scenarios", 200, minimum=1),
        min_probability=t.number("min_probability", 0.9, minimum=0.0, maximum=1.0),
        oar_min_probability=t.number("oar_min_probability", 0.95, minimum=0.0, maximum=1.0),
        error_model=model,
        seed=t.integer("seed", 0),
        max_rounds=t.integer("max_rounds", 6, minimum=1),
    )
    t.done()
    return spec


def _optimizer(t: _Table | None, base: Path) -> OptimizerSpec:
    if t is None:
        return OptimizerSpec()
    if "time_limit_s" in t.data:
        raise ConfigError(
            "was removed: the optimiser's work is bounded by counts (lp_max_iterations, "
            "milp_node_limit), so a plan no longer depends on the machine's speed; set "
            "max_wall_s for a safety net that fails the run instead",
            key=t.key("time_limit_s"),
        )
    spec = OptimizerSpec(
        v100_min_pct=t.number("v100_min_pct", 95.0, minimum=50.0, maximum=100.0),
        lp_max_iterations=t.integer("lp_max_iterations", LP_MAX_ITERATIONS, minimum=1),
        milp_node_limit=t.integer("milp_node_limit", MILP_NODE_LIMIT, minimum=1),
        max_wall_s=t.optional_number("max_wall_s", minimum=0.0, strict_min=True),
        hot_spot_weight=t.number("hot_spot_weight", 0.05, minimum=0.0),
        needle_weight=t.number("needle_weight", 0.5, minimum=0.0),
        oar_sparing_weight=t.number("oar_sparing_weight", 25.0, minimum=0.0),
        method=t.text("method", "heuristic", choices=("heuristic", "milp")),
        robust=_robust(t.table("robust"), base),
    )
    t.done()
    return spec


def parse_plan_spec(data: dict, *, base_dir: str | os.PathLike = ".", source=None) -> PlanSpec:
    """Validate a parsed TOML document (a dict) into a :class:`PlanSpec`."""
    root = _Table(data, "")
    case_t = root.table("case")
    if case_t is None:
        raise ConfigError("is required ([case] with ct + rtstruct, or [case.phantom])", key="case")
    case = _case(case_t, Path(base_dir))
    rx = root.table("prescription")
    if rx is None:
        raise ConfigError("is required", key="prescription")
    dose_gy = rx.number("dose_gy", 120.0, minimum=0, strict_min=True)
    model = rx.text("seed_model", "6711")
    sk_u, sk_u_choices = _strength(rx)
    add_seeds = rx.raw("add_seeds", case.implanted_plan is None)
    if not isinstance(add_seeds, bool):
        raise ConfigError(f"must be true or false, got {add_seeds!r}", key="prescription.add_seeds")
    rx.done()
    lesions = tuple(_lesion(t) for t in root.tables("lesion"))
    if not lesions:
        raise ConfigError("at least one [[lesion]] is required", key="lesion")
    names = [lesion.roi for lesion in lesions]
    if len(set(names)) != len(names):
        raise ConfigError(f"each lesion ROI may appear once, got {names}", key="lesion")
    oars = tuple(_oar(t) for t in root.tables("oar"))
    seeded = [x.roi for x in lesions if x.allocation != "cryo"]
    if not add_seeds and case.implanted_plan is None and seeded:
        raise ConfigError(
            f"add_seeds = false leaves {seeded} without any seed: it is meant for seeds "
            "already implanted ([case] implanted_plan)",
            key="prescription.add_seeds",
        )
    spec = PlanSpec(
        case=case,
        prescription_gy=dose_gy,
        seed_model=model,
        sk_u=sk_u,
        sk_u_choices=sk_u_choices,
        lesions=lesions,
        oars=oars,
        needles=_needles(root.table("needles")),
        cryo=_cryo(root.table("cryo")),
        dose=_dose(root.table("dose")),
        optimizer=_optimizer(root.table("optimizer"), Path(base_dir)),
        goals=_goals(root.table("goals")),
        source=None if source is None else Path(source),
        add_seeds=add_seeds,
    )
    root.done()
    if add_seeds and case.implanted_plan is not None and spec.optimizer.robust is not None:
        raise ConfigError(
            "is not supported with new seeds beside implanted ones ([case] implanted_plan, "
            "add_seeds = true): its scenarios move the new seeds only and leave out the "
            "implanted seeds' dose, so the probabilities would not be the plan's",
            key="optimizer.robust",
        )
    return spec


#: ``sk_u = "auto"``: 0.3 to 0.8 mCi apparent activity in 0.1 mCi steps, the range of the
#: CT-guided I-125 implants this engine plans (see ``planning/examples/demo_abdomen.toml``).
AUTO_SK_U: tuple[float, ...] = tuple(
    round(m * U_PER_MCI_I125, 4) for m in (0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
)


def _strength(rx: _Table) -> tuple[float, tuple[float, ...]]:
    """The seed strength (U) and, for ``sk_u = "auto"`` or a list, the strengths to choose
    from (:mod:`brachycryo.planning.strength`); exactly one of sk_u / activity_mci."""
    raw = rx.raw("sk_u")
    choices: tuple[float, ...] = ()
    if raw == "auto" or isinstance(raw, list):
        if raw == "auto":
            choices = AUTO_SK_U
        else:
            choices = tuple(_positive(v, rx.key("sk_u")) for v in raw)
            if not choices:
                raise ConfigError("must list at least one strength", key=rx.key("sk_u"))
        if "activity_mci" in rx.data:
            raise ConfigError("give exactly one of sk_u (U) or activity_mci (apparent mCi)",
                              key="prescription")  # fmt: skip
        rx.used.add("activity_mci")
        return max(choices), choices
    sk_u = rx.optional_number("sk_u", minimum=0, strict_min=True)
    mci = rx.optional_number("activity_mci", minimum=0, strict_min=True)
    if sk_u is None and mci is not None:
        return mci * U_PER_MCI_I125, ()
    if sk_u is None or mci is not None:
        raise ConfigError("give exactly one of sk_u (U) or activity_mci (apparent mCi)",
                          key="prescription")  # fmt: skip
    return sk_u, ()


def _positive(value: Any, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"must list numbers (U), got {value!r}", key=key)
    if not (math.isfinite(value) and value > 0):
        raise ConfigError(f"must be positive and finite, got {value}", key=key)
    return float(value)


def load_plan_spec(path: str | os.PathLike) -> PlanSpec:
    """Read and validate a plan specification TOML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read {p}: {exc}") from exc
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{p} is not valid TOML: {exc}") from exc
    return parse_plan_spec(data, base_dir=p.parent, source=p)
