"""Plan quality of the zoned optimiser on a case list, against three references on the
same influence matrices.

Cases (:data:`CASES`): the demo specification (``planning/examples/demo_abdomen.toml``) on
several phantom seeds, a pelvis specification on several seeds, a seeds-only bulky lesion
(GTV + 5 mm seed target, no cryo core), a high-risk sub-zone with its own prescription, an
OAR abutting the GTV with a limit below the prescription, and eight seed metastases
planned together, each with its own prescription.  Methods, per case:

* **ours**: ``make_plan`` (planned twice: the two seed lists are compared for determinism);
* **ours_min_seeds**: our optimiser on the same matrices with OAR sparing off (the seed
  count first under the same hard limits: the objective the annealing reference has);
* **uniform**: every candidate track loaded every ``seed_spacing_mm`` inside the seed
  targets, the strength scaled so the first target's D90 equals its prescription, and
  scaled to our plan's V100 (equal coverage), so OAR doses compare at equal coverage;
* **sa**: the IPSA-style simulated-annealing reference of :mod:`benchmarks.annealing`
  (Lessard and Pouliot, Med Phys 28:773, 2001) with an iteration budget of
  ``--sa-factor`` x our optimiser's time (converted to iterations by a timed calibration
  run; the count is recorded, and ``--sa-iterations`` fixes it);
* **milp**: the HiGHS MILP of :mod:`brachycryo.planning.milp` with ``--milp-s`` seconds;
  its best dual bound (``mip_dual_bound`` of scipy's result) bounds the objective
  ``seeds + needle_weight * needles`` from below on the MILP's model, so the optimality
  gap of our objective is reported.  Caveat: the MILP's model samples at most 1500 target
  points and models D_vcc limits by CVaR, so its bound is exact for that model, not for
  the full sample-point problem ours is evaluated on.

Seeds are compared at equal coverage and limits (``seed_comparison``): a method's plan
counts only when it meets every zone's goals and every OAR limit on the planning grid's
DVHs; the annealing reference is held to the same hard limits (its selection must meet
them on the sample points, and is then judged on the grid like ours).

Every selection is evaluated the same way: on the sample points (V100/D90/V150/V200 per
zone, OAR limits met, as the optimiser checks), and on the planning grid (dose from the
seeds; DVH of each zone mask; OAR metrics from the contours as ``metrics.json`` does).
Writes ``benchmarks/results/plan_quality.json``.

Run: ``python -m benchmarks.plan_quality [--cases demo0 pelvis0] [--milp-s 600]
[--sa-factor 10] [--lp-s 600]``; ``--list`` names the cases.  ``lp_relaxation``: the
optimum of the MILP model with integrality dropped, a lower bound on its objective
(available when the MILP's own dual bound is not).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.annealing import anneal, anneal_sweep
from benchmarks.common import machine_info
from brachycryo.core.errors import BrachyCryoError
from brachycryo.core.seeds import Seeds
from brachycryo.dose_kernels import dose_on_grid
from brachycryo.planning.evaluate import evaluate_zoned_plan
from brachycryo.planning.milp import _exact_selection, select_seeds_milp
from brachycryo.planning.optimize import select_seeds
from brachycryo.planning.pipeline import make_plan
from brachycryo.planning.spec import parse_plan_spec
from brachycryo.qa.dvh import dvh_from_mask
from brachycryo.qa.metrics import metric_value, structure_metrics

RESULTS = Path(__file__).resolve().parent / "results" / "plan_quality.json"
ZONE_KEYS = ("v100_pct", "v150_pct", "v200_pct", "d90_gy")


def _demo() -> dict:
    text = resources.files("brachycryo.planning").joinpath("examples/demo_abdomen.toml")
    return tomllib.loads(text.read_text())


def _pelvis() -> dict:
    """Pelvic side-wall recurrence by seeds (GTV + 5 mm: no cryo core, whose 0 C isotherm
    could not keep 5 mm from the bladder and iliac vessels) and a seed metastasis (GTV_Met1,
    against the sacrum, is left out: no cryo layout keeps 5 mm from the bone); needles
    anterior -> posterior lateral to the bladder."""
    return {
        "case": {"phantom": {"seed": 0, "site": "pelvis", "spacing_mm": [2.0, 2.0, 2.0]}},
        "prescription": {"dose_gy": 110.0, "seed_model": "6711", "activity_mci": 0.8},
        "lesion": [
            {"roi": "GTV_Bulky", "allocation": "seeds", "margin_mm": 5.0},
            {"roi": "GTV_Met2", "allocation": "seeds", "margin_mm": 5.0},
        ],
        "oar": [
            {"roi": "Rectum", "d2cc_gy": 120.0},
            {"roi": "Bladder", "d2cc_gy": 150.0},
            {"roi": "Bowel", "d2cc_gy": 120.0},
            {"roi": "CaudaEquina", "dmax_gy": 50.0},
            {"roi": "IliacVessels", "d2cc_gy": 250.0},
        ],
        "needles": {
            "mode": "template", "spacing_mm": 10.0, "direction": [0.0, 1.0, 0.0],
            "seed_spacing_mm": 10.0, "max_needles": 60,
            "no_go": ["Rectum", "Bowel", "IliacVessels", "PelvicBone", "CaudaEquina", "Bladder"],
        },
        "cryo": {"probe_model": "generic_2p4mm", "max_probes": 8, "oar_margin_mm": 5.0},
        "dose": {"spacing_mm": 2.0},
    }  # fmt: skip


def _with_seed(doc: dict, seed: int, **phantom: Any) -> dict:
    doc = json.loads(json.dumps(doc))
    doc["case"]["phantom"].update(seed=seed, **phantom)
    return doc


def _bulky_seeds_only(seed: int) -> dict:
    doc = _with_seed(_demo(), seed)
    doc["lesion"][0] = {"roi": "GTV_Bulky", "allocation": "seeds", "margin_mm": 5.0}
    doc["needles"]["max_needles"] = 80
    return doc


def _high_risk(seed: int) -> dict:
    """Met2's GTV boosted to 150 Gy inside its 110 Gy margin zone."""
    doc = _with_seed(_demo(), seed)
    doc["lesion"][2]["high_risk"] = [{"roi": "GTV_Met2", "prescription_gy": 150.0}]
    return doc


