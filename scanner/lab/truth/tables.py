"""Ground truth: what a correct scan of a lab population must find, written as Parquet.

`DIR/truth/domains.parquet` has one row per line of `DIR/domains.txt` and
`DIR/truth/hosts.parquet` one row per host, with the scanner's own column names
(`TRUTH_DOMAIN_COLUMNS`, `TRUTH_HOST_COLUMNS`) plus `behaviour`, `dns_case` and a few helpers,
so a scan and the truth join on `domain` and on `ip` and compare by equality.
The per-domain classes follow the scanner's `scan/rollup.py`: counted over (MX host, address)
pairs, the classes over pairs whose EHLO completed.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scanner.lab.population.behaviours import (
    ANSWERS_SMTP,
    EXPECTED,
    NEGOTIATES_TLS,
    STRICT_VALID,
    Behaviour,
)
from scanner.lab.population.builder import DnsCase, LabDomain, Population
from scanner.lab.population.model import LabHost
from scanner.lab.truth.policy import deep_values, domain_values, edge_rows
from scanner.model.status import DnsStatus, HostOutcome, MxSource, ReplyStatus, StartTlsClass
from scanner.sink.schema import (
    DOMAIN_MX,
    DOMAINS,
    HOSTS,
    TRUTH_DEEP_COLUMNS,
    TRUTH_DOMAIN_COLUMNS,
    TRUTH_EDGE_COLUMNS,
    TRUTH_HOST_COLUMNS,
)

try:  # the name the lab PKI puts in wrong_name certificates
    from scanner.lab.population.pki import WRONG_NAME
except ImportError:  # pragma: no cover - only while pki.py is being written
    WRONG_NAME = "not-this-host.test"

_STATUS = pa.dictionary(pa.int32(), pa.string())
_STRINGS = pa.list_(pa.string())
DOMAIN_TRUTH = pa.schema([DOMAINS.field(c) for c in TRUTH_DOMAIN_COLUMNS] + [
    pa.field("input", pa.string()), pa.field("dns_case", _STATUS),
    DOMAINS.field("mx_hostnames")])
HOST_TRUTH = pa.schema([HOSTS.field(c) for c in TRUTH_HOST_COLUMNS] + [
    pa.field("behaviour", _STATUS), HOSTS.field("mx_hostnames"),
    pa.field("latency_ms", pa.int32())] + [
    HOSTS.field(c) for c in TRUTH_DEEP_COLUMNS[1:]])
EDGE_TRUTH = pa.schema([DOMAIN_MX.field(c) for c in TRUTH_EDGE_COLUMNS])

_FAILED = {DnsCase.NXDOMAIN: DnsStatus.NXDOMAIN, DnsCase.SERVFAIL: DnsStatus.SERVFAIL,
           DnsCase.TIMEOUT: DnsStatus.TIMEOUT}
_Counts = tuple[int, int, int, int, int, int, int, StartTlsClass, StartTlsClass]


def leaf_names(host: LabHost) -> tuple[str, ...]:
    """The DNS names of the leaf a scan receives; empty without a parseable certificate."""
    if host.behaviour not in NEGOTIATES_TLS or host.behaviour is Behaviour.BAD_CERT:
        return ()  # as the scanner records it: an empty list, not null
    if host.behaviour is Behaviour.WRONG_NAME:
        return (WRONG_NAME,)
    return host.cert_names or host.mx_names or ("lab-host.test",)


def _share(part: int, whole: int) -> StartTlsClass:
    if part == whole:
        return StartTlsClass.ALL
    return StartTlsClass.SOME if part else StartTlsClass.NONE


class _Judge:
    """Per-domain counts and classes, cached per distinct MX set (providers share theirs)."""

    def __init__(self, population: Population) -> None:
        self.pop = population
        self._cache: dict[tuple[str, ...], _Counts] = {}
        self._cert_names = {h.ip: frozenset(h.cert_names or h.mx_names) for h in population.hosts}

    def counts(self, names: tuple[str, ...]) -> _Counts:
        """(n_mx_hosts, n_addresses, n_pairs, reachable, starttls, tls, strict, class, strict)."""
        cached = self._cache.get(names)
        if cached is None:
            cached = self._cache[names] = self._count(names)
        return cached

    def _count(self, names: tuple[str, ...]) -> _Counts:
        pop = self.pop
        pairs: list[tuple[str, str | None]] = []
        for name in names:
            ips = pop.addresses.get(pop.cnames.get(name, name), ())
            if ips:
                pairs.extend((name, ip) for ip in ips)
            else:
                pairs.append((name, None))  # an MX host without address is one pair
        addressed = [(name, ip) for name, ip in pairs if ip is not None]
        # None: a private address no lab host serves, never contacted
        behaviours = [(name, ip, pop.behaviour_of(ip)) for name, ip in addressed]
        answered = [(n, ip, b) for n, ip, b in behaviours if b in ANSWERS_SMTP]
        n_tls = sum(b in NEGOTIATES_TLS for _, _, b in answered)
        n_strict = sum(b in STRICT_VALID and n in self._cert_names[ip] for n, ip, b in answered)
        n_offered = sum(b is not None and EXPECTED[b].starttls_offered is True
                        for _, _, b in behaviours)
        if not addressed:
            cls = strict = StartTlsClass.DNS_ERROR
        elif all(b is None for _, _, b in behaviours):
            cls = strict = StartTlsClass.PRIVATE_MX
        elif not answered:
            cls = strict = StartTlsClass.UNREACHABLE
        else:
            cls, strict = _share(n_tls, len(answered)), _share(n_strict, len(answered))
        return (len(names), len({ip for _, ip in addressed}), len(pairs), len(answered),
                n_offered, n_tls, n_strict, cls, strict)

    def row(self, d: LabDomain) -> tuple[Any, ...]:
        """One truth row (DOMAIN_TRUTH order) for a domain."""
        zero: _Counts = (0, 0, 0, 0, 0, 0, 0, StartTlsClass.DNS_ERROR, StartTlsClass.DNS_ERROR)
        status, source, names = DnsStatus.OK, MxSource.MX, tuple(n for _, n in d.mx)
        if d.case in _FAILED:
            status, source, names, counts = _FAILED[d.case], MxSource.NONE, (), zero
        elif d.case is DnsCase.NULL_MX:
            source, names = MxSource.NULL, ()
            counts = zero[:7] + (StartTlsClass.NULL_MX, StartTlsClass.NULL_MX)
        elif d.case is DnsCase.NO_MX:
            status, source = DnsStatus.NODATA, MxSource.NONE
            counts = zero[:7] + (StartTlsClass.NO_MX, StartTlsClass.NO_MX)
        else:
            if d.case is DnsCase.IMPLICIT:
                source, names = MxSource.IMPLICIT, (d.name,)
            counts = self.counts(names)
        return (d.name, status.value, source.value, *counts[:7], counts[7].value,
                counts[8].value, *domain_values(self.pop, d, leaf_names), d.input_line,
                d.case.value, names)


def domain_rows(population: Population) -> Iterable[tuple[Any, ...]]:
    """Truth rows for every input line, in domains.txt order (invalid lines included)."""
    judge = _Judge(population)
    by_line = {d.input_line: d for d in population.domains}
    invalid = StartTlsClass.INVALID.value
    for line in population.input_lines():
        domain = by_line.get(line)
        if domain is None:
            yield (line, "invalid", None, 0, 0, 0, 0, 0, 0, 0, invalid, invalid,
                   *domain_values(population, None, leaf_names), line,
                   DnsCase.INVALID.value, ())
        else:
            yield judge.row(domain)


def _software(host: LabHost) -> tuple[str | None, str | None]:
    """What the banner announces, when the scan receives the host's 220 greeting."""
    if EXPECTED[host.behaviour].greeting_status is not ReplyStatus.OK:
        return None, None
    return host.software or "unknown", host.software_version


