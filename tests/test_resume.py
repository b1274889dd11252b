"""Crash safety: SIGKILL a lab scan at several points, resume each time, get the same dataset."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from scanner.sink.dataset import read_dataset, read_manifest

FAST = ["--timeout-dns", "0.5", "--timeout-connect", "1", "--timeout-greeting", "1.5",
        "--timeout-command", "1.5", "--timeout-starttls", "1.5", "--timeout-handshake", "1.5",
        "--deadline", "4", "--no-progress", "--batch-rows", "7", "--concurrency", "8"]

# columns that measure time, not what the servers said
_VOLATILE = {"dns_ms", "finished_at", "started_at", "connect_ms", "greeting_ms", "ehlo_ms",
             "starttls_ms", "handshake_ms", "total_ms", "error_detail", "mx_hostnames"}
_KEYS = {"domains": ["line_no"], "domain_mx": ["domain", "mx_hostname", "ip"],
         "hosts": ["ip"], "certificates": ["sha256"]}


def _scan_cmd(lab: Any, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "scanner", "scan", str(lab.directory / "domains.txt"),
            "-o", str(out), "--lab", str(lab.directory), *FAST, *extra]


def _commits(out: Path) -> int:
    try:
        return sum(1 for line in (out / "_commits.jsonl").read_text().splitlines()
                   if line.endswith("}"))
    except FileNotFoundError:
        return 0


def _comparable(out: Path, name: str) -> list[dict[str, Any]]:
    table = read_dataset(out, name)
    keep = [c for c in table.column_names if c not in _VOLATILE]
    rows = table.select(keep).to_pylist()
    return sorted(rows, key=lambda r: tuple(str(r[k]) for k in _KEYS[name]))


@pytest.fixture(scope="module")
def uninterrupted(fake_internet: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("whole") / "out"
    proc = subprocess.run(_scan_cmd(fake_internet, out), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def test_sigkill_and_resume_equals_uninterrupted_scan(
        fake_internet: Any, uninterrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rng = random.Random(20101)
    kills = 0
    for attempt in range(4):
        resume = ["--resume"] if attempt else []
        proc = subprocess.Popen(_scan_cmd(fake_internet, out, *resume),
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        target = _commits(out) + rng.randint(1, 4)
        deadline = time.monotonic() + 60
        while proc.poll() is None and _commits(out) < target and time.monotonic() < deadline:
            time.sleep(0.01)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()
        # whatever the moment of death, every committed part file is readable
        for part in out.glob("*/part-*.parquet"):
            pq.read_metadata(part)
    assert kills >= 2, "the scan finished before it could be killed: make it slower"
    final = subprocess.run(_scan_cmd(fake_internet, out, "--resume"), capture_output=True,
                           text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    assert read_manifest(out)["state"] == "finished"
    for name in ("domains", "domain_mx", "hosts", "certificates"):
        got, want = _comparable(out, name), _comparable(uninterrupted, name)
        keys = [tuple(str(r[k]) for k in _KEYS[name]) for r in got]
        assert len(keys) == len(set(keys)), f"duplicate rows in {name}"
        assert got == want, f"{name} differs from the uninterrupted scan"


def test_resume_of_a_finished_scan_scans_nothing(fake_internet: Any, uninterrupted: Path
                                                 ) -> None:
    before = fake_internet.counts()
    proc = subprocess.run(_scan_cmd(fake_internet, uninterrupted, "--resume"),
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "scanned 0 domains" in proc.stdout
    after = fake_internet.counts()
    assert sum(c["connections"] for c in after.values()) == \
        sum(c["connections"] for c in before.values())
    assert read_dataset(uninterrupted, "domains").num_rows == 204


def test_sigterm_flushes_marks_interrupted_and_says_how_to_resume(
        fake_internet: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(_scan_cmd(fake_internet, out), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while _commits(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert proc.poll() is None, "scan ended before it could be interrupted"
    proc.send_signal(signal.SIGTERM)
    _stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode != 0
    assert "--resume" in stderr and "Traceback" not in stderr
    assert read_manifest(out)["state"] == "interrupted"
    assert read_dataset(out, "domains").num_rows > 0
