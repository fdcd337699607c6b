"""An optional wall-clock safety net that fails a run; it never shortens one.

Results must not depend on the machine's speed or load, so no computation here decides
anything from elapsed time: work is bounded by counts (iterations, candidates, simplex
iterations).  A user who wants a run to stop after a while sets ``max_wall_s``; when that
much time has passed, the next :meth:`WallClock.check` raises
:class:`~brachycryo.core.errors.WallClockLimitError` and the run yields no result, never a
quietly worse one.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

from brachycryo.core.errors import WallClockLimitError


@dataclass(frozen=True)
class WallClock:
    """Elapsed time since construction against ``max_wall_s`` (None: no limit)."""

    max_wall_s: float | None = None
    started_s: float = field(default_factory=time.monotonic)

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started_s

    def remaining_s(self) -> float | None:
        """Seconds left before the limit (None without one); never negative."""
        if self.max_wall_s is None:
            return None
        return max(0.0, self.max_wall_s - self.elapsed_s())

    def expired(self) -> bool:
        return self.max_wall_s is not None and self.elapsed_s() > self.max_wall_s

    def check(self, stage: str) -> None:
        """Raise :class:`WallClockLimitError` naming ``stage`` if the limit has passed."""
        if self.expired():
            raise WallClockLimitError(
                f"wall-clock limit max_wall_s = {self.max_wall_s:g} s reached during {stage} "
                f"({self.elapsed_s():.1f} s elapsed); no result was produced (the limit is a "
                "safety net: raise or remove it to let the run finish)"
            )


#: No limit: checks never fire.
NO_LIMIT = WallClock(None)