def host_rows(population: Population, port: int) -> Iterable[tuple[Any, ...]]:
    """Truth rows (HOST_TRUTH order) for every host, and for every private address in the
    DNS (behaviour null: nothing serves it, and a scan records it without contacting it)."""
    for h in population.hosts:
        e = EXPECTED[h.behaviour]
        yield (h.ip, port, e.outcome.value, e.connect_status.value, e.greeting_status.value,
               e.ehlo_status.value, e.starttls_status.value, e.handshake_status.value,
               e.ehlo_tls_status.value, e.starttls_offered, e.tls_version, e.forward_secrecy,
               e.kex_group, e.kex_bits, e.chain_valid,
               e.verify_error.value if e.verify_error else None, leaf_names(h),
               *_software(h), h.behaviour.value, h.cert_names or h.mx_names, h.latency_ms,
               *deep_values(h.behaviour))
    private, unreached = HostOutcome.PRIVATE_ADDRESS.value, ReplyStatus.NOT_REACHED.value
    for ip, names in population.unserved_addresses().items():
        # greeting, EHLO, STARTTLS, handshake and EHLO after TLS never reached; no TLS facts
        yield (ip, port, private, private, *[unreached] * 5, None, None, None, None, None,
               None, None, (), None, None, None, names, 0, (), (), None, None, None)


def _table(rows: Iterable[tuple[Any, ...]], schema: pa.Schema) -> pa.Table:
    columns = list(zip(*rows, strict=True)) or [()] * len(schema)
    return pa.table([pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)],
                    schema=schema)


def truth_tables(population: Population, port: int) -> tuple[pa.Table, pa.Table]:
    """(domains, hosts) truth tables."""
    return (_table(domain_rows(population), DOMAIN_TRUTH),
            _table(host_rows(population, port), HOST_TRUTH))


def edge_truth(population: Population) -> pa.Table:
    """The domain_mx truth: policy facts per domain x MX host x address edge."""
    return _table(edge_rows(population, leaf_names), EDGE_TRUTH)


def write_truth(population: Population, directory: Path, port: int) -> None:
    """Write domains.txt and truth/{domains,hosts}.parquet under `directory`."""
    (directory / "truth").mkdir(parents=True, exist_ok=True)
    lines = population.input_lines()
    (directory / "domains.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    domains, hosts = truth_tables(population, port)
    pq.write_table(domains, directory / "truth" / "domains.parquet")
    pq.write_table(hosts, directory / "truth" / "hosts.parquet")
    pq.write_table(edge_truth(population), directory / "truth" / "domain_mx.parquet")
