"""`scanner compare OLD NEW`: what changed between two scans of the same population.

Class shares then and now (over each scan's own mail domains, from scanner.analysis.stats) and the
domains that moved: a domain gained STARTTLS (or strict TLS) when its class went up the ladder
none < some < all, and lost it when it went down. Domains in only one scan, or not a mail domain
in one of them (unreachable, DNS error...), are counted apart, never as gained or lost.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scanner.analysis.stats import DUPLICATE, MAIL_CLASSES, domain_table, host_table, scan_info
from scanner.sink.dataset import read_dataset

_LEVEL = {"none": 0, "some": 1, "all": 2}
COLUMNS = {"starttls": "starttls_class", "strict": "strict_class"}


def _pct(n: int, of: int) -> float | None:
    return None if of == 0 else 100.0 * n / of


def _classes(outdir: Path) -> dict[str, dict[str, str]]:
    """Each domain's classes, from its own row (a duplicate row only points at it)."""
    t = read_dataset(outdir, "domains", columns=["domain", "starttls_class", "strict_class"])
    return {r["domain"]: r for r in t.to_pylist()
            if r["domain"] and r["starttls_class"] != DUPLICATE}


def compare(old: Path, new: Path) -> dict[str, Any]:
    """Shares then and now and the domains that gained or lost STARTTLS / strict TLS."""
    tables = {"old": domain_table(old), "new": domain_table(new)}
    hosts = {"old": host_table(old), "new": host_table(new)}
    shares: list[dict[str, Any]] = []
    for what, attr in (("starttls", "starttls"), ("strict", "strict")):
        for cls in MAIL_CLASSES:
            row: dict[str, Any] = {"table": f"{what}_class", "key": cls}
            for side, t in tables.items():
                n = getattr(t, attr).get(cls, 0)
                row[f"{side}_count"], row[f"{side}_of"] = n, t.mail_domains
                row[f"{side}_pct"] = _pct(n, t.mail_domains)
            shares.append(row)
    for key, part, whole in (("starttls_offered", "starttls_offered", "answered"),
                             ("tls_negotiated", "tls_ok", "answered"),
                             ("forward_secrecy", "forward_secrecy", "tls_ok"),
                             ("strict_valid", "strict_valid", "tls_ok")):
        row = {"table": "hosts", "key": key}
        for side, h in hosts.items():
            n, of = getattr(h, part), getattr(h, whole)
            row[f"{side}_count"], row[f"{side}_of"], row[f"{side}_pct"] = n, of, _pct(n, of)
        shares.append(row)
    for row in shares:
        row["change_pct_points"] = (None if row["old_pct"] is None or row["new_pct"] is None
                                    else row["new_pct"] - row["old_pct"])
    before, after = _classes(old), _classes(new)
    changes: dict[str, dict[str, list[dict[str, str]]]] = {}
    for what, column in COLUMNS.items():
        gained: list[dict[str, str]] = []
        lost: list[dict[str, str]] = []
        for domain in sorted(before.keys() & after.keys()):
            a, b = before[domain][column], after[domain][column]
            if a in _LEVEL and b in _LEVEL and a != b:
                (gained if _LEVEL[b] > _LEVEL[a] else lost).append(
                    {"domain": domain, "old": a, "new": b})
        changes[what] = {"gained": gained, "lost": lost}
    both = before.keys() & after.keys()
    return {
        "old": scan_info(old), "new": scan_info(new), "shares": shares, "changes": changes,
        "domains": {"old": len(before), "new": len(after), "both": len(both),
                    "only_old": len(before.keys() - after.keys()),
                    "only_new": len(after.keys() - before.keys()),
                    "left_mail": sum(1 for d in both if before[d]["starttls_class"] in _LEVEL
                                     and after[d]["starttls_class"] not in _LEVEL),
                    "joined_mail": sum(1 for d in both if before[d]["starttls_class"]
                                       not in _LEVEL and after[d]["starttls_class"] in _LEVEL)},
    }
