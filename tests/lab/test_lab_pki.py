"""The lab PKI: certificate facts per behaviour, context caching, start-up cost."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from scanner.lab.population.behaviours import Behaviour
from scanner.lab.population.model import LabHost
from scanner.lab.population.pki import BAD_CERT_NAME, WRONG_NAME, LabPki

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
MX = ("mx1.pki.test", "mx2.pki.test")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return LabPki.create(tmp_path_factory.mktemp("pki"), NOW)


def host(behaviour: Behaviour, names: tuple[str, ...] = MX, **kw: object) -> LabHost:
    return LabHost("127.77.9.1", behaviour, mx_names=names, banner="mx ESMTP", **kw)  # type: ignore[arg-type]


def verify(pki: LabPki, chain: tuple[x509.Certificate, ...], name: str,
           at: datetime = NOW) -> None:
    """Strict web-PKI verification with cryptography, anchored at the lab root only."""
    roots = x509.load_pem_x509_certificates(pki.ca_pem.read_bytes())
    verifier = (PolicyBuilder().store(Store(roots)).time(at)
                .build_server_verifier(x509.DNSName(name)))
    verifier.verify(chain[0], list(chain[1:]))


def test_create_is_fast_and_writes_the_root(tmp_path: Path) -> None:
    started = time.perf_counter()
    pki = LabPki.create(tmp_path / "fresh", NOW)
    assert time.perf_counter() - started < 0.5
    root = x509.load_pem_x509_certificate(pki.ca_pem.read_bytes())
    assert pki.ca_pem == tmp_path / "fresh" / "lab-ca.pem"
    assert root.subject == root.issuer
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(root.public_key(), ec.EllipticCurvePublicKey)


def test_valid_chain_verifies_for_every_mx_name(pki: LabPki) -> None:
    chain = pki.served_chain(host(Behaviour.VALID))
    assert len(chain) == 2 and chain[1] == pki.intermediate.cert
    for name in MX:
        verify(pki, chain, name)
    leaf = chain[0]
    assert isinstance(leaf.public_key(), ec.EllipticCurvePublicKey)
    assert leaf.not_valid_before_utc == NOW - timedelta(days=30)
    assert leaf.not_valid_after_utc == NOW + timedelta(days=365)


def test_cert_names_take_precedence_over_mx_names(pki: LabPki) -> None:
    chain = pki.served_chain(host(Behaviour.VALID, cert_names=("shared.pki.test",)))
    san = chain[0].extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["shared.pki.test"]


@pytest.mark.parametrize("behaviour", [
    Behaviour.EXPIRED, Behaviour.NOT_YET_VALID, Behaviour.SELF_SIGNED, Behaviour.WRONG_NAME,
    Behaviour.MISSING_INTERMEDIATE,
])
def test_broken_certificates_fail_strict_verification(pki: LabPki, behaviour: Behaviour) -> None:
    with pytest.raises(VerificationError):
        verify(pki, pki.served_chain(host(behaviour)), MX[0])


def test_certificate_facts_per_behaviour(pki: LabPki) -> None:
    expired = pki.served_chain(host(Behaviour.EXPIRED))[0]
    assert expired.not_valid_after_utc < NOW
    future = pki.served_chain(host(Behaviour.NOT_YET_VALID))[0]
    assert future.not_valid_before_utc > NOW
    (self_signed,) = pki.served_chain(host(Behaviour.SELF_SIGNED))
    assert self_signed.subject == self_signed.issuer
    self_signed.verify_directly_issued_by(self_signed)
    wrong = pki.served_chain(host(Behaviour.WRONG_NAME))
    verify(pki, wrong, WRONG_NAME)  # a good chain, for another name
    assert len(pki.served_chain(host(Behaviour.MISSING_INTERMEDIATE))) == 1
    weak = pki.served_chain(host(Behaviour.RSA1024))
    weak_key = weak[0].public_key()
    assert isinstance(weak_key, rsa.RSAPublicKey) and weak_key.key_size == 1024
    # cryptography's verifier accepts a 1024-bit RSA leaf: weak_key is for the scanner to judge
    verify(pki, weak, MX[0])
    dhe = pki.served_chain(host(Behaviour.DHE1024))[0].public_key()
    assert isinstance(dhe, rsa.RSAPublicKey) and dhe.key_size == 2048
    verify(pki, pki.served_chain(host(Behaviour.DHE1024)), MX[0])


def test_long_chain_is_leaf_intermediate_and_98_unrelated(pki: LabPki) -> None:
    chain = pki.served_chain(host(Behaviour.LONG_CHAIN))
    assert len(chain) == 100
    verify(pki, chain[:2], MX[0])
    assert all(c.subject == c.issuer for c in chain[2:])
    assert sum(len(c.public_bytes(Encoding.DER)) for c in chain) < 100_000  # under client limits


def test_a_pki_rebuilt_from_the_same_ca_serves_the_same_ec_leaves(pki: LabPki,
                                                                   tmp_path: Path) -> None:
    twin = LabPki(tmp_path, pki.now, pki.root, pki.intermediate)  # as a lab worker loads it
    for behaviour in (Behaviour.VALID, Behaviour.EXPIRED, Behaviour.SELF_SIGNED):
        assert twin.served_chain(host(behaviour)) == pki.served_chain(host(behaviour))


def test_certificates_of_different_hosts_have_distinct_serials(pki: LabPki) -> None:
    serials = {pki.served_chain(host(b))[0].serial_number
               for b in (Behaviour.VALID, Behaviour.EXPIRED, Behaviour.NOT_YET_VALID,
                         Behaviour.MISSING_INTERMEDIATE, Behaviour.RSA1024, Behaviour.DHE1024)}
    assert len(serials) == 5  # missing_intermediate serves the valid leaf, alone


def test_huge_cert_is_over_a_megabyte(pki: LabPki) -> None:
    leaf = pki.served_chain(host(Behaviour.HUGE_CERT))[0]
    assert len(leaf.public_bytes(Encoding.DER)) > 1_000_000


def test_bad_cert_extensions_do_not_parse(pki: LabPki) -> None:
    der = pki.served_chain(host(Behaviour.BAD_CERT))[0].public_bytes(Encoding.DER)
    leaf = x509.load_der_x509_certificate(der)
    with pytest.raises(ValueError):
        _ = leaf.extensions
    assert BAD_CERT_NAME.encode() in der and MX[0].encode() not in der


def test_contexts_are_cached_by_behaviour_and_names(pki: LabPki) -> None:
    a = pki.server_context(host(Behaviour.VALID, ("a.pki.test",)))
    assert pki.server_context(
        LabHost("127.77.9.2", Behaviour.VALID, ("a.pki.test",), "other banner")) is a
    assert pki.server_context(host(Behaviour.VALID, ("b.pki.test",))) is not a
    assert pki.server_context(host(Behaviour.EXPIRED, ("a.pki.test",))) is not a
    # behaviours without a TLS profile of their own share the valid one
    assert pki.server_context(host(Behaviour.MULTILINE_GREETING, ("a.pki.test",))) is a
    # nameless certificates: one context whatever the names
    assert (pki.server_context(host(Behaviour.WRONG_NAME, ("x.test",)))
            is pki.server_context(host(Behaviour.WRONG_NAME, ("y.test",))))


def test_context_cache_is_bounded(tmp_path: Path) -> None:
    small = LabPki.create(tmp_path, NOW, cache_size=3)
    first = small.server_context(host(Behaviour.VALID, ("n0.test",)))
    leaf = small.served_chain(host(Behaviour.VALID, ("n0.test",)))[0]
    for i in range(1, 5):
        small.server_context(host(Behaviour.VALID, (f"n{i}.test",)))
    assert small.server_context(host(Behaviour.VALID, ("n0.test",))) is not first
    # rebuilt after eviction, yet the very same certificate
    assert small.served_chain(host(Behaviour.VALID, ("n0.test",)))[0] == leaf
    assert len(list(tmp_path.glob("tmp*"))) == 0  # key files do not linger