def _oar_abutting(seed: int) -> dict:
    """The bulky GTV lies 3 mm from the left kidney (the phantom's keep-out); its seed
    target (GTV + 10 mm) reaches the kidney, whose D2cc is limited below the prescription."""
    doc = _with_seed(_demo(), seed)
    for oar in doc["oar"]:
        if oar["roi"] == "Kidney_L":
            oar["d2cc_gy"] = 90.0
    return doc


def _metastases8(seed: int) -> dict:
    """GTV_Met2..GTV_Met9 by seeds (each 100 + 5 n Gy), GTV_Met1 by cryo."""
    doc = _with_seed(_demo(), seed, extra_metastases=7)
    doc["lesion"] = [{"roi": "GTV_Met1", "allocation": "cryo"}] + [
        {"roi": f"GTV_Met{n}", "allocation": "seeds", "margin_mm": 3.0,
         "prescription_gy": 100.0 + 5 * n}
        for n in range(2, 10)
    ]  # fmt: skip
    # GTV_Met2 lies in the anterior abdominal wall: anterior needles, as in the demo (the
    # lateral template reaches it through no-go structures only)
    doc["lesion"][1]["needle_direction"] = [0.0, 1.0, 0.0]
    doc["needles"].update(spacing_mm=6.0, seed_spacing_mm=8.0, max_needles=150)
    doc["needles"]["no_go"] = ["Vertebra", "Aorta", "SpinalCord", "Bowel"]
    return doc


def _bulky_scaled(site: str, seed: int, scale: float) -> dict:
    """The demo (abdomen) or pelvis spec on a phantom whose bulky mass is scaled by
    ``scale`` (``build_phantom(bulky_scale=...)``, written by :func:`run_case`)."""
    doc = _with_seed(_demo() if site == "abdomen" else _pelvis(), seed)
    doc["case"]["phantom"]["bulky_scale"] = scale  # taken out by run_case
    doc["needles"]["max_needles"] = 100
    return doc


