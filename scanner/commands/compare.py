"""`scanner compare OLD NEW`: scanner.analysis.compare as text, Markdown, CSV or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from scanner.analysis.compare import compare
from scanner.commands.stats import render_rows
from scanner.report.server_text import printable


def render_compare(result: dict[str, Any], fmt: str, limit: int = 50) -> str:
    """The comparison as text, Markdown, CSV (shares, then changed domains) or JSON."""
    if fmt == "json":
        return json.dumps(result, indent=2)
    shares = [{k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}
              for row in result["shares"]]
    changed = [{"what": what, "direction": direction, **row}
               for what, sides in result["changes"].items()
               for direction, rows in sides.items() for row in rows]
    share_cols = list(shares[0])
    if fmt == "csv":
        return render_rows(shares, "csv", share_cols) + render_rows(
            changed, "csv", ["what", "direction", "domain", "old", "new"])
    parts = [f"old: {result['old']['outdir']} ({result['old']['start_time']})",
             f"new: {result['new']['outdir']} ({result['new']['start_time']})",
             "domains: " + ", ".join(f"{k} {v}" for k, v in result["domains"].items()), "",
             render_rows(shares, fmt, share_cols)]
    for what, sides in result["changes"].items():
        for direction, rows in sides.items():
            parts += ["", f"{direction} {what} ({len(rows)} domains)"]
            parts += [f"  {printable(r['domain'])}: {r['old']} -> {r['new']}"
                      for r in rows[:limit]]
            if len(rows) > limit:
                parts.append(f"  ... and {len(rows) - limit} more (--format csv lists all)")
    return "\n".join(parts)


def run_compare_command(args: argparse.Namespace) -> int:
    """Print what changed between two results directories."""
    for outdir in (args.old, args.new):
        if not (outdir / "domains").is_dir():
            print(f"scanner: error: {outdir} holds no scan results (no domains/ dataset)",
                  file=sys.stderr)
            return 2
    result = compare(args.old, args.new)
    for side in ("old", "new"):
        for warning in result[side]["warnings"]:
            print(f"scanner: {warning}", file=sys.stderr)
    text = render_compare(result, args.format, args.list)
    print(text, end="" if args.format == "csv" else "\n")
    return 0
