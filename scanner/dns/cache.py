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

#: A loader gets names and returns, for each, the value and how long to keep it (seconds; None
#: for "until evicted"). A caller's names not stored go to one loader call: one task for a
#: domain's MX hosts rather than one per host.
Loader = Callable[[Sequence[str]], Awaitable[Sequence[tuple[T, float | None]]]]


def _retrieve(fut: asyncio.Future[T]) -> None:
    if not fut.cancelled():
        fut.exception()


class LookupCache(Generic[T]):
    """name -> value, at most `max_entries` names, one lookup in flight per name."""

    def __init__(self, loader: Loader[T], max_entries: int) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self._loader = loader
        self._max = max_entries
        self._values: OrderedDict[str, tuple[T, float | None]] = OrderedDict()
        self._pending: dict[str, asyncio.Future[T]] = {}  # names being looked up
        self._loads: set[asyncio.Task[None]] = set()
        self.hits = 0
        self.misses = 0  # names looked up
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

    async def get(self, name: str) -> T:
        """The value for `name`, looking it up unless it is stored or already being looked up."""
        return (await self.get_many((name,)))[0]

    async def get_many(self, names: Sequence[str]) -> list[T]:
        """The values for `names`, in order; those neither stored nor in flight in one load."""
        found = [self._stored(name) for name in names]
        waits: dict[str, asyncio.Future[T]] = {}
        new: dict[str, asyncio.Future[T]] = {}
        for name, f in zip(names, found, strict=True):
            if f is not None or name in waits:
                continue
            fut = self._pending.get(name)
            if fut is None:
                fut = new[name] = self._pending[name] = asyncio.get_running_loop().create_future()
                fut.add_done_callback(_retrieve)  # no "never retrieved" if all waiters left
            else:
                self.joined += 1
            waits[name] = fut
        if new:
            self.misses += len(new)
            task = asyncio.get_running_loop().create_task(self._load(new))
            self._loads.add(task)
            task.add_done_callback(self._loads.discard)
        # shield: one waiter being cancelled must not cancel the lookup the others await
        got = {name: await asyncio.shield(fut) for name, fut in waits.items()}
        return [f[0] if f is not None else got[name] for name, f in zip(names, found, strict=True)]

    async def _load(self, futures: dict[str, asyncio.Future[T]]) -> None:
        try:
            loaded = await self._loader(list(futures))
            if len(loaded) != len(futures):
                raise RuntimeError(f"loader gave {len(loaded)} values for {len(futures)} names")
        except BaseException as exc:
            for name, fut in futures.items():
                del self._pending[name]
                if isinstance(exc, asyncio.CancelledError):
                    fut.cancel()
                elif not fut.done():
                    fut.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        now = time.monotonic()
        for (name, fut), (value, keep_s) in zip(futures.items(), loaded, strict=True):
            del self._pending[name]
            self._values[name] = (value, None if keep_s is None else now + keep_s)
            if not fut.done():
                fut.set_result(value)
        while len(self._values) > self._max:
            self._values.popitem(last=False)

    async def close(self) -> None:
        """Cancel lookups still in flight (their waiters see CancelledError)."""
        tasks = list(self._loads)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
