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

#: names kept in the small set before it is merged into the file
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

    def __init__(self, merge_every: int = MERGE_EVERY, stride: int = STRIDE) -> None:
        if merge_every < 1 or stride < 1:
            raise ValueError("merge_every and stride must be at least 1")
        self._recent: set[int] = set()
        self._merge_every = merge_every
        self._stride = stride
        self._file: IO[bytes] | None = None  # created at the first merge
        self._closer: weakref.finalize[[], NameSet] | None = None  # closes it if we are dropped
        self._starts = [0] * _BUCKETS  # byte offset of each run in the file
        self._counts = [0] * _BUCKETS  # digests in each run
        self._index: list[np.ndarray] = [_EMPTY] * _BUCKETS  # every stride-th digest of a run
        self._merged = 0

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
        self._recent = set()
        self._counts = [0] * _BUCKETS
        self._index = [_EMPTY] * _BUCKETS
        self._merged = 0

    def add(self, name: str) -> bool:
        """Add `name`; True when it was not in the set before."""
        key = _digest(name)
        if self._has(key):
            return False
        self._recent.add(key)
        if len(self._recent) >= self._merge_every:
            self._merge()
        return True

    def _has(self, key: int) -> bool:
        if key in self._recent:
            return True
        bucket = key >> _BUCKET_SHIFT
        index = self._index[bucket]
        if not index.size:
            return False
        wanted = np.uint64(key)
        block = int(index.searchsorted(wanted, side="right")) - 1
        if block < 0:
            return False  # below the run's smallest digest
        first = block * self._stride
        n = min(self._stride, self._counts[bucket] - first)
        keys = np.frombuffer(self._read(self._starts[bucket] + first * 8, n * 8), dtype=_KEY)
        at = int(keys.searchsorted(wanted))
        return at < n and int(keys[at]) == key

    def _read(self, offset: int, size: int) -> bytes:
        assert self._file is not None
        data = os.pread(self._file.fileno(), size, offset)
        if len(data) != size:
            raise OSError(f"name set file: read {len(data)} of {size} bytes at {offset}")
        return data

    def _merge(self) -> None:
        recent = np.fromiter(self._recent, dtype=_KEY, count=len(self._recent))
        recent.sort()
        parts = np.split(recent, np.searchsorted(recent, _BUCKET_STARTS))
        new = tempfile.TemporaryFile(prefix="scanner-names-")
        starts, counts, index = [0] * _BUCKETS, [0] * _BUCKETS, [_EMPTY] * _BUCKETS
        try:  # the set stays as it was until the new file is whole
            offset = 0
            for bucket, part in enumerate(parts):
                count = self._counts[bucket]
                old = (np.frombuffer(self._read(self._starts[bucket], count * 8), dtype=_KEY)
                       if count else _EMPTY)
                run = np.concatenate((old, part)) if part.size else old
                if part.size and old.size:
                    run.sort()
                new.write(run.data)
                starts[bucket], counts[bucket] = offset, int(run.size)
                index[bucket] = run[::self._stride].copy()
                offset += run.size * 8
            new.flush()
        except BaseException:
            new.close()
            raise
        if self._closer is not None:
            self._closer()
        self._closer = weakref.finalize(self, new.close)
        self._file, self._starts, self._counts, self._index = new, starts, counts, index
        self._merged += recent.size
        self._recent = set()
