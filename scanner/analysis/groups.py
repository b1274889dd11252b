"""Statistics per group of domains: mail provider, top-level domain, or primary MX host.

A domain belongs to the group of its primary MX host (lowest preference, then name: the
first of `mx_hostnames`): the provider is that host's registrable domain (Public Suffix List).
Domains without a mail host form the group "(no mail host)". Host columns count the distinct
addresses the group's domains use. Groups are ordered by the number of domains they serve.
Duplicate rows (a record repeating an earlier one) are no domain: they belong to no group.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scanner.scan.providers import provider_of, tld_of
from scanner.sink.dataset import read_dataset

GROUPINGS = ("provider", "tld", "mx")
NO_MAIL_HOST = "(no mail host)"
MAIL = ("all", "some", "none")
#: which domains `--failing` exports: a class other than "all" among mail domains
FAILING = {"starttls": "starttls_class", "strict": "strict_class"}


@dataclass(slots=True)
class Group:
    """Counts of one group."""

    name: str
    domains: int = 0
    mail_domains: int = 0
    starttls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MAIL, 0))
    strict: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MAIL, 0))
    ips: set[str] = field(default_factory=set)


def _key(by: str) -> Callable[[dict[str, Any]], str]:
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; one of {', '.join(GROUPINGS)}")
    if by == "tld":
        return lambda row: tld_of(row["domain"])

    def primary(row: dict[str, Any]) -> str:
        names = row["mx_hostnames"] or ()
        if not names:
            return NO_MAIL_HOST
        return provider_of(names[0]) if by == "provider" else str(names[0])
    return primary


def _domain_rows(outdir: Path) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = read_dataset(outdir, "domains", columns=[
        "domain", "input", "mx_hostnames", "starttls_class", "strict_class"]).to_pylist()
    return [r for r in rows if r["starttls_class"] != "duplicate"]


def grouped_stats(outdir: Path, by: str, top: int | None = None) -> list[dict[str, Any]]:
    """Per group: domain classes (shares of its mail domains) and its hosts' TLS facts."""
    key = _key(by)
    groups: dict[str, Group] = {}
    domain_group: dict[str, str] = {}
    for row in _domain_rows(outdir):
        name = key(row)
        g = groups.setdefault(name, Group(name))
        g.domains += 1
        if row["starttls_class"] in MAIL:
            g.mail_domains += 1
            g.starttls[row["starttls_class"]] += 1
            g.strict[row["strict_class"]] = g.strict.get(row["strict_class"], 0) + 1
        if row["domain"]:
            domain_group[row["domain"]] = name
    edges = read_dataset(outdir, "domain_mx", columns=["domain", "ip", "strict_ok"]).to_pylist()
    strict_ips: set[str] = set()
    for e in edges:
        if e["ip"] is None:
            continue
        if e["domain"] in domain_group:
            groups[domain_group[e["domain"]]].ips.add(e["ip"])
        if e["strict_ok"]:
            strict_ips.add(e["ip"])
    hosts = {r["ip"]: r for r in read_dataset(
        outdir, "hosts", columns=["ip", "outcome", "ehlo_status", "starttls_offered",
                                  "forward_secrecy"]).to_pylist()}
    ordered = sorted(groups.values(), key=lambda g: (-g.domains, g.name))
    return [_summary(g, hosts, strict_ips) for g in ordered[:top]]


def _share(n: int, of: int) -> float | None:
    return None if of == 0 else 100.0 * n / of


def _summary(g: Group, hosts: dict[str, dict[str, Any]], strict_ips: set[str]) -> dict[str, Any]:
    answered = starttls = tls = fs = strict = 0
    for ip in g.ips:
        h = hosts.get(ip)
        if h is None or h["ehlo_status"] != "ok":
            continue
        answered += 1
        starttls += bool(h["starttls_offered"])
        if h["outcome"] == "tls_ok":
            tls += 1
            fs += bool(h["forward_secrecy"])
            strict += ip in strict_ips
    return {
        "group": g.name, "domains": g.domains, "mail_domains": g.mail_domains,
        "starttls": g.starttls, "strict": {c: g.strict.get(c, 0) for c in MAIL},
        "starttls_share": {c: _share(n, g.mail_domains) for c, n in g.starttls.items()},
        "strict_all_share": _share(g.strict.get("all", 0), g.mail_domains),
        "hosts": len(g.ips), "hosts_answered": answered, "hosts_starttls": starttls,
        "hosts_tls": tls, "hosts_forward_secrecy": fs, "hosts_strict_valid": strict,
        "hosts_tls_share": _share(tls, answered), "hosts_strict_share": _share(strict, tls),
    }


def failing_domains(outdir: Path, what: str = "starttls", by: str = "provider"
                    ) -> Iterator[dict[str, Any]]:
    """Mail domains whose class is not "all" (no or only some MX with STARTTLS / strict TLS),
    grouped by `by`, biggest groups first: rows for outreach."""
    column = FAILING[what]
    key = _key(by)
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in _domain_rows(outdir):
        if row["starttls_class"] in MAIL and row[column] != "all":
            grouped[key(row)].append(row)
    for name, rows in sorted(grouped.items(), key=lambda kv: (-len(kv[1]), kv[0])):
        for row in sorted(rows, key=lambda r: r["domain"]):
            yield {by: name, "group_failing": len(rows), "domain": row["domain"],
                   "starttls_class": row["starttls_class"], "strict_class": row["strict_class"],
                   "mx_hostnames": " ".join(row["mx_hostnames"] or ())}
