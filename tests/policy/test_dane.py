"""DANE: TLSA matching against presented chains (RFC 7671/7672), statuses, classes, the lab."""

from __future__ import annotations

import asyncio
import hashlib
import warnings
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any, cast

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.utils import CryptographyDeprecationWarning
from helpers.pki import dsa_key

from scanner.config import Timeouts
from scanner.dns.policy_resolver import PolicyResolver
from scanner.lab.population.pki_certs import LeafKey, build_ca, build_leaf, derive_leaf_key
from scanner.model.policy_status import DaneClass, DaneStatus, TlsaStatus
from scanner.policy.dane import (
    ChainKeys,
    Tlsa,
    TlsaLookup,
    chain_keys,
    dane_class,
    dane_status,
    lookup_tlsa,
)
from scanner.scan.pipeline import Scan
from scanner.sink.dataset import read_dataset
from scanner.sink.schema import TRUTH_EDGE_COLUMNS
from scanner.tls.lru import LruMemo

NOW = datetime(2025, 1, 1, tzinfo=UTC)
DER = serialization.Encoding.DER


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(DER, serialization.PublicFormat.SubjectPublicKeyInfo)


@pytest.fixture(scope="module")
def chain() -> tuple[x509.Certificate, ...]:
    root = build_ca("Test Root", NOW, issuer=None)
    inter = build_ca("Test Intermediate", NOW, issuer=root)
    leaf = build_leaf(("mx.a.test",), LeafKey(derive_leaf_key(inter)), inter,
                      (NOW - timedelta(days=1), NOW + timedelta(days=30)))
    other = build_ca("Unrelated CA", NOW, issuer=None)
    return leaf, inter.cert, root.cert, other.cert


@pytest.fixture(scope="module")
def keys(chain: tuple[x509.Certificate, ...]) -> ChainKeys:
    found = chain_keys([c.public_bytes(DER) for c in chain])
    assert found is not None
    return found


def test_chain_keys_are_derived_once_per_chain(chain: Any, keys: ChainKeys) -> None:
    ders = [c.public_bytes(DER) for c in chain]
    shas = tuple(hashlib.sha256(d).hexdigest() for d in ders)
    cache: LruMemo[tuple[str, ...], ChainKeys | None] = LruMemo(2)
    first = cache.get(shas, partial(chain_keys, ders))
    assert first == keys
    # a second address with the same chain
    assert cache.get(shas, partial(chain_keys, list(ders))) is first and cache.computed == 1
    cache.get(shas[:1], partial(chain_keys, ders[:1]))
    # a third chain: the first, least recent, is evicted
    cache.get(shas[1:2], partial(chain_keys, ders[1:2]))
    assert cache.computed == 3 and len(cache) == 2
    assert cache.get(shas, partial(chain_keys, ders)) == keys and cache.computed == 4


def _data(cert: x509.Certificate, selector: int, mtype: int) -> bytes:
    raw = cert.public_bytes(DER) if selector == 0 else _spki(cert)
    return {0: raw, 1: hashlib.sha256(raw).digest(), 2: hashlib.sha512(raw).digest()}[mtype]


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ee_matches_the_leaf_only(keys: ChainKeys, chain: Any, selector: int,
                                       mtype: int) -> None:
    leaf, inter = chain[0], chain[1]
    assert keys.matches(Tlsa(3, selector, mtype, _data(leaf, selector, mtype)))
    assert not keys.matches(Tlsa(3, selector, mtype, _data(inter, selector, mtype)))


@pytest.mark.parametrize("selector", [0, 1])
@pytest.mark.parametrize("mtype", [0, 1, 2])
def test_dane_ta_matches_issuers_the_leaf_chains_to(keys: ChainKeys, chain: Any, selector: int,
                                                     mtype: int) -> None:
    leaf, inter, root, unrelated = chain
    assert keys.matches(Tlsa(2, selector, mtype, _data(inter, selector, mtype)))
    assert keys.matches(Tlsa(2, selector, mtype, _data(root, selector, mtype)))
    assert not keys.matches(Tlsa(2, selector, mtype, _data(leaf, selector, mtype)))
    # sent in the chain, but the chain does not lead to it: no trust anchor
    assert not keys.matches(Tlsa(2, selector, mtype, _data(unrelated, selector, mtype)))


def test_truncated_or_wrong_digests_do_not_match(keys: ChainKeys, chain: Any) -> None:
    digest = _data(chain[0], 1, 1)
    assert not keys.matches(Tlsa(3, 1, 1, digest[:10]))
    assert not keys.matches(Tlsa(3, 1, 1, digest[:-1] + bytes([digest[-1] ^ 1])))
    assert not keys.matches(Tlsa(3, 1, 2, digest))  # a SHA-256 digest under type SHA-512
    assert chain_keys([]) is None


