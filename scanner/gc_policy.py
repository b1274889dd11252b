"""How the cyclic garbage collector runs during a scan.

A scan allocates millions of short-lived objects (tasks, futures, timer handles, DNS replies)
next to a large, long-lived set (the trust store, the Public Suffix List, caches, column
buffers). With CPython's default thresholds (700, 10, 10) the collector kept walking that
long-lived set and found almost nothing: on a 34,500-domain lab survey it was about a third
of the scanner's CPU (36.4 s with the defaults, 23.7 s with the collector off, 26.5 s with
the settings below; benchmarks/RESULTS.md). Reference cycles are still collected, only less
often: a full collection every ~10 million net allocations.

They must be: on Python 3.11 every asyncio socket transport is a reference cycle (it keeps a
bound method of itself as its read callback), so each connection leaves ~1 KB of garbage (the
transport, its socket object, its address dict) that only a full collection frees. With full
collections 10x rarer, a 3.45-million-domain survey kept most of its 126,000 connections' worth.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: gen0 collections after this many net allocations; gen1 every 20 of those, gen2 every 10
SCAN_THRESHOLDS = (50_000, 20, 10)


@contextlib.contextmanager
def bulk_collector() -> Iterator[None]:
    """Within: objects alive at entry are frozen out of collections, thresholds are raised.

    On exit the previous thresholds come back and the frozen objects are collectable again.
    """
    previous = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(*SCAN_THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
