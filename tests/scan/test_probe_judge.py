"""HostAnalyser.judge: each certificate parsed and written once, leaf names kept for reuse."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from helpers.pki import NOW, Pki, der, make_leaf

from scanner.config import ScanConfig
from scanner.model.records import SmtpProbe
from scanner.model.status import ConnectStatus, HandshakeStatus, ReplyStatus, StartTlsStatus
from scanner.scan import probe as probe_module
from scanner.scan.probe import HostAnalyser
from scanner.tls import certs as certs_module
from scanner.tls.context import make_probe_context
from scanner.tls.verify import ChainVerifier


def _analyser(tmp_path: Path, pki: Pki) -> HostAnalyser:  # noqa: F811
    return HostAnalyser(ScanConfig(output=tmp_path), make_probe_context(),
                        ChainVerifier([pki.anchors], False, NOW))


def _probe(ip: str, chain: tuple[bytes, ...]) -> SmtpProbe:
    return SmtpProbe(ip=ip, port=25, started_at=datetime.now(UTC),
                     connect_status=ConnectStatus.OK, greeting_status=ReplyStatus.OK,
                     ehlo_status=ReplyStatus.OK, starttls_offered=True,
                     starttls_status=StartTlsStatus.OK, handshake_status=HandshakeStatus.OK,
                     banner="220 mx ESMTP", chain_der=chain)


def test_a_shared_chain_is_written_once_and_named_every_time(tmp_path: Path,
                                                             pki: Pki) -> None:  # noqa: F811
    analyser = _analyser(tmp_path, pki)
    chain = (make_leaf(pki.inter, names=("mx.shared.test",)), der(pki.inter))
    first, certs = analyser.judge(_probe("192.0.2.1", chain), ("mx.shared.test",))
    again, more = analyser.judge(_probe("192.0.2.2", chain), ("mx.shared.test",))
    assert [c.der for c in certs] == list(chain) and more == []
    assert first.leaf_names == again.leaf_names == ("mx.shared.test",)
    assert again.chain is not None and again.chain.valid


def test_leaf_names_come_back_after_eviction(tmp_path: Path, pki: Pki,  # noqa: F811
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(probe_module, "LEAF_NAMES_CACHE_SIZE", 1)
    analyser = _analyser(tmp_path, pki)
    a = (make_leaf(pki.inter, names=("mx.a.test", "alt.a.test")), der(pki.inter))
    b = (make_leaf(pki.inter, names=("mx.b.test",)), der(pki.inter))
    names = [analyser.judge(_probe(f"192.0.2.{i}", chain), ())[0].leaf_names
             for i, chain in enumerate((a, b, a, b), start=1)]
    assert names == [("mx.a.test", "alt.a.test"), ("mx.b.test",)] * 2


def test_certificates_written_before_a_resume_are_not_written_again(tmp_path: Path,
                                                                    pki: Pki) -> None:  # noqa: F811
    chain = (make_leaf(pki.inter, names=("mx.resumed.test",)), der(pki.inter))
    before, certs = _analyser(tmp_path, pki).judge(_probe("192.0.2.1", chain), ())
    resumed = _analyser(tmp_path, pki)
    resumed.remember_written([c.sha256 for c in certs])
    after, new = resumed.judge(_probe("192.0.2.1", chain), ())
    assert new == [] and after.leaf_names == before.leaf_names == ("mx.resumed.test",)


def test_a_new_self_signed_leaf_has_its_signature_checked_once(
        tmp_path: Path, pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # parsed for its row, then its chain judged: one public-key operation, not two
    checked: list[bytes] = []
    real = certs_module.signature_verifies

    def counting(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
        checked.append(cert.signature)
        return real(cert, issuer)

    monkeypatch.setattr(certs_module, "signature_verifies", counting)
    leaf = make_leaf(None, names=("mx.selfsigned.test",))
    record, written = _analyser(tmp_path, pki).judge(_probe("192.0.2.1", (leaf,)), ())
    assert written[0].self_signed is True
    assert record.chain is not None and record.chain.status.value == "self_signed"
    assert len(checked) == 1
