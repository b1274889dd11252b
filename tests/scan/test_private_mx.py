"""Domains whose MX addresses are private: their own class `private_mx`, never contacted.

Lab mode probes only the lab's own 127.0.0.0/8; the mixed profile's `private-mx.test` points at
RFC 1918 and ULA addresses (the conftest refuses any connection there, so a probe would fail
loudly), and a lab domain scanned without lab mode is private_mx too.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from scanner.analysis.stats import survey_stats
from scanner.commands.stats import stat_rows
from scanner.config import Exclusions, ScanConfig
from scanner.model.records import DomainInput, MailHosts, MxHost
from scanner.model.status import ConnectStatus, DnsStatus, HostOutcome, InputStatus, MxSource
from scanner.scan.pipeline import Scan
from scanner.scan.policy_rollup import POLICIES_NOT_QUERIED
from scanner.scan.probe import HostAnalyser, may_contact
from scanner.scan.rollup import rollup_domain
from scanner.scan.summary import HostSummary
from scanner.sink.dataset import read_dataset
from scanner.sink.schema import TRUTH_DOMAIN_COLUMNS
from scanner.tls.context import make_probe_context
from scanner.tls.verify import ChainVerifier

PRIVATE = "private-mx.test"


# -- which addresses may be contacted ------------------------------------------------------------

@pytest.mark.parametrize(("ip", "lab_mode", "allowed"), [
    ("192.0.2.1", False, False),  # documentation range: reserved
    ("8.8.8.8", False, True), ("8.8.8.8", True, True), ("2a00:1450::1", False, True),
    ("127.1.0.5", False, False), ("127.1.0.5", True, True),  # the lab's own range
    ("10.25.0.1", True, False), ("192.168.1.1", True, False), ("172.16.0.1", True, False),
    ("fd00:25::1", True, False), ("::1", True, False), ("169.254.0.1", True, False),
    ("0.0.0.0", True, False), ("::ffff:127.0.0.1", True, False),
])
def test_lab_mode_adds_only_the_labs_range(ip: str, lab_mode: bool, allowed: bool) -> None:
    assert may_contact(ip, lab_mode) is allowed


def _analyser(tmp_path: Path, lab_mode: bool, networks: tuple[str, ...] = ()) -> HostAnalyser:
    config = ScanConfig(output=tmp_path, lab_mode=lab_mode, exclusions=Exclusions(
        networks=tuple(ipaddress.ip_network(n) for n in networks)))
    return HostAnalyser(config, make_probe_context(), ChainVerifier((), True, datetime.now(UTC)))


@pytest.mark.parametrize(("ip", "lab_mode", "reason"), [
    ("10.25.0.1", True, ConnectStatus.PRIVATE_ADDRESS),
    ("10.25.0.2", False, ConnectStatus.PRIVATE_ADDRESS),  # excluded too: private says more
    ("127.1.0.9", False, ConnectStatus.PRIVATE_ADDRESS),
    ("127.1.0.9", True, ConnectStatus.EXCLUDED),  # a lab address on the exclusion list
    ("198.51.100.7", False, ConnectStatus.PRIVATE_ADDRESS),  # TEST-NET-2
    ("8.8.4.4", False, ConnectStatus.EXCLUDED),
    ("8.8.8.8", False, None), ("127.1.0.1", True, None),
])
def test_skip_reason(tmp_path: Path, ip: str, lab_mode: bool, reason: ConnectStatus | None
                     ) -> None:
    analyser = _analyser(tmp_path, lab_mode, ("10.25.0.2/32", "127.1.0.9/32", "8.8.4.4/32"))
    assert analyser.skip_reason(ip) == reason


# -- the class, and the mixed cases ----------------------------------------------------------------

_SUMMARIES = {
    "private": HostSummary(HostOutcome.PRIVATE_ADDRESS, False, False, False, None, ()),
    "excluded": HostSummary(HostOutcome.EXCLUDED, False, False, False, None, ()),
    "tls": HostSummary(HostOutcome.TLS_OK, True, True, True, True, ("mx.a.test",)),
    "plain": HostSummary(HostOutcome.NO_STARTTLS, True, False, False, None, ()),
    "dead": HostSummary(HostOutcome.REFUSED, False, False, False, None, ()),
}


@pytest.mark.parametrize(("kinds", "cls"), [
    (("private",), "private_mx"),
    (("private", "private"), "private_mx"),
    (("excluded",), "excluded"),
    # some addresses excluded by the list, some private: an excluded address could have
    # answered, so the domain is what we chose not to look at
    (("private", "excluded"), "excluded"),
    # private beside contacted addresses: counted like unreachable ones
    (("private", "tls"), "all"),
    (("private", "tls", "plain"), "some"),
    (("private", "dead"), "unreachable"),
    (("private", "excluded", "dead"), "unreachable"),
])
def test_classes_of_private_and_mixed_mx_sets(kinds: tuple[str, ...], cls: str) -> None:
    ips = [f"192.0.2.{i}" for i in range(len(kinds))]
    mail = MailHosts("a.test", DnsStatus.OK, MxSource.MX,
                     (MxHost("mx.a.test", 10, tuple(ips), DnsStatus.OK),), 3)
    item = DomainInput(1, "a.test", "a.test", "a.test", InputStatus.OK)
    record, edges = rollup_domain(item, mail, 25, dict(zip(ips, (_SUMMARIES[k] for k in kinds),
                                                           strict=True)), POLICIES_NOT_QUERIED)
    assert (record.starttls_class, record.strict_class) == (cls, cls)
    assert record.status == "ok" and record.n_addresses == len(kinds) and len(edges) == len(kinds)


# -- against the lab -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def mixed_scan(fast_config_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = fast_config_factory(tmp_path_factory.mktemp("private") / "out")
    asyncio.run(Scan(config).run())
    out: Path = config.output
    return out


def test_private_mx_domain_equals_the_truth_and_is_never_contacted(
        mixed_scan: Path, fake_internet: Any) -> None:
    rows = [r for r in read_dataset(mixed_scan, "domains").to_pylist() if r["domain"] == PRIVATE]
    assert len(rows) == 1
    truth = fake_internet.expected(PRIVATE)
    assert truth["starttls_class"] == truth["strict_class"] == "private_mx"
    assert {c: rows[0][c] for c in TRUTH_DOMAIN_COLUMNS} == {c: truth[c]
                                                              for c in TRUTH_DOMAIN_COLUMNS}
    hosts = {h["ip"]: h for h in read_dataset(mixed_scan, "hosts").to_pylist()}
    for ip in ("10.25.0.1", "fd00:25::1"):  # lab mode, but outside the lab's 127.0.0.0/8
        assert (hosts[ip]["outcome"], hosts[ip]["connect_status"]) == (
            "private_address", "private_address")
        assert hosts[ip]["greeting_status"] == "not_reached"
        assert hosts[ip]["mx_hostnames"] == ["mx.private-mx.test"]


def test_stats_show_private_mx_apart_from_excluded(mixed_scan: Path) -> None:
    d = survey_stats(mixed_scan)["domains"]
    assert d["starttls"]["private_mx"] == d["strict"]["private_mx"] == 1
    assert "excluded" not in d["starttls"]  # no --exclude: nothing is excluded
    assert d["mail_domains"] == sum(d["starttls"].get(c, 0) for c in ("all", "some", "none"))
    rows = {(table, key): (n, of) for table, key, n, of, _ in stat_rows(survey_stats(mixed_scan))}
    assert rows["domains.starttls_class", "private_mx"] == (1, d["input_lines"])
    assert rows["domains.starttls_class", "excluded"] == (0, d["input_lines"])
    assert ("mail_domains.starttls_class", "private_mx") not in rows


def test_lab_domains_scanned_without_lab_mode_are_private_mx(
        fake_internet: Any, fast_config_factory: Any, tmp_path: Path) -> None:
    listing = tmp_path / "domains.txt"
    listing.write_text(f"only-valid.test\nonly-no-starttls.test\n{PRIVATE}\n")
    config = dataclasses.replace(fast_config_factory(tmp_path / "out"), lab_mode=False,
                                 inputs=(listing,))
    valid_ip = fake_internet.address_of("valid")
    before = fake_internet.counts().get(valid_ip, {}).get("connections", 0)
    asyncio.run(Scan(config).run())
    domains = read_dataset(config.output, "domains").to_pylist()
    assert [(r["domain"], r["status"], r["starttls_class"], r["strict_class"])
            for r in sorted(domains, key=lambda r: r["line_no"])] == [
        ("only-valid.test", "ok", "private_mx", "private_mx"),
        ("only-no-starttls.test", "ok", "private_mx", "private_mx"),
        (PRIVATE, "ok", "private_mx", "private_mx")]
    hosts = read_dataset(config.output, "hosts").to_pylist()
    assert hosts and {h["outcome"] for h in hosts} == {"private_address"}
    assert fake_internet.counts().get(valid_ip, {}).get("connections", 0) == before
    d = survey_stats(config.output)["domains"]
    assert d["mail_domains"] == 0 and d["starttls"] == {"private_mx": 3}
