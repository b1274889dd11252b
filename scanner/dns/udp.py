"""A lean DNS stub for bulk lookups: one UDP socket per server, answers matched by query id.

dnspython's async resolver opens a socket, builds a message and runs its resolution machinery
for every query: at ~1 ms CPU each, the policy lookups (four TXT per domain, TLSA per MX host)
were 60 % of a national survey's CPU (py-spy, benchmarks/RESULTS.md). This stub writes the
query bytes directly, keeps one socket per server for the whole scan, and hands the reply to
dnspython's wire parser (`reply.py`); a truncated (TC) answer is asked again over TCP by
dnspython. A reply with no answer records (NXDOMAIN, NODATA, SERVFAIL: most policy lookups) is
read from its 12-byte header alone (RFC 1035 §4.1.1) and never parsed.

A query costs one future and one send: unanswered queries are given up by one sweep per server
that runs at most every `_SWEEP_S` seconds, not by a timer per query or per batch, and query
ids come from a buffer of `os.urandom` bytes rather than a system call each.
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import weakref
from collections import deque
from collections.abc import Sequence

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name

from scanner.dns.reply import StubReply, read_reply, reply_of_message

# plain ints: an IntFlag operation builds an enum member each time (per query, per reply)
_FLAGS = int(dns.flags.RD | dns.flags.AD)  # AD asks for the AD bit (RFC 6840 §5.7)
#: OPT pseudo-record: root owner, type 41, 1232-byte payload, DO set (RFC 3225)
_OPT = b"\x00" + struct.pack("!HHIH", 41, 1232, 0x8000, 0)
_RECV_BUFFER = 1 << 21
_MAX_DATAGRAM = 65535
#: unanswered queries are given up this late at most (one sweep per server per period)
_SWEEP_S = 0.05
_ID_BYTES = 2048  # random bytes drawn at once for query ids (1,024 ids)


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

    def __init__(self, address: tuple[str, int], timeout: float) -> None:
        self.address = address
        self.timeout = timeout
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
        #: query id -> (question bytes, future of the raw reply, None when given up)
        self.pending: dict[int, tuple[bytes, asyncio.Future[bytes | None]]] = {}
        #: (deadline, id, future) in sending order, so in deadline order: the sweep's queue
        self._deadlines: deque[tuple[float, int, asyncio.Future[bytes | None]]] = deque()
        self._sweep_at: asyncio.TimerHandle | None = None
        self._random = b""
        self._random_at = 0
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
            qid = int.from_bytes(data[:2], "big")
            entry = self.pending.get(qid)
            if entry is None:
                continue  # a late answer to a query already given up
            question, fut = entry
            # a reply must echo the question (case-insensitively), or it is not ours
            if data[12:12 + len(question)].lower() != question.lower():
                continue
            del self.pending[qid]
            if not fut.done():
                fut.set_result(data)

    def new_id(self) -> int:
        """A query id not in flight, from the operating system's CSPRNG (RFC 5452 §9.2)."""
        while True:
            at = self._random_at
            if at >= len(self._random):
                self._random, at = os.urandom(_ID_BYTES), 0
            self._random_at = at + 2
            qid = int.from_bytes(self._random[at:at + 2], "big")
            if qid not in self.pending:
                return qid

    def send(self, question: bytes) -> tuple[int, asyncio.Future[bytes | None]] | None:
        """Send one question; its id and the future of its reply, or None if it could not go.

        The future gets the reply's bytes, or None once `timeout` has passed without one.
        """
        qid = self.new_id()
        try:
            self.sock.send(struct.pack("!HHHHHH", qid, _FLAGS, 1, 0, 0, 1) + question + _OPT)
        except (BlockingIOError, ConnectionRefusedError):
            return None  # not sent: counts as unanswered
        fut: asyncio.Future[bytes | None] = self.loop.create_future()
        self.pending[qid] = (question, fut)
        deadline = self.loop.time() + self.timeout
        self._deadlines.append((deadline, qid, fut))
        if self._sweep_at is None:
            self._sweep_at = self.loop.call_at(deadline, self._sweep)
        return qid, fut

    def forget(self, qid: int, fut: asyncio.Future[bytes | None]) -> None:
        """Stop waiting for a query (its asker is gone); a later reply is then ignored."""
        entry = self.pending.get(qid)
        if entry is not None and entry[1] is fut:
            del self.pending[qid]
        fut.cancel()

    def _sweep(self) -> None:
        now = self.loop.time()
        deadlines = self._deadlines
        while deadlines and deadlines[0][0] <= now:
            _, qid, fut = deadlines.popleft()
            if not fut.done():
                del self.pending[qid]  # not answered, so still there
                fut.set_result(None)
        self._sweep_at = None
        if deadlines:  # at most one sweep per period, however many queries are waiting
            self._sweep_at = self.loop.call_at(max(deadlines[0][0], now + _SWEEP_S), self._sweep)

    def close(self) -> None:
        if self._sweep_at is not None:
            self._sweep_at.cancel()
            self._sweep_at = None
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
            server = self._servers[address] = _Server(address, self._timeout)
        return server

    async def query_many(self, queries: Sequence[tuple[str, int]]
                         ) -> list[StubReply | dns.exception.DNSException]:
        """Replies to several queries sent together (a domain's policy records), in order.

        A query no server answered gets a dns.exception.Timeout, a reply that does not parse
        its DNSException.
        """
        questions = [question_wire(name, rdtype) for name, rdtype in queries]
        replies: list[tuple[bytes, tuple[str, int]] | None] = [None] * len(questions)
        todo = list(range(len(questions)))
        for address in [address for _ in range(self._tries) for address in self._addresses]:
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
                reply, address = got
                parsed = read_reply(reply, len(question))
                if parsed is None:  # truncated: the whole answer over TCP
                    parsed = await self._over_tcp(reply, address, question)
                results.append(parsed)
            except dns.exception.DNSException as exc:
                results.append(exc)
        return results

    @staticmethod
    async def _ask(server: _Server, questions: list[bytes]) -> list[bytes | None]:
        """Send each question and wait for its reply; None where none came in time."""
        sent = [server.send(question) for question in questions]
        try:
            return [None if s is None else await s[1] for s in sent]
        finally:
            for s in sent:
                if s is not None:  # only entries still waiting (cancelled with us) are there
                    server.forget(*s)

    async def _over_tcp(self, reply: bytes, address: tuple[str, int], question: bytes
                        ) -> StubReply:
        query = dns.message.from_wire(reply[:2] + struct.pack("!HHHHH", _FLAGS, 1, 0, 0, 0)
                                      + question)
        query.use_edns(0, dns.flags.DO, 1232)
        message = await dns.asyncquery.tcp(query, address[0], timeout=self._timeout,
                                           port=address[1])
        return reply_of_message(message)

    def close(self) -> None:
        """Release the sockets."""
        for server in self._servers.values():
            server.close()
        self._servers.clear()
