"""`lab serve`: start-up, lab.json, DNS and SMTP answers, control channel, clean stop."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from dnslib import RCODE, DNSRecord

from scanner.lab.cli import _latency
from scanner.lab.serve import LabProcess, run_lab
from scanner.lab.servers import workers
from scanner.lab.servers.control import control_request


def _mx(resolver: str, name: str, timeout: float = 1.0) -> DNSRecord:
    host, port = resolver.rsplit(":", 1)
    return DNSRecord.parse(DNSRecord.question(name, "MX").send(host, int(port), timeout=timeout))


def _greeting(ip: str, port: int) -> bytes:
    with socket.create_connection((ip, port), timeout=3) as sock:
        data = sock.recv(1024)
        sock.sendall(b"QUIT\r\n")
        return data


def test_lab_process_serves_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    started = time.monotonic()
    lab = LabProcess.start("mixed", 200, 1, tmp_path, latency_ms=(0, 0))
    try:
        assert time.monotonic() - started < 10
        info = json.loads((tmp_path / "lab.json").read_text())
        assert info["pid"] == lab.pid and info["profile"] == "mixed" and info["seed"] == 1
        assert info["resolver"] == lab.resolver and info["smtp_port"] == lab.smtp_port
        assert Path(info["ca_pem"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        # the truth also has a row for each private address in the DNS: nothing serves those
        served = [r for r in lab.truth_hosts().to_pylist() if r["behaviour"] is not None]
        assert info["hosts"] == len(served)
        for name in ("domains.txt", "truth/domains.parquet", "truth/hosts.parquet"):
            assert (tmp_path / name).is_file()
        assert RCODE[_mx(lab.resolver, "only-valid.test").header.rcode] == "NOERROR"
        valid = next(r["ip"] for r in lab.truth_hosts().to_pylist() if r["behaviour"] == "valid")
        assert _greeting(valid, lab.smtp_port).startswith(b"220 ")
    finally:
        assert lab.stop() == 0
    assert not (tmp_path / "lab.json").exists()
    with pytest.raises(OSError):
        _greeting(valid, lab.smtp_port)


def _lines_until(proc: subprocess.Popen[bytes], last: str, timeout: float) -> list[str]:
    """The process's stdout lines up to one starting with `last` (or fail on time)."""
    assert proc.stdout is not None
    data = b""
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while not any(line.startswith(last.encode()) for line in data.split(b"\n")[:-1]):
            assert sel.select(max(0.0, deadline - time.monotonic())), f"no {last!r}: {data!r}"
            chunk = os.read(proc.stdout.fileno(), 65536)
            assert chunk, f"stdout closed before {last!r}: {data!r}"
            data += chunk
    return data.decode().splitlines()


