"""Why the scan waits at the end: the hosts left, the step they are in and its timeout."""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from scanner.config import ScanConfig, Timeouts
from scanner.model.records import DomainRecord, HostRecord
from scanner.scan.pipeline import Scan

if TYPE_CHECKING:
    from scanner.scan.pipeline import Waiting


class WaitingProgress:
    """Keeps every report of what the scan waits on."""

    def __init__(self) -> None:
        self.seen: list[Waiting] = []

    def on_domain_done(self, record: DomainRecord) -> None:
        pass

    def on_probe_done(self, record: HostRecord) -> None:
        pass

    def on_waiting(self, waiting: Waiting) -> None:
        self.seen.append(waiting)


@pytest.mark.parametrize(("greeting", "deadline", "limit"), [
    (1.5, 4.0, "timeout 1.5 s"),  # the greeting's own timeout ends the wait
    (5.0, 1.5, "deadline 1.5 s"),  # the per-address deadline comes first
])
async def test_scan_reports_the_step_and_timeout_of_the_hosts_left(
        fast_config: ScanConfig, tmp_path: Path, greeting: float, deadline: float,
        limit: str) -> None:
    listing = tmp_path / "slow.txt"
    # two that never greet (tarpit; trickle: a byte a second, never a line), two that answer
    listing.write_text("only-valid.test\nonly-tarpit.test\nonly-trickle.test\n"
                       "only-no-starttls.test\n")
    config = dataclasses.replace(
        fast_config, inputs=(listing,),
        timeouts=dataclasses.replace(fast_config.timeouts, greeting=greeting,
                                     per_address=deadline))
    progress = WaitingProgress()
    await Scan(config, progress, waiting_every=0.1).run()
    at_the_end = [w for w in progress.seen if w.inputs_done and w.hosts == 2]
    assert at_the_end, progress.seen
    last = at_the_end[-1]
    assert [(s.step, s.hosts) for s in last.steps] == [("greeting", 2)]
    step = last.steps[0]
    assert step.timeout_s == greeting and step.deadline_first == (deadline < greeting)
    assert 0 <= step.ends_in_s <= min(greeting, deadline)
    assert last.queued == 0 and last.held == 0
    assert last.describe().startswith(f"2 hosts left: 2 waiting for the greeting ({limit}); "
                                      "the last ends within ")
    assert progress.seen[-1].hosts <= 2  # nothing else was reported as left at the end


def test_scan_command_draws_what_it_waits_on(fake_internet: Any, tmp_path: Path) -> None:
    (tmp_path / "in.txt").write_text("only-valid.test\nonly-tarpit.test\n")
    proc = subprocess.run(
        [sys.executable, "-m", "scanner", "scan", str(tmp_path / "in.txt"), "-o",
         str(tmp_path / "out"), "--lab", str(fake_internet.directory), "--timeout-greeting",
         "2.5"], capture_output=True, text=True, timeout=120)  # progress on: the default
    assert proc.returncode == 0, proc.stderr
    assert "1 host left: 1 waiting for the greeting (timeout 2.5 s)" in proc.stderr, \
        proc.stderr


class _SlowGreeter:
    """A mail server that greets after `pause_s`, offers no STARTTLS and says goodbye."""

    def __init__(self, ip: str, pause_s: float) -> None:
        self._server = socket.create_server((ip, 0))
        self._server.settimeout(0.1)
        self.port = self._server.getsockname()[1]
        self._pause_s = pause_s
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._serve)]
        self._threads[0].start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._server.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._talk, args=(conn,))
            self._threads.append(thread)
            thread.start()

    def _talk(self, conn: socket.socket) -> None:
        with conn, conn.makefile("rb") as lines:
            if self._stop.wait(self._pause_s):
                return
            conn.sendall(b"220 slow.test ESMTP\r\n")
            for line in lines:
                if line.upper().startswith(b"EHLO"):
                    conn.sendall(b"250-slow.test\r\n250 8BITMIME\r\n")
                elif line.upper().startswith(b"QUIT"):
                    conn.sendall(b"221 bye\r\n")
                    return
                else:
                    conn.sendall(b"502 no\r\n")

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join()
        self._server.close()


@pytest.fixture
def slow_greeter(fake_internet: Any) -> Iterator[_SlowGreeter]:
    ip = next(h["ip"] for h in fake_internet.truth_hosts().to_pylist()
              if "mx.valid.hosting.test" in h["mx_hostnames"])
    server = _SlowGreeter(ip, pause_s=2.5)
    try:
        yield server
    finally:
        server.close()


def test_check_says_what_it_waits_on(fake_internet: Any, slow_greeter: _SlowGreeter) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "scanner", "check", "only-valid.test", "--lab",
         str(fake_internet.directory), "--port", str(slow_greeter.port)],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "no_starttls" in proc.stdout
    timeout = Timeouts().greeting
    # not a terminal: one line each time what it waits on changes, no countdown
    assert proc.stderr.splitlines() == [
        f"scanner: only-valid.test: 1 host left: 1 waiting for the greeting "
        f"(timeout {timeout:g} s)"], proc.stderr
