"""Survey statistics, computed once, from the Parquet datasets alone.

The CLI (`scanner stats`), the demo and the notebooks use these functions, so their numbers
never disagree. Denominators are stated with every share:
- the domain table (Norway 2010): per starttls_class and strict_class, over all input lines and
  over "mail domains" (domains with at least one mail server that answered SMTP); a record
  repeating an earlier one (status and class `duplicate`) is no domain and no input line of
  these tables: it is counted apart, so duplicates never move a share;
- the host table (Facebook 2014): over distinct addresses that answered SMTP, STARTTLS offered,
  TLS negotiated, forward secrecy (share of TLS hosts), strict-valid (share of TLS hosts);
- distributions (scanner/analysis/distributions.py) and groups by provider / TLD / MX
  (scanner/analysis/groups.py) are computed there and re-exported here: this package of modules
  is the one place numbers come from.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from scanner.analysis.distributions import CERT_PROBLEMS, distributions, scan_start
from scanner.analysis.groups import GROUPINGS, failing_domains, grouped_stats
from scanner.analysis.policy import policy_stats
from scanner.analysis.scan_status import scan_status, scan_warnings
from scanner.sink.dataset import dataset_columns, read_dataset, read_manifest

__all__ = ["CERT_PROBLEMS", "DOMAIN_CLASSES", "DUPLICATE", "GROUPINGS", "MAIL_CLASSES",
           "DomainTable", "HostTable", "Share", "distributions", "domain_table",
           "failing_domains", "grouped_stats", "host_table", "scan_info", "scan_start",
           "survey_stats"]

MAIL_CLASSES = ("all", "some", "none")
DOMAIN_CLASSES = ("all", "some", "none", "unreachable", "no_mx", "null_mx", "dns_error",
                  "private_mx", "invalid", "excluded")
#: the class of a record that repeats an earlier one: a row, but no domain of the tables
DUPLICATE = "duplicate"
#: Classes and counts added by schema 1.4 (with the `first_line_no` column): before it, a
#: domain with only private MX addresses was `excluded` and duplicates had no row.
_SINCE_1_4 = ("private_mx",)


@dataclass(frozen=True, slots=True)
class Share:
    """A count and its share of a stated denominator (percent, None when the denominator is 0)."""

    count: int
    of: int

    @property
    def percent(self) -> float | None:
        return None if self.of == 0 else 100.0 * self.count / self.of


@dataclass(slots=True)
class DomainTable:
    """Per-domain classes with both denominators."""

    input_lines: int = 0  # input records, each domain once: every row but the duplicates
    mail_domains: int = 0  # classes all/some/none: at least one MX answered SMTP
    starttls: dict[str, int] = field(default_factory=dict)
    strict: dict[str, int] = field(default_factory=dict)
    # rows of records repeating an earlier one (not in the counts above); None when the scan
    # did not record them (schema before 1.4 skipped duplicates without a row)
    duplicates: int | None = 0
    # classes the scan could not record (its schema predates them): not measured, never 0
    not_measured: list[str] = field(default_factory=list)


@dataclass(slots=True)
class HostTable:
    """Per-address facts over the addresses that answered SMTP."""

    probed: int = 0  # addresses contacted (excluded and private ones are not)
    answered: int = 0  # EHLO completed
    starttls_offered: int = 0
    tls_ok: int = 0
    forward_secrecy: int = 0  # among tls_ok
    strict_valid: int = 0  # among tls_ok: chain valid and the leaf names an MX name that led here
    outcomes: dict[str, int] = field(default_factory=dict)
    tls_versions: dict[str, int] = field(default_factory=dict)
    verify_errors: dict[str, int] = field(default_factory=dict)
    kex_groups: dict[str, int] = field(default_factory=dict)
    weak_dh: int = 0  # DHE with a prime of 1024 bits or less (logjam)


def domain_table(outdir: Path) -> DomainTable:
    """The Norway table: starttls_class and strict_class counts with their denominators."""
    t = read_dataset(outdir, "domains", columns=["starttls_class", "strict_class"])
    table = DomainTable()
    table.starttls = _column_counts(t.column("starttls_class"))
    table.strict = _column_counts(t.column("strict_class"))
    duplicates = table.starttls.pop(DUPLICATE, 0)
    table.strict.pop(DUPLICATE, None)
    table.input_lines = t.num_rows - duplicates
    table.mail_domains = sum(table.starttls.get(c, 0) for c in MAIL_CLASSES)
    table.duplicates = duplicates
    if "first_line_no" not in dataset_columns(outdir, "domains"):
        table.duplicates, table.not_measured = None, list(_SINCE_1_4)
    return table


def host_table(outdir: Path) -> HostTable:
    """The Facebook table and the failure taxonomy, per distinct address."""
    hosts = read_dataset(outdir, "hosts", columns=[
        "ip", "outcome", "ehlo_status", "starttls_offered", "tls_version", "forward_secrecy",
        "kex_group", "kex_bits", "verify_error"])
    edges = read_dataset(outdir, "domain_mx", columns=["ip", "strict_ok"])
    strict_ips = set(pc.filter(edges.column("ip"),
                               pc.fill_null(edges.column("strict_ok"), False)).to_pylist())
    table = HostTable()
    rows = hosts.to_pylist()
    for row in rows:
        outcome = row["outcome"]
        table.outcomes[outcome] = table.outcomes.get(outcome, 0) + 1
        if outcome in ("excluded", "private_address"):
            continue
        table.probed += 1
        if row["ehlo_status"] != "ok":
            continue
        table.answered += 1
        table.starttls_offered += bool(row["starttls_offered"])
        if outcome != "tls_ok":
            continue
        table.tls_ok += 1
        table.forward_secrecy += bool(row["forward_secrecy"])
        table.strict_valid += row["ip"] in strict_ips
        _bump(table.tls_versions, row["tls_version"])
        _bump(table.kex_groups, row["kex_group"])
        _bump(table.verify_errors, row["verify_error"] or "valid")
        if row["kex_group"] == "dhe" and row["kex_bits"] is not None and row["kex_bits"] <= 1024:
            table.weak_dh += 1
    table.outcomes = dict(sorted(table.outcomes.items(), key=lambda kv: -kv[1]))
    return table


def scan_info(outdir: Path) -> dict[str, Any]:
    """Which scan this is: directory, start and end time, vantage point (from the manifest), and
    whether it is whole (`scan_status`: state, input records, rows, missing, warnings)."""
    try:
        m = read_manifest(outdir)
    except Exception:  # noqa: BLE001 - statistics do not need the manifest
        m = {}
    status = scan_status(outdir)
    # state, input_records, rows, missing...: partial data says so in every JSON output
    return {**status.to_json(), "start_time": m.get("start_time"),
            "end_time": m.get("end_time"), "vantage": (m.get("vantage") or {}).get("name"),
            "warnings": scan_warnings(status)}


def survey_stats(outdir: Path) -> dict[str, Any]:
    """Everything above as one JSON-ready dict (what `scanner stats --format json` prints)."""
    d, h = domain_table(outdir), host_table(outdir)
    return {
        "scan": scan_info(outdir),
        "distributions": distributions(outdir),
        "policies": policy_stats(outdir),
        "domains": {
            **asdict(d),
            "starttls_share_of_mail_domains": {
                c: Share(d.starttls.get(c, 0), d.mail_domains).percent for c in MAIL_CLASSES},
            "strict_share_of_mail_domains": {
                c: Share(d.strict.get(c, 0), d.mail_domains).percent for c in MAIL_CLASSES},
        },
        "hosts": {
            **asdict(h),
            "starttls_share_of_answered": Share(h.starttls_offered, h.answered).percent,
            "tls_share_of_answered": Share(h.tls_ok, h.answered).percent,
            "forward_secrecy_share_of_tls": Share(h.forward_secrecy, h.tls_ok).percent,
            "strict_share_of_tls": Share(h.strict_valid, h.tls_ok).percent,
        },
    }


def _column_counts(column: pa.ChunkedArray) -> dict[str, int]:
    """Value counts of a (dictionary-encoded) string column, biggest first, nulls left out."""
    # vectorised: a national scan has hundreds of thousands of domains
    counts = pc.value_counts(column.cast(pa.string())).to_pylist()
    pairs = sorted(((c["values"], c["counts"]) for c in counts if c["values"] is not None),
                   key=lambda kv: -kv[1])
    return dict(pairs)


def _bump(counter: dict[str, int], key: str | None) -> None:
    if key is not None:
        counter[key] = counter.get(key, 0) + 1
