"""`scanner compare --vantage A B`: scanner.analysis.vantage_compare as text, JSON or CSV."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from typing import Any

from scanner.analysis.scan_status import scan_warnings
from scanner.analysis.vantage_compare import compare_vantage


def render_vantage(result: dict[str, Any], fmt: str, limit: int = 50) -> str:
    """The comparison as text, Markdown-ish text, JSON or CSV (CSV: the differing hosts)."""
    if fmt == "json":
        return json.dumps(result, indent=2)
    if fmt == "csv":
        out = io.StringIO()
        fields = ["ip", "port", "mx_hostnames", "missing_at", "how", "a_starttls_status",
                  "b_starttls_status", "a_outcome", "b_outcome"]
        writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
        writer.writeheader()
        writer.writerows({**d, "mx_hostnames": " ".join(d["mx_hostnames"])}
                         for d in result["differing"])
        return out.getvalue()
    a, b = result["a"], result["b"]
    lines = [f"A: {a['vantage']} ({a['outdir']}, {a['hosts']} hosts)",
             f"B: {b['vantage']} ({b['outdir']}, {b['hosts']} hosts)",
             f"hosts in both scans        {result['hosts_in_both']}",
             f"answered EHLO at both      {result['answered_at_both']}",
             f"STARTTLS at both           {result['offered_at_both']}",
             f"STARTTLS missing at A only {result['missing_at_a']} (masked at A: "
             f"{result['masked_at_a']})",
             f"STARTTLS missing at B only {result['missing_at_b']} (masked at B: "
             f"{result['masked_at_b']})"]
    if result["differing"]:
        lines += ["", "hosts offering STARTTLS at one vantage point only:"]
        for d in result["differing"][:limit]:
            lines.append(f"  {d['ip']}:{d['port']} {' '.join(d['mx_hostnames'])[:60]}: missing "
                         f"at {d['missing_at'].upper()} ({d['how']})")
        if len(result["differing"]) > limit:
            lines.append(f"  ... and {len(result['differing']) - limit} more "
                         "(--format csv lists all)")
    return "\n".join(lines)


def run_vantage_compare(args: argparse.Namespace) -> int:
    """Print the two-vantage comparison of OLD (A) and NEW (B)."""
    for outdir in (args.old, args.new):
        if not (outdir / "hosts").is_dir():
            print(f"scanner: error: {outdir} holds no scan results (no hosts/ dataset)",
                  file=sys.stderr)
            return 2
    for outdir in (args.old, args.new):
        for warning in scan_warnings(outdir):
            print(f"scanner: {warning}", file=sys.stderr)
    text = render_vantage(compare_vantage(args.old, args.new), args.format, args.list)
    print(text, end="" if args.format == "csv" else "\n")
    return 0
