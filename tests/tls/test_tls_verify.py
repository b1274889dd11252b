"""Chain verdicts (each failure class told apart), the lab's contract, and MX-name matching."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID
from helpers.pki import DAY, NOW, Pki, der, dsa_key, make_ca, make_leaf

from scanner.config import ConfigError
from scanner.lab.population.behaviours import EXPECTED, NEGOTIATES_TLS, Behaviour
from scanner.lab.population.model import LabHost
from scanner.lab.population.pki import LabPki
from scanner.model.records import ChainVerdict
from scanner.model.status import ChainStatus
from scanner.tls.certs import leaf_names, parse_certificate
from scanner.tls.verify import ChainVerifier, name_matches

SHA256_WITH_RSA = bytes.fromhex("06092a864886f70d01010b")
SHA1_WITH_RSA = bytes.fromhex("06092a864886f70d010105")


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
