"""One c-ares channel (aiodns) for the whole scan, and how its quirks are handled.

Measured with pycares 5.2 / c-ares 1.34 against the lab server (see tests/dns/test_dns.py):

- Adaptive timeouts. Once c-ares has 3 answers from a server, each try times out after 5x that
  server's average latency, never below 250 ms, doubling per try with jitter; the configured
  timeout only applies to a fresh channel. c-ares notices an expired try when the loop's timer
  calls it (every min(dns_query, 1 s); see "No event thread"), so after fast answers a silent
  server is given up after about one tick per try (2 s for 2 tries of 2 s, where the budget
  is 4 s) whatever `dns_query` says, and an answer slower than the last try's window is lost
  (a late answer to an earlier try is dropped). So when c-ares reports a timeout sooner than
  the configured budget (dns_query x dns_tries), the query is asked once more on a fresh
  one-try channel, which has no latency history and waits the full `dns_query` (capped at 5 s
  by c-ares).
- Query cache. c-ares caches answers for min(TTL, 1 h) (about 1.2 KB each). Within a scan each
  name is asked about once anyway (MX per domain; A/AAAA via the resolver's own cache), so the
  cache only costs: with it, an MX query took 1.25x the CPU (65-76 against 56-57 us on the
  345k lab, `benchmarks/dns_queries.py`). pycares has no option for it, so
  `without_query_cache` re-creates each new channel through c-ares' own `ares_save_options` /
  `ares_init_options` with `qcache_max_ttl` 0 (c-ares' documented way to turn it off). Should
  that fail (another pycares), the cache stays and is flushed (channel reinit, which keeps the
  configured servers) every `QCACHE_FLUSH_EVERY` queries, so it never holds hours of answers.
- Truncation. A UDP answer with TC=1 is re-asked over TCP by c-ares (EDNS size 1232).
- SERVFAIL and REFUSED answers are retried by c-ares up to `dns_tries`; NXDOMAIN is final.
- No event thread. pycares 5 runs c-ares in a thread of its own by default, and every answer
  then crosses back to the event loop (call_soon_threadsafe, a GIL hand-over). That cost a
  quarter of the scanner's CPU on a STARTTLS-only lab survey (34,500 domains: 10.3 s with the
  thread, 7.6 s without). `LoopResolver` takes aiodns's other path: c-ares sockets are watched
  by the event loop (add_reader) and timeouts processed by a loop timer (at most 1 s apart).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiodns
import pycares
from pycares import _cares

from scanner.config import ConfigError, Limits, Timeouts
from scanner.dns.errors import ares_code, error_detail
from scanner.dns.slot_gate import SlotGate

log = logging.getLogger(__name__)

QCACHE_FLUSH_EVERY = 10_000
#: Fresh retry channels open at once (each holds two descriptors).
RETRY_CHANNELS = 32
_EARLY = 0.9  # a timeout before this share of the configured budget is "c-ares gave up early"
_MAX_TRY_S = 5.0  # c-ares' cap on one try (ARES_OPT_MAXTIMEOUTMS, which pycares does not expose)
_NET_TICK_S = 0.5  # the safety net's sweeps are at least this far apart
#: ares.h's ARES_OPT_QUERY_CACHE (c-ares >= 1.23), which pycares does not export
_ARES_OPT_QUERY_CACHE = 1 << 21


def without_query_cache(channel: pycares.Channel) -> bool:
    """Re-create a new, unused channel's c-ares channel with the query cache off.

    The options are c-ares' own (`ares_save_options`), the servers its CSV with their ports
    (the saved options keep IPv4 addresses only). False, with the channel as it was, when this
    pycares does not allow it.
    """
    try:
        ffi, lib = _cares.ffi, _cares.lib
        cell: Any = channel._channel  # pycares' `ares_channel *`
        old = cell[0]
    except (AttributeError, TypeError, IndexError):
        return False
    options = ffi.new("struct ares_options *")
    optmask = ffi.new("int *")
    if lib.ares_save_options(old, options, optmask) != lib.ARES_SUCCESS:
        return False
    servers = lib.ares_get_servers_csv(old)
    fresh = ffi.new("ares_channel *")
    try:
        options.qcache_max_ttl = 0
        if lib.ares_init_options(fresh, options, optmask[0] | _ARES_OPT_QUERY_CACHE) \
                != lib.ARES_SUCCESS:
            return False
        if servers == ffi.NULL or lib.ares_set_servers_csv(fresh[0], servers) \
                != lib.ARES_SUCCESS:
            lib.ares_destroy(fresh[0])
            return False
    finally:
        lib.ares_destroy_options(options)
        if servers != ffi.NULL:
            lib.ares_free_string(servers)
    cell[0] = fresh[0]
    lib.ares_destroy(old)  # unused: no query, no socket
    return True


class LoopResolver(aiodns.DNSResolver):
    """An aiodns resolver whose c-ares sockets the event loop watches: no event thread.

    aiodns takes this path itself only when it cannot start the thread; `_make_channel` and
    `_sock_state_cb` are its (aiodns 4) hooks for it, so aiodns is pinned below 5.
    """

    query_cache = True  # c-ares' query cache is on (`without_query_cache` could not turn it off)

    def _make_channel(self, **kwargs: Any) -> tuple[bool, pycares.Channel]:
        owner = weakref.ref(self)  # the channel must not keep its resolver alive

        def on_socket_state(fd: int, readable: bool, writable: bool) -> None:
            resolver = owner()
            if resolver is not None:
                resolver._sock_state_cb(fd, readable, writable)

        channel = pycares.Channel(sock_state_cb=on_socket_state, timeout=self._timeout,
                                  **kwargs)
        self.query_cache = not without_query_cache(channel)
        return False, channel


@dataclass(slots=True)
class ChannelStats:
    """Counters for tests and the integrator: what the channel did."""

    queries: int = 0
    early_timeouts: int = 0  # c-ares gave up before the configured budget: retried once
    retry_timeouts: int = 0  # ... and the fresh retry timed out as well
    qcache_flushes: int = 0


class DnsChannel:
    """Queries through one shared aiodns resolver, at most `limits.dns_in_flight` at a time.

    Create it inside the running event loop; invalid resolver strings raise ConfigError.
    """

    def __init__(self, resolvers: Sequence[str], timeouts: Timeouts, limits: Limits) -> None:
        self._servers = tuple(resolvers)
        self._timeouts = timeouts
        self._budget_s = min(timeouts.dns_query, _MAX_TRY_S) * timeouts.dns_tries
        # A safety net only: c-ares always calls back, after at most timeout x (2^tries - 1).
        self._deadline_s = timeouts.dns_query * (2 ** timeouts.dns_tries) + 1.0
        self._slots = SlotGate(limits.dns_in_flight)
        self._retry_slots = asyncio.Semaphore(RETRY_CHANNELS)
        self._main = self._resolver(self._servers, timeouts.dns_query, timeouts.dns_tries)
        #: c-ares' query cache is on, and so flushed every `QCACHE_FLUSH_EVERY` queries
        self.query_cache = self._main.query_cache
        self.stats = ChannelStats()
        self._closed = False
        # The safety net: (deadline, [future]) per query in asking order, so in deadline order,
        # given up by one sweep at a time rather than a timer per query (an asyncio.timeout a
        # query was 2 % of a STARTTLS-only scan's CPU). The cell is emptied once answered so
        # that the net never keeps an answer alive.
        self._loop = asyncio.get_running_loop()
        self._net: deque[tuple[float, list[asyncio.Future[pycares.DNSResult] | None]]] = deque()
        self._net_timer: asyncio.TimerHandle | None = None

    @staticmethod
    def _resolver(servers: Sequence[str], timeout: float, tries: int) -> LoopResolver:
        try:
            return LoopResolver(nameservers=list(servers) or None, timeout=timeout,
                                      tries=tries, loop=asyncio.get_running_loop())
        except pycares.AresError as exc:
            raise ConfigError(f"invalid DNS resolver in {', '.join(servers)}: "
                              f"{error_detail(exc)}") from exc

    @property
    def servers(self) -> tuple[str, ...]:
        """The configured resolvers, or the system's (as c-ares read them) when none were given."""
        return self._servers or tuple(self._main.nameservers)

    async def query(self, name: str, qtype: str) -> pycares.DNSResult:
        """One query; raises aiodns.error.DNSError (or TimeoutError from the safety net)."""
        await self._slots.take()
        try:
            started = time.monotonic()
            try:
                return await self._ask(self._main, name, qtype)
            except aiodns.error.DNSError as exc:
                waited = time.monotonic() - started
                if ares_code(exc) != pycares.errno.ARES_ETIMEOUT or self._closed \
                        or waited >= _EARLY * self._budget_s:
                    raise
            self.stats.early_timeouts += 1
            return await self._ask_fresh(name, qtype)
        finally:
            self._slots.give()

    async def _ask(self, resolver: aiodns.DNSResolver, name: str,
                   qtype: str) -> pycares.DNSResult:
        if resolver is self._main:
            self.stats.queries += 1
            if self.query_cache and self.stats.queries % QCACHE_FLUSH_EVERY == 0:
                self._flush_query_cache()
        fut = resolver.query_dns(name, qtype)
        cell: list[asyncio.Future[pycares.DNSResult] | None] = [fut]
        deadline = self._loop.time() + self._deadline_s
        self._net.append((deadline, cell))
        if self._net_timer is None:
            self._net_timer = self._loop.call_at(deadline, self._sweep_net)
        try:
            return await fut
        finally:
            cell[0] = None

    def _sweep_net(self) -> None:
        """Give up the queries c-ares has not called back by their deadline (TimeoutError)."""
        self._net_timer = None
        now = self._loop.time()
        net = self._net
        while net and net[0][0] <= now:
            fut = net.popleft()[1][0]
            if fut is not None and not fut.done():
                fut.set_exception(TimeoutError(
                    f"c-ares did not call back within {self._deadline_s:g} s"))
        if net:
            self._net_timer = self._loop.call_at(max(net[0][0], now + _NET_TICK_S),
                                                 self._sweep_net)

    async def _ask_fresh(self, name: str, qtype: str) -> pycares.DNSResult:
        """Ask on a new one-try channel: no latency history, so it waits the full dns_query."""
        async with self._retry_slots:
            fresh = self._resolver(self.servers, self._timeouts.dns_query, 1)
            try:
                async with asyncio.timeout(self._timeouts.dns_query + 1.0):
                    return await fresh.query_dns(name, qtype)
            except aiodns.error.DNSError as exc:
                if ares_code(exc) != pycares.errno.ARES_ETIMEOUT:
                    raise
                self.stats.retry_timeouts += 1
                raise aiodns.error.DNSError(
                    exc.args[0], f"{error_detail(exc)} (retried once on a fresh channel)"
                ) from exc
            except TimeoutError:
                self.stats.retry_timeouts += 1
                raise
            finally:
                await fresh.close()

    def _flush_query_cache(self) -> None:
        # aiodns has no public handle on the channel; reinit flushes c-ares' query cache and
        # keeps servers set explicitly (verified in tests). Skipped quietly if that changes.
        channel = getattr(self._main, "_channel", None)
        if channel is None:
            return
        try:
            channel.reinit()
            self.stats.qcache_flushes += 1
        except (pycares.AresError, RuntimeError) as exc:
            log.debug("c-ares query cache flush failed: %s", exc)

    async def ask_server(self, server: str, questions: Sequence[tuple[str, str]],
                         timeout_s: float, tries: int) -> list[pycares.DNSResult | BaseException]:
        """Ask one server alone each (name, type), on a fresh channel of its own: no answer
        cached, no latency history. Each answer, or its aiodns DNSError (or TimeoutError)."""
        probe = self._resolver((server,), timeout_s, tries)
        try:
            # a safety net: c-ares calls back after at most timeout x (2^tries - 1)
            async with asyncio.timeout(timeout_s * (2 ** tries) + 1.0):
                answers: list[pycares.DNSResult | BaseException] = await asyncio.gather(
                    *(probe.query_dns(name, qtype) for name, qtype in questions),
                    return_exceptions=True)
        except TimeoutError:
            return [TimeoutError(f"c-ares did not call back within {timeout_s:g} s")
                    for _ in questions]
        finally:
            await probe.close()
        return answers

    async def close(self) -> None:
        """Cancel outstanding queries and release the channel."""
        self._closed = True
        if self._net_timer is not None:
            self._net_timer.cancel()
            self._net_timer = None
        self._net.clear()
        with contextlib.suppress(RuntimeError):
            await self._main.close()
