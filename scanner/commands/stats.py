"""`scanner stats OUTDIR`: the survey tables as text, Markdown, JSON or CSV."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from scanner.analysis.policy import policy_rows
from scanner.analysis.scan_status import scan_warnings
from scanner.analysis.stats import (
    DOMAIN_CLASSES,
    MAIL_CLASSES,
    failing_domains,
    grouped_stats,
    survey_stats,
)
from scanner.report.server_text import printable

#: distribution sections shown after the host table: (key in stats["distributions"], denominator)
_DIST_SECTIONS = (("ciphers", "tls_hosts"), ("dh_sizes", "tls_hosts"),
                  ("certificate_problems", "tls_hosts"), ("issuers", "tls_hosts"),
                  ("software", "answered_hosts"), ("banners", "answered_hosts"))


def stat_rows(stats: dict[str, Any]) -> list[tuple[str, str, int, int, float | None]]:
    """Flat rows (table, key, count, denominator, percent) shared by every text format."""
    rows: list[tuple[str, str, int, int, float | None]] = []
    d, h = stats["domains"], stats["hosts"]

    def pct(n: int, of: int) -> float | None:
        return None if of == 0 else round(100.0 * n / of, 2)

    duplicates = d.get("duplicates")
    if duplicates is not None:  # None: a scan whose schema did not record them
        records = d["input_lines"] + duplicates
        rows += [("input_records", "domains", d["input_lines"], records,
                  pct(d["input_lines"], records)),
                 ("input_records", "duplicate", duplicates, records, pct(duplicates, records))]
    not_measured = set(d.get("not_measured") or ())
    for name, counts in (("starttls_class", d["starttls"]), ("strict_class", d["strict"])):
        for cls in DOMAIN_CLASSES:
            if cls in not_measured:
                continue
            n = counts.get(cls, 0)
            rows.append((f"domains.{name}", cls, n, d["input_lines"], pct(n, d["input_lines"])))
        for cls in MAIL_CLASSES:
            n = counts.get(cls, 0)
            rows.append((f"mail_domains.{name}", cls, n, d["mail_domains"],
                         pct(n, d["mail_domains"])))
    answered, tls = h["answered"], h["tls_ok"]
    rows += [
        ("hosts", "answered_smtp", answered, h["probed"], pct(answered, h["probed"])),
        ("hosts", "starttls_offered", h["starttls_offered"], answered,
         pct(h["starttls_offered"], answered)),
        ("hosts", "tls_negotiated", tls, answered, pct(tls, answered)),
        ("hosts", "forward_secrecy", h["forward_secrecy"], tls, pct(h["forward_secrecy"], tls)),
        ("hosts", "strict_valid", h["strict_valid"], tls, pct(h["strict_valid"], tls)),
        ("hosts", "weak_dh_le_1024", h["weak_dh"], tls, pct(h["weak_dh"], tls)),
    ]
    total = sum(h["outcomes"].values())
    for key, n in h["outcomes"].items():
        rows.append(("host_outcomes", key, n, total, pct(n, total)))
    for section in ("tls_versions", "kex_groups", "verify_errors"):
        for key, n in sorted(h[section].items(), key=lambda kv: -kv[1]):
            rows.append((section, key, n, tls, pct(n, tls)))
    dist = stats.get("distributions")
    if dist:
        for section, denominator in _DIST_SECTIONS:
            of = dist[denominator]
            for key, n in (dist[section] or {}).items():  # None: not measured by this scan
                rows.append((section, key, n, of, pct(n, of)))
            if section == "dh_sizes":  # a table's rows stay together: render heads each run
                rows.append((section, "logjam_exposed_le_1024", dist["dh_logjam_exposed"], of,
                             pct(dist["dh_logjam_exposed"], of)))
    rows += policy_rows(stats.get("policies"))
    return rows


#: Width of the key column of the text tables; longer keys (issuers, banners) are cut to it.
KEY_WIDTH = 40


def fit(text: str, width: int) -> str:
    """`text`, cut to `width` characters with an ellipsis when longer (a column stays aligned)."""
    return text if len(text) <= width else text[:width - 1] + "…"


def table_text(text: str, markdown: bool = False) -> str:
    """Server-controlled text made safe for a terminal (no control characters) or a table."""
    out = printable(text)
    return out.replace("|", "\\|") if markdown else out


def group_rows(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Flat per-group rows for `--by` (the same numbers as grouped_stats)."""
    rows = []
    for g in groups:
        def r(v: float | None) -> float | None:
            return None if v is None else round(v, 2)
        rows.append({
            "group": g["group"], "domains": g["domains"], "mail_domains": g["mail_domains"],
            "starttls_all": g["starttls"]["all"], "starttls_some": g["starttls"]["some"],
            "starttls_none": g["starttls"]["none"],
            "starttls_all_pct": r(g["starttls_share"]["all"]),
            "starttls_none_pct": r(g["starttls_share"]["none"]),
            "strict_all": g["strict"]["all"], "strict_all_pct": r(g["strict_all_share"]),
            "hosts": g["hosts"], "hosts_answered": g["hosts_answered"],
            "hosts_tls": g["hosts_tls"], "hosts_strict_valid": g["hosts_strict_valid"],
        })
    return rows


