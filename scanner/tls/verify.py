"""Chain verdicts against a trust store at the scan's start time, and MX-name matching.

The chain is judged without a name: an address serves many MX names, and each domain_mx edge
checks its own name with `name_matches`. cryptography's WebPKI verifier builds the path; when it
refuses, we classify why ourselves, because its messages do not tell the reasons apart.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import certifi
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, SignatureAlgorithmOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from scanner.config import ConfigError, TrustStore
from scanner.model.records import ChainVerdict
from scanner.model.status import ChainStatus
from scanner.tls.certs import (
    DSA_PUBLIC_KEY,
    is_self_signed,
    load_certificate,
    quiet_cryptography,
    signature_verifies,
)
from scanner.tls.lru import LruMemo

log = logging.getLogger(__name__)

MIN_RSA_BITS = 2048  # also DSA; CA/Browser Forum baseline
MIN_EC_BITS = 224
_MAX_PATH = 16  # issuer links followed among the sent certificates when classifying
_WEAK_SIGNATURES = frozenset({
    SignatureAlgorithmOID.RSA_WITH_MD5, SignatureAlgorithmOID.RSA_WITH_SHA1,
    SignatureAlgorithmOID._RSA_WITH_SHA1, SignatureAlgorithmOID.ECDSA_WITH_SHA1,
    SignatureAlgorithmOID.DSA_WITH_SHA1,
    x509.ObjectIdentifier("1.2.840.113549.1.1.2"),  # md2WithRSAEncryption
    x509.ObjectIdentifier("1.2.840.113549.1.1.3"),  # md4WithRSAEncryption
})
_SERVER_EKUS = (ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE)


def _server_eku(policy: Policy, cert: x509.Certificate,
                eku: x509.ExtendedKeyUsage | None) -> None:
    """EKU, when present, must allow TLS servers (the client verifier would want clientAuth)."""
    if eku is not None and not any(oid in eku for oid in _SERVER_EKUS):
        raise ValueError("extended key usage does not allow TLS server authentication")


def _build_verifier(anchors: list[x509.Certificate], at: datetime) -> ClientVerifier:
    """A WebPKI verifier that checks no name: cryptography's client verifier, told to want
    serverAuth and to accept a leaf without subjectAltName (the name is judged elsewhere)."""
    ee = (ExtensionPolicy.webpki_defaults_ee()
          .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_eku)
          .may_be_present(x509.SubjectAlternativeName, Criticality.AGNOSTIC, None))
    ca = (ExtensionPolicy.webpki_defaults_ca()
          .may_be_present(x509.ExtendedKeyUsage, Criticality.AGNOSTIC, _server_eku))
    return (PolicyBuilder().store(Store(anchors)).time(at)
            .extension_policies(ca_policy=ca, ee_policy=ee).build_client_verifier())


def load_anchors(paths: Sequence[Path], use_mozilla: bool) -> list[x509.Certificate]:
    """Mozilla's roots (certifi) and the certificates in each PEM or DER file; ConfigError
    when a file is missing or holds no certificate."""
    sources = [Path(certifi.where())] if use_mozilla else []
    anchors: list[x509.Certificate] = []
    for path in [*sources, *paths]:
        try:
            data = path.read_bytes()
            with quiet_cryptography():  # some Mozilla roots have serial 0
                if b"-----BEGIN" in data:
                    anchors.extend(x509.load_pem_x509_certificates(data))
                else:
                    anchors.append(x509.load_der_x509_certificate(data))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"trust anchors {path}: {exc}") from exc
    return anchors


def _weak_key(cert: x509.Certificate) -> str | None:
    """Why the certificate's key is too weak, or None."""
    try:
        key = cert.public_key()
    except (ValueError, TypeError, NotImplementedError):
        return None  # an unsupported key is not judged weak here
    if (isinstance(key, rsa.RSAPublicKey) or isinstance(key, DSA_PUBLIC_KEY)) \
            and key.key_size < MIN_RSA_BITS:
        kind = "RSA" if isinstance(key, rsa.RSAPublicKey) else "DSA"
        return f"{kind}-{key.key_size} key in {cert.subject.rfc4514_string()}"
    if isinstance(key, ec.EllipticCurvePublicKey) and key.curve.key_size < MIN_EC_BITS:
        return f"EC {key.curve.name} key in {cert.subject.rfc4514_string()}"
    return None


