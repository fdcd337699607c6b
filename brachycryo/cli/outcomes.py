"""``brachycryo outcomes``: dosimetry-outcome analysis of a cohort, lesions clustered by patient.

Exit status: 0 when the analysis ran (exclusions and skipped analyses are listed in the
outputs and printed); 1 (or the error's own code) on a bad input.
"""

from __future__ import annotations

import argparse

from brachycryo.core.progress import tqdm_callback


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "outcomes",
        help="dose-outcome models (D50/gamma50, Cox HR, KM, cumulative incidence) of a cohort",
        description=(
            "Join the 'brachycryo dvh-batch' table with an outcomes CSV (one row per lesion: "
            "patient, structure, local_event, local_time_months, death, death_time_months, "
            "toxicity_grade, covariates; or 'lesion' instead of 'structure' with --lesion-map; "
            "with a 'zone' column one row per lesion and zone, analysed zone by zone) and fit: "
            "logistic dose-response of grade>=3 "
            "toxicity (and of local control at --control-time-months) with D50, gamma50, "
            "patient-clustered and patient-bootstrap CIs; Cox PH of local progression with "
            "patient-clustered variance (HR per 10 Gy); Kaplan-Meier by dose group; "
            "Aalen-Johansen cumulative incidence with death competing. Writes DIR/"
            "outcomes.json, estimates.csv, exclusions.csv, curves.csv, joined.csv, "
            "outcomes.html. Needs the 'stats' extra."
        ),
    )
    p.add_argument("--dvh", required=True, metavar="TABLE", help="dvh-batch table (.parquet/.csv)")
    p.add_argument("--outcomes", required=True, metavar="CSV", help="one row per lesion")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    p.add_argument(
        "--lesion-map", default=None, metavar="CSV",
        help="patient, lesion, structure [, plan, dose, zone]: locates the outcomes CSV's "
        "lesions in the plans",
    )  # fmt: skip
    p.add_argument("--metric", default="d90_gy", help="DVH metric (default d90_gy)")
    p.add_argument("--toxicity-grade", type=int, default=3, help="grade >= this is an event")
    p.add_argument(
        "--control-time-months", type=float, default=None,
        help="also fit local control at this time (logistic)",
    )  # fmt: skip
    p.add_argument(
        "--cutoff", type=float, default=None,
        help="Kaplan-Meier groups below / at-or-above this metric value (default: tertiles)",
    )  # fmt: skip
    p.add_argument("--covariate", action="append", default=[], help="Cox covariate column")
    p.add_argument("--bootstrap", type=int, default=1000, help="patient resamples (0: none)")
    p.add_argument("--seed", type=int, default=20240601, help="bootstrap / jitter seed")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run, command_name="outcomes")


def run(args: argparse.Namespace) -> int:
    from brachycryo.outcomes.analysis import OutcomesOptions
    from brachycryo.reports.outcomes import run_outcomes

    options = OutcomesOptions(
        metric=args.metric,
        toxicity_grade_min=args.toxicity_grade,
        control_time_months=args.control_time_months,
        cutoff=args.cutoff,
        covariates=tuple(args.covariate),
        bootstrap=args.bootstrap,
        seed=args.seed,
    )
    with tqdm_callback("outcomes", disable=args.quiet) as cb:
        _joined, res = run_outcomes(
            args.dvh, args.outcomes, args.out, options, lesion_map=args.lesion_map,
            overwrite=args.overwrite, progress=cb,
        )  # fmt: skip
    print(
        f"outcomes: {res.n_lesions} lesions of {res.n_patients} patients analysed, "
        f"{len(res.exclusions)} rows excluded (exclusions.csv) -> {args.out}"
    )
    for name, why in sorted(res.skipped.items()):
        print(f"not done: {name}: {why}")
    for part in res.parts():
        zone = f"zone {part.zone}: " if part.zone is not None else ""
        for name, a in (("toxicity", part.toxicity), ("local control", part.local_control)):
            if a is not None:
                d = a.fit.d50
                print(
                    f"{zone}{name}: D50 {d.value:.1f} ({d.ci_low:.1f}-{d.ci_high:.1f}) {res.unit}"
                )
        if part.cox is not None:
            h = part.cox.hr_per_10gy
            print(f"{zone}Cox: HR per 10 Gy {h.value:.3f} ({h.ci_low:.3f}-{h.ci_high:.3f})")
        if part.zone is not None:
            for name, why in sorted(part.skipped.items()):
                print(f"not done: {zone}{name}: {why}")
    return 0
