"""The frozen records that flow between stages.

DomainInput -> MailHosts -> ProbeTarget -> SmtpProbe (+ TlsFacts, chain DER)
-> HostRecord / CertificateRecord -> DomainRecord (+ DomainMxRecord edges).
Sequences are tuples, times are aware UTC datetimes, durations integer milliseconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from scanner.model.policy_status import (
    DaneClass,
    DaneStatus,
    RecordStatus,
    StsFetchStatus,
    StsMode,
    TlsaStatus,
)
from scanner.model.status import (
    ChainStatus,
    ConnectStatus,
    DnsStatus,
    HandshakeStatus,
    HostOutcome,
    InputStatus,
    MxSource,
    ReplyStatus,
    StartTlsClass,
    StartTlsStatus,
)


@dataclass(frozen=True, slots=True)
class DomainInput:
    """One input line, normalised. `domain` is the A-label form; None when the line is invalid."""

    line_no: int
    raw: str
    domain: str | None
    domain_unicode: str | None
    status: InputStatus
    reason: str | None = None  # why the line is invalid
    source: str = ""  # input file name
    first_line_no: int | None = None  # a duplicate's first occurrence (its line_no); else None
    first_source: str | None = None  # the input file of that first occurrence; else None


@dataclass(frozen=True, slots=True)
class MxHost:
    """One MX host of a domain and its resolved addresses."""

    name: str  # lower-case, no trailing dot
    preference: int
    addresses: tuple[str, ...]  # IPv4 then IPv6, de-duplicated, in answer order
    address_status: DnsStatus  # OK when at least one address resolved
    cname_target: str | None = None  # set when the MX name was a CNAME (RFC 5321 discourages)
    error_detail: str | None = None


@dataclass(frozen=True, slots=True)
class MailHosts:
    """What DNS said about where a domain's mail goes."""

    domain: str
    status: DnsStatus  # of the MX lookup (or of the implicit-MX address lookup)
    mx_source: MxSource
    hosts: tuple[MxHost, ...]  # sorted by preference, then name
    dns_ms: int
    error_detail: str | None = None


@dataclass(frozen=True, slots=True)
class ProbeTarget:
    """One distinct mail server address to talk to, once per scan."""

    ip: str
    port: int
    mx_hostname: str  # the first MX name that led here (SNI is not sent: MTAs do not need it)


@dataclass(frozen=True, slots=True)
class TlsFacts:
    """What the finished handshake says. kex_bits is None for RSA key exchange."""

    version: str  # "TLSv1.3", "TLSv1.2", "TLSv1.1", "TLSv1", "SSLv3"
    cipher: str  # OpenSSL name
    forward_secrecy: bool
    kex_group: str | None  # "x25519", "secp256r1", "ffdhe2048", "dhe" (custom group), "rsa"
    kex_bits: int | None  # DH prime bits for DHE (logjam when <= 1024), curve size for ECDHE


@dataclass(frozen=True, slots=True)
class SmtpProbe:
    """One SMTP conversation with one address: what was tried, how it ended, how long it took.

    A probe that failed at STARTTLS still holds the banner and the EHLO extensions.
    """

    ip: str
    port: int
    started_at: datetime
    connect_status: ConnectStatus
    greeting_status: ReplyStatus = ReplyStatus.NOT_REACHED
    ehlo_status: ReplyStatus = ReplyStatus.NOT_REACHED
    starttls_status: StartTlsStatus = StartTlsStatus.NOT_REACHED
    handshake_status: HandshakeStatus = HandshakeStatus.NOT_REACHED
    ehlo_tls_status: ReplyStatus = ReplyStatus.NOT_REACHED
    greeting_code: int | None = None
    banner: str | None = None  # the greeting text, all lines joined by "\n"
    ehlo_code: int | None = None
    ehlo_lines: tuple[str, ...] = ()  # EHLO reply lines after the first
    ehlo_extensions: tuple[str, ...] = ()  # upper-case keywords, e.g. ("PIPELINING", "STARTTLS")
    starttls_offered: bool | None = None  # None when EHLO never completed
    starttls_code: int | None = None
    starttls_reply: str | None = None
    ehlo_tls_extensions: tuple[str, ...] = ()
    tls: TlsFacts | None = None
    chain_der: tuple[bytes, ...] = ()  # as sent by the server, leaf first
    tls_alert: str | None = None
    connect_ms: int | None = None
    greeting_ms: int | None = None
    ehlo_ms: int | None = None
    starttls_ms: int | None = None
    handshake_ms: int | None = None
    total_ms: int = 0
    error_detail: str | None = None


@dataclass(frozen=True, slots=True)
class CertificateRecord:
    """One distinct certificate, by SHA-256 of its DER. Fields are None when it did not parse."""

    sha256: str  # hex
    der: bytes
    parse_ok: bool
    subject: str | None = None  # RFC 4514
    issuer: str | None = None
    common_name: str | None = None
    san_dns: tuple[str, ...] = ()
    san_ip: tuple[str, ...] = ()
    serial: str | None = None
    not_before: datetime | None = None
    not_after: datetime | None = None
    key_type: str | None = None  # "rsa", "ec", "ed25519", "ed448", "dsa"
    key_bits: int | None = None
    curve: str | None = None
    signature_algorithm: str | None = None  # e.g. "sha256WithRSAEncryption", "ecdsa-with-SHA256"
    self_signed: bool | None = None
    is_ca: bool | None = None
    parse_error: str | None = None


