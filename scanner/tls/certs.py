"""CertificateRecord from DER: names, validity, key and signature, whatever the server sent.

A certificate that does not parse, in whole or in part (cryptography reads extensions lazily),
becomes a record with parse_ok False and the reason, never an exception.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import NameOID

from scanner.model.records import CertificateRecord
from scanner.tls.lru import LruMemo

if TYPE_CHECKING:  # a type only: the runtime class is looked up once, quietly, below
    from cryptography.hazmat.primitives.asymmetric.dsa import DSAPublicKey

#: More names than any real certificate carries; a hostile one gets truncated here.
MAX_NAMES = 1000

_KEY_TYPES = {
    "1.2.840.113549.1.1.1": "rsa",
    "1.2.840.113549.1.1.10": "rsa-pss",
    "1.2.840.10045.2.1": "ec",
    "1.3.101.112": "ed25519",
    "1.3.101.113": "ed448",
    "1.2.840.10040.4.1": "dsa",
}
# Signature algorithms cryptography does not name.
_SIGNATURE_NAMES = {
    "1.2.840.113549.1.1.2": "md2WithRSAEncryption",
    "1.2.840.113549.1.1.3": "md4WithRSAEncryption",
    "1.3.14.3.2.29": "sha1WithRSASignature",
    "2.16.840.1.101.3.4.3.3": "dsa-with-sha384",
    "2.16.840.1.101.3.4.3.4": "dsa-with-sha512",
    "2.16.840.1.101.3.4.3.10": "ecdsa-with-SHA3-256",
    "2.16.840.1.101.3.4.3.11": "ecdsa-with-SHA3-384",
    "2.16.840.1.101.3.4.3.12": "ecdsa-with-SHA3-512",
    "2.16.840.1.101.3.4.3.14": "id-rsassa-pkcs1-v1_5-with-sha3-256",
    "2.16.840.1.101.3.4.3.15": "id-rsassa-pkcs1-v1_5-with-sha3-384",
    "2.16.840.1.101.3.4.3.16": "id-rsassa-pkcs1-v1_5-with-sha3-512",
}


@contextlib.contextmanager
def quiet_cryptography() -> Iterator[None]:
    """Silence cryptography's deprecation warnings (e.g. serial 0, found in Mozilla roots).

    What the server sent is data for the survey, not a problem of the scanner's own code.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        yield


def _dsa_public_key_types() -> tuple[type[DSAPublicKey], ...]:
    """cryptography's DSA public key class, looked up once: () when a release has dropped it.

    cryptography 51 deprecated DSA and warns on every access to the class, but servers still
    send DSA certificates and the survey has to name and size their keys.
    """
    with quiet_cryptography():
        from cryptography.hazmat.primitives.asymmetric import dsa

        found = getattr(dsa, "DSAPublicKey", None)
    return (found,) if isinstance(found, type) else ()


#: Match with isinstance(key, DSA_PUBLIC_KEY); never touch `dsa.DSAPublicKey` per certificate.
DSA_PUBLIC_KEY: tuple[type[DSAPublicKey], ...] = _dsa_public_key_types()


def load_certificate(der: bytes) -> x509.Certificate:
    """Load DER and force the lazily parsed parts; ValueError when any part is malformed."""
    with quiet_cryptography():
        cert = x509.load_der_x509_certificate(der)
        # Reading these makes cryptography parse them now rather than mid-verification.
        cert.extensions  # noqa: B018
        cert.subject  # noqa: B018
        cert.issuer  # noqa: B018
        cert.serial_number  # noqa: B018
    return cert


def signature_algorithm_name(oid: x509.ObjectIdentifier) -> str:
    """OpenSSL-style name of a signature algorithm OID, or its dotted form."""
    name = getattr(oid, "_name", None)
    if isinstance(name, str) and name != "Unknown OID":
        return name
    return _SIGNATURE_NAMES.get(oid.dotted_string, oid.dotted_string)


