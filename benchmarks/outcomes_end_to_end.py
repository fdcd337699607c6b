"""``brachycryo outcomes`` end to end: phantom cohort -> ``dvh-batch`` -> planted outcomes ->
the model recovered.

The cohort: the phantom patients of ``benchmarks/cohort_batch.py`` (its ``PATIENT``
settings: abdomen phantoms of seeds 0, 1, ...; 4 x 4 x 5 mm CT; a 10 mm seed lattice in
the bulky tumour; TG-43 dose at 3 mm), but where that benchmark gives every patient one
plan with D90 = 1.1 x Rx (no dose spread, nothing to fit), each patient here gets
``--plans`` plans of its tumour with seeded D90/Rx ratios drawn from U(0.55, 1.45) (one
dose calculation rescaled per plan: dose is linear in S_K, TG-43U1 eq. 1).  Each
(patient, plan) is one lesion of the outcomes CSV, named ``L1``... and located by the
lesion map (patient, lesion, structure ``GTV_Bulky``, plan UID): so the lesions of one
patient are correlated through the patient (shared uniforms, rho = 0.5).  The phantom's
metastases receive no dose from the implant (D90 = 0) and are not lesions here.

Chain: :func:`brachycryo.cohort.batch.run_batch` (the ``dvh-batch`` table, cached with the
cohort under ``~/.cache/brachycryo/outcomes-e2e-<patients>x<plans>``) -> outcomes generated
from the table's D90 with the planted model of :class:`tests.outcomes.simulate.Truth`
(logistic grade >= 3 toxicity with D50 = 140 Gy, gamma50 = 2; exponential local
progression with HR 0.8 per 10 Gy; :func:`tests.outcomes.simulate.outcomes_for_doses`) ->

* ``headline``: ``brachycryo outcomes --lesion-map`` (the command, with 1,000 patient
  bootstrap resamples) on one draw: every estimate with its CI and whether it covers the
  planted value;
* ``replicates``: ``--replicates`` further draws of the outcomes on the same table, each
  joined through the lesion map and fitted (no bootstrap): how often the 95 % CIs
  (delta method, cluster-robust, t(G-1); Cox HR, cluster-robust) cover the planted values.

Run: ``python -m benchmarks.outcomes_end_to_end [--patients 50] [--plans 4]
[--replicates 200]`` -> ``benchmarks/results/outcomes_end_to_end.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.cohort_batch import PATIENT
from benchmarks.common import machine_info, write_results

RATIO_RANGE = (0.55, 1.45)
TARGET = "GTV_Bulky"


def _cache_dir(n: int, k: int) -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "brachycryo" / f"outcomes-e2e-{n}x{k}"


def plan_ratios(patient: int, plans: int):
    """The seeded D90/Rx ratios of one patient's plans."""
    import numpy as np

    return tuple(
        float(r) for r in np.random.default_rng(1000 + patient).uniform(*RATIO_RANGE, plans)
    )


