"""`scanner compare --vantage A B`: the same hosts seen from two vantage points.

A network that strips STARTTLS (a middlebox rewriting the keyword to `XXXXXXXA`, or dropping it
from the EHLO reply) makes a host look plaintext-only from one place. Two scans of the same
hosts from two vantage points expose it: every host that completed EHLO at both and offered
STARTTLS at one but not the other is listed, with where it was missing and how (`masked` or
`not_offered`).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

from scanner.analysis.scan_status import scan_status, scan_warnings
from scanner.sink.dataset import read_dataset, read_manifest

_COLUMNS = ["ip", "port", "mx_hostnames", "ehlo_status", "starttls_offered", "starttls_status",
            "outcome"]


def _hosts(outdir: Path) -> dict[str, dict[str, Any]]:
    """Hosts by address (a scan uses one port; the lab's stripping path is another port)."""
    return {r["ip"]: r for r in read_dataset(outdir, "hosts", _COLUMNS).to_pylist()}


def _name(outdir: Path) -> str:
    try:
        vantage = read_manifest(outdir).get("vantage") or {}
    except Exception:  # noqa: BLE001 - the comparison does not need the manifest
        vantage = {}
    return str(vantage.get("name") or vantage.get("hostname") or outdir)


def compare_vantage(a: Path, b: Path) -> dict[str, Any]:
    """Counts over the hosts both scans reached, and the hosts whose STARTTLS differs."""
    ha, hb = _hosts(a), _hosts(b)
    both = sorted(ha.keys() & hb.keys())
    answered = [k for k in both if ha[k]["ehlo_status"] == "ok" and hb[k]["ehlo_status"] == "ok"]
    differing: list[dict[str, Any]] = []
    for key in answered:
        ra, rb = ha[key], hb[key]
        if bool(ra["starttls_offered"]) == bool(rb["starttls_offered"]):
            continue
        missing, there = ("a", ra) if not ra["starttls_offered"] else ("b", rb)
        differing.append({
            "ip": key, "port": there["port"],
            "mx_hostnames": sorted(set(ra["mx_hostnames"] or []) | set(rb["mx_hostnames"] or [])),
            "missing_at": missing, "how": there["starttls_status"],
            "a_starttls_status": ra["starttls_status"], "b_starttls_status": rb["starttls_status"],
            "a_outcome": ra["outcome"], "b_outcome": rb["outcome"]})
    return {
        "a": {"outdir": str(a), "vantage": _name(a), "hosts": len(ha),
              "scan": scan_status(a).to_json()},
        "b": {"outdir": str(b), "vantage": _name(b), "hosts": len(hb),
              "scan": scan_status(b).to_json()},
        "hosts_in_both": len(both), "answered_at_both": len(answered),
        "offered_at_both": sum(bool(ha[k]["starttls_offered"]) and bool(hb[k]["starttls_offered"])
                               for k in answered),
        "missing_at_a": sum(d["missing_at"] == "a" for d in differing),
        "missing_at_b": sum(d["missing_at"] == "b" for d in differing),
        "masked_at_a": sum(ha[k]["starttls_status"] == "masked" for k in answered),
        "masked_at_b": sum(hb[k]["starttls_status"] == "masked" for k in answered),
        "differing": differing,
    }


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
