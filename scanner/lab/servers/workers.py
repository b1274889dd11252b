"""The lab's SMTP fleet in one process or, above ~8,000 listening hosts, split over workers.

Every listener and connection holds a file descriptor and a process may hold 20,000, so a big
population (norway-2010 at 345,000 domains has ~12,600 hosts) runs its hosts in worker processes
(`python -m scanner.lab.cli worker`), each serving a slice on the same port with the same CA. A
worker answers the control protocol; the main process forwards SMTP commands and merges counts.
A worker exits when its parent closes its stdin (or dies), so none outlives the lab.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import pickle
import signal
import socket
import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import scanner
from scanner.lab.population.model import LabHost
from scanner.lab.population.pki import LabPki
from scanner.lab.population.pki_certs import Issuer
from scanner.lab.servers.control import (
    ControlClient,
    Handler,
    counts_json,
    server_address,
    start_control_server,
)
from scanner.lab.servers.dns import DnsServer
from scanner.lab.servers.smtp import SmtpFleet, start_smtp_fleet

MAX_HOSTS_PER_PROCESS = 8000
HOSTS_PER_WORKER = 6000  # leaves ~14,000 descriptors per worker for connections
_WORKER_START_S = 300.0


class Fleets(Protocol):
    """The lab's SMTP hosts, wherever they run."""

    port: int

    async def counts(self) -> dict[str, dict[str, Any]]: ...
    async def reset_counts(self) -> None: ...
    async def pause(self) -> None: ...
    async def resume(self) -> None: ...
    async def close(self) -> None: ...


class LocalFleets:
    """All hosts in this process."""

    def __init__(self, fleet: SmtpFleet, port: int) -> None:
        self.fleet, self.port = fleet, port

    async def counts(self) -> dict[str, dict[str, Any]]:
        return counts_json(self.fleet.counts())

    async def reset_counts(self) -> None:
        self.fleet.reset_counts()

    async def pause(self) -> None:
        self.fleet.pause()

    async def resume(self) -> None:
        self.fleet.resume()

    async def close(self) -> None:
        await self.fleet.close()