def ensure_table(folder: Path, n: int, k: int) -> tuple[Path, dict]:
    """Write the cohort and run dvh-batch on it, unless a complete one is there."""
    from brachycryo.cohort.batch import run_batch
    from brachycryo.phantoms.cohort import write_cohort_patient

    marker = folder / "cohort.json"
    settings = {k_: list(v) if isinstance(v, tuple) else v for k_, v in PATIENT.items()}
    params = {"n_patients": n, "plans": k, "ratio_range": list(RATIO_RANGE), **settings}
    table = folder / "metrics.parquet"
    if marker.is_file() and json.loads(marker.read_text()).get("params") == params:
        return table, json.loads(marker.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            sub = folder / "dicom" / f"patient_{i:03d}"
            if not (sub / f"RD.seeds{k}.dcm").is_file():
                write_cohort_patient(sub, phantom_seed=i, d90_over_rx=plan_ratios(i, k),
                                     overwrite=True, **PATIENT)  # fmt: skip
    generate_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    r = run_batch(folder / "dicom", table, overwrite=True)
    info = {
        "params": params,
        "generate_s": round(generate_s, 1),
        "dvh_batch_s": round(time.perf_counter() - t0, 1),
        "dvh_batch_counts": r.counts,
    }
    marker.write_text(json.dumps(info, indent=1))
    return table, info


def lesions_of(dvh):
    """One lesion per (patient, plan) of the target: ``L1``... in plan-UID order."""
    import numpy as np

    d = dvh[(dvh["metric"] == "d90_gy") & (dvh["structure"] == TARGET)]
    d = d.sort_values(["patient", "plan"]).reset_index(drop=True)
    d["lesion"] = "L" + (d.groupby("patient").cumcount() + 1).astype(str)
    d["pidx"] = np.unique(d["patient"], return_inverse=True)[1]
    return d[["patient", "lesion", "structure", "plan", "value", "pidx"]]


def write_outcomes(les, seed: int, path: Path) -> None:
    import numpy as np

    from tests.outcomes.simulate import outcomes_for_doses

    oc = outcomes_for_doses(np.random.default_rng(seed), les["value"].to_numpy(float),
                            les["pidx"].to_numpy())  # fmt: skip
    oc.insert(0, "lesion", les["lesion"].to_numpy())
    oc.insert(0, "patient", les["patient"].to_numpy())
    oc.to_csv(path, index=False)


def _est(e: dict, planted: float) -> dict:
    return {"value": e["value"], "ci": [e["ci_low"], e["ci_high"]],
            "covers_planted": e["ci_low"] <= planted <= e["ci_high"]}  # fmt: skip


def headline(dvh_path: Path, les, folder: Path, bootstrap: int, seed: int) -> dict:
    """``brachycryo outcomes --lesion-map`` on one draw of the outcomes."""
    from brachycryo.cli import main as cli
    from tests.outcomes.simulate import Truth

    write_outcomes(les, seed, folder / "outcomes.csv")
    t0, c0 = time.perf_counter(), time.process_time()
    argv = ["outcomes", "--dvh", str(dvh_path), "--outcomes", str(folder / "outcomes.csv"),
            "--lesion-map", str(folder / "map.csv"), "--out", str(folder / "out"),
            "--bootstrap", str(bootstrap), "--control-time-months", "24", "--quiet"]  # fmt: skip
    code = cli(argv)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    if code != 0:
        raise RuntimeError(f"brachycryo outcomes exited {code}")
    doc = json.loads((folder / "out" / "outcomes.json").read_text())
    fit, truth = doc["toxicity"]["fit"], Truth()
    return {
        "outcomes_seed": seed,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "n_lesions": doc["n_lesions"],
        "n_patients": doc["n_patients"],
        "exclusions_outcome_rows": sum(e["source"] != "dvh" for e in doc["exclusions"]),
        "toxicity_events": fit["events"],
        "d50_gy_delta": _est(fit["d50"], truth.d50_gy),
        "d50_gy_bootstrap": _est(fit["d50_bootstrap"], truth.d50_gy),
        "gamma50_delta": _est(fit["gamma50"], truth.gamma50),
        "gamma50_bootstrap": _est(fit["gamma50_bootstrap"], truth.gamma50),
        "bootstrap_resamples": fit["bootstrap_resamples"],
        "bootstrap_failed": fit["bootstrap_failed"],
        "se_robust_over_naive_slope": fit["se_robust"][1] / fit["se_naive"][1],
        "hr_per_10gy": _est(doc["cox"]["hr_per_10gy"], truth.hr_per_10gy),
        "local_progression_events": doc["cox"]["events"],
    }


def replicates(dvh, les, folder: Path, n: int) -> dict:
    """``n`` draws joined through the lesion map and fitted: CI coverage of the planted model."""
    import numpy as np

    from brachycryo.outcomes.data import join_tables, read_lesion_map, read_outcomes
    from brachycryo.outcomes.dose_response import fit_logistic
    from brachycryo.outcomes.survival import fit_cox
    from tests.outcomes.simulate import Truth

    truth, lmap = Truth(), read_lesion_map(folder / "map.csv")
    hits = {"d50": 0, "gamma50": 0, "hr_per_10gy": 0}
    d50s, g50s, hrs = [], [], []
    for r in range(n):
        write_outcomes(les, 10_000 + r, folder / "rep.csv")
        j = join_tables(dvh, read_outcomes(folder / "rep.csv"), lesion_map=lmap)
        f = j.frame
        if len(f) != len(les) or not np.array_equal(f["dose_metric_value"], les["value"]):
            raise RuntimeError("the join did not return the table's D90, lesion by lesion")
        y = (f["toxicity_grade"].to_numpy() >= 3).astype(float)
        fit = fit_logistic(y, f["dose_metric_value"].to_numpy(float), f["patient"].to_numpy(),
                           endpoint="tox", dose_name="d90_gy", bootstrap=0)  # fmt: skip
        cox = fit_cox(f, time="local_time_months", event="local_event",
                      dose="dose_metric_value", cluster="patient")  # fmt: skip
        hits["d50"] += fit.d50.covers(truth.d50_gy)
        hits["gamma50"] += fit.gamma50.covers(truth.gamma50)
        hits["hr_per_10gy"] += cox.hr_per_10gy.covers(truth.hr_per_10gy)
        d50s.append(fit.d50.value)
        g50s.append(fit.gamma50.value)
        hrs.append(cox.hr_per_10gy.value)
    return {
        "replicates": n,
        "ci_covered": hits,
        "coverage": {k: v / n for k, v in hits.items()},
        "mean_estimate": {
            "d50_gy": float(np.mean(d50s)),
            "gamma50": float(np.mean(g50s)),
            "hr_per_10gy": float(np.mean(hrs)),
        },
        "median_estimate": {
            "d50_gy": float(np.median(d50s)),
            "gamma50": float(np.median(g50s)),
            "hr_per_10gy": float(np.median(hrs)),
        },
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--patients", type=int, default=50)
    ap.add_argument("--plans", type=int, default=4)
    ap.add_argument("--replicates", type=int, default=200)
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--workdir", type=Path, default=None, help="cohort cache folder")
    args = ap.parse_args(argv)
    from brachycryo.outcomes.data import read_dvh_table
    from tests.outcomes.simulate import Truth

    before = machine_info()
    folder = args.workdir or _cache_dir(args.patients, args.plans)
    table, info = ensure_table(folder, args.patients, args.plans)
    dvh = read_dvh_table(table)
    les = lesions_of(dvh)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        les[["patient", "lesion", "structure", "plan"]].to_csv(d / "map.csv", index=False)
        head = headline(table, les, d, args.bootstrap, seed=1)
        reps = replicates(dvh, les, d, args.replicates)
    truth = Truth()
    data = {
        "cohort": {
            **info,
            "lesions": len(les),
            "patients": int(les["patient"].nunique()),
            "d90_gy_range": [float(les["value"].min()), float(les["value"].max())],
        },
        "planted": {
            "d50_gy": truth.d50_gy,
            "gamma50": truth.gamma50,
            "hr_per_10gy": truth.hr_per_10gy,
            "within_patient_rho": 0.5,
        },
        "headline": head,
        "replicates": reps,
        "machine_before": before,
        "load_average_1min_after": machine_info().get("load_average_1min"),
    }
    print(write_results("outcomes_end_to_end", data))
    print(json.dumps({"headline": head, "replicates": reps}, indent=1))
    return 0


if __name__ == "__main__" and "--prepare-only" in sys.argv:
    args = sys.argv[1:]
    n_, k_ = int(args[args.index("--patients") + 1]), int(args[args.index("--plans") + 1])
    print(ensure_table(_cache_dir(n_, k_), n_, k_))
    sys.exit(0)

if __name__ == "__main__":
    raise SystemExit(main())
