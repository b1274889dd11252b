"""The dns stage: where a domain's mail goes, and the addresses of its mail hosts.

RFC 5321 §5.1: the MX records, by preference; with no MX (NODATA), the domain itself is the
one mail host (implicit MX) if it has an address. RFC 7505: a null MX (`0 .`) means the domain
accepts no mail. Every failure is a status on the record, never an exception. The c-ares channel
and its quirks (adaptive timeouts, query cache, TCP fallback) are in `channel.py`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import aiodns
import pycares

from scanner.config import Limits, ResolverCheck, Timeouts
from scanner.dns.cache import LookupCache
from scanner.dns.channel import ChannelStats, DnsChannel
from scanner.dns.errors import (
    NEGATIVE_ANSWERS,
    combine_statuses,
    dns_status_from,
    error_detail,
    no_data_error,
)
from scanner.dns.resolver_check import CheckReport, check_resolvers
from scanner.model.records import MailHosts, MxHost
from scanner.model.status import DnsStatus, MxSource

log = logging.getLogger(__name__)

#: MX host names kept, least recently used first out (~0.4 KB each): the provider names that
#: many domains share stay, a self-hosted name asked once falls out. 200,000 grew a 3.45M-domain
#: survey (126k MX names) by ~50 MB; a name evicted and asked again costs one more lookup.
HOST_CACHE_SIZE = 20_000
FAILURE_KEEP_S = 30.0  # a transient failure (timeout, servfail...) is asked again after this
_MAX_CNAME_HOPS = 16
_ADDRESS_TYPES = (("A", pycares.QUERY_TYPE_A), ("AAAA", pycares.QUERY_TYPE_AAAA))


class _Family(NamedTuple):
    """The outcome of one A or AAAA query."""

    qtype: str
    addresses: tuple[str, ...]
    cname: str | None
    status: DnsStatus
    detail: str | None


@dataclass(frozen=True, slots=True)
class HostAddresses:
    """A and AAAA of one name. cname_target is the canonical name when the name was an alias."""

    addresses: tuple[str, ...]  # IPv4 then IPv6, de-duplicated, in answer order
    status: DnsStatus  # OK when at least one address
    cname_target: str | None = None
    error_detail: str | None = None


def normalise_name(name: str) -> str:
    """Lower-case, without the trailing dot."""
    return name.rstrip(".").lower()


class MailResolver:
    """Resolves domains to their mail hosts; one per scan, created inside the event loop.

    `resolvers` are "host", "host:port" or "[v6]:port" strings (empty: the system's resolvers).
    MX host lookups are cached for the scan (LRU, `host_cache_size` names).
    """

    def __init__(self, resolvers: Sequence[str], timeouts: Timeouts, limits: Limits, *,
                 host_cache_size: int = HOST_CACHE_SIZE) -> None:
        self._timeouts = timeouts
        self._channel = DnsChannel(resolvers, timeouts, limits)
        self._hosts: LookupCache[HostAddresses] = LookupCache(self._load_hosts, host_cache_size)

    @property
    def channel_stats(self) -> ChannelStats:
        """What the c-ares channel did: queries, early timeouts retried, cache flushes."""
        return self._channel.stats

    @property
    def host_cache(self) -> LookupCache[HostAddresses]:
        """The MX host cache (hits, misses, joined, len)."""
        return self._hosts

    async def resolve_mail_hosts(self, domain: str) -> MailHosts:
        """MX set (or implicit / null MX) of `domain`, each host with its addresses."""
        started = time.monotonic()
        name = normalise_name(domain)
        try:
            status, source, hosts, detail = await self._mail_hosts(name)
        except Exception as exc:  # our own bug: recorded on the domain, the scan goes on
            log.exception("DNS resolution of %s failed", name)
            status, source, hosts = DnsStatus.INTERNAL_ERROR, MxSource.NONE, ()
            detail = f"{type(exc).__name__}: {exc}"
        return MailHosts(domain=name, status=status, mx_source=source, hosts=hosts,
                         dns_ms=round((time.monotonic() - started) * 1000), error_detail=detail)

    async def resolve_host(self, name: str) -> HostAddresses:
        """A and AAAA of one host name (not cached): the `--reference-host`."""
        return await self._lookup_addresses(normalise_name(name))

    async def _mail_hosts(
            self, domain: str) -> tuple[DnsStatus, MxSource, tuple[MxHost, ...], str | None]:
        try:
            answer = await self._channel.query(domain, "MX")
        except (aiodns.error.DNSError, TimeoutError) as exc:
            status = dns_status_from(exc)
            if status is DnsStatus.NODATA:
                return await self._implicit(domain)
            return status, MxSource.NONE, (), error_detail(exc)
        targets = mx_targets(answer)
        if targets is None:
            # RFC 7505: "0 ." means the domain accepts no mail
            return DnsStatus.OK, MxSource.NULL, (), None
        if not targets:  # an answer without MX records (a CNAME alone) is NODATA too
            return await self._implicit(domain)
        found = await self._hosts.get_many([name for _, name in targets])
        hosts = sorted((MxHost(name=name, preference=pref, addresses=f.addresses,
                               address_status=f.status, cname_target=f.cname_target,
                               error_detail=f.error_detail)
                        for (pref, name), f in zip(targets, found, strict=True)),
                       key=lambda h: (h.preference, h.name))
        return DnsStatus.OK, MxSource.MX, tuple(hosts), None

    async def _implicit(
            self, domain: str) -> tuple[DnsStatus, MxSource, tuple[MxHost, ...], str | None]:
        """RFC 5321 §5.1: no MX, so the domain's own A/AAAA, as one host of preference 0."""
        # Not through the host cache: each domain is asked once, and would evict providers.
        found = await self._lookup_addresses(domain)
        if found.status in NEGATIVE_ANSWERS:
            return found.status, MxSource.NONE, (), found.error_detail
        host = MxHost(name=domain, preference=0, addresses=found.addresses,
                      address_status=found.status, cname_target=found.cname_target,
                      error_detail=found.error_detail)
        detail = None if found.status is DnsStatus.OK else found.error_detail
        return found.status, MxSource.IMPLICIT, (host,), detail

    async def _load_hosts(self, names: Sequence[str]
                          ) -> list[tuple[HostAddresses, float | None]]:
        if len(names) == 1:
            found = [await self._lookup_addresses(names[0])]
        else:
            found = await asyncio.gather(*(self._lookup_addresses(name) for name in names))
        return [(f, None if f.status is DnsStatus.OK or f.status in NEGATIVE_ANSWERS
                 else FAILURE_KEEP_S) for f in found]

    async def _lookup_addresses(self, name: str) -> HostAddresses:
        """A and AAAA in parallel, combined.

        AAAA is asked in a task of its own and A in this one: a task and a gather fewer per
        host than gathering both.
        """
        (a_type, a_code), (aaaa_type, aaaa_code) = _ADDRESS_TYPES
        aaaa = asyncio.get_running_loop().create_task(self._addresses(name, aaaa_type, aaaa_code))
        try:
            first = await self._addresses(name, a_type, a_code)
        except BaseException:
            aaaa.cancel()
            raise
        results = (first, await aaaa)
        addresses = tuple(dict.fromkeys(a for r in results for a in r.addresses))
        cname = next((r.cname for r in results if r.cname), None)
        if addresses:
            status = DnsStatus.OK
            # a negative answer for one family is normal; anything else is worth a note
            notes = [r for r in results
                     if r.status is not DnsStatus.OK and r.status not in NEGATIVE_ANSWERS]
        else:
            status = combine_statuses(tuple(r.status for r in results))
            notes = list(results)
        detail = "; ".join(f"{r.qtype}: {r.detail}" for r in notes if r.detail) or None
        return HostAddresses(addresses, status, cname, detail)

    async def _addresses(self, name: str, qtype: str, code: int) -> _Family:
        """One A or AAAA query."""
        try:
            answer = await self._channel.query(name, qtype)
        except (aiodns.error.DNSError, TimeoutError) as exc:
            return _Family(qtype, (), None, dns_status_from(exc), error_detail(exc))
        addresses = tuple(r.data.addr for r in answer.answer if r.type == code
                          and isinstance(r.data, pycares.ARecordData | pycares.AAAARecordData))
        cname = canonical_name(name, answer)
        if not addresses:  # a CNAME to a name without this type: c-ares calls it success
            return _Family(qtype, (), cname, DnsStatus.NODATA, error_detail(no_data_error()))
        return _Family(qtype, addresses, cname, DnsStatus.OK, None)

    async def check_resolvers(self, check: ResolverCheck) -> CheckReport:
        """Ask every resolver (configured, or the system's) the check's questions, each on a
        fresh channel of its own (`resolver_check.py`)."""
        return await check_resolvers(self._channel, check, self._timeouts)

    async def close(self) -> None:
        """Stop lookups in flight and release the channel."""
        await self._hosts.close()
        await self._channel.close()


def mx_targets(answer: pycares.DNSResult) -> list[tuple[int, str]] | None:
    """(preference, host) of each MX record, one per host (lowest preference); None: null MX.

    Null MX when every target is the root. RFC 7505 forbids mixing "." with other MX records;
    when a domain does, the root targets are ignored, as sending MTAs do.
    """
    records = [(r.data.priority, normalise_name(r.data.exchange)) for r in answer.answer
               if isinstance(r.data, pycares.MXRecordData)]
    if not records:
        return []
    best: dict[str, int] = {}
    for pref, host in records:
        if host:
            best[host] = min(pref, best.get(host, pref))
    if not best:
        return None
    return [(pref, host) for host, pref in best.items()]


def canonical_name(name: str, answer: pycares.DNSResult) -> str | None:
    """Where the CNAME chain in the answer leads from `name`, None when it is not an alias."""
    aliases = {normalise_name(r.name): normalise_name(r.data.cname) for r in answer.answer
               if isinstance(r.data, pycares.CNAMERecordData)}
    current = normalise_name(name)
    for _ in range(_MAX_CNAME_HOPS):
        target = aliases.get(current)
        if target is None:
            break
        current = target
    return None if current == normalise_name(name) else current
