"""A STARTTLS-stripping path through the lab: a middlebox on a second port of every host.

Connections to `<host ip>:<strip port>` are relayed to `<host ip>:<smtp port>`, with every
`STARTTLS` the server sends rewritten to `XXXXXXXA` (what the 2015 IMC study found networks
doing). Scanning the lab once on its SMTP port and once on this port gives two vantage points,
one of them behind a stripping network; `scanner compare --vantage` must tell them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import Sequence

from scanner.lab.servers.workers import free_port

_KEYWORD = re.compile(rb"starttls", re.IGNORECASE)
_MASK = b"XXXXXXXA"
_CHUNK = 65536


def _held_back(data: bytes) -> int:
    """How many trailing bytes could start a keyword split across reads (kept for the next)."""
    for n in range(min(len(data), 7), 0, -1):
        if b"STARTTLS".startswith(data[-n:].upper()):
            return n
    return 0


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, mask: bool) -> None:
    carry = b""
    try:
        while chunk := await reader.read(_CHUNK):
            data = carry + chunk
            if mask:
                data = _KEYWORD.sub(_MASK, data)
                keep = _held_back(data)
                data, carry = (data[:-keep], data[-keep:]) if keep else (data, b"")
            writer.write(data)
            await writer.drain()
        if carry:
            writer.write(carry)
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


class StripProxy:
    """The running stripping listeners; `port` is the same on every address."""

    def __init__(self, smtp_port: int) -> None:
        self.smtp_port = smtp_port
        self.port = 0
        self._servers: list[asyncio.Server] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def _relay(self, ip: str, client_r: asyncio.StreamReader,
                     client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            try:
                server_r, server_w = await asyncio.open_connection(ip, self.smtp_port)
            except OSError:
                client_w.close()
                return
            await asyncio.gather(_pump(client_r, server_w, mask=False),
                                 _pump(server_r, client_w, mask=True))
        finally:
            self._tasks.discard(task)

    async def listen(self, ips: Sequence[str], port: int) -> None:
        """One listener per address on `port`."""
        for ip in ips:
            self._servers.append(await asyncio.start_server(
                functools.partial(self._relay, ip), host=ip, port=port, reuse_address=True))
        self.port = port

    async def close(self) -> None:
        """Stop listening and cut every relayed connection."""
        for server in self._servers:
            server.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for server in self._servers:
            await server.wait_closed()


async def start_strip_proxy(ips: Sequence[str], smtp_port: int) -> StripProxy:
    """Stripping listeners on a free port of every address (retried if the port is taken)."""
    for _attempt in range(5):
        proxy = StripProxy(smtp_port)
        try:
            await proxy.listen(ips, free_port(ips[0]) if ips else 0)
            return proxy
        except OSError:
            await proxy.close()
    raise OSError("no port free on every lab address for the stripping path")
