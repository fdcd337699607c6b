"""The ``brachycryo outcomes`` page: one self-contained HTML file (PNG plots inlined).

Contents: the cohort counts and exclusions, each logistic dose-response curve with its
pointwise 95 % band over the observed rates in dose-quantile bins (Wilson CIs), the
estimates table (D50, gamma50, HR per 10 Gy with CIs), the Kaplan-Meier curves by dose group
and the Aalen-Johansen cumulative incidence, each with numbers at risk, and what was not
done and why; with zones, these sections once per zone.
"""

from __future__ import annotations

import datetime as _dt
import html
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from brachycryo import __version__
from brachycryo.core.progress import ProgressCallback
from brachycryo.core.staging import OutputStage, refuse_existing
from brachycryo.outcomes.analysis import (
    OUTPUT_NAMES,
    DoseResponseAnalysis,
    OutcomesOptions,
    OutcomesResult,
    analyse,
    write_tables,
)
from brachycryo.outcomes.data import (
    JoinResult,
    join_tables,
    read_dvh_table,
    read_lesion_map,
    read_outcomes,
)
from brachycryo.outcomes.survival import Curve
from brachycryo.reports.html import img_tag
from brachycryo.reports.plots import figure_png
from brachycryo.reports.viewer import html_document

_CSS = (
    "body{font-family:sans-serif;max-width:60em;margin:auto}"
    "table{border-collapse:collapse}td,th{border:1px solid #bbb;padding:2px 6px}"
)


def dose_response_figure(a: DoseResponseAnalysis, metric: str, unit: str) -> Figure:
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    lo_d = min(b.dose_low for b in a.observed)
    hi_d = max(b.dose_high for b in a.observed)
    d = np.linspace(lo_d, hi_d, 200)
    lo, hi = a.fit.band(d)
    ax.fill_between(d, lo, hi, color="C0", alpha=0.25, label="95 % CI (cluster-robust)")
    ax.plot(d, a.fit.probability(d), color="C0", label="logistic fit")
    x = [b.dose_mean for b in a.observed]
    y = [b.rate for b in a.observed]
    err = [[b.rate - b.ci_low for b in a.observed], [b.ci_high - b.rate for b in a.observed]]
    ax.errorbar(x, y, yerr=err, fmt="o", color="k", capsize=3, label="observed (quantile bins)")
    ax.set_xlabel(f"{metric} ({unit})")
    ax.set_ylabel(f"P({a.fit.endpoint})")
    ax.set_ylim(0, 1)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def curves_figure(curves: Sequence[Curve], ylabel: str) -> Figure:
    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot()
    for i, c in enumerate(curves):
        ax.step(c.time_months, c.value, where="post", color=f"C{i}", label=f"{c.label} (n={c.n})")
        ax.fill_between(c.time_months, c.ci_low, c.ci_high, step="post", color=f"C{i}", alpha=0.15)
    ax.set_xlabel("months")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1)
    ax.legend(loc="best", fontsize="small")
    fig.tight_layout()
    return fig


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return html.escape("–" if v is None else str(v))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _at_risk_table(curves: Sequence[Curve]) -> str:
    if not curves:
        return ""
    header = ["months", *(f"{t:.0f}" for t in curves[0].at_risk_times)]
    return "<p>Numbers at risk</p>" + _table(header, [[c.label, *c.at_risk] for c in curves])


def _dose_response_section(title: str, a: DoseResponseAnalysis, res: OutcomesResult) -> str:
    f = a.fit
    c = a.roc.cutoff
    rows = [[q, e.value, e.ci_low, e.ci_high, e.method] for q, e in f.estimates()]
    rows.append([f"ROC cut-off (AUC {a.roc.auc:.2f}, J {a.roc.youden_j:.2f})", c.value,
                 c.ci_low, c.ci_high, c.method])  # fmt: skip
    png = figure_png(dose_response_figure(a, res.metric, res.unit))
    return (
        f"<h2>{html.escape(title)}</h2><p>{html.escape(f.formula)}; n = {f.n} lesions of "
        f"{f.patients} patients, {f.events} events; bootstrap {f.bootstrap_resamples} "
        f"resamples ({f.bootstrap_failed} failed), seed {f.seed}."
        + (f" {len(a.not_evaluable_lines)} lesions not evaluable." if a.not_evaluable_lines else "")
        + "</p>"
        + img_tag(png, title)
        + _table(["quantity", "estimate", "95 % low", "95 % high", "method"], rows)
    )


