"""The lab's catalogue of mail-server behaviours and what a correct scan must record for each.

This is the contract between the lab (which implements each behaviour in `servers/smtp.py`) and the
ground truth (which `builder.py` writes from `EXPECTED`). Status values are the scanner's own
vocabulary (`scanner.model.status`), so a scan and the truth compare by equality.

Timing-based behaviours assume the scan's timeouts are larger than the lab's `greet_pause_s` and
smaller than the tarpit/trickle durations (which are forever).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from scanner.model.status import (
    ChainStatus,
    ConnectStatus,
    HandshakeStatus,
    HostOutcome,
    ReplyStatus,
    StartTlsStatus,
)


class Behaviour(StrEnum):
    """One simulated mail server behaviour."""

    # healthy TLS servers, differing by certificate or TLS parameters
    VALID = "valid"  # lab CA chain, leaf + intermediate, names the MX host
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    SELF_SIGNED = "self_signed"
    WRONG_NAME = "wrong_name"  # valid chain for another name
    MISSING_INTERMEDIATE = "missing_intermediate"  # leaf only
    RSA1024 = "rsa1024"  # 1024-bit RSA leaf key
    TLS10_11_ONLY = "tls10_11_only"  # TLS 1.0 and 1.1 only
    TLS13_ONLY = "tls13_only"
    DHE1024 = "dhe1024"  # DHE-only with a 1024-bit group (logjam)
    NO_FS = "no_fs"  # TLS 1.2 with RSA key exchange only: no forward secrecy
    MULTILINE_GREETING = "multiline_greeting"  # 220- lines, then valid TLS
    GREET_PAUSE = "greet_pause"  # greeting after greet_pause_s, then valid TLS
    LONG_CHAIN = "long_chain"  # leaf + intermediate + 98 unrelated certificates
    # STARTTLS missing or refused
    NO_STARTTLS = "no_starttls"
    MASKED = "masked"  # EHLO shows XXXXXXXA where STARTTLS belongs
    STARTTLS_454 = "starttls_454"
    # handshake failures
    HANDSHAKE_FAILS = "handshake_fails"  # 220, then a fatal handshake_failure alert
    TLS_ALERT = "tls_alert"  # 220, then a fatal internal_error alert
    RESET_MID_HANDSHAKE = "reset_mid_handshake"  # reads the ClientHello, then RST
    PLAINTEXT_AFTER_STARTTLS = "plaintext_after_starttls"  # 220, then a plaintext SMTP line
    HUGE_CERT = "huge_cert"  # a ~1 MB certificate: over any sane client's certificate limit
    BAD_CERT = "bad_cert"  # a leaf whose extensions do not parse
    # greeting and command failures
    TARPIT = "tarpit"  # accepts, never greets
    GREETING_421 = "greeting_421"
    GREETING_554 = "greeting_554"
    ACCEPT_CLOSE = "accept_close"  # accepts and closes at once
    REFUSED = "refused"  # nothing listening
    TRICKLE = "trickle"  # one byte per second forever, never a full line
    ENDLESS_REPLY = "endless_reply"  # 220- lines forever, as fast as the client reads
    LONG_LINE = "long_line"  # a 10 MB greeting line
    GARBAGE = "garbage"  # random bytes, invalid UTF-8
    NUL_BYTES = "nul_bytes"  # a greeting with NUL bytes in it
    DATA_BEFORE_GREETING = "data_before_greeting"  # a non-reply line before the 220
    EHLO_REJECTED = "ehlo_rejected"  # 502 to EHLO (HELO would work, but finds no STARTTLS)
    ALL_421 = "all_421"  # 220 greeting, then 421 to every command


@dataclass(frozen=True, slots=True)
class ExpectedHost:
    """What a correct scan records for a host with one behaviour (lab TLS settings included)."""

    outcome: HostOutcome
    connect_status: ConnectStatus = ConnectStatus.OK
    greeting_status: ReplyStatus = ReplyStatus.OK
    ehlo_status: ReplyStatus = ReplyStatus.OK
    starttls_status: StartTlsStatus = StartTlsStatus.OK
    handshake_status: HandshakeStatus = HandshakeStatus.OK
    ehlo_tls_status: ReplyStatus = ReplyStatus.OK
    starttls_offered: bool | None = True
    tls_version: str | None = "TLSv1.3"
    forward_secrecy: bool | None = True
    kex_group: str | None = "x25519"
    kex_bits: int | None = 253  # as OpenSSL reports X25519
    chain_valid: bool | None = True
    verify_error: ChainStatus | None = None  # None when valid or when no certificate
    names_mx: bool = True  # the leaf names the MX host(s) that lead to it


_NOT = ReplyStatus.NOT_REACHED
_NO_TLS = dict(handshake_status=HandshakeStatus.NOT_REACHED, ehlo_tls_status=_NOT,
               tls_version=None, forward_secrecy=None, kex_group=None, kex_bits=None,
               chain_valid=None, verify_error=None, names_mx=False)
_NO_EHLO = dict(_NO_TLS, ehlo_status=_NOT, starttls_status=StartTlsStatus.NOT_REACHED,
                starttls_offered=None)
_NO_GREETING = dict(_NO_EHLO, greeting_status=_NOT)


def _tls(chain: ChainStatus = ChainStatus.VALID, **kw: object) -> ExpectedHost:
    valid = chain is ChainStatus.VALID
    return ExpectedHost(HostOutcome.TLS_OK, chain_valid=valid,
                        verify_error=None if valid else chain, **kw)  # type: ignore[arg-type]


def _failed_handshake(status: HandshakeStatus) -> ExpectedHost:
    return ExpectedHost(HostOutcome.HANDSHAKE_FAILED, **dict(_NO_TLS, handshake_status=status))  # type: ignore[arg-type]


EXPECTED: dict[Behaviour, ExpectedHost] = {
    Behaviour.VALID: _tls(),
    Behaviour.EXPIRED: _tls(ChainStatus.EXPIRED),
    Behaviour.NOT_YET_VALID: _tls(ChainStatus.NOT_YET_VALID),
    Behaviour.SELF_SIGNED: _tls(ChainStatus.SELF_SIGNED),
    Behaviour.WRONG_NAME: _tls(names_mx=False),
    Behaviour.MISSING_INTERMEDIATE: _tls(ChainStatus.MISSING_INTERMEDIATE),
    Behaviour.RSA1024: _tls(ChainStatus.WEAK_KEY),
    Behaviour.TLS10_11_ONLY: _tls(tls_version="TLSv1.1"),
    Behaviour.TLS13_ONLY: _tls(),
    Behaviour.DHE1024: _tls(tls_version="TLSv1.2", kex_group="dhe", kex_bits=1024),
    Behaviour.NO_FS: _tls(tls_version="TLSv1.2", forward_secrecy=False, kex_group="rsa",
                          kex_bits=None),
    Behaviour.MULTILINE_GREETING: _tls(),
    Behaviour.GREET_PAUSE: _tls(),
    Behaviour.LONG_CHAIN: _tls(),
    Behaviour.NO_STARTTLS: ExpectedHost(
        HostOutcome.NO_STARTTLS,
        **dict(_NO_TLS, starttls_status=StartTlsStatus.NOT_OFFERED, starttls_offered=False)),  # type: ignore[arg-type]
    Behaviour.MASKED: ExpectedHost(
        HostOutcome.MASKED,
        **dict(_NO_TLS, starttls_status=StartTlsStatus.MASKED, starttls_offered=False)),  # type: ignore[arg-type]
    Behaviour.STARTTLS_454: ExpectedHost(
        HostOutcome.STARTTLS_454,
        **dict(_NO_TLS, starttls_status=StartTlsStatus.TLS_UNAVAILABLE_454)),  # type: ignore[arg-type]
    Behaviour.HANDSHAKE_FAILS: _failed_handshake(HandshakeStatus.ALERT),
    Behaviour.TLS_ALERT: _failed_handshake(HandshakeStatus.ALERT),
    Behaviour.RESET_MID_HANDSHAKE: _failed_handshake(HandshakeStatus.RESET),
    Behaviour.PLAINTEXT_AFTER_STARTTLS: _failed_handshake(HandshakeStatus.PROTOCOL_ERROR),
    Behaviour.HUGE_CERT: _failed_handshake(HandshakeStatus.FAILED),
    Behaviour.BAD_CERT: _tls(ChainStatus.UNPARSEABLE, names_mx=False),
    Behaviour.TARPIT: ExpectedHost(
        HostOutcome.GREETING_TIMEOUT, **dict(_NO_GREETING, greeting_status=ReplyStatus.TIMEOUT)),  # type: ignore[arg-type]
    Behaviour.GREETING_421: ExpectedHost(
        HostOutcome.REJECTED_421,
        **dict(_NO_GREETING, greeting_status=ReplyStatus.REJECTED_421)),  # type: ignore[arg-type]
    Behaviour.GREETING_554: ExpectedHost(
        HostOutcome.REJECTED_554,
        **dict(_NO_GREETING, greeting_status=ReplyStatus.REJECTED_554)),  # type: ignore[arg-type]
    Behaviour.ACCEPT_CLOSE: ExpectedHost(
        HostOutcome.CLOSED_EARLY, **dict(_NO_GREETING, greeting_status=ReplyStatus.CLOSED)),  # type: ignore[arg-type]
    Behaviour.REFUSED: ExpectedHost(
        HostOutcome.REFUSED, **dict(_NO_GREETING, connect_status=ConnectStatus.REFUSED)),  # type: ignore[arg-type]
    Behaviour.TRICKLE: ExpectedHost(
        HostOutcome.GREETING_TIMEOUT, **dict(_NO_GREETING, greeting_status=ReplyStatus.TIMEOUT)),  # type: ignore[arg-type]
    Behaviour.ENDLESS_REPLY: ExpectedHost(
        HostOutcome.REPLY_TOO_LONG,
        **dict(_NO_GREETING, greeting_status=ReplyStatus.REPLY_TOO_LONG)),  # type: ignore[arg-type]
    Behaviour.LONG_LINE: ExpectedHost(
        HostOutcome.REPLY_TOO_LONG,
        **dict(_NO_GREETING, greeting_status=ReplyStatus.REPLY_TOO_LONG)),  # type: ignore[arg-type]
    Behaviour.GARBAGE: ExpectedHost(
        HostOutcome.PROTOCOL_ERROR,
        **dict(_NO_GREETING, greeting_status=ReplyStatus.PROTOCOL_ERROR)),  # type: ignore[arg-type]
    Behaviour.NUL_BYTES: ExpectedHost(
        HostOutcome.PROTOCOL_ERROR,
        **dict(_NO_GREETING, greeting_status=ReplyStatus.PROTOCOL_ERROR)),  # type: ignore[arg-type]
    Behaviour.DATA_BEFORE_GREETING: ExpectedHost(
        HostOutcome.PROTOCOL_ERROR,
        **dict(_NO_GREETING, greeting_status=ReplyStatus.PROTOCOL_ERROR)),  # type: ignore[arg-type]
    Behaviour.EHLO_REJECTED: ExpectedHost(
        HostOutcome.EHLO_REJECTED, **dict(_NO_EHLO, ehlo_status=ReplyStatus.REJECTED_5XX)),  # type: ignore[arg-type]
    Behaviour.ALL_421: ExpectedHost(
        HostOutcome.EHLO_REJECTED, **dict(_NO_EHLO, ehlo_status=ReplyStatus.REJECTED_421)),  # type: ignore[arg-type]
}

#: Behaviours whose EHLO completes: the host "answered SMTP" for the per-domain classes.
ANSWERS_SMTP = frozenset(b for b, e in EXPECTED.items() if e.ehlo_status is ReplyStatus.OK)
#: Behaviours where TLS is negotiated.
NEGOTIATES_TLS = frozenset(b for b, e in EXPECTED.items() if e.outcome is HostOutcome.TLS_OK)
#: Behaviours that pass strict validation when the leaf names the MX host.
STRICT_VALID = frozenset(b for b, e in EXPECTED.items() if e.chain_valid and e.names_mx)
