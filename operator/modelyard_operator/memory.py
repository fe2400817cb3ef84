"""Give freed heap memory back to the operating system after bursts of work.

Reconciling a thousand ModelDeployments parses thousands of API responses on a pool of
threads. CPython frees those objects, but glibc keeps the pages in its arenas, so a process
that once handled a burst (a mass creation, a restart's full resync) stays at its peak RSS.
``malloc_trim(0)`` returns every whole free page of every arena to the kernel; it costs a
walk of the heap (milliseconds) and is called after resync rounds, at most once a minute.
On a libc without it (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading
import time
from collections.abc import Callable

MIN_INTERVAL_SECONDS = 60.0


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_trim = _load_trim()
_lock = threading.Lock()
_last = float("-inf")


def available() -> bool:
    return _trim is not None


def release(now: float | None = None) -> bool:
    """Trim the heap unless it was trimmed less than MIN_INTERVAL_SECONDS ago; True if trimmed."""
    global _last
    if _trim is None:
        return False
    now = time.monotonic() if now is None else now
    with _lock:
        if now - _last < MIN_INTERVAL_SECONDS:
            return False
        _last = now
    _trim(0)
    return True
