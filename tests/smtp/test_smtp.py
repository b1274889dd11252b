"""probe_address against every lab behaviour: the truth's statuses, and what was learned is kept."""

from __future__ import annotations

import asyncio
import errno
import os
import time
from pathlib import Path
from typing import Any

import pytest

from scanner.config import ScanConfig
from scanner.lab.population.behaviours import EXPECTED, Behaviour, ExpectedHost
from scanner.model.records import ProbeTarget, SmtpProbe
from scanner.model.status import (
    ConnectStatus,
    HandshakeStatus,
    HostOutcome,
    ReplyStatus,
    StartTlsStatus,
)
from scanner.scan import event_loop
from scanner.scan.outcome import host_outcome
from scanner.smtp.conversation import SmtpProber
from scanner.smtp.status import connect_status_from
from scanner.tls.context import make_probe_context

# servers that never finish a greeting: only the greeting timeout ends them
_SLOW = {Behaviour.TARPIT, Behaviour.TRICKLE}


@pytest.fixture(scope="module")
def probes(fake_internet: Any, fast_config_factory: Any, tmp_path_factory: pytest.TempPathFactory
           ) -> dict[Behaviour, tuple[SmtpProbe, float]]:
    """Every behaviour probed once, all at the same time; the probe and its wall time."""
    config: ScanConfig = fast_config_factory(tmp_path_factory.mktemp("smtp") / "out")
    prober = SmtpProber(config, make_probe_context())

    async def one(b: Behaviour) -> tuple[SmtpProbe, float]:
        t0 = time.monotonic()
        probe = await prober.probe_address(ProbeTarget(
            fake_internet.address_of(b), config.port, f"mx.{b.value.replace('_', '-')}.test"))
        return probe, time.monotonic() - t0

    async def every() -> list[tuple[SmtpProbe, float]]:
        return await asyncio.gather(*(one(b) for b in Behaviour))

    return dict(zip(Behaviour, asyncio.run(every()), strict=True))


@pytest.mark.parametrize("behaviour", list(Behaviour), ids=str)
def test_each_behaviour_gets_the_expected_statuses(
        probes: dict[Behaviour, tuple[SmtpProbe, float]], behaviour: Behaviour,
        fast_config_factory: Any, tmp_path: Path) -> None:
    probe, seconds = probes[behaviour]
    want: ExpectedHost = EXPECTED[behaviour]
    got = {"outcome": host_outcome(probe), "connect_status": probe.connect_status,
           "greeting_status": probe.greeting_status, "ehlo_status": probe.ehlo_status,
           "starttls_status": probe.starttls_status,
           "handshake_status": probe.handshake_status,
           "ehlo_tls_status": probe.ehlo_tls_status, "starttls_offered": probe.starttls_offered,
           "tls_alert_set": probe.tls_alert is not None}
    expected = {"outcome": want.outcome, "connect_status": want.connect_status,
                "greeting_status": want.greeting_status, "ehlo_status": want.ehlo_status,
                "starttls_status": want.starttls_status,
                "handshake_status": want.handshake_status,
                "ehlo_tls_status": want.ehlo_tls_status,
                "starttls_offered": want.starttls_offered,
                "tls_alert_set": want.handshake_status is HandshakeStatus.ALERT}
    assert got == expected, probe.error_detail
    if want.tls_version is not None:
        assert probe.tls is not None and probe.tls.version == want.tls_version
    # within its configured deadline, whatever the server does
    assert seconds < fast_config_factory(tmp_path).timeouts.per_address + 1.0
    if want.outcome not in (HostOutcome.TLS_OK, HostOutcome.NO_STARTTLS, HostOutcome.MASKED,
                            HostOutcome.STARTTLS_454, HostOutcome.EHLO_REJECTED):
        assert probe.error_detail, "a failure says what happened"


def test_starttls_454_keeps_banner_and_ehlo_extensions(
        probes: dict[Behaviour, tuple[SmtpProbe, float]]) -> None:
    probe, _ = probes[Behaviour.STARTTLS_454]
    assert probe.starttls_status is StartTlsStatus.TLS_UNAVAILABLE_454
    assert probe.banner and probe.greeting_code == 220
    assert "STARTTLS" in probe.ehlo_extensions and probe.starttls_code == 454
    assert probe.starttls_reply


