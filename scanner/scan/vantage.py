"""VantageWatch: notice when the scanner's own network fails, instead of blaming the servers.

Two failures look, from the results alone, like thousands of broken servers: outbound port 25
blocked or dying at the vantage point (every server "times out"), and the resolver going silent
(every domain a DNS "timeout"). The watch keeps, per step, a sliding window over the most
recently started results and the scan's running baseline share of timeouts before that window.
Each timeout result is held back (not written) until the path is shown alive after it: `confirm`
requests sent after it timed out were answered. A sudden wave -- at least `min_wave` timeouts across
distinct providers making up a share of the window far above the baseline -- stops the scan with
VantageFailure, and none of the held results is recorded, so resume re-probes them.

Only silence counts against the path: an answer of any kind (a SERVFAIL, REFUSED or NXDOMAIN
to a DNS question, a refused connection) came back over it, proves it works, and confirms the
held results like any other answer. Whether the resolver itself still tells the truth is
`resolver_watch`'s question, judged by questions whose answers are known.

A hostile list's normal share of tarpits does not trip it: the threshold rises with the baseline,
and tarpits are released as soon as healthy servers answer after them.

A scan too small for either test (fewer than `sample` servers, or `scanner check`) still says
whether its results can be told apart from a broken path: the run's verdict (`verdict()`, the
manifest's `vantage_status`) is "ok" once one server sent an SMTP reply (or the user's
`--reference-host` did), and "undetermined" when every server contacted failed at or right
after the TCP connect without a word, as a blocked or intercepting port 25 would make them.
"""

from __future__ import annotations

import asyncio
import bisect
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from scanner.model.records import HostRecord, MailHosts, SmtpProbe
from scanner.model.status import (
    ConnectStatus,
    DnsStatus,
    HandshakeStatus,
    HostOutcome,
    ReplyStatus,
    StartTlsStatus,
)
from scanner.policy.dane import TlsaLookup
from scanner.scan.policy_rollup import DomainPolicyFacts

_SILENT_CONNECT = frozenset({ConnectStatus.TIMEOUT, ConnectStatus.UNREACHABLE})
# Outcomes a dead path produces: nothing came back in time, or the connect found no route.
_SMTP_TIMEOUTS = frozenset({HostOutcome.CONNECT_TIMEOUT, HostOutcome.UNREACHABLE,
                            HostOutcome.GREETING_TIMEOUT, HostOutcome.TIMEOUT,
                            HostOutcome.HANDSHAKE_TIMEOUT})


# A greeting that came back, of any code, or bytes that are no SMTP reply: something beyond our
# own network answered on port 25. A refused connect is not enough: a firewall at our end can
# send the RST, as a transparent proxy can accept and close, or hold the connection silent.
_SPOKE = frozenset({ReplyStatus.OK, ReplyStatus.REJECTED_421, ReplyStatus.REJECTED_4XX,
                    ReplyStatus.REJECTED_554, ReplyStatus.REJECTED_5XX,
                    ReplyStatus.PROTOCOL_ERROR, ReplyStatus.REPLY_TOO_LONG})
# never tried (excluded, private), or our own failure: says nothing about the path
_NOT_CONTACTED = frozenset({ConnectStatus.EXCLUDED, ConnectStatus.PRIVATE_ADDRESS,
                            ConnectStatus.INTERNAL_ERROR})


def server_spoke(probe: SmtpProbe) -> bool:
    """True when the server sent an SMTP reply (any code) or other bytes in place of one."""
    return probe.greeting_status in _SPOKE


class VantageStatus(StrEnum):
    """Can the results be told apart from a failure of the scan's own path to port 25?"""

    OK = "ok"  # a server (or the reference host) answered: the path carries SMTP
    UNDETERMINED = "undetermined"  # every server contacted failed without a word


@dataclass(frozen=True, slots=True)
class VantageVerdict:
    """One run's finding on its own path: the manifest's `vantage_status` and `vantage_note`."""

    status: VantageStatus
    note: str  # one sentence: what happened, and for "undetermined" why it may be ours


class VantageFailure(RuntimeError):
    """The vantage point, not the servers, is failing: stop and say so."""


