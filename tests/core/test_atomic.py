"""Atomic output files: all or nothing, never overwriting unasked, and the umask honoured."""

import os
import stat

import pytest

from brachycryo.core.atomic import atomic_path, new_file_mode, write_text_atomic
from brachycryo.core.errors import OutputExistsError


@pytest.fixture
def umask():
    """Set a umask for one test and put the old one back."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize(("mask", "mode"), [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_files_honour_the_umask(tmp_path, umask, mask, mode):
    umask(mask)
    assert new_file_mode() == mode
    path = write_text_atomic(tmp_path / "metrics.json", "{}")
    assert stat.S_IMODE(path.stat().st_mode) == mode
    with atomic_path(tmp_path / "RD.dcm") as tmp:  # a writer that opens the temp file itself
        tmp.write_bytes(b"DICM")
    assert stat.S_IMODE((tmp_path / "RD.dcm").stat().st_mode) == mode


def test_an_existing_file_is_kept_unless_overwrite(tmp_path):
    path = write_text_atomic(tmp_path / "a.txt", "first")
    with pytest.raises(OutputExistsError, match="a.txt exists"):
        write_text_atomic(path, "second")
    assert path.read_text() == "first"
    write_text_atomic(path, "second", overwrite=True)
    assert path.read_text() == "second"


def test_a_failed_write_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError), atomic_path(tmp_path / "b.txt") as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer failed")
    assert list(tmp_path.iterdir()) == []