#: chains whose verdicts are kept (LRU, ~0.5 KB each): a busy provider's chain stays, a chain
#: that comes back after 4,096 others is judged again rather than kept for the whole scan
VERDICT_CACHE_SIZE = 4096


class ChainVerifier:
    """Judges chains against one trust store at one time; built once per scan.

    Verdicts are cached by the chain's certificate hashes: thousands of hosts share a chain.
    """

    def __init__(self, trust_anchor_pems: Sequence[Path], use_mozilla: bool, at: datetime,
                 *, cache_size: int = VERDICT_CACHE_SIZE) -> None:
        if at.tzinfo is None:
            raise ConfigError("chain verification time must be timezone-aware")
        self._at = at
        anchors = load_anchors(trust_anchor_pems, use_mozilla)
        self._anchor_hashes = {hashlib.sha256(a.tbs_certificate_bytes).digest() for a in anchors}
        self._anchors_by_subject: dict[x509.Name, list[x509.Certificate]] = {}
        for anchor in anchors:
            self._anchors_by_subject.setdefault(anchor.subject, []).append(anchor)
        self._verifier = _build_verifier(anchors, at) if anchors else None
        self._cache: LruMemo[tuple[str, ...], ChainVerdict] = LruMemo(cache_size)
        self.anchor_count = len(anchors)

    @classmethod
    def from_trust_store(cls, trust: TrustStore, at: datetime) -> ChainVerifier:
        """A verifier for the scan's TrustStore configuration."""
        return cls(trust.extra_anchors, trust.use_mozilla, at)

    def verify(self, chain_der: Sequence[bytes],
               chain_sha256: tuple[str, ...] | None = None) -> ChainVerdict:
        """The verdict on a chain as the server sent it (leaf first); never raises.

        chain_sha256, the certificates' SHA-256 hex digests when the caller has them, saves
        hashing them again and lets the cache share the caller's strings.
        """
        if not chain_der:
            return ChainVerdict(ChainStatus.NO_CERTIFICATE, False, "no certificate was sent")
        key = chain_sha256 or tuple(hashlib.sha256(der).hexdigest() for der in chain_der)
        return self._cache.get(key, lambda: self._judge_safely(chain_der))

    def _judge_safely(self, chain_der: Sequence[bytes]) -> ChainVerdict:
        try:
            # whatever the server sent (DSA keys, serial 0) is data, not a warning of ours
            with quiet_cryptography():
                return self._judge(chain_der)
        except Exception as exc:  # our bug, or a library surprise: keep scanning, keep the reason
            log.exception("chain verification failed")
            return ChainVerdict(ChainStatus.INVALID, False, f"internal: {exc!r}")

    def _judge(self, chain_der: Sequence[bytes]) -> ChainVerdict:
        certs: list[x509.Certificate] = []
        for i, der in enumerate(chain_der):
            try:
                certs.append(load_certificate(der))
            except Exception as exc:
                return ChainVerdict(ChainStatus.UNPARSEABLE, False, f"certificate {i}: {exc}")
        error = "no trust anchors configured"
        if self._verifier is not None:
            try:
                path = self._verifier.verify(certs[0], certs[1:]).chain
            except VerificationError as exc:
                error = str(exc)
            else:
                # cryptography only checks the size of keys that sign: a 1024-bit leaf passes.
                for cert in path:
                    if weak := _weak_key(cert):
                        return ChainVerdict(ChainStatus.WEAK_KEY, False, weak)
                return ChainVerdict(ChainStatus.VALID, True)
        return self._classify_failure(certs, error)

    def _classify_failure(self, certs: list[x509.Certificate], error: str) -> ChainVerdict:
        """Name the reason a chain was refused, most telling reason first."""
        leaf = certs[0]
        if is_self_signed(leaf) and not self._is_anchor(leaf):
            return ChainVerdict(ChainStatus.SELF_SIGNED, False, error)
        path = self._sent_path(certs)
        anchor = self._issuing_anchor(path[-1])
        judged = path if anchor is None or anchor is path[-1] else [*path, anchor]
        for cert in judged:
            if cert.not_valid_after_utc < self._at:
                return ChainVerdict(ChainStatus.EXPIRED, False,
                                    f"{cert.subject.rfc4514_string()} expired "
                                    f"{cert.not_valid_after_utc.isoformat()}")
        for cert in judged:
            if cert.not_valid_before_utc > self._at:
                return ChainVerdict(ChainStatus.NOT_YET_VALID, False,
                                    f"{cert.subject.rfc4514_string()} not valid before "
                                    f"{cert.not_valid_before_utc.isoformat()}")
        for cert in path:
            if cert.signature_algorithm_oid in _WEAK_SIGNATURES and not self._is_anchor(cert):
                return ChainVerdict(ChainStatus.WEAK_SIGNATURE, False,
                                    f"{cert.subject.rfc4514_string()} signed with "
                                    f"{cert.signature_algorithm_oid.dotted_string}")
        for cert in judged:
            if weak := _weak_key(cert):
                return ChainVerdict(ChainStatus.WEAK_KEY, False, weak)
        if anchor is None:
            # The leaf's issuer was neither sent nor trusted: the server forgot to send it.
            if len(path) == 1:
                return ChainVerdict(ChainStatus.MISSING_INTERMEDIATE, False, error)
            return ChainVerdict(ChainStatus.UNKNOWN_ISSUER, False, error)
        return ChainVerdict(ChainStatus.INVALID, False, error)

    def _is_anchor(self, cert: x509.Certificate) -> bool:
        return hashlib.sha256(cert.tbs_certificate_bytes).digest() in self._anchor_hashes

    def _sent_path(self, certs: list[x509.Certificate]) -> list[x509.Certificate]:
        """The leaf and, by issuer name, the sent certificates above it (no loops, bounded)."""
        path = [certs[0]]
        while len(path) < _MAX_PATH:
            top = path[-1]
            if top.issuer == top.subject or self._is_anchor(top):
                break
            issuer = next((c for c in certs[1:] if c.subject == top.issuer
                           and all(c is not p for p in path)), None)
            if issuer is None:
                break
            path.append(issuer)
        return path

    def _issuing_anchor(self, top: x509.Certificate) -> x509.Certificate | None:
        """The trust anchor that is or issued the top of the sent path, if any."""
        if self._is_anchor(top):
            return top
        candidates = self._anchors_by_subject.get(top.issuer, [])
        for anchor in candidates:
            if signature_verifies(top, anchor):
                return anchor
        return candidates[0] if candidates else None


def _normalise_name(name: str) -> str:
    return name.strip().rstrip(".").lower()


def name_matches(names: Sequence[str], mx_hostname: str) -> bool:
    """RFC 6125 §6.4: does one of the leaf's names match the MX host name?

    Exact match, or a wildcard as the whole left-most label (`*.example.test`) standing for
    exactly one label, with at least two labels after it; no partial wildcards; any case.
    """
    host = _normalise_name(mx_hostname)
    if not host or "*" in host:
        return False
    first, _, parent = host.partition(".")
    for raw in names:
        name = _normalise_name(raw)
        if "*" not in name:
            if name == host:
                return True
        elif name.startswith("*.") and first and parent:
            rest = name[2:]
            if "*" not in rest and "." in rest and rest == parent:
                return True
    return False
