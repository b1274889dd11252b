"""Shared fixtures: loopback-only networking, the lab (`fake_internet`), fast scan configs."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from scanner.config import Limits, ScanConfig, Timeouts, TrustStore
from scanner.lab.serve import LabProcess

#: fixtures shared by test folders: the small trusted PKI of tests/tls and tests/scan
pytest_plugins = ["helpers.pki"]

LAB_PROFILE, LAB_DOMAINS, LAB_SEED = "mixed", 200, 1


def _allowed(address: Any) -> bool:
    if not isinstance(address, tuple):
        return True  # AF_UNIX paths and the like: not the network
    host = address[0]
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False  # a name would need resolving: nothing here resolves names


class OutsideNetworkError(OSError):
    """A test tried to reach beyond loopback."""


@pytest.fixture(scope="session", autouse=True)
def loopback_only() -> Iterator[None]:
    """Refuse every connect/sendto outside 127.0.0.0/8 and ::1 for the whole run."""
    originals = {name: getattr(socket.socket, name) for name in ("connect", "connect_ex")}
    original_sendto = socket.socket.sendto

    def guard(name: str) -> Callable[..., Any]:
        def checked(self: socket.socket, address: Any) -> Any:
            if not _allowed(address):
                raise OutsideNetworkError(f"test tried to {name} to {address!r}: loopback only")
            return originals[name](self, address)
        return checked

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        if not _allowed(args[-1]):
            raise OutsideNetworkError(f"test tried to send to {args[-1]!r}: loopback only")
        return original_sendto(self, data, *args)

    for name in originals:
        setattr(socket.socket, name, guard(name))
    socket.socket.sendto = sendto  # type: ignore[assignment, method-assign]
    try:
        yield
    finally:
        for name, method in originals.items():
            setattr(socket.socket, name, method)
        socket.socket.sendto = original_sendto  # type: ignore[method-assign]


class FakeInternet:
    """A running lab (`mixed`, 200 domains, seed 1) and its ground truth."""

    def __init__(self, lab: LabProcess) -> None:
        self.lab = lab
        self.resolver = lab.resolver
        self.smtp_port = lab.smtp_port
        self.ca_pem = lab.ca_pem
        self.directory = lab.directory
        self._domains = lab.truth_domains()
        self._hosts = lab.truth_hosts()
        self._by_domain = {r["domain"]: r for r in self._domains.to_pylist()}
        self._by_ip = {r["ip"]: r for r in self._hosts.to_pylist()}
        self._by_behaviour: dict[str, str] = {}
        for row in self._hosts.to_pylist():  # the first host of each behaviour is its own
            self._by_behaviour.setdefault(row["behaviour"], row["ip"])

    def address_of(self, behaviour: str) -> str:
        """The address of a host with this behaviour (a Behaviour or its value)."""
        return self._by_behaviour[str(behaviour)]

    def expected(self, domain: str) -> dict[str, Any]:
        """The truth row of a domain (or of an invalid input line, by its raw text)."""
        row: dict[str, Any] = self._by_domain[domain]
        return row

    def expected_host(self, ip: str) -> dict[str, Any]:
        """The truth row of a host."""
        row: dict[str, Any] = self._by_ip[ip]
        return row

    def truth_domains(self) -> pa.Table:
        """Truth per input line."""
        return self._domains

    def truth_hosts(self) -> pa.Table:
        """Truth per host."""
        return self._hosts

    def counts(self) -> dict[str, dict[str, Any]]:
        """Per-address SMTP counters of the lab."""
        return self.lab.counts()

    def control(self, cmd: str | dict[str, Any]) -> dict[str, Any]:
        """One control request (`reset_counts`, `pause_dns`, ...)."""
        return self.lab.control(cmd)


@pytest.fixture(scope="session")
def fake_internet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeInternet]:
    """The lab, started once per test run in a subprocess, stopped at the end."""
    lab = LabProcess.start(LAB_PROFILE, LAB_DOMAINS, LAB_SEED, tmp_path_factory.mktemp("lab"),
                           latency_ms=(0, 0), greet_pause_s=0.3, timeout=60.0)
    try:
        yield FakeInternet(lab)
    finally:
        lab.stop()


def _fast_config(lab: FakeInternet, output: Path) -> ScanConfig:
    return ScanConfig(
        output=output, inputs=(lab.directory / "domains.txt",), resolvers=(lab.resolver,),
        port=lab.smtp_port,
        timeouts=Timeouts(dns_query=0.5, dns_tries=2, connect=1.0, greeting=1.5, command=1.5,
                          starttls=1.5, handshake=1.5, per_address=4.0),
        limits=Limits(max_in_flight=64, batch_rows=50),
        trust=TrustStore(extra_anchors=(lab.ca_pem,)), lab_mode=True,
        mta_sts_port=lab.lab.info.get("mta_sts_port", 443))


@pytest.fixture(scope="session")
def fast_config_factory(fake_internet: FakeInternet) -> Callable[[Path], ScanConfig]:
    """`factory(output_dir)`: a ScanConfig for the lab with sub-second-scale timeouts."""
    return lambda output: _fast_config(fake_internet, output)


@pytest.fixture
def fast_config(fake_internet: FakeInternet, tmp_path: Path) -> ScanConfig:
    """A ScanConfig for the lab (domains.txt, resolver, port, CA), output under tmp_path/out."""
    return _fast_config(fake_internet, tmp_path / "out")