#: name -> (description, spec document)
CASES: dict[str, tuple[str, Any]] = {
    **{f"demo{s}": (f"demo abdomen, phantom seed {s}", lambda s=s: _with_seed(_demo(), s))
       for s in range(4)},
    **{f"pelvis{s}": (f"pelvis, phantom seed {s}", lambda s=s: _with_seed(_pelvis(), s))
       for s in range(3)},
    "bulky_seeds0": ("bulky GTV + 5 mm by seeds only (no cryo core), seed 0",
                     lambda: _bulky_seeds_only(0)),
    "bulky_seeds1": ("bulky GTV + 5 mm by seeds only (no cryo core), seed 1",
                     lambda: _bulky_seeds_only(1)),
    "high_risk": ("demo seed 0, GTV_Met2 high-risk sub-zone at 150 Gy", lambda: _high_risk(0)),
    "oar_abutting": ("demo seed 1, Kidney_L abutting the seed target, D2cc <= 90 Gy",
                     lambda: _oar_abutting(1)),
    "bulky_large": ("abdomen seed 2, bulky mass scaled x1.45 (~390 mL)",
                    lambda: _bulky_scaled("abdomen", 2, 1.45)),
    "bulky_small": ("pelvis seed 2, bulky mass scaled x0.92 (~105 mL)",
                    lambda: _bulky_scaled("pelvis", 2, 0.92)),
    "mets8": ("8 seed metastases (own prescriptions 110-145 Gy) + 1 cryo, seed 0",
              lambda: _metastases8(0)),
}  # fmt: skip


def _zone_masks(result) -> dict[str, tuple[np.ndarray, float]]:
    """Grid mask and prescription of each optimiser zone, under the optimiser's names."""
    out = {}
    spec = result.spec
    for lesion in spec.lesions:
        z = result.zones[lesion.roi]
        if z.seed_target is None:
            continue
        out[f"{lesion.roi} seed target"] = (
            z.seed_target,
            lesion.prescription_gy or spec.prescription_gy,
        )
        for h in lesion.high_risk:
            out[f"{lesion.roi} {h.roi}"] = (z.high_risk[h.roi], h.prescription_gy)
    return out


def _on_grid(result, dose: np.ndarray) -> dict:
    """Zone DVH metrics and OAR metrics (contours, as metrics.json) of a grid dose."""
    grid = result.grid
    zones = {}
    for name, (mask, rx) in _zone_masks(result).items():
        m = structure_metrics(dvh_from_mask(mask, grid, dose, grid), prescription_gy=rx)
        zones[name] = {k: _r(m[k]) for k in ZONE_KEYS} | {"volume_cc": _r(m["volume_cc"])}
    evaluated = evaluate_zoned_plan(dataclasses.replace(result, dose_gy=dose, roi_dvhs=None))
    oars = {
        f"{c.roi} {c.metric}": {"value": _r(c.value), "limit": c.limit, "passed": c.passed}
        for c in evaluated.constraints
    }
    goals_met = all(
        z["v100_pct"] >= result.spec.optimizer.v100_min_pct and z["d90_gy"] >= rx - 1e-6
        for z, (_, rx) in zip(zones.values(), _zone_masks(result).values(), strict=True)
    )
    return {
        "zones": zones,
        "oars": oars,
        "goals_and_limits_met": bool(goals_met and all(o["passed"] for o in oars.values())),
    }


def _r(v):
    return None if v is None else round(float(v), 3)


def _selection_block(result, chosen: np.ndarray, sk_u: float) -> dict:
    """Counts, sample-point and grid evaluation of a selection of candidates."""
    spec, prob, cand = result.spec, result.problem, result.candidates
    sel = _exact_selection(
        list(prob.zones), list(prob.constraints), sk_u, cand.needle, chosen,
        spec.optimizer.v100_min_pct, 0.0,
    )  # fmt: skip
    block: dict[str, Any] = {
        "n_seeds": int(chosen.size),
        "n_needles": len(set(cand.needle[chosen].tolist())),
        "sk_u_per_seed": sk_u,
        "total_sk_u": round(float(chosen.size * sk_u), 3),
        "sample_points": {
            "zones": {k: {kk: _r(vv) for kk, vv in v.items()} for k, v in sel.coverage.items()},
            "oar_excess_cc": {k: _r(v) for k, v in sel.oar_excess_cc.items()},
            "goals_and_limits_met": bool(sel.feasible),
        },
    }
    if chosen.size:
        seeds = Seeds(cand.positions_mm[chosen], sk_u, cand.directions[chosen])
        dose = dose_on_grid(seeds, result.grid, spec.seed_model, dtype=np.float64)
        block["grid"] = _on_grid(result, dose)
    return block


