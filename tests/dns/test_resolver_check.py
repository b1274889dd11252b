"""The resolver check: a resolver broken at our end stops the scan before any fact is written.

Stub resolvers on loopback (tests/helpers/dns_stub.py) answer NXDOMAIN, SERVFAIL or REFUSED to
everything, or refuse only the root; the lab passes.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from helpers.dns_stub import rcode_stub, start_rcode_stub, zone_server

from scanner.config import Limits, ResolverCheck, Timeouts
from scanner.dns.mail_resolver import MailResolver
from scanner.dns.resolver_check import CheckAnswer, CheckReport, Verdict, _judge, questions_of
from scanner.lab.population.builder import build_zone
from scanner.lab.population.dns_zone import Zone
from scanner.lab.population.profiles import generate
from scanner.lab.servers.dns import start_dns_server
from scanner.scan.resolver_watch import HOLD_ROWS, MAX_HOLD_ROWS, ResolverWatch
from scanner.scan.vantage import VantageFailure
from scanner.sink.dataset import read_dataset, read_manifest

FAST = ["--timeout-dns", "0.5", "--timeout-connect", "1", "--timeout-greeting", "1.5",
        "--timeout-command", "1.5", "--timeout-starttls", "1.5", "--timeout-handshake", "1.5",
        "--deadline", "4", "--no-progress"]
#: names a real survey would list; nothing outside loopback is ever asked (the stub answers)
REAL_DOMAINS = [f"{label}.no" for label in ("nrk", "uio", "posten", "dnb", "vg", "nav",
                                            "regjeringen", "telenor", "finn", "ntnu")]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True,
                          text=True, timeout=timeout)


def _domains_file(tmp_path: Path, names: list[str]) -> Path:
    path = tmp_path / "domains.txt"
    path.write_text("\n".join(names) + "\n")
    return path


def _stopped_before_any_fact(proc: subprocess.CompletedProcess[str], out: Path) -> str:
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("scanner: stopped: resolver 127.0.0.1:")
    assert not (out / "domains").exists() and not (out / "manifest.json").exists()
    return proc.stderr


# --- judging the answers ----------------------------------------------------------------------

def _a(name: str, qtype: str, answer: str, records: int = 0) -> CheckAnswer:
    return CheckAnswer(name, qtype, answer, records, answered=not answer.startswith("nothing"))


_ROOT_OK = (_a(".", "NS", "NOERROR", 13), _a(".", "SOA", "NOERROR", 1))
_TIMEOUT = "nothing (timeout)"


@pytest.mark.parametrize(("check", "answers", "verdict", "problem"), [
    (ResolverCheck(), _ROOT_OK, Verdict.PASSED, None),
    (ResolverCheck(), (_a(".", "NS", "NOERROR", 13), _a(".", "SOA", "SERVFAIL")),
     Verdict.PARTIAL, "answered SERVFAIL to . SOA"),
    (ResolverCheck(), (_a(".", "NS", "NXDOMAIN"), _a(".", "SOA", "NXDOMAIN")),
     Verdict.FAILED, "answered NXDOMAIN to . NS and . SOA"),
    (ResolverCheck(), (_a(".", "NS", "NODATA"), _a(".", "SOA", _TIMEOUT)),
     Verdict.FAILED, f"answered NODATA to . NS, {_TIMEOUT} to . SOA"),
    (ResolverCheck(), (_a(".", "NS", _TIMEOUT), _a(".", "SOA", _TIMEOUT)),
     Verdict.SILENT, f"answered {_TIMEOUT} to . NS and . SOA (2 tries of 1 s each)"),
    # a canary resolves by any one of A, AAAA and MX answered with records
    (ResolverCheck(canaries=("c.example",)),
     (*_ROOT_OK, _a("c.example", "A", "NODATA"), _a("c.example", "AAAA", "NODATA"),
      _a("c.example", "MX", "NOERROR", 2)), Verdict.PASSED, None),
    (ResolverCheck(canaries=("c.example",)),
     (*_ROOT_OK, _a("c.example", "A", "SERVFAIL"), _a("c.example", "AAAA", "SERVFAIL"),
      _a("c.example", "MX", "SERVFAIL")),
     Verdict.FAILED, "answered SERVFAIL to c.example A, c.example AAAA and c.example MX"),
    (ResolverCheck(root=False, canaries=("c.example",)),
     (_a("c.example", "A", "NOERROR", 1), _a("c.example", "AAAA", "NODATA"),
      _a("c.example", "MX", "NXDOMAIN")), Verdict.PASSED, None),
    # --resolver-check none: any answer will do, only silence is reported
    (ResolverCheck(root=False), (_a(".", "NS", "REFUSED"),), Verdict.PASSED, None),
    (ResolverCheck(root=False), (_a(".", "NS", _TIMEOUT),), Verdict.SILENT,
     f"answered {_TIMEOUT} to . NS (2 tries of 1 s each)"),
], ids=["passed", "partial", "nxdomain", "nodata-and-silence", "silent", "canary-by-mx",
        "canary-servfail", "canary-only", "none-refused", "none-silent"])
def test_verdicts(check: ResolverCheck, answers: tuple[CheckAnswer, ...], verdict: Verdict,
                  problem: str | None) -> None:
    assert [(a.name, a.qtype) for a in answers] == questions_of(check)
    judged = _judge("127.0.0.1:53", answers, check, 1.0)
    assert (judged.verdict, judged.problem) == (verdict, problem)


# --- asking a resolver, in process ------------------------------------------------------------

async def test_the_lab_server_passes_and_a_canary_resolves_by_its_mx() -> None:
    zone = Zone()
    zone.add_mx("mail-only.test", 10, "mx.mail-only.test")
    server = await start_dns_server(zone)
    resolver = MailResolver([server.address], Timeouts(dns_query=0.3), Limits())
    try:
        report = await resolver.check_resolvers(ResolverCheck(canaries=("mail-only.test",)))
        assert report.ok and report.failure() is None and not report.warnings()
        answers = report.to_json()["resolvers"][server.address]["answers"]
        assert {a["question"]: a["answer"] for a in answers} == {
            ". NS": "NOERROR", ". SOA": "NOERROR", "mail-only.test A": "NODATA",
            "mail-only.test AAAA": "NODATA", "mail-only.test MX": "NOERROR"}
        bad = await resolver.check_resolvers(ResolverCheck(canaries=("gone.test",)))
        assert not bad.ok and bad.failure() == (
            f"resolver {server.address} answered NXDOMAIN to gone.test A, gone.test AAAA and "
            "gone.test MX")
    finally:
        await resolver.close()
        await server.close()


@pytest.mark.parametrize("rcode", ["NXDOMAIN", "SERVFAIL", "REFUSED"])
async def test_a_stub_answering_one_rcode_to_everything_fails(rcode: str) -> None:
    stub = await start_rcode_stub(rcode)
    resolver = MailResolver([stub.address], Timeouts(dns_query=0.3), Limits())
    try:
        report = await resolver.check_resolvers(ResolverCheck())
    finally:
        await resolver.close()
        await stub.close()
    assert not report.ok and not report.silent
    assert report.failure() == f"resolver {stub.address} answered {rcode} to . NS and . SOA"
    assert set(stub.queries) == {". NS", ". SOA"}


async def test_silence_and_a_closed_port_are_no_answer() -> None:
    server = await start_dns_server(Zone())
    server.pause()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    resolver = MailResolver([server.address, closed], Timeouts(dns_query=0.2), Limits())
    try:
        started = time.monotonic()
        report = await resolver.check_resolvers(ResolverCheck(root=False))
    finally:
        await resolver.close()
        await server.close()
    assert report.silent and time.monotonic() - started < 2.0
    failure = report.failure()
    assert failure is not None and "\n" not in failure
    assert f"resolver {server.address} answered nothing (timeout) to . NS" in failure
    assert f"resolver {closed} answered nothing (connection refused) to . NS" in failure


# --- the scan and the check commands --------------------------------------------------------

@pytest.mark.parametrize("rcode", ["NXDOMAIN", "SERVFAIL", "REFUSED"])
def test_a_resolver_broken_at_our_end_stops_the_scan_before_any_domain(
        tmp_path: Path, rcode: str) -> None:
    out = tmp_path / "out"
    with rcode_stub(rcode) as stub:
        proc = _run("scan", str(_domains_file(tmp_path, REAL_DOMAINS)), "-o", str(out),
                    "--resolver", stub.address, *FAST)
        asked = stub.queries
    stderr = _stopped_before_any_fact(proc, out)
    assert f"resolver {stub.address} answered {rcode} to . NS and . SOA" in stderr
    assert "--resolver-check none" in stderr
    assert set(asked) == {". NS", ". SOA"}  # not one surveyed domain was looked up


def test_a_canary_that_does_not_resolve_stops_the_scan(tmp_path: Path) -> None:
    # answers the root, NXDOMAIN to every other name: only a canary tells it is broken
    with rcode_stub("NXDOMAIN", root_ok=True) as stub:
        out = tmp_path / "out"
        proc = _run("scan", str(_domains_file(tmp_path, REAL_DOMAINS)), "-o", str(out),
                    "--resolver", stub.address, "--resolver-check", "Canary.Example.", *FAST)
    stderr = _stopped_before_any_fact(proc, out)
    assert (f"resolver {stub.address} answered NXDOMAIN to canary.example A, canary.example "
            "AAAA and canary.example MX") in stderr


def _lab_zone_refusing_the_root() -> Zone:
    zone = build_zone(generate("mixed", 200, 1))  # the fake_internet lab's population
    zone.fail("", "refused")
    return zone


def test_resolver_check_none_scans_with_a_resolver_that_refuses_root_questions(
        fake_internet: Any, tmp_path: Path) -> None:
    lines = (fake_internet.directory / "domains.txt").read_text().splitlines()[:30]
    domains = _domains_file(tmp_path, lines)
    with zone_server(_lab_zone_refusing_the_root()) as server:
        common = ("--lab", str(fake_internet.directory), "--resolver", server.address, *FAST)
        refused = _run("scan", str(domains), "-o", str(tmp_path / "refused"), *common)
        proc = _run("scan", str(domains), "-o", str(tmp_path / "out"), *common,
                    "--resolver-check", "none")
    stderr = _stopped_before_any_fact(refused, tmp_path / "refused")
    assert "answered REFUSED to . NS and . SOA" in stderr
    assert proc.returncode == 0, proc.stderr
    assert read_dataset(tmp_path / "out", "domains").num_rows == 30
    check = read_manifest(tmp_path / "out")["resolver_check"]
    assert check["root"] is False and check["questions"] == [". NS"]
    assert check["first"]["resolvers"][server.address]["answers"] == [
        {"question": ". NS", "answer": "REFUSED", "records": 0}]
    assert read_manifest(tmp_path / "out")["config"]["resolver_check"]["root"] is False


def test_a_lab_scan_passes_and_the_manifest_says_what_was_asked(
        fake_internet: Any, tmp_path: Path) -> None:
    lines = (fake_internet.directory / "domains.txt").read_text().splitlines()[:20]
    out = tmp_path / "out"
    before = datetime.now(UTC)
    proc = _run("scan", str(_domains_file(tmp_path, lines)), "-o", str(out), "--lab",
                str(fake_internet.directory), "--resolver-check", "only-valid.test", *FAST)
    assert proc.returncode == 0, proc.stderr
    manifest = read_manifest(out)
    check = manifest["resolver_check"]
    assert check == manifest["runs"][-1]["resolver_check"]
    assert check["questions"] == [". NS", ". SOA", "only-valid.test A", "only-valid.test AAAA",
                                  "only-valid.test MX"]
    assert check["root"] is True and check["canaries"] == ["only-valid.test"]
    assert check["every_s"] == 120 and check["failed"] is False and check["checks"] >= 1
    answers = check["first"]["resolvers"][fake_internet.resolver]
    assert answers["verdict"] == "passed"
    assert {a["question"]: a["answer"] for a in answers["answers"]} == {
        ". NS": "NOERROR", ". SOA": "NOERROR", "only-valid.test A": "NODATA",
        "only-valid.test AAAA": "NODATA", "only-valid.test MX": "NOERROR"}
    assert datetime.fromisoformat(check["last_passed"]) >= before


@pytest.mark.parametrize("rcode", ["NXDOMAIN", "SERVFAIL"])
def test_the_check_command_runs_the_resolver_check_first(
        fake_internet: Any, rcode: str) -> None:
    with rcode_stub(rcode) as stub:
        proc = _run("check", "only-valid.test", "--lab", str(fake_internet.directory),
                    "--resolver", stub.address)
        asked = stub.queries
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith(
        f"scanner: stopped: resolver {stub.address} answered {rcode} to . NS and . SOA")
    assert proc.stderr.strip().count("\n") == 0 and not proc.stdout
    assert set(asked) == {". NS", ". SOA"}


def test_a_resolver_that_answers_nothing_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        closed = f"127.0.0.1:{sock.getsockname()[1]}"
    out = tmp_path / "out"
    proc = _run("scan", str(_domains_file(tmp_path, REAL_DOMAINS)), "-o", str(out),
                "--resolver", closed, *FAST)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0
    assert proc.stderr.startswith(f"scanner: error: DNS resolver not answering: resolver "
                                  f"{closed} answered nothing (connection refused)")
    assert not out.exists()


@pytest.mark.parametrize(("args", "message"), [
    (["--resolver-check", "bad name"], "--resolver-check 'bad name': not a domain name"),
    (["--resolver-check", "localhost"], "--resolver-check 'localhost': not a domain name"),
    (["--resolver-recheck", "0"], "--resolver-recheck must be positive"),
])
def test_bad_resolver_check_options_are_one_line_errors(
        tmp_path: Path, args: list[str], message: str) -> None:
    proc = _run("scan", str(_domains_file(tmp_path, REAL_DOMAINS)), "-o",
                str(tmp_path / "out"), *args)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith(f"scanner: error: {message}")
    assert proc.stderr.strip().count("\n") == 0


# --- the watch during the scan: rows with DNS failures wait for a check after them --------------

def _report(ok: bool) -> CheckReport:
    answers = _ROOT_OK if ok else (_a(".", "NS", "SERVFAIL"), _a(".", "SOA", "SERVFAIL"))
    return CheckReport(datetime.now(UTC),
                       (_judge("127.0.0.1:53", answers, ResolverCheck(), 1.0),))


class _Resolver:
    """Answers the watch's checks as told: `results` in order, each once `go` is set."""

    def __init__(self, *results: bool) -> None:
        self.results = list(results)
        self.go = asyncio.Event()
        self.asked = 0

    async def check(self) -> CheckReport:
        self.asked += 1
        await self.go.wait()
        self.go.clear()
        return _report(self.results.pop(0))


