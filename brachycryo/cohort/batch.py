"""Cohort DVH extraction: every structure's DVH metrics of every plan, in one tidy table.

:func:`run_batch` (the ``brachycryo dvh-batch`` API) discovers the cohort's work units
(:func:`brachycryo.cohort.discovery.discover_cohort`: one per RTDOSE, linked by UID to its RTPLAN
and RTSTRUCT), evaluates each (:func:`brachycryo.qa.evaluate.load_plan_files` +
:func:`brachycryo.qa.evaluate.evaluate_plan`, metrics of
:func:`brachycryo.qa.metrics.structure_metrics`, the key
names of ``brachycryo dvh --json``) in process or on a ``dask.distributed`` cluster, and
writes

* ``OUT`` (Parquet): one row per (patient, study, plan, dose, structure, metric) with
  columns ``patient`` (PatientID), ``study`` (StudyInstanceUID), ``plan`` (the RTPLAN's
  SOPInstanceUID, or the RTDOSE's when the dose has no plan), ``dose`` (the RTDOSE's
  SOPInstanceUID), ``structure``, ``metric`` (``d90_gy``, ``v100_pct``, ...), ``value``
  (float; NaN where undefined, e.g. D2cc of a 1 cm³ structure or V100 without a
  prescription) and ``unit`` (``Gy``, ``%``, ``cm3``, ``1``).  Units are in (patient,
  study, plan, dose) order, structures in RTSTRUCT order, metrics in the order of the dvh
  command, so the table is the same whatever ran it;
* ``OUT`` with suffix ``.csv`` when asked;
* ``OUT`` with suffix ``.manifest.json``: every unit with its status (``ok``: computed in
  this run; ``resumed``: its part was already there; ``failed``: with the reason), the
  files it used, the prescription and its source, the warnings; the unreadable files; notes.

**Resuming.**  Each unit's rows are written by whoever computed them (a Dask worker or this
process) to ``OUT`` with suffix ``.parts/<key>.parquet`` (atomic rename; its ``.json``
sidecar is written first, so an existing ``.parquet`` is always complete).  ``<key>`` is a
hash of the dose, plan and structure set UIDs and of the options, so a rerun - after a
kill, or with patients added - computes only units without a part; failed units are
retried.  Changing the options gives new keys (old parts are left in place, unused).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import math
import os
import signal
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from brachycryo.cohort.discovery import CohortIndex, WorkUnit, discover_cohort
from brachycryo.core.atomic import atomic_path, write_text_atomic
from brachycryo.core.errors import (
    BackendUnavailableError,
    BrachyCryoError,
    ConfigError,
    FrameOfReferenceError,
    GeometryError,
    StructureError,
)
from brachycryo.core.memory import MemoryBudgetError
from brachycryo.core.progress import ProgressCallback, report
from brachycryo.core.staging import OutputStage
from brachycryo.qa.metrics import (
    DEFAULT_D_CC,
    DEFAULT_D_PCT,
    DEFAULT_V_PCT,
    numeric_indices,
    structure_metrics,
)

#: Columns of the tidy table, in order.
COLUMNS = ("patient", "study", "plan", "dose", "structure", "metric", "value", "unit")
#: Bumped when the content of a part file changes meaning (old parts are then not reused).
PART_FORMAT = 1

_UNIT_BY_SUFFIX = (("_gy", "Gy"), ("_pct", "%"), ("_cc", "cm3"))


def metric_unit(metric: str) -> str:
    """The unit of a metric key: ``d90_gy`` -> Gy, ``v100_pct`` -> %, ``volume_cc`` -> cm3."""
    for suffix, unit in _UNIT_BY_SUFFIX:
        if metric.endswith(suffix):
            return unit
    return "1"  # CI, EI, HI are ratios


def _positive_tuple(values: Iterable[float] | None, key: str) -> tuple[float, ...]:
    out = []
    for v in values or ():
        x = float(v)
        if not math.isfinite(x) or x < 0:
            raise ConfigError(f"values must be finite and >= 0, got {v}", key=key)
        out.append(x)
    return tuple(out)


@dataclass(frozen=True)
class BatchOptions:
    """What is computed for every unit (part of each unit's resume key).

    ``prescription_gy`` None: each plan's own prescription (TargetPrescriptionDose of its
    RTPLAN).  ``d_pct`` / ``d_cc`` / ``v_pct`` / ``v_gy`` add Dx % (D95 -> ``d95_gy``),
    Dx cm³ (``d1cc_gy``), Vx % of the prescription (``v90_pct``) and Vx Gy
    (``v100gy_pct`` and ``v100gy_cc``) to the dvh command's default set.  ``target``: the
    ROI whose CI / EI / HI are added (as rows of that structure), where a patient has it.
    ``supersample``, ``end_caps`` and ``slice_thickness_mm`` are those of ``brachycryo dvh``;
    without ``slice_thickness_mm`` a ROI drawn on a single plane gets the contour-plane
    spacing of its structure set's other ROIs (:func:`structure_set_plane_spacing_mm`).
    """

    prescription_gy: float | None = None
    d_pct: tuple[float, ...] = ()
    d_cc: tuple[float, ...] = ()
    v_pct: tuple[float, ...] = ()
    v_gy: tuple[float, ...] = ()
    target: str | None = None
    supersample: int | None = None
    end_caps: str = "full"
    slice_thickness_mm: float | None = None

    def __post_init__(self) -> None:
        if self.prescription_gy is not None:
            rx = float(self.prescription_gy)
            if not (math.isfinite(rx) and rx > 0):
                raise ConfigError(f"must be > 0, got {rx}", key="prescription_gy")
            object.__setattr__(self, "prescription_gy", rx)
        for key in ("d_pct", "d_cc", "v_pct", "v_gy"):
            object.__setattr__(self, key, _positive_tuple(getattr(self, key), key))
        if any(x > 100 for x in self.d_pct):
            raise ConfigError(f"Dx percentages must be <= 100, got {self.d_pct}", key="d_pct")
        if self.end_caps not in ("full", "half"):
            raise ConfigError(f"must be 'full' or 'half', got {self.end_caps!r}", key="end_caps")
        t = self.slice_thickness_mm
        if t is not None and not (math.isfinite(float(t)) and float(t) > 0):
            raise ConfigError(f"must be > 0, got {t}", key="slice_thickness_mm")
        if self.supersample is not None and int(self.supersample) < 1:
            raise ConfigError(f"must be >= 1, got {self.supersample}", key="supersample")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _merged(defaults: Iterable[float], extra: Iterable[float]) -> tuple[float, ...]:
    return tuple(dict.fromkeys([*map(float, defaults), *map(float, extra)]))


def unit_key(unit: WorkUnit, options: BatchOptions) -> str:
    """Resume key of a unit: a hash of its UIDs and the options (not of file paths)."""
    doc = {
        "format": PART_FORMAT,
        "dose": unit.dose,
        "plan": unit.plan,
        "structure_set": unit.structure_set,
        "options": options.to_json(),
    }
    text = json.dumps(doc, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def structure_set_plane_spacing_mm(rois: Iterable) -> float | None:
    """The median over ``rois`` of each ROI's smallest contour-plane spacing (mm).

    The ROIs of one structure set are drawn on one CT, so this is its slice spacing; None
    when no ROI has two planes.
    """
    from brachycryo.dicom_io.rasterize import contour_stack

    spacings = []
    for roi in rois:
        try:
            h = contour_stack(roi).plane_offsets_mm
        except BrachyCryoError:
            continue
        if h.size > 1:
            spacings.append(float(np.min(np.diff(h))))
    return float(np.median(spacings)) if spacings else None


def _clean(x: float | None) -> float:
    return float("nan") if x is None or not math.isfinite(x) else float(x)


def _plan_prescription(rtplan: str, notes: list[str]) -> tuple[float | None, str]:
    """The prescription of a unit's RTPLAN, or None with the reason noted in ``notes``.

    Only the prescription comes from the plan: a plan that cannot be read (corrupt, a
    photon plan) costs the unit its prescription-relative metrics, never its DVH.
    """
    from brachycryo.dicom_io.rtplan import read_rtplan

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            plan = read_rtplan(rtplan)
    except BrachyCryoError as exc:
        why = f"no prescription from {rtplan}: the plan cannot be read ({exc})"
        notes.append(why)
        return None, why
    notes += [str(w.message) for w in caught]
    if plan.prescription_dose_gy is None:
        return None, f"{rtplan} holds no TargetPrescriptionDose"
    return float(plan.prescription_dose_gy), ""


def _prescription(
    unit: WorkUnit, options: BatchOptions, notes: list[str]
) -> tuple[float | None, str | None, str]:
    """(prescription Gy, its source "option" / "plan" / None, why it is missing or "")."""
    rx = options.prescription_gy
    rx_source: str | None = "option"
    rx_missing = ""
    if rx is None:
        rx_source = None
        rx_missing = "none given and no RTPLAN found for the dose"
        if unit.rtplan:
            rx, rx_missing = _plan_prescription(unit.rtplan, notes)
            rx_source = "plan" if rx is not None else None
        if rx is None:
            notes.append(
                "no prescription (none given and none in an RTPLAN): Vx % of the prescription "
                "and CI / EI / HI are left empty"
            )
    return rx, rx_source, rx_missing


def evaluate_unit(unit: WorkUnit, options: BatchOptions) -> tuple[list[tuple], dict[str, Any]]:
    """The rows of one unit and its manifest details (prescription, warnings).

    Raises a :class:`~brachycryo.core.errors.BrachyCryoError` naming the file when the unit
    cannot be evaluated.
    """
    from brachycryo.dicom_io.rasterize import contour_stack
    from brachycryo.qa.evaluate import evaluate_plan, load_plan_files, volume_rois

    if unit.error:  # discovery found no usable structure set
        raise FrameOfReferenceError(f"{unit.rtdose}: {unit.error}")
    assert unit.rtstruct is not None  # discovery sets an error where it found none
    notes = list(unit.warnings)
    rx, rx_source, rx_missing = _prescription(unit, options, notes)
    dose, structures, read_notes = load_plan_files(unit.rtdose, unit.rtstruct)
    notes += read_notes + list(structures.warnings)
    rois, skipped = volume_rois(structures, None)  # StructureError: two ROIs of one name
    notes += skipped
    if not rois:  # a unit of 0 rows is not a result
        raise StructureError(
            f"{unit.rtstruct} has no ROI with closed contours: nothing to evaluate"
            + (f" ({'; '.join(skipped)})" if skipped else "")
        )
    target = None
    if options.target:
        names = [r.name for r in rois]
        match = [n for n in names if n == options.target] or [
            n for n in names if n.lower() == options.target.lower()
        ]
        if len(match) == 1:
            target = match[0]
        else:
            notes.append(f"target {options.target!r} not among the ROIs {names}; no CI/EI/HI")
    thickness = options.slice_thickness_mm
    inferred: list[float | None] = []  # the structure set's plane spacing, found once
    ident = (unit.patient, unit.study, unit.plan, unit.dose)
    rows: list[tuple] = []
    n_done = 0
    for roi in rois:
        t = thickness
        try:
            if t is None and len(contour_stack(roi).plane_offsets_mm) == 1:
                if not inferred:
                    inferred.append(structure_set_plane_spacing_mm(rois))
                t = inferred[0]
                if t is not None:
                    notes.append(
                        f"ROI {roi.name!r} has one contour plane: slab thickness {t:g} mm, "
                        "the contour-plane spacing of the structure set's other ROIs"
                    )
            ev = evaluate_plan(
                dose.dose_gy,
                dose.grid,
                [roi],
                prescription_gy=rx,
                target=roi.name if roi.name == target else None,
                supersample=options.supersample,
                end_caps=options.end_caps,
                slice_thickness_mm=t,
            )
        except (StructureError, GeometryError) as exc:  # one bad ROI never stops the plan
            notes.append(f"ROI {roi.name!r} not evaluated: {exc}")
            continue
        except MemoryBudgetError as exc:  # the sizes come from these two files' geometry
            raise exc.naming(unit.rtdose, unit.rtstruct) from None
        n_done += 1
        notes += ev.warnings
        metrics = structure_metrics(
            ev.dvhs[roi.name],
            prescription_gy=rx,
            d_pct=_merged(DEFAULT_D_PCT, options.d_pct),
            d_cc=_merged(DEFAULT_D_CC, options.d_cc),
            v_pct=_merged(DEFAULT_V_PCT, options.v_pct),
            v_gy=_merged((), options.v_gy),
        )
        for metric, value in metrics.items():
            rows.append((*ident, roi.name, metric, _clean(value), metric_unit(metric)))
        if ev.indices is not None:
            for metric, index in numeric_indices(ev.indices).items():
                rows.append((*ident, roi.name, metric, _clean(index), metric_unit(metric)))
    if rois and n_done == 0:
        raise StructureError(f"no ROI of {unit.rtstruct} could be evaluated: {notes[-1]}")
    details = {
        "prescription_gy": rx,
        "prescription_source": rx_source,
        **({"prescription_missing": rx_missing} if rx is None else {}),
        "n_structures": n_done,
        "warnings": notes,
    }
    return rows, details


def _frame(rows: list[tuple]):
    import pandas as pd

    df = pd.DataFrame.from_records(rows, columns=list(COLUMNS))
    for c in COLUMNS:
        df[c] = df[c].astype("float64" if c == "value" else "str")
    return df


def _part_paths(parts_dir: Path, key: str) -> tuple[Path, Path]:
    return parts_dir / f"{key}.parquet", parts_dir / f"{key}.json"


def process_unit(unit: WorkUnit, options: BatchOptions, parts_dir: str) -> dict[str, Any]:
    """Evaluate one unit and write its part (runs on a worker); never raises.

    Returns the unit's manifest entry: ``status`` ``ok`` or ``failed`` (with ``reason``).
    """
    key = unit_key(unit, options)
    t0 = time.perf_counter()
    c0 = time.thread_time()
    entry: dict[str, Any] = {
        "key": key,
        "patient": unit.patient,
        "study": unit.study,
        "plan": unit.plan,
        "dose": unit.dose,
        "files": unit.files(),
        "worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    try:
        rows, details = evaluate_unit(unit, options)
        entry.update(details)
        entry["n_rows"] = len(rows)
        entry["seconds"] = round(time.perf_counter() - t0, 3)
        entry["cpu_seconds"] = round(time.thread_time() - c0, 3)
        parquet, sidecar = _part_paths(Path(parts_dir), key)
        parquet.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(sidecar, json.dumps(entry, indent=1) + "\n", overwrite=True)
        with atomic_path(parquet, overwrite=True) as tmp:
            _frame(rows).to_parquet(tmp, index=False)
        entry["status"] = "ok"
    except Exception as exc:  # one broken unit never stops the cohort
        reason = str(exc) if isinstance(exc, BrachyCryoError) else f"{type(exc).__name__}: {exc}"
        entry.update(
            status="failed",
            reason=reason,
            warnings=list(unit.warnings),
            seconds=round(time.perf_counter() - t0, 3),
        )
    return entry


def _resumed_entry(unit: WorkUnit, options: BatchOptions, parts_dir: Path) -> dict | None:
    key = unit_key(unit, options)
    parquet, sidecar = _part_paths(parts_dir, key)
    if not parquet.is_file():
        return None
    try:
        entry = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None  # a part without its details is recomputed
    entry["files"] = unit.files()
    entry["status"] = "resumed"
    return entry


@dataclass
class BatchResult:
    """What :func:`run_batch` wrote and found."""

    table: Any  # pandas.DataFrame
    manifest: dict[str, Any]
    paths: dict[str, Path] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.manifest["summary"])


def output_paths(out: str | os.PathLike, *, csv: bool = False) -> dict[str, Path]:
    """Where :func:`run_batch` writes: table, manifest, parts folder (and CSV)."""
    p = Path(out)
    paths = {
        "table": p,
        "manifest": p.with_suffix(".manifest.json"),
        "parts": p.with_suffix(".parts"),
    }
    if csv:
        paths["csv"] = p.with_suffix(".csv")
    return paths


def _dask():
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError as exc:
        raise BackendUnavailableError(
            "parallel runs (workers > 1 or a scheduler address) need dask.distributed: "
            "install the 'dist' extra (pip install 'brachycryo[dist]')"
        ) from exc
    return Client, LocalCluster, as_completed


#: Environment of the worker processes of :func:`local_cluster`.  Dask's default sets
#: ``MALLOC_TRIM_THRESHOLD_=65536``, which switches off glibc's dynamic mmap threshold, and
#: runs tasks in a thread with its own malloc arena: every large numpy temporary of the DVH
#: code is then a fresh ``mmap`` and page-faulted in.  Measured on the benchmark cohort
#: (one unit, same machine): ~2.5e5-5e5 minor page faults and 1-2 s system time per unit
#: against ~2e4 and 0.1-0.6 s in a plain process; with one arena and glibc's own trimming
#: (this setting) a worker runs as fast as a plain process.
WORKER_ENVIRON = {"MALLOC_TRIM_THRESHOLD_": None, "MALLOC_ARENA_MAX": 1}


@contextlib.contextmanager
def _workers_ignore_ctrl_c() -> Iterator[None]:
    """Start worker processes with SIGINT ignored (a disposition a child keeps across
    ``exec``, and Python then installs no KeyboardInterrupt handler): Ctrl-C reaches every
    process of the terminal's process group, and a worker interrupted mid-task would hang
    the cluster's shutdown.  This process alone handles Ctrl-C and closes the cluster."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, before)


