"""Small DNS servers for tests, on loopback, run by a thread of the test process so that a
scanner subprocess can use them: a stub that answers one rcode to everything, or a lab zone."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from dnslib import NS, QTYPE, RCODE, RR, SOA, DNSRecord

from scanner.lab.servers.dns import Zone, start_dns_server


class _RcodeProtocol(asyncio.DatagramProtocol):
    """Every query gets `rcode` and no records; with `root_ok`, `. NS` and `. SOA` are answered
    as a recursive resolver answers them."""

    def __init__(self, rcode: str, root_ok: bool) -> None:
        self.rcode = getattr(RCODE, rcode)
        self.root_ok = root_ok
        self.transport: asyncio.DatagramTransport | None = None
        self.queries: list[str] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        query = DNSRecord.parse(data)
        name, qtype = str(query.q.qname), QTYPE[query.q.qtype]
        self.queries.append(f"{name} {qtype}")
        reply = query.reply()
        if self.root_ok and name == "." and qtype in ("NS", "SOA"):
            rdata = NS("ns.stub.invalid.") if qtype == "NS" else SOA(
                "ns.stub.invalid.", "hostmaster.stub.invalid.", (1, 1800, 900, 604800, 86400))
            reply.add_answer(RR(".", query.q.qtype, rdata=rdata, ttl=300))
        else:
            reply.header.rcode = self.rcode
        assert self.transport is not None
        self.transport.sendto(reply.pack(), addr)


class RcodeStub:
    """A running stub (UDP on 127.0.0.1): `address` for --resolver, `queries` it received."""

    def __init__(self, protocol: _RcodeProtocol, transport: asyncio.DatagramTransport) -> None:
        self._protocol, self._transport = protocol, transport
        self.address = "127.0.0.1:{}".format(transport.get_extra_info("sockname")[1])

    @property
    def queries(self) -> list[str]:
        """`name TYPE` of every query so far."""
        return list(self._protocol.queries)

    async def close(self) -> None:
        self._transport.close()


async def start_rcode_stub(rcode: str, *, root_ok: bool = False) -> RcodeStub:
    """A stub resolver answering `rcode` (NXDOMAIN, SERVFAIL, REFUSED...) to every query."""
    protocol = _RcodeProtocol(rcode, root_ok)
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: protocol, local_addr=("127.0.0.1", 0))
    return RcodeStub(protocol, transport)


@contextlib.contextmanager
def in_thread(start: Callable[[], Awaitable[Any]]) -> Iterator[Any]:
    """Run a server (`await start()`, closed by its `close()`) on an event loop in a thread
    for the duration of the block; yields the server."""
    loop = asyncio.new_event_loop()
    server = loop.run_until_complete(start())
    thread = threading.Thread(target=loop.run_forever, name="dns-stub", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.run_until_complete(server.close())
        loop.close()


@contextlib.contextmanager
def rcode_stub(rcode: str, *, root_ok: bool = False) -> Iterator[RcodeStub]:
    """`start_rcode_stub` in a thread, for a scanner subprocess."""
    with in_thread(lambda: start_rcode_stub(rcode, root_ok=root_ok)) as stub:
        yield stub


@contextlib.contextmanager
def zone_server(zone: Zone) -> Iterator[Any]:
    """The lab's DNS server for `zone` in a thread (UDP and TCP on 127.0.0.1)."""
    with in_thread(lambda: start_dns_server(zone)) as server:
        yield server
