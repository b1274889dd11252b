"""`run_scan.py [--loop asyncio|uvloop|auto] scan ...`: the scanner CLI on a chosen loop."""

from __future__ import annotations

import asyncio
import sys


def main(argv: list[str]) -> int:
    """Install the requested event loop policy, then run `scanner` with the remaining args."""
    loop = "auto"
    if argv[:1] == ["--loop"]:
        loop, argv = argv[1], argv[2:]
    if loop in ("auto", "uvloop"):
        try:
            import uvloop
        except ImportError:
            if loop == "uvloop":
                print("run_scan: uvloop is not installed", file=sys.stderr)
                return 2
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    from scanner.cli import main as scanner_main

    return scanner_main(argv)


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
