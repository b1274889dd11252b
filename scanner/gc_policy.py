"""How the cyclic garbage collector runs during a scan.

A scan allocates millions of short-lived objects (tasks, futures, timer handles, DNS replies)
next to a large, long-lived set (the trust store, the Public Suffix List, caches, column
buffers). With CPython's default thresholds (700, 10, 10) the collector kept walking that
long-lived set and found almost nothing: on a 34,500-domain lab survey it was about a third
of the scanner's CPU (36.4 s with the defaults, 23.7 s with the collector off, 26.5 s with
the settings below; benchmarks/RESULTS.md). Reference cycles are still collected, only less
often.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

#: gen0 collections after this many net allocations; gen1 every 20 of those, gen2 every 100
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
