"""Progress reporting: the API takes a callback, the CLI turns it into a progress bar.

A progress callback is any callable ``callback(fraction: float, message: str) -> None`` with
``fraction`` in [0, 1].  Library code never prints; it calls the callback when one is given.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

ProgressCallback = Callable[[float, str], None]


def report(callback: ProgressCallback | None, fraction: float, message: str = "") -> None:
    """Call ``callback`` if there is one, clamping the fraction to [0, 1]."""
    if callback is not None:
        callback(min(1.0, max(0.0, float(fraction))), message)


def scaled(callback: ProgressCallback | None, start: float, stop: float) -> ProgressCallback | None:
    """A callback that maps a sub-task's [0, 1] onto [start, stop] of the parent's."""
    if callback is None:
        return None

    def inner(fraction: float, message: str) -> None:
        report(callback, start + (stop - start) * fraction, message)

    return inner


@contextlib.contextmanager
def tqdm_callback(description: str, *, disable: bool = False) -> Iterator[ProgressCallback]:
    """A progress callback drawing a tqdm bar on stderr (for the CLI)."""
    from tqdm import tqdm

    bar = tqdm(total=1000, desc=description, disable=disable, leave=True, unit="‰")

    def callback(fraction: float, message: str) -> None:
        target = round(1000 * fraction)
        if target > bar.n:
            bar.update(target - bar.n)
        if message:
            bar.set_postfix_str(message, refresh=False)

    try:
        yield callback
    finally:
        if bar.n < 1000:
            bar.update(1000 - bar.n)
        bar.close()
