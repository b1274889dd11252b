"""`scanner compare --vantage A B`: the same hosts seen from two vantage points.

A network that strips STARTTLS (a middlebox rewriting the keyword to `XXXXXXXA`, or dropping it
from the EHLO reply) makes a host look plaintext-only from one place. Two scans of the same
hosts from two vantage points expose it: every host that completed EHLO at both and offered
STARTTLS at one but not the other is listed, with where it was missing and how (`masked` or
`not_offered`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from scanner.analysis.scan_status import scan_status
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
