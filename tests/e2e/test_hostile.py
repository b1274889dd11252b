"""A `hostile` lab of ~1,000 addresses, all probed at once: no hang, no crash, no leak, the truth.

The scan runs in this process so that its memory, its file descriptors, its warnings and the
asyncio logger can be watched while 1,000 hostile conversations are open at the same time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import logging
import os
import resource
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers.truth import differences, keyed_domains

from scanner.commands.options import capped_concurrency
from scanner.config import Limits, ScanConfig, Timeouts, TrustStore
from scanner.lab.population.behaviours import EXPECTED, Behaviour
from scanner.lab.serve import LabProcess
from scanner.model.records import ProbeTarget
from scanner.model.status import HostOutcome
from scanner.scan.outcome import host_outcome
from scanner.scan.pipeline import Scan
from scanner.sink.dataset import read_dataset, read_manifest
from scanner.sink.schema import TRUTH_DOMAIN_COLUMNS, TRUTH_HOST_COLUMNS
from scanner.smtp.conversation import SmtpProber
from scanner.tls.context import make_probe_context

RSS_CEILING_MB = 600  # generous: measured well under half of it (see the README)
# the scan runs under this descriptor limit: uncapped, it meets EMFILE (checked by hand)
FD_LIMIT = 700
SCAN_DEADLINE_S = 90


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _sockets() -> int:
    """Open socket descriptors of this process."""
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            n += os.readlink(f"/proc/self/fd/{fd}").startswith("socket:")
        except OSError:
            pass  # closed while listing (the listing's own descriptor)
    return n


@dataclass
class HostileRun:
    out: Path
    lab: LabProcess
    seconds: float
    rss_before_mb: float
    rss_peak_mb: float
    fds_peak: int
    concurrency: int
    sockets_before: int
    sockets_after: int
    problems: list[str]


@pytest.fixture(scope="module")
def hostile_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabProcess]:
    # every reply 300-500 ms late: all ~1,000 conversations are open at the same time
    lab = LabProcess.start("hostile", 1100, 5, tmp_path_factory.mktemp("hostile"),
                           latency_ms=(300, 500), greet_pause_s=0.2, timeout=60)
    try:
        yield lab
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def hostile_run(hostile_lab: LabProcess, tmp_path_factory: pytest.TempPathFactory
                ) -> HostileRun:
    out = tmp_path_factory.mktemp("hostile-out") / "out"
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))
    try:
        return _hostile_run(hostile_lab, out)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _hostile_run(hostile_lab: LabProcess, out: Path) -> HostileRun:
    concurrency, notice = capped_concurrency(100_000, 100)  # as the CLI caps --concurrency
    assert notice and concurrency < FD_LIMIT
    config = ScanConfig(
        output=out, inputs=(hostile_lab.directory / "domains.txt",),
        resolvers=(hostile_lab.resolver,), port=hostile_lab.smtp_port,
        timeouts=Timeouts(dns_query=2.0, dns_tries=3, connect=3.0, greeting=3.0, command=3.0,
                          starttls=3.0, handshake=3.0, per_address=6.0),
        limits=Limits(max_in_flight=concurrency, per_provider=1000, dns_in_flight=100,
                      batch_rows=500),
        trust=TrustStore(extra_anchors=(hostile_lab.ca_pem,)), lab_mode=True,
        mta_sts_port=hostile_lab.info.get("mta_sts_port", 443))
    problems: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            problems.append(f"{record.name}: {record.getMessage()}")

    handler = Collect(level=logging.WARNING)
    logging.getLogger().addHandler(handler)  # "Task exception was never retrieved" included
    gc.collect()
    sockets_before, rss_before = _sockets(), _rss_mb()
    peaks = {"rss": rss_before, "fds": 0.0}

    async def run() -> float:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(lambda _l, ctx: problems.append(f"loop: {ctx['message']}"))

        async def sample() -> None:
            while True:
                peaks["rss"] = max(peaks["rss"], _rss_mb())
                peaks["fds"] = max(peaks["fds"], len(os.listdir("/proc/self/fd")))
                await asyncio.sleep(0.02)

        sampler = asyncio.create_task(sample())
        t0 = time.monotonic()
        try:
            await asyncio.wait_for(Scan(config).run(), SCAN_DEADLINE_S)
        finally:
            sampler.cancel()
        return time.monotonic() - t0

    try:
        seconds = asyncio.run(run())
    finally:
        logging.getLogger().removeHandler(handler)
    gc.collect()
    return HostileRun(out, hostile_lab, seconds, rss_before, peaks["rss"], int(peaks["fds"]),
                      concurrency, sockets_before, _sockets(), problems)


def test_hostile_scan_finishes_without_hang_crash_or_complaint(hostile_run: HostileRun) -> None:
    assert read_manifest(hostile_run.out)["state"] == "finished"
    assert hostile_run.seconds < SCAN_DEADLINE_S
    assert not hostile_run.problems, "\n".join(hostile_run.problems[:20])
    outcomes = read_dataset(hostile_run.out, "hosts", ["outcome"]).column("outcome").to_pylist()
    assert HostOutcome.INTERNAL_ERROR.value not in outcomes


def test_hostile_scan_equals_the_truth(hostile_run: HostileRun) -> None:
    hosts = read_dataset(hostile_run.out, "hosts")
    diff = differences(hosts, hostile_run.lab.truth_hosts(), "ip", TRUTH_HOST_COLUMNS)
    scan = keyed_domains(hostile_run.out)
    diff += differences(scan, hostile_run.lab.truth_domains(), "domain", TRUTH_DOMAIN_COLUMNS)
    assert not diff, "\n".join(diff[:40])
    assert hosts.num_rows >= 1000


def test_every_hostile_behaviour_is_covered_and_failures_keep_a_detail(
        hostile_run: HostileRun) -> None:
    truth = hostile_run.lab.truth_hosts().to_pylist()
    assert {r["behaviour"] for r in truth} == {b.value for b in Behaviour} - {"valid"}
    behaviour = {r["ip"]: r["behaviour"] for r in truth}
    rows: list[dict[str, Any]] = read_dataset(
        hostile_run.out, "hosts", ["ip", "outcome", "error_detail"]).to_pylist()
    quiet = {HostOutcome.TLS_OK, HostOutcome.NO_STARTTLS, HostOutcome.MASKED,
             HostOutcome.STARTTLS_454, HostOutcome.REFUSED}
    missing = sorted({behaviour[r["ip"]] for r in rows
                      if r["outcome"] not in quiet and not r["error_detail"]})
    assert not missing, f"failures without an error_detail: {missing}"


def test_capped_concurrency_never_runs_out_of_descriptors(hostile_run: HostileRun) -> None:
    assert hostile_run.fds_peak < FD_LIMIT
    details = read_dataset(hostile_run.out, "hosts", ["error_detail"]).column("error_detail")
    assert not [d for d in details.to_pylist() if d and "Too many open files" in d]


def test_memory_stays_bounded_during_the_hostile_scan(hostile_run: HostileRun) -> None:
    assert hostile_run.rss_peak_mb < RSS_CEILING_MB, (hostile_run.rss_before_mb,
                                                      hostile_run.rss_peak_mb)
    print(f"hostile scan: {hostile_run.seconds:.1f} s, RSS {hostile_run.rss_before_mb:.0f} -> "
          f"peak {hostile_run.rss_peak_mb:.0f} MB, peak fds {hostile_run.fds_peak} (limit "
          f"{FD_LIMIT}, concurrency {hostile_run.concurrency}), sockets "
          f"{hostile_run.sockets_before} before / {hostile_run.sockets_after} after")


async def test_1000_concurrent_hostile_conversations_bounded_memory_no_leak(
        hostile_lab: LabProcess, fast_config: ScanConfig) -> None:
    truth = hostile_lab.truth_hosts().to_pylist()
    config = dataclasses.replace(fast_config, port=hostile_lab.smtp_port, timeouts=Timeouts(
        connect=3.0, greeting=3.0, command=3.0, starttls=3.0, handshake=3.0, per_address=10.0))
    prober = SmtpProber(config, make_probe_context())
    gc.collect()
    sockets_before, rss_before = _sockets(), _rss_mb()
    peak = {"sockets": 0, "rss": rss_before}

    async def sample() -> None:
        while True:
            peak["sockets"] = max(peak["sockets"], _sockets())
            peak["rss"] = max(peak["rss"], _rss_mb())
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    try:
        probes = await asyncio.wait_for(asyncio.gather(*(
            prober.probe_address(ProbeTarget(r["ip"], hostile_lab.smtp_port,
                                             r["mx_hostnames"][0]))
            for r in truth)), SCAN_DEADLINE_S)
    finally:
        sampler.cancel()
    got = [host_outcome(p).value for p in probes]
    want = [EXPECTED[Behaviour(r["behaviour"])].outcome.value for r in truth]
    assert got == want
    gc.collect()
    await asyncio.sleep(0.1)  # aborted transports close in loop callbacks
    print(f"{len(truth)} concurrent hostile conversations: peak {peak['sockets']} sockets, "
          f"RSS {rss_before:.0f} -> peak {peak['rss']:.0f} MB; sockets {sockets_before} before, "
          f"{_sockets()} after")
    assert peak["sockets"] >= 0.9 * len(truth) >= 900
    assert peak["rss"] - rss_before < RSS_CEILING_MB / 2
    assert _sockets() <= sockets_before


def test_no_socket_leaks_after_the_scan(hostile_run: HostileRun) -> None:
    assert hostile_run.sockets_after <= hostile_run.sockets_before, (
        hostile_run.sockets_before, hostile_run.sockets_after)
