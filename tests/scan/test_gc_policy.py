"""The scan's garbage-collector settings: raised thresholds inside, restored after."""

from __future__ import annotations

import asyncio
import gc
import platform
import weakref

from scanner.scan.gc_policy import (
    SCAN_THRESHOLDS,
    bulk_collector,
    heap_trimmer,
    paused_collector,
    release_freed_memory,
)


class _Node:
    def __init__(self) -> None:
        self.me = self


def test_thresholds_raised_and_startup_objects_frozen_inside() -> None:
    before = gc.get_threshold()
    with bulk_collector():
        assert gc.get_threshold() == SCAN_THRESHOLDS
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_young_collections_are_rare_and_older_ones_keep_their_cadence() -> None:
    young, middle, old = SCAN_THRESHOLDS
    # young collections walk the in-flight tasks: rarer is cheaper. The transports' cycles
    # need full collections: every ~10 million net allocations, as measured at 3.45M domains
    assert young >= 200_000
    assert young * middle == 1_000_000 and young * middle * old == 10_000_000


def test_cycles_made_during_a_scan_are_still_collected() -> None:
    with bulk_collector():
        ref = weakref.ref(_Node())
        assert ref() is not None  # a cycle: reference counting alone does not free it
        gc.collect()
        assert ref() is None


def test_settings_restored_when_the_scan_raises() -> None:
    before = gc.get_threshold()
    try:
        with bulk_collector():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_start_up_runs_without_collections_and_the_scan_with_them() -> None:
    assert gc.isenabled()
    with paused_collector():
        assert not gc.isenabled()
        with bulk_collector():
            assert gc.isenabled()
            first = weakref.ref(_Node())
            # more container allocations than the scan's gen0 threshold: a collection runs by
            # itself, with the collector that start-up had switched off
            nodes = [_Node() for _ in range(2 * SCAN_THRESHOLDS[0])]
            del nodes
            assert first() is None
        assert not gc.isenabled()
    assert gc.isenabled()


def test_paused_collector_comes_back_on_when_start_up_raises() -> None:
    try:
        with paused_collector():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.isenabled()


def test_the_scan_command_sets_up_with_the_collector_paused(
        monkeypatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import scanner.commands.scan
    from scanner.commands.cli import main

    seen: list[bool] = []

    def fake_run(config: object, *, progress: bool, argv: str) -> int:
        seen.append(gc.isenabled())
        return 0

    monkeypatch.setattr(scanner.commands.scan, "run_scan_command", fake_run)
    domains = tmp_path / "d.txt"
    domains.write_text("example.no\n")
    assert main(["scan", str(domains), "-o", str(tmp_path / "out"), "--no-progress"]) == 0
    assert seen == [False]
    assert gc.isenabled()


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_free_heap_pages_go_back_to_the_os_during_a_scan() -> None:
    assert platform.libc_ver()[0] == "glibc" and heap_trimmer() is not None
    # 160 MiB of 2 KiB blocks (glibc's heap, not pymalloc), one in 64 kept alive: the heap
    # cannot shrink from its top, so free() alone gives almost nothing back
    blocks = [bytes(2048) + bytes([i % 251]) for i in range(80_000)]
    keep = blocks[::64]
    del blocks
    heap_rss = _rss_mib()

    async def a_while() -> None:
        task = asyncio.create_task(release_freed_memory(every_s=0.01))
        await asyncio.sleep(0.1)
        task.cancel()

    asyncio.run(a_while())
    assert heap_rss - _rss_mib() > 100, (heap_rss, _rss_mib())
    assert len(keep) == 1250
