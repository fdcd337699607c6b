"""``brachycryo dvh-batch``: discovery by UID, odd cases, resuming after a kill, Dask = local.

The test cohort (tiny phantom grids) holds, in folders whose names mean nothing:

* patient 0 - one plan (its folder also holds a truncated DICOM file and a text file);
* patient 1 - two plans of one structure set (the second plan and dose in ``misc/``);
* patient 2 - one plan, plus an RTSTRUCT copied into another Frame of Reference (as if
  drawn on an unregistered MR): not used, noted in the unit's warnings;
* patient 3 - an RTDOSE truncated in its pixel data (header readable): the unit fails.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom
import pytest

from brachycryo.cli import main
from brachycryo.cohort.batch import (
    COLUMNS,
    WORKER_ENVIRON,
    BatchOptions,
    local_cluster,
    metric_unit,
    run_batch,
    unit_key,
)
from brachycryo.cohort.discovery import discover_cohort
from brachycryo.core.errors import BackendUnavailableError
from brachycryo.dicom_io.common import new_uid
from brachycryo.phantoms.cohort import write_cohort_patient
from brachycryo.qa.evaluate import evaluate_files

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY = {"spacing_mm": (8.0, 8.0, 10.0), "dose_spacing_mm": 5.0, "seed_spacing_mm": 12.0}
TINY_CT_Z_MM = TINY["spacing_mm"][2]
RX_GY = 145.0


def _clone(src: Path, dest: Path, *, new_for: bool = False, drop: tuple[str, ...] = ()) -> str:
    """Copy a DICOM object under a new SOPInstanceUID (optionally a new Frame of Reference)."""
    ds = pydicom.dcmread(src)
    uid = new_uid()
    ds.SOPInstanceUID = uid
    ds.file_meta.MediaStorageSOPInstanceUID = uid
    for kw in drop:
        if kw in ds:
            delattr(ds, kw)
    if new_for:
        f = new_uid()
        if "FrameOfReferenceUID" in ds:
            ds.FrameOfReferenceUID = f
        for item in ds.get("ReferencedFrameOfReferenceSequence", []):
            item.FrameOfReferenceUID = f
        for item in ds.get("StructureSetROISequence", []):
            item.ReferencedFrameOfReferenceUID = f
    dest.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(dest, enforce_file_format=True)
    return uid


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    root = tmp_path_factory.mktemp("cohort") / "cohort"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = [
            write_cohort_patient(root / "a", phantom_seed=0, **TINY),
            write_cohort_patient(root / "b", phantom_seed=1, d90_over_rx=(1.0, 1.2), **TINY),
            write_cohort_patient(root / "c", phantom_seed=2, **TINY),
            write_cohort_patient(root / "d", phantom_seed=3, **TINY),
        ]
    # patient 1's second plan and dose in a folder that says nothing about the patient
    (root / "misc").mkdir()
    for f in (p[1].rtplans[1], p[1].rtdoses[1]):
        shutil.move(f, root / "misc" / f.name)
    foreign_uid = _clone(p[2].rtstruct, root / "c" / "MR" / "RS.mr.dcm", new_for=True)
    rd = p[3].rtdoses[0]
    data = rd.read_bytes()
    rd.write_bytes(data[: int(len(data) * 0.7)])  # pixel data cut short
    ct_slice = sorted((root / "a" / "CT").glob("*.dcm"))[0]
    (root / "a" / "CT" / "broken.dcm").write_bytes(ct_slice.read_bytes()[:300])
    (root / "a" / "notes.txt").write_text("not DICOM\n")
    return {"root": root, "patients": p, "foreign_uid": foreign_uid}


@pytest.fixture(scope="module")
def full_run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("out") / "metrics.parquet"
    entries = []
    result = run_batch(
        cohort["root"],
        out,
        options=BatchOptions(d_pct=(95.0,), v_gy=(100.0,), target="GTV_Bulky"),
        csv=True,
        on_unit=entries.append,
    )
    return result, entries


def _unit_of(manifest: dict, patient_id: str) -> list[dict]:
    return [u for u in manifest["units"] if u["patient"] == patient_id]


def test_discovery_links_by_uid(cohort):
    idx = discover_cohort(cohort["root"])
    p = cohort["patients"]
    assert idx.patients == sorted(x.patient_id for x in p)
    assert len(idx.units) == 5  # one per RTDOSE
    two = [u for u in idx.units if u.patient == p[1].patient_id]
    assert len(two) == 2 and len({u.plan for u in two}) == 2
    assert {Path(u.rtplan).name for u in two} == {"RP.seeds1.dcm", "RP.seeds2.dcm"}
    for u in two:  # each dose matched to its own plan, both to the one structure set
        assert Path(u.rtdose).name.replace("RD", "RP") == Path(u.rtplan).name
        assert Path(u.rtstruct) == p[1].rtstruct
    (c,) = [u for u in idx.units if u.patient == p[2].patient_id]
    assert Path(c.rtstruct) == p[2].rtstruct
    assert any(cohort["foreign_uid"] in w and "not used" in w for w in c.warnings)
    assert [Path(f).name for f in idx.skipped] == ["notes.txt"]
    assert [Path(f).name for f, _ in idx.unreadable] == ["broken.dcm"]


def test_only_foreign_or_ambiguous_structure_sets_fail_with_reason(cohort, tmp_path):
    a = cohort["patients"][0]
    # dose without plan; only an RTSTRUCT of another frame
    lone = tmp_path / "lone"
    dose_uid = _clone(a.rtdoses[0], lone / "rd.dcm", drop=("ReferencedRTPlanSequence",))
    _clone(a.rtstruct, lone / "rs.dcm", new_for=True)
    (u,) = discover_cohort(lone).units
    assert u.plan == dose_uid and u.rtplan is None
    assert u.error and "no RTSTRUCT in the dose's Frame of Reference" in u.error
    assert "rs.dcm" in u.error
    # two structure sets in the dose's frame and no reference to pick one
    two = tmp_path / "two"
    _clone(a.rtdoses[0], two / "rd.dcm", drop=("ReferencedRTPlanSequence",))
    _clone(a.rtstruct, two / "rs1.dcm")
    _clone(a.rtstruct, two / "rs2.dcm")
    (u,) = discover_cohort(two).units
    assert u.error and "2 RTSTRUCTs" in u.error
    # one structure set in the frame: used, rows keyed by the dose UID
    one = tmp_path / "one"
    dose_uid = _clone(a.rtdoses[0], one / "rd.dcm", drop=("ReferencedRTPlanSequence",))
    _clone(a.rtstruct, one / "rs1.dcm")
    res = run_batch(one, tmp_path / "one.parquet", options=BatchOptions(prescription_gy=RX_GY))
    assert res.counts["ok"] == 1
    assert set(res.table["plan"]) == {dose_uid} == set(res.table["dose"])
    res = run_batch(lone, tmp_path / "lone.parquet")
    assert res.counts["failed"] == 1 and res.counts["ok"] == 0
    assert "Frame of Reference" in res.manifest["units"][0]["reason"]


def test_cohort_table_and_manifest(cohort, full_run):
    result, entries = full_run
    p = cohort["patients"]
    m = result.manifest
    assert m["summary"]["units"] == 5 and m["summary"]["ok"] == 4
    assert m["summary"]["failed"] == 1 and m["summary"]["unreadable_files"] == 1
    (bad,) = [u for u in m["units"] if u["status"] == "failed"]
    assert bad["patient"] == p[3].patient_id
    assert "truncated" in bad["reason"] and str(p[3].rtdoses[0]) in bad["reason"]
    assert m["unreadable_files"][0]["path"].endswith("broken.dcm")
    assert len(entries) == 5  # on_unit saw every unit
    t = result.table
    assert list(t.columns) == list(COLUMNS)
    assert set(t["patient"]) == {x.patient_id for x in p[:3]}
    assert (t["unit"] == t["metric"].map(metric_unit)).all()
    # prescription from each plan
    for u in m["units"][:4]:
        if u["status"] == "ok":
            assert u["prescription_gy"] == RX_GY and u["prescription_source"] == "plan"
    # the odd-but-good patient with a foreign RTSTRUCT: computed, warning in the manifest
    (c,) = _unit_of(m, p[2].patient_id)
    assert c["status"] == "ok" and Path(c["files"]["rtstruct"]) == p[2].rtstruct
    assert any("not used" in w for w in c["warnings"])
    # the table on disk (Parquet and CSV) is the returned one
    pd.testing.assert_frame_equal(pd.read_parquet(result.paths["table"]), t)
    csv = pd.read_csv(result.paths["csv"], dtype={"patient": str})
    assert len(csv) == len(t)
    assert np.allclose(csv["value"], t["value"], rtol=1e-12, equal_nan=True)
    saved = json.loads(result.paths["manifest"].read_text())
    assert saved["summary"] == m["summary"]


def test_two_plans_give_two_sets_of_rows(cohort, full_run):
    t = full_run[0].table
    pid = cohort["patients"][1].patient_id
    d90 = t[(t.patient == pid) & (t.structure == "GTV_Bulky") & (t.metric == "d90_gy")]
    assert len(d90) == 2 and d90["plan"].nunique() == 2
    # the second plan's seeds are 1.2x stronger (same positions): TG-43 dose is linear in
    # S_K, so every dose metric scales by exactly 1.2 (up to the RTDOSE's 32-bit scaling)
    by_plan = {}
    for plan, rows in t[(t.patient == pid) & (t.unit == "Gy")].groupby("plan", sort=False):
        by_plan[plan] = rows.set_index(["structure", "metric"])["value"]
    first, second = by_plan.values()
    if first["GTV_Bulky", "d90_gy"] > second["GTV_Bulky", "d90_gy"]:
        first, second = second, first
    ratio = (second / first)[first > 1.0]
    assert len(ratio) > 20
    np.testing.assert_allclose(ratio, 1.2, rtol=1e-5)


def test_rows_equal_the_single_plan_command(cohort, full_run):
    t = full_run[0].table
    a = cohort["patients"][0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the CT slice spacing: the batch's inferred thickness of single-plane ROIs
        ev = evaluate_files(
            a.rtdoses[0], a.rtstruct, prescription_gy=RX_GY, slice_thickness_mm=TINY_CT_Z_MM
        )
    mine = t[t.patient == a.patient_id]
    checked = 0
    for name, metrics in ev.metrics.items():
        got = mine[mine.structure == name].set_index("metric")["value"]
        for key, value in metrics.items():
            assert got[key] == pytest.approx(np.nan if value is None else value, nan_ok=True)
            checked += 1
    assert checked > 100
    (entry,) = _unit_of(full_run[0].manifest, a.patient_id)
    assert any("one contour plane: slab thickness 10 mm" in w for w in entry["warnings"])
    extras = set(mine[mine.structure == "GTV_Bulky"]["metric"])
    assert {"d95_gy", "v100gy_pct", "v100gy_cc", "ci", "ei", "hi"} <= extras


class _Stop(Exception):
    pass


def test_interrupted_run_resumes_without_recomputing(cohort, full_run, tmp_path):
    out = tmp_path / "m.parquet"
    opts = BatchOptions(d_pct=(95.0,), v_gy=(100.0,), target="GTV_Bulky")
    seen = []

    def stop_after_two(entry):
        seen.append(entry)
        if len(seen) == 2:
            raise _Stop

    with pytest.raises(_Stop):
        run_batch(cohort["root"], out, options=opts, on_unit=stop_after_two)
    assert not out.exists()
    parts = sorted((tmp_path / "m.parts").glob("*.parquet"))
    done_keys = {e["key"] for e in seen if e["status"] == "ok"}
    assert {p.stem for p in parts} == done_keys and done_keys
    mtimes = {p: p.stat().st_mtime_ns for p in parts}
    rerun = []
    res = run_batch(cohort["root"], out, options=opts, on_unit=rerun.append)
    assert {e["key"] for e in rerun}.isdisjoint(done_keys)  # nothing computed twice
    assert {p: p.stat().st_mtime_ns for p in parts} == mtimes
    status = {u["key"]: u["status"] for u in res.manifest["units"]}
    assert {k for k, s in status.items() if s == "resumed"} == done_keys
    pd.testing.assert_frame_equal(res.table, full_run[0].table)
    # a third run computes nothing but the failed unit, which is retried
    again = []
    res = run_batch(cohort["root"], out, options=opts, on_unit=again.append, overwrite=True)
    assert [e["status"] for e in again] == ["failed"]
    assert res.counts["resumed"] == 4


def test_killed_process_resumes(cohort, tmp_path):
    out = tmp_path / "k.parquet"
    parts = tmp_path / "k.parts"
    argv = ["dvh-batch", str(cohort["root"]), "--out", str(out), "--quiet"]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "import sys; from brachycryo.cli import main; sys.exit(main())"]
        + argv,
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any(parts.glob("*.parquet")):
                break
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not out.exists()
    written = {p.stem: p.stat().st_mtime_ns for p in parts.glob("*.parquet")}
    assert written
    assert main(argv) == 1  # one corrupt RTDOSE
    m = json.loads(out.with_suffix(".manifest.json").read_text())
    status = {u["key"]: u["status"] for u in m["units"]}
    assert {k for k, s in status.items() if s == "resumed"} == set(written)
    assert sum(s == "ok" for s in status.values()) == 4 - len(written)
    assert {p.stem: p.stat().st_mtime_ns for p in parts.glob("*.parquet") if p.stem in written} == (
        written
    )


def test_keys_follow_uids_and_options_not_paths(cohort, tmp_path):
    idx = discover_cohort(cohort["root"])
    u = idx.units[0]
    moved = type(u)(**{**u.__dict__, "rtdose": "/elsewhere/x.dcm"})
    assert unit_key(moved, BatchOptions()) == unit_key(u, BatchOptions())
    assert unit_key(u, BatchOptions(d_pct=(95,))) != unit_key(u, BatchOptions())


def test_dask_cluster_gives_the_same_table(cohort, full_run, tmp_path):
    distributed = pytest.importorskip("distributed")
    opts = BatchOptions(d_pct=(95.0,), v_gy=(100.0,), target="GTV_Bulky")
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        env = client.run(lambda: {k: os.environ.get(k) for k in WORKER_ENVIRON})
        assert list(env.values()) == [{"MALLOC_TRIM_THRESHOLD_": None, "MALLOC_ARENA_MAX": "1"}] * 2
        res = run_batch(
            cohort["root"], tmp_path / "dask.parquet", options=opts,
            scheduler=cluster.scheduler_address,
        )  # fmt: skip
    pd.testing.assert_frame_equal(res.table, full_run[0].table)
    local = {u["key"]: (u["status"], u.get("reason")) for u in full_run[0].manifest["units"]}
    assert {u["key"]: (u["status"], u.get("reason")) for u in res.manifest["units"]} == local
    workers = {u["worker"] for u in res.manifest["units"]}
    assert len(workers) >= 1 and all(":" in w for w in workers)


def test_cli_workers_exit_codes_and_outputs(cohort, tmp_path, capsys):
    # a clean two-patient cohort on a local 2-worker cluster: exit 0, CSV written
    clean = tmp_path / "clean"
    for src in ("a", "c"):
        shutil.copytree(cohort["root"] / src, clean / src)
    (clean / "a" / "CT" / "broken.dcm").unlink()
    out = tmp_path / "clean.parquet"
    argv = ["dvh-batch", str(clean), "--out", str(out), "--csv", "--workers", "2", "--quiet"]
    assert main([*argv, "--dx", "95", "--prescription-gy", "120"]) == 0
    text = capsys.readouterr().out
    assert "2 units of 2 patients: 2 computed, 0 resumed, 0 failed" in text
    t = pd.read_parquet(out)
    assert out.with_suffix(".csv").is_file() and "d95_gy" in set(t["metric"])
    m = json.loads(out.with_suffix(".manifest.json").read_text())
    assert {u["prescription_source"] for u in m["units"]} == {"option"}
    # the outputs are not replaced without --overwrite
    assert main(argv) == 1
    assert "exists" in capsys.readouterr().err
    # nothing to evaluate: exit 2
    (tmp_path / "empty").mkdir()
    assert main(["dvh-batch", str(tmp_path / "empty"), "--out", str(tmp_path / "e.parquet")]) == 2


def test_missing_dask_names_the_extra(cohort, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "dask.distributed", None)
    with pytest.raises(BackendUnavailableError, match=r"brachycryo\[dist\]"):
        run_batch(cohort["root"], tmp_path / "x.parquet", workers=2)
    assert not (tmp_path / "x.parts").exists()


def test_a_bad_roi_is_skipped_not_the_plan(cohort, tmp_path):
    a = cohort["patients"][0]
    folder = tmp_path / "p"
    folder.mkdir()
    shutil.copy(a.rtdoses[0], folder / "rd.dcm")
    shutil.copy(a.rtplans[0], folder / "rp.dcm")
    ds = pydicom.dcmread(a.rtstruct)
    number = max(int(r.ROINumber) for r in ds.StructureSetROISequence) + 1
    roi = pydicom.Dataset()
    roi.ROINumber = number
    roi.ReferencedFrameOfReferenceUID = ds.StructureSetROISequence[0].ReferencedFrameOfReferenceUID
    roi.ROIName = "Degenerate"
    roi.ROIGenerationAlgorithm = "MANUAL"
    ds.StructureSetROISequence.append(roi)
    contour = pydicom.Dataset()
    contour.ContourGeometricType = "CLOSED_PLANAR"
    contour.NumberOfContourPoints = 3
    contour.ContourData = [0.0, 0.0, 0.0, 10.0, 0.0, 0.0, 20.0, 0.0, 0.0]  # collinear
    item = pydicom.Dataset()
    item.ReferencedROINumber = number
    item.ROIDisplayColor = [255, 0, 0]
    item.ContourSequence = pydicom.Sequence([contour])
    ds.ROIContourSequence.append(item)
    obs = pydicom.Dataset()
    obs.ObservationNumber = number
    obs.ReferencedROINumber = number
    obs.RTROIInterpretedType = "ORGAN"
    obs.ROIInterpreter = ""
    ds.RTROIObservationsSequence.append(obs)
    ds.save_as(folder / "rs.dcm")
    res = run_batch(folder, tmp_path / "m.parquet")
    (u,) = res.manifest["units"]
    assert u["status"] == "ok" and u["n_structures"] == 13
    assert any("'Degenerate' not evaluated" in w and "zero area" in w for w in u["warnings"])
    assert "Degenerate" not in set(res.table["structure"])


def _interrupt_after_first_part(argv: list[str], parts: Path):
    """Run ``brachycryo`` + ``argv`` with 2 Dask workers in its own process group and send
    SIGINT to the group once the first part is written; (process, stdout, stderr), or
    (None, ...) when the run ended before the interrupt could be sent."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "brachycryo.cli", *argv, "--workers", "2"],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    try:
        deadline = time.monotonic() + 600
        while not any(parts.glob("*.parquet")):
            assert proc.poll() is None, f"no part written: {proc.communicate()}"
            assert time.monotonic() < deadline, "no part written in 600 s"
            time.sleep(0.01)
        if proc.poll() is not None:
            proc.communicate()
            return None, "", ""
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc, stdout, stderr


