"""`lab serve`: generate a population, write its truth, serve its DNS and SMTP until stopped.

`run_lab` writes `DIR/lab.json` only once every server accepts connections, and removes it on
the way out, so its presence means "ready". `LabProcess` runs the same thing as a subprocess for
tests, the demo and the benchmarks.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import ipaddress
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import scanner
from scanner.lab.population.builder import Population, build_zone, mx_names
from scanner.lab.population.pki import LabPki
from scanner.lab.population.policies import StsResponse, add_tlsa_to_zone, sts_response
from scanner.lab.population.profiles import generate
from scanner.lab.servers.control import control_request, server_address, start_control_server
from scanner.lab.servers.dns import Zone, start_dns_server
from scanner.lab.servers.https import start_sts_server
from scanner.lab.servers.strip_proxy import start_strip_proxy
from scanner.lab.servers.workers import make_handler, start_fleets
from scanner.lab.truth.tables import write_truth

LAB_JSON = "lab.json"
MAX_STRIPPED_HOSTS = 1000
_TLSA_PREFIX = "_25._tcp."


def add_policy_records(population: Population, zone: Zone, pki: LabPki) -> None:
    """TLSA records, whose data comes from the chains the lab's hosts serve."""
    for owner, kind in population.tlsa.items():
        ip = population.addresses[owner.removeprefix(_TLSA_PREFIX)][0]
        add_tlsa_to_zone(zone, owner, kind, pki.served_chain(population.host(ip)))


def sts_responses(population: Population) -> dict[str, StsResponse]:
    """What the policy server answers, by `mta-sts.<domain>`."""
    out: dict[str, StsResponse] = {}
    for d in population.domains:
        plan = population.policies.get(d.name)
        response = sts_response(plan.sts, mx_names(d)) if plan else None
        if response is not None:
            out[f"mta-sts.{d.name}"] = response
    return out


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    tmp.replace(path)  # readers never see half a file


async def run_lab(profile: str, n_domains: int, seed: int, directory: Path, *,
                  smtp_port: int = 0, dns_port: int = 0,
                  latency_ms: tuple[int, int] | None = None, greet_pause_s: float = 0.3,
                  strip_clients: Sequence[str] = (),
                  ready: asyncio.Event | None = None,
                  on_ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    """Serve a lab population until cancelled, SIGINT or SIGTERM; then stop cleanly.

    Clients connecting from an address in `strip_clients` see every host through a stripping
    middlebox (STARTTLS rewritten to `XXXXXXXA`): a second vantage point by client address.
    `on_ready` gets lab.json's content, with its path and the hosts' addresses, once ready.
    """
    strip_clients = sorted(set(strip_clients))
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    lab_json = directory / LAB_JSON
    lab_json.unlink(missing_ok=True)
    population = generate(profile, n_domains, seed, latency_ms=latency_ms)
    zone = build_zone(population)
    pki = LabPki.create(directory, datetime.now(UTC))
    add_policy_records(population, zone, pki)
    n_hosts = len(population.hosts)
    ips = sorted((ipaddress.ip_address(h.ip) for h in population.hosts), key=lambda a: (
        a.version, a))
    addresses = {"first_address": str(ips[0]) if ips else None,
                 "last_address": str(ips[-1]) if ips else None,
                 "listening": sum(h.listens for h in population.hosts)}
    async with contextlib.AsyncExitStack() as stack:
        dns = await start_dns_server(zone, port=dns_port)
        stack.push_async_callback(dns.close)
        fleets = await start_fleets(population.hosts, smtp_port, pki, directory,
                                    greet_pause_s=greet_pause_s, strip_clients=strip_clients)
        stack.push_async_callback(fleets.close)
        sts = await start_sts_server(sts_responses(population), pki, directory)
        stack.push_async_callback(sts.close)
        strip_port = None
        listening = [h.ip for h in population.hosts if h.listens]
        if len(listening) <= MAX_STRIPPED_HOSTS:  # a second listener per host: small labs only
            strip = await start_strip_proxy(listening, fleets.port)
            stack.push_async_callback(strip.close)
            strip_port = strip.port
        write_truth(population, directory, fleets.port)
        del population, zone  # the servers keep what they need
        gc.collect()
        control = await start_control_server(make_handler(fleets, dns))
        stack.callback(control.close)
        stop = asyncio.Event()
        stack.enter_context(_stop_on_signals(stop))
        stack.callback(lab_json.unlink, missing_ok=True)
        info = {
            "resolver": dns.address, "smtp_port": fleets.port, "mta_sts_port": sts.port,
            "strip_port": strip_port, "strip_clients": strip_clients,
            "control": server_address(control), "ca_pem": str(pki.ca_pem),
            "profile": profile, "domains": n_domains, "seed": seed, "hosts": n_hosts,
            "pid": os.getpid(), "directory": str(directory)}
        _write_atomically(lab_json, info)
        if ready is not None:
            ready.set()
        if on_ready is not None:
            on_ready({**info, **addresses, "lab_json": str(lab_json)})
        await stop.wait()


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Any:
    """Set `stop` on SIGINT/SIGTERM while inside (main thread only), then restore."""
    loop = asyncio.get_running_loop()
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    signals = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.getsignal(sig) for sig in signals}
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)
            signal.signal(sig, previous[sig])


