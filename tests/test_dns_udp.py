"""The UDP stub of the policy lookups: answers, given-up queries, cancellation, query ids."""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Iterator, Sequence
from typing import Any

import dns.exception
import dns.rdatatype
import pytest

from scanner.dns_udp import UdpStub, _parse

TXT, A = dns.rdatatype.TXT, dns.rdatatype.A


def _address(spec: str) -> tuple[str, int]:
    host, _, port = spec.rpartition(":")
    return host, int(port)


@pytest.fixture
def silent_server() -> Iterator[tuple[str, int]]:
    """A UDP socket on loopback that reads nothing and answers nothing."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()
    finally:
        sock.close()


def _domains(lab: Any, n: int) -> list[str]:
    rows = lab.truth_domains().to_pylist()
    return [r["domain"] for r in rows if r["dns_case"] not in ("invalid", "timeout")][:n]


async def test_answers_come_back_in_the_order_asked(fake_internet: Any) -> None:
    stub = UdpStub([_address(fake_internet.resolver)], timeout=1.0, tries=1)
    try:
        names = _domains(fake_internet, 30)
        queries = [(n, TXT) for n in names] + [("_dmarc." + n, TXT) for n in names]
        replies = await stub.query_many(queries)
        assert len(replies) == len(queries)
        for (name, _), reply in zip(queries, replies, strict=True):
            assert not isinstance(reply, Exception), name
            texts = [b"".join(r.strings) for r in reply.records]  # type: ignore[attr-defined]
            # the records are those of the name asked: DMARC only at _dmarc names
            assert all(t.startswith(b"v=DMARC1") == name.startswith("_dmarc.") for t in texts)
        assert any(r.records for r in replies if name.startswith("_dmarc."))  # type: ignore[union-attr]
        assert any(r.records for r in replies[:len(names)])  # type: ignore[union-attr]
        server = stub._servers[_address(fake_internet.resolver)]
        assert not server.pending  # answered queries are not kept
    finally:
        stub.close()


async def test_a_silent_server_is_given_up_after_the_timeout_and_the_next_one_asked(
        fake_internet: Any, silent_server: tuple[str, int]) -> None:
    stub = UdpStub([silent_server, _address(fake_internet.resolver)], timeout=0.3, tries=1)
    try:
        names = _domains(fake_internet, 50)
        started = time.monotonic()
        replies = await stub.query_many([(n, TXT) for n in names])
        waited = time.monotonic() - started
        assert all(not isinstance(r, Exception) for r in replies)
        # one timeout for the whole batch on the silent server (one per query would be 15 s)
        assert 0.3 <= waited < 1.0
        assert not stub._servers[silent_server].pending
    finally:
        stub.close()


async def test_every_try_unanswered_gives_a_timeout(silent_server: tuple[str, int]) -> None:
    stub = UdpStub([silent_server], timeout=0.2, tries=2)
    try:
        started = time.monotonic()
        replies = await asyncio.gather(*(stub.query_many([(f"n{i}.test", A), (f"m{i}.test", A)])
                                         for i in range(200)))
        assert 0.4 <= time.monotonic() - started < 1.5  # two tries, not one per query
        assert all(isinstance(r, dns.exception.Timeout) for batch in replies for r in batch)
        server = stub._servers[silent_server]
        assert not server.pending
        assert server._sweep_at is None  # nothing left to sweep: no timer stays armed
    finally:
        stub.close()


async def test_a_cancelled_query_is_forgotten(silent_server: tuple[str, int]) -> None:
    stub = UdpStub([silent_server], timeout=5.0, tries=1)
    try:
        task = asyncio.create_task(stub.query_many([("a.test", A), ("b.test", A)]))
        await asyncio.sleep(0.05)
        server = stub._servers[silent_server]
        assert len(server.pending) == 2
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not server.pending
    finally:
        stub.close()


async def test_query_ids_in_flight_are_distinct(silent_server: tuple[str, int]) -> None:
    stub = UdpStub([silent_server], timeout=5.0, tries=1)
    try:
        task = asyncio.create_task(stub.query_many([(f"h{i}.test", A) for i in range(3000)]))
        await asyncio.sleep(0.1)
        server = stub._servers[silent_server]
        assert len(server.pending) == 3000  # none overwrote another's entry
        ids = list(server.pending)
        assert len({i >> 8 for i in ids}) > 200  # spread over the id space, not counted up
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        stub.close()


def _reply(answers: Sequence[tuple[str | None, str, str]], qname: str = "example.test",
           qtype: str = "TXT", flags: int = 0x8180, extra: bytes = b"") -> tuple[bytes, int]:
    """A reply to one question with the given answer records, and the question's length.

    An answer's owner None is written as a pointer to the question's name; a name is written
    out in full, as spelled, so that case and compression vary as they may on the wire.
    """
    import dns.name
    import dns.rdata
    import dns.rdataclass

    question = dns.name.from_text(qname).to_wire() + struct.pack(  # type: ignore[operator]
        "!HH", dns.rdatatype.from_text(qtype), 1)
    body = b""
    for owner, rdtype, text in answers:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)
        data = rdata.to_wire()
        assert data is not None
        body += (b"\xc0\x0c" if owner is None else dns.name.from_text(owner).to_wire())  # type: ignore[operator]
        body += struct.pack("!HHIH", rdata.rdtype, 1, 300, len(data)) + data
    header = struct.pack("!HHHHHH", 7, flags, 1, len(answers), 0, 0)
    return header + question + body + extra, len(question)


def _dnspython_answer(wire: bytes) -> tuple[object, ...]:
    import dns.message

    chain = dns.message.from_wire(wire).resolve_chaining()  # type: ignore[attr-defined]
    return tuple(chain.answer) if chain.answer is not None else ()


CHAINS: dict[str, tuple[list[tuple[str | None, str, str]], str]] = {
    "two records": ([(None, "TXT", '"v=spf1 -all"'), (None, "TXT", '"other"')], "TXT"),
    "a duplicate": ([(None, "TXT", '"a"'), (None, "TXT", '"b"'), (None, "TXT", '"a"')], "TXT"),
    "spelled and pointed owners": ([(None, "TXT", '"a"'), ("EXAMPLE.test", "TXT", '"b"')],
                                   "TXT"),
    "other owner only": ([("other.test", "TXT", '"a"')], "TXT"),
    "signatures between": ([(None, "RRSIG", "TXT 13 2 300 20300101000000 20200101000000 1 "
                             "example.test. AAAA"), (None, "TXT", '"a"')], "TXT"),
    "a CNAME chain": ([(None, "CNAME", "b.test."), ("b.test", "CNAME", "c.test."),
                       ("C.TEST", "TXT", '"at c"'), ("b.test", "TXT", '"not the end"')], "TXT"),
    "a CNAME to nothing": ([(None, "CNAME", "gone.test."), ("else.test", "A", "127.0.0.1")],
                           "TXT"),
    "a CNAME beside the answer": ([(None, "TXT", '"here"'), (None, "CNAME", "b.test.")], "TXT"),
    "the CNAME asked for": ([(None, "CNAME", "b.test."), ("b.test", "CNAME", "c.test.")],
                            "CNAME"),
    "addresses": ([(None, "A", "127.0.0.1"), (None, "AAAA", "::1"), (None, "A", "127.0.0.2")],
                  "A"),
    "TLSA through a CNAME": ([(None, "CNAME", "t.test."), ("t.test", "TLSA", "3 1 1 " + "ab" * 32)],
                             "TLSA"),
}


FOUND = {"other owner only": 0, "a CNAME to nothing": 0, "signatures between": 1}


@pytest.mark.parametrize("case", list(CHAINS))
def test_answers_are_those_dnspython_chains_to(case: str) -> None:
    answers, qtype = CHAINS[case]
    wire, question_length = _reply(answers, qtype=qtype)
    reply = _parse(wire, question_length)
    assert reply is not None
    assert reply.records == _dnspython_answer(wire)
    # not vacuous: what was found, once each
    assert len(reply.records) == FOUND.get(case, 1 if "CNAME" in case else 2)


def test_a_cname_loop_is_an_error_as_in_dnspython() -> None:
    import dns.message

    wire, question_length = _reply([(None, "CNAME", "example.test.")])
    with pytest.raises(dns.message.ChainTooLong):
        _dnspython_answer(wire)
    with pytest.raises(dns.message.ChainTooLong):
        _parse(wire, question_length)


def test_a_reply_is_read_from_its_header_and_answers_only() -> None:
    import dns.flags
    import dns.rcode

    authority = struct.pack("!HHHIH", 0xC00C, dns.rdatatype.NS, 1, 300, 2) + b"\xc0\x0c"
    wire, question_length = _reply([(None, "TXT", '"v=spf1 -all"')],
                                   flags=0x8180 | int(dns.flags.AD), extra=authority)
    wire = wire[:8] + b"\0\1" + wire[10:]  # one authority record after the answer
    reply = _parse(wire, question_length)
    assert reply is not None and reply.rcode == dns.rcode.NOERROR and reply.flags & dns.flags.AD
    assert [r.to_text() for r in reply.records] == ['"v=spf1 -all"']
    broken = wire[:-3] + b"\xff\xff\xff"  # the authority section no longer parses
    with pytest.raises(dns.exception.FormError):
        _dnspython_answer(broken)
    assert _parse(broken, question_length).records == reply.records  # type: ignore[union-attr]
    # no answer records: the header alone, even when what follows would not parse
    empty = broken[:6] + b"\0\0" + broken[8:]
    assert _parse(empty, question_length) == type(reply)(dns.rcode.NOERROR, 0x8180 |
                                                         int(dns.flags.AD))
    # a broken answer is an error, not a silent empty answer
    with pytest.raises(dns.exception.FormError):
        _parse(wire[:12 + question_length + 12], question_length)
    # a query (QR clear) is no answer
    with pytest.raises(dns.exception.FormError):
        _parse(wire[:2] + b"\x01\x00" + wire[4:], question_length)
