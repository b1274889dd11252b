"""The vantage point failing mid-scan: a wave of timeouts stops the scan, nothing false is kept."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from helpers.dns_stub import zone_server
from helpers.truth import differences, keyed_domains

from scanner.config import (
    Limits,
    ResolverCheck,
    ScanConfig,
    Timeouts,
    TrustStore,
    split_host_port,
)
from scanner.lab.population.builder import build_zone
from scanner.lab.population.dns_zone import RType, Zone
from scanner.lab.population.profiles import generate
from scanner.lab.serve import LabProcess
from scanner.model.records import DomainRecord, HostRecord
from scanner.scan.pipeline import Scan
from scanner.scan.vantage import VantageFailure, WaveDetector
from scanner.sink.dataset import read_dataset, read_manifest
from scanner.sink.schema import TRUTH_DOMAIN_COLUMNS, TRUTH_HOST_COLUMNS

FAST = ["--timeout-dns", "0.4", "--timeout-connect", "1", "--timeout-greeting", "1",
        "--timeout-command", "2", "--timeout-starttls", "2", "--timeout-handshake", "2",
        "--deadline", "4", "--no-progress", "--batch-rows", "40", "--concurrency", "64"]


# --- the detector alone -------------------------------------------------------------------

async def _feed(det: WaveDetector, items: list[tuple[bool, str]]) -> list[BaseException | None]:
    """Admit items in order (each begun first, all concurrently); each item's outcome."""
    starts = [det.begin() for _ in items]

    async def one(i: int) -> BaseException | None:
        await asyncio.sleep(0.001 * i)  # keep the admission order
        try:
            await det.admit(items[i][0], starts[i], items[i][1])
        except VantageFailure as exc:
            return exc
        return None

    return await asyncio.gather(*(one(i) for i in range(len(items))))


async def test_bunched_tarpit_timeouts_among_healthy_peers_do_not_trip() -> None:
    det = WaveDetector("probes", min_wave=20, settle_after=5)
    # started together, the healthy ones answer at once, the 30 tarpits time out together last
    items = [(False, f"ok{i}") for i in range(300)] + [(True, f"tarpit{i}") for i in range(30)]
    start_order = items[:]
    random.Random(5).shuffle(start_order)
    starts = {key: det.begin() for _, key in start_order}
    results = []
    for timed_out, key in items:  # completion order: healthy first, tarpits bunched at the end
        results.append(asyncio.create_task(det.admit(timed_out, starts[key], key)))
        await asyncio.sleep(0)
    outcomes = await asyncio.wait_for(asyncio.gather(*results, return_exceptions=True), 2)
    assert all(o is None for o in outcomes)  # released (idle), never a failure
    assert det.failure is None


async def test_wave_after_healthy_start_trips_and_holds_every_timeout() -> None:
    det = WaveDetector("probes", min_wave=20, settle_after=30)
    outcomes = await asyncio.wait_for(_feed(det, [(False, f"ok{i}") for i in range(100)]
                                            + [(True, f"dead{i}") for i in range(40)]), 5)
    assert all(o is None for o in outcomes[:100])
    # every timeout was held, and all of them end in the failure: none may be written
    assert all(isinstance(o, VantageFailure) for o in outcomes[100:])
    assert det.failure is not None and "vantage point" in str(det.failure)


async def test_timeouts_are_released_only_by_answers_to_later_requests() -> None:
    det = WaveDetector("probes", min_wave=20, settle_after=30)
    det.begin()  # "busy" stays in flight, so only answers can release the held timeouts
    early = [det.begin() for _ in range(4)]
    answered = [asyncio.create_task(det.admit(False, s, f"a{i}")) for i, s in enumerate(early[:2])]
    held = [asyncio.create_task(det.admit(True, s, f"t{i}")) for i, s in enumerate(early[2:])]
    await asyncio.gather(*answered)
    await asyncio.sleep(0.01)
    # answers to requests sent before the timeouts prove nothing (they may predate an outage)
    for i in range(2):
        await det.admit(False, early[0] - 1, f"old{i}")
    assert det.held == 2 and not any(t.done() for t in held)
    for i in range(2):
        await det.admit(False, det.begin(), f"later{i}")
    await asyncio.wait_for(asyncio.gather(*held), 2)
    assert det.failure is None and det.held == 0 and det.peak_held == 2


