"""The lab DNS server: answers, failures and truncation, checked on the wire with dnslib."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
from dnslib import EDNS0, QTYPE, RCODE, DNSRecord

from scanner.lab.population.dns_zone import RType
from scanner.lab.servers.dns import DnsServer, Zone, start_dns_server


def _zone() -> Zone:
    zone = Zone()
    zone.add_mx("a.test", 10, "mx1.a.test")
    zone.add_mx("a.test", 20, "mx2.a.test")
    zone.add_a("mx1.a.test", "127.0.1.1")
    zone.add_cname("mx2.a.test", "mx1.a.test")
    zone.add_cname("dangling.test", "gone.test")
    zone.add_null_mx("null.test")
    zone.add_a("implicit.test", "127.0.1.2")
    zone.add_empty("nodata.test")
    zone.add_txt("a.test", "v=spf1 mx -all")
    zone.add_tlsa("_25._tcp.mx1.a.test", 3, 1, 1, bytes(range(32)))
    zone.fail("broken.test", "servfail")
    zone.fail("silent.test", "timeout")
    zone.fail("refusing.test", "refused")
    zone.add_mx("txt-fails.test", 10, "mx1.a.test")
    zone.fail("txt-fails.test", "servfail", RType.TXT)
    for i in range(30):
        zone.add_mx("big.test", 10 + i, f"mx-{i:02d}-{'x' * 40}.big.test")
    return zone


@pytest.fixture
async def server() -> AsyncIterator[DnsServer]:
    dns = await start_dns_server(_zone())
    yield dns
    await dns.close()


async def _ask(server: DnsServer, name: str, qtype: str, *, tcp: bool = False,
               edns: int | None = None) -> DNSRecord:
    query = DNSRecord.question(name, qtype)
    if edns is not None:
        query.add_ar(EDNS0(udp_len=edns))
    raw = await asyncio.to_thread(query.send, "127.0.0.1", server.port, tcp=tcp, timeout=1.0)
    reply = DNSRecord.parse(raw)
    assert reply.header.id == query.header.id
    return reply


async def test_mx_answer_is_authoritative_with_preferences(server: DnsServer) -> None:
    reply = await _ask(server, "a.test", "MX")
    assert RCODE[reply.header.rcode] == "NOERROR" and reply.header.aa == 1
    assert sorted((r.rdata.preference, str(r.rdata.label)) for r in reply.rr) == [
        (10, "mx1.a.test."), (20, "mx2.a.test.")]


async def test_query_name_case_is_ignored_and_echoed(server: DnsServer) -> None:
    reply = await _ask(server, "MX1.A.Test", "A")
    assert [str(r.rdata) for r in reply.rr] == ["127.0.1.1"]
    assert str(reply.q.qname) == "MX1.A.Test."


async def test_cname_chain_is_followed_in_the_answer(server: DnsServer) -> None:
    reply = await _ask(server, "mx2.a.test", "A")
    assert [(QTYPE[r.rtype], str(r.rdata)) for r in reply.rr] == [
        ("CNAME", "mx1.a.test."), ("A", "127.0.1.1")]


async def test_cname_to_missing_name_is_nxdomain(server: DnsServer) -> None:
    reply = await _ask(server, "dangling.test", "A")
    assert RCODE[reply.header.rcode] == "NXDOMAIN"
    assert [QTYPE[r.rtype] for r in reply.rr] == ["CNAME"]


async def test_null_mx(server: DnsServer) -> None:
    reply = await _ask(server, "null.test", "MX")
    assert [(r.rdata.preference, str(r.rdata.label)) for r in reply.rr] == [(0, ".")]


@pytest.mark.parametrize(("name", "qtype"), [
    ("implicit.test", "MX"), ("nodata.test", "MX"), ("a.test", "AAAA"),
    ("_tcp.mx1.a.test", "TXT"),  # an empty non-terminal exists
])
async def test_nodata_is_noerror_with_soa(server: DnsServer, name: str, qtype: str) -> None:
    reply = await _ask(server, name, qtype)
    assert RCODE[reply.header.rcode] == "NOERROR" and not reply.rr
    assert [QTYPE[r.rtype] for r in reply.auth] == ["SOA"]


async def test_nxdomain_has_soa(server: DnsServer) -> None:
    reply = await _ask(server, "missing.test", "MX")
    assert RCODE[reply.header.rcode] == "NXDOMAIN" and not reply.rr
    assert [QTYPE[r.rtype] for r in reply.auth] == ["SOA"]


async def test_servfail(server: DnsServer) -> None:
    assert RCODE[(await _ask(server, "broken.test", "MX")).header.rcode] == "SERVFAIL"
    assert RCODE[(await _ask(server, "broken.test", "A", tcp=True)).header.rcode] == "SERVFAIL"


async def test_refused_and_one_type_failing(server: DnsServer) -> None:
    assert RCODE[(await _ask(server, "refusing.test", "TXT")).header.rcode] == "REFUSED"
    assert RCODE[(await _ask(server, "txt-fails.test", "TXT")).header.rcode] == "SERVFAIL"
    mx = await _ask(server, "txt-fails.test", "MX")  # the other types answer as usual
    assert RCODE[mx.header.rcode] == "NOERROR" and len(mx.rr) == 1


async def test_a_broken_server_answers_one_rcode_to_everything_until_resumed(
        server: DnsServer) -> None:
    server.break_("nxdomain")
    for name, qtype in ((".", "NS"), (".", "SOA"), ("a.test", "MX"), ("a.test", "TXT")):
        reply = await _ask(server, name, qtype)
        assert RCODE[reply.header.rcode] == "NXDOMAIN" and not reply.rr
    server.break_("servfail")
    assert RCODE[(await _ask(server, "a.test", "MX", tcp=True)).header.rcode] == "SERVFAIL"
    server.resume()
    assert len((await _ask(server, "a.test", "MX")).rr) == 2


async def test_names_outside_the_zone_are_refused(server: DnsServer) -> None:
    assert RCODE[(await _ask(server, "example.com", "A")).header.rcode] == "REFUSED"


@pytest.mark.parametrize("tcp", [False, True])
async def test_the_root_answers_ns_and_soa_like_a_recursive_resolver(
        server: DnsServer, tcp: bool) -> None:
    # what the scanner's resolver check asks before a scan: NOERROR with records
    ns = await _ask(server, ".", "NS", tcp=tcp)
    assert RCODE[ns.header.rcode] == "NOERROR"
    assert [(QTYPE[r.rtype], str(r.rname), str(r.rdata)) for r in ns.rr] == [
        ("NS", ".", "ns.test.")]
    soa = await _ask(server, ".", "SOA", tcp=tcp)
    assert RCODE[soa.header.rcode] == "NOERROR"
    assert [(QTYPE[r.rtype], str(r.rname)) for r in soa.rr] == [("SOA", ".")]
    assert str(soa.rr[0].rdata.mname) == "ns.test."
    other = await _ask(server, ".", "A", tcp=tcp)  # the root has no address: NODATA
    assert RCODE[other.header.rcode] == "NOERROR" and not other.rr


@pytest.mark.parametrize("tcp", [False, True])
async def test_timeout_names_are_never_answered(server: DnsServer, tcp: bool) -> None:
    query = DNSRecord.question("silent.test", "MX")
    with pytest.raises((TimeoutError, socket.timeout)):
        await asyncio.to_thread(query.send, "127.0.0.1", server.port, tcp=tcp, timeout=0.3)
    assert server.queries == 1


async def test_txt_and_tlsa(server: DnsServer) -> None:
    txt = await _ask(server, "a.test", "TXT")
    assert [str(r.rdata) for r in txt.rr] == ['"v=spf1 mx -all"']
    tlsa = await _ask(server, "_25._tcp.mx1.a.test", "TLSA")
    assert [QTYPE[r.rtype] for r in tlsa.rr] == ["TLSA"]


@pytest.mark.parametrize("edns", [None, 1232, 4096])
async def test_big_answer_is_truncated_over_udp(server: DnsServer, edns: int | None) -> None:
    reply = await _ask(server, "big.test", "MX", edns=edns)
    if edns == 4096:  # fits the advertised size: answered in full
        assert reply.header.tc == 0 and len(reply.rr) == 30
    else:
        assert reply.header.tc == 1 and not reply.rr
    if edns is not None:
        assert [QTYPE[r.rtype] for r in reply.ar] == ["OPT"]


async def test_big_answer_is_complete_over_tcp(server: DnsServer) -> None:
    reply = await _ask(server, "big.test", "MX", tcp=True)
    assert reply.header.tc == 0 and len(reply.rr) == 30
    assert server.tcp_queries == 1


async def test_pause_stops_answers_and_resume_restores_them(server: DnsServer) -> None:
    server.pause()
    with pytest.raises((TimeoutError, socket.timeout)):
        await asyncio.to_thread(DNSRecord.question("a.test", "MX").send, "127.0.0.1",
                                server.port, timeout=0.3)
    server.resume()
    assert len((await _ask(server, "a.test", "MX")).rr) == 2
    assert server.queries == 2


async def test_malformed_query_gets_formerr(server: DnsServer) -> None:
    reply = server.answer(b"\x12\x34\x01\x00\x00\x02\x00\x00\x00\x00\x00\x00", tcp=False)
    assert reply is not None and reply[:2] == b"\x12\x34" and reply[3] & 0xF == 1
    assert server.answer(b"\x00", tcp=False) is None


async def test_answers_are_fast(server: DnsServer) -> None:
    query = DNSRecord.question("a.test", "MX").pack()
    loop = asyncio.get_running_loop()
    start = loop.time()
    for _ in range(20_000):
        server.answer(query, tcp=False)
    assert loop.time() - start < 2.0  # ~3 µs each here; a benchmark sends ~10^6
