"""Certificate building for the lab PKI: CAs, leaves (good and deliberately broken), fillers."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
_DAY = timedelta(days=1)
#: A private-enterprise-looking OID for the huge filler extension (non-critical, so ignorable).
_FILLER_OID = x509.ObjectIdentifier("1.3.6.1.4.1.55555.7.1")


@dataclass(frozen=True, slots=True)
class Issuer:
    """A CA: its key and certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate


@dataclass(frozen=True, slots=True)
class LeafKey:
    """A leaf private key, with its unencrypted PEM ready for a context's key file."""

    private: PrivateKey
    pem: bytes = field(init=False)

    def __post_init__(self) -> None:
        pem = self.private.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
        object.__setattr__(self, "pem", pem)


def derive_leaf_key(issuer: Issuer) -> ec.EllipticCurvePrivateKey:
    """A P-256 leaf key derived from the issuer's key: the same CA gives the same leaf key."""
    secret = issuer.key.private_numbers().private_value.to_bytes(32, "big")
    order = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # of P-256
    scalar = int.from_bytes(hashlib.sha256(b"lab leaf key\0" + secret).digest(), "big")
    return ec.derive_private_key(scalar % (order - 1) + 1, ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "STARTTLS Survey Lab"),
                      x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def build_ca(common_name: str, now: datetime, *, issuer: Issuer | None) -> Issuer:
    """A CA certificate: self-signed root when `issuer` is None, else an intermediate under it."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = _name(common_name)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - 365 * _DAY)
        .not_valid_after(now + 3650 * _DAY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0 if issuer else None),
                       critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, key_cert_sign=True, crl_sign=True,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    signer = issuer.key if issuer else key
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    return Issuer(key, builder.sign(signer, hashes.SHA256()))


def build_leaf(names: tuple[str, ...], key: LeafKey, issuer: Issuer | None,
               validity: tuple[datetime, datetime], *,
               extra: x509.UnrecognizedExtension | None = None) -> x509.Certificate:
    """A TLS server certificate for `names`, signed by `issuer` (self-signed when None).

    Deterministic for given arguments (serial from their hash, RFC 6979 signatures), so a
    context rebuilt after cache eviction serves the very same certificate.
    """
    not_before, not_after = validity
    public = key.private.public_key()
    subject = _name(names[0])
    seed = repr((names, validity, issuer.cert.serial_number if issuer else None,
                 extra.oid.dotted_string if extra else None, key.pem)).encode()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.cert.subject if issuer else subject)
        .public_key(public)
        .serial_number(_serial(seed))
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, content_commitment=False,
                                     key_encipherment=isinstance(public, rsa.RSAPublicKey),
                                     data_encipherment=False, key_agreement=False,
                                     key_cert_sign=False, crl_sign=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]),
                       critical=False)
    )
    if issuer:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()),
            critical=False)
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    signer = issuer.key if issuer else key.private
    return builder.sign(signer, hashes.SHA256(),
                        ecdsa_deterministic=isinstance(signer, ec.EllipticCurvePrivateKey))


def _serial(seed: bytes) -> int:
    """A positive serial of 152 bits (RFC 5280 allows up to 20 octets) derived from `seed`."""
    return int.from_bytes(hashlib.sha256(seed).digest()[:19], "big") | 1


def build_unrelated(count: int, key: LeafKey, now: datetime) -> tuple[x509.Certificate, ...]:
    """`count` small self-signed certificates that chain to nothing: long_chain's padding."""
    certs = []
    for i in range(count):
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"unrelated-{i}.lab.test")])
        certs.append(
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.private.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - 30 * _DAY).not_valid_after(now + 365 * _DAY)
            .sign(key.private, hashes.SHA256()))
    return tuple(certs)


def huge_extension(size: int) -> x509.UnrecognizedExtension:
    """A non-critical extension holding a `size`-byte DER OCTET STRING of filler."""
    body = (b"lab filler " * (size // 11 + 1))[:size]
    length = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return x509.UnrecognizedExtension(_FILLER_OID, b"\x04" + bytes([0x80 | len(length)])
                                      + length + body)


def garbage_policies_extension() -> x509.UnrecognizedExtension:
    """A certificatePolicies extension whose value is not DER.

    OpenSSL serves it (it decodes policies only when checking them), while parsers that decode
    every extension, like `cryptography`'s `Certificate.extensions`, fail. A garbage
    subjectAltName would be better still, but OpenSSL 3.0 refuses to load such a certificate.
    """
    return x509.UnrecognizedExtension(ExtensionOID.CERTIFICATE_POLICIES,
                                      b"\xde\xad\xbe\xef this is not a PolicyInformation")
