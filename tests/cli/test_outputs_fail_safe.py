"""Every writing command: outputs that cannot be written are one clear line and a
non-zero exit — before computing where it can be known then — and a failed run leaves no
partial output set and no staging folder (issue 20 item 3)."""

from __future__ import annotations

import errno
import os

import pytest

import brachycryo.core.atomic
from brachycryo.cli import main
from brachycryo.core import staging
from brachycryo.core.staging import STAGING_PREFIX
from tests.cli.test_dose_cli import case  # noqa: F401  (module fixture: CT + RTPLAN)
from tests.qa.analytic_dvh import cases, write_case_files


@pytest.fixture(scope="module")
def dvh_files(tmp_path_factory):
    c = next(c for c in cases() if c.name == "sphere_lin_M")
    return write_case_files(tmp_path_factory.mktemp("failsafe"), c, 2.0)


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def _no_staging_left(folder) -> None:
    assert [p for p in folder.rglob(f"{STAGING_PREFIX}*")] == []


def _must_not_compute(*args, **kwargs):
    raise AssertionError("computed although the output could not be written")


def test_dvh_disk_full_on_the_csv_leaves_neither_file(dvh_files, tmp_path, monkeypatch, capsys):
    real = brachycryo.core.atomic.write_text_atomic

    def full_disk(path, text, **kwargs):
        if str(path).endswith(".csv"):  # the JSON was written; the CSV fills the disk
            with open(path.with_name(".partial"), "w") as f:
                f.write(text[: len(text) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, text, **kwargs)

    monkeypatch.setattr("brachycryo.qa.evaluate.write_text_atomic", full_disk)
    out_json, out_csv = tmp_path / "m.json", tmp_path / "m.csv"
    argv = ["dvh", "--rtdose", str(dvh_files.rtdose), "--rtstruct", str(dvh_files.rtstruct)]
    code = main([*argv, "--json", str(out_json), "--csv", str(out_csv), "--quiet"])
    line = _one_line(capsys.readouterr().err)
    assert code == 1
    assert "No space left on device" in line and str(tmp_path) in line
    assert list(tmp_path.iterdir()) == []  # no JSON without its CSV, nothing partial


def test_dvh_output_naming_a_folder_is_refused_before_computing(
    dvh_files, tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("brachycryo.qa.evaluate.evaluate_files", _must_not_compute)
    argv = ["dvh", "--rtdose", str(dvh_files.rtdose), "--rtstruct", str(dvh_files.rtstruct)]
    code = main([*argv, "--json", str(tmp_path), "--quiet"])
    assert code == 1
    assert f"{tmp_path} is a folder" in _one_line(capsys.readouterr().err)


def test_dose_into_an_unwritable_folder_is_refused_before_computing(
    case,  # noqa: F811
    tmp_path,
    monkeypatch,
    capsys,
):
    root, _, _ = case

    def denied(*args, dir=None, **kwargs):  # what mkdir answers in a read-only folder
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)

    monkeypatch.setattr(staging.tempfile, "mkdtemp", denied)
    monkeypatch.setattr("brachycryo.dose_kernels.dose_on_grid", _must_not_compute)
    out = tmp_path / "RD.dcm"
    code = main(["dose", "--rtplan", str(root / "RP.dcm"), "--ct", str(root / "ct"),
                 "--out", str(out), "--quiet"])  # fmt: skip
    assert code == 1
    assert f"cannot write to {tmp_path}: Permission denied" in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


def test_dose_disk_full_while_writing_leaves_nothing(case, tmp_path, monkeypatch, capsys):  # noqa: F811
    root, _, _ = case

    def full_disk(path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"DICM" * 100)  # part of the file, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("brachycryo.dicom_io.rtdose.write_rtdose", full_disk)
    code = main(["dose", "--rtplan", str(root / "RP.dcm"), "--ct", str(root / "ct"),
                 "--out", str(tmp_path / "RD.dcm"), "--quiet"])  # fmt: skip
    assert code == 1
    assert "No space left on device" in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "argv",
    [
        ["plan", "SPEC", "--out", "FILE", "--quiet"],
        ["demo", "FILE", "--quiet"],
        ["phantom", "FILE", "--quiet"],
        ["iceball", "SPEC", "--out", "FILE", "--quiet"],
        ["postimplant", "--ct", "CT", "--rtstruct", "RS", "--out", "FILE", "--quiet"],
        ["dvh-batch", "COHORT", "--out", "FILE/t.parquet", "--quiet"],
    ],
    ids=lambda a: a[0],
)
def test_out_naming_an_existing_file_is_one_line_before_computing(tmp_path, argv, capsys):
    from tests.planning.test_plan_end_to_end import SPEC, _toml

    (tmp_path / "FILE").write_text("not a folder")
    spec = tmp_path / "spec.toml"
    if argv[0] == "iceball":
        spec.write_text(
            '[medium]\ntissue = "gel"\n[grid]\nspacing_mm = 2.0\nmargin_mm = 10.0\n'
            '[[probe]]\nmodel = "generic_2p4mm"\ntip_mm = [0, 0, -10]\n'
            'direction = [0, 0, 1]\n[[protocol]]\nphase = "freeze"\nminutes = 1\n'
        )
    else:
        spec.write_text(_toml(SPEC))
    subs = {"FILE": str(tmp_path / "FILE"), "SPEC": str(spec), "FILE/t.parquet":
            str(tmp_path / "FILE" / "t.parquet")}  # fmt: skip
    for name in ("CT", "RS", "COHORT"):
        subs[name] = str(tmp_path)
    code = main([subs.get(a, a) for a in argv])
    line = _one_line(capsys.readouterr().err)
    assert code != 0
    assert str(tmp_path / "FILE") in line and "is a file" in line
    assert (tmp_path / "FILE").read_text() == "not a folder"
    _no_staging_left(tmp_path)