def signature_verifies(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Does the issuer's key verify the certificate's signature (SHA-1 and MD5 included)?

    cryptography's verify_directly_issued_by refuses SHA-1, which old self-signed mail server
    certificates still use, so the signature is checked by hand.
    """
    try:
        key = issuer.public_key()
        params = cert.signature_algorithm_parameters
        signature, tbs = cert.signature, cert.tbs_certificate_bytes
        if isinstance(key, rsa.RSAPublicKey) and params is not None:
            algorithm = cert.signature_hash_algorithm
            if algorithm is None:
                return False
            key.verify(signature, tbs, params, algorithm)  # type: ignore[arg-type]
        elif isinstance(key, ec.EllipticCurvePublicKey) and isinstance(params, ec.ECDSA):
            key.verify(signature, tbs, params)
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(signature, tbs)
        elif isinstance(key, DSA_PUBLIC_KEY) and cert.signature_hash_algorithm is not None:
            key.verify(signature, tbs, cert.signature_hash_algorithm)
        else:
            return False
    except Exception:  # bad signature, unsupported key or algorithm: not provably issued
        return False
    return True


#: Self-signature verdicts of the latest certificates, by SHA-256: a new leaf is asked about
#: twice in a row (parsed for its row, then its chain judged), and a verification is one
#: public-key operation (ECDSA P-256: ~60 us).
_SELF_SIGNED: LruMemo[bytes, bool] = LruMemo(64)
_SHA256 = hashes.SHA256()


def is_self_signed(cert: x509.Certificate) -> bool:
    """Issuer equals subject and the certificate's own key verifies its signature."""
    if cert.issuer != cert.subject:
        return False
    return _SELF_SIGNED.get(cert.fingerprint(_SHA256), lambda: signature_verifies(cert, cert))


def key_facts(cert: x509.Certificate) -> tuple[str | None, int | None, str | None]:
    """Key type, size in bits and curve name of the certificate's public key."""
    key_type = _KEY_TYPES.get(cert.public_key_algorithm_oid.dotted_string,
                              cert.public_key_algorithm_oid.dotted_string)
    try:
        key = cert.public_key()
    except (ValueError, TypeError, NotImplementedError):  # unsupported or malformed key
        return key_type, None, None
    if isinstance(key, rsa.RSAPublicKey) or isinstance(key, DSA_PUBLIC_KEY):
        return key_type, key.key_size, None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key_type, key.curve.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return key_type, 253, None  # as OpenSSL counts it, like X25519
    if isinstance(key, ed448.Ed448PublicKey):
        return key_type, 456, None
    return key_type, None, None


def _common_name(name: x509.Name) -> str | None:
    attrs = name.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not attrs:
        return None
    value = attrs[0].value
    return value if isinstance(value, str) else value.decode("utf-8", "replace")


def _alt_names(cert: x509.Certificate) -> tuple[tuple[str, ...], tuple[str, ...]]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return (), ()
    dns = san.get_values_for_type(x509.DNSName)[:MAX_NAMES]
    ips = san.get_values_for_type(x509.IPAddress)[:MAX_NAMES]
    return tuple(dns), tuple(str(ip) for ip in ips)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


def parse_certificate(der: bytes, sha256: str | None = None) -> CertificateRecord:
    """Parse one DER certificate; parse_ok False and parse_error when any part is malformed.

    Parts that did parse are still filled in, so a certificate with one broken extension keeps
    its subject and validity; None means "did not parse" (or "absent", e.g. no CN). sha256 is
    the DER's hex digest when the caller already has it.
    """
    sha256 = sha256 or hashlib.sha256(der).hexdigest()
    with quiet_cryptography():
        try:
            cert = x509.load_der_x509_certificate(der)
        except Exception as exc:  # cryptography raises ValueError; anything else is as bad
            return CertificateRecord(sha256=sha256, der=der, parse_ok=False,
                                     parse_error=f"certificate: {exc}")
        errors: list[str] = []
        fields: dict[str, Any] = {}

        def read(label: str, compute: Callable[[], dict[str, Any]]) -> None:
            try:
                fields.update(compute())
            except Exception as exc:  # each part on its own: one bad extension spoils only itself
                errors.append(f"{label}: {exc}")

        read("subject", lambda: {"subject": cert.subject.rfc4514_string(),
                                 "common_name": _common_name(cert.subject)})
        read("issuer", lambda: {"issuer": cert.issuer.rfc4514_string()})
        read("serial", lambda: {"serial": format(cert.serial_number, "x")})
        read("validity", lambda: {"not_before": cert.not_valid_before_utc,
                                  "not_after": cert.not_valid_after_utc})
        read("key", lambda: dict(zip(("key_type", "key_bits", "curve"), key_facts(cert),
                                     strict=True)))
        read("signature", lambda: {
            "signature_algorithm": signature_algorithm_name(cert.signature_algorithm_oid)})
        read("extensions", lambda: dict(zip(("san_dns", "san_ip"), _alt_names(cert),
                                            strict=True), is_ca=_is_ca(cert)))
        read("self_signed", lambda: {"self_signed": is_self_signed(cert)})
    return CertificateRecord(sha256=sha256, der=der, parse_ok=not errors,
                             parse_error="; ".join(errors) or None, **fields)


def leaf_names(rec: CertificateRecord) -> tuple[str, ...]:
    """Names to match the MX host against: DNS SANs, or the CN when there are no SANs.

    RFC 6125 §6.4.4: the CN counts only without subjectAltName. The record does not say whether
    an extension without DNS or IP entries was present, so such a certificate falls back to CN.
    """
    if not rec.parse_ok:
        return ()
    if rec.san_dns:
        names = rec.san_dns
    elif rec.san_ip or not rec.common_name:
        return ()
    else:
        names = (rec.common_name,)
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(name.strip().rstrip(".").lower(), None)
    return tuple(n for n in seen if n)
