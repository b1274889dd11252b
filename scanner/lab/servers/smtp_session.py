"""One lab SMTP connection's state and I/O: replies with latency, command reading, counters."""

from __future__ import annotations

import asyncio
from collections import Counter

from scanner.lab.population.model import LabHost
from scanner.lab.population.pki import LabPki

FORBIDDEN_VERBS = frozenset({"MAIL", "RCPT", "DATA"})  # a survey must never send mail


class Tally:
    """Mutable per-address counters, kept by the fleet and updated by its sessions."""

    __slots__ = ("connections", "current", "max_concurrent", "forbidden_commands", "commands")

    def __init__(self) -> None:
        self.connections = 0
        self.current = 0
        self.max_concurrent = 0
        self.forbidden_commands = 0
        self.commands: Counter[str] = Counter()

    def opened(self) -> None:
        """Count one accepted connection."""
        self.connections += 1
        self.current += 1
        self.max_concurrent = max(self.max_concurrent, self.current)

    def closed(self) -> None:
        """Count one connection gone."""
        self.current -= 1

    def reset(self) -> None:
        """Start counting afresh; connections still open stay concurrent."""
        self.connections = 0
        self.max_concurrent = self.current
        self.forbidden_commands = 0
        self.commands = Counter()

    def record(self, verb: str) -> None:
        """Count one received command by its verb (odd tokens count as "?": memory stays small)."""
        verb = verb.upper() if verb.isascii() and verb.isalpha() and len(verb) <= 12 else "?"
        self.commands[verb] += 1
        if verb in FORBIDDEN_VERBS:
            self.forbidden_commands += 1


class Session:
    """One client connection to one lab host."""

    __slots__ = ("host", "reader", "writer", "pki", "greet_pause_s", "running", "tally", "tls",
                 "name", "stripped", "_latency_s")

    def __init__(self, host: LabHost, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter, pki: LabPki, greet_pause_s: float,
                 running: asyncio.Event, tally: Tally, stripped: bool = False) -> None:
        self.host = host
        self.reader = reader
        self.writer = writer
        self.pki = pki
        self.greet_pause_s = greet_pause_s
        self.running = running  # cleared while the fleet is paused
        self.tally = tally
        self.tls = False
        # The client sits behind a stripping middlebox: STARTTLS is masked in both directions.
        self.stripped = stripped
        # The name the host calls itself in EHLO replies.
        self.name = host.mx_names[0] if host.mx_names else (host.banner.split() or ["mx"])[0]
        self._latency_s = host.latency_ms / 1000

    @property
    def paused(self) -> bool:
        """True while the fleet plays dead."""
        return not self.running.is_set()

    async def delay(self) -> None:
        """Wait the host's latency, as before any reply."""
        if self._latency_s:
            await asyncio.sleep(self._latency_s)

    async def write(self, data: bytes) -> None:
        """Write now (once the fleet is not paused), respecting the client's backpressure."""
        if not self.running.is_set():
            await self.running.wait()
        self.writer.write(data)
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        """Write one reply after the host's latency."""
        await self.delay()
        await self.write(data)

    async def reply(self, code: int, *texts: str) -> None:
        """Send a (multi-line) SMTP reply: `code-text` lines, then `code text`."""
        last = len(texts) - 1
        await self.send("".join(f"{code}{' ' if i == last else '-'}{text}\r\n"
                                for i, text in enumerate(texts)).encode())

    async def read_command(self) -> str | None:
        """The next command line without its line end; None at EOF, "" for an overlong line."""
        try:
            line = await self.reader.readline()
        except ValueError:  # over the reader's limit: the buffered part is dropped
            self.tally.record("")
            return ""
        if not line:
            return None
        text = line.decode("latin-1").rstrip("\r\n")
        self.tally.record(text.partition(" ")[0])
        return text

    async def discard_commands(self) -> None:
        """Read (and count) commands without answering until the client leaves."""
        while await self.read_command() is not None:
            pass


async def drain_input(reader: asyncio.StreamReader) -> None:
    """Read and drop bytes until EOF (a TLS ClientHello is not worth counting as commands)."""
    while await reader.read(65536):
        pass
