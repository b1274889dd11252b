"""SPF, DMARC, TLS-RPT and `_mta-sts` TXT records: parsing tables, and lookups against the lab."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scanner.config import Timeouts
from scanner.dns.policy_resolver import PolicyResolver
from scanner.model.policy_status import RecordStatus
from scanner.model.status import DnsStatus
from scanner.policy.mail_policy import (
    check_dmarc,
    check_spf,
    check_sts_txt,
    check_tlsrpt,
    lookup_mail_policy,
)

OK = DnsStatus.OK
V, INV, MULTI, NONE = (RecordStatus.VALID, RecordStatus.INVALID, RecordStatus.MULTIPLE,
                       RecordStatus.NONE)


@pytest.mark.parametrize(("status", "texts", "expected"), [
    (OK, ["v=spf1 mx -all"], (V, "-all")),
    (OK, ["v=spf1 ip4:192.0.2.0/24 ip6:2001:db8::/32 include:_spf.a.test ~all"], (V, "~all")),
    (OK, ["V=SPF1 a:mail.a.test/24 mx//64 ?all"], (V, "?all")),
    (OK, ["v=spf1 +all"], (V, "+all")),
    (OK, ["v=spf1 all"], (V, "+all")),
    (OK, ["v=spf1 redirect=_spf.a.test"], (V, None)),
    (OK, ["v=spf1 exists:%{i}.a.test exp=explain.a.test -all"], (V, "-all")),
    (OK, ["v=spf1 mx bogus:term -all"], (INV, None)),
    (OK, ["v=spf1 ip4 -all"], (INV, None)),
    (OK, ["v=spf1 mx -all", "v=spf1 a ~all"], (MULTI, None)),
    (OK, ["v=spf10 mx -all", "google-site-verification=x"], (NONE, None)),
    (DnsStatus.NXDOMAIN, [], (NONE, None)),
    (DnsStatus.NODATA, [], (NONE, None)),
    (DnsStatus.SERVFAIL, [], (RecordStatus.DNS_ERROR, None)),
    (DnsStatus.TIMEOUT, [], (RecordStatus.DNS_ERROR, None)),
])
def test_spf_presence_and_syntax(status: DnsStatus, texts: list[str], expected: Any) -> None:
    assert check_spf(status, texts) == expected


@pytest.mark.parametrize(("texts", "expected"), [
    (["v=DMARC1; p=reject; rua=mailto:d@a.test"], (V, "reject")),
    (["v=DMARC1;p=quarantine;pct=50;adkim=s;aspf=r"], (V, "quarantine")),
    (["v=DMARC1; p=none"], (V, "none")),
    (["v=DMARC1; p=NONE; sp=reject; ruf=mailto:f@a.test,mailto:g@b.test"], (V, "none")),
    (["v=DMARC1; p=maybe"], (INV, None)),
    (["v=DMARC1"], (INV, None)),
    (["v=DMARC1; p=none; pct=101"], (INV, None)),
    (["v=DMARC1; p=none; rua=d@a.test"], (INV, None)),
    (["v=DMARC1; p=none; p=reject"], (INV, None)),
    (["p=reject; v=DMARC1"], (NONE, None)),  # v= must come first: not a DMARC record at all
    (["v=DMARC1; p=none", "v=DMARC1; p=reject"], (MULTI, None)),
    ([], (NONE, None)),
])
def test_dmarc_presence_syntax_and_policy(texts: list[str], expected: Any) -> None:
    assert check_dmarc(OK, texts) == expected


@pytest.mark.parametrize(("texts", "expected"), [
    (["v=TLSRPTv1; rua=mailto:tls@a.test"], V),
    (["v=TLSRPTv1;rua=https://r.a.test/x,mailto:t@a.test"], V),
    (["v=TLSRPTv1; rua=ftp://r.a.test"], INV),
    (["v=TLSRPTv1"], INV),
    (["v=TLSRPTv1; rua=mailto:a@a.test", "v=TLSRPTv1; rua=mailto:b@a.test"], MULTI),
    (["v=spf1 -all"], NONE),
])
def test_tlsrpt_presence_and_syntax(texts: list[str], expected: RecordStatus) -> None:
    assert check_tlsrpt(OK, texts) == expected


@pytest.mark.parametrize(("texts", "expected"), [
    (["v=STSv1; id=20240101T000000;"], (V, "20240101T000000")),
    (["v=STSv1;id=abc"], (V, "abc")),
    (["v=STSv1;"], (INV, None)),
    (["v=STSv1; id=has-dash"], (INV, None)),
    (["v=STSv1; id=" + "a" * 33], (INV, None)),
    (["v=STSv1; id=a", "v=STSv1; id=b"], (MULTI, None)),
])
def test_mta_sts_txt_presence_and_syntax(texts: list[str], expected: Any) -> None:
    assert check_sts_txt(OK, texts) == expected


_COLUMNS = ("spf_status", "spf_all", "dmarc_status", "dmarc_policy", "tlsrpt_status",
            "mta_sts_txt_status", "mta_sts_id")


async def test_lab_policy_records_equal_truth(fake_internet: Any) -> None:
    resolver = PolicyResolver((fake_internet.resolver,), Timeouts(dns_query=0.5, dns_tries=2))
    rows = [r for r in fake_internet.truth_domains().to_pylist() if r["dns_case"] != "invalid"]
    seen: dict[str, set[Any]] = {c: set() for c in _COLUMNS}
    for row in rows:
        if row["dns_case"] == "timeout":
            continue  # covered by the pipeline test; each costs a full DNS timeout here
        policy = await lookup_mail_policy(row["domain"], resolver)
        got = {c: getattr(policy, c) for c in _COLUMNS}
        assert got == {c: row[c] for c in _COLUMNS}, row["domain"]
        for c in _COLUMNS:
            seen[c].add(row[c])
    # the lab population covers every status the parsers can give
    assert {"none", "valid", "invalid", "multiple", "dns_error"} <= seen["spf_status"]
    assert {"none", "valid", "invalid"} <= seen["dmarc_status"] & seen["tlsrpt_status"]
    assert {"reject", "quarantine", "none"} <= seen["dmarc_policy"]
    assert {"none", "valid", "invalid"} <= seen["mta_sts_txt_status"]


async def test_concurrent_batches_under_a_small_in_flight_limit(fake_internet: Any) -> None:
    # each domain's four TXT lookups go out as one batch; with 3 queries allowed in flight,
    # batches holding part of their slots would wait on each other for ever
    resolver = PolicyResolver((fake_internet.resolver,), Timeouts(dns_query=0.5, dns_tries=2),
                              in_flight=3)
    rows = [r for r in fake_internet.truth_domains().to_pylist()
            if r["dns_case"] not in ("invalid", "timeout")]
    async with asyncio.timeout(60):
        policies = await asyncio.gather(*(lookup_mail_policy(r["domain"], resolver)
                                          for r in rows))
    for row, policy in zip(rows, policies, strict=True):
        assert {c: getattr(policy, c) for c in _COLUMNS} == {c: row[c] for c in _COLUMNS}
    assert resolver.in_flight_peak <= 3