@pytest.mark.parametrize("behaviour", [Behaviour.HANDSHAKE_FAILS, Behaviour.TLS_ALERT,
                                       Behaviour.RESET_MID_HANDSHAKE,
                                       Behaviour.PLAINTEXT_AFTER_STARTTLS, Behaviour.HUGE_CERT],
                         ids=str)
def test_handshake_failures_keep_the_ehlo_data(
        probes: dict[Behaviour, tuple[SmtpProbe, float]], behaviour: Behaviour) -> None:
    probe, _ = probes[behaviour]
    assert probe.handshake_status is not HandshakeStatus.OK
    assert probe.banner and probe.ehlo_status is ReplyStatus.OK
    assert "STARTTLS" in probe.ehlo_extensions and probe.starttls_code == 220
    assert probe.tls is None and probe.handshake_ms is not None


def test_long_chain_keeps_all_hundred_certificates(
        probes: dict[Behaviour, tuple[SmtpProbe, float]]) -> None:
    probe, _ = probes[Behaviour.LONG_CHAIN]
    assert len(probe.chain_der) == 100


@pytest.mark.parametrize("behaviour", [Behaviour.GARBAGE, Behaviour.NUL_BYTES,
                                       Behaviour.LONG_LINE, Behaviour.ENDLESS_REPLY],
                         ids=str)
def test_hostile_replies_are_bounded_and_never_kept_raw(
        probes: dict[Behaviour, tuple[SmtpProbe, float]], behaviour: Behaviour) -> None:
    probe, _ = probes[behaviour]
    # what is kept of a hostile reply is small: no 10 MB banner, no endless reply in a row
    for text in (probe.banner, probe.error_detail):
        assert text is None or len(text) <= 64 * 1024


def test_all_421_keeps_the_greeting(probes: dict[Behaviour, tuple[SmtpProbe, float]]) -> None:
    probe, _ = probes[Behaviour.ALL_421]
    assert probe.greeting_status is ReplyStatus.OK and probe.banner
    assert probe.ehlo_code == 421


def test_slow_servers_end_by_their_timeouts(
        probes: dict[Behaviour, tuple[SmtpProbe, float]], fast_config_factory: Any,
        tmp_path: Path) -> None:
    greeting = fast_config_factory(tmp_path).timeouts.greeting
    for behaviour in _SLOW:
        probe, seconds = probes[behaviour]
        assert probe.greeting_status is ReplyStatus.TIMEOUT
        assert greeting - 0.1 <= seconds < greeting + 1.0, (behaviour, seconds)


@pytest.mark.parametrize("code", [errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM])
def test_running_out_of_our_own_resources_is_never_blamed_on_the_server(code: int) -> None:
    exc = OSError(code, os.strerror(code))
    assert connect_status_from(exc) is ConnectStatus.INTERNAL_ERROR


@pytest.mark.parametrize("loop", ["asyncio", "uvloop"])
def test_no_socket_outlives_its_conversation(fake_internet: Any, fast_config_factory: Any,
                                             tmp_path: Path, loop: str) -> None:
    # A tarpit never closes its side: only our abort frees the descriptor, on either loop
    # (uvloop's transports are not asyncio.Transport subclasses).
    config: ScanConfig = fast_config_factory(tmp_path / "out")
    prober = SmtpProber(config, make_probe_context())

    def open_sockets() -> int:
        count = 0
        for fd in os.listdir("/proc/self/fd"):
            try:
                count += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
            except FileNotFoundError:  # the directory listing's own descriptor
                pass
        return count

    async def every() -> tuple[int, int]:
        before = open_sockets()
        await asyncio.gather(*(prober.probe_address(ProbeTarget(
            fake_internet.address_of(b), config.port, "mx.x.test")) for b in Behaviour))
        await asyncio.sleep(0.05)  # closing completes on the loop's next turns
        return before, open_sockets()

    before, after = event_loop.run(every(), loop)
    assert after == before
