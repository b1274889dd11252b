"""The schema module and the record-to-row mapping: every record field has a column."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

import pyarrow as pa
import pytest

import scanner.model.records as records
from scanner.model.policy_status import (
    DaneClass,
    DaneStatus,
    RecordStatus,
    StsFetchStatus,
    StsMode,
    TlsaStatus,
)
from scanner.model.records import (
    CertificateRecord,
    ChainVerdict,
    DomainMxRecord,
    DomainRecord,
    HostRecord,
    SmtpProbe,
    TlsFacts,
)
from scanner.model.status import (
    ChainStatus,
    ConnectStatus,
    DnsStatus,
    HandshakeStatus,
    HostOutcome,
    MxSource,
    ReplyStatus,
    StartTlsClass,
    StartTlsStatus,
)
from scanner.sink.rows import (
    FIELD_COLUMNS,
    RECORD_TYPES,
    ColumnBuffer,
    append_certificate,
    append_domain,
    append_domain_mx,
    append_host,
    clean_text,
)
from scanner.sink.schema import DATASETS, SCHEMA_VERSION

T0 = datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC)


def _leaf_types(cls: type, prefix: str = "") -> dict[str, Any]:
    """Dotted path -> annotated type of every leaf field, descending into nested records."""
    hints = typing.get_type_hints(cls, vars(records))
    leaves: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        nested = hint if dataclasses.is_dataclass(hint) else (
            inner[0] if len(inner) == 1 and dataclasses.is_dataclass(inner[0]) else None)
        if isinstance(nested, type) and nested.__module__ == records.__name__:
            leaves.update(_leaf_types(nested, f"{prefix}{f.name}."))
        else:
            leaves[f"{prefix}{f.name}"] = hint
    return leaves


def _column_of(dataset: str, path: str) -> str:
    return FIELD_COLUMNS[dataset].get(path, path)


def _is_status(hint: Any) -> bool:
    candidates = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    return any(isinstance(c, type) and issubclass(c, StrEnum) for c in candidates)


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_record_field_maps_to_a_column(dataset: str) -> None:
    names = set(DATASETS[dataset].names)
    missing = [p for p in _leaf_types(RECORD_TYPES[dataset]) if _column_of(dataset, p) not in names]
    assert missing == [], f"{dataset}: record fields without a column: {missing}"


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_every_column_comes_from_exactly_one_field(dataset: str) -> None:
    sources = [_column_of(dataset, p) for p in _leaf_types(RECORD_TYPES[dataset])]
    assert sorted(sources) == sorted(DATASETS[dataset].names)


def test_field_column_renames_name_real_fields() -> None:
    for dataset, renames in FIELD_COLUMNS.items():
        assert set(renames) <= set(_leaf_types(RECORD_TYPES[dataset])), dataset


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_schema_carries_version_and_dataset_metadata(dataset: str) -> None:
    meta = DATASETS[dataset].metadata
    assert meta[b"scanner.schema_version"] == SCHEMA_VERSION.encode()
    assert meta[b"scanner.dataset"] == dataset.encode()


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_status_fields_are_dictionary_encoded_columns(dataset: str) -> None:
    schema = DATASETS[dataset]
    for path, hint in _leaf_types(RECORD_TYPES[dataset]).items():
        if _is_status(hint):
            column = _column_of(dataset, path)
            assert pa.types.is_dictionary(schema.field(column).type), column


@pytest.mark.parametrize(("dataset", "column"), [
    ("domains", "status"), ("domain_mx", "address_status"), ("hosts", "tls_version"),
    ("hosts", "tls_cipher"), ("hosts", "kex_group"), ("certificates", "key_type"),
    ("certificates", "signature_algorithm"),
])
def test_vocabulary_strings_are_dictionary_encoded(dataset: str, column: str) -> None:
    assert pa.types.is_dictionary(DATASETS[dataset].field(column).type)


def test_timestamps_are_utc_microseconds() -> None:
    for schema in DATASETS.values():
        for f in schema:
            if pa.types.is_timestamp(f.type):
                assert f.type == pa.timestamp("us", tz="UTC"), f.name


# -- the mapping carries values, not just names ----------------------------------------------

def _full_host(chain: ChainVerdict) -> HostRecord:
    probe = SmtpProbe(
        ip="192.0.2.7", port=25, started_at=T0, connect_status=ConnectStatus.OK,
        greeting_status=ReplyStatus.OK, ehlo_status=ReplyStatus.OK,
        starttls_status=StartTlsStatus.OK, handshake_status=HandshakeStatus.OK,
        ehlo_tls_status=ReplyStatus.REJECTED_5XX, greeting_code=220, banner="mx ESMTP\nsecond",
        ehlo_code=250, ehlo_lines=("SIZE 100", "STARTTLS"), ehlo_extensions=("SIZE", "STARTTLS"),
        starttls_offered=True, starttls_code=220, starttls_reply="2.0.0 go ahead",
        ehlo_tls_extensions=("SIZE",),
        tls=TlsFacts("TLSv1.2", "DHE-RSA-AES128-GCM-SHA256", True, "dhe", 1024),
        chain_der=(b"leaf", b"inter", b"root"), tls_alert="none", connect_ms=1, greeting_ms=2,
        ehlo_ms=3, starttls_ms=4, handshake_ms=5, total_ms=15, error_detail="after tls")
    return HostRecord(probe=probe, outcome=HostOutcome.TLS_OK, mx_hostnames=("mx1.a.test",),
                      leaf_sha256="aa" * 32, chain_sha256=("aa" * 32, "bb" * 32), chain=chain,
                      leaf_names=("mx1.a.test", "*.a.test"))


def _full_records() -> dict[str, Any]:
    domain = DomainRecord(
        line_no=7, input=" A.test. ", source="list.txt", domain="a.test", domain_unicode="a.test",
        status="ok", reason="none", mx_source=MxSource.MX, mx_hostnames=("mx1.a.test",),
        n_mx_hosts=1, n_addresses=2, n_pairs=3, n_reachable=4, n_starttls=5, n_tls=6, n_strict=7,
        starttls_class=StartTlsClass.SOME, strict_class=StartTlsClass.NONE, dns_ms=12,
        finished_at=T0, spf_status=RecordStatus.VALID, spf_all="-all",
        dmarc_status=RecordStatus.MULTIPLE, dmarc_policy="reject",
        tlsrpt_status=RecordStatus.INVALID, mta_sts_txt_status=RecordStatus.DNS_ERROR,
        mta_sts_id="id1", mta_sts_fetch_status=StsFetchStatus.TLS_ERROR,
        mta_sts_mode=StsMode.TESTING, mta_sts_max_age=86400, mta_sts_mx_patterns=("*.a.test",),
        mta_sts_mx_all_match=False, mta_sts_delivery_ok=True, dane_class=DaneClass.PARTIAL,
        n_dane_valid=3, strict_capable=True, first_line_no=3, first_source="first.txt")
    edge = DomainMxRecord(
        domain="a.test", mx_hostname="mx1.a.test", preference=10, ip="192.0.2.7", port=25,
        mx_source=MxSource.MX, outcome=HostOutcome.TLS_OK, smtp_ok=True, starttls_offered=True,
        tls_ok=False, chain_valid=True, name_match=False, strict_ok=False,
        address_status=DnsStatus.TIMEOUT, tlsa_status=TlsaStatus.SECURE,
        tlsa_records=("3 1 1 ab",), dane_status=DaneStatus.MISMATCH, mta_sts_mx_match=True,
        mta_sts_ok=False)
    cert = CertificateRecord(
        sha256="cc" * 32, der=b"\x30\x82der", parse_ok=True, subject="CN=mx1.a.test",
        issuer="CN=Lab CA", common_name="mx1.a.test", san_dns=("mx1.a.test",),
        san_ip=("192.0.2.7",), serial="0a", not_before=T0, not_after=T0.replace(year=2025),
        key_type="rsa", key_bits=1024, curve="none", signature_algorithm="sha1WithRSAEncryption",
        self_signed=False, is_ca=False, parse_error="no error")
    host = _full_host(ChainVerdict(ChainStatus.EXPIRED, False, "expired 2023"))
    return {"domains": domain, "domain_mx": edge, "hosts": host, "certificates": cert}


_APPEND: dict[str, Callable[[ColumnBuffer, Any], None]] = {
    "domains": append_domain, "domain_mx": append_domain_mx, "hosts": append_host,
    "certificates": append_certificate,
}


def _resolve(rec: Any, path: str) -> Any:
    for part in path.split("."):
        rec = getattr(rec, part)
    return rec


def _expected(path: str, value: Any) -> Any:
    if path == "probe.chain_der":
        return len(value)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, tuple):
        return list(value)
    return value


@pytest.mark.parametrize("dataset", list(DATASETS))
def test_each_field_value_lands_in_its_column(dataset: str) -> None:
    rec = _full_records()[dataset]
    buf = ColumnBuffer(dataset)
    _APPEND[dataset](buf, rec)
    row = buf.to_table().to_pylist()[0]
    for path in _leaf_types(RECORD_TYPES[dataset]):
        column = _column_of(dataset, path)
        assert row[column] == _expected(path, _resolve(rec, path)), column


def test_valid_chain_has_no_verify_error() -> None:
    buf = ColumnBuffer("hosts")
    append_host(buf, _full_host(ChainVerdict(ChainStatus.VALID, True, None)))
    row = buf.to_table().to_pylist()[0]
    assert (row["chain_valid"], row["verify_error"]) == (True, None)


def test_host_without_tls_or_chain_has_null_tls_columns() -> None:
    probe = SmtpProbe(ip="192.0.2.9", port=25, started_at=T0,
                      connect_status=ConnectStatus.REFUSED, total_ms=3)
    buf = ColumnBuffer("hosts")
    append_host(buf, HostRecord(probe=probe, outcome=HostOutcome.REFUSED, mx_hostnames=(),
                                leaf_sha256=None, chain_sha256=(), chain=None))
    row = buf.to_table().to_pylist()[0]
    assert row["greeting_status"] == "not_reached"
    tls_columns = ("tls_version", "kex_bits", "chain_valid", "verify_error")
    assert [row[c] for c in tls_columns] == [None] * 4
    assert row["chain_length"] == 0 and row["leaf_names"] == []


def test_unset_finished_at_is_null_and_naive_times_are_utc() -> None:
    rec = _full_records()["domains"]
    buf = ColumnBuffer("domains")
    append_domain(buf, dataclasses.replace(rec, finished_at=datetime.min))
    append_domain(buf, dataclasses.replace(rec, finished_at=datetime(2024, 1, 2, 3, 4)))
    assert buf.to_table().column("finished_at").to_pylist() == [
        None, datetime(2024, 1, 2, 3, 4, tzinfo=UTC)]


@pytest.mark.parametrize(("text", "cleaned"), [
    ("plain", "plain"),
    ("nul\x00inside", "nul\x00inside"),
    ("caf\udcc3\udca9", "café"),  # UTF-8 bytes decoded with surrogateescape come back
    ("bad \udcff byte", "bad \ufffd byte"),
    ("lone \ud800 high", "lone \ufffd high"),
])
def test_clean_text_makes_server_strings_utf8(text: str, cleaned: str) -> None:
    assert clean_text(text) == cleaned
    cleaned.encode("utf-8")


def test_server_strings_with_surrogates_and_nul_are_written() -> None:
    host = _full_host(ChainVerdict(ChainStatus.SELF_SIGNED, False, "self \udce9"))
    probe = dataclasses.replace(host.probe, banner="220 \x00\udcff", ehlo_lines=("X\udcc3\udca9",))
    buf = ColumnBuffer("hosts")
    append_host(buf, dataclasses.replace(host, probe=probe))
    row = buf.to_table().to_pylist()[0]
    assert row["banner"] == "220 \x00\ufffd"
    assert row["ehlo_lines"] == ["Xé"]
    assert row["verify_detail"] == "self \ufffd"


def test_column_buffer_batch_has_the_exact_schema() -> None:
    rec = _full_records()["domain_mx"]
    buf = ColumnBuffer("domain_mx")
    for _ in range(3):
        append_domain_mx(buf, rec)
    batch = buf.to_batch()
    assert len(buf) == 3 and batch.num_rows == 3
    assert batch.schema.equals(DATASETS["domain_mx"], check_metadata=True)
    buf.clear()
    assert len(buf) == 0 and buf.to_table().num_rows == 0
