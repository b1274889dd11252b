"""How the cyclic garbage collector runs during a scan.

A scan allocates millions of short-lived objects (tasks, futures, timer handles, DNS replies)
next to a large, long-lived set (the trust store, the Public Suffix List, caches, column
buffers). With CPython's default thresholds (700, 10, 10) the collector kept walking that
long-lived set and found almost nothing: on a 34,500-domain lab survey it was about a third
of the scanner's CPU (36.4 s with the defaults, 23.7 s with the collector off, 26.5 s with
the settings then, (50,000, 20, 10); benchmarks/RESULTS.md). Reference cycles are still
collected, only less often: a full collection every ~10 million net allocations.

What a young collection walks is mostly what is alive in flight: the tasks, coroutines and
futures of the thousands of domains under way (~50,000 objects in the young generation at each
collection of a 40,000-domain run). Every object that lives through one young collection has
been walked for nothing, so young collections four times rarer (200,000) walk that in-flight
set a quarter as often: 0.85-1.21 s of collections became 0.14-0.22 s on that run, with the
same peak RSS (2026-12-06). Collections of the middle and oldest generations keep their cadence
(every ~1 and ~10 million net allocations).

They must be: on Python 3.11 every asyncio socket transport is a reference cycle (it keeps a
bound method of itself as its read callback), so each connection leaves ~1 KB of garbage (the
transport, its socket object, its address dict) that only a full collection frees. With full
collections 10x rarer, a 3.45-million-domain survey kept most of its 126,000 connections' worth.

What the collector and the connections free goes back to glibc's heap, which keeps most of it:
at the end of a 345k survey 55 MB of the process's 280 MB were free heap pages (malloc_trim
handed them back). `release_freed_memory` returns them to the OS every few seconds during a
scan, so the resident set follows what is live rather than the heap's high-water mark.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import gc
from collections.abc import Callable, Iterator

#: gen0 collections after this many net allocations; gen1 every 5 of those, gen2 every 10
SCAN_THRESHOLDS = (200_000, 5, 10)
#: seconds between two returns of free heap pages to the OS during a scan
TRIM_EVERY_S = 10.0


def heap_trimmer() -> Callable[[], object] | None:
    """glibc's malloc_trim(0), or None where the C library has none (musl, macOS)."""
    try:
        trim = ctypes.CDLL(ctypes.util.find_library("c")).malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return lambda: trim(0)


async def release_freed_memory(every_s: float = TRIM_EVERY_S) -> None:
    """Until cancelled, every `every_s` seconds: free heap pages back to the OS (glibc only)."""
    trim = heap_trimmer()
    if trim is None:
        return
    while True:
        await asyncio.sleep(every_s)
        trim()


@contextlib.contextmanager
def paused_collector() -> Iterator[None]:
    """Within: no automatic collections (a scan's start-up); on exit the collector's state
    comes back.

    Start-up imports the libraries and builds the Public Suffix List: ~45,000 long-lived
    container objects and ~500 objects of garbage. With the default thresholds the collector
    walked them again and again: with those collections and the full one `bulk_collector`
    used to run before freezing, start-up took 235-267 ms of CPU, without them 209-223 ms
    (2026-12-06). `bulk_collector` then freezes them all.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


@contextlib.contextmanager
def bulk_collector() -> Iterator[None]:
    """Within: objects alive at entry are frozen out of collections, thresholds are raised,
    and the collector is on.

    On exit the previous thresholds and on/off state come back and the frozen objects are
    collectable again. Nothing is collected before freezing: after start-up that found ~500
    objects (tens of KB) and cost 12-25 ms of CPU, every start.
    """
    previous = gc.get_threshold()
    was_enabled = gc.isenabled()
    gc.freeze()
    gc.set_threshold(*SCAN_THRESHOLDS)
    gc.enable()
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
        if not was_enabled:
            gc.disable()
