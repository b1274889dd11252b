"""Record-to-row conversion for the schemas in schema.py, column by column.

A ColumnBuffer keeps one Python list per column (no dict per row) and becomes a pyarrow Table with
the exact schema. Fields map to the column of the same name, except those in FIELD_COLUMNS
(dotted paths inside the record); test_schema.py checks that every record field has a column.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from scanner.model.records import CertificateRecord, DomainMxRecord, DomainRecord, HostRecord
from scanner.sink.schema import DATASETS

#: The record each dataset is made of.
RECORD_TYPES: dict[str, type] = {
    "domains": DomainRecord,
    "domain_mx": DomainMxRecord,
    "hosts": HostRecord,
    "certificates": CertificateRecord,
}

#: Record fields (dotted paths from the record) stored under another column name.
FIELD_COLUMNS: dict[str, dict[str, str]] = {
    "domains": {},
    "domain_mx": {},
    "hosts": {
        **{f"probe.{name}": name for name in (
            "ip", "port", "started_at", "connect_status", "greeting_status", "ehlo_status",
            "starttls_status", "handshake_status", "ehlo_tls_status", "greeting_code", "banner",
            "ehlo_code", "ehlo_lines", "ehlo_extensions", "starttls_offered", "starttls_code",
            "starttls_reply", "ehlo_tls_extensions", "tls_alert", "connect_ms", "greeting_ms",
            "ehlo_ms", "starttls_ms", "handshake_ms", "total_ms", "error_detail")},
        "probe.tls.version": "tls_version",
        "probe.tls.cipher": "tls_cipher",
        "probe.tls.forward_secrecy": "forward_secrecy",
        "probe.tls.kex_group": "kex_group",
        "probe.tls.kex_bits": "kex_bits",
        "probe.chain_der": "chain_length",  # the DER itself lives in `certificates`
        "chain.status": "verify_error",  # None when the chain is valid
        "chain.valid": "chain_valid",
        "chain.detail": "verify_detail",
    },
    "certificates": {},
}

#: Policy columns (issue 7) copied field by field under their own name.
_DOMAIN_POLICY_COLUMNS = (
    "spf_status", "spf_all", "dmarc_status", "dmarc_policy", "tlsrpt_status",
    "mta_sts_txt_status", "mta_sts_id", "mta_sts_fetch_status", "mta_sts_mode",
    "mta_sts_max_age", "mta_sts_mx_patterns", "mta_sts_mx_all_match", "mta_sts_delivery_ok",
    "dane_class", "n_dane_valid", "strict_capable")
_DEEP_COLUMNS = ("deep_checked", "tls_versions_accepted", "tls_versions_refused",
                 "dhe_accepted", "dhe_bits", "dhe_group", "dhe_prime_id")
_EDGE_POLICY_COLUMNS = ("tlsa_status", "tlsa_records", "dane_status", "mta_sts_mx_match",
                        "mta_sts_ok")

# surrogates that surrogateescape did not produce (it only makes U+DC80..U+DCFF)
_FOREIGN_SURROGATE = re.compile("[\ud800-\udc7f\udd00-\udfff]")


def clean_text(text: str) -> str:
    """Text that encodes as UTF-8: escaped bytes are re-decoded, other lone surrogates replaced."""
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        pass
    # surrogateescape round trip: a server's raw UTF-8 bytes come back as the characters they were
    escaped = _FOREIGN_SURROGATE.sub("\ufffd", text).encode("utf-8", "surrogateescape")
    return escaped.decode("utf-8", "replace")


def _clean_value(value: Any) -> Any:
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list | tuple):
        return [_clean_value(v) for v in value]
    return value


def _utc(value: datetime | None) -> datetime | None:
    """An aware UTC time; datetime.min (the records' "not set") becomes None."""
    if value is None or value == datetime.min:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)  # records promise UTC; pyarrow would assume it anyway
    return value


class ColumnBuffer:
    """Rows of one dataset held as one list per column, until they become a Table."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.schema: pa.Schema = DATASETS[dataset]
        self.columns: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self._first = self.columns[self.schema.names[0]]

    def __len__(self) -> int:
        return len(self._first)

    def clear(self) -> None:
        """Drop every buffered row."""
        for values in self.columns.values():
            values.clear()

    def _array(self, field: pa.Field) -> pa.Array:
        values = self.columns[field.name]
        try:
            return pa.array(values, type=field.type)
        except UnicodeEncodeError:
            # server text decoded with errors="surrogateescape": only pay for cleaning when needed
            return pa.array([_clean_value(v) for v in values], type=field.type)

    def to_table(self) -> pa.Table:
        """The buffered rows as a Table with the dataset's exact schema (metadata included)."""
        return pa.Table.from_arrays([self._array(f) for f in self.schema], schema=self.schema)

    def to_batch(self) -> pa.RecordBatch:
        """The buffered rows as one RecordBatch with the dataset's exact schema."""
        return pa.RecordBatch.from_arrays([self._array(f) for f in self.schema],
                                          schema=self.schema)


