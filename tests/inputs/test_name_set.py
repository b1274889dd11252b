"""NameSet: the compact de-duplication set of the inputs stage."""

from __future__ import annotations

import gc
import random
import tempfile
import tracemalloc
from pathlib import Path
from typing import IO, Any

import pytest

from scanner.inputs.name_set import NameSet


@pytest.mark.parametrize(("merge_every", "stride"), [(1, 1), (3, 2), (3, 256), (1000, 5)])
def test_add_says_whether_new_across_merges(merge_every: int, stride: int) -> None:
    names = NameSet(merge_every=merge_every, stride=stride)
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


@pytest.mark.parametrize("stride", [1, 7, 256])
def test_answers_like_a_set_of_the_names(stride: int) -> None:
    rng = random.Random(stride)
    pool = [f"n{rng.getrandbits(40)}.test" for _ in range(6000)]
    names, model = NameSet(merge_every=500, stride=stride), set()
    with names:
        for name in rng.choices(pool, k=12_000):
            assert names.add(name) == (name not in model)
            model.add(name)
        assert len(names) == len(model)
        assert all((name in names) == (name in model) for name in pool)
        assert not any(f"other{i}.test" in names for i in range(2000))


def test_most_names_live_in_the_file_not_the_heap() -> None:
    tracemalloc.start()
    try:
        with NameSet(merge_every=1 << 12) as names:
            base = tracemalloc.get_traced_memory()[0]
            for i in range(300_000):
                names.add(f"domain-{i}.no")
            used = tracemalloc.get_traced_memory()[0] - base
            assert "domain-12345.no" in names and "domain-300000.no" not in names
    finally:
        tracemalloc.stop()
    # in memory: the small recent set (~4,000 names, ~0.3 MB) and 1/32 byte a name of index;
    # the 2.4 MB of digests are in the file
    assert used < 600_000, used


def test_the_file_goes_with_the_set(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[IO[bytes]] = []
    real = tempfile.TemporaryFile

    def recording(*args: Any, **kwargs: Any) -> IO[bytes]:
        made.append(real(*args, dir=tmp_path, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "TemporaryFile", recording)
    with NameSet(merge_every=10) as names:
        assert all(names.add(f"d{i}.test") for i in range(100))
        assert len(made) == 10  # one file a merge, each replacing the one before
        assert [f.closed for f in made] == [True] * 9 + [False]
        assert list(tmp_path.iterdir()) == []  # unlinked from the start: nothing left behind
    assert all(f.closed for f in made) and len(names) == 0
    dropped = NameSet(merge_every=10)
    for i in range(100):
        dropped.add(f"d{i}.test")
    assert not made[-1].closed
    del dropped
    gc.collect()
    assert made[-1].closed


# -- values: the first occurrence of each name --------------------------------------------------


@pytest.mark.parametrize(("merge_every", "stride"), [(1, 1), (3, 2), (7, 256), (None, 256)])
def test_add_first_keeps_the_value_of_the_first_add_across_merges(merge_every: int | None,
                                                                  stride: int) -> None:
    rng = random.Random(stride)
    pool = [f"n{rng.getrandbits(40)}.test" for _ in range(800)]
    model: dict[str, int] = {}
    with NameSet(merge_every=merge_every, stride=stride, values=True) as names:
        for line_no, name in enumerate(rng.choices(pool, k=3000), start=1):
            assert names.add_first(name, line_no) == model.get(name)
            model.setdefault(name, line_no)
        assert len(names) == len(model)
        assert all(name in names for name in model)
        # values as large as a 64-bit line number may be
        assert names.add_first("big.test", 2**64 - 1) is None
        assert names.add_first("big.test", 1) == 2**64 - 1


def test_values_survive_many_merges_in_every_bucket() -> None:
    with NameSet(merge_every=1000, values=True) as names:
        for i in range(20_000):
            assert names.add_first(f"domain-{i}.no", 10 * i + 3) is None
        assert all(names.add_first(f"domain-{i}.no", 0) == 10 * i + 3
                   for i in range(0, 20_000, 7))


def test_add_first_needs_a_set_with_values() -> None:
    with NameSet() as names, pytest.raises(TypeError, match="values=True"):
        names.add_first("a.test", 1)


def test_values_cost_eight_bytes_of_file_and_little_heap() -> None:
    tracemalloc.start()
    try:
        with NameSet(merge_every=1 << 12, values=True) as names:
            base = tracemalloc.get_traced_memory()[0]
            for i in range(300_000):
                names.add_first(f"domain-{i}.no", i + 1)
            used = tracemalloc.get_traced_memory()[0] - base
            assert names._file is not None
            size = names._file.seek(0, 2)
            assert names.add_first("domain-12345.no", 0) == 12346
    finally:
        tracemalloc.stop()
    # digests and values in the file, 16 bytes a merged name; the heap as without values
    assert size == 16 * (300_000 - 300_000 % (1 << 12)), size
    assert used < 700_000, used