def _survival_section(res: OutcomesResult) -> str:
    parts = [f"<h2>Zone {html.escape(res.zone)}</h2>"] if res.zone is not None else []
    if res.cox is not None:
        c = res.cox
        hr = c.hr_per_10gy
        parts.append(
            f"<h2>Cox model of local progression</h2><p>{html.escape(c.formula)}; n = {c.n}, "
            f"{c.events} events, {c.patients} patients. HR per 10 Gy = {hr.value:.3g} "
            f"(95 % CI {hr.ci_low:.3g}-{hr.ci_high:.3g}, patient-clustered). "
            "Proportional-hazards test (Grambsch-Therneau) p: "
            + html.escape(", ".join(f"{k} {v:.3g}" for k, v in c.ph_test_p.items()))
            + "</p>"
        )
    if res.km:
        parts.append("<h2>Local progression-free survival by dose group</h2>")
        parts.append(img_tag(figure_png(curves_figure(res.km, "LPFS (Kaplan-Meier)")), "KM"))
        parts.append(_at_risk_table(res.km))
    if res.cif is not None:
        parts.append("<h2>Cumulative incidence of local progression, death competing</h2>")
        fig = curves_figure([res.cif], "cumulative incidence (Aalen-Johansen)")
        parts.append(img_tag(figure_png(fig), "CIF"))
        parts.append(_at_risk_table([res.cif]))
    return "".join(parts)


def build_outcomes_html(res: OutcomesResult) -> str:
    """The page as a string (see the module docstring)."""
    when = _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = [
        "<h1>Dosimetry-outcome analysis</h1>",
        f"<p>brachycryo {html.escape(__version__)}, {when}. Dose metric "
        f"{html.escape(res.metric)} ({html.escape(res.unit)}); {res.n_lesions} lesions of "
        f"{res.n_patients} patients analysed from {res.n_outcome_rows} outcome rows; "
        f"{len(res.exclusions)} rows excluded (exclusions.csv lists each with its reason).</p>",
    ]
    for part in res.parts():
        zone = f" (zone {part.zone}: {part.n_lesions} lesions)" if part.zone is not None else ""
        for title, a in (
            ("Toxicity dose-response", part.toxicity),
            ("Local control dose-response", part.local_control),
        ):
            if a is not None:
                body.append(_dose_response_section(title + zone, a, part))
        body.append(_survival_section(part))
    skipped = [(k, v) for k, v in sorted(res.skipped.items())]
    skipped += [
        (f"{k} (zone {p.zone})", v) for p in res.zones for k, v in sorted(p.skipped.items())
    ]
    if skipped:
        body.append("<h2>Not done</h2>")
        body.append(_table(["analysis", "reason"], skipped))
    return html_document("Outcomes", "".join(body), _CSS)


HTML_NAME = "outcomes.html"


def run_outcomes(
    dvh_table: str | os.PathLike,
    outcomes_csv: str | os.PathLike,
    out_dir: str | os.PathLike,
    options: OutcomesOptions | None = None,
    *,
    lesion_map: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: ProgressCallback | None = None,
) -> tuple[JoinResult, OutcomesResult]:
    """The ``brachycryo outcomes`` API: read and join (through ``lesion_map`` when the
    outcomes CSV names lesions, not ROIs), analyse, and write ``out_dir`` (outcomes.json,
    estimates.csv, exclusions.csv, curves.csv, joined.csv, outcomes.html) all-or-nothing;
    existing outputs are refused before any work unless ``overwrite``."""
    opts = options or OutcomesOptions()
    out = Path(out_dir)
    refuse_existing(out, (*OUTPUT_NAMES, HTML_NAME), overwrite=overwrite)
    with OutputStage([out], folders=[out], overwrite=overwrite) as stage:
        lmap = read_lesion_map(lesion_map) if lesion_map is not None else None
        joined = join_tables(
            read_dvh_table(dvh_table), read_outcomes(outcomes_csv),
            metric=opts.metric, dvh_path=dvh_table,
            lesion_map=lmap, lesion_map_path=lesion_map or "lesion map",
        )  # fmt: skip
        res = analyse(joined, opts, progress=progress)
        staged = stage.path(out)
        write_tables(res, joined, staged)
        (staged / HTML_NAME).write_text(build_outcomes_html(res))
    return joined, res
