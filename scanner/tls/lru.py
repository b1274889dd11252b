"""A bounded memo: a value computed once per key, the most recently used keys kept.

Per-chain work (chain verdicts, DANE keys) is keyed by the certificates' SHA-256 digests,
which the probe already holds, while the computation needs the DER: `functools.lru_cache`
would key on the DER itself.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class LruMemo(Generic[K, V]):
    """key -> value from `compute()`, at most `size` keys (least recently used evicted)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self._values: OrderedDict[K, V] = OrderedDict()
        self._size = size
        self.computed = 0  # keys whose value was computed (tests, the integrator)

    def __len__(self) -> int:
        return len(self._values)

    def get(self, key: K, compute: Callable[[], V]) -> V:
        """The value for `key`, computing and keeping it when it is not kept (None included)."""
        if key in self._values:
            self._values.move_to_end(key)
            return self._values[key]
        value = compute()
        self.computed += 1
        self._values[key] = value
        if len(self._values) > self._size:
            self._values.popitem(last=False)
        return value
