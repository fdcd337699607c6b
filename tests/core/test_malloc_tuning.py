"""``keep_freed_memory`` is a harmless hint: idempotent, a bool, and numpy still works."""

from __future__ import annotations

import numpy as np

from brachycryo.core.malloc_tuning import keep_freed_memory


def test_keep_freed_memory_is_idempotent() -> None:
    first = keep_freed_memory()
    assert isinstance(first, bool)
    assert keep_freed_memory() is first
    a = np.arange(5_000_000, dtype=np.float64)  # 40 MB: above glibc's default threshold
    b = a * 2.0
    del a
    assert float(b[-1]) == 2.0 * 4_999_999
