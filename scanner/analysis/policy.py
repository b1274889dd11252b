"""Adoption tables for `scanner stats`: SPF, DMARC, TLS-RPT, MTA-STS, DANE, strict-capable.

Denominators: `domains_queried` (valid, not excluded input lines: every policy lookup ran) for
the TXT records, and `mail_domains` (at least one MX pair answered SMTP) for MTA-STS, DANE
and strict-capable, the domains a sender could deliver to.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from scanner.sink.dataset import read_dataset

_COLUMNS = ["status", "starttls_class", "spf_status", "spf_all", "dmarc_status", "dmarc_policy",
            "tlsrpt_status", "mta_sts_txt_status", "mta_sts_fetch_status", "mta_sts_mode",
            "mta_sts_delivery_ok", "dane_class", "strict_capable"]
_MAIL = ("all", "some", "none")
Row = tuple[str, str, int, int, float | None]


def policy_stats(outdir: Path) -> dict[str, Any] | None:
    """Counts per policy column; None for results written before the policy columns, or
    by a scan that skipped the policy stage (`--no-policies`)."""
    try:
        table = read_dataset(outdir, "domains", _COLUMNS)
    except (ValueError, KeyError, pa.ArrowInvalid):
        return None
    rows = [r for r in table.to_pylist() if r["spf_status"] not in (None, "not_queried")]
    if not rows:
        return None
    mail = [r for r in rows if r["starttls_class"] in _MAIL]

    def count(source: list[dict[str, Any]], column: str) -> dict[str, int]:
        return dict(Counter("-" if r[column] is None else str(r[column]) for r in source)
                    .most_common())

    sts = [r for r in mail if r["mta_sts_mode"] in ("enforce", "testing")]
    return {
        "domains_queried": len(rows), "mail_domains": len(mail),
        "adoption": {
            "spf_valid": sum(r["spf_status"] == "valid" for r in rows),
            "spf_hardfail": sum(r["spf_all"] == "-all" for r in rows),
            "dmarc_valid": sum(r["dmarc_status"] == "valid" for r in rows),
            "dmarc_reject_or_quarantine": sum(r["dmarc_policy"] in ("reject", "quarantine")
                                              for r in rows),
            "tlsrpt_valid": sum(r["tlsrpt_status"] == "valid" for r in rows),
            "mta_sts_record": sum(r["mta_sts_txt_status"] == "valid" for r in rows),
        },
        "mail_adoption": {
            "mta_sts_enforce": sum(r["mta_sts_mode"] == "enforce" for r in mail),
            "mta_sts_testing": sum(r["mta_sts_mode"] == "testing" for r in mail),
            "mta_sts_deliverable": sum(r["mta_sts_delivery_ok"] is True for r in sts),
            "dane_valid": sum(r["dane_class"] == "valid" for r in mail),
            "dane_any_valid": sum(r["dane_class"] in ("valid", "partial") for r in mail),
            "dane_broken": sum(r["dane_class"] == "broken" for r in mail),
            "strict_capable": sum(r["strict_capable"] is True for r in mail),
        },
        "spf_status": count(rows, "spf_status"), "dmarc_policy": count(rows, "dmarc_policy"),
        "tlsrpt_status": count(rows, "tlsrpt_status"),
        "mta_sts_mode": count(mail, "mta_sts_mode"),
        "mta_sts_fetch_status": count([r for r in rows if r["mta_sts_txt_status"] == "valid"],
                                      "mta_sts_fetch_status"),
        "dane_class": count(mail, "dane_class"),
        "deep": _deep_stats(outdir),
    }


def _deep_stats(outdir: Path) -> dict[str, int] | None:
    """Accepted versions and DHE per host examined by `--deep`; None when no host was."""
    try:
        hosts = read_dataset(outdir, "hosts", ["deep_checked", "tls_versions_accepted",
                                               "dhe_accepted", "dhe_bits", "dhe_group"])
    except (ValueError, KeyError, pa.ArrowInvalid):
        return None
    rows = [r for r in hosts.to_pylist() if r["deep_checked"]]
    if not rows:
        return None
    dhe = [r for r in rows if r["dhe_accepted"]]
    return {
        "hosts_examined": len(rows),
        **{f"accepts_{v}": sum(v in r["tls_versions_accepted"] for r in rows)
           for v in ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")},
        "accepts_dhe_only_offer": len(dhe),
        "dhe_le_1024_bits": sum((r["dhe_bits"] or 0) <= 1024 for r in dhe),
        "dhe_shared_prime": sum(r["dhe_group"] not in (None, "custom") for r in dhe),
        "dhe_shared_prime_le_1024_bits": sum(r["dhe_group"] not in (None, "custom")
                                             and (r["dhe_bits"] or 0) <= 1024 for r in dhe),
    }


def policy_rows(stats: dict[str, Any] | None) -> list[Row]:
    """Flat rows (table, key, count, denominator, percent) in `stat_rows`' form."""
    if not stats:
        return []

    def pct(n: int, of: int) -> float | None:
        return None if of == 0 else round(100.0 * n / of, 2)

    queried, mail = stats["domains_queried"], stats["mail_domains"]
    fetched = sum(stats["mta_sts_fetch_status"].values())
    rows: list[Row] = []
    for table, key, of in (("policy_adoption", "adoption", queried),
                           ("mail_policy_adoption", "mail_adoption", mail),
                           ("spf_status", "spf_status", queried),
                           ("dmarc_policy", "dmarc_policy", queried),
                           ("tlsrpt_status", "tlsrpt_status", queried),
                           ("mta_sts_mode", "mta_sts_mode", mail),
                           ("mta_sts_fetch_status", "mta_sts_fetch_status", fetched),
                           ("dane_class", "dane_class", mail)):
        rows += [(table, k, n, of, pct(n, of)) for k, n in stats[key].items()]
    deep = stats.get("deep")
    if deep:
        examined = deep["hosts_examined"]
        rows += [("deep_hosts", k, n, examined, pct(n, examined)) for k, n in deep.items()
                 if k != "hosts_examined"]
    return rows
