"""The lab's control channel: JSON lines over TCP on 127.0.0.1, one request, one reply.

Requests are objects with a "cmd" (`counts`, `reset_counts`, `pause_dns`, `resume_dns`,
`break_dns` with an "rcode" (servfail, refused, nxdomain: every query answered so, as by a
resolver gone bad; `resume_dns` ends it), `pause_smtp`, `resume_smtp`, `status`); replies
carry `"ok": true` and the data, or `"ok": false` and an `"error"`. The lab's worker processes
speak the same protocol, so the main process forwards SMTP commands to them and merges their
counts."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from scanner.lab.servers.smtp import HostCounts

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
_MAX_REQUEST = 1 << 16
_MAX_REPLY = 1 << 30  # counts of 10,000+ hosts make a long line


def counts_json(counts: dict[str, HostCounts]) -> dict[str, dict[str, Any]]:
    """Per-address counters as JSON-ready dicts."""
    return {ip: {**asdict(c), "commands": dict(c.commands)} for ip, c in counts.items()}


async def start_control_server(handler: Handler, host: str = "127.0.0.1",
                               port: int = 0) -> asyncio.Server:
    """Serve the JSON-lines protocol; `handler` maps a request to a reply."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                try:
                    request = json.loads(line)
                    if not isinstance(request, dict):
                        raise ValueError("a request is a JSON object")
                    reply = await handler(request)
                except (ValueError, KeyError) as exc:
                    reply = {"ok": False, "error": str(exc)}
                except Exception as exc:  # a lab bug must not kill the channel
                    log.exception("control request failed")
                    reply = {"ok": False, "error": f"internal error: {exc!r}"}
                writer.write(json.dumps(reply).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    return await asyncio.start_server(serve, host, port, limit=_MAX_REQUEST)


def server_address(server: asyncio.Server) -> str:
    """`127.0.0.1:PORT` of a started server."""
    host, port = server.sockets[0].getsockname()[:2]
    return f"{host}:{port}"


def _split(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


class ControlClient:
    """A persistent async connection to a control channel (the main process to a worker)."""

    def __init__(self, address: str) -> None:
        self.address = address
        self._lock = asyncio.Lock()
        self._stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, request: dict[str, Any]) -> dict[str, Any]:
        """Send one request, return the reply; raise RuntimeError when it says not ok."""
        async with self._lock:
            if self._stream is None:
                self._stream = await asyncio.open_connection(*_split(self.address),
                                                             limit=_MAX_REPLY)
            reader, writer = self._stream
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await reader.readline()
        if not line:
            self._stream = None
            raise ConnectionError(f"control channel {self.address} closed")
        reply: dict[str, Any] = json.loads(line)
        if not reply.get("ok"):
            raise RuntimeError(f"control {request.get('cmd')!r}: {reply.get('error')}")
        return reply

    async def close(self) -> None:
        """Close the connection."""
        if self._stream is not None:
            self._stream[1].close()
            self._stream = None


def control_request(address: str, request: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
    """Blocking one-shot request (tests, benchmarks); raises RuntimeError when not ok."""
    with socket.create_connection(_split(address), timeout=timeout) as sock:
        sock.sendall(json.dumps(request).encode() + b"\n")
        chunks: list[bytes] = []
        while not chunks or not chunks[-1].endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    if not chunks:
        raise ConnectionError(f"control channel {address} closed")
    reply: dict[str, Any] = json.loads(b"".join(chunks))
    if not reply.get("ok"):
        raise RuntimeError(f"control {request.get('cmd')!r}: {reply.get('error')}")
    return reply
