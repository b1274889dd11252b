"""NameSet: the compact de-duplication set of the inputs stage."""

from __future__ import annotations

import tracemalloc

import pytest

from scanner.name_set import NameSet


@pytest.mark.parametrize("merge_every", [1, 3, 1000])
def test_add_says_whether_new_across_merges(merge_every: int) -> None:
    names = NameSet(merge_every=merge_every)
    words = [f"d{i}.example" for i in range(50)] + ["xn--bcher-kva.example", "\udcff.bad"]
    assert all(names.add(w) for w in words)
    assert not any(names.add(w) for w in words)
    assert all(w in names for w in words)
    assert "d50.example" not in names and 7 not in names
    assert len(names) == len(words)


def test_names_take_a_few_bytes_each() -> None:
    tracemalloc.start()
    try:
        names = NameSet()
        base = tracemalloc.get_traced_memory()[0]
        for i in range(300_000):
            names.add(f"domain-{i}.no")
        used = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert len(names) == 300_000
    # a set of the strings costs ~100 bytes a name; this, 8 bytes plus the small recent set
    assert used / 300_000 < 30, used
    assert "domain-299999.no" in names and "domain-300000.no" not in names


def test_a_merge_copies_only_a_small_part_of_the_set() -> None:
    names = NameSet(merge_every=1 << 14)
    for i in range(400_000):
        names.add(f"domain-{i}.no")
    tracemalloc.start()
    try:
        for i in range(400_000, 400_000 + (1 << 14)):  # fills the recent set: one merge
            names.add(f"domain-{i}.no")
        now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(names) == 400_000 + (1 << 14)
    assert all(f"domain-{i}.no" in names for i in range(0, 416_384, 997))
    # the sorted digests are ~3.3 MB: one array re-sorted whole would have held a second copy
    # of all of them for a moment (peak ~3.3 MB above what is left)
    assert peak - now < 1_000_000, (now, peak)
