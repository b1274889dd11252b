"""`scanner report OUTDIR... -o report.html`: one self-contained HTML file (scanner.report)."""

from __future__ import annotations

import argparse
import sys

from scanner.analysis.scan_status import scan_warnings
from scanner.report.build import write_report


def run_report_command(args: argparse.Namespace) -> int:
    """Write the HTML report of the given results directories."""
    for outdir in args.outdirs:
        if not (outdir / "domains").is_dir():
            print(f"scanner: error: {outdir} holds no scan results (no domains/ dataset)",
                  file=sys.stderr)
            return 2
    for outdir in args.outdirs:
        for warning in scan_warnings(outdir):
            print(f"scanner: {warning}", file=sys.stderr)
    try:
        path = write_report(args.outdirs, args.output)
    except OSError as exc:
        print(f"scanner: error: cannot write {args.output}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