def is_smtp_timeout(record: HostRecord) -> bool:
    """True when any step of the probe waited in vain (or the connect found no route)."""
    p = record.probe
    return record.outcome in _SMTP_TIMEOUTS or ReplyStatus.TIMEOUT in (
        p.greeting_status, p.ehlo_status, p.ehlo_tls_status) or \
        p.starttls_status is StartTlsStatus.TIMEOUT or p.handshake_status is HandshakeStatus.TIMEOUT


def policy_lookups_unanswered(facts: DomainPolicyFacts, tlsa: Mapping[str, TlsaLookup]
                              ) -> bool:
    """True when a TXT or TLSA lookup, or the MTA-STS fetch, got no answer at all.

    Only silence speaks against the network path: a SERVFAIL, REFUSED or NXDOMAIN answer, or a
    refused connection, came back over it, so it counts as an answer however quickly it came
    (a list of parked or broken domains is full of them).
    """
    return facts.mail.unanswered or facts.sts.unanswered \
        or any(t.unanswered for t in tlsa.values())


def is_dns_timeout(mail: MailHosts) -> bool:
    """True when the MX lookup, or the address lookup of any MX host, timed out."""
    return mail.status is DnsStatus.TIMEOUT or any(
        h.address_status is DnsStatus.TIMEOUT for h in mail.hosts)


@dataclass(slots=True, eq=False)
class _Held:
    since: float  # when the timeout was reported: answers to later requests confirm it
    confirmations: int = 0
    released: asyncio.Event = field(default_factory=asyncio.Event)


class WaveDetector:
    """Sliding-window detector of a sudden wave of timeouts for one step (SMTP or DNS).

    The window holds the `window` most recently *started* finished items: a dead path makes
    every item started after it fail, while the servers' own timeouts (tarpits) sit among
    healthy items started at the same time, however closely their timeouts bunch together.
    """

    def __init__(self, what: str, *, window: int = 40, min_wave: int = 20,
                 settle_after: float = 600.0, confirm: int = 2) -> None:
        self._what = what
        self._size = max(window, min_wave)
        self._window: list[tuple[float, bool, str]] = []  # (started, timed out, key), sorted
        self._window_timeouts = 0  # items in the window that timed out
        self._min_wave = min_wave
        self._settle_after = settle_after
        self._confirm = confirm
        self._before_timeouts = 0  # items that left the window: the running baseline
        self._before_total = 0
        self._held: list[_Held] = []
        self._in_flight = 0
        self.failure: VantageFailure | None = None
        self.peak_held = 0

    @property
    def held(self) -> int:
        """Timeout results currently held back."""
        return len(self._held)

    @property
    def in_flight(self) -> int:
        """Items begun and not yet admitted or skipped (held ones are no longer in flight)."""
        return self._in_flight

    def begin(self) -> float:
        """Note that a lookup or probe starts; returns its start time for `admit`."""
        self._in_flight += 1
        return time.monotonic()

    def skip(self) -> None:
        """A begun item that says nothing about the path (never contacted, or refused)."""
        self._in_flight = max(0, self._in_flight - 1)
        self._release_if_idle()

    def baseline(self) -> float:
        """Share of timeouts among the items older than the window (0 until it has filled)."""
        if self._before_total < self._size:
            return 0.0
        return self._before_timeouts / self._before_total

    async def admit(self, timed_out: bool, started: float, key: str) -> None:
        """Return when the result may be written; raise VantageFailure on a wave."""
        self._in_flight = max(0, self._in_flight - 1)
        if self.failure is not None:
            raise self.failure
        self._push(started, timed_out, key)
        if self._tripped():
            self._fail()
            raise self.failure  # type: ignore[misc]
        if not timed_out:
            # a request sent after these timed out was answered: the path was alive, they are
            # real (answers to older requests prove nothing: they may predate the outage)
            for held in self._held:
                if started <= held.since:
                    continue
                held.confirmations += 1
                if held.confirmations >= self._confirm:
                    held.released.set()
            self._release_if_idle()
            return
        held = _Held(time.monotonic())
        self._held.append(held)
        self.peak_held = max(self.peak_held, len(self._held))
        self._release_if_idle()
        try:
            await asyncio.wait_for(held.released.wait(), self._settle_after)
        except TimeoutError:
            pass  # nothing confirmed or condemned it for this long: not part of a wave
        finally:
            self._held.remove(held)
        if self.failure is not None:
            raise self.failure

    def _push(self, started: float, timed_out: bool, key: str) -> None:
        bisect.insort(self._window, (started, timed_out, key))
        self._window_timeouts += timed_out
        if len(self._window) > self._size:
            _, old, _ = self._window.pop(0)
            self._window_timeouts -= old
            self._before_total += 1
            self._before_timeouts += old

    def _tripped(self) -> bool:
        if self._window_timeouts < self._min_wave:  # most admits: no need to look closer
            return False
        timeouts = [key for _, t, key in self._window if t]
        if len(timeouts) < self._min_wave or len(set(timeouts)) < self._min_wave // 2:
            return False
        base = self.baseline()
        # far above the baseline: 80% of the headroom between it and "everything times out"
        return len(timeouts) / len(self._window) >= base + 0.8 * (1.0 - base)

    def _fail(self) -> None:
        timeouts = sum(t for _, t, _ in self._window)
        self.failure = VantageFailure(
            f"{timeouts} of the last {len(self._window)} {self._what} timed out across "
            f"unrelated servers (usual share {100 * self.baseline():.0f}%): the network at this "
            f"vantage point looks broken, not the servers. The {len(self._held) + 1} results "
            "held back were not recorded; fix the network, then rerun with --resume")
        for held in self._held:
            held.released.set()

    def _release_if_idle(self) -> None:
        """Nothing else in flight could confirm the held results: they are no wave."""
        if self._in_flight == 0:
            for held in self._held:
                held.released.set()


