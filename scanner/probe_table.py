"""The one-probe-per-address table: every address a scan meets, probed once, remembered to the end.

It is the only per-address state that grows for the whole scan (126,000 addresses in a
3.45-million-domain survey), so an entry is kept small: the address string and a dict slot,
about 100 bytes. The value is a HostSummary shared by every address that ended the same way
(same outcome, flags and certificate names): a survey has a few thousand distinct ones. While a
probe runs, the value is the future its waiters await.
"""

from __future__ import annotations

import asyncio

from scanner.sink.summary import HostSummary


class ProbeTable:
    """Address -> its summary, or the future of the probe in flight."""

    def __init__(self) -> None:
        self._entries: dict[str, HostSummary | asyncio.Future[HostSummary]] = {}
        self._shared: dict[HostSummary, HostSummary] = {}

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def distinct_summaries(self) -> int:
        """How many different summaries the finished addresses share."""
        return len(self._shared)

    def get(self, ip: str) -> HostSummary | asyncio.Future[HostSummary] | None:
        """The address's summary, its probe's future, or None when never seen."""
        return self._entries.get(ip)

    def start(self, ip: str) -> asyncio.Future[HostSummary]:
        """Claim a new address: the future its waiters await until `finish` (or failure)."""
        if ip in self._entries:
            raise KeyError(f"{ip} is already in the probe table")
        fut: asyncio.Future[HostSummary] = asyncio.get_running_loop().create_future()
        self._entries[ip] = fut
        return fut

    def finish(self, ip: str, summary: HostSummary) -> HostSummary:
        """Record the address's summary (the shared equal one); returns what was stored."""
        shared = self._shared.setdefault(summary, summary)
        self._entries[ip] = shared
        return shared