def _chosen_of(result) -> np.ndarray:
    """Our selection as candidate indices (matched by position)."""
    return np.asarray(result.selection.chosen, dtype=int)


def _ours(spec, work: Path) -> tuple[Any, dict]:
    t0 = time.perf_counter()
    result = make_plan(spec, work / "a", keep_problem=True)
    plan_s = time.perf_counter() - t0
    again = make_plan(spec, work / "b")
    same = bool(
        len(again.seeds) == len(result.seeds)
        and np.array_equal(again.seeds.positions_mm, result.seeds.positions_mm)
    )
    metrics = evaluate_zoned_plan(result)
    block = _selection_block(result, _chosen_of(result), spec.sk_u)
    block.update(
        time_s=round(plan_s, 1),
        optimizer_s=round(result.timings_s.get("optimizer_s", 0.0), 1),
        timings_s={k: round(v, 2) for k, v in result.timings_s.items()},
        feasible=metrics.feasible,
        binding=list(metrics.binding),
        deterministic_two_runs=same,
        objective=result.n_seeds + spec.optimizer.needle_weight * result.n_needles,
    )
    return result, block


def _ours_min_seeds(result) -> dict:
    """Our optimiser on the same matrices with OAR sparing off (``oar_sparing_weight = 0``):
    seed count first under the same hard limits, the objective the annealing reference
    has.  The default (sparing on) spends seeds to keep OAR doses well below their limits,
    so seeds are compared with the reference in this mode, OAR doses in the default."""
    spec, prob, cand = result.spec, result.problem, result.candidates
    opt = spec.optimizer
    t0 = time.perf_counter()
    sel = select_seeds(
        prob.zones, prob.constraints, sk_u=spec.sk_u, needle=cand.needle,
        exclusions=cand.exclusions, max_needles=spec.needles.max_needles,
        v100_min_pct=opt.v100_min_pct, needle_weight=opt.needle_weight,
        lp_max_iterations=opt.lp_max_iterations, hot_spot_weight=opt.hot_spot_weight,
        oar_sparing_weight=0.0,
    )  # fmt: skip
    elapsed = time.perf_counter() - t0
    block = _selection_block(result, sel.chosen, spec.sk_u)
    block.update(
        time_s=round(elapsed, 1),
        objective=sel.chosen.size + opt.needle_weight * block["n_needles"],
    )
    return block


def _counts(block: dict) -> bool:
    """A method's plan counts in the seed comparison only when it meets every zone's goals
    and every OAR limit on the planning grid (the DVHs metrics.json reports), not only on
    the sample points it was optimised on: equal coverage and limits."""
    return bool(block.get("grid", {}).get("goals_and_limits_met", False))


