"""DANE for SMTP (RFC 7672, RFC 7671): TLSA lookups and matching against the presented chain.

TLSA records are per MX host name, the chain per address, so the verdict is per domain_mx edge.
A probe keeps only `ChainKeys`, a small set of truncated digests of its chain, so the pipeline
can match any MX name's TLSA records against any address later without holding DER.
Usages: DANE-TA(2) and DANE-EE(3) only; PKIX-TA(0)/PKIX-EE(1) are unusable for SMTP (RFC 7672
§3.1.3). DANE-EE ignores names and validity dates; DANE-TA needs the leaf to chain (by
signature) to the matched certificate and to name the MX host.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization

from scanner.model.policy_status import DaneClass, DaneStatus, TlsaStatus
from scanner.model.status import DnsStatus
from scanner.tls.certs import quiet_cryptography

if TYPE_CHECKING:  # the resolver (and dnspython) only when the policy stage runs
    from scanner.dns.policy_resolver import PolicyAnswer, PolicyResolver

_KEY_BYTES = 10  # fingerprints of full digests: ~2^-80 per comparison, ~150 B per TLS host
_USABLE_USAGES = (2, 3)
_SELECTORS = (0, 1)
_MATCHING_TYPES = (0, 1, 2)
_FAILED_EDGE = (DaneStatus.MISMATCH, DaneStatus.NO_TLS, DaneStatus.DNS_ERROR)


@dataclass(frozen=True, slots=True)
class Tlsa:
    """One TLSA record (RFC 6698 §2.1)."""

    usage: int
    selector: int
    mtype: int
    data: bytes

    def text(self) -> str:
        """Presentation form: `3 1 1 <hex>`."""
        return f"{self.usage} {self.selector} {self.mtype} {self.data.hex()}"


@dataclass(frozen=True, slots=True)
class TlsaLookup:
    """The TLSA RRset of `_25._tcp.<mx host>` and its DNSSEC status."""

    status: TlsaStatus
    records: tuple[Tlsa, ...] = ()
    unanswered: bool = False  # dns_error because no answer came at all (timeout)


def tlsa_name(mx_hostname: str, port: int = 25) -> str:
    """`_25._tcp.<mx host>` (RFC 7672 §2.2.3)."""
    return f"_{port}._tcp.{mx_hostname}"


async def lookup_tlsa(mx_hostname: str, resolver: PolicyResolver) -> TlsaLookup:
    """TLSA records of an MX host; `secure` only when the answer carried the AD bit."""
    return (await lookup_tlsa_many((mx_hostname,), resolver))[0]


async def lookup_tlsa_many(mx_hostnames: Sequence[str], resolver: PolicyResolver
                           ) -> list[TlsaLookup]:
    """`lookup_tlsa` of several MX hosts, asked together."""
    answers = await resolver.query_many([(tlsa_name(name), "TLSA") for name in mx_hostnames])
    return [_tlsa_lookup(answer) for answer in answers]


def _tlsa_lookup(answer: PolicyAnswer) -> TlsaLookup:
    if answer.status in (DnsStatus.NXDOMAIN, DnsStatus.NODATA):
        return TlsaLookup(TlsaStatus.NONE)
    if answer.status is not DnsStatus.OK:
        return TlsaLookup(TlsaStatus.DNS_ERROR, unanswered=answer.status is DnsStatus.TIMEOUT)
    records = tuple(Tlsa(r.usage, r.selector, r.mtype, bytes(r.cert))  # type: ignore[attr-defined]
                    for r in answer.records)
    return TlsaLookup(TlsaStatus.SECURE if answer.authenticated else TlsaStatus.INSECURE, records)


def _digest(mtype: int, data: bytes) -> bytes:
    if mtype == 2:
        return hashlib.sha512(data).digest()
    return hashlib.sha256(data).digest()  # 1, and 0 compared through its hash


def _key(usage: int, selector: int, mtype: int, digest: bytes) -> bytes:
    """A short fingerprint of the whole digest: any other digest gives an unrelated key."""
    return bytes((usage, selector, mtype)) + hashlib.sha256(digest).digest()[:_KEY_BYTES]


def _selected(cert: x509.Certificate, der: bytes, selector: int) -> bytes:
    if selector == 0:
        return der
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True, slots=True)
class ChainKeys:
    """What a chain can match: (usage, selector, mtype, truncated digest) keys, concatenated.

    One bytes object rather than a set: a scan keeps one per TLS address, and a handful of
    comparisons per match costs less than a set's memory.
    """

    keys: bytes

    def matches(self, record: Tlsa) -> bool:
        """True when the record's association data matches the chain in the record's role."""
        digest = hashlib.sha256(record.data).digest() if record.mtype == 0 else record.data
        if record.mtype != 0 and len(digest) != (64 if record.mtype == 2 else 32):
            return False  # a truncated or padded digest must not match on its prefix
        wanted = _key(record.usage, record.selector, record.mtype, digest)
        size = len(wanted)
        return any(self.keys[i:i + size] == wanted for i in range(0, len(self.keys), size))


def chain_keys(chain_der: Sequence[bytes]) -> ChainKeys | None:
    """Keys of a presented chain: the leaf for DANE-EE, issuers linked to it for DANE-TA."""
    if not chain_der:
        return None
    with quiet_cryptography():  # DSA keys, serial 0: what servers send is data, not a warning
        return _chain_keys(chain_der)


def _chain_keys(chain_der: Sequence[bytes]) -> ChainKeys:
    certs: list[x509.Certificate] = []
    for der in chain_der:
        try:
            certs.append(x509.load_der_x509_certificate(der))
        except ValueError:
            break  # the rest cannot be linked to the leaf either
    keys: dict[bytes, None] = {}
    for pos, cert in enumerate(certs):
        if pos > 0:
            try:  # DANE-TA: only certificates the leaf actually chains up to
                certs[pos - 1].verify_directly_issued_by(cert)
            except (InvalidSignature, ValueError, TypeError):
                break
        usage = 3 if pos == 0 else 2
        for selector in _SELECTORS:
            try:
                data = _selected(cert, chain_der[pos], selector)
            except (ValueError, TypeError):
                continue
            for mtype in _MATCHING_TYPES:
                keys[_key(usage, selector, mtype, _digest(mtype, data))] = None
    return ChainKeys(b"".join(keys))


def usable(records: Iterable[Tlsa]) -> list[Tlsa]:
    """Records an SMTP client can use (RFC 7672 §3.1.3)."""
    return [r for r in records if r.usage in _USABLE_USAGES and r.selector in _SELECTORS
            and r.mtype in _MATCHING_TYPES]


def dane_status(tlsa: TlsaLookup, keys: ChainKeys | None, tls_ok: bool,
                name_match: bool | None) -> DaneStatus:
    """The DANE verdict of one edge: its MX host's TLSA against the chain its address sent."""
    if tlsa.status in (TlsaStatus.NONE, TlsaStatus.NOT_QUERIED):
        return DaneStatus.NO_TLSA
    if tlsa.status is TlsaStatus.DNS_ERROR:
        return DaneStatus.DNS_ERROR
    if tlsa.status is TlsaStatus.INSECURE:
        return DaneStatus.INSECURE
    records = usable(tlsa.records)
    if not records:
        return DaneStatus.UNUSABLE
    if not tls_ok or keys is None:
        return DaneStatus.NO_TLS
    for r in records:
        if keys.matches(r) and (r.usage == 3 or name_match is True):
            return DaneStatus.VALID
    return DaneStatus.MISMATCH


def dane_class(statuses: Sequence[DaneStatus]) -> DaneClass:
    """The per-domain class over the edges that answered SMTP."""
    if not statuses:
        return DaneClass.NOT_APPLICABLE
    if any(s in _FAILED_EDGE for s in statuses):
        return DaneClass.BROKEN
    n_valid = sum(s is DaneStatus.VALID for s in statuses)
    if n_valid == len(statuses):
        return DaneClass.VALID
    if n_valid:
        return DaneClass.PARTIAL
    if DaneStatus.INSECURE in statuses:
        return DaneClass.INSECURE
    return DaneClass.NONE