class WorkerFleets:
    """Hosts split over worker processes, driven through their control channels."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.procs: list[asyncio.subprocess.Process] = []
        self.clients: list[ControlClient] = []

    async def _all(self, cmd: str) -> list[dict[str, Any]]:
        return list(await asyncio.gather(*(c.request({"cmd": cmd}) for c in self.clients)))

    async def counts(self) -> dict[str, dict[str, Any]]:
        merged: dict[str, dict[str, Any]] = {}
        for reply in await self._all("counts"):
            merged.update(reply["counts"])
        return merged

    async def reset_counts(self) -> None:
        await self._all("reset_counts")

    async def pause(self) -> None:
        await self._all("pause_smtp")

    async def resume(self) -> None:
        await self._all("resume_smtp")

    async def close(self) -> None:
        for client in self.clients:
            await client.close()
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                async with asyncio.timeout(15):
                    await proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                await proc.wait()
            if proc.stdin is not None:
                proc.stdin.close()


def make_handler(fleets: Fleets, dns: DnsServer | None = None) -> Handler:
    """The control protocol over a fleet (and the DNS server, in the main process)."""

    async def handle(request: dict[str, Any]) -> dict[str, Any]:
        cmd = request["cmd"]
        if cmd == "counts":
            return {"ok": True, "counts": await fleets.counts()}
        actions = {"reset_counts": fleets.reset_counts, "pause_smtp": fleets.pause,
                   "resume_smtp": fleets.resume}
        if cmd in actions:
            await actions[cmd]()
        elif dns is not None and cmd in ("pause_dns", "resume_dns"):
            (dns.pause if cmd == "pause_dns" else dns.resume)()
        elif dns is not None and cmd == "break_dns":
            dns.break_(str(request.get("rcode", "servfail")))
        elif dns is not None and cmd == "status":
            return {"ok": True, "dns_queries": dns.queries, "dns_tcp_queries": dns.tcp_queries,
                    "dns_truncated": dns.truncated, "dns_paused": dns.paused,
                    "dns_broken": dns.broken_rcode is not None}
        else:
            return {"ok": False, "error": f"unknown command {cmd!r}"}
        return {"ok": True}

    return handle


def free_port(ip: str) -> int:
    """A TCP port free on `ip` right now."""
    with socket.socket() as sock:
        sock.bind((ip, 0))
        return int(sock.getsockname()[1])


async def start_fleets(hosts: Sequence[LabHost], port: int, pki: LabPki, directory: Path, *,
                       greet_pause_s: float, strip_clients: Sequence[str] = ()) -> Fleets:
    """Start every host: in-process when few, in worker processes when many."""
    listening = [h for h in hosts if h.listens]
    for _attempt in range(5 if port == 0 else 1):
        chosen = port or free_port(listening[0].ip if listening else "127.1.0.1")
        try:
            if len(listening) <= MAX_HOSTS_PER_PROCESS:
                fleet = await start_smtp_fleet(listening, chosen, pki, greet_pause_s=greet_pause_s,
                                               strip_clients=strip_clients)
                return LocalFleets(fleet, chosen)
            return await _start_workers(listening, chosen, pki, directory, greet_pause_s,
                                        strip_clients)
        except OSError:
            if port:
                raise
    raise OSError("no SMTP port free on every lab address")


def _save_pki(pki: LabPki, path: Path) -> None:
    def pem(issuer: Issuer) -> dict[str, str]:
        key = issuer.key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
        return {"key": key.decode(),
                "cert": issuer.cert.public_bytes(serialization.Encoding.PEM).decode()}

    path.touch(mode=0o600)
    path.write_text(json.dumps({"now": pki.now.isoformat(), "root": pem(pki.root),
                                "intermediate": pem(pki.intermediate)}))


def _load_pki(path: Path, directory: Path) -> LabPki:
    data = json.loads(path.read_text())

    def issuer(part: dict[str, str]) -> Issuer:
        key = serialization.load_pem_private_key(part["key"].encode(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return Issuer(key, x509.load_pem_x509_certificate(part["cert"].encode()))

    return LabPki(directory, datetime.fromisoformat(data["now"]), issuer(data["root"]),
                  issuer(data["intermediate"]))


async def _start_workers(hosts: Sequence[LabHost], port: int, pki: LabPki, directory: Path,
                         greet_pause_s: float, strip_clients: Sequence[str] = ()
                         ) -> WorkerFleets:
    work = directory / "workers"
    work.mkdir(parents=True, exist_ok=True)
    _save_pki(pki, work / "pki.json")
    n_workers = -(-len(hosts) // HOSTS_PER_WORKER)
    env = dict(os.environ)
    root = str(Path(scanner.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
    fleets = WorkerFleets(port)
    try:
        for i in range(n_workers):
            shard = work / f"hosts-{i}.pickle"
            shard.write_bytes(pickle.dumps(list(hosts[i::n_workers])))
            fleets.procs.append(await asyncio.create_subprocess_exec(
                sys.executable, "-m", "scanner.lab.cli", "worker", "--hosts-file", str(shard),
                "--dir", str(directory), "--smtp-port", str(port),
                "--greet-pause", str(greet_pause_s),
                *(f"--strip-client={ip}" for ip in strip_clients),
                stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env))
        for proc in fleets.procs:
            assert proc.stdout is not None
            async with asyncio.timeout(_WORKER_START_S):
                line = await proc.stdout.readline()
            if not line:
                raise OSError(f"lab worker {proc.pid} failed to start (exit {await proc.wait()})")
            fleets.clients.append(ControlClient(json.loads(line)["control"]))
    except BaseException:
        await fleets.close()
        raise
    return fleets


async def run_worker(hosts_file: Path, directory: Path, port: int, *,
                     greet_pause_s: float, strip_clients: Sequence[str] = ()) -> int:
    """A worker's life: serve its hosts until SIGTERM/SIGINT or its stdin closes."""
    hosts: list[LabHost] = pickle.loads(hosts_file.read_bytes())
    pki = _load_pki(directory / "workers" / "pki.json", directory)
    fleets = LocalFleets(await start_smtp_fleet(hosts, port, pki, greet_pause_s=greet_pause_s,
                                                strip_clients=strip_clients), port)
    control = await start_control_server(make_handler(fleets))
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # EOF on stdin: the parent closed the pipe or died. Read on a duplicate of fd 0, so the
    # transport closing it leaves sys.stdin alone.
    stdin = os.fdopen(os.dup(0), "rb", buffering=0)
    transport, _ = await loop.connect_read_pipe(lambda: _ParentWatch(stop), stdin)
    print(json.dumps({"control": server_address(control)}), flush=True)
    try:
        await stop.wait()
    finally:
        transport.close()
        control.close()
        await fleets.close()
    return 0


class _ParentWatch(asyncio.Protocol):
    """Sets `stop` when the pipe from the parent reaches EOF."""

    def __init__(self, stop: asyncio.Event) -> None:
        self.stop = stop

    def eof_received(self) -> bool:
        self.stop.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.stop.set()