def test_lab_serve_says_what_it_serves_and_when_it_stops(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanner", "lab", "serve", "--profile", "mixed", "--domains", "60",
         "--seed", "3", "--dir", str(tmp_path), "--latency-ms", "0",
         "--strip-client", "127.0.0.9"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        ready = _lines_until(proc, "stop it:", timeout=60)
        info = json.loads((tmp_path / "lab.json").read_text())
        assert info["pid"] == proc.pid
        shown = dict(re.split(r"\s{2,}", line.strip(), maxsplit=1) for line in ready[1:-2])
        assert ready[0] == "lab ready: profile mixed, 60 domains, seed 3"
        assert shown["domains"].startswith(f"{tmp_path / 'domains.txt'} ")
        truth = pq.read_table(tmp_path / "truth" / "hosts.parquet").to_pylist()
        # the served hosts: the truth also lists private MX addresses, which nothing serves
        ips = sorted(ipaddress.ip_address(h["ip"]) for h in truth if h["behaviour"] is not None)
        assert shown["addresses"].startswith(f"{info['hosts']} mail hosts, {ips[0]} to {ips[-1]} (")
        assert shown["resolver"] == info["resolver"]
        assert shown["SMTP port"] == str(info["smtp_port"])
        assert shown["MTA-STS"] == f"HTTPS port {info['mta_sts_port']}"
        assert shown["CA file"] == info["ca_pem"] and Path(info["ca_pem"]).is_file()
        assert shown["lab.json"] == str(tmp_path / "lab.json")
        assert "127.0.0.9" in shown["stripping"]
        assert f"--lab {tmp_path}" in ready[-2]
        os.kill(proc.pid, signal.SIGTERM)
        rest, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    assert rest.decode().strip() == \
        f"lab stopped: every server closed, {tmp_path / 'lab.json'} removed"
    assert not (tmp_path / "lab.json").exists()


def test_lab_process_reports_a_failed_start(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        with pytest.raises(RuntimeError, match="lab exited"):
            LabProcess.start("mixed", 50, 1, tmp_path, dns_port=taken.getsockname()[1])


@pytest.fixture
def clean_counts(fake_internet: Any) -> Any:
    """Tests that talk to the shared lab's hosts reset its counters afterwards: scan tests
    check that each address saw one connection."""
    yield fake_internet
    fake_internet.control("reset_counts")


def test_fake_internet_knows_behaviours_and_truth(fake_internet: Any) -> None:
    ip = fake_internet.address_of("valid")
    assert fake_internet.expected_host(ip)["behaviour"] == "valid"
    assert fake_internet.expected("only-tarpit.test")["starttls_class"] == "unreachable"
    assert fake_internet.expected("bad..name")["starttls_class"] == "invalid"
    assert ip in fake_internet.counts()
    assert fake_internet.address_of("refused") not in fake_internet.counts()


def test_control_counts_connections_and_resets(clean_counts: Any) -> None:
    fake_internet = clean_counts
    ip = fake_internet.address_of("no_starttls")
    fake_internet.control("reset_counts")
    _greeting(ip, fake_internet.smtp_port)
    deadline = time.monotonic() + 3
    while fake_internet.counts()[ip]["commands"].get("QUIT") != 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    counts = fake_internet.counts()[ip]
    assert counts["connections"] == 1 and counts["forbidden_commands"] == 0
    fake_internet.control("reset_counts")
    assert fake_internet.counts()[ip]["connections"] == 0


def test_control_pauses_and_resumes_dns(fake_internet: Any) -> None:
    fake_internet.control("pause_dns")
    try:
        with pytest.raises((TimeoutError, socket.timeout)):
            _mx(fake_internet.resolver, "only-valid.test", timeout=0.3)
        assert fake_internet.control("status")["dns_paused"] is True
    finally:
        fake_internet.control("resume_dns")
    assert _mx(fake_internet.resolver, "only-valid.test").rr


def test_control_pauses_smtp(clean_counts: Any) -> None:
    fake_internet = clean_counts
    ip = fake_internet.address_of("valid")
    fake_internet.control("pause_smtp")
    try:
        with socket.create_connection((ip, fake_internet.smtp_port), timeout=3) as sock:
            sock.settimeout(0.3)
            with pytest.raises((TimeoutError, socket.timeout)):
                sock.recv(1024)
    finally:
        fake_internet.control("resume_smtp")
    assert _greeting(ip, fake_internet.smtp_port).startswith(b"220")


def test_control_rejects_unknown_commands(fake_internet: Any) -> None:
    with pytest.raises(RuntimeError, match="unknown command"):
        fake_internet.control("reboot")


async def test_run_lab_in_worker_processes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    monkeypatch.setattr(workers, "MAX_HOSTS_PER_PROCESS", 10)
    monkeypatch.setattr(workers, "HOSTS_PER_WORKER", 20)  # 42 listening hosts: 3 workers
    ready = asyncio.Event()
    task = asyncio.create_task(run_lab("mixed", 60, 1, tmp_path, latency_ms=(0, 0),
                                       ready=ready))
    await asyncio.wait_for(ready.wait(), 60)
    info = json.loads((tmp_path / "lab.json").read_text())
    reply = await asyncio.to_thread(control_request, info["control"], {"cmd": "counts"})
    assert len(reply["counts"]) == info["hosts"] - 1  # every listening host, from 3 workers
    hosts = sorted(reply["counts"])
    for ip in hosts[:3]:
        assert (await asyncio.to_thread(_greeting, ip, info["smtp_port"])).startswith(b"220")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not (tmp_path / "lab.json").exists()
    for ip in hosts[:3]:
        with pytest.raises(OSError):
            await asyncio.to_thread(_greeting, ip, info["smtp_port"])


def test_worker_exits_when_its_parent_closes_stdin(tmp_path: Path) -> None:
    import pickle
    import subprocess
    import sys
    from datetime import UTC, datetime

    from scanner.lab.population.pki import LabPki
    from scanner.lab.population.profiles import generate

    (tmp_path / "workers").mkdir()
    workers._save_pki(LabPki.create(tmp_path, datetime.now(UTC)), tmp_path / "workers" / "pki.json")
    hosts = [h for h in generate("mixed", 50, 1).hosts if h.behaviour.value == "valid"][:2]
    (tmp_path / "hosts.pickle").write_bytes(pickle.dumps(hosts))
    port = workers.free_port(hosts[0].ip)
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanner.lab.cli", "worker", "--hosts-file",
         str(tmp_path / "hosts.pickle"), "--dir", str(tmp_path), "--smtp-port", str(port)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        control = json.loads(proc.stdout.readline())["control"]
        assert set(control_request(control, {"cmd": "counts"})["counts"]) == {h.ip for h in hosts}
        assert _greeting(hosts[1].ip, port).startswith(b"220 ")
        proc.stdin.close()
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                pipe.close()


@pytest.mark.parametrize(("text", "expected"), [("20-300", (20, 300)), ("0", (0, 0))])
def test_latency_argument(text: str, expected: tuple[int, int]) -> None:
    assert _latency(text) == expected


@pytest.mark.parametrize("text", ["300-20", "x", "-5"])
def test_bad_latency_argument(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        _latency(text)


@pytest.mark.parametrize(("address", "allowed"), [
    (("127.1.2.3", 25), True), (("::1", 25, 0, 0), True), (("localhost", 53), True),
    (("192.0.2.1", 25), False), (("2001:db8::1", 25, 0, 0), False), (("mx.example.com", 25), False),
])
def test_tests_may_only_reach_loopback(address: tuple[Any, ...], allowed: bool) -> None:
    from conftest import OutsideNetworkError, _allowed

    assert _allowed(address) is allowed
    assert socket.socket.connect.__name__ == "checked"  # the session guard is installed
    if not allowed:  # the guard raises before any packet could leave
        with socket.socket(socket.AF_INET6 if ":" in address[0] else socket.AF_INET) as sock:
            with pytest.raises(OutsideNetworkError):
                sock.connect(address)