def _uniform(result) -> dict:
    """Every track loaded every seed_spacing inside the seed targets; strength scaled to
    D90 = Rx of the first zone, and to our V100 of that zone (equal coverage)."""
    spec, cand = result.spec, result.candidates
    masks = _zone_masks(result)
    union = np.zeros(result.grid.shape, dtype=bool)
    for name, (mask, _) in masks.items():
        if name.endswith(" seed target"):
            union |= mask
    chosen = []
    for k in np.unique(cand.needle):
        idx = np.flatnonzero(cand.needle == k)
        last = -np.inf
        for n in idx[np.argsort(cand.depth_mm[idx])]:
            if cand.depth_mm[n] - last >= spec.needles.seed_spacing_mm - 1e-6:
                chosen.append(n)
                last = cand.depth_mm[n]
    chosen_a = np.asarray(chosen, dtype=int)
    inside = result.grid.sample_nearest(union, cand.positions_mm[chosen_a], outside=False)
    chosen_a = chosen_a[inside]
    first, (mask, rx) = next(iter(masks.items()))
    dose_1u = dose_on_grid(
        Seeds(cand.positions_mm[chosen_a], 1.0, cand.directions[chosen_a]), result.grid,
        spec.seed_model, dtype=np.float64,
    )  # fmt: skip
    dvh_1u = dvh_from_mask(mask, result.grid, dose_1u, result.grid)
    ours_v100 = float(
        structure_metrics(dvh_from_mask(mask, result.grid, result.dose_gy, result.grid),
                          prescription_gy=rx)["v100_pct"]
    )  # fmt: skip
    out: dict[str, Any] = {"rule": _uniform.__doc__.split(";")[0], "scaled_on_zone": first}
    for name, dvh_metric in (("d90_eq_rx", "D90"), ("equal_v100", f"D{min(ours_v100, 99.9):.6f}")):
        sk = rx / metric_value(dvh_1u, dvh_metric)
        out[name] = _selection_block(result, chosen_a, float(sk))
    return out


def _sa(result, iterations: int) -> dict:
    spec, prob, cand = result.spec, result.problem, result.candidates
    res = anneal_sweep(
        prob.zones, prob.constraints, iterations=iterations, sk_u=spec.sk_u,
        needle=cand.needle, depth_mm=cand.depth_mm, exclusions=cand.exclusions,
        max_needles=spec.needles.max_needles, v100_min_pct=spec.optimizer.v100_min_pct,
    )  # fmt: skip
    block = _selection_block(result, res.selection.chosen, spec.sk_u)
    block.update(
        time_s=round(res.time_s, 1), iterations=res.iterations, sweep=res.sweep,
        objective=res.selection.chosen.size + spec.optimizer.needle_weight * block["n_needles"],
    )  # fmt: skip
    return block


def _sa_rate(result) -> float:
    """SA iterations per second on this case (a short timed run, its set-up excluded)."""
    spec, prob, cand = result.spec, result.problem, result.candidates
    r = anneal(
        prob.zones, prob.constraints, iterations=5000, sk_u=spec.sk_u, needle=cand.needle,
        depth_mm=cand.depth_mm, exclusions=cand.exclusions,
        max_needles=spec.needles.max_needles,
    )  # fmt: skip
    return 5000 / max(r.time_s - r.setup_s, 1e-6)


