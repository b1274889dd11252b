"""The whole scan against the lab, compared with the lab's ground truth on every row."""

from __future__ import annotations

import asyncio
import dataclasses
import statistics
from pathlib import Path
from typing import Any

import pytest
from helpers.truth import differences, keyed_domains

from scanner.config import ScanConfig
from scanner.model.records import DomainRecord, HostRecord
from scanner.scan.pipeline import Scan
from scanner.scan.probe import HostAnalyser
from scanner.sink.dataset import read_dataset, read_manifest
from scanner.sink.schema import TRUTH_DOMAIN_COLUMNS, TRUTH_HOST_COLUMNS


class CountingProgress:
    def __init__(self) -> None:
        self.domains: list[DomainRecord] = []
        self.probes: list[HostRecord] = []

    def on_domain_done(self, record: DomainRecord) -> None:
        self.domains.append(record)

    def on_probe_done(self, record: HostRecord) -> None:
        self.probes.append(record)


async def _scan(config: ScanConfig) -> tuple[CountingProgress, Path]:
    progress = CountingProgress()
    await Scan(config, progress).run()
    return progress, config.output


@pytest.fixture(scope="module")
def mixed_scan(fake_internet: Any, tmp_path_factory: pytest.TempPathFactory,
               fast_config_factory: Any) -> tuple[CountingProgress, Path]:
    import asyncio

    config = fast_config_factory(tmp_path_factory.mktemp("mixed") / "out")
    fake_internet.control("reset_counts")  # other tests talk to the same lab
    return asyncio.run(_scan(config))


def test_mixed_scan_domains_equal_truth(mixed_scan: Any, fake_internet: Any) -> None:
    _, out = mixed_scan
    scan = keyed_domains(out)
    diff = differences(scan, fake_internet.truth_domains(), "domain", TRUTH_DOMAIN_COLUMNS)
    assert not diff, "\n".join(diff[:60])


def test_mixed_scan_hosts_equal_truth(mixed_scan: Any, fake_internet: Any) -> None:
    _, out = mixed_scan
    diff = differences(read_dataset(out, "hosts"), fake_internet.truth_hosts(), "ip",
                       TRUTH_HOST_COLUMNS)
    assert not diff, "\n".join(diff[:60])


def test_each_address_probed_once_and_never_mail(mixed_scan: Any, fake_internet: Any) -> None:
    progress, out = mixed_scan
    hosts = read_dataset(out, "hosts", columns=["ip"]).column("ip").to_pylist()
    assert len(hosts) == len(set(hosts))
    assert len(progress.probes) == len(hosts)
    counts = fake_internet.counts()
    for ip in hosts:
        c = counts.get(ip)
        if c is None:  # nothing listens there (refused)
            continue
        assert c["connections"] <= 1, f"{ip} got {c['connections']} connections"
        assert c["max_concurrent"] <= 1
        assert c["forbidden_commands"] == 0, f"{ip} received MAIL/RCPT/DATA"