class LabProcess:
    """A lab running as `python -m scanner.lab.cli serve ...` in a subprocess (sync API)."""

    def __init__(self, proc: subprocess.Popen[bytes], directory: Path, info: dict[str, Any]):
        self.proc = proc
        self.directory = directory
        self.info = info
        self.resolver: str = info["resolver"]
        self.smtp_port: int = info["smtp_port"]
        self.mta_sts_port: int = info["mta_sts_port"]  # HTTPS of every mta-sts.<domain>
        self.ca_pem = Path(info["ca_pem"])
        self.control_address: str = info["control"]

    @property
    def pid(self) -> int:
        """The lab process's id."""
        return self.proc.pid

    @classmethod
    def start(cls, profile: str = "mixed", domains: int = 200, seed: int = 1,
              directory: Path | None = None, *, smtp_port: int = 0, dns_port: int = 0,
              latency_ms: tuple[int, int] | None = None, greet_pause_s: float = 0.3,
              strip_clients: Sequence[str] = (), timeout: float = 300.0) -> LabProcess:
        """Start the lab and wait (up to `timeout` s) until its lab.json says it is ready."""
        if directory is None:
            raise ValueError("LabProcess.start needs a directory")
        directory = Path(directory).resolve()
        directory.mkdir(parents=True, exist_ok=True)
        (directory / LAB_JSON).unlink(missing_ok=True)
        args = [sys.executable, "-m", "scanner.lab.cli", "serve", "--profile", profile,
                "--domains", str(domains), "--seed", str(seed), "--dir", str(directory),
                "--smtp-port", str(smtp_port), "--dns-port", str(dns_port),
                "--greet-pause", str(greet_pause_s)]
        if latency_ms is not None:
            args += ["--latency-ms", f"{latency_ms[0]}-{latency_ms[1]}"]
        args += [f"--strip-client={ip}" for ip in strip_clients]
        env = dict(os.environ)
        root = str(Path(scanner.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, (root, env.get("PYTHONPATH"))))
        with open(directory / "lab.log", "ab") as log:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                    env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            info = cls._read_info(directory, proc.pid)
            if info is not None:
                return cls(proc, directory, info)
            if proc.poll() is not None:
                tail = (directory / "lab.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"lab exited with {proc.returncode}:\n{tail}")
            time.sleep(0.05)
        cls._kill(proc)
        raise TimeoutError(f"lab not ready after {timeout:g} s")

    @staticmethod
    def _read_info(directory: Path, pid: int) -> dict[str, Any] | None:
        try:
            info: dict[str, Any] = json.loads((directory / LAB_JSON).read_text())
        except (OSError, ValueError):
            return None
        return info if info.get("pid") == pid else None

    def control(self, cmd: str | dict[str, Any]) -> dict[str, Any]:
        """Send one control request (`"counts"` or `{"cmd": ...}`); the reply as a dict."""
        return control_request(self.control_address, {"cmd": cmd} if isinstance(cmd, str) else cmd)

    def counts(self) -> dict[str, dict[str, Any]]:
        """Per-address SMTP counters: connections, max_concurrent, forbidden_commands, commands."""
        counts: dict[str, dict[str, Any]] = self.control("counts")["counts"]
        return counts

    def truth_domains(self) -> pa.Table:
        """The ground truth per input line."""
        return pq.read_table(self.directory / "truth" / "domains.parquet")

    def truth_hosts(self) -> pa.Table:
        """The ground truth per host."""
        return pq.read_table(self.directory / "truth" / "hosts.parquet")

    def stop(self, timeout: float = 20.0) -> int:
        """SIGTERM, wait, SIGKILL if needed; the exit code."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._kill(self.proc)
        return self.proc.returncode

    @staticmethod
    def _kill(proc: subprocess.Popen[bytes]) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    def __enter__(self) -> LabProcess:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
