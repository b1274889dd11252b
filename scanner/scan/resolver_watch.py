"""ResolverWatch: the resolver asked again during the scan, and the rows it could spoil held
back until it has passed.

A resolver can break mid-scan (its upstream lost, a forwarder restarted with a bad
configuration): from then on every domain comes back as a DNS failure that reads like a fact.
The watch asks the resolver check's questions (`dns/resolver_check.py`) again every `every_s`
seconds, and at once when `HOLD_ROWS` domain rows wait for it. A domain row that holds a DNS
failure (the MX lookup or an MX host's address lookup not answered with records; a TXT, TLSA or
MTA-STS address lookup failed) -- what a broken resolver makes of every domain -- is written
only once a check that began after the row's lookups has passed. When a check fails the scan
stops (VantageFailure) and the rows still held are never written, so `--resume` looks them up
again. Rows without a DNS failure are written at once: a resolver gone bad answers with
failures. (One that starts answering NXDOMAIN to everything between a domain's MX lookup and its
TXT lookups could leave that domain's policy columns `none`: only the domains in flight at that
moment.)
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from typing import Any

from scanner.dns.resolver_check import CheckReport
from scanner.model.policy_status import RecordStatus, StsFetchStatus, TlsaStatus
from scanner.model.records import DomainMxRecord, DomainRecord, MailHosts
from scanner.model.status import DnsStatus
from scanner.policy.dane import TlsaLookup
from scanner.scan.policy_rollup import DomainPolicyFacts
from scanner.scan.vantage import VantageFailure

#: rows waiting for a check before one is asked at once (a few MB of rows at most)
HOLD_ROWS = 1000
#: past this many, a domain waits (in its slot) for the check under way: a silent resolver
#: takes seconds to give up on, while new rows keep coming
MAX_HOLD_ROWS = 4 * HOLD_ROWS

Write = Callable[[DomainRecord, tuple[DomainMxRecord, ...]], None]


def has_dns_failure(mail: MailHosts, facts: DomainPolicyFacts | None,
                    tlsa: Mapping[str, TlsaLookup]) -> bool:
    """True when a lookup of the domain was not answered with records (or failed outright):
    a row a broken resolver could have produced."""
    if mail.status is not DnsStatus.OK \
            or any(h.address_status is not DnsStatus.OK for h in mail.hosts):
        return True
    if facts is not None:
        m = facts.mail
        if RecordStatus.DNS_ERROR in (m.spf_status, m.dmarc_status, m.tlsrpt_status,
                                      m.mta_sts_txt_status) \
                or facts.sts.fetch_status is StsFetchStatus.DNS_ERROR:
            return True
    return any(t.status is TlsaStatus.DNS_ERROR for t in tlsa.values())


def _clock(at: datetime) -> str:
    return at.strftime("%H:%M:%S UTC")


class ResolverWatch:
    """Checks the resolvers every `every_s` seconds; holds the rows `has_dns_failure` marks.

    `ask` runs one check; `write` writes a released row. Use inside one event loop: `run()` in
    the scan's task group, `hold()` from the domains, `stop()` once every domain is done, then
    `settle()` for the rows still held.
    """

    def __init__(self, ask: Callable[[], Awaitable[CheckReport]], every_s: float, write: Write,
                 first: CheckReport) -> None:
        self._ask = ask
        self._every_s = every_s
        self._write = write
        self._held: deque[tuple[float, DomainRecord, tuple[DomainMxRecord, ...]]] = deque()
        self._wake = asyncio.Event()
        self._round = asyncio.Event()  # set (and replaced) when a check ends
        self._stopping = False
        self.failure: VantageFailure | None = None
        self.first = self.last = first
        self.last_passed = first.at
        self.checks = 1
        self.released = 0
        self.peak_held = 0
        self.warnings: list[str] = []

    @property
    def held(self) -> int:
        """Rows waiting for a check."""
        return len(self._held)

    async def hold(self, record: DomainRecord, edges: tuple[DomainMxRecord, ...]) -> None:
        """Keep a row until a check that starts after now has passed."""
        if self.failure is not None:
            raise self.failure
        self._held.append((time.monotonic(), record, edges))
        self.peak_held = max(self.peak_held, len(self._held))
        if len(self._held) >= HOLD_ROWS:
            self._wake.set()
        while len(self._held) >= MAX_HOLD_ROWS and self.failure is None:
            await self._round.wait()
        if self.failure is not None:
            raise self.failure

    async def run(self) -> None:
        """Check every `every_s` seconds, or as soon as HOLD_ROWS rows wait, until `stop()`;
        raises VantageFailure when a check fails."""
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._every_s):
                    await self._wake.wait()
            if self._stopping:
                return
            self._wake.clear()
            await self.check()

    def stop(self) -> None:
        """Every domain is done: `run()` returns."""
        self._stopping = True
        self._wake.set()

    async def settle(self) -> None:
        """Write the rows still held if a check now passes; raise VantageFailure if not."""
        if self.failure is not None:
            raise self.failure
        if self._held:
            await self.check()

    async def check(self) -> None:
        """One check: release the rows held before it began, or stop the scan."""
        started = time.monotonic()
        try:
            report = await self._ask()
            self.checks += 1
            self.last = report
            self.warnings += [w for w in report.warnings() if w not in self.warnings]
            if not report.ok:
                self.failure = VantageFailure(
                    f"{report.failure()} at {_clock(report.at)} (the check before passed at "
                    f"{_clock(self.last_passed)}): the resolver at this vantage point broke "
                    "during the scan, and what it says about the domains cannot be trusted. The "
                    f"{len(self._held)} domain results with DNS failures held back since were "
                    "not recorded; fix the resolver, then rerun with --resume")
                self._held.clear()
                raise self.failure
            self.last_passed = report.at
            while self._held and self._held[0][0] < started:
                _, record, edges = self._held.popleft()
                self._write(record, edges)
                self.released += 1
            if len(self._held) >= HOLD_ROWS:
                self._wake.set()
            elif not self._stopping:
                self._wake.clear()  # rows held during the check are few: no check at once
        finally:
            done, self._round = self._round, asyncio.Event()
            done.set()

    def facts(self) -> dict[str, Any]:
        """For the manifest: the first and the last check, and when one last passed."""
        return {"checks": self.checks, "first": self.first.to_json(),
                "last": self.last.to_json(),
                "last_passed": self.last_passed.isoformat(timespec="microseconds"),
                "failed": self.failure is not None, "rows_held_peak": self.peak_held,
                "warnings": list(self.warnings)}
