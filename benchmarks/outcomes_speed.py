"""``brachycryo outcomes`` speed: 10,000 lesions, 1,000 patient-bootstrap resamples.

The cohort: :func:`tests.outcomes.simulate.simulate` (planted logistic toxicity with
D50 = 140 Gy, gamma50 = 2; HR 0.8 per 10 Gy; 1-5 lesions per patient), written as a Parquet
dvh-batch-like table and an outcomes CSV.  Timed: the whole
:func:`brachycryo.reports.outcomes.run_outcomes` call (read, join, toxicity logistic with
bootstrap, Cox, KM, Aalen-Johansen, outputs and page), wall clock and this process's CPU
seconds; the machine's load average is recorded (it is shared).  Issue 17 asks <= 60 s on
2 cores.

Run: ``python -m benchmarks.outcomes_speed [--lesions 10000] [--bootstrap 1000]``
-> ``benchmarks/results/outcomes_speed.json``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import machine_info, write_results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lesions", type=int, default=10_000)
    ap.add_argument("--bootstrap", type=int, default=1000)
    args = ap.parse_args(argv)

    from brachycryo.outcomes.analysis import OutcomesOptions
    from brachycryo.reports.outcomes import run_outcomes
    from tests.outcomes.simulate import Truth, simulate

    before = machine_info()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        dvh, oc = simulate(args.lesions, seed=0)
        dvh.to_parquet(d / "table.parquet", index=False)
        oc.to_csv(d / "outcomes.csv", index=False)
        wall0, cpu0 = time.perf_counter(), time.process_time()
        _, res = run_outcomes(
            d / "table.parquet", d / "outcomes.csv", d / "out",
            OutcomesOptions(bootstrap=args.bootstrap),
        )  # fmt: skip
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    assert res.toxicity is not None and res.cox is not None
    fit = res.toxicity.fit
    data = {
        "lesions": args.lesions,
        "patients": res.n_patients,
        "bootstrap_resamples": args.bootstrap,
        "bootstrap_failed": fit.bootstrap_failed,
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 2),
        "d50_gy": [fit.d50.value, fit.d50.ci_low, fit.d50.ci_high],
        "d50_bootstrap_gy": [fit.d50_bootstrap.ci_low, fit.d50_bootstrap.ci_high]
        if fit.d50_bootstrap
        else None,
        "gamma50": [fit.gamma50.value, fit.gamma50.ci_low, fit.gamma50.ci_high],
        "hr_per_10gy": [
            res.cox.hr_per_10gy.value,
            res.cox.hr_per_10gy.ci_low,
            res.cox.hr_per_10gy.ci_high,
        ],
        "planted": {
            "d50_gy": Truth().d50_gy,
            "gamma50": Truth().gamma50,
            "hr_per_10gy": Truth().hr_per_10gy,
        },
        "machine_before": before,
        "load_average_1min_after": machine_info().get("load_average_1min"),
    }
    print(write_results("outcomes_speed", data))
    print(data)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
