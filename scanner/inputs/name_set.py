"""A compact set of names, for de-duplicating national-scale domain lists.

A Python set of 3.45 million domain strings costs about 100 bytes a name (the string, and a
hash table kept under two-thirds full): some 370 MB, most of a large survey's memory. NameSet
keeps an 8-byte BLAKE2b digest per name instead, and keeps most of them off the heap: the
latest names in a small set, the older ones in an unlinked temporary file (in $TMPDIR), as 256
sorted runs by the digest's first byte, with every 256th digest of each run in memory. A
lookup is a binary search in that index and one 2 KiB read of the file (from the page cache,
which is not the scanner's memory); a merge rewrites the file one run at a time. The heap
holds the small set (8.5 MiB when full) and 1/32 byte a name of index: adding 3.45 million
names peaked at 10.1 MiB (tracemalloc), for 28 MB of file. Lists shorter than the small set
never touch the disk.

With `values=True` each name also keeps an 8-byte value given when it was first added (the
inputs stage stores the line number of a domain's first occurrence, so that a duplicate row
can point at it): the file gets a second section, the values in the same order as the
digests, and a lookup that finds a name reads its value with one 8-byte read. The small set
becomes a dict and holds half as many names: adding 3.45 million names with their values
peaked at 9.4 MiB (tracemalloc), for 55 MB of file (16 bytes a name), in the same time.

Two different names share a digest with probability about n²/2⁶⁵ (3·10⁻⁷ for 3.45M names);
the second would be counted as a duplicate of the first.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import weakref
from typing import IO

import numpy as np

#: names kept in the small set before it is merged into the file (half as many with values:
#: a dict entry and its value cost about as much again as a set entry)
MERGE_EVERY = 1 << 17
#: digests a file read returns: the index keeps every STRIDE-th one
STRIDE = 256
_BUCKETS = 256  # by the digest's top byte
_BUCKET_SHIFT = 64 - 8
_BUCKET_STARTS = np.arange(1, _BUCKETS, dtype=np.uint64) << np.uint64(_BUCKET_SHIFT)
_KEY = np.dtype("<u8")
_EMPTY: np.ndarray = np.empty(0, dtype=_KEY)


def _digest(name: str) -> int:
    data = name.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class NameSet:
    """Names seen so far; `add` says whether a name is new. `close` removes its file."""

    def __init__(self, merge_every: int | None = None, stride: int = STRIDE, *,
                 values: bool = False) -> None:
        if merge_every is None:
            merge_every = MERGE_EVERY // 2 if values else MERGE_EVERY
        if merge_every < 1 or stride < 1:
            raise ValueError("merge_every and stride must be at least 1")
        self._values = values
        # the latest names' digests; with values, each maps to the value its first add gave
        self._recent: set[int] | dict[int, int] = {} if values else set()
        self._merge_every = merge_every
        self._stride = stride
        self._file: IO[bytes] | None = None  # created at the first merge
        self._closer: weakref.finalize[[], NameSet] | None = None  # closes it if we are dropped
        self._starts = [0] * _BUCKETS  # byte offset of each run in the file
        self._counts = [0] * _BUCKETS  # digests in each run
        self._index: list[np.ndarray] = [_EMPTY] * _BUCKETS  # every stride-th digest of a run
        self._merged = 0
        self._values_at = 0  # byte offset of the values section (after every digest)

    def __len__(self) -> int:
        return len(self._recent) + self._merged

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._has(_digest(name))

    def __enter__(self) -> NameSet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Forget every name and remove the file."""
        if self._closer is not None:
            self._closer()
            self._file = self._closer = None
        self._recent = {} if self._values else set()
        self._counts = [0] * _BUCKETS
        self._index = [_EMPTY] * _BUCKETS
        self._merged = 0
        self._values_at = 0

    def add(self, name: str) -> bool:
        """Add `name`; True when it was not in the set before."""
        return self._add(_digest(name), 0) is None

    def add_first(self, name: str, value: int) -> int | None:
        """Add `name` with `value` (0 <= value < 2**64, in a set made with values=True).

        None when the name is new; else the value given when it was first added, and the
        set is unchanged.
        """
        if not self._values:
            raise TypeError("add_first needs a NameSet made with values=True")
        return self._add(_digest(name), value)

    def _add(self, key: int, value: int) -> int | None:
        found = self._lookup(key)
        if found is not None:
            return found
        if isinstance(self._recent, dict):
            self._recent[key] = value
        else:
            self._recent.add(key)
        if len(self._recent) >= self._merge_every:
            self._merge()
        return None

    def _has(self, key: int) -> bool:
        return self._lookup(key) is not None

    def _lookup(self, key: int) -> int | None:
        """The value stored with `key` (0 in a set without values); None when absent."""
        if isinstance(self._recent, dict):
            recent = self._recent.get(key)
            if recent is not None:
                return recent
        elif key in self._recent:
            return 0
        bucket = key >> _BUCKET_SHIFT
        index = self._index[bucket]
        if not index.size:
            return None
        wanted = np.uint64(key)
        block = int(index.searchsorted(wanted, side="right")) - 1
        if block < 0:
            return None  # below the run's smallest digest
        first = block * self._stride
        n = min(self._stride, self._counts[bucket] - first)
        keys = np.frombuffer(self._read(self._starts[bucket] + first * 8, n * 8), dtype=_KEY)
        at = int(keys.searchsorted(wanted))
        if at == n or int(keys[at]) != key:
            return None
        if not self._values:
            return 0
        # a value sits at the same distance into the values section as its digest into theirs
        where = self._values_at + self._starts[bucket] + (first + at) * 8
        return int.from_bytes(self._read(where, 8), "little")

    def _read(self, offset: int, size: int) -> bytes:
        assert self._file is not None
        data = os.pread(self._file.fileno(), size, offset)
        if len(data) != size:
            raise OSError(f"name set file: read {len(data)} of {size} bytes at {offset}")
        return data

    def _merge(self) -> None:
        size = len(self._recent)
        recent = np.fromiter(self._recent, dtype=_KEY, count=size)
        values = _EMPTY
        if isinstance(self._recent, dict):
            values = np.fromiter(self._recent.values(), dtype=_KEY, count=size)
            order = recent.argsort()
            recent, values = recent[order], values[order]
        else:
            recent.sort()
        cuts = np.searchsorted(recent, _BUCKET_STARTS)
        parts = np.split(recent, cuts)
        value_parts = np.split(values, cuts) if self._values else [_EMPTY] * _BUCKETS
        new = tempfile.TemporaryFile(prefix="scanner-names-")
        fd = new.fileno()
        values_at = (self._merged + size) * 8  # the values section follows every digest
        starts, counts, index = [0] * _BUCKETS, [0] * _BUCKETS, [_EMPTY] * _BUCKETS
        try:  # the set stays as it was until the new file is whole
            offset = 0
            for bucket, (part, part_values) in enumerate(zip(parts, value_parts, strict=True)):
                count = self._counts[bucket]
                old = self._run(self._starts[bucket], count)
                run = np.concatenate((old, part)) if part.size else old
                run_values = _EMPTY
                if self._values:
                    old_values = self._run(self._values_at + self._starts[bucket], count)
                    run_values = (np.concatenate((old_values, part_values)) if part.size
                                  else old_values)
                if part.size and old.size:
                    if self._values:
                        order = run.argsort(kind="stable")  # two sorted runs: one merge pass
                        run, run_values = run[order], run_values[order]
                    else:
                        run.sort()
                _write(fd, run, offset)
                if self._values:
                    _write(fd, run_values, values_at + offset)
                starts[bucket], counts[bucket] = offset, int(run.size)
                index[bucket] = run[::self._stride].copy()
                offset += run.size * 8
        except BaseException:
            new.close()
            raise
        if self._closer is not None:
            self._closer()
        self._closer = weakref.finalize(self, new.close)
        self._file, self._starts, self._counts, self._index = new, starts, counts, index
        self._values_at = values_at
        self._merged += size
        self._recent = {} if self._values else set()

    def _run(self, offset: int, count: int) -> np.ndarray:
        """`count` 8-byte integers of the file from `offset`."""
        return np.frombuffer(self._read(offset, count * 8), dtype=_KEY) if count else _EMPTY


def _write(fd: int, data: np.ndarray, offset: int) -> None:
    """Write an array at `offset` of the file, whole."""
    view = np.ascontiguousarray(data).data.cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written
