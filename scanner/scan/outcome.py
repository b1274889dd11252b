"""host_outcome: one summary value per probed address, from the step statuses."""

from __future__ import annotations

from scanner.model.records import SmtpProbe
from scanner.model.status import (
    ConnectStatus,
    HandshakeStatus,
    HostOutcome,
    ReplyStatus,
    StartTlsStatus,
)

_CONNECT = {
    ConnectStatus.REFUSED: HostOutcome.REFUSED,
    ConnectStatus.TIMEOUT: HostOutcome.CONNECT_TIMEOUT,
    ConnectStatus.UNREACHABLE: HostOutcome.UNREACHABLE,
    ConnectStatus.RESET: HostOutcome.CLOSED_EARLY,
    ConnectStatus.ERROR: HostOutcome.UNREACHABLE,
    ConnectStatus.EXCLUDED: HostOutcome.EXCLUDED,
    ConnectStatus.PRIVATE_ADDRESS: HostOutcome.PRIVATE_ADDRESS,
    ConnectStatus.INTERNAL_ERROR: HostOutcome.INTERNAL_ERROR,
}

_REPLY_FAILURE = {
    ReplyStatus.TIMEOUT: HostOutcome.TIMEOUT,
    ReplyStatus.CLOSED: HostOutcome.CLOSED_EARLY,
    ReplyStatus.RESET: HostOutcome.CLOSED_EARLY,
    ReplyStatus.REJECTED_421: HostOutcome.REJECTED_421,
    ReplyStatus.REJECTED_4XX: HostOutcome.REJECTED_4XX,
    ReplyStatus.REJECTED_554: HostOutcome.REJECTED_554,
    ReplyStatus.REJECTED_5XX: HostOutcome.REJECTED_5XX,
    ReplyStatus.PROTOCOL_ERROR: HostOutcome.PROTOCOL_ERROR,
    ReplyStatus.REPLY_TOO_LONG: HostOutcome.REPLY_TOO_LONG,
    ReplyStatus.INTERNAL_ERROR: HostOutcome.INTERNAL_ERROR,
}

_STARTTLS = {
    StartTlsStatus.NOT_OFFERED: HostOutcome.NO_STARTTLS,
    StartTlsStatus.MASKED: HostOutcome.MASKED,
    StartTlsStatus.TLS_UNAVAILABLE_454: HostOutcome.STARTTLS_454,
    StartTlsStatus.REJECTED_4XX: HostOutcome.STARTTLS_REJECTED,
    StartTlsStatus.REJECTED_5XX: HostOutcome.STARTTLS_REJECTED,
    StartTlsStatus.TIMEOUT: HostOutcome.TIMEOUT,
    StartTlsStatus.CLOSED: HostOutcome.CLOSED_EARLY,
    StartTlsStatus.RESET: HostOutcome.CLOSED_EARLY,
    StartTlsStatus.PROTOCOL_ERROR: HostOutcome.PROTOCOL_ERROR,
    StartTlsStatus.REPLY_TOO_LONG: HostOutcome.REPLY_TOO_LONG,
    StartTlsStatus.INTERNAL_ERROR: HostOutcome.INTERNAL_ERROR,
}


def host_outcome(probe: SmtpProbe) -> HostOutcome:
    """Where the conversation ended, as one value; TLS_OK once the handshake completed."""
    if probe.connect_status is not ConnectStatus.OK:
        return _CONNECT[probe.connect_status]
    if probe.greeting_status is not ReplyStatus.OK:
        if probe.greeting_status is ReplyStatus.TIMEOUT:
            return HostOutcome.GREETING_TIMEOUT  # connected, never greeted: a tarpit
        if probe.greeting_status is ReplyStatus.NOT_REACHED:
            return HostOutcome.INTERNAL_ERROR
        return _REPLY_FAILURE[probe.greeting_status]
    if probe.ehlo_status is not ReplyStatus.OK:
        if probe.ehlo_status in (ReplyStatus.REJECTED_421, ReplyStatus.REJECTED_4XX,
                                 ReplyStatus.REJECTED_554, ReplyStatus.REJECTED_5XX):
            return HostOutcome.EHLO_REJECTED
        if probe.ehlo_status is ReplyStatus.NOT_REACHED:
            return HostOutcome.INTERNAL_ERROR
        return _REPLY_FAILURE[probe.ehlo_status]
    if probe.starttls_status is not StartTlsStatus.OK:
        if probe.starttls_status is StartTlsStatus.NOT_REACHED:
            return HostOutcome.INTERNAL_ERROR
        return _STARTTLS[probe.starttls_status]
    if probe.handshake_status is HandshakeStatus.OK:
        return HostOutcome.TLS_OK  # whatever the second EHLO did, TLS was negotiated
    if probe.handshake_status is HandshakeStatus.TIMEOUT:
        return HostOutcome.HANDSHAKE_TIMEOUT
    if probe.handshake_status is HandshakeStatus.INTERNAL_ERROR:
        return HostOutcome.INTERNAL_ERROR
    return HostOutcome.HANDSHAKE_FAILED