def local_cluster(n_workers: int, *, log_level: int | None = None):
    """A ``LocalCluster`` of ``n_workers`` single-thread processes set up for DVH work;
    ``log_level`` (e.g. ``logging.ERROR``) is the level of the workers' Dask loggers
    (through ``DASK_LOGGING__DISTRIBUTED``, read by Dask as each worker starts)."""
    import dask

    _, LocalCluster, _ = _dask()
    environ = {**dask.config.get("distributed.nanny.pre-spawn-environ", {}), **WORKER_ENVIRON}
    if log_level is not None:  # errors only: critical (a shutdown after Ctrl-C makes the
        # workers log the scheduler's going away as errors; units' failures are in the manifest)
        worker_level = logging.CRITICAL if log_level >= logging.ERROR else log_level
        environ["DASK_LOGGING__DISTRIBUTED"] = logging.getLevelName(worker_level).lower()
    with (
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ}),
        _workers_ignore_ctrl_c(),
    ):
        return LocalCluster(
            n_workers=n_workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            # no dashboard; the scheduler's HTTP server (health, metrics) on a free port,
            # not 8787, which another cluster on the machine may hold (a warning then)
            scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"},
        )


def _run_dask(
    units: list[WorkUnit],
    options: BatchOptions,
    parts_dir: Path,
    *,
    workers: int,
    scheduler: str | None,
    done: Callable[[dict], None],
    log_level: int | None = None,
) -> None:
    _dask()
    with _dask_log_level(log_level):
        _submit_and_collect(
            units, options, parts_dir, workers=workers, scheduler=scheduler, done=done,
            log_level=log_level,
        )  # fmt: skip


