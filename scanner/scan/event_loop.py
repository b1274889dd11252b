"""Which asyncio event loop runs a scan: uvloop when it is installed, else the standard one.

Measured on the same lab (README, Performance), with the same rows on both: uvloop's
transports, timers and socket calls make the SMTP conversations about 30 % cheaper (12,626
addresses, one covering domain each: 1.12 vs 1.59 ms CPU per probe), while a survey whose CPU
goes mostly to DNS and policy lookups per domain gains little (345k: 196 vs 192 s; 34.5k:
18.5-19.2 vs 19.8-20.8 s). `--loop asyncio` keeps the standard loop (for comparison, or where
uvloop misbehaves); the manifest records the loop that ran (`event_loop` in its config).
"""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from scanner.config import EVENT_LOOPS, ConfigError

T = TypeVar("T")


def resolve(name: str) -> str:
    """The concrete loop for a `--loop` value; ConfigError when it cannot be had."""
    if name not in EVENT_LOOPS:
        raise ConfigError(f"unknown event loop {name!r}: choose one of {', '.join(EVENT_LOOPS)}")
    has_uvloop = importlib.util.find_spec("uvloop") is not None
    if name == "uvloop" and not has_uvloop:
        raise ConfigError("--loop uvloop: uvloop is not installed (pip install uvloop)")
    if name == "auto":
        return "uvloop" if has_uvloop else "asyncio"
    return name


def loop_factory(name: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """What asyncio.Runner should build the loop with (None: the standard loop)."""
    if resolve(name) == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return None


def run(main: Coroutine[Any, Any, T], name: str) -> T:
    """asyncio.run(main) on the chosen loop."""
    try:
        factory = loop_factory(name)
    except ConfigError:
        main.close()  # never awaited: close it so it is not reported as a leak
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)