def append_domain(buf: ColumnBuffer, rec: DomainRecord) -> None:
    """One `domains` row."""
    c = buf.columns
    c["line_no"].append(rec.line_no)
    c["input"].append(rec.input)
    c["source"].append(rec.source)
    c["domain"].append(rec.domain)
    c["domain_unicode"].append(rec.domain_unicode)
    c["status"].append(rec.status)
    c["reason"].append(rec.reason)
    c["first_source"].append(rec.first_source)
    c["first_line_no"].append(rec.first_line_no)
    c["mx_source"].append(rec.mx_source)
    c["mx_hostnames"].append(rec.mx_hostnames)
    c["n_mx_hosts"].append(rec.n_mx_hosts)
    c["n_addresses"].append(rec.n_addresses)
    c["n_pairs"].append(rec.n_pairs)
    c["n_reachable"].append(rec.n_reachable)
    c["n_starttls"].append(rec.n_starttls)
    c["n_tls"].append(rec.n_tls)
    c["n_strict"].append(rec.n_strict)
    c["starttls_class"].append(rec.starttls_class)
    c["strict_class"].append(rec.strict_class)
    c["dns_ms"].append(rec.dns_ms)
    c["finished_at"].append(_utc(rec.finished_at))
    for name in _DOMAIN_POLICY_COLUMNS:
        c[name].append(getattr(rec, name))


def append_domain_mx(buf: ColumnBuffer, rec: DomainMxRecord) -> None:
    """One `domain_mx` edge."""
    c = buf.columns
    c["domain"].append(rec.domain)
    c["mx_hostname"].append(rec.mx_hostname)
    c["preference"].append(rec.preference)
    c["ip"].append(rec.ip)
    c["port"].append(rec.port)
    c["mx_source"].append(rec.mx_source)
    c["address_status"].append(rec.address_status)
    c["outcome"].append(rec.outcome)
    c["smtp_ok"].append(rec.smtp_ok)
    c["starttls_offered"].append(rec.starttls_offered)
    c["tls_ok"].append(rec.tls_ok)
    c["chain_valid"].append(rec.chain_valid)
    c["name_match"].append(rec.name_match)
    c["strict_ok"].append(rec.strict_ok)
    for name in _EDGE_POLICY_COLUMNS:
        c[name].append(getattr(rec, name))


def append_host(buf: ColumnBuffer, rec: HostRecord) -> None:
    """One `hosts` row: the SMTP probe, its TLS facts and the chain verdict, flattened."""
    c = buf.columns
    p = rec.probe
    tls = p.tls
    chain = rec.chain
    c["ip"].append(p.ip)
    c["port"].append(p.port)
    c["mx_hostnames"].append(rec.mx_hostnames)
    c["started_at"].append(_utc(p.started_at))
    c["outcome"].append(rec.outcome)
    c["connect_status"].append(p.connect_status)
    c["greeting_status"].append(p.greeting_status)
    c["ehlo_status"].append(p.ehlo_status)
    c["starttls_status"].append(p.starttls_status)
    c["handshake_status"].append(p.handshake_status)
    c["ehlo_tls_status"].append(p.ehlo_tls_status)
    c["greeting_code"].append(p.greeting_code)
    c["banner"].append(p.banner)
    c["ehlo_code"].append(p.ehlo_code)
    c["ehlo_lines"].append(p.ehlo_lines)
    c["ehlo_extensions"].append(p.ehlo_extensions)
    c["starttls_offered"].append(p.starttls_offered)
    c["starttls_code"].append(p.starttls_code)
    c["starttls_reply"].append(p.starttls_reply)
    c["ehlo_tls_extensions"].append(p.ehlo_tls_extensions)
    c["tls_version"].append(tls.version if tls else None)
    c["tls_cipher"].append(tls.cipher if tls else None)
    c["forward_secrecy"].append(tls.forward_secrecy if tls else None)
    c["kex_group"].append(tls.kex_group if tls else None)
    c["kex_bits"].append(tls.kex_bits if tls else None)
    c["tls_alert"].append(p.tls_alert)
    c["leaf_sha256"].append(rec.leaf_sha256)
    c["chain_sha256"].append(rec.chain_sha256)
    c["chain_length"].append(len(p.chain_der))
    c["chain_valid"].append(chain.valid if chain else None)
    c["verify_error"].append(None if chain is None or chain.valid else chain.status)
    c["verify_detail"].append(chain.detail if chain else None)
    c["leaf_names"].append(rec.leaf_names)
    c["mta_software"].append(rec.mta_software)
    c["mta_version"].append(rec.mta_version)
    c["connect_ms"].append(p.connect_ms)
    c["greeting_ms"].append(p.greeting_ms)
    c["ehlo_ms"].append(p.ehlo_ms)
    c["starttls_ms"].append(p.starttls_ms)
    c["handshake_ms"].append(p.handshake_ms)
    c["total_ms"].append(p.total_ms)
    c["error_detail"].append(p.error_detail)
    for name in _DEEP_COLUMNS:
        c[name].append(getattr(rec, name))


def append_certificate(buf: ColumnBuffer, rec: CertificateRecord) -> None:
    """One `certificates` row."""
    c = buf.columns
    c["sha256"].append(rec.sha256)
    c["parse_ok"].append(rec.parse_ok)
    c["parse_error"].append(rec.parse_error)
    c["subject"].append(rec.subject)
    c["issuer"].append(rec.issuer)
    c["common_name"].append(rec.common_name)
    c["san_dns"].append(rec.san_dns)
    c["san_ip"].append(rec.san_ip)
    c["serial"].append(rec.serial)
    c["not_before"].append(_utc(rec.not_before))
    c["not_after"].append(_utc(rec.not_after))
    c["key_type"].append(rec.key_type)
    c["key_bits"].append(rec.key_bits)
    c["curve"].append(rec.curve)
    c["signature_algorithm"].append(rec.signature_algorithm)
    c["self_signed"].append(rec.self_signed)
    c["is_ca"].append(rec.is_ca)
    c["der"].append(rec.der)
