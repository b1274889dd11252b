"""A bounded LRU cache of lookups with in-flight de-duplication.

Many domains share their MX hosts (a provider's `mx1.provider.example` serves millions), so each
MX host name is looked up once: concurrent callers await the one running lookup, later callers
get the stored value. Values the loader marks with a lifetime (transient failures) are looked up
again once it has passed; the others stay until evicted, so one scan sees one answer per name.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")

#: A loader returns the value and how long to keep it (seconds), None for "until evicted".
Loader = Callable[[str], Awaitable[tuple[T, float | None]]]


def _retrieve(task: asyncio.Task[T]) -> None:
    if not task.cancelled():
        task.exception()


class LookupCache(Generic[T]):
    """name -> value, at most `max_entries` names, one lookup in flight per name."""

    def __init__(self, loader: Loader[T], max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._loader = loader
        self._max = max_entries
        self._values: OrderedDict[str, tuple[T, float | None]] = OrderedDict()
        self._pending: dict[str, asyncio.Task[T]] = {}
        self.hits = 0
        self.misses = 0  # lookups started
        self.joined = 0  # callers that awaited a lookup already in flight

    def __len__(self) -> int:
        return len(self._values)

    def _stored(self, name: str) -> tuple[T] | None:
        """The stored value (as a 1-tuple) when there is a fresh one; counts the hit."""
        stored = self._values.get(name)
        if stored is None:
            return None
        value, expires = stored
        if expires is not None and expires <= time.monotonic():
            del self._values[name]
            return None
        self._values.move_to_end(name)
        self.hits += 1
        return (value,)

    async def get_many(self, names: Sequence[str]) -> list[T]:
        """`get` of several names; stored values are returned without starting a task."""
        found = [self._stored(name) for name in names]
        missing = [i for i, f in enumerate(found) if f is None]
        if len(missing) == 1:
            found[missing[0]] = (await self.get(names[missing[0]]),)
        elif missing:
            loaded = await asyncio.gather(*(self.get(names[i]) for i in missing))
            for i, value in zip(missing, loaded, strict=True):
                found[i] = (value,)
        return [f[0] for f in found if f is not None]

    async def get(self, name: str) -> T:
        """The value for `name`, looking it up unless it is stored or already being looked up."""
        stored = self._stored(name)
        if stored is not None:
            return stored[0]
        task = self._pending.get(name)
        if task is None:
            self.misses += 1
            task = asyncio.get_running_loop().create_task(self._load(name))
            task.add_done_callback(_retrieve)  # no "exception never retrieved" if all waiters left
            self._pending[name] = task
        else:
            self.joined += 1
        # shield: one waiter being cancelled must not cancel the lookup the others await.
        return await asyncio.shield(task)

    async def _load(self, name: str) -> T:
        try:
            value, keep_s = await self._loader(name)
        finally:
            del self._pending[name]
        self._values[name] = (value, None if keep_s is None else time.monotonic() + keep_s)
        if len(self._values) > self._max:
            self._values.popitem(last=False)
        return value

    async def close(self) -> None:
        """Cancel lookups still in flight (their waiters see CancelledError)."""
        tasks = list(self._pending.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
