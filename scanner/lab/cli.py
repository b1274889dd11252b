"""`scanner lab serve` (and the internal `lab worker`): run the simulated mail internet."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

PROFILES = ("mixed", "norway-2010", "facebook-2014", "hostile")


def _latency(text: str) -> tuple[int, int]:
    """`20-300` (or `50`) -> (lo, hi) milliseconds."""
    lo, _, hi = text.partition("-")
    try:
        low, high = int(lo), int(hi or lo)
    except ValueError:
        raise argparse.ArgumentTypeError(f"latency {text!r} is not LO-HI milliseconds") from None
    if not 0 <= low <= high:
        raise argparse.ArgumentTypeError(f"latency {text!r}: need 0 <= LO <= HI")
    return low, high


def _address(text: str) -> str:
    """An IP address in its canonical form (as the server sees a peer's address)."""
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address") from None


def add_lab_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser], *,
                     formatter_class: type[argparse.HelpFormatter] = argparse.HelpFormatter,
                     internal: bool = False) -> None:
    """Add `lab serve` to the main parser's subcommands; `internal` adds `lab worker` too.

    Only the lab's own entry point (`python -m scanner.lab.cli`, which starts the workers)
    takes `worker`: the scanner's help never lists it.
    """
    lab = subparsers.add_parser("lab", help="run the simulated mail internet on loopback",
                                description="Run the simulated mail internet on loopback.",
                                formatter_class=formatter_class)
    lab_sub = lab.add_subparsers(dest="lab_command", required=True, metavar="COMMAND")
    serve = lab_sub.add_parser(
        "serve", help="serve a seeded population until interrupted",
        formatter_class=formatter_class,
        description="Serve a seeded population (DNS, SMTP, MTA-STS) on 127.0.0.0/8 until "
                    "Ctrl-C or SIGTERM; DIR/lab.json exists while it is ready.")
    serve.add_argument("--profile", choices=PROFILES, default="mixed",
                       help="population profile (default mixed)")
    serve.add_argument("--domains", type=int, default=200, metavar="N",
                       help="domains in the population (default 200)")
    serve.add_argument("--seed", type=int, default=1,
                       help="random seed: a seed and a size give the same population (default 1)")
    serve.add_argument("--dir", type=Path, required=True, metavar="DIR",
                       help="where domains.txt, truth/, lab-ca.pem and lab.json go")
    serve.add_argument("--smtp-port", type=int, default=0,
                       help="SMTP port of every host (default 0: a free one)")
    serve.add_argument("--dns-port", type=int, default=0,
                       help="DNS port (default 0: a free one)")
    serve.add_argument("--latency-ms", type=_latency, metavar="LO-HI",
                       help="per-host reply delay range (default: the profile's, 20-300 for the "
                            "national profiles, 0 for mixed and hostile)")
    serve.add_argument("--greet-pause", type=float, default=0.3, metavar="S",
                       help="seconds the greet_pause hosts wait before greeting (default 0.3)")
    serve.add_argument("--strip-client", action="append", default=[], type=_address,
                       metavar="ADDR", help="simulate a STARTTLS-stripping path for connections "
                       "from this client address (repeatable)")
    serve.set_defaults(func=run_lab_command)
    if not internal:
        return
    worker = lab_sub.add_parser("worker", help="serve a slice of the hosts (started by serve)")
    worker.add_argument("--hosts-file", type=Path, required=True)
    worker.add_argument("--dir", type=Path, required=True)
    worker.add_argument("--smtp-port", type=int, required=True)
    worker.add_argument("--greet-pause", type=float, default=0.3)
    worker.add_argument("--strip-client", action="append", default=[], type=_address)
    worker.set_defaults(func=run_lab_command)


def run_lab_command(args: argparse.Namespace) -> int:
    """Run `lab serve` or `lab worker` until SIGINT/SIGTERM; 0 on a clean stop."""
    if args.lab_command == "worker":
        from scanner.lab.servers.workers import run_worker

        code: int = asyncio.run(run_worker(args.hosts_file, args.dir, args.smtp_port,
                                           greet_pause_s=args.greet_pause,
                                           strip_clients=args.strip_client))
        return code
    from scanner.lab.serve import run_lab

    if args.domains < 1:
        print("scanner: error: --domains must be at least 1", file=sys.stderr)
        return 2
    asyncio.run(run_lab(args.profile, args.domains, args.seed, args.dir,
                        smtp_port=args.smtp_port, dns_port=args.dns_port,
                        latency_ms=args.latency_ms, greet_pause_s=args.greet_pause,
                        strip_clients=args.strip_client, on_ready=_announce))
    print(f"lab stopped: every server closed, {args.dir.resolve() / 'lab.json'} removed",
          flush=True)
    return 0


def ready_text(info: dict[str, Any]) -> str:
    """What a ready lab serves, for the person who started it (lab.json has it all too)."""
    directory = Path(info["directory"])
    strip = []
    if info["strip_port"] is not None:
        strip.append(f"port {info['strip_port']} (every STARTTLS rewritten)")
    if info["strip_clients"]:
        strip.append(f"clients {', '.join(info['strip_clients'])}")
    lines = [
        f"lab ready: profile {info['profile']}, {info['domains']} domains, seed {info['seed']}",
        f"  domains      {directory / 'domains.txt'} (truth in {directory / 'truth'})",
        f"  addresses    {info['hosts']} mail hosts, {info['first_address']} to "
        f"{info['last_address']} ({info['listening']} listening)",
        f"  resolver     {info['resolver']}",
        f"  SMTP port    {info['smtp_port']}",
        f"  MTA-STS      HTTPS port {info['mta_sts_port']}",
        f"  CA file      {info['ca_pem']}",
        f"  lab.json     {info['lab_json']}",
    ]
    if strip:
        lines.append(f"  stripping    {'; '.join(strip)}")
    lines += [f"scan it:  scanner scan {directory / 'domains.txt'} -o OUTDIR --lab {directory}",
              "stop it:  Ctrl-C or SIGTERM"]
    return "\n".join(lines)


def _announce(info: dict[str, Any]) -> None:
    print(ready_text(info), flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m scanner.lab.cli serve ...`: the lab without the scanner's main parser."""
    parser = argparse.ArgumentParser(prog="scanner")
    add_lab_commands(parser.add_subparsers(dest="command", required=True), internal=True)
    args = parser.parse_args(["lab", *(argv if argv is not None else sys.argv[1:])])
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
