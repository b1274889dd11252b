"""`scanner stats OUTDIR`: the survey tables as text, Markdown, JSON or CSV."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from scanner.stats import DOMAIN_CLASSES, MAIL_CLASSES, survey_stats


def stat_rows(stats: dict[str, Any]) -> list[tuple[str, str, int, int, float | None]]:
    """Flat rows (table, key, count, denominator, percent) shared by every text format."""
    rows: list[tuple[str, str, int, int, float | None]] = []
    d, h = stats["domains"], stats["hosts"]

    def pct(n: int, of: int) -> float | None:
        return None if of == 0 else round(100.0 * n / of, 2)

    for name, counts in (("starttls_class", d["starttls"]), ("strict_class", d["strict"])):
        for cls in DOMAIN_CLASSES:
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
    return rows


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
                lines += ["", f"### {table}", "", "| key | count | of | % |", "|---|---:|---:|---:|"]
            else:
                lines += ["", f"{table}"]
        shown = "-" if percent is None else f"{percent:.1f}%"
        if fmt == "markdown":
            lines.append(f"| {key} | {n} | {of} | {shown} |")
        else:
            lines.append(f"  {key:<28} {n:>9} / {of:<9} {shown:>7}")
    return "\n".join(lines).lstrip("\n")


def run_stats_command(args: argparse.Namespace) -> int:
    """Print the survey tables of a results directory."""
    outdir: Path = args.outdir
    if not (outdir / "domains").is_dir():
        print(f"scanner: error: {outdir} holds no scan results (no domains/ dataset)",
              file=sys.stderr)
        return 2
    print(render(survey_stats(outdir), args.format))
    return 0