async def test_held_rows_are_written_only_after_a_check_that_began_after_them() -> None:
    resolver, written = _Resolver(True, True), []
    watch = ResolverWatch(resolver.check, 3600, lambda r, e: written.append(r), _report(True))
    runner = asyncio.create_task(watch.run())
    try:
        for i in range(HOLD_ROWS):  # enough to ask for a check at once, not after an hour
            await watch.hold(f"early{i}", ())  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        assert resolver.asked == 1 and not written
        await watch.hold("during", ())  # type: ignore[arg-type]  # the check began before it
        resolver.go.set()
        await asyncio.sleep(0.01)
        assert len(written) == HOLD_ROWS and "during" not in written and watch.held == 1
        watch.stop()
        await runner
        resolver.go.set()
        await watch.settle()  # the end of the scan: one more check for the last row
        assert written[-1] == "during" and watch.held == 0 and watch.checks == 3
    finally:
        runner.cancel()


async def test_a_failing_check_drops_the_held_rows_and_stops() -> None:
    resolver, written = _Resolver(False), []
    watch = ResolverWatch(resolver.check, 0.01, lambda r, e: written.append(r), _report(True))
    await watch.hold("row", ())  # type: ignore[arg-type]
    resolver.go.set()
    with pytest.raises(VantageFailure, match="answered SERVFAIL to . NS and . SOA at .* "
                                             "1 domain results with DNS failures"):
        await asyncio.wait_for(watch.run(), 5)
    assert not written and watch.held == 0 and watch.facts()["failed"] is True
    with pytest.raises(VantageFailure):
        await watch.hold("later", ())  # type: ignore[arg-type]


async def test_too_many_held_rows_make_the_domains_wait_for_the_check() -> None:
    resolver, written = _Resolver(True), []
    watch = ResolverWatch(resolver.check, 3600, lambda r, e: written.append(r), _report(True))
    runner = asyncio.create_task(watch.run())
    try:
        for i in range(MAX_HOLD_ROWS - 1):
            await watch.hold(i, ())  # type: ignore[arg-type]
        blocked = asyncio.create_task(watch.hold("last", ()))  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        assert not blocked.done()  # the check under way has not answered
        resolver.go.set()
        await asyncio.wait_for(blocked, 2)
        assert len(written) == MAX_HOLD_ROWS - 1
    finally:
        runner.cancel()
