"""DNS lookups for the policy checks (TXT, TLSA, A/AAAA of policy hosts), with the AD bit.

aiodns does not expose the header flags, so these use dnspython's async resolver: queries go
out with EDNS DO and AD set (RFC 6840 §5.7), and `authenticated` is the AD bit of the answer.
The AD bit is only as trustworthy as the path to the resolver: use a validating resolver on
the same host (e.g. unbound on 127.0.0.1) for real scans.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncresolver
import dns.exception
import dns.flags
import dns.nameserver
import dns.rcode
import dns.rdatatype
import dns.resolver

from scanner.config import Timeouts
from scanner.dns.reply import StubReply
from scanner.dns.slot_gate import SlotGate
from scanner.dns.udp import UdpStub
from scanner.model.status import DnsStatus

log = logging.getLogger(__name__)

#: type name -> code (dnspython's from_text goes through its enum machinery on each call)
_rdtype = functools.cache(dns.rdatatype.from_text)
_AD = int(dns.flags.AD)  # a plain int: IntFlag arithmetic builds an enum member each time


@dataclass(frozen=True, slots=True)
class PolicyAnswer:
    """One lookup: status, the records (dnspython rdata; from a UDP reply, TXT records as
    `reply.TxtStrings`), and the AD bit of the answer."""

    status: DnsStatus
    records: tuple[object, ...] = ()
    authenticated: bool = False
    detail: str | None = None


def _split_server(spec: str) -> tuple[str, int]:
    """"host", "host:port" or "[v6]:port" -> (host, port)."""
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 53
    if spec.count(":") == 1:
        host, port = spec.split(":")
        return host, int(port)
    return spec, 53


class PolicyResolver:
    """dnspython resolver for policy records; one per scan, inside the event loop."""

    def __init__(self, resolvers: Sequence[str], timeouts: Timeouts, in_flight: int = 200
                 ) -> None:
        configure = not resolvers
        self._resolver = dns.asyncresolver.Resolver(configure=configure)
        if resolvers:
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*_split_server(s)) for s in resolvers]
        self._resolver.timeout = timeouts.dns_query
        self._resolver.lifetime = timeouts.dns_query * timeouts.dns_tries
        self._resolver.use_edns(0, dns.flags.DO, 1232)
        self._resolver.flags = dns.flags.RD | dns.flags.AD
        self._resolver.cache = None
        self._slots = SlotGate(in_flight)
        self.in_flight_peak = 0  # most queries in flight at once (tests, the integrator)
        # queries go through a lean shared-socket stub: dnspython's resolver costs ~1 ms each
        servers = [(ns.address, ns.port) if isinstance(ns, dns.nameserver.Do53Nameserver)
                   else (str(ns), self._resolver.port) for ns in self._resolver.nameservers]
        self._stub = UdpStub(servers, timeouts.dns_query, timeouts.dns_tries)

    async def query(self, name: str, rdtype: str) -> PolicyAnswer:
        """The records of one type at a name; every failure becomes a status."""
        return (await self.query_many([(name, rdtype)]))[0]

    async def query_many(self, queries: Sequence[tuple[str, str]]) -> list[PolicyAnswer]:
        """Several lookups sent together, each counted against the in-flight limit."""
        wanted = [(name, _rdtype(rdtype)) for name, rdtype in queries]
        answers: list[PolicyAnswer] = []
        most = self._slots.size  # a batch may take every slot, never more
        for at in range(0, len(wanted), most):
            batch = wanted[at:at + most]
            replies = await self._ask(batch)
            answers += [_answer(r) for r in replies]
        return answers

    async def _ask(self, batch: Sequence[tuple[str, int]]
                   ) -> list[StubReply | dns.exception.DNSException]:
        # a batch takes all its slots at once: batches each holding some slots and waiting for
        # more would deadlock
        await self._slots.take(len(batch))
        self.in_flight_peak = max(self.in_flight_peak, self._slots.taken)
        try:
            return await self._stub.query_many(batch)
        finally:
            self._slots.give(len(batch))

    def close(self) -> None:
        """Release the stub's sockets (also released when the resolver is collected)."""
        self._stub.close()

    async def txt(self, name: str) -> tuple[DnsStatus, tuple[str, ...]]:
        """TXT strings at a name (character-strings of one record joined, RFC 7208 §3.3)."""
        return (await self.txt_many([name]))[0]

    async def txt_many(self, names: Sequence[str]) -> list[tuple[DnsStatus, tuple[str, ...]]]:
        """`txt` of several names, asked together."""
        answers = await self.query_many([(name, "TXT") for name in names])
        return [(a.status, tuple(b"".join(r.strings).decode("utf-8", "replace")  # type: ignore
                                 for r in a.records)) for a in answers]

    async def addresses(self, name: str) -> tuple[DnsStatus, tuple[str, ...]]:
        """A then AAAA addresses of a name; OK when at least one."""
        a, aaaa = await self.query_many([(name, "A"), (name, "AAAA")])
        found = tuple(str(r) for r in (*a.records, *aaaa.records))
        if found:
            return DnsStatus.OK, found
        return (a.status if a.status is not DnsStatus.NODATA else aaaa.status), ()


def _answer(reply: StubReply | dns.exception.DNSException) -> PolicyAnswer:
    """One reply (or why there is none) as a status and the records of the asked type."""
    if isinstance(reply, dns.exception.Timeout):
        return PolicyAnswer(DnsStatus.TIMEOUT, detail=str(reply))
    if isinstance(reply, dns.exception.DNSException):
        return PolicyAnswer(DnsStatus.ERROR, detail=f"{type(reply).__name__}: {reply}")
    rcode = reply.rcode
    if rcode == dns.rcode.NXDOMAIN:
        return PolicyAnswer(DnsStatus.NXDOMAIN)
    if rcode != dns.rcode.NOERROR:  # SERVFAIL, REFUSED...
        answered = dns.rcode.to_text(dns.rcode.Rcode(rcode))
        return PolicyAnswer(DnsStatus.SERVFAIL, detail=f"the server answered {answered}")
    ad = bool(reply.flags & _AD)
    if not reply.records:
        return PolicyAnswer(DnsStatus.NODATA, authenticated=ad)
    return PolicyAnswer(DnsStatus.OK, reply.records, ad)
