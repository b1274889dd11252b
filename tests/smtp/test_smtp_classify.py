"""Status classification in one place: replies, connects, handshakes, outcomes, EHLO parsing."""

from __future__ import annotations

import dataclasses
import errno
import ssl
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtplib.errors import SMTPReadTimeoutError, SMTPResponseException, SMTPServerDisconnected

from scanner.config import Timeouts
from scanner.model.records import ProbeTarget, SmtpProbe
from scanner.model.status import (
    ConnectStatus,
    HandshakeStatus,
    HostOutcome,
    ReplyStatus,
    StartTlsStatus,
)
from scanner.scan.outcome import host_outcome
from scanner.smtp.conversation import SmtpProber
from scanner.smtp.ehlo_parse import ehlo_extensions, has_control_bytes, starttls_masked
from scanner.smtp.status import (
    connect_status_from,
    handshake_status_from,
    reply_error_from,
    reply_status,
    unexpected_reply_status,
)
from scanner.tls.context import make_probe_context


@pytest.mark.parametrize(("code", "status"), [
    (220, ReplyStatus.OK), (250, ReplyStatus.OK), (354, ReplyStatus.OK),
    (421, ReplyStatus.REJECTED_421), (450, ReplyStatus.REJECTED_4XX),
    (554, ReplyStatus.REJECTED_554), (502, ReplyStatus.REJECTED_5XX),
    (199, ReplyStatus.PROTOCOL_ERROR), (600, ReplyStatus.PROTOCOL_ERROR),
])
def test_reply_codes(code: int, status: ReplyStatus) -> None:
    assert reply_status(code) is status


@pytest.mark.parametrize(("code", "status"), [
    (250, ReplyStatus.PROTOCOL_ERROR), (220, ReplyStatus.PROTOCOL_ERROR),
    (354, ReplyStatus.PROTOCOL_ERROR), (421, ReplyStatus.REJECTED_421),
    (451, ReplyStatus.REJECTED_4XX), (554, ReplyStatus.REJECTED_554),
    (502, ReplyStatus.REJECTED_5XX), (-1, ReplyStatus.PROTOCOL_ERROR),
])
def test_reply_where_another_was_expected(code: int, status: ReplyStatus) -> None:
    """A 250 where the greeting belongs is a protocol error, never a success."""
    assert unexpected_reply_status(code) is status


@pytest.mark.parametrize(("exc", "status"), [
    (TimeoutError(), ConnectStatus.TIMEOUT),
    (ConnectionRefusedError(), ConnectStatus.REFUSED),
    (ConnectionResetError(), ConnectStatus.RESET),
    (OSError(errno.ENETUNREACH, "unreachable"), ConnectStatus.UNREACHABLE),
    (OSError(errno.EHOSTUNREACH, "no route"), ConnectStatus.UNREACHABLE),
    (OSError(errno.EACCES, "denied"), ConnectStatus.ERROR),
])
def test_connect_failures(exc: BaseException, status: ConnectStatus) -> None:
    assert connect_status_from(exc) is status


def _ssl_error(reason: str, cls: type[ssl.SSLError] = ssl.SSLError) -> ssl.SSLError:
    err = cls(1, f"[SSL: {reason}] {reason.lower()}")
    err.reason = reason
    return err


@pytest.mark.parametrize(("exc", "status", "alert"), [
    (_ssl_error("SSLV3_ALERT_HANDSHAKE_FAILURE"), HandshakeStatus.ALERT, "handshake_failure"),
    (_ssl_error("TLSV1_ALERT_INTERNAL_ERROR"), HandshakeStatus.ALERT, "internal_error"),
    (_ssl_error("WRONG_VERSION_NUMBER"), HandshakeStatus.PROTOCOL_ERROR, None),
    (_ssl_error("EXCESSIVE_MESSAGE_SIZE"), HandshakeStatus.FAILED, None),
    (_ssl_error("UNEXPECTED_EOF_WHILE_READING", ssl.SSLEOFError), HandshakeStatus.CLOSED, None),
    (ConnectionResetError(), HandshakeStatus.RESET, None),
    (TimeoutError(), HandshakeStatus.TIMEOUT, None),
    (ConnectionAbortedError(), HandshakeStatus.TIMEOUT, None),
    (EOFError(), HandshakeStatus.CLOSED, None),
])
def test_handshake_failures(exc: BaseException, status: HandshakeStatus, alert: str | None
                            ) -> None:
    assert handshake_status_from(exc) == (status, alert)


@pytest.mark.parametrize(("exc", "status"), [
    (SMTPReadTimeoutError("slow"), ReplyStatus.TIMEOUT),
    (SMTPResponseException(-1, "Response too long"), ReplyStatus.REPLY_TOO_LONG),
    (SMTPResponseException(-1, "Malformed SMTP response line: x"), ReplyStatus.PROTOCOL_ERROR),
    (SMTPServerDisconnected("Connection lost"), ReplyStatus.CLOSED),
    (ConnectionResetError(), ReplyStatus.RESET),
    (RuntimeError("bug"), ReplyStatus.INTERNAL_ERROR),
])
def test_reply_failures(exc: BaseException, status: ReplyStatus) -> None:
    assert reply_error_from(exc).status is status


def test_disconnect_caused_by_reset_is_reset() -> None:
    exc = SMTPServerDisconnected("Connection lost")
    exc.__cause__ = ConnectionResetError()
    assert reply_error_from(exc).status is ReplyStatus.RESET