async def test_high_baseline_raises_the_threshold() -> None:
    det = WaveDetector("probes", window=40, min_wave=20, settle_after=0.05)
    # a list where half the servers are tarpits all along: 90% timeouts is no sudden wave
    pattern = [(i % 2 == 0, f"h{i}") for i in range(200)]
    pattern += [(i % 7 != 0, f"w{i}") for i in range(40)]  # 86%
    outcomes = await asyncio.wait_for(_feed(det, pattern), 10)
    assert det.baseline() > 0.4
    assert not any(isinstance(o, VantageFailure) for o in outcomes)


# --- the lab's DNS or SMTP side dying mid-scan ----------------------------------------------

@pytest.fixture(scope="module")
def slow_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProcess]:
    """Hostile profile, every server with 20-150 ms latency: a scan lasts several seconds."""
    lab = LabProcess.start("hostile", 400, 11, tmp_path_factory.mktemp("vlab"),
                           latency_ms=(20, 150), greet_pause_s=0.2, timeout=60)
    try:
        yield lab
    finally:
        lab.stop()


def _cmd(lab: LabProcess, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "scanner", "scan", str(lab.directory / "domains.txt"), "-o",
            str(out), "--lab", str(lab.directory), *FAST, *extra]


def _commits(out: Path) -> int:
    try:
        return (out / "_commits.jsonl").read_text().count("}\n")
    except FileNotFoundError:
        return 0


def _written_rows_are_true(lab: LabProcess, out: Path) -> tuple[int, int]:
    """Every row written so far equals the truth (no false timeouts); the row counts."""
    domains, hosts = keyed_domains(out), read_dataset(out, "hosts")
    diff = [d for d in differences(domains, lab.truth_domains(), "domain",
                                   TRUTH_DOMAIN_COLUMNS) if "missing from scan" not in d]
    diff += [d for d in differences(hosts, lab.truth_hosts(), "ip", TRUTH_HOST_COLUMNS)
             if "missing from scan" not in d]
    assert not diff, "false rows written during the outage:\n" + "\n".join(diff[:30])
    return domains.num_rows, hosts.num_rows


def _all_rows_are_true(lab: LabProcess, out: Path) -> None:
    diff = differences(keyed_domains(out), lab.truth_domains(), "domain", TRUTH_DOMAIN_COLUMNS)
    diff += differences(read_dataset(out, "hosts"), lab.truth_hosts(), "ip", TRUTH_HOST_COLUMNS)
    assert not diff, "\n".join(diff[:30])