def test_unparseable_certificate_ends_the_linked_chain(chain: Any) -> None:
    found = chain_keys([chain[0].public_bytes(DER), b"not a certificate",
                        chain[1].public_bytes(DER)])
    assert found is not None
    assert found.matches(Tlsa(3, 1, 1, _data(chain[0], 1, 1)))
    assert not found.matches(Tlsa(2, 0, 1, _data(chain[1], 0, 1)))


_EE = Tlsa(3, 1, 1, b"\x01" * 32)
_TA = Tlsa(2, 0, 1, b"\x02" * 32)


class _FakeKeys:
    """Keys that match exactly the given records."""

    def __init__(self, *wanted: Tlsa) -> None:
        self.wanted = wanted

    def matches(self, record: Tlsa) -> bool:
        return record in self.wanted


def _Keys(*wanted: Tlsa) -> ChainKeys:  # noqa: N802 - reads like the record it stands for
    return cast(ChainKeys, _FakeKeys(*wanted))


SECURE = TlsaStatus.SECURE


@pytest.mark.parametrize(("lookup", "keys", "tls_ok", "name_match", "expected"), [
    (TlsaLookup(TlsaStatus.NONE), _Keys(_EE), True, True, DaneStatus.NO_TLSA),
    (TlsaLookup(TlsaStatus.DNS_ERROR), _Keys(_EE), True, True, DaneStatus.DNS_ERROR),
    (TlsaLookup(TlsaStatus.INSECURE, (_EE,)), _Keys(_EE), True, True, DaneStatus.INSECURE),
    (TlsaLookup(SECURE, (_EE,)), _Keys(_EE), True, False, DaneStatus.VALID),  # EE: no names
    (TlsaLookup(SECURE, (_TA,)), _Keys(_TA), True, True, DaneStatus.VALID),
    (TlsaLookup(SECURE, (_TA,)), _Keys(_TA), True, False, DaneStatus.MISMATCH),  # TA: names
    (TlsaLookup(SECURE, (_TA, _EE)), _Keys(_EE), True, None, DaneStatus.VALID),
    (TlsaLookup(SECURE, (_EE,)), _Keys(), True, True, DaneStatus.MISMATCH),
    (TlsaLookup(SECURE, (_EE,)), None, False, None, DaneStatus.NO_TLS),
    (TlsaLookup(SECURE, (Tlsa(1, 1, 1, b"x" * 32), Tlsa(3, 2, 1, b"x"), Tlsa(3, 1, 9, b"x"))),
     _Keys(), True, True, DaneStatus.UNUSABLE),
])
def test_dane_status(lookup: TlsaLookup, keys: ChainKeys | None, tls_ok: bool,
                     name_match: bool | None, expected: DaneStatus) -> None:
    assert dane_status(lookup, keys, tls_ok, name_match) is expected


D = DaneStatus


@pytest.mark.parametrize(("statuses", "expected"), [
    ([], DaneClass.NOT_APPLICABLE),
    ([D.NO_TLSA, D.NO_TLSA], DaneClass.NONE),
    ([D.VALID, D.VALID], DaneClass.VALID),
    ([D.VALID, D.NO_TLSA], DaneClass.PARTIAL),
    ([D.VALID, D.INSECURE], DaneClass.PARTIAL),
    ([D.INSECURE, D.NO_TLSA], DaneClass.INSECURE),
    ([D.VALID, D.MISMATCH], DaneClass.BROKEN),
    ([D.NO_TLS], DaneClass.BROKEN),
    ([D.DNS_ERROR, D.NO_TLSA], DaneClass.BROKEN),
    ([D.UNUSABLE], DaneClass.NONE),
])
def test_dane_class(statuses: list[DaneStatus], expected: DaneClass) -> None:
    assert dane_class(statuses) is expected


@pytest.mark.parametrize(("mx", "status", "n_records"), [
    ("mx.dane-ee-spki-sha256.test", TlsaStatus.SECURE, 1),
    ("mx.dane-insecure.test", TlsaStatus.INSECURE, 1),
    ("mx.dane-servfail.test", TlsaStatus.DNS_ERROR, 0),
    ("mx.plain-mail.test", TlsaStatus.NONE, 0),
    ("mx.nowhere.test", TlsaStatus.NONE, 0),
])
async def test_lab_tlsa_lookup_reports_the_ad_bit(fake_internet: Any, mx: str,
                                                   status: TlsaStatus, n_records: int) -> None:
    resolver = PolicyResolver((fake_internet.resolver,), Timeouts(dns_query=0.5, dns_tries=2))
    found = await lookup_tlsa(mx, resolver)
    assert (found.status, len(found.records)) == (status, n_records)


# -- the whole scan: every domain_mx edge against the lab's truth -----------------------------

