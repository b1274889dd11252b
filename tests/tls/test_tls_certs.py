"""CertificateRecord from DER: fields, odd certificates, broken ones, and leaf names."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import time
from collections.abc import Sequence

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID, NameOID
from helpers.pki import dsa_key
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.model.records import CertificateRecord
from scanner.tls.certs import MAX_NAMES, leaf_names, parse_certificate

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Certs Test"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def build(cn: str = "mx.certs.test", *, key: object = EC_KEY, signer: object = None,
          issuer: str | None = None, san: Sequence[x509.GeneralName] | None = None,
          ca: bool = False, extra: x509.ExtensionType | None = None,
          serial: int = 0x1234ABCD) -> bytes:
    """DER of a certificate for `key`, signed by `signer` (default: itself)."""
    signer = signer or key
    builder = (x509.CertificateBuilder().subject_name(_name(cn))
               .issuer_name(_name(issuer or cn))
               .public_key(key.public_key())  # type: ignore[attr-defined]
               .serial_number(serial)
               .not_valid_before(NOW - dt.timedelta(days=1))
               .not_valid_after(NOW + dt.timedelta(days=90))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if san is not None:
        builder = builder.add_extension(x509.SubjectAlternativeName(list(san)), critical=False)
    if extra is not None:
        builder = builder.add_extension(extra, critical=False)
    algorithm = None if isinstance(signer, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return builder.sign(signer, algorithm).public_bytes(Encoding.DER)  # type: ignore[arg-type]


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def resign_sha1(der: bytes, signer: rsa.RSAPrivateKey) -> bytes:
    """The same certificate signed with sha1WithRSAEncryption (cryptography refuses to)."""
    cert = x509.load_der_x509_certificate(der)
    tbs = cert.tbs_certificate_bytes.replace(SHA256_WITH_RSA, SHA1_WITH_RSA)
    signature = signer.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    algorithm = b"\x30\x0d" + SHA1_WITH_RSA + b"\x05\x00"
    bits = b"\x03" + _der_length(len(signature) + 1) + b"\x00" + signature
    body = tbs + algorithm + bits
    return b"\x30" + _der_length(len(body)) + body


def test_ec_leaf_fields() -> None:
    der = build(issuer="Certs Test CA", signer=ec.generate_private_key(ec.SECP384R1()),
                san=[x509.DNSName("mx.certs.test"), x509.DNSName("MX2.certs.test"),
                     x509.IPAddress(ipaddress.ip_address("192.0.2.7"))])
    rec = parse_certificate(der)
    assert rec == CertificateRecord(
        sha256=hashlib.sha256(der).hexdigest(), der=der, parse_ok=True,
        subject="CN=mx.certs.test,O=Certs Test", issuer="CN=Certs Test CA,O=Certs Test",
        common_name="mx.certs.test", san_dns=("mx.certs.test", "MX2.certs.test"),
        san_ip=("192.0.2.7",), serial="1234abcd", not_before=NOW - dt.timedelta(days=1),
        not_after=NOW + dt.timedelta(days=90), key_type="ec", key_bits=256, curve="secp256r1",
        signature_algorithm="ecdsa-with-SHA256", self_signed=False, is_ca=False)
    assert rec.not_before is not None and rec.not_before.tzinfo is dt.UTC


def test_rsa_root_is_self_signed_ca() -> None:
    rec = parse_certificate(build("Certs Root", key=RSA_KEY, ca=True))
    assert (rec.key_type, rec.key_bits, rec.curve) == ("rsa", 2048, None)
    assert rec.signature_algorithm == "sha256WithRSAEncryption"
    assert rec.self_signed is True and rec.is_ca is True


def test_same_names_but_another_key_is_not_self_signed() -> None:
    rec = parse_certificate(build(signer=ec.generate_private_key(ec.SECP256R1())))
    assert rec.issuer == rec.subject and rec.self_signed is False


def test_ed25519_certificate() -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    rec = parse_certificate(build(key=key))
    assert (rec.key_type, rec.signature_algorithm, rec.self_signed) == ("ed25519", "ed25519", True)


def test_sha1_signature_is_named() -> None:
    rec = parse_certificate(resign_sha1(build(key=RSA_KEY), RSA_KEY))
    assert rec.parse_ok and rec.signature_algorithm == "sha1WithRSAEncryption"
    assert rec.self_signed is True  # SHA-1 still verifies: it is weak, not broken


def test_dsa_certificate_is_sized_and_self_signed_without_warnings() -> None:
    # Tests turn warnings into errors: a DSA class touched per certificate would fail here.
    rec = parse_certificate(build(key=dsa_key(1024)))
    assert rec.parse_ok, rec.parse_error
    assert (rec.key_type, rec.key_bits, rec.signature_algorithm) == ("dsa", 1024, "dsa-with-sha256")
    assert rec.self_signed is True


def test_zero_serial_parses_without_warnings() -> None:
    # Some Mozilla roots have serial 0; cryptography warns, and tests turn warnings into errors.
    der = build(serial=1)
    marker = b"\xa0\x03\x02\x01\x02\x02\x01\x01"  # version v3, then serial INTEGER 1
    rec = parse_certificate(der.replace(marker, marker[:-1] + b"\x00", 1))
    assert rec.parse_ok and rec.serial == "0"


@pytest.mark.parametrize("der", [b"", b"\x30\x03\x02\x01\x00", b"not a certificate" * 10])
def test_garbage_is_a_record_not_an_exception(der: bytes) -> None:
    rec = parse_certificate(der)
    assert not rec.parse_ok and rec.parse_error and rec.sha256 == hashlib.sha256(der).hexdigest()
    assert rec.subject is None and leaf_names(rec) == ()


def test_broken_extension_keeps_the_rest() -> None:
    garbage = x509.UnrecognizedExtension(ExtensionOID.CERTIFICATE_POLICIES, b"\xde\xad\xbe\xef")
    rec = parse_certificate(build(san=[x509.DNSName("mx.certs.test")], extra=garbage))
    assert not rec.parse_ok and rec.parse_error is not None
    assert rec.parse_error.startswith("extensions:")
    assert rec.subject == "CN=mx.certs.test,O=Certs Test" and rec.not_after is not None
    assert leaf_names(rec) == ()


def test_huge_certificate_is_parsed_in_bounded_time() -> None:
    filler = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.3.6.1.4.1.55555.7.1"),
                                        b"\x04\x83\x10\x00\x00" + b"\xaa" * (1 << 20))
    names = [x509.DNSName(f"n{i}.certs.test") for i in range(MAX_NAMES + 500)]
    der = build(san=names, extra=filler)
    assert len(der) > 1 << 20
    started = time.perf_counter()
    rec = parse_certificate(der)
    assert time.perf_counter() - started < 2.0
    assert rec.parse_ok and len(rec.san_dns) == MAX_NAMES


@pytest.fixture(scope="module")
def sample_der() -> bytes:
    """One fixed certificate (ECDSA signatures differ on every signing)."""
    return build(san=[x509.DNSName("mx.certs.test")])


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_mutated_certificates_never_raise(sample_der: bytes, data: st.DataObject) -> None:
    der = bytearray(sample_der)
    for _ in range(data.draw(st.integers(1, 4))):
        der[data.draw(st.integers(0, len(der) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(1, len(der)))
    rec = parse_certificate(bytes(der[:cut]))
    assert rec.parse_ok or rec.parse_error
    leaf_names(rec)


@pytest.mark.parametrize(("san", "cn", "expected"), [
    ([x509.DNSName("MX.Certs.Test."), x509.DNSName("mx.certs.test"),
      x509.DNSName("*.certs.test")], "ignored.test", ("mx.certs.test", "*.certs.test")),
    (None, "Mail.Certs.Test", ("mail.certs.test",)),  # no SAN extension: the CN counts
    ([x509.IPAddress(ipaddress.ip_address("192.0.2.1"))], "mail.certs.test", ()),
])
def test_leaf_names(san: list[x509.GeneralName] | None, cn: str,
                    expected: tuple[str, ...]) -> None:
    assert leaf_names(parse_certificate(build(cn, san=san))) == expected
