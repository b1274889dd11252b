"""The benchmark's correctness side: lab connection counts and the scan against the truth."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa

from scanner.sink.dataset import read_dataset

#: behaviours whose hosts never accept a connection (so 0 connections is right for them)
NOT_LISTENING = {"refused"}


def connection_report(counts: dict[str, dict[str, Any]], truth_hosts: pa.Table) -> dict[str, Any]:
    """Histogram of connections per address, the most at once, and addresses off by any."""
    behaviours = dict(zip(truth_hosts.column("ip").to_pylist(),
                          truth_hosts.column("behaviour").to_pylist(), strict=True))
    hist: Counter[int] = Counter()
    wrong: list[str] = []
    max_at_once = 0
    forbidden = 0
    for ip, behaviour in behaviours.items():
        c = counts.get(ip, {})
        n = int(c.get("connections", 0))
        hist[n] += 1
        max_at_once = max(max_at_once, int(c.get("max_concurrent", 0)))
        forbidden += int(c.get("forbidden_commands", 0))
        expected = 0 if behaviour in NOT_LISTENING else 1
        if n != expected:
            wrong.append(f"{ip} ({behaviour}): {n}")
    return {"addresses": len(behaviours),
            "histogram": " ".join(f"{k}:{v}" for k, v in sorted(hist.items())),
            "max_concurrent": max_at_once, "forbidden_commands": forbidden,
            "wrong": len(wrong), "wrong_examples": wrong[:10]}


def _by(table: pa.Table, key: str, columns: tuple[str, ...]) -> dict[Any, tuple[Any, ...]]:
    cols = [table.column(c).to_pylist() for c in (key, *columns)]
    return {row[0]: row[1:] for row in zip(*cols, strict=True)}


def check_against_truth(out: Path, truth_domains: pa.Table, truth_hosts: pa.Table
                        ) -> dict[str, Any]:
    """Mismatches of starttls_class/strict_class per domain and outcome per host."""
    scan_d = read_dataset(out, "domains", columns=["domain", "input", "starttls_class",
                                                   "strict_class"])
    # the truth names an invalid line by its raw text
    keys = [d if d is not None else i for d, i in zip(scan_d.column("domain").to_pylist(),
                                                      scan_d.column("input").to_pylist(),
                                                      strict=True)]
    scan_d = scan_d.set_column(0, "domain", pa.array(keys, pa.string()))
    cols = ("starttls_class", "strict_class")
    got, want = _by(scan_d, "domain", cols), _by(truth_domains, "domain", cols)
    d_bad = [f"{k}: scan={got.get(k)} truth={v}" for k, v in want.items() if got.get(k) != v]
    scan_h = read_dataset(out, "hosts", columns=["ip", "outcome"])
    got_h, want_h = _by(scan_h, "ip", ("outcome",)), _by(truth_hosts, "ip", ("outcome",))
    h_bad = [f"{k}: scan={got_h.get(k)} truth={v}" for k, v in want_h.items()
             if got_h.get(k) != v]
    return {"domains": len(want), "domain_mismatches": len(d_bad),
            "domain_examples": d_bad[:10], "hosts": len(want_h),
            "host_mismatches": len(h_bad), "host_examples": h_bad[:10],
            "extra_hosts": len(got_h.keys() - want_h.keys())}
