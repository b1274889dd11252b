"""The lab's authoritative DNS server for the `.test` population: UDP and TCP on loopback.

Answers are built straight from the zone's packed records (no per-query object trees), because a
benchmark sends hundreds of thousands of queries. dnslib supplies the type codes and is what the
tests parse the answers with. Behaviour per name follows the zone: records, CNAME chains (followed
inside the answer), NODATA (empty answer, SOA in authority), NXDOMAIN, SERVFAIL, and names that are
never answered. The root answers `. NS` and `. SOA` as a recursive resolver does (the scanner's
resolver check asks them); other names outside the zone are refused. UDP answers larger than the
client's limit (512 bytes, or its EDNS size) come back truncated (TC=1, no records), so the client
retries over TCP and gets the full answer."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from typing import cast

from scanner.lab.population.dns_zone import TTL, FailMode, RType, Zone

__all__ = ["DnsServer", "Zone", "start_dns_server"]

log = logging.getLogger(__name__)

_QR, _AA, _TC, _RD, _RA, _AD = 0x8000, 0x0400, 0x0200, 0x0100, 0x0080, 0x0020
_NOERROR, _FORMERR, _SERVFAIL, _NXDOMAIN, _NOTIMP, _REFUSED = 0, 1, 2, 3, 4, 5
_OPT = 41
_ANY = 255
_EDNS_SIZE = 1232  # what the lab advertises back (the DNS flag day 2020 value)
_MAX_CNAME_HOPS = 8
_UDP_BUFFER_BYTES = 4 << 20
_HEADER = struct.Struct("!HHHHHH")
_RR = struct.Struct("!HHIH")
_OPT_RR = b"\x00" + _RR.pack(_OPT, _EDNS_SIZE, 0, 0)
_POINTER_TO_QNAME = b"\xc0\x0c"  # the question name always starts at offset 12
_ROOT = b"\x00"


class _Query:
    """The parts of a query the answer depends on."""

    __slots__ = ("qid", "flags", "key", "qtype", "question", "edns_size")

    def __init__(self, qid: int, flags: int, key: bytes, qtype: int, question: bytes,
                 edns_size: int | None) -> None:
        self.qid, self.flags, self.key, self.qtype = qid, flags, key, qtype
        self.question, self.edns_size = question, edns_size


def _parse_query(data: bytes) -> _Query | int | None:
    """A query, or an rcode to answer with (FORMERR/NOTIMP), or None to drop the datagram."""
    if len(data) < 12:
        return None
    qid, flags, qdcount, ancount, nscount, arcount = _HEADER.unpack_from(data)
    if flags & _QR:
        return None  # a response: never answer those
    if (flags >> 11) & 0xF:
        return _NOTIMP
    if qdcount != 1:
        return _FORMERR
    i = 12
    try:
        while data[i]:
            if data[i] & 0xC0:
                return _FORMERR  # compression in a question is legal but no client does it
            i += data[i] + 1
        end = i + 1
        qtype = struct.unpack_from("!H", data, end)[0]
    except (IndexError, struct.error):
        return _FORMERR
    question = data[12:end + 4]
    edns_size = None
    pos = end + 4
    if arcount and not ancount and not nscount and len(data) >= pos + 11 and data[pos] == 0:
        rtype, rclass = struct.unpack_from("!HH", data, pos + 1)
        if rtype == _OPT:
            edns_size = rclass
    return _Query(qid, flags, data[12:end].lower(), qtype, question, edns_size)


def _rr(owner: bytes, rtype: int, rdata: bytes) -> bytes:
    return owner + _RR.pack(rtype, 1, TTL, len(rdata)) + rdata


def _resolve(zone: Zone, key: bytes, qtype: int) -> tuple[int, list[bytes], bool] | None:
    """(rcode, answer RRs, SOA wanted in authority), or None when the name is never answered."""
    answers: list[bytes] = []
    owner = _POINTER_TO_QNAME
    current = key
    for _ in range(_MAX_CNAME_HOPS):
        mode = zone.failing.get(current)
        if mode is None and zone.failing_types:
            mode = zone.failing_types.get((current, qtype))
        if mode is FailMode.TIMEOUT:
            return None
        if mode is FailMode.SERVFAIL:
            return _SERVFAIL, answers, False
        if mode is FailMode.REFUSED:
            return _REFUSED, answers, False
        if current == _ROOT and not answers:  # `. NS`, `. SOA`: as a recursive resolver has them
            matches = [r for r in zone.root_records if r[0] == qtype or qtype == _ANY]
            return _NOERROR, [_rr(owner, rtype, rdata) for rtype, rdata in matches], False
        if not zone.in_zone(current):
            # Out of zone: refused for the question itself; a CNAME leading out ends here.
            return (_NOERROR if answers else _REFUSED), answers, False
        records = zone.lookup(current)
        matches = [r for r in records if r[0] == qtype or qtype == _ANY]
        if matches:
            answers.extend(_rr(owner, rtype, rdata) for rtype, rdata in matches)
            return _NOERROR, answers, False
        cname = next((rdata for rtype, rdata in records if rtype == RType.CNAME), None)
        if cname is None:
            return (_NOERROR if zone.exists(current) else _NXDOMAIN), answers, True
        answers.append(_rr(owner, RType.CNAME, cname))
        owner = current = cname
    return _SERVFAIL, answers, False  # a CNAME loop or an over-long chain


class DnsServer:
    """A running lab DNS server; `queries` counts every query received (answered or not)."""

    def __init__(self, zone: Zone, host: str) -> None:
        self.zone = zone
        self.host = host
        self.port = 0
        self.paused = False
        self.broken_rcode: int | None = None  # every query answered with it (`break_`)
        self.queries = 0
        self.tcp_queries = 0
        self.truncated = 0
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp: asyncio.Server | None = None
        self._conns: set[asyncio.Task[None]] = set()

    @property
    def address(self) -> str:
        """`127.0.0.1:PORT`, the form the scanner's `--resolver` takes."""
        return f"{self.host}:{self.port}"

    def pause(self) -> None:
        """Stop answering (queries are still read and counted), as a dead resolver would."""
        self.paused = True

    def resume(self) -> None:
        """Answer again, and truthfully (undoes `pause` and `break_`)."""
        self.paused = False
        self.broken_rcode = None

    def break_(self, rcode: str) -> None:
        """Answer every query, the root's included, with `rcode` ("servfail", "refused",
        "nxdomain"): a resolver gone bad at the vantage point."""
        self.broken_rcode = {"servfail": _SERVFAIL, "refused": _REFUSED,
                             "nxdomain": _NXDOMAIN}[rcode.lower()]

    def answer(self, data: bytes | bytearray, *, tcp: bool) -> bytes | None:
        """The reply to one query message, or None to stay silent."""
        data = bytes(data)
        self.queries += 1
        if tcp:
            self.tcp_queries += 1
        if self.paused:
            return None
        query = _parse_query(data)
        if query is None:
            return None
        if isinstance(query, int):
            return _HEADER.pack(data[0] << 8 | data[1], _QR | query, 0, 0, 0, 0)
        if self.broken_rcode is not None:
            return _HEADER.pack(query.qid, _QR | _RA | (query.flags & _RD) | self.broken_rcode,
                                1, 0, 0, 0) + query.question
        result = _resolve(self.zone, query.key, query.qtype)
        if result is None:
            return None
        rcode, answers, with_soa = result
        flags = _QR | _AA | _RA | (query.flags & _RD) | rcode
        if query.flags & _AD and query.key in self.zone.signed:
            flags |= _AD  # RFC 6840 §5.7: only for clients that ask (AD set in the query)
        authority = (_rr(self.zone.origin, RType.SOA, self.zone.soa_rdata),) if with_soa else ()
        opt = (_OPT_RR,) if query.edns_size is not None else ()
        reply = b"".join((
            _HEADER.pack(query.qid, flags, 1, len(answers), len(authority), len(opt)),
            query.question, *answers, *authority, *opt))
        if not tcp:
            limit = 512 if query.edns_size is None else max(512, min(query.edns_size, 4096))
            if len(reply) > limit:
                self.truncated += 1
                reply = b"".join((_HEADER.pack(query.qid, flags | _TC, 1, 0, 0, len(opt)),
                                  query.question, *opt))
        return reply

    async def _serve_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conns.add(task)
        try:
            while True:
                size = struct.unpack("!H", await reader.readexactly(2))[0]
                reply = self.answer(await reader.readexactly(size), tcp=True)
                if reply is not None:
                    writer.write(struct.pack("!H", len(reply)) + reply)
                    await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._conns.discard(task)
            writer.close()

    async def close(self) -> None:
        """Stop listening and drop open TCP connections."""
        if self._udp is not None:
            self._udp.close()
        if self._tcp is not None:
            self._tcp.close()
        for task in list(self._conns):
            task.cancel()
        for task in list(self._conns):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tcp is not None:
            await self._tcp.wait_closed()


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DnsServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, ...]) -> None:
        try:
            reply = self.server.answer(data, tcp=False)
        except Exception:  # a bug here must not stop the server: log it, drop the query
            log.exception("DNS query from %s failed", addr)
            return
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("UDP error: %s", exc)


async def start_dns_server(zone: Zone, host: str = "127.0.0.1", port: int = 0) -> DnsServer:
    """Serve `zone` on UDP and TCP `host:port` (port 0: a free port, the same for both)."""
    server = DnsServer(zone, host)
    loop = asyncio.get_running_loop()
    for _attempt in range(20):
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _UdpProtocol(server), local_addr=(host, port))
        bound_port = transport.get_extra_info("sockname")[1]
        sock = transport.get_extra_info("socket")
        with contextlib.suppress(OSError):  # bursts from a fast scan: fewer datagrams dropped
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _UDP_BUFFER_BYTES)
        try:
            tcp = await asyncio.start_server(server._serve_tcp, host, bound_port,
                                             reuse_address=True, backlog=1024)
        except OSError:
            transport.close()
            if port:
                raise
            continue  # the TCP side of a random UDP port was taken: try another
        server._udp, server._tcp, server.port = transport, tcp, bound_port
        return server
    raise OSError(f"no free port for UDP and TCP on {host}")