class VantageWatch:
    """Watches SMTP probe and DNS results for signs that the vantage point itself fails."""

    def __init__(self, sample: int = 20, settle_after: float = 60.0, *,
                 min_wave: int = 20, port: int = 25) -> None:
        self._sample = sample
        self._port = port  # the SMTP port probed, for the verdict's words
        self._settle_after = settle_after
        self._silent = 0
        self._gate_open = False  # the first-`sample` rule no longer holds silent connects
        self._first_waiting = 0  # silent connects held by that rule now
        self._all_begun = False  # no probe is still to begin (the pipeline says so)
        self._failure: VantageFailure | None = None
        self._decided = asyncio.Event()
        #: how the path to port 25 was shown to work in this run; None until it was
        self.path_shown: str | None = None
        #: outcomes of the contacted probes released while the path was not shown to work
        self._mute: Counter[str] = Counter()
        # long: in a live scan answers keep confirming held timeouts within moments
        hold = 10 * settle_after
        self.smtp = WaveDetector("mail server probes", min_wave=min_wave, settle_after=hold)
        self.dns = WaveDetector("DNS lookups", min_wave=min_wave, settle_after=hold)
        self.policies = WaveDetector("domains' policy lookups (TXT, TLSA, MTA-STS)",
                                     min_wave=min_wave, settle_after=hold)

    @property
    def failure(self) -> VantageFailure | None:
        """Why the scan was stopped as the vantage point's fault, if it was."""
        for failure in (self._failure, self.smtp.failure, self.dns.failure,
                        self.policies.failure):
            if failure is not None:
                return failure
        return None

    @property
    def held(self) -> int:
        """Finished probes whose timeouts are held back until the path is confirmed."""
        return self._first_waiting + self.smtp.held

    def begin_probe(self) -> float:
        """Note that a probe starts; pass the result to `admit` with the record."""
        return self.smtp.begin()

    def no_more_probes(self) -> None:
        """Every probe of the scan has begun: what is held now, nothing to come can clear."""
        self._all_begun = True
        self._decide_if_idle()

    def reference_answered(self, note: str) -> None:
        """The user's reference host answered: port 25 works here, silent servers are theirs."""
        self.path_shown = note
        self._open_gate()

    def reference_failed(self, message: str) -> VantageFailure:
        """The user's reference host did not answer: the scan must not start."""
        self._failure = VantageFailure(message)
        self._decided.set()
        return self._failure

    def verdict(self) -> VantageVerdict | None:
        """This run's finding on its path to port 25; None when it contacted no server."""
        if self.path_shown is not None:
            return VantageVerdict(VantageStatus.OK, self.path_shown)
        n = sum(self._mute.values())
        if not n:
            return None
        outcomes = ", ".join(f"{k} {v}" for k, v in self._mute.most_common())
        if n == 1:
            subject, result = ("The only mail server address contacted sent no SMTP reply",
                               "this failure may describe our network rather than the server")
        else:
            subject, result = (
                f"None of the {n} mail server addresses contacted sent an SMTP reply",
                "these failures may describe our network rather than the servers")
        return VantageVerdict(VantageStatus.UNDETERMINED, (
            f"{subject} ({outcomes}), which port {self._port} blocked or intercepted at this "
            f"vantage point would also cause, so {result}."))

    def begin_lookup(self) -> float:
        """Note that a domain's DNS resolution starts; pass the result to `admit_dns`."""
        return self.dns.begin()

    def begin_policies(self) -> float:
        """Note that a domain's policy lookups start; pass the result to `admit_policies`."""
        return self.policies.begin()

    async def admit_policies(self, domain: str, facts: DomainPolicyFacts,
                             tlsa: Mapping[str, TlsaLookup], started: float) -> None:
        """Return when the domain's policy facts may be written; raise on a wave of silence."""
        await self.policies.admit(policy_lookups_unanswered(facts, tlsa), started, domain)

    async def admit_dns(self, mail: MailHosts, started: float) -> None:
        """Return when the domain's DNS result may be used; raise VantageFailure on a wave."""
        await self.dns.admit(is_dns_timeout(mail), started, mail.domain)

    async def admit(self, record: HostRecord, started: float | None = None,
                    provider: str | None = None) -> None:
        """Return when the record may be written; raise VantageFailure when egress is dead."""
        await self._admit_first(record)
        if started is not None:
            timed_out = is_smtp_timeout(record)
            if not timed_out and record.probe.connect_status is not ConnectStatus.OK:
                # never contacted, or refused: no SMTP conversation proves the path carries one
                self.smtp.skip()
                self._decide_if_idle()
            else:
                await self.smtp.admit(timed_out, started, provider or record.probe.ip)
        if self.path_shown is None:  # the record is written: it counts towards the verdict
            self._observe(record)

    def _observe(self, record: HostRecord) -> None:
        probe = record.probe
        if probe.connect_status in _NOT_CONTACTED:
            return
        if server_spoke(probe):
            self.path_shown = (f"At least one mail server sent an SMTP reply, so port "
                               f"{self._port} traffic from this vantage point reached the "
                               "servers and came back.")
            self._mute.clear()
            return
        self._mute[record.outcome.value] += 1

    def _open_gate(self) -> None:
        self._gate_open = True
        self._decided.set()

    def _decide_if_idle(self) -> None:
        """Only the silent connects held here are left, and no probe is still to begin:
        nothing can clear or condemn them, so waiting out `settle_after` helps no one."""
        if self._first_waiting and self._all_begun \
                and self.smtp.in_flight <= self._first_waiting:
            self._open_gate()

    async def _admit_first(self, record: HostRecord) -> None:
        """Until one probe connects: hold silent connects, stop when the first `sample` are."""
        if self._gate_open:
            return
        if self._failure is not None:
            raise self._failure
        status = record.probe.connect_status
        if status in (ConnectStatus.EXCLUDED, ConnectStatus.PRIVATE_ADDRESS):
            return
        if status not in _SILENT_CONNECT:
            self._open_gate()
            return
        self._silent += 1
        if self._silent >= self._sample:
            self._failure = VantageFailure(
                f"the first {self._silent} mail servers all timed out or were unreachable at "
                "TCP connect: outbound port 25 looks blocked at this vantage point. Nothing was "
                "recorded for them; fix egress, then rerun with --resume")
            self._decided.set()
            raise self._failure
        self._first_waiting += 1
        try:
            self._decide_if_idle()
            # a handful of silent servers and nothing else happening: that is just the servers
            # (the verdict still says the run could not tell)
            await asyncio.wait_for(self._decided.wait(), self._settle_after)
        except TimeoutError:
            self._open_gate()
        finally:
            self._first_waiting -= 1
        if self._failure is not None:
            raise self._failure
