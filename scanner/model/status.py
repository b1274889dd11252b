"""One status vocabulary per step: short snake_case strings that read well in a notebook.

"No STARTTLS" and "could not connect" never share a value. `internal_error` is kept for the
scanner's own bugs and is counted apart from anything a server did. The lab's ground truth uses
exactly these values, so a scan and the truth compare by equality.
"""

from __future__ import annotations

from enum import StrEnum


class InputStatus(StrEnum):
    """What became of one input line."""

    OK = "ok"
    INVALID = "invalid"
    DUPLICATE = "duplicate"  # the same A-label as an earlier record, in any input file


class DnsStatus(StrEnum):
    """Outcome of one DNS lookup (MX of a domain, or A/AAAA of an MX host)."""

    OK = "ok"
    NXDOMAIN = "nxdomain"
    NODATA = "nodata"  # the name exists but has no record of that type
    SERVFAIL = "servfail"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    ERROR = "error"  # any other resolver failure; error_detail keeps the c-ares message
    NOT_QUERIED = "not_queried"  # invalid or excluded domain: never looked up
    INTERNAL_ERROR = "internal_error"


class MxSource(StrEnum):
    """Where a domain's mail hosts came from."""

    MX = "mx"  # MX records
    IMPLICIT = "implicit"  # RFC 5321 §5.1: no MX, the domain's own A/AAAA
    NULL = "null"  # RFC 7505: "0 ." means the domain accepts no mail
    NONE = "none"  # no MX and no address: nowhere to deliver


class ConnectStatus(StrEnum):
    """TCP connect to the mail server address (or why it was not attempted)."""

    OK = "ok"
    REFUSED = "refused"
    TIMEOUT = "timeout"
    UNREACHABLE = "unreachable"  # no route / network unreachable
    RESET = "reset"
    ERROR = "error"
    EXCLUDED = "excluded"  # on the exclusion list: never contacted
    PRIVATE_ADDRESS = "private_address"  # loopback/private/reserved outside lab mode
    INTERNAL_ERROR = "internal_error"


class ReplyStatus(StrEnum):
    """Outcome of one SMTP command/reply exchange (greeting, EHLO, post-TLS EHLO)."""

    OK = "ok"
    NOT_REACHED = "not_reached"  # an earlier step ended the conversation
    TIMEOUT = "timeout"
    CLOSED = "closed"  # the server closed the connection
    RESET = "reset"
    REJECTED_421 = "rejected_421"
    REJECTED_4XX = "rejected_4xx"
    REJECTED_554 = "rejected_554"
    REJECTED_5XX = "rejected_5xx"
    PROTOCOL_ERROR = "protocol_error"  # not an SMTP reply (garbage, NUL bytes, data too early)
    REPLY_TOO_LONG = "reply_too_long"  # over 8 KiB per line or 32 KiB per reply (aiosmtplib)
    INTERNAL_ERROR = "internal_error"


class StartTlsStatus(StrEnum):
    """The STARTTLS command: offered, sent, answered."""

    OK = "ok"  # 220 to STARTTLS
    NOT_REACHED = "not_reached"
    NOT_OFFERED = "not_offered"  # EHLO completed without STARTTLS
    MASKED = "masked"  # a middlebox rewrote the keyword (e.g. XXXXXXXA)
    TLS_UNAVAILABLE_454 = "tls_unavailable_454"
    REJECTED_4XX = "rejected_4xx"
    REJECTED_5XX = "rejected_5xx"
    TIMEOUT = "timeout"
    CLOSED = "closed"
    RESET = "reset"
    PROTOCOL_ERROR = "protocol_error"
    REPLY_TOO_LONG = "reply_too_long"
    INTERNAL_ERROR = "internal_error"


class HandshakeStatus(StrEnum):
    """The TLS handshake after a 220 to STARTTLS."""

    OK = "ok"
    NOT_REACHED = "not_reached"
    FAILED = "failed"  # local failure: no common version/cipher, bad record...
    ALERT = "alert"  # the server sent a TLS alert
    TIMEOUT = "timeout"
    RESET = "reset"
    CLOSED = "closed"
    PROTOCOL_ERROR = "protocol_error"  # plaintext where a TLS record belongs
    INTERNAL_ERROR = "internal_error"


class ChainStatus(StrEnum):
    """Chain verdict against the trust store at the scan's start time (name not included)."""

    VALID = "valid"
    EXPIRED = "expired"
    NOT_YET_VALID = "not_yet_valid"
    SELF_SIGNED = "self_signed"
    MISSING_INTERMEDIATE = "missing_intermediate"  # leaf alone, issuer not a trust anchor
    UNKNOWN_ISSUER = "unknown_issuer"
    WEAK_KEY = "weak_key"  # e.g. RSA under 2048 bits
    WEAK_SIGNATURE = "weak_signature"  # e.g. SHA-1 or MD5
    UNPARSEABLE = "unparseable"  # a certificate of the chain failed to parse
    INVALID = "invalid"  # any other path-validation failure (detail in verify_error)
    NO_CERTIFICATE = "no_certificate"


class HostOutcome(StrEnum):
    """One summary value per probed address: where the conversation ended, for tables."""

    TLS_OK = "tls_ok"
    NO_STARTTLS = "no_starttls"
    MASKED = "masked"
    STARTTLS_454 = "starttls_454"
    STARTTLS_REJECTED = "starttls_rejected"
    HANDSHAKE_FAILED = "handshake_failed"
    HANDSHAKE_TIMEOUT = "handshake_timeout"
    REFUSED = "refused"
    CONNECT_TIMEOUT = "connect_timeout"
    UNREACHABLE = "unreachable"
    GREETING_TIMEOUT = "greeting_timeout"  # tarpit: connected, never greeted
    REJECTED_421 = "rejected_421"
    REJECTED_4XX = "rejected_4xx"
    REJECTED_554 = "rejected_554"
    REJECTED_5XX = "rejected_5xx"
    EHLO_REJECTED = "ehlo_rejected"
    TIMEOUT = "timeout"  # a step after the greeting ran out of time
    CLOSED_EARLY = "closed_early"
    PROTOCOL_ERROR = "protocol_error"
    REPLY_TOO_LONG = "reply_too_long"
    EXCLUDED = "excluded"
    PRIVATE_ADDRESS = "private_address"
    INTERNAL_ERROR = "internal_error"


class StartTlsClass(StrEnum):
    """Per-domain class over the domain's (MX host, address) pairs that answered SMTP."""

    ALL = "all"
    SOME = "some"
    NONE = "none"
    UNREACHABLE = "unreachable"  # mail hosts resolved, none completed EHLO
    NO_MX = "no_mx"  # no MX and no address for an implicit MX
    NULL_MX = "null_mx"
    DNS_ERROR = "dns_error"  # MX lookup failed, or no MX host resolved to an address
    # every MX address is loopback, private or reserved (never contacted outside the lab's
    # 127.0.0.0/8 in lab mode): mail to the domain cannot be delivered over the internet
    PRIVATE_MX = "private_mx"
    INVALID = "invalid"
    EXCLUDED = "excluded"  # on the exclusion list, or every MX address is (none contacted)
    DUPLICATE = "duplicate"  # a record repeating an earlier one: not a domain of its own


#: strict_class uses the same vocabulary, counting only strict-valid pairs.
StrictClass = StartTlsClass