@dataclass(frozen=True, slots=True)
class ChainVerdict:
    """Chain judgement at the scan's start time; the MX name is judged per domain_mx edge."""

    status: ChainStatus
    valid: bool
    detail: str | None = None  # cryptography's message or our reason


@dataclass(frozen=True, slots=True)
class HostRecord:
    """One probed address, ready for the `hosts` dataset."""

    probe: SmtpProbe
    outcome: HostOutcome
    mx_hostnames: tuple[str, ...]
    leaf_sha256: str | None
    chain_sha256: tuple[str, ...]
    chain: ChainVerdict | None  # None when no certificate was received
    leaf_names: tuple[str, ...] = ()  # DNS SANs (or CN when no SAN) used for name matching
    mta_software: str | None = None  # from the 220 greeting; None when none was received
    mta_version: str | None = None  # None when the greeting does not say
    # --deep (None / empty unless deep_checked): what the host accepts beyond our default offer
    deep_checked: bool = False
    tls_versions_accepted: tuple[str, ...] = ()
    tls_versions_refused: tuple[str, ...] = ()
    dhe_accepted: bool | None = None  # with only DHE cipher suites offered (TLS <= 1.2)
    dhe_bits: int | None = None
    dhe_group: str | None = None  # a widely shared group's name, or "custom"
    dhe_prime_id: str | None = None  # short fingerprint of the DH prime


@dataclass(frozen=True, slots=True)
class DomainMxRecord:
    """One domain x MX host x address edge; name_match is None when no certificate was seen."""

    domain: str
    mx_hostname: str
    preference: int
    ip: str | None  # None when the MX host has no address
    port: int | None
    mx_source: MxSource
    outcome: HostOutcome | None
    smtp_ok: bool  # EHLO completed
    starttls_offered: bool
    tls_ok: bool
    chain_valid: bool | None
    name_match: bool | None
    strict_ok: bool  # tls_ok and chain valid and the leaf names this MX host
    address_status: DnsStatus = DnsStatus.OK  # of the MX host's A/AAAA lookup
    # DANE (RFC 7672): the MX host's TLSA RRset judged against this address's chain
    tlsa_status: TlsaStatus = TlsaStatus.NOT_QUERIED
    tlsa_records: tuple[str, ...] = ()  # presentation form, e.g. "3 1 1 ab12..."
    dane_status: DaneStatus = DaneStatus.NO_TLSA
    # MTA-STS (RFC 8461): None unless the domain has a valid policy in mode enforce/testing
    mta_sts_mx_match: bool | None = None  # the MX name matches one of the policy's mx patterns
    mta_sts_ok: bool | None = None  # matches, and strict TLS (valid chain naming the MX) works


@dataclass(frozen=True, slots=True)
class DomainRecord:
    """One input line, rolled up: one row of the `domains` dataset."""

    line_no: int
    input: str
    source: str
    domain: str | None
    domain_unicode: str | None
    status: str  # "invalid", "duplicate", "excluded", or the MX lookup's DnsStatus
    reason: str | None
    mx_source: MxSource | None
    mx_hostnames: tuple[str, ...]
    n_mx_hosts: int
    n_addresses: int
    n_pairs: int  # (MX host, address) pairs, the unit the classes count
    n_reachable: int  # pairs whose EHLO completed
    n_starttls: int
    n_tls: int
    n_strict: int
    starttls_class: StartTlsClass
    strict_class: StartTlsClass
    dns_ms: int | None
    finished_at: datetime = field(compare=False, default_factory=lambda: datetime.min)
    # policy TXT records (RFC 7208, 7489, 8460, 8461); spf_all/dmarc_policy None unless valid
    spf_status: RecordStatus = RecordStatus.NOT_QUERIED
    spf_all: str | None = None
    dmarc_status: RecordStatus = RecordStatus.NOT_QUERIED
    dmarc_policy: str | None = None
    tlsrpt_status: RecordStatus = RecordStatus.NOT_QUERIED
    mta_sts_txt_status: RecordStatus = RecordStatus.NOT_QUERIED
    mta_sts_id: str | None = None
    mta_sts_fetch_status: StsFetchStatus = StsFetchStatus.NOT_ATTEMPTED
    mta_sts_mode: StsMode | None = None  # None when there is no `_mta-sts` record
    mta_sts_max_age: int | None = None
    mta_sts_mx_patterns: tuple[str, ...] = ()
    mta_sts_mx_all_match: bool | None = None  # every MX host matches a pattern
    mta_sts_delivery_ok: bool | None = None  # some matching MX passes strict TLS
    dane_class: DaneClass = DaneClass.NOT_APPLICABLE
    n_dane_valid: int = 0  # answered pairs whose DANE status is valid
    strict_capable: bool | None = False  # DANE valid, or MTA-STS enforce with a deliverable
    # MX; None when the policy stage was skipped (--no-policies)
    # status `duplicate`: the line_no and input file of the record's first occurrence (None
    # on every other row)
    first_line_no: int | None = None
    first_source: str | None = None
