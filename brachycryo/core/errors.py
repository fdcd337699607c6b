"""One exception hierarchy for the whole project.

Every error a user can provoke with bad input derives from :class:`BrachyCryoError` and
names what is wrong: the file, the DICOM tag, the structure, the config key or the
constraint.  Code that catches ``BrachyCryoError`` therefore catches every input problem
and nothing else (a bug still surfaces as its own exception type).
"""

from __future__ import annotations

from os import PathLike


class BrachyCryoError(Exception):
    """Base class of every error brachycryo raises on purpose."""

    #: Exit status of the ``brachycryo`` command when this error ends it.
    exit_code: int = 1


class DicomInputError(BrachyCryoError):
    """A DICOM file cannot be used: unreadable, wrong modality, missing or bad tag.

    The message always names the file and, where one is involved, the tag keyword.
    """

    def __init__(self, message: str, *, path: str | PathLike | None = None, tag: str | None = None):
        self.path = None if path is None else str(path)
        self.tag = tag
        where = []
        if self.path is not None:
            where.append(f"file {self.path}")
        if tag is not None:
            where.append(f"tag {tag}")
        prefix = f"[{'; '.join(where)}] " if where else ""
        super().__init__(prefix + message)


class SeriesError(DicomInputError):
    """An image series is inconsistent: missing or duplicated slice, tilt, mixed frames."""


class FrameOfReferenceError(BrachyCryoError):
    """Two objects that must share a Frame of Reference do not."""


class StructureError(BrachyCryoError):
    """A structure (ROI) or one of its contours is unusable; the message names the ROI."""

    def __init__(self, message: str, *, roi: str | None = None):
        self.roi = roi
        prefix = f"[ROI {roi!r}] " if roi is not None else ""
        super().__init__(prefix + message)


class GeometryError(BrachyCryoError):
    """A grid, direction matrix or position is invalid (non-orthonormal, NaN, outside)."""


class ConfigError(BrachyCryoError):
    """A configuration value is invalid; the message names the key and why."""

    def __init__(self, message: str, *, key: str | None = None):
        self.key = key
        prefix = f"[config key {key!r}] " if key is not None else ""
        super().__init__(prefix + message)


class DataModelError(BrachyCryoError):
    """A packaged or user-supplied data table (seed model, probe, tissue) is invalid."""


class BackendUnavailableError(BrachyCryoError):
    """A compute backend was asked for explicitly but cannot run here."""


class OutputExistsError(BrachyCryoError):
    """An output file exists and overwriting was not asked for."""


class InfeasiblePlanError(BrachyCryoError):
    """A plan request cannot be met; ``binding`` lists the constraints that bind.

    The ``brachycryo`` command exits with 3, as for a plan that misses its goals."""

    exit_code = 3

    def __init__(self, message: str, *, binding: list | None = None, best: dict | None = None):
        self.binding = list(binding or [])
        self.best = dict(best or {})
        super().__init__(message)


class WallClockLimitError(BrachyCryoError):
    """The optional wall-clock safety net (``[optimizer] max_wall_s``) fired.

    Work is never cut short by the clock: results are the same on any machine.  This error
    only says that a run took longer than the user allowed; it produces no result at all.
    """

    exit_code = 4
