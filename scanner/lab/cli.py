"""`scanner lab serve` (and the internal `lab worker`): run the simulated mail internet."""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from collections.abc import Sequence
from pathlib import Path

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


def add_lab_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `lab serve` and the internal `lab worker` to the main parser's subcommands."""
    lab = subparsers.add_parser("lab", help="run the simulated mail internet on loopback")
    lab_sub = lab.add_subparsers(dest="lab_command", required=True)
    serve = lab_sub.add_parser("serve", help="serve a seeded population until interrupted")
    serve.add_argument("--profile", choices=PROFILES, default="mixed")
    serve.add_argument("--domains", type=int, default=200, metavar="N")
    serve.add_argument("--seed", type=int, default=1)
    serve.add_argument("--dir", type=Path, required=True, metavar="DIR",
                       help="where domains.txt, truth/, lab-ca.pem and lab.json go")
    serve.add_argument("--smtp-port", type=int, default=0, help="SMTP port (default: a free one)")
    serve.add_argument("--dns-port", type=int, default=0, help="DNS port (default: a free one)")
    serve.add_argument("--latency-ms", type=_latency, metavar="LO-HI",
                       help="per-host reply delay range (default: the profile's)")
    serve.add_argument("--greet-pause", type=float, default=0.3, metavar="S",
                       help="seconds the greet_pause hosts wait before greeting")
    serve.add_argument("--strip-client", action="append", default=[], type=_address,
                       metavar="ADDR", help="simulate a STARTTLS-stripping path for connections "
                       "from this client address (repeatable)")
    serve.set_defaults(func=run_lab_command)
    worker = lab_sub.add_parser("worker", help=argparse.SUPPRESS)
    worker.add_argument("--hosts-file", type=Path, required=True)
    worker.add_argument("--dir", type=Path, required=True)
    worker.add_argument("--smtp-port", type=int, required=True)
    worker.add_argument("--greet-pause", type=float, default=0.3)
    worker.add_argument("--strip-client", action="append", default=[], type=_address)
    worker.set_defaults(func=run_lab_command)


def run_lab_command(args: argparse.Namespace) -> int:
    """Run `lab serve` or `lab worker` until SIGINT/SIGTERM; 0 on a clean stop."""
    if args.lab_command == "worker":
        from scanner.lab.workers import run_worker

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
                        strip_clients=args.strip_client))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m scanner.lab.cli serve ...`: the lab without the scanner's main parser."""
    parser = argparse.ArgumentParser(prog="scanner")
    add_lab_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["lab", *(argv if argv is not None else sys.argv[1:])])
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
