"""Atomic output files: write to a temporary file beside the target, then rename.

A reader never sees a half-written file, a crash leaves the old file (or nothing) in
place, and an existing file is only replaced when the caller says ``overwrite=True``.
The finished file gets the permissions a plain ``open(path, "w")`` would give it
(0666 less the process umask, e.g. 0644 under umask 022), not ``mkstemp``'s private 0600,
so that an import service running as another user can read the plans we write.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from brachycryo.core.errors import OutputExistsError


def _umask() -> int:
    """The process umask, read without changing it where the system says it (Linux)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # elsewhere: the classic set-and-restore
    os.umask(mask)
    return mask


def new_file_mode() -> int:
    """Permission bits of a newly created regular file: 0666 less the umask."""
    return 0o666 & ~_umask()


def check_writable(path: str | os.PathLike, *, overwrite: bool) -> Path:
    """Raise :class:`OutputExistsError` if ``path`` exists and ``overwrite`` is False."""
    p = Path(path)
    if p.exists() and not overwrite:
        raise OutputExistsError(f"{p} exists; pass overwrite=True (CLI: --overwrite) to replace it")
    if p.exists() and p.is_dir():
        raise OutputExistsError(f"{p} is a directory, not a file")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto ``path``.

    >>> with atomic_path("out.dcm", overwrite=True) as tmp:   # doctest: +SKIP
    ...     dataset.save_as(tmp)
    """
    target = check_writable(path, overwrite=overwrite)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if not overwrite and target.exists():
            raise OutputExistsError(f"{target} appeared while it was being written")
        os.chmod(tmp, new_file_mode())
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text_atomic(path: str | os.PathLike, text: str, *, overwrite: bool = False) -> Path:
    with atomic_path(path, overwrite=overwrite) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)
