"""The dns stage against the lab's DNS server: every DNS case of the mixed population, caching,
timeouts, truncation; plus table-driven error mapping."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

import aiodns
import pycares
import pytest
from pycares import errno as ares

import scanner.dns.channel as channel_module
import scanner.dns.mail_resolver as dns_module
from scanner.config import ConfigError, Limits, Timeouts
from scanner.dns.cache import LookupCache
from scanner.dns.errors import combine_statuses, dns_status_from, error_detail
from scanner.dns.mail_resolver import MailResolver, canonical_name, mx_targets
from scanner.lab.population.builder import DnsCase, Population, build_zone
from scanner.lab.population.profiles import generate
from scanner.lab.servers.dns import DnsServer, Zone, start_dns_server
from scanner.lab.truth.tables import DOMAIN_TRUTH, domain_rows
from scanner.model.records import MailHosts
from scanner.model.status import DnsStatus, MxSource

FAST = Timeouts(dns_query=0.3, dns_tries=2)  # the never-answered case ends in about a second
S = DnsStatus


# -- fixtures -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def population() -> Population:
    return generate("mixed", 150, seed=7)


@pytest.fixture
async def lab(population: Population) -> AsyncIterator[DnsServer]:
    server = await start_dns_server(build_zone(population))
    yield server
    await server.close()


@pytest.fixture
async def resolver(lab: DnsServer) -> AsyncIterator[MailResolver]:
    r = MailResolver([lab.address], FAST, Limits())
    yield r
    await r.close()


def _small_zone() -> Zone:
    zone = Zone()
    zone.add_mx("a.test", 20, "MX2.A.test.")
    zone.add_mx("a.test", 10, "mx1.a.test")
    zone.add_mx("a.test", 30, "mx1.a.test")  # the same host twice: the lower preference wins
    zone.add_a("mx1.a.test", "127.0.1.1")
    zone.add_aaaa("mx1.a.test", "::1")
    zone.add_a("mx1.a.test", "127.0.1.1")  # a duplicate address is listed once
    zone.add_cname("mx2.a.test", "mx1.a.test")
    zone.add_mx("v6only.test", 10, "mx.v6only.test")
    zone.add_aaaa("mx.v6only.test", "::2")
    zone.add_mx("broken-host.test", 10, "mx.broken-host.test")
    zone.fail("mx.broken-host.test", "servfail")
    zone.add_mx("nx-host.test", 10, "mx.nx-host.test")  # mx.nx-host.test does not exist
    zone.add_cname("alias.test", "implicit.test")
    zone.add_a("implicit.test", "127.0.1.2")
    zone.fail("silent.test", "timeout")
    zone.fail("broken.test", "servfail")
    for i in range(8):
        zone.add_mx(f"warm{i}.test", 10, "mx1.a.test")
    return zone


@pytest.fixture
async def small() -> AsyncIterator[DnsServer]:
    server = await start_dns_server(_small_zone())
    yield server
    await server.close()


async def _warm(resolver: MailResolver) -> None:
    """A few fast answers: c-ares then shortens its own timeouts (adaptive, >= 3 answers)."""
    for i in range(8):
        assert (await resolver.resolve_mail_hosts(f"warm{i}.test")).status is S.OK


# -- the mixed population, case by case, against its ground truth -------------------------------

def _truth(population: Population) -> dict[str, dict[str, Any]]:
    names = DOMAIN_TRUTH.names
    rows = (dict(zip(names, row, strict=True)) for row in domain_rows(population))
    return {row["domain"]: row for row in rows if row["dns_case"] != DnsCase.INVALID}


def _check_against_truth(mail: MailHosts, truth: dict[str, Any], population: Population) -> None:
    assert (mail.status, mail.mx_source) == (truth["status"], truth["mx_source"]), mail
    domain = next(d for d in population.domains if d.name == mail.domain)
    if mail.mx_source is MxSource.MX:
        assert [(h.preference, h.name) for h in mail.hosts] == sorted(domain.mx)
    elif mail.mx_source is MxSource.IMPLICIT:
        assert [(h.preference, h.name) for h in mail.hosts] == [(0, domain.name)]
    else:
        assert mail.hosts == ()
    assert sorted(h.name for h in mail.hosts) == sorted(truth["mx_hostnames"])
    assert len(mail.hosts) == truth["n_mx_hosts"]
    assert len({ip for h in mail.hosts for ip in h.addresses}) == truth["n_addresses"]
    assert sum(max(1, len(h.addresses)) for h in mail.hosts) == truth["n_pairs"]
    for host in mail.hosts:
        target = population.cnames.get(host.name)
        assert host.cname_target == target
        expected = population.addresses.get(target or host.name, ())
        assert host.addresses == expected
        assert host.address_status is (S.OK if expected else S.NXDOMAIN)
        assert (host.error_detail is None) is bool(expected)


@pytest.mark.parametrize("case", [c for c in DnsCase if c is not DnsCase.INVALID])
async def test_every_dns_case_of_the_mixed_population_matches_the_truth(
        case: DnsCase, population: Population, resolver: MailResolver) -> None:
    truth = _truth(population)
    domains = [d.name for d in population.domains if d.case is case]
    assert domains, f"the mixed profile has no {case} domain"
    results = await asyncio.gather(*(resolver.resolve_mail_hosts(d) for d in domains))
    for mail in results:
        _check_against_truth(mail, truth[mail.domain], population)


async def test_whole_population_resolves_concurrently(population: Population,
                                                      resolver: MailResolver) -> None:
    truth = _truth(population)
    results = await asyncio.gather(*(resolver.resolve_mail_hosts(d.name.upper() + ".")
                                     for d in population.domains))
    for mail in results:
        _check_against_truth(mail, truth[mail.domain], population)
    assert all(m.dns_ms >= 0 for m in results)


async def test_big_mx_set_is_truncated_over_udp_and_fetched_over_tcp(
        population: Population, lab: DnsServer, resolver: MailResolver) -> None:
    domain = next(d for d in population.domains if d.case is DnsCase.BIG_MX)
    mail = await resolver.resolve_mail_hosts(domain.name)
    assert mail.status is S.OK and len(mail.hosts) == len(domain.mx) == 30
    assert lab.truncated >= 1 and lab.tcp_queries >= 1
    assert [h.preference for h in mail.hosts] == list(range(10, 40))


async def test_never_answered_mx_query_is_a_timeout_in_about_a_second(
        population: Population, resolver: MailResolver) -> None:
    domain = next(d for d in population.domains if d.case is DnsCase.TIMEOUT)
    started = time.monotonic()
    mail = await resolver.resolve_mail_hosts(domain.name)
    assert (mail.status, mail.mx_source, mail.hosts) == (S.TIMEOUT, MxSource.NONE, ())
    assert mail.error_detail and "Timeout" in mail.error_detail
    assert time.monotonic() - started < 2.5


async def test_the_channel_runs_on_the_event_loop_without_a_thread(
        population: Population, lab: DnsServer) -> None:
    before = threading.active_count()
    resolver = MailResolver([lab.address], FAST, Limits())
    try:
        domain = next(d for d in population.domains if d.case is DnsCase.MX)
        mail = await resolver.resolve_mail_hosts(domain.name)
        assert mail.status is S.OK
        assert threading.active_count() == before  # pycares' default would add an event thread
    finally:
        await resolver.close()


# -- RFC 5321 / 7505 details, on a small zone ---------------------------------------------------

async def test_mx_hosts_are_normalised_deduplicated_and_sorted(small: DnsServer) -> None:
    r = MailResolver([small.address], FAST, Limits())
    try:
        mail = await r.resolve_mail_hosts("A.Test.")
    finally:
        await r.close()
    assert mail.domain == "a.test" and mail.status is S.OK and mail.mx_source is MxSource.MX
    assert [(h.name, h.preference) for h in mail.hosts] == [("mx1.a.test", 10), ("mx2.a.test", 20)]
    assert mail.hosts[0].addresses == ("127.0.1.1", "::1")  # IPv4 first, listed once
    assert mail.hosts[1].cname_target == "mx1.a.test"
    assert mail.hosts[1].addresses == ("127.0.1.1", "::1")


async def test_host_statuses_ipv6_only_servfail_and_alias_domain(small: DnsServer) -> None:
    r = MailResolver([small.address], FAST, Limits())
    try:
        v6 = await r.resolve_mail_hosts("v6only.test")
        broken = await r.resolve_mail_hosts("broken-host.test")
        alias = await r.resolve_mail_hosts("alias.test")
    finally:
        await r.close()
    assert v6.hosts[0].addresses == ("::2",) and v6.hosts[0].address_status is S.OK
    assert v6.hosts[0].error_detail is None  # NODATA for A is normal, not a problem
    assert broken.status is S.OK  # the MX lookup worked; its host did not
    assert broken.hosts[0].address_status is S.SERVFAIL and broken.hosts[0].addresses == ()
    assert "general failure" in (broken.hosts[0].error_detail or "")
    # no MX at an alias: the implicit MX follows the CNAME (RFC 5321 §5.1)
    assert (alias.status, alias.mx_source) == (S.OK, MxSource.IMPLICIT)
    assert alias.hosts[0].name == "alias.test" and alias.hosts[0].preference == 0
    assert alias.hosts[0].addresses == ("127.0.1.2",)
    assert alias.hosts[0].cname_target == "implicit.test"


def _result(*records: tuple[str, int, Any]) -> pycares.DNSResult:
    return pycares.DNSResult(answer=[pycares.DNSRecord(name=n, type=t, record_class=1, ttl=60,
                                                       data=d) for n, t, d in records],
                             authority=[], additional=[])


def _mx_rec(pref: int, host: str) -> tuple[str, int, Any]:
    return ("d.test", pycares.QUERY_TYPE_MX, pycares.MXRecordData(priority=pref, exchange=host))


@pytest.mark.parametrize(("records", "expected"), [
    ([_mx_rec(0, "")], None),  # RFC 7505 null MX
    ([_mx_rec(10, "")], None),  # the root as the only target, whatever the preference
    ([_mx_rec(0, ""), _mx_rec(10, "mx.d.test")], [(10, "mx.d.test")]),  # mixed: "." ignored
    ([_mx_rec(20, "MX.D.Test."), _mx_rec(10, "mx.d.test")], [(10, "mx.d.test")]),
    ([], []),  # no MX record (e.g. a CNAME alone): NODATA, so the implicit MX applies
])
def test_mx_targets(records: list[tuple[str, int, Any]],
                    expected: list[tuple[int, str]] | None) -> None:
    assert mx_targets(_result(*records)) == expected


def test_canonical_name_follows_the_chain_and_stops_on_loops() -> None:
    cname = pycares.QUERY_TYPE_CNAME
    chain = _result(("mx.d.test", cname, pycares.CNAMERecordData(cname="b.test")),
                    ("B.test", cname, pycares.CNAMERecordData(cname="c.test.")),
                    ("c.test", pycares.QUERY_TYPE_A, pycares.ARecordData(addr="127.0.0.9")))
    assert canonical_name("MX.d.test.", chain) == "c.test"
    assert canonical_name("other.test", chain) is None
    loop = _result(("a.test", cname, pycares.CNAMERecordData(cname="b.test")),
                   ("b.test", cname, pycares.CNAMERecordData(cname="a.test")))
    assert canonical_name("a.test", loop) in ("a.test", "b.test", None)


# -- caching and concurrency --------------------------------------------------------------------

async def test_shared_mx_hosts_are_looked_up_once(population: Population, lab: DnsServer,
                                                  resolver: MailResolver) -> None:
    popular = [d.name for d in population.domains
               if d.case is DnsCase.MX and {n for _, n in d.mx} == {"mx1.popular-mail.test",
                                                                   "mx2.popular-mail.test"}]
    assert len(popular) >= 5
    before = lab.queries
    results = await asyncio.gather(*(resolver.resolve_mail_hosts(d) for d in popular))
    assert all(len(m.hosts) == 2 and m.hosts[0].addresses for m in results)
    # one MX query per domain, one A and one AAAA per MX host, however many domains share it
    assert lab.queries - before == len(popular) + 2 * 2
    assert resolver.host_cache.misses == 2 and resolver.host_cache.joined > 0
    again = await resolver.resolve_mail_hosts(popular[0])
    assert again.hosts == results[0].hosts and resolver.host_cache.hits >= 2


async def test_transient_host_failures_are_asked_again_negative_answers_are_kept(
        small: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dns_module, "FAILURE_KEEP_S", 0.0)
    r = MailResolver([small.address], FAST, Limits())
    try:
        await r.resolve_mail_hosts("broken-host.test")
        await r.resolve_mail_hosts("broken-host.test")
        assert r.host_cache.misses == 2  # servfail expired at once: asked again
        await r.resolve_mail_hosts("nx-host.test")
        await r.resolve_mail_hosts("nx-host.test")
        assert r.host_cache.misses == 3  # the NXDOMAIN answer was kept
    finally:
        await r.close()


async def test_dns_in_flight_bounds_concurrent_queries(population: Population,
                                                       lab: DnsServer) -> None:
    r = MailResolver([lab.address], FAST, Limits(dns_in_flight=3))
    main = r._channel._main
    original = main.query_dns
    in_flight = peak = 0

    async def counting(name: str, qtype: str) -> pycares.DNSResult:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        try:
            return await original(name, qtype)
        finally:
            in_flight -= 1

    main.query_dns = counting  # type: ignore[method-assign,assignment]
    truth = _truth(population)
    try:
        domains = [d.name for d in population.domains if d.case is not DnsCase.TIMEOUT]
        results = await asyncio.gather(*(r.resolve_mail_hosts(d) for d in domains))
    finally:
        await r.close()
    assert peak == 3
    for mail in results:
        _check_against_truth(mail, truth[mail.domain], population)


def _counting_loader(calls: list[str], gate: asyncio.Event | None = None,
                     loads: list[list[str]] | None = None
                     ) -> Callable[[Sequence[str]], Awaitable[list[tuple[str, float | None]]]]:
    async def load(names: Sequence[str]) -> list[tuple[str, float | None]]:
        calls.extend(names)
        if loads is not None:
            loads.append(list(names))
        if gate is not None:
            await gate.wait()
        return [(name.upper(), None) for name in names]
    return load


async def test_lookup_cache_is_lru_bounded() -> None:
    calls: list[str] = []
    cache: LookupCache[str] = LookupCache(_counting_loader(calls), max_entries=2)
    assert await cache.get("a") == "A"
    await cache.get("b")
    await cache.get("a")  # a is now the most recent
    await cache.get("c")  # evicts b
    assert len(cache) == 2
    await cache.get("a")
    await cache.get("b")
    assert calls == ["a", "b", "c", "b"]


async def test_lookup_cache_get_many_loads_only_what_is_not_stored() -> None:
    calls: list[str] = []
    cache: LookupCache[str] = LookupCache(_counting_loader(calls), max_entries=10)
    assert await cache.get_many(["a", "b"]) == ["A", "B"]
    assert await cache.get_many(["b", "c", "a", "d"]) == ["B", "C", "A", "D"]
    assert await cache.get_many(["d"]) == ["D"]
    assert await cache.get_many([]) == []
    assert calls == ["a", "b", "c", "d"]
    assert (cache.hits, cache.misses) == (3, 4)


async def test_lookup_cache_loads_a_callers_new_names_together_and_joins_the_others() -> None:
    calls: list[str] = []
    loads: list[list[str]] = []
    gate = asyncio.Event()
    cache: LookupCache[str] = LookupCache(_counting_loader(calls, gate, loads), max_entries=10)
    first = asyncio.create_task(cache.get_many(["a", "b", "c"]))
    await asyncio.sleep(0)
    second = asyncio.create_task(cache.get_many(["c", "d", "a", "e"]))
    await asyncio.sleep(0)
    gate.set()
    assert await first == ["A", "B", "C"]
    assert await second == ["C", "D", "A", "E"]
    assert loads == [["a", "b", "c"], ["d", "e"]]  # one load per caller, nothing asked twice
    assert cache.joined == 2 and cache.misses == 5


async def test_lookup_cache_a_failed_load_fails_its_waiters_and_is_not_stored() -> None:
    attempts: list[str] = []

    async def flaky(names: Sequence[str]) -> list[tuple[str, float | None]]:
        attempts.extend(names)
        if len(attempts) <= 2:
            raise RuntimeError("boom")
        return [(n.upper(), None) for n in names]

    cache: LookupCache[str] = LookupCache(flaky, max_entries=10)
    with pytest.raises(RuntimeError):
        await cache.get_many(["a", "b"])
    assert len(cache) == 0
    assert await cache.get_many(["a", "b"]) == ["A", "B"]


async def test_lookup_cache_survives_a_cancelled_waiter() -> None:
    calls: list[str] = []
    gate = asyncio.Event()
    cache: LookupCache[str] = LookupCache(_counting_loader(calls, gate), max_entries=10)
    first = asyncio.create_task(cache.get("x"))
    second = asyncio.create_task(cache.get("x"))
    await asyncio.sleep(0)
    first.cancel()
    gate.set()
    assert await second == "X"
    assert calls == ["x"] and cache.joined == 1
    with pytest.raises(asyncio.CancelledError):
        await first


# -- c-ares behaviour: adaptive timeouts, query cache -------------------------------------------

async def test_early_c_ares_timeout_is_retried_on_a_fresh_channel(small: DnsServer) -> None:
    # budget 4 s; once warm, c-ares gives up after 0.25 s + 0.5..1 s (jitter), which the loop's
    # 1 s timer sees at 2 s
    timeouts = Timeouts(dns_query=2.0, dns_tries=2)
    r = MailResolver([small.address], timeouts, Limits())
    try:
        await _warm(r)
        started = time.monotonic()
        mail = await r.resolve_mail_hosts("silent.test")
        elapsed = time.monotonic() - started
    finally:
        await r.close()
    assert mail.status is S.TIMEOUT and "retried once" in (mail.error_detail or "")
    stats = r.channel_stats
    assert (stats.early_timeouts, stats.retry_timeouts) == (1, 1)
    assert 2.0 + 1.8 <= elapsed < 5.5, elapsed  # c-ares' early give-up, then a full dns_query


async def test_fresh_retry_answer_is_used(small: DnsServer,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    r = MailResolver([small.address], Timeouts(dns_query=2.0, dns_tries=2), Limits())
    fresh = channel_module.DnsChannel._ask_fresh

    async def resume_then_ask(self: channel_module.DnsChannel, name: str,
                              qtype: str) -> pycares.DNSResult:
        small.resume()  # the server answers again by the time of the retry
        return await fresh(self, name, qtype)

    monkeypatch.setattr(channel_module.DnsChannel, "_ask_fresh", resume_then_ask)
    try:
        await _warm(r)
        small.pause()
        mail = await r.resolve_mail_hosts("a.test")
    finally:
        await r.close()
    assert mail.status is S.OK and mail.hosts[0].addresses == ("127.0.1.1", "::1")
    assert r.channel_stats.early_timeouts == 1 and r.channel_stats.retry_timeouts == 0


async def test_timeout_on_a_fresh_channel_is_not_retried(small: DnsServer) -> None:
    r = MailResolver([small.address], Timeouts(dns_query=0.3, dns_tries=1), Limits())
    try:
        mail = await r.resolve_mail_hosts("silent.test")
    finally:
        await r.close()
    assert mail.status is S.TIMEOUT and r.channel_stats.early_timeouts == 0


async def test_c_ares_query_cache_is_off_and_servers_kept(small: DnsServer) -> None:
    channel = channel_module.DnsChannel([small.address], FAST, Limits())
    try:
        assert channel.query_cache is False
        before = small.queries
        for n in range(1, 4):  # every time asked of the lab server, on its own port
            answer = await channel.query("mx1.a.test", "A")
            assert {r.data.addr for r in answer.answer} == {"127.0.1.1"}
            assert small.queries == before + n
        assert channel.stats.qcache_flushes == 0
    finally:
        await channel.close()


def test_without_query_cache_leaves_a_channel_it_cannot_read_alone() -> None:
    class Unlike:  # another pycares: no `ares_channel *` where this one keeps it
        _channel = None

    assert channel_module.without_query_cache(Unlike()) is False  # type: ignore[arg-type]
    assert channel_module.without_query_cache(object()) is False  # type: ignore[arg-type]


async def test_c_ares_query_cache_is_flushed_and_servers_kept_where_it_stays_on(
        small: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    # a pycares that does not let `without_query_cache` re-create the channel
    monkeypatch.setattr(channel_module, "without_query_cache", lambda channel: False)
    monkeypatch.setattr(channel_module, "QCACHE_FLUSH_EVERY", 3)
    channel = channel_module.DnsChannel([small.address], FAST, Limits())
    try:
        assert channel.query_cache is True
        await channel.query("mx1.a.test", "A")  # 1: asked
        before = small.queries
        await channel.query("mx1.a.test", "A")  # 2: from c-ares' own cache
        assert small.queries == before
        await channel.query("mx1.a.test", "A")  # 3: flush (reinit runs in c-ares' thread)
        for _ in range(40):
            if small.queries > before:
                break
            await asyncio.sleep(0.05)
            await channel.query("mx1.a.test", "A")
        # asked again, and of the lab server: the configured servers survived the reinit
        assert small.queries == before + 1
        assert channel.stats.qcache_flushes >= 1
    finally:
        await channel.close()


async def test_the_safety_net_gives_up_a_query_c_ares_never_called_back() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # bound, never answers
    silent.bind(("127.0.0.1", 0))
    channel = channel_module.DnsChannel([f"127.0.0.1:{silent.getsockname()[1]}"],
                                        Timeouts(dns_query=3.0, dns_tries=2), Limits())
    channel._deadline_s = 0.4  # c-ares itself would wait 3 s and more
    try:
        started = time.monotonic()
        for name in ("one.test", "two.test"):  # the net re-arms after its sweep
            with pytest.raises(TimeoutError, match="did not call back"):
                await channel.query(name, "A")
        assert time.monotonic() - started < 3.0
        assert not channel._net
    finally:
        await channel.close()
        silent.close()


async def test_the_safety_net_keeps_no_answer_alive(small: DnsServer) -> None:
    channel = channel_module.DnsChannel([small.address], FAST, Limits())
    try:
        await asyncio.gather(*(channel.query(f"mx{i}.a.test", "A") for i in (1, 2)))
        assert len(channel._net) == 2 and all(cell[0] is None for _, cell in channel._net)
    finally:
        await channel.close()
    assert not channel._net


# -- resolver configuration (the start-up check: test_resolver_check.py) ------------------------

async def test_ipv6_resolver_syntax() -> None:
    zone = Zone()
    zone.add_mx("v6.test", 10, "mx.v6.test")
    zone.add_a("mx.v6.test", "127.0.2.1")
    try:
        server = await start_dns_server(zone, host="::1")
    except OSError:
        pytest.skip("no IPv6 loopback here")
    r = MailResolver([f"[::1]:{server.port}"], FAST, Limits())
    try:
        mail = await r.resolve_mail_hosts("v6.test")
    finally:
        await r.close()
        await server.close()
    assert mail.hosts[0].addresses == ("127.0.2.1",)


@pytest.mark.parametrize("bad", ["not a resolver", "127.0.0.1:99999"])
async def test_invalid_resolver_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid DNS resolver"):
        MailResolver([bad], FAST, Limits())


async def test_an_internal_bug_becomes_internal_error(small: DnsServer,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    r = MailResolver([small.address], FAST, Limits())

    async def broken(name: str, qtype: str) -> pycares.DNSResult:
        raise ValueError("parser bug")

    monkeypatch.setattr(r._channel, "query", broken)
    try:
        mail = await r.resolve_mail_hosts("a.test")
    finally:
        await r.close()
    assert mail.status is S.INTERNAL_ERROR and mail.error_detail == "ValueError: parser bug"


async def test_implicit_mx_with_a_failed_address_lookup_keeps_the_host(
        small: DnsServer, monkeypatch: pytest.MonkeyPatch) -> None:
    r = MailResolver([small.address], FAST, Limits())
    codes = {"MX": ares.ARES_ENODATA, "A": ares.ARES_ESERVFAIL, "AAAA": ares.ARES_ENODATA}

    async def answers(name: str, qtype: str) -> pycares.DNSResult:
        raise _dns_error(codes[qtype])

    monkeypatch.setattr(r._channel, "query", answers)
    try:
        mail = await r.resolve_mail_hosts("web.test")
    finally:
        await r.close()
    # no MX is known, whether the domain has an address is not: the failure is the status
    assert (mail.status, mail.mx_source) == (S.SERVFAIL, MxSource.IMPLICIT)
    assert [(h.name, h.preference, h.addresses, h.address_status) for h in mail.hosts] == [
        ("web.test", 0, (), S.SERVFAIL)]
    assert mail.error_detail == ("A: DNS server returned general failure; "
                                 "AAAA: DNS server returned answer with no data")


# -- error mapping (pure) -----------------------------------------------------------------------

def _dns_error(code: int) -> aiodns.error.DNSError:
    return aiodns.error.DNSError(code, ares.strerror(code))


@pytest.mark.parametrize(("error", "status"), [
    (_dns_error(ares.ARES_ENOTFOUND), S.NXDOMAIN),
    (_dns_error(ares.ARES_ENODATA), S.NODATA),
    (_dns_error(ares.ARES_ESERVFAIL), S.SERVFAIL),
    (_dns_error(ares.ARES_EREFUSED), S.REFUSED),
    (_dns_error(ares.ARES_ETIMEOUT), S.TIMEOUT),
    (_dns_error(ares.ARES_ECONNREFUSED), S.ERROR),  # the resolver's port is closed
    (_dns_error(ares.ARES_EFORMERR), S.ERROR),
    (_dns_error(ares.ARES_EBADRESP), S.ERROR),
    (_dns_error(ares.ARES_EBADNAME), S.ERROR),
    (_dns_error(ares.ARES_ECANCELLED), S.ERROR),
    (pycares.AresError(ares.ARES_ENOTFOUND, "sync"), S.NXDOMAIN),
    (aiodns.error.DNSError(), S.ERROR),
    (aiodns.error.DNSError("no code"), S.ERROR),
    (TimeoutError(), S.TIMEOUT),
    (ValueError("bug"), S.INTERNAL_ERROR),
    (KeyError("bug"), S.INTERNAL_ERROR),
])
def test_dns_status_from(error: BaseException, status: DnsStatus) -> None:
    assert dns_status_from(error) is status


def test_error_detail_keeps_the_c_ares_message() -> None:
    assert error_detail(_dns_error(ares.ARES_ESERVFAIL)) == "DNS server returned general failure"
    assert error_detail(ValueError("x")) == "x"
    assert error_detail(TimeoutError()) == "TimeoutError"


@pytest.mark.parametrize(("statuses", "combined"), [
    ((S.NODATA, S.NODATA), S.NODATA),
    ((S.NXDOMAIN, S.NXDOMAIN), S.NXDOMAIN),
    ((S.NODATA, S.NXDOMAIN), S.NXDOMAIN),
    ((S.SERVFAIL, S.NODATA), S.SERVFAIL),  # A unknown: "no address" is not proven
    ((S.NODATA, S.TIMEOUT), S.TIMEOUT),
    ((S.TIMEOUT, S.SERVFAIL), S.TIMEOUT),  # A's failure first
])
def test_combine_statuses(statuses: tuple[DnsStatus, ...], combined: DnsStatus) -> None:
    assert combine_statuses(statuses) is combined


async def test_lookup_cache_a_loader_short_of_values_fails_its_waiters() -> None:
    async def short(names: Sequence[str]) -> list[tuple[str, float | None]]:
        return [(n.upper(), None) for n in names[1:]]

    cache: LookupCache[str] = LookupCache(short, max_entries=10)
    async with asyncio.timeout(5):  # no waiter is left hanging on a name never given a value
        with pytest.raises(RuntimeError, match="1 values for 2 names"):
            await cache.get_many(["a", "b"])
    assert len(cache) == 0 and not cache._pending
