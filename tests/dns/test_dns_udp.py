"""The UDP stub of the policy lookups: answers, given-up queries, cancellation, query ids."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from typing import Any

import dns.exception
import dns.rdatatype
import pytest

from scanner.dns.udp import UdpStub

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
        # records came back for both halves: the domains' own TXT and their _dmarc names
        assert any(r.records for r in replies[:len(names)])  # type: ignore[union-attr]
        assert any(r.records for r in replies[len(names):])  # type: ignore[union-attr]
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
