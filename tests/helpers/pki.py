"""Certificates for the TLS tests: a small trusted PKI (`pki` fixture) and DSA keys."""

from __future__ import annotations

import datetime as dt
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


def dsa_key(bits: int) -> object:
    """A DSA key: cryptography 51 deprecated DSA, and old mail servers still present it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        from cryptography.hazmat.primitives.asymmetric import dsa

        return dsa.generate_private_key(key_size=bits)


NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)


DAY = dt.timedelta(days=1)


USUAL = (NOW - 30 * DAY, NOW + 90 * DAY)


PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


EC_KEY = ec.generate_private_key(ec.SECP256R1())


@dataclass(frozen=True)
class Ca:
    """A CA key and certificate."""

    key: PrivateKey
    cert: x509.Certificate


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _key_usage(ca: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=True, content_commitment=False,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=ca, crl_sign=ca, encipher_only=False,
                         decipher_only=False)


def make_ca(cn: str, issuer: Ca | None = None, key: PrivateKey | None = None,
            validity: tuple[dt.datetime, dt.datetime] = (NOW - 365 * DAY, NOW + 3650 * DAY)
            ) -> Ca:
    """A root (issuer None) or an intermediate CA."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    signer = issuer.key if issuer else key
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(issuer.cert.subject if issuer else _name(cn))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(validity[0]).not_valid_after(validity[1])
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .add_extension(_key_usage(True), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   signer.public_key()), critical=False))
    return Ca(key, builder.sign(signer, hashes.SHA256()))


def make_leaf(issuer: Ca | None, *, names: tuple[str, ...] = ("mx.verify.test",),
              key: PrivateKey = EC_KEY, validity: tuple[dt.datetime, dt.datetime] = USUAL,
              eku: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.SERVER_AUTH,
              extra: x509.ExtensionType | None = None) -> bytes:
    """DER of a server certificate (self-signed when issuer is None)."""
    signer = issuer.key if issuer else key
    builder = (x509.CertificateBuilder().subject_name(_name(names[0] if names else "no-san"))
               .issuer_name(issuer.cert.subject if issuer else _name(names[0]))
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(validity[0]).not_valid_after(validity[1])
               .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
               .add_extension(_key_usage(False), critical=True)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   signer.public_key()), critical=False))
    if names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    return builder.sign(signer, hashes.SHA256()).public_bytes(Encoding.DER)


def der(ca: Ca) -> bytes:
    return ca.cert.public_bytes(Encoding.DER)


@dataclass(frozen=True)
class Pki:
    """A trusted root with an EC and an RSA intermediate, and an untrusted root."""

    root: Ca
    inter: Ca
    rsa_inter: Ca
    stranger: Ca
    anchors: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    root = make_ca("Verify Test Root")
    anchors = tmp_path_factory.mktemp("anchors") / "root.pem"
    anchors.write_bytes(root.cert.public_bytes(Encoding.PEM))
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Pki(root, make_ca("Verify Test Intermediate", root),
               make_ca("Verify Test RSA Intermediate", root, rsa_key),
               make_ca("Stranger Root"), anchors)
