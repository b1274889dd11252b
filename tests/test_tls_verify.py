"""Chain verdicts (each failure class told apart), the lab's contract, and MX-name matching."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from test_tls_certs import dsa_key

from scanner.config import ConfigError
from scanner.lab.behaviours import EXPECTED, NEGOTIATES_TLS, Behaviour
from scanner.lab.model import LabHost
from scanner.lab.pki import LabPki
from scanner.records import ChainVerdict
from scanner.status import ChainStatus
from scanner.tls.certs import leaf_names, parse_certificate
from scanner.tls.verify import ChainVerifier, name_matches

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
DAY = dt.timedelta(days=1)
USUAL = (NOW - 30 * DAY, NOW + 90 * DAY)
PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
EC_KEY = ec.generate_private_key(ec.SECP256R1())
SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")


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


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def resign_sha1(der: bytes, signer: rsa.RSAPrivateKey) -> bytes:
    """The same certificate signed with sha1WithRSAEncryption (cryptography refuses to)."""
    tbs = x509.load_der_x509_certificate(der).tbs_certificate_bytes
    tbs = tbs.replace(SHA256_WITH_RSA, SHA1_WITH_RSA)
    signature = signer.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    body = (tbs + b"\x30\x0d" + SHA1_WITH_RSA + b"\x05\x00"
            + b"\x03" + _der_length(len(signature) + 1) + b"\x00" + signature)
    return b"\x30" + _der_length(len(body)) + body


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


@pytest.fixture(scope="module")
def verifier(pki: Pki) -> ChainVerifier:
    return ChainVerifier([pki.anchors], False, NOW)


def status(verifier: ChainVerifier, *chain: bytes) -> ChainStatus:
    return verifier.verify(chain).status


def test_valid_chain(pki: Pki, verifier: ChainVerifier) -> None:
    assert verifier.verify((make_leaf(pki.inter), der(pki.inter))) == ChainVerdict(
        ChainStatus.VALID, True)
    assert status(verifier, make_leaf(pki.inter), der(pki.inter), der(pki.root)) == "valid"


def test_leaf_without_san_is_valid_chain_name_judged_elsewhere(
        pki: Pki, verifier: ChainVerifier) -> None:
    assert status(verifier, make_leaf(pki.inter, names=()), der(pki.inter)) == "valid"


@pytest.mark.parametrize(("validity", "expected"), [
    ((NOW - 400 * DAY, NOW - DAY), ChainStatus.EXPIRED),
    ((NOW + DAY, NOW + 400 * DAY), ChainStatus.NOT_YET_VALID),
])
def test_leaf_outside_validity(pki: Pki, verifier: ChainVerifier,
                               validity: tuple[dt.datetime, dt.datetime],
                               expected: ChainStatus) -> None:
    verdict = verifier.verify((make_leaf(pki.inter, validity=validity), der(pki.inter)))
    assert verdict.status is expected and not verdict.valid
    assert verdict.detail is not None and "mx.verify.test" in verdict.detail


def test_expired_intermediate(pki: Pki, verifier: ChainVerifier) -> None:
    old = make_ca("Old Intermediate", pki.root, validity=(NOW - 900 * DAY, NOW - 2 * DAY))
    verdict = verifier.verify((make_leaf(old), der(old)))
    assert verdict.status is ChainStatus.EXPIRED
    assert verdict.detail is not None and "Old Intermediate" in verdict.detail


def test_verdicts_are_judged_at_the_given_time(pki: Pki) -> None:
    chain = (make_leaf(pki.inter), der(pki.inter))
    later = ChainVerifier([pki.anchors], False, NOW + 200 * DAY)
    earlier = ChainVerifier([pki.anchors], False, NOW - 60 * DAY)
    assert (status(later, *chain), status(earlier, *chain)) == ("expired", "not_yet_valid")


def test_self_signed(pki: Pki, verifier: ChainVerifier, tmp_path: Path) -> None:
    leaf = make_leaf(None)
    assert status(verifier, leaf) == "self_signed"
    anchor = tmp_path / "pinned.pem"
    anchor.write_bytes(x509.load_der_x509_certificate(leaf).public_bytes(Encoding.PEM))
    assert status(ChainVerifier([pki.anchors, anchor], False, NOW), leaf) == "valid"


def test_missing_intermediate(pki: Pki, verifier: ChainVerifier) -> None:
    leaf = make_leaf(pki.inter)
    assert status(verifier, leaf) == "missing_intermediate"
    # a wrong intermediate in its place changes nothing: the leaf's issuer is still missing
    assert status(verifier, leaf, der(pki.rsa_inter)) == "missing_intermediate"


def test_unknown_issuer(pki: Pki, verifier: ChainVerifier) -> None:
    inter = make_ca("Stranger Intermediate", pki.stranger)
    assert status(verifier, make_leaf(inter), der(inter)) == "unknown_issuer"
    assert status(verifier, make_leaf(inter), der(inter), der(pki.stranger)) == "unknown_issuer"


def test_rsa1024_leaf_in_valid_chain_is_weak_key(pki: Pki, verifier: ChainVerifier) -> None:
    # cryptography checks only keys that sign: it accepts this chain, we must not.
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    verdict = verifier.verify((make_leaf(pki.inter, key=weak), der(pki.inter)))
    assert verdict.status is ChainStatus.WEAK_KEY and not verdict.valid
    assert verdict.detail is not None and "RSA-1024" in verdict.detail


def test_dsa1024_leaf_in_valid_chain_is_weak_key(pki: Pki, verifier: ChainVerifier) -> None:
    weak = dsa_key(1024)
    verdict = verifier.verify((make_leaf(pki.inter, key=weak), der(pki.inter)))  # type: ignore[arg-type]
    assert verdict.status is ChainStatus.WEAK_KEY and not verdict.valid
    assert verdict.detail is not None and "DSA-1024" in verdict.detail


def test_rsa1024_intermediate_is_weak_key(pki: Pki, verifier: ChainVerifier) -> None:
    inter = make_ca("Weak Intermediate", pki.root,
                    rsa.generate_private_key(public_exponent=65537, key_size=1024))
    assert status(verifier, make_leaf(inter), der(inter)) == "weak_key"


def test_sha1_signed_leaf_is_weak_signature(pki: Pki, verifier: ChainVerifier) -> None:
    assert isinstance(pki.rsa_inter.key, rsa.RSAPrivateKey)
    good = make_leaf(pki.rsa_inter)
    assert status(verifier, good, der(pki.rsa_inter)) == "valid"
    sha1 = resign_sha1(good, pki.rsa_inter.key)
    verdict = verifier.verify((sha1, der(pki.rsa_inter)))
    assert verdict.status is ChainStatus.WEAK_SIGNATURE and "1.2.840.113549.1.1.5" in str(
        verdict.detail)


def test_client_only_eku_is_invalid_with_the_reason(pki: Pki, verifier: ChainVerifier) -> None:
    verdict = verifier.verify((make_leaf(pki.inter, eku=ExtendedKeyUsageOID.CLIENT_AUTH),
                               der(pki.inter)))
    assert verdict.status is ChainStatus.INVALID and "server authentication" in str(
        verdict.detail)


def test_no_certificate_and_unparseable(pki: Pki, verifier: ChainVerifier) -> None:
    assert status(verifier) == "no_certificate"
    assert status(verifier, b"garbage") == "unparseable"
    assert status(verifier, make_leaf(pki.inter), b"\x30\x00") == "unparseable"
    broken = x509.UnrecognizedExtension(ExtensionOID.CERTIFICATE_POLICIES, b"\xde\xad")
    verdict = verifier.verify((make_leaf(pki.inter, extra=broken), der(pki.inter)))
    assert verdict.status is ChainStatus.UNPARSEABLE and str(verdict.detail).startswith(
        "certificate 0")


def test_verdicts_are_cached_by_chain(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    verifier = ChainVerifier([pki.anchors], False, NOW)
    judged: list[int] = []
    judge = verifier._judge

    def counting(chain: tuple[bytes, ...]) -> ChainVerdict:
        judged.append(len(chain))
        return judge(chain)

    monkeypatch.setattr(verifier, "_judge", counting)
    chain = (make_leaf(pki.inter), der(pki.inter))
    first = verifier.verify(chain)
    assert all(verifier.verify(list(chain)) is first for _ in range(5))
    assert judged == [2]
    verifier.verify(chain[:1])
    assert judged == [2, 1]


def test_mozilla_roots_do_not_trust_the_test_pki(pki: Pki) -> None:
    mozilla = ChainVerifier([], True, NOW)
    assert mozilla.anchor_count > 100
    assert status(mozilla, make_leaf(pki.inter), der(pki.inter), der(pki.root)) == (
        "unknown_issuer")
    assert status(ChainVerifier([], False, NOW), make_leaf(pki.inter), der(pki.inter)) == (
        "unknown_issuer")


def test_configuration_errors(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        ChainVerifier([pki.anchors], False, NOW.replace(tzinfo=None))
    with pytest.raises(ConfigError):
        ChainVerifier([tmp_path / "missing.pem"], False, NOW)
    (tmp_path / "junk.pem").write_bytes(b"-----BEGIN CERTIFICATE-----\njunk\n")
    with pytest.raises(ConfigError):
        ChainVerifier([tmp_path / "junk.pem"], False, NOW)


@pytest.fixture(scope="module")
def lab_pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return LabPki.create(tmp_path_factory.mktemp("lab-pki"), NOW)


@pytest.mark.parametrize("behaviour", sorted(NEGOTIATES_TLS))
def test_lab_chains_get_the_expected_verdict(lab_pki: LabPki, behaviour: Behaviour) -> None:
    host = LabHost("127.9.0.1", behaviour, ("mx1.lab.test",), "mx1.lab.test ESMTP")
    chain = tuple(c.public_bytes(Encoding.DER) for c in lab_pki.served_chain(host))
    verdict = ChainVerifier([lab_pki.ca_pem], True, NOW).verify(chain)
    expected = EXPECTED[behaviour]
    assert verdict.valid is expected.chain_valid
    assert (None if verdict.valid else verdict.status) == expected.verify_error
    names = leaf_names(parse_certificate(chain[0]))
    assert name_matches(names, "mx1.lab.test") is expected.names_mx


@pytest.mark.parametrize(("names", "host", "expected"), [
    (["mx.example.test"], "mx.example.test", True),
    (["MX.Example.TEST"], "mx.example.test.", True),
    (["mx.example.test."], "MX.EXAMPLE.TEST", True),
    (["other.test", "mx.example.test"], "mx.example.test", True),
    (["mx.example.test"], "mx2.example.test", False),
    (["*.example.test"], "mx.example.test", True),
    (["*.EXAMPLE.test"], "Mx.example.test", True),
    (["*.example.test"], "example.test", False),  # exactly one label
    (["*.example.test"], "a.mx.example.test", False),
    (["*.test"], "example.test", False),  # not a wildcard over a whole TLD
    (["*"], "example", False),
    (["m*.example.test"], "mx.example.test", False),  # no partial wildcards
    (["*x.example.test"], "mx.example.test", False),
    (["mx.*.test"], "mx.example.test", False),
    (["*.*.test"], "a.example.test", False),
    (["**.example.test"], "mx.example.test", False),
    (["*.example.test"], "*.example.test", False),
    (["*.example.test"], ".example.test", False),
    ([""], "", False),
    ([], "mx.example.test", False),
    (["xn--bcher-kva.example.test"], "XN--BCHER-KVA.example.test", True),
    (["*.xn--bcher-kva.test"], "mx.xn--bcher-kva.test", True),
])
def test_name_matches(names: list[str], host: str, expected: bool) -> None:
    assert name_matches(names, host) is expected
