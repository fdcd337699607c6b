"""All-or-nothing output sets: a command writes its outputs into a staging folder next to
their destination and moves them in together at the end.

Every command that writes (``phantom``, ``dose``, ``dvh``, ``plan``, ``demo``,
``postimplant``, ``iceball``, ``dvh-batch``) declares its destinations — files, or one
output folder — to :class:`OutputStage` before it computes anything:

>>> with OutputStage([out_dir], overwrite=False) as stage:     # doctest: +SKIP
...     result = compute()                                     # may fail: nothing written
...     write_everything(result, stage.path(out_dir))          # into the staging folder
... # leaving the block moves the staged outputs to out_dir together

What is checked before computing (one :class:`OutputWriteError` line naming the path):
the destination's folder exists or can be created, is a folder, and a staging folder can
be created in it (this is the real write test: ``os.access`` says yes to root on a
read-only mount); an output file is not a folder and an output folder is not a file; an
existing destination is refused without ``overwrite`` (:class:`OutputExistsError`).

The guarantee for a set of files.  ``os.replace`` is atomic for one file or folder on
one file system (POSIX ``rename(2)``); staging next to the destination keeps the rename
on the same file system.  On top of that:

* an output *folder* that does not exist yet appears complete, by one rename of the
  staged folder: no reader ever sees part of it, whatever happens (even SIGKILL);
* files moved into an existing folder (or several file destinations) are renamed one by
  one; if any rename fails, or an exception or Ctrl-C arrives while they are moved, the
  ones already moved are taken back and the files they replaced are put back, so a run
  that fails leaves the destinations as they were.  Only a hard kill (SIGKILL, power
  loss) in the few milliseconds between two renames can leave part of a set in place;
* a failure while computing or writing (disk full, Ctrl-C, a bad input) removes the
  staging folder: nothing of the run is left.  A hard-killed run may leave a
  ``.brachycryo-staging-*`` folder, which no later run reads and which can be deleted.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from brachycryo.core.errors import BrachyCryoError, OutputExistsError

#: Prefix of the staging folders (hidden, next to the destination).
STAGING_PREFIX = ".brachycryo-staging-"

#: errno values that mean "the output cannot be written" rather than a bad input.
_WRITE_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EFBIG, errno.EACCES, errno.EPERM}
)


class OutputWriteError(BrachyCryoError):
    """An output cannot be written (read-only or full disk, not a folder, no permission);
    the message names the path.  Nothing of the run is left behind."""


@dataclass
class _Move:
    staged: Path
    final: Path
    backup: Path | None = None  # where the replaced destination was parked
    done: bool = False


@dataclass
class _Destination:
    final: Path
    is_folder: bool
    staging_dir: Path | None = None
    moves: list[_Move] = field(default_factory=list)

    @property
    def staged(self) -> Path:
        assert self.staging_dir is not None
        return self.staging_dir / self.final.name


def _describe(exc: OSError) -> str:
    return exc.strerror or str(exc)


def _check_folder(folder: Path) -> list[Path]:
    """The folder exists or can be made, and is a folder (not a file); returns the folders
    made for it (deepest first), to be removed again when the run fails."""
    missing = []
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise OutputWriteError(f"cannot write into {folder}: {parent} is a file")
            break
        missing.append(parent)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(missing)
        raise OutputWriteError(
            f"cannot create the output folder {folder}: {_describe(exc)}"
        ) from None
    return missing


def _check_can_create_in(folder: Path) -> None:
    """Create and remove a folder in ``folder``: the write test that tells the truth
    (``os.access`` says yes to root on a read-only mount, no to ACL grants)."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=folder))
    except OSError as exc:
        raise OutputWriteError(f"cannot write to {folder}: {_describe(exc)}") from None


def _remove_empty(folders: list[Path]) -> None:
    for f in folders:  # deepest first
        try:
            f.rmdir()
        except OSError:
            return


def refuse_existing(folder: str | os.PathLike, names, *, overwrite: bool) -> None:
    """:class:`OutputExistsError` before any work when an entry (file or folder) ``names``
    of ``folder`` exists and ``overwrite`` is false."""
    for name in names:
        p = Path(folder) / name
        if not overwrite and (p.exists() or p.is_symlink()):
            raise OutputExistsError(f"{p} exists; pass --overwrite to replace it")


