"""VantageWatch: notice when the scanner's own network fails, instead of blaming the servers.

If outbound port 25 is blocked at the vantage point (common on home and cloud networks), every
server looks unreachable. The watch holds back the first probe results whose TCP connect timed
out or was unreachable; as soon as any probe connects (or is refused: a live path answered) they
are released. When the first `sample` probes are all silent, the scan stops with VantageFailure
and none of them is recorded, so no server is falsely written as unreachable.
"""

from __future__ import annotations

import asyncio

from scanner.records import HostRecord
from scanner.status import ConnectStatus

_SILENT = frozenset({ConnectStatus.TIMEOUT, ConnectStatus.UNREACHABLE})


class VantageFailure(RuntimeError):
    """The vantage point, not the servers, is failing: stop and say so."""


class VantageWatch:
    """Holds silent probe results until the port-25 path is shown to work, or to be dead."""

    def __init__(self, sample: int = 20, settle_after: float = 60.0) -> None:
        self._sample = sample
        self._settle_after = settle_after
        self._silent = 0
        self._healthy = False
        self._failure: VantageFailure | None = None
        self._decided = asyncio.Event()

    @property
    def healthy(self) -> bool:
        """True once a probe showed that outbound connections work."""
        return self._healthy

    async def admit(self, record: HostRecord) -> None:
        """Return when the record may be written; raise VantageFailure when egress is dead."""
        if self._healthy:
            return
        if self._failure is not None:
            raise self._failure
        status = record.probe.connect_status
        if status in (ConnectStatus.EXCLUDED, ConnectStatus.PRIVATE_ADDRESS):
            return
        if status not in _SILENT:
            self._healthy = True
            self._decided.set()
            return
        self._silent += 1
        if self._silent >= self._sample:
            self._failure = VantageFailure(
                f"the first {self._silent} mail servers all timed out or were unreachable at "
                "TCP connect: outbound port 25 looks blocked at this vantage point. Nothing was "
                "recorded for them; fix egress, then rerun with --resume")
            self._decided.set()
            raise self._failure
        try:
            # a handful of silent servers and nothing else happening: that is just the servers
            await asyncio.wait_for(self._decided.wait(), self._settle_after)
        except TimeoutError:
            self._healthy = True
            self._decided.set()
        if self._failure is not None:
            raise self._failure