def test_ctrl_c_on_a_dask_run_is_one_line_exit_130_and_resumable(cohort, tmp_path):
    """SIGINT to the whole process group (as Ctrl-C in a terminal sends it: the workers get
    it too) while a 2-worker cluster runs, with --quiet: exit 130,
    one line on stderr (no Dask logs, no traceback), no table or manifest, only whole
    parts, and a rerun resumes them (issue 20 item 6)."""
    pytest.importorskip("distributed")
    out = tmp_path / "i.parquet"
    parts = tmp_path / "i.parts"
    argv = ["dvh-batch", str(cohort["root"]), "--out", str(out), "--quiet"]
    for _ in range(3):  # on a starved machine the run may end between two looks
        shutil.rmtree(tmp_path)
        tmp_path.mkdir()
        proc, stdout, stderr = _interrupt_after_first_part(argv, parts)
        if proc is not None:
            break
    assert proc is not None, "the run ended before it could be interrupted, three times"
    assert proc.returncode == 130, stderr
    assert stderr.strip() == "brachycryo dvh-batch: interrupted", stderr
    assert stdout == ""
    assert sorted(p.name for p in tmp_path.iterdir()) == ["i.parts"]  # no table, no staging
    tables = {p.stem for p in parts.glob("*.parquet")}
    assert tables and tables <= {p.stem for p in parts.glob("*.json")}  # parts are whole
    assert not list(parts.glob(".*"))
    assert main(argv) == 1  # one corrupt RTDOSE
    m = json.loads(out.with_suffix(".manifest.json").read_text())
    assert {u["key"] for u in m["units"] if u["status"] == "resumed"} == tables


def test_ctrl_c_silences_the_cluster_teardown_then_restores_logging(caplog):
    """Inside the Dask log-level context a SIGINT silences logging before it interrupts
    (what the cluster says while torn down never reaches the terminal), and on leaving
    the context logging and the SIGINT handler are as they were."""
    from brachycryo.cohort.batch import _dask_log_level

    log = logging.getLogger("distributed.client")
    before = signal.getsignal(signal.SIGINT)
    caplog.set_level(logging.WARNING, logger="distributed.client")
    with pytest.raises(KeyboardInterrupt), _dask_log_level(logging.ERROR):
        try:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the handler runs here
        finally:
            log.error("Couldn't gather keys")  # as the scheduler says while torn down
    assert "Couldn't gather keys" not in caplog.text
    assert signal.getsignal(signal.SIGINT) is before
    log.error("after the run")
    assert "after the run" in caplog.text
