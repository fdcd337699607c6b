"""One warning channel: Python and pydicom warnings reach the log once, without file paths."""

from __future__ import annotations

import io
import logging
import warnings

from pydicom.misc import warn_and_log

from brachycryo.core.warnings_channel import warning_channel


def _run_with_handler(body) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        with warning_channel():
            body()
    finally:
        root.removeHandler(handler)
    return stream.getvalue()


def test_each_message_once_and_no_file_paths():
    def body():
        for _ in range(3):
            warnings.warn("slice spacing uneven", UserWarning, stacklevel=1)
            warn_and_log("Invalid value for VR DS: 'NaN'")  # pydicom: logged *and* warned
        logging.getLogger("brachycryo.x").warning("volume outside the dose grid")
        logging.getLogger("brachycryo.y").warning("volume outside the dose grid")

    lines = _run_with_handler(body).splitlines()
    assert sum("slice spacing uneven" in x for x in lines) == 1
    assert sum("Invalid value for VR DS" in x for x in lines) == 1
    assert sum("volume outside the dose grid" in x for x in lines) == 1
    assert not any(".py" in x for x in lines), lines  # no "file.py:123: UserWarning"


def test_channel_is_restored_after_the_run():
    before = warnings.showwarning
    _run_with_handler(lambda: None)
    assert warnings.showwarning is before
    assert not any(
        h.filters for h in logging.getLogger().handlers if type(h).__name__ == "StreamHandler"
    )
