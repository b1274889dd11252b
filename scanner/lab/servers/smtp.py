"""The lab's simulated mail servers: one asyncio listener per host, on (host.ip, port).

Each host plays its behaviour (`smtp_behaviours.py`) to every client. The fleet counts what it
saw per address, so tests can check that a scan connected once per address and never sent MAIL,
RCPT or DATA. `pause()` turns every host into a tarpit, as when the port-25 path dies mid-scan.

Every listener and every open connection holds a file descriptor: with the 20,000 fd limit, run
at most ~8,000 hosts per process (a process per slice of hosts above that).
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from functools import partial

from scanner.lab.population.model import LabHost
from scanner.lab.population.pki import LabPki
from scanner.lab.servers.smtp_behaviours import converse
from scanner.lab.servers.smtp_session import Session, Tally

logger = logging.getLogger(__name__)

LISTEN_BACKLOG = 128
#: What one client may send on one line before the server stops listening to it.
_LINE_LIMIT = 8192


@dataclass(frozen=True, slots=True)
class HostCounts:
    """What one address saw since start or the last `reset_counts()`."""

    connections: int = 0  # accepted
    max_concurrent: int = 0
    forbidden_commands: int = 0  # MAIL, RCPT and DATA: a scan must never send them
    commands: Counter[str] = field(default_factory=Counter)  # verbs received, upper-case


class SmtpFleet:
    """The running listeners of a lab, their open connections and their counters."""

    def __init__(self, pki: LabPki, greet_pause_s: float,
                 strip_clients: Collection[str] = ()) -> None:
        self.pki = pki
        self.greet_pause_s = greet_pause_s
        self.strip_clients = frozenset(strip_clients)  # client addresses behind a stripping path
        self.hosts: dict[str, LabHost] = {}
        self._servers: list[asyncio.Server] = []
        self._tallies: dict[str, Tally] = {}
        self._live: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._running = asyncio.Event()  # cleared while paused
        self._running.set()
        self._closed = False

    async def listen(self, hosts: Sequence[LabHost], port: int) -> None:
        """Bind one listener per host that listens; return once all accept connections."""
        for host in hosts:
            if not host.listens:
                continue
            self.hosts[host.ip] = host
            self._tallies[host.ip] = Tally()
            server = await asyncio.start_server(
                partial(self._serve, host), host=host.ip, port=port, reuse_address=True,
                backlog=LISTEN_BACKLOG, limit=_LINE_LIMIT)
            self._servers.append(server)

    def counts(self) -> dict[str, HostCounts]:
        """A snapshot of the counters of every listening address."""
        return {ip: HostCounts(t.connections, t.max_concurrent, t.forbidden_commands,
                               Counter(t.commands))
                for ip, t in self._tallies.items()}

    def open_connections(self) -> int:
        """Connections accepted and not yet ended, over all hosts."""
        return len(self._live)

    def reset_counts(self) -> None:
        """Zero every counter (connections still open keep counting as concurrent)."""
        for tally in self._tallies.values():
            tally.reset()

    def pause(self) -> None:
        """Make every host a tarpit: accept, never answer, until `resume()`."""
        self._running.clear()

    def resume(self) -> None:
        """Let the hosts answer again, stalled conversations included."""
        self._running.set()

    @property
    def paused(self) -> bool:
        """True between `pause()` and `resume()`."""
        return not self._running.is_set()

    async def close(self) -> None:
        """Stop listening, abort every open connection and wait for their handlers to end."""
        self._closed = True
        for server in self._servers:
            server.close()
        while self._live:
            for task, writer in list(self._live.items()):
                writer.transport.abort()
                task.cancel()
            await asyncio.gather(*self._live, return_exceptions=True)
        for server in self._servers:
            await server.wait_closed()
        self._servers.clear()
        # Aborted transports close their sockets in callbacks, and connections accepted just
        # before close() start their handlers late: let both run before the loop ends.
        for _ in range(3):
            await asyncio.sleep(0)

    async def __aenter__(self) -> SmtpFleet:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    def _stripped(self, writer: asyncio.StreamWriter) -> bool:
        return bool(self.strip_clients) and _peer_ip(writer) in self.strip_clients

    async def _serve(self, host: LabHost, reader: asyncio.StreamReader,
                     writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        tally = self._tallies[host.ip]
        if self._closed:
            writer.transport.abort()
            return
        self._live[task] = writer
        tally.opened()
        session = Session(host, reader, writer, self.pki, self.greet_pause_s, self._running,
                          tally, stripped=self._stripped(writer))
        try:
            await converse(session)
        except asyncio.CancelledError:
            pass  # close() aborts the connection; the task must end quietly
        except (ConnectionError, TimeoutError, OSError, EOFError) as exc:
            logger.debug("%s: client went away: %r", host.ip, exc)
        except Exception:  # a lab bug must not kill the listener or leak a task error
            logger.exception("%s: lab server error", host.ip)
        finally:
            tally.closed()
            del self._live[task]
            await _close(session.writer)


def _peer_ip(writer: asyncio.StreamWriter) -> str | None:
    peer = writer.get_extra_info("peername")
    return str(peer[0]) if isinstance(peer, tuple) and peer else None


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close, and wait (briefly) until closed, which also consumes any connection error."""
    # A transport already closing has lost its connection, or was closed by a failed start_tls,
    # after which wait_closed() may never end: a moment is enough for it.
    patience = 0.1 if writer.transport.is_closing() else 1.0
    writer.close()
    try:
        async with asyncio.timeout(patience):
            await writer.wait_closed()
    except (asyncio.CancelledError, TimeoutError, OSError):
        writer.transport.abort()


async def start_smtp_fleet(hosts: Sequence[LabHost], port: int, pki: LabPki, *,
                           greet_pause_s: float = 0.3,
                           strip_clients: Collection[str] = ()) -> SmtpFleet:
    """Start one listener per listening host on exactly (host.ip, port); refused hosts get none.

    Connections from an address in `strip_clients` see STARTTLS stripped (`XXXXXXXA` in EHLO,
    502 to the command), as behind a stripping middlebox on that client's path.
    """
    fleet = SmtpFleet(pki, greet_pause_s, strip_clients)
    try:
        await fleet.listen(hosts, port)
    except BaseException:
        await fleet.close()
        raise
    return fleet
