"""What a resumed scan needs from what was already written: done domains, hosts, certificates.

HostSummary is the compact per-host view the rollup uses, built the same way from a fresh
HostRecord and from a committed `hosts` row, so resumed and fresh hosts are indistinguishable.
It carries no address: the probe table keys summaries by address and shares equal ones.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from scanner.model.records import HostRecord
from scanner.model.status import HandshakeStatus, HostOutcome, ReplyStatus
from scanner.sink.durable import Commit, read_commits

if TYPE_CHECKING:
    from scanner.policy.dane import ChainKeys

_HOST_COLUMNS = ["ip", "outcome", "ehlo_status", "starttls_offered", "handshake_status",
                 "chain_valid", "leaf_names"]


@dataclass(frozen=True, slots=True)
class HostSummary:
    """What the per-domain rollup needs of one probed address (which is the table's key).

    chain_valid is None when no certificate was received. dane_keys is what the chain can match
    in a TLSA record (None without policy checks, or without a chain). Equal summaries are
    interchangeable: most addresses of a survey share one of a few thousand
    (probe_table.ProbeTable).
    """

    outcome: HostOutcome
    smtp_ok: bool  # EHLO completed
    starttls_offered: bool
    tls_ok: bool  # the handshake completed
    chain_valid: bool | None
    leaf_names: tuple[str, ...]
    dane_keys: ChainKeys | None = None

    @classmethod
    def from_record(cls, rec: HostRecord, dane_keys: ChainKeys | None = None) -> HostSummary:
        """The summary of a freshly probed host (with its chain's DANE keys when checked)."""
        p = rec.probe
        return cls(outcome=rec.outcome,
                   smtp_ok=p.ehlo_status == ReplyStatus.OK,
                   starttls_offered=p.starttls_offered is True,
                   tls_ok=p.handshake_status == HandshakeStatus.OK,
                   chain_valid=rec.chain.valid if rec.chain is not None else None,
                   leaf_names=rec.leaf_names, dane_keys=dane_keys)


@dataclass(frozen=True, slots=True)
class ResumeState:
    """What committed part files already hold; empty for a fresh scan."""

    line_nos: frozenset[int] = frozenset()  # `domains.line_no` of every written input line
    domains: frozenset[str] = frozenset()  # `domains.domain` (valid lines only)
    hosts: Mapping[str, HostSummary] = field(default_factory=dict)  # written `hosts`, by ip
    certificates: frozenset[str] = frozenset()  # sha256 of every written certificate
    rows: dict[str, int] = field(default_factory=dict)  # committed rows per dataset
    checkpoints: int = 0  # committed checkpoints
    classes: Mapping[str, int] = field(default_factory=dict)  # committed rows by starttls_class


def _read_columns(outdir: Path, commits: list[Commit], dataset: str,
                  columns: list[str]) -> Iterator[dict[str, list[Any]]]:
    """The wanted columns of each committed part of one dataset, one part at a time."""
    prefix = dataset + "/"
    for commit in commits:
        for name in commit.files:
            if name.startswith(prefix):
                yield pq.read_table(outdir / name, columns=columns).to_pydict()


def load_hosts(outdir: Path, commits: list[Commit] | None = None) -> dict[str, HostSummary]:
    """Summaries of the committed `hosts` rows by address, in the order they were written."""
    if commits is None:
        commits = read_commits(outdir)
    hosts: dict[str, HostSummary] = {}
    for part in _read_columns(outdir, commits, "hosts", _HOST_COLUMNS):
        for ip, outcome, ehlo, offered, handshake, valid, names in zip(
                *(part[c] for c in _HOST_COLUMNS), strict=True):
            hosts[ip] = HostSummary(
                outcome=HostOutcome(outcome),
                smtp_ok=ehlo == ReplyStatus.OK, starttls_offered=offered is True,
                tls_ok=handshake == HandshakeStatus.OK,
                chain_valid=valid,
                leaf_names=tuple(names or ()))
    return hosts


def load_resume_state(outdir: Path) -> ResumeState:
    """Read back what a previous run committed, reading only the columns resume needs."""
    commits = read_commits(outdir)
    rows: dict[str, int] = {}
    for commit in commits:
        for name, count in commit.rows.items():
            rows[name] = rows.get(name, 0) + count
    lines: set[int] = set()
    domains: set[str] = set()
    classes: Counter[str] = Counter()
    for part in _read_columns(outdir, commits, "domains",
                              ["line_no", "domain", "starttls_class"]):
        lines.update(part["line_no"])
        domains.update(d for d in part["domain"] if d is not None)
        classes.update(part["starttls_class"])
    certificates: set[str] = set()
    for part in _read_columns(outdir, commits, "certificates", ["sha256"]):
        certificates.update(part["sha256"])
    return ResumeState(line_nos=frozenset(lines), domains=frozenset(domains),
                       hosts=load_hosts(outdir, commits), certificates=frozenset(certificates),
                       rows=rows, checkpoints=len(commits), classes=dict(classes))
