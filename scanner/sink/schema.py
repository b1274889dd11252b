"""The Arrow schemas and SCHEMA_VERSION: the only place columns are defined.

Datasets: `domains` (one row per input line), `domain_mx` (domain x MX host x address edges),
`hosts` (one row per probed address) and `certificates` (one row per distinct certificate).
Status vocabularies become dictionary-encoded strings, timestamps are UTC microseconds, DER stays
binary. The lab's ground truth uses the same column names (a subset), so a scan and the truth
join on `domain` and on `ip`.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1.4"

_STATUS = pa.dictionary(pa.int32(), pa.string())
_TS = pa.timestamp("us", tz="UTC")
_STRINGS = pa.list_(pa.string())


def _schema(name: str, fields: list[pa.Field]) -> pa.Schema:
    return pa.schema(fields, metadata={b"scanner.dataset": name.encode(),
                                       b"scanner.schema_version": SCHEMA_VERSION.encode()})


DOMAINS = _schema("domains", [
    pa.field("line_no", pa.int64(), nullable=False),
    pa.field("input", pa.string()),
    pa.field("source", pa.string()),
    pa.field("domain", pa.string()),
    pa.field("domain_unicode", pa.string()),
    pa.field("status", _STATUS),
    pa.field("reason", pa.string()),
    pa.field("first_source", pa.string()),  # 1.4: duplicate rows point at the first occurrence
    pa.field("first_line_no", pa.int64()),
    pa.field("mx_source", _STATUS),
    pa.field("mx_hostnames", _STRINGS),
    pa.field("n_mx_hosts", pa.int32()),
    pa.field("n_addresses", pa.int32()),
    pa.field("n_pairs", pa.int32()),
    pa.field("n_reachable", pa.int32()),
    pa.field("n_starttls", pa.int32()),
    pa.field("n_tls", pa.int32()),
    pa.field("n_strict", pa.int32()),
    pa.field("starttls_class", _STATUS),
    pa.field("strict_class", _STATUS),
    pa.field("dns_ms", pa.int32()),
    pa.field("finished_at", _TS),
    pa.field("spf_status", _STATUS),
    pa.field("spf_all", _STATUS),
    pa.field("dmarc_status", _STATUS),
    pa.field("dmarc_policy", _STATUS),
    pa.field("tlsrpt_status", _STATUS),
    pa.field("mta_sts_txt_status", _STATUS),
    pa.field("mta_sts_id", pa.string()),
    pa.field("mta_sts_fetch_status", _STATUS),
    pa.field("mta_sts_mode", _STATUS),
    pa.field("mta_sts_max_age", pa.int64()),
    pa.field("mta_sts_mx_patterns", _STRINGS),
    pa.field("mta_sts_mx_all_match", pa.bool_()),
    pa.field("mta_sts_delivery_ok", pa.bool_()),
    pa.field("dane_class", _STATUS),
    pa.field("n_dane_valid", pa.int32()),
    pa.field("strict_capable", pa.bool_()),
])

DOMAIN_MX = _schema("domain_mx", [
    pa.field("domain", pa.string(), nullable=False),
    pa.field("mx_hostname", pa.string()),
    pa.field("preference", pa.int32()),
    pa.field("ip", pa.string()),
    pa.field("port", pa.int32()),
    pa.field("mx_source", _STATUS),
    pa.field("address_status", _STATUS),
    pa.field("outcome", _STATUS),
    pa.field("smtp_ok", pa.bool_()),
    pa.field("starttls_offered", pa.bool_()),
    pa.field("tls_ok", pa.bool_()),
    pa.field("chain_valid", pa.bool_()),
    pa.field("name_match", pa.bool_()),
    pa.field("strict_ok", pa.bool_()),
    pa.field("tlsa_status", _STATUS),
    pa.field("tlsa_records", _STRINGS),
    pa.field("dane_status", _STATUS),
    pa.field("mta_sts_mx_match", pa.bool_()),
    pa.field("mta_sts_ok", pa.bool_()),
])

HOSTS = _schema("hosts", [
    pa.field("ip", pa.string(), nullable=False),
    pa.field("port", pa.int32(), nullable=False),
    pa.field("mx_hostnames", _STRINGS),
    pa.field("started_at", _TS),
    pa.field("outcome", _STATUS),
    pa.field("connect_status", _STATUS),
    pa.field("greeting_status", _STATUS),
    pa.field("ehlo_status", _STATUS),
    pa.field("starttls_status", _STATUS),
    pa.field("handshake_status", _STATUS),
    pa.field("ehlo_tls_status", _STATUS),
    pa.field("greeting_code", pa.int32()),
    pa.field("banner", pa.string()),
    pa.field("ehlo_code", pa.int32()),
    pa.field("ehlo_lines", _STRINGS),
    pa.field("ehlo_extensions", _STRINGS),
    pa.field("starttls_offered", pa.bool_()),
    pa.field("starttls_code", pa.int32()),
    pa.field("starttls_reply", pa.string()),
    pa.field("ehlo_tls_extensions", _STRINGS),
    pa.field("tls_version", _STATUS),
    pa.field("tls_cipher", _STATUS),
    pa.field("forward_secrecy", pa.bool_()),
    pa.field("kex_group", _STATUS),
    pa.field("kex_bits", pa.int32()),
    pa.field("tls_alert", pa.string()),
    pa.field("leaf_sha256", pa.string()),
    pa.field("chain_sha256", _STRINGS),
    pa.field("chain_length", pa.int32()),
    pa.field("chain_valid", pa.bool_()),
    pa.field("verify_error", _STATUS),
    pa.field("verify_detail", pa.string()),
    pa.field("leaf_names", _STRINGS),
    pa.field("mta_software", _STATUS),
    pa.field("mta_version", pa.string()),
    pa.field("connect_ms", pa.int32()),
    pa.field("greeting_ms", pa.int32()),
    pa.field("ehlo_ms", pa.int32()),
    pa.field("starttls_ms", pa.int32()),
    pa.field("handshake_ms", pa.int32()),
    pa.field("total_ms", pa.int32()),
    pa.field("error_detail", pa.string()),
    pa.field("deep_checked", pa.bool_()),
    pa.field("tls_versions_accepted", _STRINGS),
    pa.field("tls_versions_refused", _STRINGS),
    pa.field("dhe_accepted", pa.bool_()),
    pa.field("dhe_bits", pa.int32()),
    pa.field("dhe_group", _STATUS),
    pa.field("dhe_prime_id", pa.string()),
])

CERTIFICATES = _schema("certificates", [
    pa.field("sha256", pa.string(), nullable=False),
    pa.field("parse_ok", pa.bool_()),
    pa.field("parse_error", pa.string()),
    pa.field("subject", pa.string()),
    pa.field("issuer", pa.string()),
    pa.field("common_name", pa.string()),
    pa.field("san_dns", _STRINGS),
    pa.field("san_ip", _STRINGS),
    pa.field("serial", pa.string()),
    pa.field("not_before", _TS),
    pa.field("not_after", _TS),
    pa.field("key_type", _STATUS),
    pa.field("key_bits", pa.int32()),
    pa.field("curve", _STATUS),
    pa.field("signature_algorithm", _STATUS),
    pa.field("self_signed", pa.bool_()),
    pa.field("is_ca", pa.bool_()),
    pa.field("der", pa.binary()),
])

DATASETS: dict[str, pa.Schema] = {
    "domains": DOMAINS,
    "domain_mx": DOMAIN_MX,
    "hosts": HOSTS,
    "certificates": CERTIFICATES,
}

#: Columns of the lab's ground truth: the same names, a subset of each dataset.
TRUTH_DOMAIN_COLUMNS = ("domain", "status", "mx_source", "n_mx_hosts", "n_addresses", "n_pairs",
                        "n_reachable", "n_starttls", "n_tls", "n_strict", "starttls_class",
                        "strict_class", "spf_status", "spf_all", "dmarc_status",
                        "dmarc_policy", "tlsrpt_status", "mta_sts_txt_status", "mta_sts_id",
                        "mta_sts_fetch_status", "mta_sts_mode", "mta_sts_max_age",
                        "mta_sts_mx_patterns", "mta_sts_mx_all_match", "mta_sts_delivery_ok",
                        "dane_class", "n_dane_valid", "strict_capable")
TRUTH_HOST_COLUMNS = ("ip", "port", "outcome", "connect_status", "greeting_status", "ehlo_status",
                      "starttls_status", "handshake_status", "ehlo_tls_status", "starttls_offered",
                      "tls_version", "forward_secrecy", "kex_group", "kex_bits", "chain_valid",
                      "verify_error", "leaf_names", "mta_software", "mta_version")
TRUTH_EDGE_COLUMNS = ("domain", "mx_hostname", "ip", "tlsa_status", "dane_status",
                      "mta_sts_mx_match", "mta_sts_ok")
#: Host truth of `--deep` scans only (a default scan leaves these columns empty).
TRUTH_DEEP_COLUMNS = ("ip", "tls_versions_accepted", "tls_versions_refused", "dhe_accepted",
                      "dhe_bits", "dhe_group")
