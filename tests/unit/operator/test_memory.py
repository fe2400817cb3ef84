"""memory.release hands whole free pages inside the heap back to the kernel (glibc)."""

from __future__ import annotations

import os

from modelyard_operator import memory


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_release_returns_pages_freed_between_live_objects() -> None:
    # 2 KB objects come from malloc, not CPython's small-object pools. Keeping every fourth one
    # alive pins the heap's top, so only a trim can return the freed runs between them.
    assert memory.available()  # Debian's glibc, as in the operator image
    blocks = [bytes(2048) for _ in range(60_000)]
    kept = blocks[::4]
    del blocks
    before = _rss_bytes()
    assert memory.release(now=1e12)
    after = _rss_bytes()
    assert before - after > 16 * 2**20, (before, after)
    assert len(kept) == 15_000


def test_release_runs_at_most_once_per_interval() -> None:
    t = 2e12
    assert memory.release(now=t)
    assert not memory.release(now=t + memory.MIN_INTERVAL_SECONDS - 1)
    assert memory.release(now=t + memory.MIN_INTERVAL_SECONDS)