def _milp(result, time_limit_s: float) -> dict:
    """The same problem as a MILP; the raw scipy result is captured for its dual bound."""
    import scipy.optimize

    spec, prob, cand = result.spec, result.problem, result.candidates
    raw: dict[str, Any] = {}
    original = scipy.optimize.milp

    def capture(*a, **k):
        res = original(*a, **k)
        raw["res"] = res
        return res

    scipy.optimize.milp = capture
    try:
        t0 = time.perf_counter()
        sel, info = select_seeds_milp(
            prob.zones, prob.constraints, sk_u=spec.sk_u, needle=cand.needle,
            exclusions=cand.exclusions, max_needles=spec.needles.max_needles,
            v100_min_pct=spec.optimizer.v100_min_pct,
            needle_weight=spec.optimizer.needle_weight,
            node_limit=10**9, time_limit_s=time_limit_s,
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
    finally:
        scipy.optimize.milp = original
    res = raw.get("res")
    bound = getattr(res, "mip_dual_bound", None) if res is not None else None
    block = _selection_block(result, sel.chosen, spec.sk_u)
    block.update(
        status=info.status,
        time_limit_s=time_limit_s,
        time_s=round(elapsed, 1),
        objective=info.objective,
        mip_gap=info.mip_gap,
        dual_bound=None if bound is None or not np.isfinite(bound) else float(bound),
        node_count=getattr(res, "mip_node_count", None),
    )
    return block


def _lp_bound(result, time_limit_s: float) -> dict:
    """The LP relaxation of the same MILP model (integrality dropped): its optimum is a
    lower bound on the MILP's objective, cheaper than the MILP's own dual bound."""
    import scipy.optimize

    spec, prob, cand = result.spec, result.problem, result.candidates
    raw: dict[str, Any] = {}
    original = scipy.optimize.milp

    def relaxed(c, *a, integrality=None, options=None, **k):
        options = dict(options or {}, time_limit=time_limit_s)
        raw["res"] = original(c, *a, integrality=np.zeros_like(integrality), options=options, **k)
        return raw["res"]

    scipy.optimize.milp = relaxed
    try:
        t0 = time.perf_counter()
        select_seeds_milp(
            prob.zones, prob.constraints, sk_u=spec.sk_u, needle=cand.needle,
            exclusions=cand.exclusions, max_needles=spec.needles.max_needles,
            v100_min_pct=spec.optimizer.v100_min_pct,
            needle_weight=spec.optimizer.needle_weight, time_limit_s=time_limit_s,
        )  # fmt: skip
        elapsed = time.perf_counter() - t0
    finally:
        scipy.optimize.milp = original
    res = raw["res"]
    optimal = res.status == 0 and res.fun is not None
    return {
        "status": str(res.message),
        "time_s": round(elapsed, 1),
        "bound": float(res.fun) if optimal else None,
    }


def run_case(
    name: str,
    work: Path,
    *,
    milp_s: float,
    sa_factor: float,
    sa_iter: int | None,
    coarse_mm: float | None = None,
    lp_s: float = 0.0,
) -> dict:
    """Every method on one case (see the module docstring); ``coarse_mm`` overrides the
    phantom and dose grid spacing (quick runs)."""
    description, make_doc = CASES[name]
    doc = make_doc()
    if coarse_mm:
        doc["case"]["phantom"]["spacing_mm"] = [coarse_mm] * 3
        doc["dose"]["spacing_mm"] = coarse_mm
    phantom = dict(doc["case"]["phantom"])
    if "bulky_scale" in phantom:  # a phantom the spec cannot describe: written here
        doc["case"] = _write_scaled_phantom(phantom, work / "phantom")
    spec = parse_plan_spec(doc, base_dir=work)
    case: dict[str, Any] = {"case": name, "description": description}
    result, case["ours"] = _ours(spec, work / name)
    case["phantom"] = {
        "site": phantom["site"], "seed": phantom["seed"],
        "extra_metastases": phantom.get("extra_metastases", 0),
        "bulky_scale": phantom.get("bulky_scale", 1.0),
        "gtv_cc": {k: _r(float(np.sum(v.gtv)) * result.grid.voxel_volume_mm3 / 1000.0)
                   for k, v in result.zones.items()},
    }  # fmt: skip
    t0 = time.perf_counter()
    case["uniform"] = _uniform(result)
    case["uniform"]["time_s"] = round(time.perf_counter() - t0, 1)
    case["ours_min_seeds"] = _ours_min_seeds(result)
    if sa_factor > 0 or sa_iter:
        rate = _sa_rate(result)
        iters = sa_iter or int(sa_factor * max(case["ours"]["optimizer_s"], 1.0) * rate)
        case["sa"] = _sa(result, iters)
        case["sa"]["budget"] = {"factor_of_our_optimizer_time": sa_factor,
                                "calibrated_iterations_per_s": round(rate, 1)}  # fmt: skip
    case["seed_comparison"] = {
        m: {"n_seeds": case[m]["n_seeds"], "total_sk_u": case[m]["total_sk_u"],
            "counts": _counts(case[m])}
        for m in ("ours", "ours_min_seeds", "sa") if m in case
    }  # fmt: skip
    if lp_s > 0:
        case["lp_relaxation"] = _lp_bound(result, lp_s)
        bound = case["lp_relaxation"]["bound"]
        if bound is not None and bound > 0:
            ours = case["ours"]["objective"]
            case["ours"]["gap_to_lp_bound_pct"] = round(100 * (ours - bound) / ours, 2)
    if milp_s > 0:
        case["milp"] = _milp(result, milp_s)
        bound = case["milp"]["dual_bound"]
        if bound is not None and bound > 0:
            ours = case["ours"]["objective"]
            case["ours"]["gap_to_milp_bound_pct"] = round(100 * (ours - bound) / ours, 2)
    return case


def _write_scaled_phantom(phantom: dict, folder: Path) -> dict:
    """Build and write the phantom with its bulky_scale; the spec's [case] for it."""
    from brachycryo.phantoms import build_phantom, write_phantom

    case = build_phantom(
        seed=phantom["seed"], site=phantom["site"], spacing_mm=tuple(phantom["spacing_mm"]),
        extra_metastases=phantom.get("extra_metastases", 0), bulky_scale=phantom["bulky_scale"],
    )  # fmt: skip
    files = write_phantom(folder, case)
    return {"ct": str(files.ct_folder), "rtstruct": str(files.rtstruct)}


def _summary(c: dict) -> str:
    lines = [f"{c['case']}: {c['description']}"]
    for method in ("ours", "ours_min_seeds", "sa", "milp"):
        m = c.get(method)
        if not m:
            continue
        zones = m.get("grid", {}).get("zones", {})
        cov = " ".join(f"[{z}: V100 {v['v100_pct']} D90 {v['d90_gy']}]" for z, v in zones.items())
        lines.append(
            f"  {method}: {m['n_seeds']} seeds, {m['n_needles']} needles, S_K {m['total_sk_u']}"
            f" U, {cov}, met {m.get('grid', {}).get('goals_and_limits_met')}, {m['time_s']} s"
        )
    if "milp" in c:
        lines.append(f"  MILP bound {c['milp']['dual_bound']}, gap of ours "
                     f"{c['ours'].get('gap_to_milp_bound_pct')} %")  # fmt: skip
    if "lp_relaxation" in c:
        lines.append(f"  LP relaxation bound {c['lp_relaxation']['bound']}, gap of ours "
                     f"{c['ours'].get('gap_to_lp_bound_pct')} %")  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    ap.add_argument("--list", action="store_true", help="list the cases and exit")
    ap.add_argument("--milp-s", type=float, default=600.0, help="MILP time limit (0: skip)")
    ap.add_argument(
        "--lp-s", type=float, default=600.0,
        help="time limit of the MILP model's LP relaxation bound (0: skip)",
    )  # fmt: skip
    ap.add_argument(
        "--sa-factor",
        type=float,
        default=10.0,
        help="SA budget as a multiple of our optimiser time (0: skip)",
    )
    ap.add_argument("--sa-iterations", type=int, default=None, help="fixed SA iteration count")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "plan_quality")
    ap.add_argument("--out", type=Path, default=RESULTS)
    ap.add_argument("--note", default="", help="a note stored in the JSON")
    ap.add_argument(
        "--coarse-mm",
        type=float,
        default=None,
        help="phantom and dose grid spacing override (quick runs)",
    )
    args = ap.parse_args()  # fmt: skip
    if args.list:
        for name, (desc, _) in CASES.items():
            print(f"{name}: {desc}")
        return
    cases = []
    for name in args.cases:
        work = args.work / name
        if work.exists():
            import shutil

            shutil.rmtree(work)
        work.mkdir(parents=True)
        try:
            cases.append(
                run_case(name, work, milp_s=args.milp_s, sa_factor=args.sa_factor,
                         sa_iter=args.sa_iterations, coarse_mm=args.coarse_mm,
                         lp_s=args.lp_s)
            )  # fmt: skip
        except BrachyCryoError as exc:  # the case is reported, the run goes on
            cases.append({"case": name, "description": CASES[name][0], "error": str(exc)})
            print(f"{name}: {exc}", flush=True)
            _write(args, cases)
            continue
        print(_summary(cases[-1]), flush=True)
        _write(args, cases)


def _write(args, cases: list[dict]) -> None:
    out = {
        "machine": machine_info() | {"note": "2-core development machine, shared"},
        "note": args.note,
        "case_list": {k: v[0] for k, v in CASES.items()},
        "cases_run": [c["case"] for c in cases],
        "options": {"milp_s": args.milp_s, "lp_s": args.lp_s, "sa_factor": args.sa_factor,
                    "sa_iterations": args.sa_iterations, "coarse_mm": args.coarse_mm},
        "cases": cases,
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=_r) + "\n")


if __name__ == "__main__":
    main()
