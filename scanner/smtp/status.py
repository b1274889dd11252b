"""How an SMTP conversation ended, as statuses: reply codes, connect and handshake failures.

Every exception or reply the prober meets is classified here, in one place, so that "no
STARTTLS", "could not connect" and "our own bug" never share a value.
"""

from __future__ import annotations

import errno
import ssl

from aiosmtplib.errors import (
    SMTPReadTimeoutError,
    SMTPResponseException,
    SMTPServerDisconnected,
)
from aiosmtplib.response import SMTPResponse

from scanner.model.status import ConnectStatus, HandshakeStatus, ReplyStatus, StartTlsStatus
from scanner.smtp.ehlo_parse import has_control_bytes


class ReplyError(Exception):
    """A reply step ended without a usable reply; carries the step status."""

    def __init__(self, status: ReplyStatus, detail: str, code: int | None = None,
                 text: str | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.text = text


def checked_reply(reply: SMTPResponse) -> SMTPResponse:
    """The reply, or ReplyError(PROTOCOL_ERROR) when no SMTP server could have meant it.

    aiosmtplib reads the code with int(), so "-1" or "+12" pass as codes; a code must be three
    digits (RFC 5321 §4.2). Control bytes in the text are refused too (they would end up in
    the dataset's strings).
    """
    if not 0 <= reply.code <= 999:
        raise ReplyError(ReplyStatus.PROTOCOL_ERROR, "reply code is not three digits", None,
                         reply.message)
    if has_control_bytes(reply.message):
        raise ReplyError(ReplyStatus.PROTOCOL_ERROR, "control bytes in reply", reply.code,
                         reply.message)
    return reply


def reply_status(code: int) -> ReplyStatus:
    """Map a negative reply code to a status; 2xx/3xx are OK."""
    if 200 <= code < 400:
        return ReplyStatus.OK
    if code == 421:
        return ReplyStatus.REJECTED_421
    if 400 <= code < 500:
        return ReplyStatus.REJECTED_4XX
    if code == 554:
        return ReplyStatus.REJECTED_554
    if 500 <= code < 600:
        return ReplyStatus.REJECTED_5XX
    return ReplyStatus.PROTOCOL_ERROR


_OWN_RESOURCES = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def unexpected_reply_status(code: int) -> ReplyStatus:
    """The status of a reply other than the one the step expects (220 or 250).

    A negative reply keeps its class (421, 4xx, 554, 5xx); any other code there (a 2xx or 3xx
    out of place, a 1xx or 6xx) is a protocol error.
    """
    status = reply_status(code)
    return ReplyStatus.PROTOCOL_ERROR if status is ReplyStatus.OK else status


def connect_status_from(exc: BaseException) -> ConnectStatus:
    """Classify a failed TCP connect."""
    if isinstance(exc, TimeoutError):
        return ConnectStatus.TIMEOUT
    if isinstance(exc, ConnectionRefusedError):
        return ConnectStatus.REFUSED
    if isinstance(exc, ConnectionResetError):
        return ConnectStatus.RESET
    if isinstance(exc, OSError) and exc.errno in _OWN_RESOURCES:
        # our process or host ran out of something: never a fact about the server
        return ConnectStatus.INTERNAL_ERROR
    if isinstance(exc, OSError) and exc.errno in (errno.ENETUNREACH, errno.EHOSTUNREACH,
                                                   errno.EADDRNOTAVAIL):
        return ConnectStatus.UNREACHABLE
    return ConnectStatus.ERROR


def reply_error_from(exc: BaseException) -> ReplyError:
    """Turn an exception raised while waiting for a reply into a ReplyError."""
    if isinstance(exc, ReplyError):
        return exc
    if isinstance(exc, SMTPReadTimeoutError | TimeoutError):
        return ReplyError(ReplyStatus.TIMEOUT, str(exc) or "timeout")
    if isinstance(exc, SMTPResponseException) and exc.code == -1:
        if "too long" in exc.message:
            return ReplyError(ReplyStatus.REPLY_TOO_LONG, exc.message)
        return ReplyError(ReplyStatus.PROTOCOL_ERROR, exc.message)
    if isinstance(exc, SMTPServerDisconnected):
        if isinstance(exc.__cause__, ConnectionResetError):
            return ReplyError(ReplyStatus.RESET, f"{exc}: {exc.__cause__}")
        return ReplyError(ReplyStatus.CLOSED, str(exc))
    if isinstance(exc, ConnectionResetError):
        return ReplyError(ReplyStatus.RESET, str(exc))
    if isinstance(exc, ConnectionError):
        return ReplyError(ReplyStatus.CLOSED, str(exc))
    return ReplyError(ReplyStatus.INTERNAL_ERROR, f"{type(exc).__name__}: {exc}")


STARTTLS_FROM_REPLY = {
    ReplyStatus.TIMEOUT: StartTlsStatus.TIMEOUT,
    ReplyStatus.CLOSED: StartTlsStatus.CLOSED,
    ReplyStatus.RESET: StartTlsStatus.RESET,
    ReplyStatus.PROTOCOL_ERROR: StartTlsStatus.PROTOCOL_ERROR,
    ReplyStatus.REPLY_TOO_LONG: StartTlsStatus.REPLY_TOO_LONG,
    ReplyStatus.REJECTED_421: StartTlsStatus.REJECTED_4XX,
    ReplyStatus.REJECTED_4XX: StartTlsStatus.REJECTED_4XX,
    ReplyStatus.REJECTED_554: StartTlsStatus.REJECTED_5XX,
    ReplyStatus.REJECTED_5XX: StartTlsStatus.REJECTED_5XX,
    ReplyStatus.INTERNAL_ERROR: StartTlsStatus.INTERNAL_ERROR,
}

# OpenSSL reasons meaning "what came back is not TLS at all" (plaintext after the 220).
_NOT_TLS_REASONS = ("WRONG_VERSION_NUMBER", "UNKNOWN_PROTOCOL", "HTTP_REQUEST",
                    "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "UNEXPECTED_RECORD")


def handshake_status_from(exc: BaseException) -> tuple[HandshakeStatus, str | None]:
    """Classify a failed TLS handshake; the second value is the alert name when one was sent."""
    if isinstance(exc, TimeoutError):
        return HandshakeStatus.TIMEOUT, None
    if isinstance(exc, ssl.SSLError):
        reason = (exc.reason or "").upper()
        if "ALERT" in reason:
            alert = reason.split("ALERT_", 1)[-1].lower()
            return HandshakeStatus.ALERT, alert
        if isinstance(exc, ssl.SSLEOFError) or "EOF" in reason:
            return HandshakeStatus.CLOSED, None
        if any(r in reason for r in _NOT_TLS_REASONS):
            return HandshakeStatus.PROTOCOL_ERROR, None
        return HandshakeStatus.FAILED, None
    if isinstance(exc, ConnectionResetError):
        return HandshakeStatus.RESET, None
    if isinstance(exc, ConnectionAbortedError):
        return HandshakeStatus.TIMEOUT, None
    if isinstance(exc, ConnectionError | EOFError):
        return HandshakeStatus.CLOSED, None
    return HandshakeStatus.INTERNAL_ERROR, None
