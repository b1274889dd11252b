"""CPU per MX query through the scanner's c-ares channel, with c-ares' query cache off and on.

The scanner turns c-ares' query cache off (`scanner.dns.channel.without_query_cache`): within a
scan each name is asked about once, so storing every answer only costs. This measures what it
costs: the same MX queries for a running lab's domains, asked through `DnsChannel` with the
cache off (as the scanner does) and on (as pycares leaves it), in alternating rounds within
one process, `--in-flight` at a time. Only the lab's resolver, on loopback, is asked.

    .venv/bin/python benchmarks/dns_queries.py --lab <lab dir> --queries 40000 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import append_row, commit, emit, machine, own_cpu_s, today  # noqa: E402

from scanner.config import EVENT_LOOPS, Limits, Timeouts  # noqa: E402
from scanner.dns import channel as dns_channel  # noqa: E402
from scanner.scan import event_loop  # noqa: E402

SIDES = ("off", "on")


async def ask_all(resolver: str, names: list[str], in_flight: int) -> dict[str, Any]:
    """Each name's MX through one DnsChannel; its CPU, answers and the cache's state."""
    channel = dns_channel.DnsChannel([resolver], Timeouts(), Limits())
    gate = asyncio.Semaphore(in_flight)
    answered = 0

    async def one(name: str) -> None:
        nonlocal answered
        async with gate:
            try:
                await channel.query(name, "MX")
                answered += 1
            except Exception:  # NXDOMAIN, timeouts...: asked all the same
                pass

    started = own_cpu_s()
    try:
        await asyncio.gather(*(one(name) for name in names))
    finally:
        cpu = own_cpu_s() - started
        await channel.close()
    return {"cpu_s": round(cpu, 3), "answered": answered, "query_cache": channel.query_cache,
            "us_per_query": round(1e6 * cpu / len(names), 1)}


def one_round(side: str, resolver: str, names: list[str], in_flight: int,
              loop: str) -> dict[str, Any]:
    keep = dns_channel.without_query_cache
    if side == "on":  # what pycares does by itself
        dns_channel.without_query_cache = lambda channel: False  # type: ignore[assignment]
    try:
        result = event_loop.run(ask_all(resolver, names, in_flight), loop)
    finally:
        dns_channel.without_query_cache = keep  # type: ignore[assignment]
    if result["query_cache"] != (side == "on"):
        raise SystemExit(f"the cache was not {side} as asked: {result}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lab", type=Path, required=True, help="a running lab's directory")
    p.add_argument("--queries", type=int, default=40_000)
    p.add_argument("--rounds", type=int, default=2, help="of each side, alternating")
    p.add_argument("--in-flight", type=int, default=200)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--loop", default="auto", choices=EVENT_LOOPS)
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args(argv)
    lab = json.loads((args.lab / "lab.json").read_text())
    domains = (args.lab / "domains.txt").read_text().split()
    names = random.Random(args.seed).sample(domains, min(args.queries, len(domains)))
    runs: dict[str, list[dict[str, Any]]] = {side: [] for side in SIDES}
    for i in range(args.rounds):
        for side in SIDES if i % 2 == 0 else SIDES[::-1]:
            runs[side].append(one_round(side, lab["resolver"], names, args.in_flight,
                                        args.loop))
    us = {side: [r["us_per_query"] for r in runs[side]] for side in SIDES}
    ratio = round(statistics.median(us["off"]) / statistics.median(us["on"]), 3)
    emit({"bench": "dns_queries", "date": today(), "machine": machine(), "commit": commit(),
          "queries": len(names), "answered": runs["off"][0]["answered"], "runs": runs,
          "us_per_query_off": us["off"], "us_per_query_on": us["on"], "off_to_on": ratio})
    if not args.no_record:
        append_row("MX queries through the c-ares channel (query cache off, as scanned, and on)",
                   ["date (UTC)", "commit", "queries", "in flight", "µs a query, cache off",
                    "µs a query, cache on", "off / on (medians)"],
                   [today(), commit(), f"{len(names):,}", args.in_flight,
                    ", ".join(map(str, us["off"])), ", ".join(map(str, us["on"])), ratio])
    return 0


if __name__ == "__main__":
    sys.exit(main())