class OutputStage:
    """Stage a command's outputs and move them to their destinations together.

    ``destinations`` are the final paths: files, or folders (``folders`` names which of
    them are folders, i.e. the command writes a whole folder there).  Use as a context
    manager: entering checks every destination and creates the staging folders, leaving
    normally commits (moves everything in), leaving by an exception removes the staging
    folders and turns an ``OSError`` of writing into one :class:`OutputWriteError`.
    """

    def __init__(
        self,
        destinations: Sequence[str | os.PathLike],
        *,
        overwrite: bool = False,
        folders: Sequence[str | os.PathLike] = (),
    ):
        folder_set = {Path(f).absolute() for f in folders}
        self.overwrite = overwrite
        self._dest = {
            Path(d).absolute(): _Destination(Path(d).absolute(), Path(d).absolute() in folder_set)
            for d in destinations
        }
        self._staging_dirs: list[Path] = []
        self._made: list[Path] = []  # parent folders this run created

    # -- before computing -------------------------------------------------------------
    def check(self) -> None:
        """Refuse, before any work, destinations that could not be written."""
        for d in self._dest.values():
            if d.final.exists():
                if d.is_folder and not d.final.is_dir():
                    raise OutputWriteError(f"{d.final} is a file; the output must be a folder")
                if not d.is_folder and d.final.is_dir():
                    raise OutputWriteError(f"{d.final} is a folder; the output must be a file")
                if not d.is_folder and not self.overwrite:
                    raise OutputExistsError(f"{d.final} exists; pass --overwrite to replace it")
            self._made += _check_folder(d.final.parent)
        for folder in {d.final.parent for d in self._dest.values()}:
            _check_can_create_in(folder)

    def __enter__(self) -> OutputStage:
        where = None
        try:
            self.check()
            for d in self._dest.values():
                where = d.final.parent
                d.staging_dir = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=where))
                self._staging_dirs.append(d.staging_dir)
        except OSError as exc:
            self._remove_staging()
            raise OutputWriteError(f"cannot write to {where}: {_describe(exc)}") from None
        except BaseException:
            self._remove_staging()
            raise
        return self

    def path(self, destination: str | os.PathLike) -> Path:
        """Where to write ``destination`` (a declared file or folder) during the run."""
        d = self._dest[Path(destination).absolute()]
        if d.is_folder:
            d.staged.mkdir(exist_ok=True)
        return d.staged

    # -- at the end ---------------------------------------------------------------------
    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self._remove_staging()
            if isinstance(exc, OSError) and self._is_write_error(exc):
                raise OutputWriteError(
                    f"cannot write the outputs to {self._where()}: {_describe(exc)}; "
                    "nothing was written"
                ) from None
            return
        try:
            self._commit()
        except BaseException as exc:
            self._remove_staging()
            if isinstance(exc, OSError):
                raise OutputWriteError(
                    f"cannot move the outputs into {self._where()}: {_describe(exc)}; "
                    "nothing was written"
                ) from None
            raise
        self._remove_staging(failed=False)

    def _where(self) -> str:
        return ", ".join(str(d.final) for d in self._dest.values())

    def _is_write_error(self, exc: OSError) -> bool:
        name = exc.filename
        if name is not None:
            p = Path(os.fsdecode(name)).absolute()
            return any(s == p or s in p.parents for s in self._staging_dirs)
        return exc.errno in _WRITE_ERRNOS

    def _plan_moves(self) -> None:
        """Every staged entry and its destination; clashes are refused before any move."""
        for d in self._dest.values():
            if not d.staged.exists():
                continue  # declared but not written (an optional output)
            if d.is_folder and d.final.exists():
                entries = sorted(d.staged.iterdir())
                d.moves = [_Move(e, d.final / e.name) for e in entries]
            else:
                d.moves = [_Move(d.staged, d.final)]
            for m in d.moves:
                if m.final.exists() and not self.overwrite:
                    raise OutputExistsError(
                        f"{m.final} appeared while the outputs were computed; nothing written"
                    )

    def _commit(self) -> None:
        self._plan_moves()
        moves = [m for d in self._dest.values() for m in d.moves]
        try:
            for m in moves:
                if m.final.exists() or m.final.is_symlink():
                    m.backup = m.staged.parent / f"{STAGING_PREFIX}old-{m.final.name}"
                    os.replace(m.final, m.backup)
                os.replace(m.staged, m.final)
                m.done = True
        except BaseException:
            self._roll_back(moves)
            raise

    @staticmethod
    def _roll_back(moves: list[_Move]) -> None:
        """Take back the moved entries and put back what they replaced."""
        for m in reversed(moves):
            if m.done:
                os.replace(m.final, m.staged)
            if m.backup is not None and m.backup.exists():
                os.replace(m.backup, m.final)

    def _remove_staging(self, *, failed: bool = True) -> None:
        for s in self._staging_dirs:
            shutil.rmtree(s, ignore_errors=True)
        self._staging_dirs = []
        if failed:
            _remove_empty(sorted(self._made, key=lambda p: len(p.parts), reverse=True))
