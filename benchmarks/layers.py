"""Where the floor's budget goes: the scanner's steps beside the floor client's, layer by layer.

`floor.py` compares whole processes: the scanner (DNS, policy lookups, conversation, judging,
rows, Parquet) against the floor client (the conversation alone). This splits the scanner's
share of that ratio by layer, in one process, over every host of a running lab, in
alternating rounds on one event loop:

- `floor`: the floor client's conversation (`floor.probe_all`: raw asyncio streams);
- `conversation`: the scanner's own (`SmtpProber.probe_address`: aiosmtplib, every step under
  its timeout, each outcome a status, TLS facts and the chain as sent);
- `judged`: that and the host's judgement (`HostAnalyser.analyse`: outcome, a row for every
  certificate not seen before in the pass, the chain's verdict once per distinct chain,
  the leaf's names), with fresh caches each pass;
- `floor_dns` and `floor_dns_policies`: the floor client finding those hosts itself, as
  `floor.py`'s DNS floors do (a bare UDP socket: each covering domain's MX, each MX host's A and
  AAAA; then also four TXT a domain and TLSA an MX host, their replies unread), then its
  conversation with each address found.

Each layer's CPU per probe is the median of its rounds, and is reported as a ratio to the
floor's. `design_steps_at_cheapest` adds up, in floor units, what the scanner cannot do
without: its judged conversation, and the DNS and policy lookups as the floor client does them
(judged + floor_dns_policies - floor, over floor). Only the lab's servers, on loopback, are
contacted (each address once per pass).

    .venv/bin/python benchmarks/layers.py --lab <lab dir> --rounds 3
    .venv/bin/python benchmarks/layers.py --domains 345000 --rounds 3   # starts its own lab
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import floor  # noqa: E402
import survey  # noqa: E402
from common import (  # noqa: E402
    ROOT,
    append_row,
    commit,
    emit,
    machine,
    national_lab,
    own_cpu_s,
    served_hosts,
    today,
)

from scanner.commands.cli import build_parser  # noqa: E402
from scanner.commands.options import config_from_args  # noqa: E402
from scanner.config import EVENT_LOOPS, ScanConfig  # noqa: E402
from scanner.model.records import ProbeTarget, SmtpProbe  # noqa: E402
from scanner.model.status import HandshakeStatus  # noqa: E402
from scanner.scan import event_loop  # noqa: E402
from scanner.scan.probe import HostAnalyser  # noqa: E402
from scanner.smtp.conversation import SmtpProber  # noqa: E402
from scanner.tls.context import make_probe_context  # noqa: E402
from scanner.tls.verify import ChainVerifier  # noqa: E402

LAYERS = ("floor", "conversation", "judged", "floor_dns", "floor_dns_policies")


def scan_config(lab_dir: Path) -> ScanConfig:
    """The configuration the measured scans get from the command line (`--lab`, the
    benchmarks' timeouts, `survey.BENCH_TIMEOUTS`); the floor client shares its timeouts."""
    args = build_parser().parse_args(["scan", str(lab_dir / "domains.txt"), "-o",
                                      str(lab_dir / "unused"), "--lab", str(lab_dir),
                                      *survey.BENCH_TIMEOUTS])
    return config_from_args(args)[0]


def lab_targets(lab_dir: Path, limit: int | None = None, seed: int = 1
                ) -> list[tuple[str, int]]:
    """Every (ip, port) the lab serves SMTP on, from its truth; a seeded sample of `limit`."""

    hosts = served_hosts(lab_dir, ["ip", "port"])
    targets = list(zip(hosts.column("ip").to_pylist(), hosts.column("port").to_pylist(),
                       strict=True))
    if limit is not None and limit < len(targets):  # the truth lists hosts grouped by kind
        targets = random.Random(seed).sample(targets, limit)
    return targets


async def _scanner_pass(layer: str, config: ScanConfig, targets: list[tuple[str, int]],
                        concurrency: int) -> Counter[str]:
    """One pass of the scanner's conversation (and judgement): probes that reached TLS, and
    chains judged."""
    tls = make_probe_context()
    reached: Counter[str] = Counter()
    run: Callable[[ProbeTarget], Awaitable[SmtpProbe]]
    if layer == "conversation":
        run = SmtpProber(config, tls).probe_address
    else:
        analyser = HostAnalyser(config, tls,
                                ChainVerifier.from_trust_store(config.trust, config.started_at))

        async def run(target: ProbeTarget) -> SmtpProbe:
            record, _ = await analyser.analyse(target)
            if record.probe.handshake_status is HandshakeStatus.OK and record.chain is None:
                raise SystemExit(f"{target.ip}: a TLS host was not judged")
            reached["judged"] += record.chain is not None
            return record.probe

    gate = asyncio.Semaphore(concurrency)

    async def one(ip: str, port: int) -> None:
        async with gate:
            probe = await run(ProbeTarget(ip=ip, port=port, mx_hostname="mx.layers.invalid"))
        reached["tls"] += probe.handshake_status is HandshakeStatus.OK

    async with asyncio.TaskGroup() as group:
        for ip, port in targets:
            group.create_task(one(ip, port))
    return reached


async def _floor_pass(config: ScanConfig, targets: list[tuple[str, int]],
                      concurrency: int) -> Counter[str]:
    t = config.timeouts
    counts = await floor.probe_all(targets, concurrency, t.greeting, t.per_address)
    return Counter(tls=counts.get("tls", 0))


async def _floor_dns_pass(config: ScanConfig, domains: list[str], concurrency: int,
                          policies: bool) -> tuple[Counter[str], int, int]:
    host, _, port = config.resolvers[0].rpartition(":")
    t = config.timeouts
    out = await floor._resolve_and_probe(
        domains, (host, int(port)), config.port, concurrency, t.greeting, t.per_address,
        policies=policies, dns_s=t.dns_query)
    return Counter(tls=out["reached"].get("tls", 0)), out["probes"], out["dns_queries"]


def one_pass(layer: str, config: ScanConfig, targets: list[tuple[str, int]],
             domains: list[str], concurrency: int, loop: str) -> dict[str, Any]:
    """CPU of one layer over every target (the DNS layers: every address their domains lead
    to), how many probes there were, how many reached TLS, the DNS queries asked and the
    chains judged."""
    started = own_cpu_s()
    probes, queries = len(targets), 0
    if layer == "floor":
        reached = event_loop.run(_floor_pass(config, targets, concurrency), loop)
    elif layer.startswith("floor_dns"):
        reached, probes, queries = event_loop.run(_floor_dns_pass(
            config, domains, concurrency, policies=layer == "floor_dns_policies"), loop)
    else:
        reached = event_loop.run(_scanner_pass(layer, config, targets, concurrency), loop)
    cpu = own_cpu_s() - started
    return {"cpu_s": round(cpu, 3), "probes": probes, "dns_queries": queries,
            "ms_per_probe": round(1000 * cpu / max(probes, 1), 4), "tls": reached["tls"],
            "judged": reached["judged"]}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--lab", type=Path, help="a running lab's directory")
    p.add_argument("--domains", type=int, default=34_500, help="lab size when no --lab")
    p.add_argument("--work", type=Path, default=ROOT / "results" / "bench",
                   help="where a lab started here lives")
    p.add_argument("--rounds", type=int, default=3, help="of every layer, alternating")
    p.add_argument("--limit", type=int, default=None, help="probe a seeded sample of N hosts")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--concurrency", type=int, default=2000)
    p.add_argument("--loop", default="auto", choices=EVENT_LOOPS)
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args(argv)
    if args.lab is not None:
        return _measure(args.lab, args)
    args.work.mkdir(parents=True, exist_ok=True)
    with national_lab(args.domains, args.work) as lab:
        return _measure(lab.directory, args)


def _measure(lab_dir: Path, args: argparse.Namespace) -> int:
    from peers import cover_domains

    config = scan_config(lab_dir)
    targets = lab_targets(lab_dir, args.limit, args.seed)
    # the DNS layers find the hosts through domains whose MX hosts cover the targets
    domains = cover_domains(lab_dir, {ip for ip, _ in targets})
    runs: dict[str, list[dict[str, Any]]] = {layer: [] for layer in LAYERS}
    for i in range(args.rounds):
        for layer in LAYERS if i % 2 == 0 else LAYERS[::-1]:
            runs[layer].append(one_pass(layer, config, targets, domains, args.concurrency,
                                        args.loop))
    # the ratios are of the figures reported, so that they can be checked from the output
    ms = {layer: round(statistics.median(r["ms_per_probe"] for r in runs[layer]), 4)
          for layer in LAYERS}
    ratios = {layer: round(ms[layer] / ms["floor"], 2) for layer in LAYERS[1:]}
    cheapest = round((ms["judged"] + ms["floor_dns_policies"] - ms["floor"]) / ms["floor"], 2)
    emit({"bench": "layers", "date": today(), "machine": machine(), "commit": commit(),
          "probes": len(targets), "domains": len(domains), "rounds": args.rounds,
          "loop": args.loop, "runs": runs, "ms_per_probe": ms,
          "ratio_to_floor": ratios, "design_steps_at_cheapest": cheapest})
    if not args.no_record:
        append_row("Layers: the scanner's conversation and judging beside the floor client",
                   LAYERS_HEADER,
                   [today(), commit(), f"{len(targets):,}", args.rounds,
                    *(round(ms[layer], 3) for layer in LAYERS),
                    *(ratios[layer] for layer in LAYERS[1:]), cheapest])
    print(json.dumps({"ratio_to_floor": ratios, "design_steps_at_cheapest": cheapest}),
          file=sys.stderr)
    return 0


LAYERS_HEADER = ["date (UTC)", "commit", "probes", "rounds", "floor ms a probe",
                 "conversation ms a probe", "judged ms a probe", "floor+DNS ms a probe",
                 "floor+DNS+policy queries ms a probe", "conversation / floor",
                 "judged / floor", "floor+DNS / floor", "floor+DNS+policy queries / floor",
                 "design's steps at their cheapest / floor"]


if __name__ == "__main__":
    sys.exit(main())