def render_rows(rows: list[dict[str, Any]], fmt: str, columns: list[str]) -> str:
    """Dict rows as CSV, JSON, Markdown or an aligned text table."""
    if fmt == "json":
        return json.dumps(rows, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return out.getvalue()
    cells = [[_cell(row[c], fmt) for c in columns] for row in rows]
    if fmt == "markdown":
        lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
        return "\n".join(lines + ["| " + " | ".join(c) + " |" for c in cells])
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(lines)


def _cell(value: Any, fmt: str) -> str:
    if value is None:
        return "-"
    return table_text(str(value), markdown=fmt == "markdown")


def render(stats: dict[str, Any], fmt: str) -> str:
    """The tables in one of the output formats."""
    if fmt == "json":
        return json.dumps(stats, indent=2, sort_keys=True)
    rows = stat_rows(stats)
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(("table", "key", "count", "denominator", "percent"))
        writer.writerows(rows)
        return out.getvalue()
    lines: list[str] = []
    current = None
    for table, key, n, of, percent in rows:
        if table != current:
            current = table
            if fmt == "markdown":
                lines += ["", f"### {table}", "", "| key | count | of | % |",
                          "|---|---:|---:|---:|"]
            else:
                lines += ["", f"{table}"]
        shown = "-" if percent is None else f"{percent:.1f}%"
        if fmt == "markdown":
            lines.append(f"| {table_text(key, markdown=True)} | {n} | {of} | {shown} |")
        else:
            lines.append(f"  {fit(table_text(key), KEY_WIDTH):<{KEY_WIDTH}} {n:>9} / {of:<9} "
                         f"{shown:>7}")
    return "\n".join(lines).lstrip("\n")


def argument_error(args: argparse.Namespace) -> str | None:
    """Why these `stats` options cannot go together, or None: an option is never ignored."""
    if args.top is not None:
        if args.top < 1:
            return f"--top must be at least 1, not {args.top}"
        if args.failing:
            return "--top applies to the --by tables, not to --failing"
        if not args.by:
            return "--top needs --by provider|tld|mx"
    if args.failing and args.format not in (None, "csv", "json"):
        return f"--failing writes CSV (or JSON with --format json), not --format {args.format}"
    return None


def run_stats_command(args: argparse.Namespace) -> int:
    """Print the survey tables of a results directory."""
    outdir: Path = args.outdir
    problem = argument_error(args)
    if problem is None and not (outdir / "domains").is_dir():
        problem = f"{outdir} holds no scan results (no domains/ dataset)"
    if problem is not None:
        print(f"scanner: error: {problem}", file=sys.stderr)
        return 2
    for warning in scan_warnings(outdir):  # stderr: stdout stays a clean table, CSV or JSON
        print(f"scanner: {warning}", file=sys.stderr)
    by, failing = args.by, args.failing
    if failing:
        # outreach lists are for spreadsheets: CSV unless JSON was asked for
        rows = list(failing_domains(outdir, failing, by or "provider"))
        fmt = args.format or "csv"
        columns = [by or "provider", "group_failing", "domain", "starttls_class",
                   "strict_class", "mx_hostnames"]
        print(render_rows(rows, fmt, columns), end="" if fmt == "csv" else "\n")
    elif by:
        groups = grouped_stats(outdir, by, top=args.top)
        fmt = args.format or "table"
        if fmt == "json":
            print(json.dumps(groups, indent=2))
        else:
            rows = group_rows(groups)
            columns = list(rows[0]) if rows else ["group"]
            print(render_rows(rows, fmt, columns), end="" if fmt == "csv" else "\n")
    else:
        print(render(survey_stats(outdir), args.format or "table"))
    return 0