@contextlib.contextmanager
def _dask_log_level(level: int | None) -> Iterator[None]:
    """Hold the ``distributed`` loggers at ``level`` (None: leave them): Dask sets them to
    INFO, and a cluster's start and stop would otherwise fill the terminal.

    With a level, a Ctrl-C also silences logging until the cluster is closed: the run is
    abandoned, and what the cluster says while it is torn down is noise (the scheduler's
    "Couldn't gather keys", the client's "rescheduling", and distributed's own ``sync``
    cancel callback failing with NameError in the event-loop thread when the interrupt
    lands before its future exists, logged by tornado).  The SIGINT handler silences first
    and then raises KeyboardInterrupt as Python's default one does, so nothing is logged
    between the interrupt and the close; logging is restored when the context exits."""
    logger = logging.getLogger("distributed")
    before, disabled = logger.level, logging.root.manager.disable
    handler = None
    if level is not None:
        logger.setLevel(level)
        if threading.current_thread() is threading.main_thread():
            handler = signal.signal(signal.SIGINT, _silence_and_interrupt)
    try:
        yield
    finally:
        logger.setLevel(before)
        if handler is not None:
            signal.signal(signal.SIGINT, handler)
            logging.disable(disabled)


def _silence_and_interrupt(signum: int, frame: object) -> None:
    """SIGINT while a cluster runs: silence logging, then interrupt (``_dask_log_level``)."""
    logging.disable(logging.CRITICAL)
    raise KeyboardInterrupt


