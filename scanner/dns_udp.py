"""A lean DNS stub for bulk lookups: one UDP socket per server, answers matched by query id.

dnspython's async resolver opens a socket, builds a message and runs its resolution machinery
for every query: at ~1 ms CPU each, the policy lookups (four TXT per domain, TLSA per MX host)
were 60 % of a national survey's CPU (py-spy, benchmarks/RESULTS.md). This stub writes the
query bytes directly, keeps one socket per server for the whole scan, and hands the reply to
dnspython's parser; a truncated (TC) answer is asked again over TCP by dnspython. A reply with
no answer records (NXDOMAIN, NODATA, SERVFAIL: most policy lookups) is read from its 12-byte
header alone (RFC 1035 §4.1.1) and never parsed.
"""

from __future__ import annotations

import asyncio
import secrets
import socket
import struct
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name

_FLAGS = dns.flags.RD | dns.flags.AD  # AD asks for the AD bit (RFC 6840 §5.7)
#: OPT pseudo-record: root owner, type 41, 1232-byte payload, DO set (RFC 3225)
_OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0x8000, 0)
_RECV_BUFFER = 1 << 21
_MAX_DATAGRAM = 65535


@dataclass(frozen=True, slots=True)
class StubReply:
    """An answer: header rcode and flags, and the parsed message when it has answer records."""

    rcode: int
    flags: int
    message: dns.message.QueryMessage | None


def question_wire(name: str, rdtype: int) -> bytes:
    """QNAME, QTYPE and QCLASS IN of a name (A-labels; other names through dnspython)."""
    labels = name.rstrip(".").split(".") if name not in ("", ".") else []
    if all(0 < len(lb) < 64 and lb.isascii() and "\\" not in lb for lb in labels):
        qname = b"".join(bytes((len(lb),)) + lb.encode("ascii") for lb in labels) + b"\x00"
    else:
        wire = dns.name.from_text(name).to_wire()
        assert wire is not None  # without a compression table it returns the bytes
        qname = wire
    return qname + struct.pack("!HH", rdtype, 1)


class _Server:
    """One connected UDP socket to one server, read whenever the event loop says it is ready."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self.loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECV_BUFFER)
            self.sock.connect(address)
        except OSError:
            self.sock.close()
            raise
        #: query id -> (question bytes, future of the raw reply)
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes]]] = {}
        self.loop.add_reader(self.sock.fileno(), self._readable)
        self._finalizer = weakref.finalize(self, _release, self.loop, self.sock)

    def _readable(self) -> None:
        while True:
            try:
                data = self.sock.recv(_MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # ICMP unreachable and the like: the tries time out
                return
            if len(data) < 12:
                continue
            entry = self.pending.get(int.from_bytes(data[:2], "big"))
            if entry is None:
                continue  # a late answer to a query already given up
            question, fut = entry
            # a reply must echo the question (case-insensitively), or it is not ours
            if data[12:12 + len(question)].lower() != question.lower() or fut.done():
                continue
            fut.set_result(data)

    def new_id(self) -> int:
        while True:
            qid = secrets.randbits(16)
            if qid not in self.pending:
                return qid

    def close(self) -> None:
        self._finalizer()


def _release(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> None:
    if not loop.is_closed():
        loop.remove_reader(sock.fileno())
    sock.close()


class UdpStub:
    """Queries to `servers` ((host, port) pairs), tried in turn, `tries` rounds of `timeout` s.

    Create and use inside one event loop; `close()` releases the sockets (they are also released
    when the stub is garbage-collected).
    """

    def __init__(self, servers: Sequence[tuple[str, int]], timeout: float, tries: int) -> None:
        if not servers:
            raise ValueError("no DNS servers")
        self._addresses = tuple(servers)
        self._timeout = timeout
        self._tries = tries
        self._servers: dict[tuple[str, int], _Server] = {}

    def _server(self, address: tuple[str, int]) -> _Server:
        server = self._servers.get(address)
        if server is None or server.loop is not asyncio.get_running_loop():
            server = self._servers[address] = _Server(address)
        return server

    async def query_many(self, queries: Sequence[tuple[str, int]]
                         ) -> list[StubReply | dns.exception.DNSException]:
        """Replies to several queries sent together (a domain's policy records), in order.

        One wait per try covers the whole batch; a query no server answered gets a
        dns.exception.Timeout, a reply that does not parse its DNSException.
        """
        questions = [question_wire(name, rdtype) for name, rdtype in queries]
        replies: list[tuple[bytes, tuple[str, int]] | None] = [None] * len(questions)
        todo = list(range(len(questions)))
        attempts = [address for _ in range(self._tries) for address in self._addresses]
        for address in attempts:
            answered = await self._ask(self._server(address), [questions[i] for i in todo])
            for i, reply in zip(todo, answered, strict=True):
                if reply is not None:
                    replies[i] = (reply, address)
            todo = [i for i in todo if replies[i] is None]
            if not todo:
                break
        results: list[StubReply | dns.exception.DNSException] = []
        for question, got in zip(questions, replies, strict=True):
            if got is None:
                results.append(dns.exception.Timeout(  # type: ignore[no-untyped-call]
                    timeout=self._timeout * self._tries))
                continue
            try:
                results.append(await self._parse(*got, question))
            except dns.exception.DNSException as exc:
                results.append(exc)
        return results

    async def _ask(self, server: _Server, questions: list[bytes]) -> list[bytes | None]:
        """Send each question, wait up to the timeout for all; None where none came."""
        sent: list[tuple[int, asyncio.Future[bytes]]] = []
        try:
            for question in questions:
                qid = server.new_id()
                fut: asyncio.Future[bytes] = server.loop.create_future()
                server.pending[qid] = (question, fut)
                sent.append((qid, fut))
                try:
                    server.sock.send(struct.pack("!HHHHHH", qid, _FLAGS, 1, 0, 0, 1)
                                     + question + _OPT)
                except (BlockingIOError, ConnectionRefusedError):
                    fut.cancel()  # not sent: counts as unanswered
            waiting = [f for _, f in sent if not f.done()]
            if waiting:
                await asyncio.wait(waiting, timeout=self._timeout)
            return [f.result() if f.done() and not f.cancelled() else None for _, f in sent]
        finally:
            for qid, fut in sent:
                del server.pending[qid]
                fut.cancel()

    async def _parse(self, reply: bytes, address: tuple[str, int], question: bytes) -> StubReply:
        flags = int.from_bytes(reply[2:4], "big")
        if reply[6:8] == b"\0\0" and not flags & dns.flags.TC:
            return StubReply(flags & 0x000F, flags, None)  # no answer records: the header says all
        message = dns.message.from_wire(reply)
        if message.flags & dns.flags.TC:
            query = dns.message.from_wire(reply[:2] + struct.pack("!HHHHH", _FLAGS, 1, 0, 0, 0)
                                          + question)
            query.use_edns(0, dns.flags.DO, 1232)
            message = await dns.asyncquery.tcp(query, address[0], timeout=self._timeout,
                                               port=address[1])
        if not isinstance(message, dns.message.QueryMessage):
            raise dns.exception.FormError(  # type: ignore[no-untyped-call]
                "the reply is not an answer to a query")
        return StubReply(message.rcode(), message.flags, message)

    def close(self) -> None:
        """Release the sockets."""
        for server in self._servers.values():
            server.close()
        self._servers.clear()
