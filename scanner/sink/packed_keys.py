"""Compact exact maps for the per-address and per-certificate state a national survey keeps.

A dict entry keyed by an address string costs some 140 bytes (the string, the slot, and a hash
table kept under two-thirds full); a set of SHA-256 hex digests about 160 bytes a certificate.
A 3.45-million-domain survey meets 126,000 addresses and tens of thousands of certificates,
and keeps both to the end. PackedKeys keeps a 16-byte key and a 32-bit value in sorted NumPy
arrays instead, 21 bytes an entry, with the latest entries in a small dict merged into the
arrays now and then; lookups are a dict probe and a binary search. Keys are exact: addresses
are packed to their 16 bytes (IPv4 as IPv4-mapped IPv6), certificates to the first 16 bytes
of their SHA-256 (no two distinct certificates share them in practice: 2⁻¹²⁸ a pair).
"""

from __future__ import annotations

import socket
from collections.abc import Iterable

import numpy as np

#: entries kept in the small dict before it is merged into the sorted arrays
MERGE_EVERY = 8192
KEY_BYTES = 16
# NumPy drops trailing NUL bytes when it reads a fixed-width bytes item back: one non-NUL byte
# after every key keeps the stored items equal to what was put in, and the order unchanged
_END = b"\x01"
_KEY_DTYPE = np.dtype(f"S{KEY_BYTES + 1}")
_V4_MAPPED = bytes(10) + b"\xff\xff"


def address_key(ip: str) -> bytes:
    """An address's 16 bytes: equal for every spelling of one address."""
    if ":" in ip:
        return socket.inet_pton(socket.AF_INET6, ip)
    return _V4_MAPPED + socket.inet_pton(socket.AF_INET, ip)


def digest_key(sha256_hex: str) -> bytes:
    """The key of a certificate: the first 16 bytes of its SHA-256."""
    return bytes.fromhex(sha256_hex[:2 * KEY_BYTES])


class PackedKeys:
    """16-byte key -> int in [0, 2³²); an entry, once put, is never changed or removed."""

    def __init__(self, merge_every: int = MERGE_EVERY) -> None:
        if merge_every < 1:
            raise ValueError("merge_every must be at least 1")
        self._recent: dict[bytes, int] = {}
        self._keys = np.empty(0, dtype=_KEY_DTYPE)
        self._values = np.empty(0, dtype=np.uint32)
        self._merge_every = merge_every

    def __len__(self) -> int:
        return len(self._recent) + self._keys.size

    def __contains__(self, key: object) -> bool:
        return isinstance(key, bytes) and self.get(key) is not None

    def get(self, key: bytes) -> int | None:
        """The key's value, or None when it was never put."""
        value = self._recent.get(key)
        if value is not None:
            return value
        keys = self._keys
        if keys.size:
            stored = key + _END
            at = int(keys.searchsorted(stored))
            if at < keys.size and keys[at] == stored:
                return int(self._values[at])
        return None

    def put(self, key: bytes, value: int) -> None:
        """Add a new key; KeyError when it is already there (values never change)."""
        if self.get(key) is not None:
            raise KeyError(key.hex())
        self._insert(key, value)

    def add(self, key: bytes) -> bool:
        """Use as a set: add `key`, True when it was not there before."""
        if self.get(key) is not None:
            return False
        self._insert(key, 0)
        return True

    def _insert(self, key: bytes, value: int) -> None:
        if len(key) != KEY_BYTES:
            raise ValueError(f"keys are {KEY_BYTES} bytes, not {len(key)}")
        if not 0 <= value < 1 << 32:
            raise ValueError(f"value {value} does not fit in 32 bits")
        self._recent[key] = value
        if len(self._recent) >= self._merge_every:
            self._merge()

    def update(self, keys: Iterable[bytes]) -> None:
        """Add every key not there yet (a set's update)."""
        for key in keys:
            self.add(key)

    def _merge(self) -> None:
        keys = np.concatenate((self._keys, np.array([k + _END for k in self._recent],
                                                    dtype=_KEY_DTYPE)))
        values = np.concatenate((self._values, np.fromiter(
            self._recent.values(), dtype=np.uint32, count=len(self._recent))))
        order = keys.argsort(kind="stable")
        self._keys = keys[order]
        self._values = values[order]
        self._recent = {}