@pytest.fixture(scope="module")
def mixed_outdir(tmp_path_factory: pytest.TempPathFactory, fast_config_factory: Any) -> Path:
    config = fast_config_factory(tmp_path_factory.mktemp("dane") / "out")
    asyncio.run(Scan(config).run())
    output: Path = config.output
    return output


@pytest.fixture(scope="module")
def mixed_edges(mixed_outdir: Path) -> pa.Table:
    return read_dataset(mixed_outdir, "domain_mx")


def _keyed(table: pa.Table) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {(r["domain"], r["mx_hostname"], r["ip"]): r
            for r in table.select(list(TRUTH_EDGE_COLUMNS)).to_pylist()}


def test_mixed_scan_edges_equal_truth(mixed_edges: pa.Table, fake_internet: Any) -> None:
    truth = _keyed(pq.read_table(Path(fake_internet.directory) / "truth" / "domain_mx.parquet"))
    scan = _keyed(mixed_edges)
    assert truth.keys() == scan.keys()
    diff = [f"{k} {c}: scan={scan[k][c]!r} truth={truth[k][c]!r}"
            for k in sorted(truth, key=str) for c in TRUTH_EDGE_COLUMNS
            if scan[k][c] != truth[k][c]]
    assert not diff, "\n".join(diff[:40])
    statuses = {r["dane_status"] for r in truth.values()}
    # the lab has every case a scan with the policy stage gives (not_queried: --no-policies,
    # tests/e2e/test_no_policies.py)
    assert statuses >= {s.value for s in DaneStatus} - {DaneStatus.NOT_QUERIED.value}


@pytest.mark.parametrize(("domain", "dane", "status"), [
    ("dane-ee-spki-sha256.test", "valid", "valid"),
    ("dane-ta-cert-sha256.test", "valid", "valid"),
    ("dane-ee-expired.test", "valid", "valid"),  # DANE-EE ignores dates
    ("dane-ee-wrong-name.test", "valid", "valid"),  # ... and names
    ("dane-ta-wrong-name.test", "broken", "mismatch"),
    ("dane-mismatch.test", "broken", "mismatch"),
    ("dane-no-tls.test", "broken", "no_tls"),
    ("dane-insecure.test", "insecure", "insecure"),
    ("dane-servfail.test", "broken", "dns_error"),
    ("dane-pkix-only.test", "none", "unusable"),
])
def test_lab_dane_cases(mixed_edges: pa.Table, fake_internet: Any, domain: str, dane: str,
                        status: str) -> None:
    assert fake_internet.expected(domain)["dane_class"] == dane
    edges = [r for r in mixed_edges.to_pylist() if r["domain"] == domain]
    assert [r["dane_status"] for r in edges] == [status]


# -- scanner stats: adoption tables from the same scan ----------------------------------------

def test_stats_adoption_tables_equal_truth(mixed_outdir: Path, fake_internet: Any,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    from scanner.analysis.policy import policy_stats
    from scanner.commands.cli import main

    stats = policy_stats(mixed_outdir)
    assert stats is not None
    rows = [r for r in fake_internet.truth_domains().to_pylist() if r["status"] != "invalid"]
    mail = [r for r in rows if r["starttls_class"] in ("all", "some", "none")]
    assert stats["domains_queried"] == len(rows) and stats["mail_domains"] == len(mail)
    assert stats["adoption"]["spf_valid"] == sum(r["spf_status"] == "valid" for r in rows)
    assert stats["adoption"]["tlsrpt_valid"] == sum(r["tlsrpt_status"] == "valid" for r in rows)
    assert stats["mail_adoption"]["dane_valid"] == sum(r["dane_class"] == "valid" for r in mail)
    assert stats["mail_adoption"]["mta_sts_enforce"] == sum(
        r["mta_sts_mode"] == "enforce" for r in mail)
    assert stats["mail_adoption"]["strict_capable"] == sum(r["strict_capable"] for r in mail)
    assert main(["stats", str(mixed_outdir)]) == 0
    out = capsys.readouterr().out
    assert "mail_policy_adoption" in out and "strict_capable" in out and "dane_class" in out


def test_dane_ee_matches_a_dsa_leaf_without_warnings() -> None:
    # cryptography 51 deprecated DSA and warns when a DSA key is read; tests make warnings
    # errors, so a key read outside the scanner's quiet block would fail here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CryptographyDeprecationWarning)
        key = dsa_key(2048)
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "mx.dsa.test")])
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
                .public_key(key.public_key()).serial_number(7)
                .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=9))
                .sign(key, hashes.SHA256()))
        spki = _spki(cert)
    found = chain_keys([cert.public_bytes(DER)])
    assert found is not None
    assert found.matches(Tlsa(3, 1, 1, hashlib.sha256(spki).digest()))
    assert not found.matches(Tlsa(3, 1, 1, hashlib.sha256(spki + b"x").digest()))