def test_phantom_disk_full_leaves_no_partial_case(tmp_path, monkeypatch, capsys):
    """The CT is written, the RTSTRUCT fills the disk: no CT folder without its RTSTRUCT."""
    import brachycryo.phantoms.case as phantom_case

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(phantom_case, "write_rtstruct", full_disk)
    out = tmp_path / "ph"
    code = main(["phantom", str(out), "--spacing-mm", "8", "8", "8", "--quiet"])
    assert code == 1
    assert "No space left on device" in _one_line(capsys.readouterr().err)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "option",
    [["--supersample", "1000"], ["--slice-thickness-mm", "1e-9"], ["--slice-thickness-mm", "1e12"],
     ["--slice-thickness-mm", "nan"]],
)  # fmt: skip
def test_dvh_sampling_that_would_not_fit_in_memory_is_a_usage_error(dvh_files, option, capsys):
    argv = ["dvh", "--rtdose", str(dvh_files.rtdose), "--rtstruct", str(dvh_files.rtstruct)]
    with pytest.raises(SystemExit) as exc:
        main([*argv, *option, "--quiet"])
    assert exc.value.code == 2 and option[0] in capsys.readouterr().err


def test_dvh_batch_into_an_unwritable_folder_is_refused_before_discovery(
    tmp_path, monkeypatch, capsys
):
    def denied(*args, dir=None, **kwargs):  # what mkdir answers in a read-only folder
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)

    monkeypatch.setattr(staging.tempfile, "mkdtemp", denied)
    monkeypatch.setattr("brachycryo.cohort.batch.discover_cohort", _must_not_compute)
    out = tmp_path / "ro" / "t.parquet"
    (tmp_path / "ro").mkdir()
    code = main(["dvh-batch", str(tmp_path), "--out", str(out), "--quiet"])
    line = _one_line(capsys.readouterr().err)
    assert code == 1 and f"cannot write to {tmp_path / 'ro'}: Permission denied" in line
    assert list((tmp_path / "ro").iterdir()) == []  # no parts folder either
