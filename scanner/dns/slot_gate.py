"""SlotGate: at most `size` slots held at once; a batch takes all of its slots together.

The DNS steps cap their queries in flight. asyncio's Semaphore takes one slot per acquire, so a
batch (a domain's four policy lookups) had to take its slots one at a time under a Lock, lest
two batches each hold some slots and wait for the rest. A Lock is handed on to one waiter per
event-loop iteration, and in a national survey thousands of domains wait at it: the policy
lookups went out one domain at a time, an iteration each. A 40,000-domain scan of the 345k lab
took 44,936 iterations (epoll waits, `strace -c`) that way and 1,978 through this gate, and
0.85x the CPU (`benchmarks/ab.py`, benchmarks/RESULTS.md). Here a taker asks for n slots and
is served first come, first served, all n at once, and a `give` serves every waiter that
fits then and there; a waiter cancelled before it is served takes nothing and holds up no one.
"""

from __future__ import annotations

import asyncio
from collections import deque


class SlotGate:
    """Use inside one event loop: `await take(n)`, then `give(n)` once done."""

    __slots__ = ("size", "_free", "_waiting")

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError(f"a gate needs at least one slot, not {size}")
        self.size = size
        self._free = size
        #: (slots wanted, future set once they are taken for it), first come first served
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def taken(self) -> int:
        """Slots held now."""
        return self.size - self._free

    async def take(self, n: int = 1) -> None:
        """Wait until n slots are free and nobody asked before, then hold them."""
        if not 1 <= n <= self.size:
            raise ValueError(f"cannot take {n} of {self.size} slots")
        if not self._waiting and self._free >= n:
            self._free -= n
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (n, fut)
        self._waiting.append(entry)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.give(n)  # served just as it was cancelled: hand the slots on
            else:
                if entry in self._waiting:  # a give since may have dropped it already
                    self._waiting.remove(entry)
                self._serve()  # it may have been first in line, holding up the others
            raise

    def give(self, n: int = 1) -> None:
        """Hand back n slots taken before; waiters are served in order while they fit."""
        self._free += n
        self._serve()

    def _serve(self) -> None:
        waiting = self._waiting
        while waiting:
            n, fut = waiting[0]
            if fut.cancelled():  # its taker is on its way out and takes nothing
                waiting.popleft()
                continue
            if n > self._free:
                return
            waiting.popleft()
            self._free -= n
            fut.set_result(None)
