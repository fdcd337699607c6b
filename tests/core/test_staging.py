"""All-or-nothing output sets (brachycryo.core.staging): a failed run leaves everything as
it was, or nothing new, and never a staging folder."""

from __future__ import annotations

import errno
import os

import pytest

from brachycryo.core import staging
from brachycryo.core.errors import OutputExistsError
from brachycryo.core.staging import STAGING_PREFIX, OutputStage, OutputWriteError


def _leftovers(folder) -> list[str]:
    return [p.name for p in folder.rglob(f"{STAGING_PREFIX}*")]


def _tree(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_new_folder_appears_complete(tmp_path):
    out = tmp_path / "a" / "out"
    with OutputStage([out], folders=[out]) as stage:
        staged = stage.path(out)
        (staged / "x.txt").write_text("x")
        (staged / "sub").mkdir()
        (staged / "sub" / "y.txt").write_text("y")
        assert not out.exists()  # nothing at the destination while the run goes on
    assert _tree(out) == {"x.txt": b"x", "sub/y.txt": b"y"}
    assert _leftovers(tmp_path) == []


def test_files_in_two_folders_commit_together(tmp_path):
    a, b = tmp_path / "m.json", tmp_path / "other" / "m.csv"
    with OutputStage([a, b]) as stage:
        stage.path(a).write_text("{}")
        stage.path(b).write_text("csv")
    assert a.read_text() == "{}" and b.read_text() == "csv"
    assert _leftovers(tmp_path) == []


def test_failure_while_computing_leaves_nothing(tmp_path):
    a, b = tmp_path / "new" / "m.json", tmp_path / "new" / "m.csv"
    with pytest.raises(KeyboardInterrupt), OutputStage([a, b]) as stage:
        stage.path(a).write_text("{}")
        raise KeyboardInterrupt
    assert not (tmp_path / "new").exists()  # the folder made for the outputs is gone too
    assert _leftovers(tmp_path) == []


def test_disk_full_midway_is_one_error_and_nothing_written(tmp_path):
    """The second file's write fails with ENOSPC (as a full disk gives it, no filename)."""
    a, b = tmp_path / "m.json", tmp_path / "m.csv"
    with pytest.raises(OutputWriteError, match="No space left on device") as exc:
        with OutputStage([a, b]) as stage:
            stage.path(a).write_text("{}")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    assert str(tmp_path) in str(exc.value) and "nothing was written" in str(exc.value)
    assert list(tmp_path.iterdir()) == []


def test_read_error_of_an_input_is_not_called_a_write_error(tmp_path):
    """An OSError naming a file outside the staging folder (an input) passes unchanged."""
    with pytest.raises(FileNotFoundError), OutputStage([tmp_path / "o.json"]):
        open(tmp_path / "missing-input.dcm", "rb")
    assert list(tmp_path.iterdir()) == []


def test_failed_move_rolls_back_and_restores_replaced_files(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a.dcm", "b.dcm", "c.dcm"):
        (out / name).write_text(f"old {name}")
    before = _tree(out)
    real_replace = os.replace
    calls = []

    def failing_replace(src, dst):
        calls.append(dst)
        if len(calls) == 4:  # a.dcm parked + moved in, b.dcm parked, then b.dcm fails
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_replace(src, dst)

    with pytest.raises(OutputWriteError, match="cannot move the outputs"):
        with OutputStage([out], folders=[out], overwrite=True) as stage:
            for name in ("a.dcm", "b.dcm", "c.dcm"):
                (stage.path(out) / name).write_text(f"new {name}")
            monkeypatch.setattr(staging.os, "replace", failing_replace)
    assert _tree(out) == before
    assert _leftovers(tmp_path) == []


def test_existing_entries_are_replaced_only_with_overwrite(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("keep")
    (out / "a.txt").write_text("old")
    with pytest.raises(OutputExistsError), OutputStage([out], folders=[out]) as stage:
        (stage.path(out) / "a.txt").write_text("new")
    assert (out / "a.txt").read_text() == "old"
    with OutputStage([out], folders=[out], overwrite=True) as stage:
        (stage.path(out) / "a.txt").write_text("new")
    assert _tree(out) == {"keep.txt": b"keep", "a.txt": b"new"}
    assert _leftovers(tmp_path) == []


def test_existing_output_file_refused_before_any_work(tmp_path):
    (tmp_path / "m.json").write_text("old")
    with pytest.raises(OutputExistsError, match="m.json exists"):
        OutputStage([tmp_path / "m.json"]).check()


@pytest.mark.parametrize("kind", ["folder given a file", "file given a folder", "under a file"])
def test_wrong_kind_of_destination_is_one_clear_error(tmp_path, kind):
    f = tmp_path / "file"
    f.write_text("x")
    d = tmp_path / "folder"
    d.mkdir()
    dest, folders = {
        "folder given a file": (f, [f]),
        "file given a folder": (d, []),
        "under a file": (f / "x" / "out.json", []),
    }[kind]
    with pytest.raises(OutputWriteError, match=str(tmp_path)):
        OutputStage([dest], folders=folders, overwrite=True).check()
    assert f.read_text() == "x" and list(d.iterdir()) == []


def test_unwritable_folder_refused_before_any_work(tmp_path, monkeypatch):
    """As a read-only folder answers mkdir (EACCES); patched, because root ignores chmod."""

    def denied(*args, dir=None, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), dir)

    monkeypatch.setattr(staging.tempfile, "mkdtemp", denied)
    with pytest.raises(OutputWriteError, match=f"cannot write to {tmp_path}: Permission denied"):
        with OutputStage([tmp_path / "out"], folders=[tmp_path / "out"]):
            raise AssertionError("the body must not run")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a chmod 0555 folder")
def test_read_only_folder_refused_before_any_work(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputWriteError, match="Permission denied"):
            with OutputStage([ro / "m.json"]):
                raise AssertionError("the body must not run")
    finally:
        ro.chmod(0o755)
    assert list(ro.iterdir()) == []
