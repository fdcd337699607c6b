"""One warning channel for a command run: Python warnings go to logging, each said once.

Without it a run's stderr mixes three channels: Python warnings printed with the file path
and line of the code that raised them, log records, and pydicom's warnings, which pydicom
sends to both (``pydicom.misc.warn_and_log``: its logger *and* ``warnings.warn``), once per
element or file.  Inside :func:`warning_channel`:

* every Python warning becomes a log record of the ``brachycryo.warnings`` logger carrying
  only its message (no file path, no source line);
* a message already emitted in the run is not emitted again, whatever logger or channel it
  comes through (so pydicom's logged-and-warned message appears once, and the same
  message for each of 200 CT slices appears once).
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

#: Logger that carries Python warnings inside :func:`warning_channel`.
WARNINGS_LOGGER = "brachycryo.warnings"


class OncePerRun(logging.Filter):
    """Pass a record only the first time its message text is seen."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage().strip()
        with self._lock:
            if text in self._seen:
                return False
            self._seen.add(text)
        return True


@contextmanager
def warning_channel() -> Iterator[None]:
    """Route Python warnings to logging and say each message once until the block ends.

    A once-filter sits on each of the root logger's handlers (where every logger's records
    end up), so it also drops repeats among log records.  Everything is restored on exit.
    """
    log = logging.getLogger(WARNINGS_LOGGER)
    handlers = list(logging.getLogger().handlers)
    # one filter per handler: a record goes through every handler, each must see it once
    filters = {h: OncePerRun() for h in handlers}
    saved_show = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        del category, filename, lineno, file, line  # the message alone is for the user
        log.warning("%s", message)

    for h, once in filters.items():
        h.addFilter(once)
    with warnings.catch_warnings():
        warnings.simplefilter("always")  # repeats are dropped by the once-filter instead
        warnings.showwarning = show
        try:
            yield
        finally:
            warnings.showwarning = saved_show
            for h, once in filters.items():
                h.removeFilter(once)


__all__ = ["WARNINGS_LOGGER", "OncePerRun", "warning_channel"]
