"""The probe table: one entry per address, equal summaries stored once."""

from __future__ import annotations

import asyncio

import pytest

from scanner.model.status import HostOutcome
from scanner.scan.probe_table import ProbeTable
from scanner.scan.summary import HostSummary


def _summary(outcome: HostOutcome = HostOutcome.NO_STARTTLS,
             names: tuple[str, ...] = ()) -> HostSummary:
    tls = outcome is HostOutcome.TLS_OK
    return HostSummary(outcome=outcome, smtp_ok=True, starttls_offered=tls, tls_ok=tls,
                       chain_valid=True if tls else None, leaf_names=names)


def test_an_address_goes_from_its_future_to_its_summary() -> None:
    async def main() -> None:
        table = ProbeTable()
        assert table.get("192.0.2.1") is None
        fut = table.start("192.0.2.1")
        assert table.get("192.0.2.1") is fut and not fut.done()
        with pytest.raises(KeyError):
            table.start("192.0.2.1")  # never two probes of one address
        stored = table.finish("192.0.2.1", _summary())
        assert table.get("192.0.2.1") is stored
        assert len(table) == 1

    asyncio.run(main())


def test_equal_summaries_are_stored_once() -> None:
    table = ProbeTable()
    firsts = {}
    for i in range(1000):
        names = (f"mx{i % 3}.example",)
        summary = _summary(HostOutcome.TLS_OK, names) if i % 2 else _summary()
        stored = table.finish(f"10.0.{i // 256}.{i % 256}", summary)
        assert stored == summary
        firsts.setdefault(summary, stored)
        assert stored is firsts[summary]  # the first equal one, shared
    assert len(table) == 1000
    assert table.distinct_summaries == 4  # plain, and TLS with one of three names
    assert table.get("10.0.0.1") is table.get("10.0.0.7")  # odd, same name
    assert table.get("10.0.0.1") is not table.get("10.0.0.3")


def test_a_national_table_answers_every_address_after_merges() -> None:
    table = ProbeTable()
    plain, tls = _summary(), _summary(HostOutcome.TLS_OK, ("mx.example",))
    v4 = [f"10.{i // 65536}.{i // 256 % 256}.{i % 256}" for i in range(12_000)]
    v6 = [f"2001:db8::{i:x}" for i in range(12_000)]
    for i, ip in enumerate(v4 + v6):
        table.finish(ip, tls if i % 3 == 0 else plain)
    assert len(table) == 24_000 and table.distinct_summaries == 2
    for i, ip in enumerate(v4 + v6):
        assert table.get(ip) is (tls if i % 3 == 0 else plain)
    assert table.get("2001:db8:0::5") is table.get("2001:db8::5")  # one address, two spellings
    assert table.get("10.99.0.0") is None and table.get("2001:db8::1:0") is None
    with pytest.raises(KeyError):
        asyncio.run(_start(table, "10.0.0.1"))  # finished long ago, and merged: never again


async def _start(table: ProbeTable, ip: str) -> None:
    table.start(ip)
