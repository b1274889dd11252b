"""MTA-STS (RFC 8461): policy parsing, MX pattern matching, HTTP answers, and the lab's server."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import pytest

from scanner.config import Timeouts
from scanner.dns.policy_resolver import PolicyResolver
from scanner.lab.population.builder import STS_ADDRESS
from scanner.lab.servers.dns import Zone, start_dns_server
from scanner.model.policy_status import RecordStatus, StsFetchStatus, StsMode
from scanner.policy.mta_sts import (
    MAX_POLICY_BYTES,
    StsFetcher,
    StsPolicy,
    StsResult,
    mx_matches,
    parse_policy,
    parse_response,
    sts_mode,
)

GOOD = "version: STSv1\r\nmode: enforce\r\nmx: mx1.a.test\r\nmx: *.b.test\r\nmax_age: 604800\r\n"


@pytest.mark.parametrize(("text", "expected"), [
    (GOOD, StsPolicy(StsMode.ENFORCE, ("mx1.a.test", "*.b.test"), 604800)),
    ("version: STSv1\nmode: testing\nmx: MX.A.TEST.\nmax_age: 0\n",
     StsPolicy(StsMode.TESTING, ("mx.a.test",), 0)),
    ("version: STSv1\nmode: none\nmax_age: 86400\n", StsPolicy(StsMode.NONE, (), 86400)),
    ("version: STSv1\nmode: enforce\nmx: m.a.test\nmax_age: 86400\nextension: ignored\n",
     StsPolicy(StsMode.ENFORCE, ("m.a.test",), 86400)),
    ("version: STSv2\nmode: enforce\nmx: m.a.test\nmax_age: 1\n", None),
    ("version: STSv1\nmode: enforce\nmax_age: 1\n", None),  # enforce without mx
    ("version: STSv1\nmode: strict\nmx: m.a.test\nmax_age: 1\n", None),
    ("version: STSv1\nmode: invalid\nmx: m.a.test\nmax_age: 1\n", None),
    ("version: STSv1\nmode: enforce\nmx: m.a.test\nmax_age: 31557601\n", None),
    ("version: STSv1\nmode: enforce\nmx: m.a.test\nmax_age: -1\n", None),
    ("version: STSv1\nmode: enforce\nmode: none\nmx: m.a.test\nmax_age: 1\n", None),
    ("version: STSv1\nmode: enforce\nmx: *.*.a.test\nmax_age: 1\n", None),
    ("<html>not a policy</html>", None),
    ("", None),
])
def test_parse_policy(text: str, expected: StsPolicy | None) -> None:
    assert parse_policy(text) == expected


@pytest.mark.parametrize(("mx", "patterns", "expected"), [
    ("mx1.a.test", ("mx1.a.test",), True),
    ("MX1.A.TEST.", ("mx1.a.test",), True),
    ("mx1.b.test", ("*.b.test",), True),
    ("x.mx1.b.test", ("*.b.test",), False),  # `*.` is exactly one label
    ("b.test", ("*.b.test",), False),
    ("mx2.a.test", ("mx1.a.test",), False),
])
def test_mx_patterns(mx: str, patterns: tuple[str, ...], expected: bool) -> None:
    assert mx_matches(mx, patterns) is expected


def _http(status: str, body: bytes, ctype: str = "text/plain") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\n\r\n").encode() + body


@pytest.mark.parametrize(("raw", "status"), [
    (_http("200 OK", GOOD.encode()), StsFetchStatus.OK),
    (_http("200 OK", GOOD.encode(), "text/plain; charset=utf-8"), StsFetchStatus.OK),
    (_http("200 OK", GOOD.encode(), "text/html"), StsFetchStatus.INVALID),
    (_http("301 Moved", b""), StsFetchStatus.HTTP_ERROR),  # redirects are not followed
    (_http("404 Not Found", b"nope"), StsFetchStatus.HTTP_ERROR),
    (_http("200 OK", b"x" * (MAX_POLICY_BYTES + 1)), StsFetchStatus.TOO_LARGE),
    (b"garbage", StsFetchStatus.HTTP_ERROR),
    (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n"
     + f"{len(GOOD):x}\r\n".encode() + GOOD.encode() + b"\r\n0\r\n\r\n", StsFetchStatus.OK),
])
def test_http_response(raw: bytes, status: StsFetchStatus) -> None:
    assert parse_response(raw).fetch_status is status


@pytest.mark.parametrize(("txt", "result", "mode"), [
    (RecordStatus.NONE, StsResult(StsFetchStatus.NOT_ATTEMPTED), None),
    (RecordStatus.DNS_ERROR, StsResult(StsFetchStatus.NOT_ATTEMPTED), None),
    (RecordStatus.INVALID, StsResult(StsFetchStatus.NOT_ATTEMPTED), StsMode.INVALID),
    (RecordStatus.MULTIPLE, StsResult(StsFetchStatus.NOT_ATTEMPTED), StsMode.INVALID),
    (RecordStatus.VALID, StsResult(StsFetchStatus.HTTP_ERROR), StsMode.INVALID),
    (RecordStatus.VALID, StsResult(StsFetchStatus.OK, StsPolicy(StsMode.NONE, (), 1)),
     StsMode.NONE),
])
def test_sts_mode(txt: RecordStatus, result: StsResult, mode: StsMode | None) -> None:
    assert sts_mode(txt, result) == mode


def _fetcher(lab: Any, **kw: Any) -> StsFetcher:
    resolver = PolicyResolver((lab.resolver,), Timeouts(dns_query=0.5, dns_tries=2))
    return StsFetcher(resolver, [str(lab.ca_pem)], use_mozilla=False,
                      port=lab.lab.info["mta_sts_port"], timeout=3.0,
                      allow_address=kw.get("allow", lambda ip: True))


async def test_lab_policies_fetch_as_the_truth_says(fake_internet: Any) -> None:
    fetcher = _fetcher(fake_internet)
    rows = [r for r in fake_internet.truth_domains().to_pylist()
            if r["mta_sts_txt_status"] == "valid"]
    seen = set()
    for row in rows:
        result = await fetcher.fetch(row["domain"])
        policy = result.policy
        got = (result.fetch_status.value, policy.mode.value if policy else "invalid",
               policy.max_age if policy else None, list(policy.mx_patterns) if policy else [])
        want = (row["mta_sts_fetch_status"], row["mta_sts_mode"], row["mta_sts_max_age"],
                row["mta_sts_mx_patterns"])
        assert got == want, (row["domain"], result.detail)
        seen.add(got[0])
    assert seen == {"ok", "http_error", "invalid", "tls_error", "dns_error"}


async def test_policy_host_outside_the_allowed_addresses_is_not_contacted(
        fake_internet: Any) -> None:
    domain = next(r["domain"] for r in fake_internet.truth_domains().to_pylist()
                  if r["mta_sts_fetch_status"] == "ok")
    result = await _fetcher(fake_internet, allow=lambda ip: False).fetch(domain)
    assert result.fetch_status is StsFetchStatus.EXCLUDED


async def test_untrusted_certificate_is_a_tls_error(fake_internet: Any) -> None:
    domain = next(r["domain"] for r in fake_internet.truth_domains().to_pylist()
                  if r["mta_sts_fetch_status"] == "ok")
    resolver = PolicyResolver((fake_internet.resolver,), Timeouts(dns_query=0.5, dns_tries=2))
    fetcher = StsFetcher(resolver, [], use_mozilla=True,
                         port=fake_internet.lab.info["mta_sts_port"], timeout=3.0,
                         allow_address=lambda ip: True)
    assert (await fetcher.fetch(domain)).fetch_status is StsFetchStatus.TLS_ERROR


def test_policy_fetches_trust_the_scans_store_and_nothing_else(fake_internet: Any) -> None:
    from cryptography.hazmat.primitives.serialization import Encoding

    from scanner.tls.verify import load_anchors

    def fetch_roots(use_mozilla: bool) -> set[bytes]:
        fetcher = StsFetcher(object(), [lab_ca], use_mozilla=use_mozilla)  # type: ignore[arg-type]
        return set(fetcher._context().get_ca_certs(binary_form=True))

    def scan_roots(use_mozilla: bool) -> set[bytes]:  # what SMTP chains are judged against
        return {c.public_bytes(Encoding.DER) for c in load_anchors([Path(lab_ca)], use_mozilla)}

    lab_ca = str(fake_internet.lab.info["ca_pem"])
    assert fetch_roots(True) == scan_roots(True)  # not the system's store (more roots) besides
    assert fetch_roots(False) == scan_roots(False) and len(scan_roots(False)) == 1


def test_lab_truth_has_every_mode_and_delivery_verdict(fake_internet: Any) -> None:
    rows = fake_internet.truth_domains().to_pylist()
    assert {r["mta_sts_mode"] for r in rows} == {None, "enforce", "testing", "none", "invalid"}
    judged = [r for r in rows if r["mta_sts_mode"] in ("enforce", "testing")]
    assert {r["mta_sts_delivery_ok"] for r in judged} == {True, False}
    assert {r["mta_sts_mx_all_match"] for r in judged} == {True, False}
    assert any(r["strict_capable"] and r["dane_class"] != "valid" for r in rows)


@pytest.mark.parametrize(("mode", "status", "unanswered"), [
    ("servfail", StsFetchStatus.DNS_ERROR, False),  # an answer, if not a useful one
    ("refused", StsFetchStatus.DNS_ERROR, False),
    ("timeout", StsFetchStatus.DNS_ERROR, True),  # nothing came back
])
async def test_a_policy_host_lookup_says_whether_it_was_answered(
        mode: str, status: StsFetchStatus, unanswered: bool) -> None:
    zone = Zone()
    zone.fail("mta-sts.a.test", mode)
    server = await start_dns_server(zone)
    resolver = PolicyResolver((server.address,), Timeouts(dns_query=0.2, dns_tries=1))
    try:
        result = await StsFetcher(resolver, [], use_mozilla=False).fetch("a.test")
    finally:
        resolver.close()
        await server.close()
    assert (result.fetch_status, result.unanswered) == (status, unanswered)


async def test_a_refused_fetch_is_an_answer_and_a_silent_one_is_not(fake_internet: Any) -> None:
    domain = next(r["domain"] for r in fake_internet.truth_domains().to_pylist()
                  if r["mta_sts_fetch_status"] == "ok")
    resolver = PolicyResolver((fake_internet.resolver,), Timeouts(dns_query=0.5, dns_tries=2))
    accepted: list[asyncio.StreamWriter] = []  # never a word to them, closed at the end
    silent = await asyncio.start_server(lambda _, writer: accepted.append(writer), STS_ADDRESS, 0)
    with socket.socket() as sock:  # a port nobody listens on: refused at once
        sock.bind((STS_ADDRESS, 0))
        closed = sock.getsockname()[1]
    try:
        results = [await StsFetcher(resolver, [str(fake_internet.ca_pem)], use_mozilla=False,
                                    port=port, timeout=0.5, allow_address=lambda ip: True
                                    ).fetch(domain)
                   for port in (closed, silent.sockets[0].getsockname()[1])]
    finally:
        silent.close()
        for writer in accepted:
            writer.close()
        resolver.close()
    assert [(r.fetch_status, r.unanswered) for r in results] == [
        (StsFetchStatus.CONNECT_ERROR, False), (StsFetchStatus.TIMEOUT, True)]