@pytest.mark.parametrize(("lines", "extensions", "masked"), [
    (("PIPELINING", "SIZE 10240000", "STARTTLS", "8BITMIME"),
     ("PIPELINING", "SIZE", "STARTTLS", "8BITMIME"), False),
    (("PIPELINING", "XXXXXXXA", "8BITMIME"), ("PIPELINING", "XXXXXXXA", "8BITMIME"), True),
    (("pipelining", "starttls"), ("PIPELINING", "STARTTLS"), False),
    (("AUTH=LOGIN PLAIN", "AUTH LOGIN"), ("AUTH",), False),
    (("XXXXXXXX",), ("XXXXXXXX",), True),
    (("XFORWARD NAME", "X-EXPS GSSAPI"), ("XFORWARD", "X-EXPS"), False),
    ((), (), False),
])
def test_ehlo_extensions_and_masking(lines: tuple[str, ...], extensions: tuple[str, ...],
                                     masked: bool) -> None:
    parsed = ehlo_extensions(lines)
    assert parsed == extensions
    assert starttls_masked(parsed) is masked


@pytest.mark.parametrize(("text", "bad"), [
    ("mx.example.test ESMTP Postfix", False), ("a\nb", False), ("mx\x00 ESMTP", True),
    ("bell\x07", True), ("del\x7f", True), ("tab\tok", False),
])
def test_control_bytes(text: str, bad: bool) -> None:
    assert has_control_bytes(text) is bad


_BASE = SmtpProbe(ip="127.0.0.1", port=25, started_at=datetime.now(UTC),
                  connect_status=ConnectStatus.OK)


@pytest.mark.parametrize(("changes", "outcome"), [
    (dict(connect_status=ConnectStatus.REFUSED), HostOutcome.REFUSED),
    (dict(connect_status=ConnectStatus.TIMEOUT), HostOutcome.CONNECT_TIMEOUT),
    (dict(connect_status=ConnectStatus.EXCLUDED), HostOutcome.EXCLUDED),
    (dict(greeting_status=ReplyStatus.TIMEOUT), HostOutcome.GREETING_TIMEOUT),
    (dict(greeting_status=ReplyStatus.REJECTED_421), HostOutcome.REJECTED_421),
    (dict(greeting_status=ReplyStatus.OK, ehlo_status=ReplyStatus.REJECTED_5XX),
     HostOutcome.EHLO_REJECTED),
    (dict(greeting_status=ReplyStatus.OK, ehlo_status=ReplyStatus.TIMEOUT), HostOutcome.TIMEOUT),
    (dict(greeting_status=ReplyStatus.OK, ehlo_status=ReplyStatus.OK,
          starttls_status=StartTlsStatus.NOT_OFFERED), HostOutcome.NO_STARTTLS),
    (dict(greeting_status=ReplyStatus.OK, ehlo_status=ReplyStatus.OK,
          starttls_status=StartTlsStatus.MASKED), HostOutcome.MASKED),
    (dict(greeting_status=ReplyStatus.OK, ehlo_status=ReplyStatus.OK,
          starttls_status=StartTlsStatus.TLS_UNAVAILABLE_454), HostOutcome.STARTTLS_454),
    (dict(greeting_status=ReplyStatus.OK, ehlo_status=ReplyStatus.OK,
          starttls_status=StartTlsStatus.OK, handshake_status=HandshakeStatus.ALERT),
     HostOutcome.HANDSHAKE_FAILED),
    (dict(greeting_status=ReplyStatus.OK, ehlo_status=ReplyStatus.OK,
          starttls_status=StartTlsStatus.OK, handshake_status=HandshakeStatus.TIMEOUT),
     HostOutcome.HANDSHAKE_TIMEOUT),
    (dict(greeting_status=ReplyStatus.OK, ehlo_status=ReplyStatus.OK,
          starttls_status=StartTlsStatus.OK, handshake_status=HandshakeStatus.OK,
          ehlo_tls_status=ReplyStatus.TIMEOUT), HostOutcome.TLS_OK),
])
def test_host_outcome(changes: dict[str, Any], outcome: HostOutcome) -> None:
    assert host_outcome(dataclasses.replace(_BASE, **changes)) is outcome


async def test_deadline_ends_a_trickling_greeting(fake_internet: Any, fast_config: Any) -> None:
    """The per-address deadline stops a server that trickles bytes before any step timeout."""
    config = dataclasses.replace(fast_config, timeouts=Timeouts(
        dns_query=0.5, connect=1.0, greeting=30.0, command=30.0, starttls=30.0, handshake=30.0,
        per_address=1.0))
    prober = SmtpProber(config, make_probe_context())
    ip = fake_internet.address_of("trickle")
    probe = await prober.probe_address(ProbeTarget(ip=ip, port=fake_internet.smtp_port,
                                                   mx_hostname="mx.trickle.hosting.test"))
    assert probe.connect_status is ConnectStatus.OK
    assert probe.greeting_status is ReplyStatus.TIMEOUT
    assert probe.error_detail and "deadline" in probe.error_detail
    assert 900 <= probe.total_ms < 3000


@pytest.mark.parametrize(("banner", "software", "version"), [
    ("mx.example.test ESMTP Exim 4.96 Tue, 24 Nov 2026", "exim", "4.96"),
    ("mail.example.test ESMTP Sendmail 8.15.2/8.15.2; Tue", "sendmail", "8.15.2"),
    ("mx.example.test ESMTP Postfix (Debian/GNU)", "postfix", None),
    ("EX01.example.test Microsoft ESMTP MAIL Service ready at Tue, Version: 15.1.2507.39",
     "exchange", "15.1.2507.39"),
    ("mx.example.test ESMTP ready", "unknown", None),
])
def test_mta_software_and_version_from_banner(banner: str, software: str,
                                              version: str | None) -> None:
    from scanner.smtp.mta_software import mta_software, mta_version

    assert mta_software(banner) == software
    assert mta_version(banner) == version
