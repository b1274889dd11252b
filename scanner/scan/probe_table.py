"""The one-probe-per-address table: every address a scan meets, probed once, remembered to the end.

It is the only per-address state that grows for the whole scan (126,000 addresses in a
3.45-million-domain survey), so a finished address costs 21 bytes: its packed address and the
number of its summary, in packed_keys.PackedKeys. The summary is a HostSummary shared by every
address that ended the same way (same outcome, flags, certificate names and DANE keys): a
survey has one per distinct certificate chain and a handful more. While a probe runs, the
address maps to the future its waiters await.
"""

from __future__ import annotations

import asyncio

from scanner.scan.summary import HostSummary
from scanner.sink.packed_keys import PackedKeys, address_key


class ProbeTable:
    """Address -> its summary, or the future of the probe in flight."""

    def __init__(self) -> None:
        self._running: dict[bytes, asyncio.Future[HostSummary]] = {}
        self._finished = PackedKeys()  # packed address -> index in _summaries
        self._summaries: list[HostSummary] = []
        self._shared: dict[HostSummary, int] = {}

    def __len__(self) -> int:
        return len(self._running) + len(self._finished)

    @property
    def distinct_summaries(self) -> int:
        """How many different summaries the finished addresses share."""
        return len(self._summaries)

    def get(self, ip: str) -> HostSummary | asyncio.Future[HostSummary] | None:
        """The address's summary, its probe's future, or None when never seen."""
        key = address_key(ip)
        running = self._running.get(key)
        if running is not None:
            return running
        index = self._finished.get(key)
        return None if index is None else self._summaries[index]

    def start(self, ip: str) -> asyncio.Future[HostSummary]:
        """Claim a new address: the future its waiters await until `finish` (or failure)."""
        key = address_key(ip)
        if key in self._running or key in self._finished:
            raise KeyError(f"{ip} is already in the probe table")
        fut: asyncio.Future[HostSummary] = asyncio.get_running_loop().create_future()
        self._running[key] = fut
        return fut

    def finish(self, ip: str, summary: HostSummary) -> HostSummary:
        """Record the address's summary (the shared equal one); returns what was stored."""
        key = address_key(ip)
        index = self._shared.get(summary)
        if index is None:
            index = self._shared[summary] = len(self._summaries)
            self._summaries.append(summary)
        self._running.pop(key, None)
        self._finished.put(key, index)
        return self._summaries[index]
