"""A compact set of names, for de-duplicating national-scale domain lists.

A Python set of 3.45 million domain strings costs about 100 bytes a name (the string, and a
hash table kept under two-thirds full): some 370 MB, most of a large survey's memory. NameSet
keeps an 8-byte BLAKE2b digest per name instead: the latest names in a small set, the older
ones in 256 sorted NumPy arrays (by the digest's first byte) that the small set is merged into
now and then. That is about 8 bytes a name (28 MB at 3.45M) with O(log n) membership, and the
same answers on every run. Merging one bucket at a time keeps the copy a merge makes to 1/256
of the whole: a single array doubled for a moment at every merge (+28 MB at 3.45M).

Two different names share a digest with probability about n²/2⁶⁵ (3·10⁻⁷ for 3.45M names);
the second would be counted as a duplicate of the first.
"""

from __future__ import annotations

import hashlib

import numpy as np

#: names kept in the small set before it is merged into the sorted array
MERGE_EVERY = 1 << 17
_BUCKETS = 256  # by the digest's top byte
_BUCKET_SHIFT = 64 - 8
_BUCKET_STARTS = np.arange(1, _BUCKETS, dtype=np.uint64) << np.uint64(_BUCKET_SHIFT)
_EMPTY: np.ndarray = np.empty(0, dtype=np.uint64)


def _digest(name: str) -> int:
    data = name.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big")


class NameSet:
    """Names seen so far; `add` says whether a name is new."""

    def __init__(self, merge_every: int = MERGE_EVERY) -> None:
        if merge_every < 1:
            raise ValueError("merge_every must be at least 1")
        self._recent: set[int] = set()
        self._buckets: list[np.ndarray] = [_EMPTY] * _BUCKETS
        self._merged = 0
        self._merge_every = merge_every

    def __len__(self) -> int:
        return len(self._recent) + self._merged

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._has(_digest(name))

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
        keys = self._buckets[key >> _BUCKET_SHIFT]
        if not keys.size:
            return False
        at = int(np.searchsorted(keys, np.uint64(key)))
        return at < keys.size and int(keys[at]) == key

    def _merge(self) -> None:
        recent = np.fromiter(self._recent, dtype=np.uint64, count=len(self._recent))
        recent.sort()
        starts = np.searchsorted(recent, _BUCKET_STARTS)
        for bucket, part in enumerate(np.split(recent, starts)):
            if part.size:
                merged = np.concatenate((self._buckets[bucket], part))
                merged.sort()
                self._buckets[bucket] = merged
        self._merged += recent.size
        self._recent = set()