def test_every_input_line_has_one_domain_row(mixed_scan: Any, fake_internet: Any) -> None:
    progress, out = mixed_scan
    domains = read_dataset(out, "domains", columns=["line_no", "status", "starttls_class"])
    line_nos = domains.column("line_no").to_pylist()
    assert len(line_nos) == len(set(line_nos)) == len(progress.domains)
    lines = [ln for ln in (fake_internet.directory / "domains.txt").read_text(
        encoding="utf-8").splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert len(line_nos) == len(lines)
    statuses = domains.column("status").to_pylist()
    classes = domains.column("starttls_class").to_pylist()
    assert [c for s, c in zip(statuses, classes, strict=True) if s == "invalid"] \
        == ["invalid"] * statuses.count("invalid") and statuses.count("invalid") >= 3


def test_manifest_records_config_and_counts(mixed_scan: Any) -> None:
    progress, out = mixed_scan
    manifest = read_manifest(out)
    assert manifest["state"] == "finished"
    assert manifest["schema_version"]
    assert manifest["config"]["lab_mode"] is True
    assert manifest["counts"]["domains"] == len(progress.domains)
    assert manifest["end_time"] >= manifest["start_time"]


def test_certificates_are_distinct_and_cover_every_leaf(mixed_scan: Any) -> None:
    _, out = mixed_scan
    certs = read_dataset(out, "certificates", columns=["sha256", "parse_ok"])
    shas = certs.column("sha256").to_pylist()
    assert len(shas) == len(set(shas))
    leaves = {s for s in read_dataset(out, "hosts", columns=["leaf_sha256"])
              .column("leaf_sha256").to_pylist() if s}
    assert leaves and leaves <= set(shas)


def test_config_is_frozen() -> None:
    config = ScanConfig(output=Path("x"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.port = 26  # type: ignore[misc]


async def test_provider_slots_are_released_after_their_probes(fast_config: ScanConfig) -> None:
    config = dataclasses.replace(fast_config, limit=60)
    scan = Scan(config)
    counts = await scan.run()
    assert counts.probes > 10
    # one semaphore per provider while its probes run, none left once they are done
    assert scan._provider_sems == {} and scan._provider_users == {}


async def test_a_probe_waiting_for_its_provider_holds_no_scan_slot(
        fast_config: ScanConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    # The lab's behaviour hosts all live under hosting.test, tarpits and slow greeters among
    # them: one provider with many addresses. With one conversation a provider, its probes
    # queue for it; queued, they must leave the scan's few slots to other providers' addresses
    # (a national survey's Microsoft 365 pool would otherwise stall every other provider).
    slots_max = 4
    config = dataclasses.replace(fast_config, limits=dataclasses.replace(
        fast_config.limits, max_in_flight=slots_max, per_provider=1))
    scan = Scan(config)
    conversing = peak = 0
    original = HostAnalyser.analyse

    async def counted(self: HostAnalyser, *args: Any, **kwargs: Any) -> Any:
        nonlocal conversing, peak
        conversing += 1
        peak = max(peak, conversing)
        try:
            return await original(self, *args, **kwargs)
        finally:
            conversing -= 1

    monkeypatch.setattr(HostAnalyser, "analyse", counted)
    idle: list[int] = []  # scan slots taken by probes not in a conversation, every 10 ms

    async def sample() -> None:
        while True:
            idle.append(slots_max - scan._probe_slots._value - conversing)
            await asyncio.sleep(0.01)

    sampler = asyncio.create_task(sample())
    try:
        counts = await scan.run()
    finally:
        sampler.cancel()
    assert counts.probes > 50 and len(idle) > 50
    assert peak == slots_max  # other providers' addresses ran beside hosting.test's
    # A slot handed to a waiter counts as taken until the waiter runs: a moment, not a queue.
    assert statistics.mean(idle) < 0.25, statistics.mean(idle)


async def test_a_domain_costs_one_task(fast_config: ScanConfig) -> None:
    # Every task a scan creates, by coroutine. Besides one per probe and per cache load, a
    # domain has its own task and no other: its probes start without one, and its policy
    # lookups are awaited in it while they run. An asyncio.gather of the probes and the TLSA
    # lookups, and a task for the TXT lookups, made three more tasks a domain.
    import asyncio
    from collections import Counter

    created: Counter[str] = Counter()

    def factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
        created[coro.__qualname__] += 1
        return asyncio.Task(coro, loop=loop, **kwargs)

    asyncio.get_running_loop().set_task_factory(factory)
    try:
        counts = await Scan(dataclasses.replace(fast_config, limit=60)).run()
    finally:
        asyncio.get_running_loop().set_task_factory(None)
    assert counts.domains >= 60 and counts.probes > 10
    assert created["Scan._domain"] == counts.domains
    assert created["Scan._probe"] == counts.probes
    assert {name for name, n in created.items() if n >= counts.domains} == {"Scan._domain"}