def test_smtp_side_dying_mid_scan_stops_without_false_rows_and_resumes(
        slow_lab: LabProcess, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(_cmd(slow_lab, out), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while _commits(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            slow_lab.control("pause_smtp")  # every server a tarpit, as if port 25 died
        _, stderr = proc.communicate(timeout=60)
    finally:
        slow_lab.control("resume_smtp")
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 3, stderr
    assert "mail server probes timed out" in stderr and "vantage point" in stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert stderr.strip().count("\n") == 0
    assert read_manifest(out)["state"] == "interrupted"
    n_domains, _ = _written_rows_are_true(slow_lab, out)
    assert 0 < n_domains < slow_lab.truth_domains().num_rows
    final = subprocess.run(_cmd(slow_lab, out, "--resume"), capture_output=True, text=True,
                           timeout=120)
    assert final.returncode == 0, final.stderr
    assert read_manifest(out)["state"] == "finished"
    _all_rows_are_true(slow_lab, out)


class _PauseAfter:
    """Progress that sends a lab control command once `n` domains are done."""

    def __init__(self, lab: LabProcess, n: int, cmd: str | dict[str, Any]) -> None:
        self.lab, self.n, self.cmd, self.done = lab, n, cmd, 0

    def on_domain_done(self, record: DomainRecord) -> None:
        self.done += 1
        if self.done == self.n:
            self.lab.control(self.cmd)  # blocks the loop for a moment: fine in a test

    def on_probe_done(self, record: HostRecord) -> None:
        pass


def _lab_config(lab: LabProcess, out: Path, resume: bool = False) -> ScanConfig:
    # few domains in flight, so DNS lookups go on all through the scan, as in a long survey
    return ScanConfig(
        output=out, inputs=(lab.directory / "domains.txt",), resolvers=(lab.resolver,),
        port=lab.smtp_port,
        timeouts=Timeouts(dns_query=0.4, dns_tries=2, connect=1.0, greeting=1.0, command=2.0,
                          starttls=2.0, handshake=2.0, per_address=4.0),
        limits=Limits(max_in_flight=64, batch_rows=40, domains_in_flight=40),
        trust=TrustStore(extra_anchors=(lab.ca_pem,)), lab_mode=True, resume=resume,
        mta_sts_port=lab.info.get("mta_sts_port", 443))


def test_resolver_dying_mid_scan_stops_without_false_rows_and_resumes(
        slow_lab: LabProcess, tmp_path: Path) -> None:
    out = tmp_path / "out"
    try:
        with pytest.raises(BaseExceptionGroup) as caught:
            asyncio.run(Scan(_lab_config(slow_lab, out), _PauseAfter(slow_lab, 100,
                                                                      "pause_dns")).run())
    finally:
        slow_lab.control("resume_dns")
    failure, _ = caught.value.split(VantageFailure)
    assert failure is not None, caught.value
    message = str(failure.exceptions[0])  # the MX or the policy lookups: whichever trips first
    assert "lookups" in message and "timed out across unrelated servers" in message
    assert read_manifest(out)["state"] == "interrupted"
    n_domains, _ = _written_rows_are_true(slow_lab, out)
    assert 100 <= n_domains < slow_lab.truth_domains().num_rows
    asyncio.run(Scan(_lab_config(slow_lab, out, resume=True)).run())
    assert read_manifest(out)["state"] == "finished"
    _all_rows_are_true(slow_lab, out)


@pytest.mark.parametrize("rcode", ["servfail", "refused"])
def test_resolver_answering_failures_mid_scan_stops_without_false_rows_and_resumes(
        slow_lab: LabProcess, tmp_path: Path, rcode: str) -> None:
    """Not silence but wrong answers: only the resolver check notices, and the rows with DNS
    failures since the last passing check are never written."""
    out = tmp_path / "out"
    config = dataclasses.replace(_lab_config(slow_lab, out),
                                 resolver_check=ResolverCheck(every_s=0.3))
    try:
        with pytest.raises(BaseExceptionGroup) as caught:
            asyncio.run(Scan(config, _PauseAfter(slow_lab, 100, {"cmd": "break_dns",
                                                                 "rcode": rcode})).run())
    finally:
        slow_lab.control("resume_dns")
    failure, _ = caught.value.split(VantageFailure)
    assert failure is not None, caught.value
    message = str(failure.exceptions[0])
    assert f"answered {rcode.upper()} to . NS and . SOA" in message, message
    assert "were not recorded" in message and "--resume" in message
    manifest = read_manifest(out)
    assert manifest["state"] == "interrupted"
    check = manifest["resolver_check"]
    assert check["failed"] is True and check["checks"] >= 2
    assert check["last"]["resolvers"][slow_lab.resolver]["verdict"] == "failed"
    assert check["last_passed"] < check["last"]["time"]
    n_domains, _ = _written_rows_are_true(slow_lab, out)
    assert 100 <= n_domains < slow_lab.truth_domains().num_rows
    asyncio.run(Scan(dataclasses.replace(config, resume=True)).run())
    assert read_manifest(out)["state"] == "finished"
    _all_rows_are_true(slow_lab, out)


def test_port_25_dead_from_the_start_stops_before_blaming_any_server(
        slow_lab: LabProcess, tmp_path: Path) -> None:
    out = tmp_path / "out"
    slow_lab.control("pause_smtp")
    try:
        proc = subprocess.run(_cmd(slow_lab, out), capture_output=True, text=True, timeout=60)
    finally:
        slow_lab.control("resume_smtp")
    assert proc.returncode == 3, proc.stderr
    assert "vantage point" in proc.stderr and "Traceback" not in proc.stderr
    assert read_manifest(out)["state"] == "interrupted"
    # not one server blamed: what was written (a refused port, say) is what the lab does
    _, n_hosts = _written_rows_are_true(slow_lab, out)
    assert n_hosts < 10


# --- a scan too small for the first-20 rule: every server failed without a word ------------

#: lab domains each with one mail server of its own, all of which answer on the lab's port
SMALL = ("only-valid.test", "only-no-starttls.test", "only-self-signed.test",
         "only-expired.test", "only-masked.test")
SMALL_FAST = ["--timeout-dns", "0.5", "--timeout-connect", "1", "--timeout-greeting", "1.5",
              "--no-progress"]


def _addresses(lab: Any, domains: tuple[str, ...]) -> list[str]:
    names = {n for d in domains for n in lab.expected(d)["mx_hostnames"]}
    return sorted({h["ip"] for h in lab.truth_hosts().to_pylist()
                   if names & set(h["mx_hostnames"])})


def _small_scan(lab: Any, tmp_path: Path, *extra: str, domains: tuple[str, ...] = SMALL
                ) -> tuple[subprocess.CompletedProcess[str], dict[str, Any], float]:
    (tmp_path / "small.txt").write_text("\n".join(domains) + "\n")
    out = tmp_path / "out"
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "scanner", "scan", str(tmp_path / "small.txt"), "-o", str(out),
         "--lab", str(lab.directory), *SMALL_FAST, *extra],
        capture_output=True, text=True, timeout=180)
    return proc, read_manifest(out), time.monotonic() - t0


class _Listeners:
    """Stub listeners on `port` of each address, standing in for what sits on the path.

    `drop`: a listen queue of one, filled at once, so the kernel drops every later SYN (the
    connect times out, as behind a firewall that drops port 25); `close`: accept and close at
    once, as a transparent proxy that takes every connection and forwards none.
    """

    def __init__(self, addresses: list[str], how: str) -> None:
        self.port = 0
        self._socks: list[socket.socket] = []
        self._fillers: list[socket.socket] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        for ip in addresses:
            s = socket.socket()
            s.bind((ip, self.port))
            self.port = s.getsockname()[1]
            s.listen(0 if how == "drop" else 16)
            self._socks.append(s)
            if how == "drop":
                filler = socket.create_connection((ip, self.port), timeout=2)
                self._fillers.append(filler)
            else:
                s.settimeout(0.1)
                thread = threading.Thread(target=self._accept_and_close, args=(s,))
                thread.start()
                self._threads.append(thread)

    def _accept_and_close(self, s: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = s.accept()
            except TimeoutError:
                continue
            conn.close()

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        for s in self._fillers + self._socks:
            s.close()


@pytest.fixture
def listeners(fake_internet: Any) -> Iterator[Callable[[str], _Listeners]]:
    made: list[_Listeners] = []

    def make(how: str) -> _Listeners:
        made.append(_Listeners(_addresses(fake_internet, SMALL), how))
        return made[-1]

    try:
        yield make
    finally:
        for stub in made:
            stub.close()


def _assert_undetermined(proc: subprocess.CompletedProcess[str], manifest: dict[str, Any],
                         outcome: str) -> None:
    assert proc.returncode == 0, proc.stderr
    assert manifest["state"] == "finished"
    assert manifest["vantage_status"] == "undetermined"
    note = manifest["vantage_note"]
    assert f"None of the {len(SMALL)} mail server addresses contacted" in note, note
    assert f"({outcome} {len(SMALL)})" in note and "our network" in note, note
    warning = [ln for ln in proc.stderr.splitlines() if ln.startswith("scanner: warning: ")]
    assert len(warning) == 1 and note in warning[0] and "--reference-host" in warning[0], \
        proc.stderr
    assert "Traceback" not in proc.stderr


def test_small_scan_with_every_connect_refused_is_marked_undetermined(
        fake_internet: Any, tmp_path: Path) -> None:
    # a refusal does not prove the path works: a firewall at our end can send the RST
    with socket.socket() as s:
        s.bind((_addresses(fake_internet, SMALL)[0], 0))
        closed_port = s.getsockname()[1]  # nothing listens there on any lab address
    proc, manifest, _ = _small_scan(fake_internet, tmp_path, "--port", str(closed_port))
    _assert_undetermined(proc, manifest, "refused")


@pytest.mark.parametrize(("how", "outcome"), [("drop", "connect_timeout"),
                                              ("close", "closed_early")])
def test_small_scan_silent_at_connect_is_marked_undetermined_without_waiting(
        fake_internet: Any, tmp_path: Path, listeners: Callable[[str], _Listeners],
        how: str, outcome: str) -> None:
    stub = listeners(how)
    # a deadline of 60 s: the first-20 rule used to hold the silent connects that long
    proc, manifest, elapsed = _small_scan(fake_internet, tmp_path, "--port", str(stub.port),
                                          "--deadline", "60")
    _assert_undetermined(proc, manifest, outcome)
    assert elapsed < 20, f"took {elapsed:.1f} s: nothing was left to decide, yet it waited"


def test_small_scan_of_the_reachable_lab_is_not_marked(fake_internet: Any,
                                                       tmp_path: Path) -> None:
    # one server refuses and one tarpits: the others' replies show the path works
    proc, manifest, _ = _small_scan(
        fake_internet, tmp_path, domains=(*SMALL, "only-refused.test", "only-tarpit.test"))
    assert proc.returncode == 0, proc.stderr
    assert manifest["vantage_status"] == "ok", manifest.get("vantage_note")
    assert "sent an SMTP reply" in manifest["vantage_note"]
    assert manifest["runs"][-1]["vantage_status"] == "ok"
    assert "warning" not in proc.stderr, proc.stderr


def test_check_says_when_its_only_server_failed_without_a_word(fake_internet: Any) -> None:
    def check(domain: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "scanner", "check", domain, "--lab",
                               str(fake_internet.directory)],
                              capture_output=True, text=True, timeout=120)

    silent = check("only-accept-close.test")
    assert silent.returncode == 0, silent.stderr
    assert "closed_early" in silent.stdout
    warning = [ln for ln in silent.stderr.splitlines() if ln.startswith("scanner: warning: ")]
    assert len(warning) == 1, silent.stderr
    assert "The only mail server address contacted sent no SMTP reply (closed_early 1)" \
        in warning[0] and "--reference-host" in warning[0]
    answering = check("only-valid.test")
    assert answering.returncode == 0 and "warning" not in answering.stderr, answering.stderr


def test_reference_host_that_answers_vouches_for_the_path(
        fake_internet: Any, tmp_path: Path, listeners: Callable[[str], _Listeners]) -> None:
    stub = listeners("close")  # every surveyed server "closes at once"...
    reference = "mx1.popular-mail.test"  # ...but a server the user knows answers (by name)
    ref_ips = [h["ip"] for h in fake_internet.truth_hosts().to_pylist()
               if reference in h["mx_hostnames"]]
    before = fake_internet.counts()
    proc, manifest, _ = _small_scan(fake_internet, tmp_path, "--port", str(stub.port),
                                    "--reference-host",
                                    f"{reference}:{fake_internet.smtp_port}")
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    assert manifest["vantage_status"] == "ok"
    assert f"reference host {reference} ({ref_ips[0]}) port" in manifest["vantage_note"]
    ref = manifest["reference_host"]
    assert ref["answered"] is True and ref["address"] == ref_ips[0]
    assert ref["outcome"] == "tls_ok" and ref["greeting_code"] == 220
    assert manifest["runs"][-1]["reference_host"] == ref
    assert manifest["config"]["reference_host"] == f"{reference}:{fake_internet.smtp_port}"
    after = fake_internet.counts()
    assert after[ref_ips[0]]["connections"] - before[ref_ips[0]]["connections"] == 1


def test_reference_host_that_is_silent_stops_before_any_server_is_contacted(
        fake_internet: Any, tmp_path: Path, listeners: Callable[[str], _Listeners]) -> None:
    stub = listeners("drop")
    proc, manifest, _ = _small_scan(
        fake_internet, tmp_path, "--reference-host", f"{_addresses(fake_internet, SMALL)[0]}"
        f":{stub.port}", domains=("only-valid.test",))
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.startswith("scanner: stopped: the reference host ")
    assert "connect_timeout" in proc.stderr and "--resume" in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert manifest["state"] == "interrupted"
    assert manifest["reference_host"]["answered"] is False
    assert "vantage_status" not in manifest  # no server's row was written
    assert read_dataset(tmp_path / "out", "hosts").num_rows == 0


def test_reference_host_that_is_no_host_port_is_a_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("example.test\n")
    proc = subprocess.run([sys.executable, "-m", "scanner", "scan", str(tmp_path / "in.txt"),
                           "-o", str(tmp_path / "out"), "--reference-host", "mx.test:0"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("scanner: error: --reference-host: ")
    assert proc.stderr.strip().count("\n") == 0


def test_an_undetermined_run_leaves_the_whole_scan_undetermined(tmp_path: Path) -> None:
    from scanner.sink.manifest import ScanManifest

    config = ScanConfig(output=tmp_path / "out")
    first = ScanManifest.start(config)
    first.set_vantage("undetermined", "nothing answered")
    first.finish("interrupted")
    resumed = ScanManifest.start(dataclasses.replace(config, resume=True))
    resumed.set_vantage("ok", "a server answered")
    resumed.finish()
    data = read_manifest(tmp_path / "out")
    # the first run's rows are still in the dataset: the scan as a whole cannot vouch for them
    assert (data["vantage_status"], data["vantage_note"]) == ("undetermined", "nothing answered")
    assert [r["vantage_status"] for r in data["runs"]] == ["undetermined", "ok"]


@pytest.mark.parametrize(("spec", "want"), [
    ("mx.test", ("mx.test", 25)), ("mx.test:2525", ("mx.test", 2525)),
    ("127.0.0.1:26", ("127.0.0.1", 26)), ("[::1]:26", ("::1", 26)), ("[::1]", ("::1", 25)),
    ("::1", ("::1", 25)),
])
def test_reference_host_spec_is_host_and_port(spec: str, want: tuple[str, int]) -> None:
    assert split_host_port(spec, 25) == want


@pytest.mark.parametrize("spec", ["mx.test:0", "mx.test:70000", "mx.test:x", ":25", "[::1]x",
                                  "[::1]:", ""])
def test_reference_host_spec_without_host_or_port_is_refused(spec: str) -> None:
    with pytest.raises(ValueError):
        split_host_port(spec, 25)


# --- answers are not silence: quick SERVFAIL / REFUSED to the policy lookups ---------------------

_DNS_ONLY_COLUMNS = tuple(c for c in TRUTH_DOMAIN_COLUMNS  # the zone below has no TLSA records
                          if c not in ("dane_class", "n_dane_valid", "strict_capable"))


def _parked_and_broken_zone() -> tuple[Zone, list[str]]:
    """The fake_internet lab's zone plus 90 domains whose name servers answer at once but fail:
    SERVFAIL or REFUSED to everything (parked, lame), or SERVFAIL to TXT only."""
    population = generate("mixed", 200, 1)  # the fake_internet lab's population
    zone = build_zone(population)
    healthy_mx = next(d.mx[0][1] for d in population.domains if d.name == "only-valid.test")
    names = []
    for i in range(30):
        for mode in ("servfail", "refused"):
            names.append(f"parked-{mode}-{i}.test")
            zone.fail(names[-1], mode)
        names.append(f"txt-servfail-{i}.test")
        zone.add_mx(names[-1], 10, healthy_mx)
        zone.fail(names[-1], "servfail", RType.TXT)
    return zone, names


def test_quick_servfail_and_refused_answers_never_stop_a_scan(
        fake_internet: Any, tmp_path: Path) -> None:
    zone, broken = _parked_and_broken_zone()
    lab_lines = (fake_internet.directory / "domains.txt").read_text().splitlines()
    domains = tmp_path / "domains.txt"
    # the broken ones first: the window of recent results is full of them, as on a resume
    domains.write_text("\n".join(broken + lab_lines) + "\n")
    out = tmp_path / "out"
    with zone_server(zone) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "scanner", "scan", str(domains), "-o", str(out), "--lab",
             str(fake_internet.directory), "--resolver", server.address, *FAST],
            capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert read_manifest(out)["state"] == "finished"
    rows = {r["domain"]: r for r in keyed_domains(out).to_pylist()}
    assert len(rows) == len(broken) + len(lab_lines)
    for name in broken:
        expected = name.split("-")[1] if name.startswith("parked-") else "ok"
        assert (rows[name]["status"], rows[name]["spf_status"]) == (expected, "dns_error"), name
    assert {rows[n]["starttls_class"] for n in broken if n.startswith("txt-")} == {"all"}
    lab = keyed_domains(out).filter(pc.invert(pc.is_in(
        keyed_domains(out).column("domain"), pa.array(broken))))
    diff = differences(lab, fake_internet.truth_domains(), "domain", _DNS_ONLY_COLUMNS)
    assert not diff, "\n".join(diff[:30])


# --- the whole lab paused mid-scan: a real outage, then --resume --------------------------------

def _lab_processes(lab: LabProcess) -> list[int]:
    """The lab's main process and every process under it (its SMTP workers)."""
    pids, todo = [], [lab.pid]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in (task / "children").read_text().split()]
    return pids


#: the issue's size: paused after this many commits, the work left starts with the quickly
#: answered SERVFAIL domains, which stopped every --resume when answers counted as silence
NORWAY_DOMAINS, PAUSE_AFTER_COMMITS = 20_000, 300


def test_whole_lab_paused_mid_scan_stops_then_resume_equals_the_truth(tmp_path: Path) -> None:
    lab = LabProcess.start("norway-2010", NORWAY_DOMAINS, 2010, tmp_path / "lab", timeout=120)
    try:
        out = tmp_path / "out"
        proc = subprocess.Popen(_cmd(lab, out), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, text=True)
        paused: list[int] = []
        try:
            deadline = time.monotonic() + 60
            while _commits(out) < PAUSE_AFTER_COMMITS and proc.poll() is None \
                    and time.monotonic() < deadline:
                time.sleep(0.01)
            if proc.poll() is None:
                paused = _lab_processes(lab)
                for pid in paused:  # every lab process at once: DNS, SMTP and HTTPS silent
                    os.kill(pid, signal.SIGSTOP)
            _, stderr = proc.communicate(timeout=90)
        finally:
            for pid in paused:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert paused, "the scan ended before the lab could be paused"
        assert proc.returncode == 3, stderr
        assert "vantage point" in stderr and "--resume" in stderr and "Traceback" not in stderr
        assert read_manifest(out)["state"] == "interrupted"
        n_domains, _ = _written_rows_are_true(lab, out)
        assert 0 < n_domains < lab.truth_domains().num_rows
        final = subprocess.run(_cmd(lab, out, "--resume"), capture_output=True, text=True,
                               timeout=180)
        assert final.returncode == 0, final.stderr
        assert read_manifest(out)["state"] == "finished"
        _all_rows_are_true(lab, out)
    finally:
        lab.stop()