def _submit_and_collect(
    units: list[WorkUnit],
    options: BatchOptions,
    parts_dir: Path,
    *,
    workers: int,
    scheduler: str | None,
    done: Callable[[dict], None],
    log_level: int | None,
) -> None:
    Client, _, as_completed = _dask()
    cluster = None
    if scheduler:
        client = Client(scheduler)
    else:
        cluster = local_cluster(workers, log_level=log_level)
        client = Client(cluster)
    try:
        futures = {
            client.submit(
                process_unit,
                u,
                options,
                str(parts_dir),
                key=f"dvh-batch-{unit_key(u, options)}",
                pure=False,
            ): u
            for u in units
        }
        for fut in as_completed(futures):
            unit = futures[fut]
            try:
                entry = fut.result()
            except Exception as exc:  # the worker died (e.g. out of memory), not the unit
                entry = {
                    "key": unit_key(unit, options),
                    "patient": unit.patient,
                    "study": unit.study,
                    "plan": unit.plan,
                    "dose": unit.dose,
                    "files": unit.files(),
                    "status": "failed",
                    "reason": f"the Dask task failed ({type(exc).__name__}: {exc})",
                    "warnings": list(unit.warnings),
                }
            done(entry)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()


def assemble_table(units: Iterable[WorkUnit], options: BatchOptions, parts_dir: Path):
    """The tidy table from the parts of ``units`` (those with a part), in unit order."""
    import pandas as pd

    frames = []
    for u in sorted(units, key=lambda u: u.sort_key):
        parquet, _ = _part_paths(parts_dir, unit_key(u, options))
        if parquet.is_file():
            frames.append(pd.read_parquet(parquet))
    if not frames:
        return _frame([])
    return pd.concat(frames, ignore_index=True)


def run_batch(
    cohort_dir: str | os.PathLike,
    out: str | os.PathLike,
    *,
    options: BatchOptions | None = None,
    workers: int = 1,
    scheduler: str | None = None,
    csv: bool = False,
    overwrite: bool = False,
    resume: bool = True,
    progress: ProgressCallback | None = None,
    on_unit: Callable[[dict[str, Any]], None] | None = None,
    dask_log_level: int | None = None,
) -> BatchResult:
    """DVH metrics of every plan of the cohort below ``cohort_dir`` (see module docstring).

    ``workers`` 1 with no ``scheduler`` runs in this process (no Dask); ``workers`` > 1
    starts a local ``dask.distributed.LocalCluster`` of that many single-thread worker
    processes; ``scheduler`` (e.g. ``tcp://host:8786``) uses an existing cluster, whose
    workers must see ``cohort_dir`` and the output folder at the same paths.
    ``resume=False`` recomputes units whose part exists.  ``on_unit`` is called with each
    unit's manifest entry as it completes (an exception raised there stops the run; the
    parts written so far stay, so a rerun resumes).  ``dask_log_level`` (e.g.
    ``logging.ERROR``) holds Dask's loggers at that level while the cluster runs.

    The table, its CSV and the manifest are staged and appear together, or none of them
    (:mod:`brachycryo.core.staging`); the parts are the resume state, each written
    atomically (sidecar, then table), so an interrupted run (Ctrl-C, a kill) leaves no
    table and only whole parts.
    """
    options = options or BatchOptions()
    if int(workers) < 1:
        raise ConfigError(f"must be >= 1, got {workers}", key="workers")
    if scheduler and int(workers) != 1:
        raise ConfigError("give either workers (a local cluster) or a scheduler", key="workers")
    paths = output_paths(out, csv=csv)
    if paths["table"].suffix.lower() != ".parquet":
        raise ConfigError(f"the output must be a .parquet file, got {paths['table']}", key="out")
    finals = [paths[kind] for kind in ("table", "manifest", "csv") if kind in paths]
    stage = OutputStage(finals, overwrite=overwrite)
    stage.check()  # before the discovery: one clear line when they cannot be written
    if scheduler or workers > 1:
        _dask()  # fail before the discovery if dask is missing
    import pandas  # noqa: F401  (the dist extra; fail early)

    cohort: CohortIndex = discover_cohort(cohort_dir)
    parts_dir = paths["parts"]
    parts_dir.mkdir(parents=True, exist_ok=True)
    for stale in parts_dir.glob(".*.tmp"):  # left by a process killed while writing
        stale.unlink(missing_ok=True)
    entries: dict[str, dict] = {}
    todo: list[WorkUnit] = []
    for u in cohort.units:
        entry = _resumed_entry(u, options, parts_dir) if resume else None
        if entry is not None:
            entries[entry["key"]] = entry
        else:
            todo.append(u)
    total = max(1, len(cohort.units))
    report(progress, len(entries) / total, f"{len(entries)} units resumed")

    def done(entry: dict) -> None:
        entries[entry["key"]] = entry
        report(progress, len(entries) / total, f"{entry['patient']} {entry['status']}")
        if on_unit is not None:
            on_unit(entry)

    if todo and (scheduler or workers > 1):
        _run_dask(
            todo, options, parts_dir, workers=workers, scheduler=scheduler, done=done,
            log_level=dask_log_level,
        )  # fmt: skip
    else:
        for u in todo:
            done(process_unit(u, options, str(parts_dir)))

    table = assemble_table(
        [u for u in cohort.units if entries[unit_key(u, options)]["status"] != "failed"],
        options,
        parts_dir,
    )
    units_out = [entries[unit_key(u, options)] for u in cohort.units]
    summary = {
        "units": len(units_out),
        "ok": sum(e["status"] == "ok" for e in units_out),
        "resumed": sum(e["status"] == "resumed" for e in units_out),
        "failed": sum(e["status"] == "failed" for e in units_out),
        "patients": len(cohort.patients),
        "rows": len(table),
        "unreadable_files": len(cohort.unreadable),
        "skipped_files": len(cohort.skipped),
    }
    manifest = {
        "cohort": str(cohort_dir),
        "output": str(paths["table"]),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "options": options.to_json(),
        "execution": {"workers": workers, "scheduler": scheduler},
        "summary": summary,
        "units": units_out,
        "unreadable_files": [{"path": p, "reason": r} for p, r in cohort.unreadable],
        "skipped_files": cohort.skipped,
        "notes": cohort.notes,
    }
    with stage:  # table, CSV and manifest appear together, or none of them
        table.to_parquet(stage.path(paths["table"]), index=False)
        if csv:
            table.to_csv(stage.path(paths["csv"]), index=False)
        text = json.dumps(manifest, indent=2) + "\n"
        stage.path(paths["manifest"]).write_text(text, encoding="utf-8")
    report(progress, 1.0, "done")
    return BatchResult(table=table, manifest=manifest, paths=paths)


__all__ = [
    "COLUMNS",
    "BatchOptions",
    "BatchResult",
    "assemble_table",
    "evaluate_unit",
    "local_cluster",
    "metric_unit",
    "output_paths",
    "process_unit",
    "run_batch",
    "unit_key",
]
