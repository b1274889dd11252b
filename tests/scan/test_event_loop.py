"""The event loop a scan runs on: uvloop by default, asyncio's own on request, same rows."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from scanner.config import ConfigError, ScanConfig
from scanner.scan import event_loop
from scanner.sink.dataset import read_dataset

FAST = ["--timeout-dns", "0.5", "--timeout-connect", "1", "--timeout-greeting", "1.5",
        "--timeout-command", "1.5", "--timeout-starttls", "1.5", "--timeout-handshake", "1.5",
        "--deadline", "4", "--no-progress"]
# what may differ between two scans of the same hosts: times, and the OS error's wording in
# error_detail (asyncio: "Connect call failed (ip, port)", uvloop: "Connection refused")
_VOLATILE = ("_ms", "started_at", "scanned_at", "finished_at", "error_detail")


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


def test_auto_is_uvloop_which_the_project_installs() -> None:
    assert importlib.util.find_spec("uvloop") is not None
    assert event_loop.resolve("auto") == "uvloop"
    assert ScanConfig(output=Path("o")).event_loop == "auto"


def test_run_uses_the_chosen_loop() -> None:
    assert event_loop.run(_loop_module(), "uvloop").startswith("uvloop")
    assert event_loop.run(_loop_module(), "asyncio").startswith("asyncio")


def test_missing_uvloop_falls_back_or_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "uvloop" else real(name, *a))
    assert event_loop.resolve("auto") == "asyncio"
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        event_loop.resolve("uvloop")
    coro = _loop_module()
    with pytest.raises(ConfigError):
        event_loop.run(coro, "uvloop")
    assert coro.cr_frame is None  # closed, not left to warn about never being awaited


def test_unknown_loop_is_refused() -> None:
    with pytest.raises(ConfigError, match="unknown event loop 'trio'"):
        event_loop.resolve("trio")
    with pytest.raises(ConfigError, match="unknown event loop"):
        ScanConfig(output=Path("o"), event_loop="trio")
    proc = subprocess.run([sys.executable, "-m", "scanner", "scan", "x.txt", "-o", "out",
                           "--loop", "trio"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "invalid choice: 'trio'" in proc.stderr


def _rows(out: Path, name: str, key: str) -> dict[Any, dict[str, Any]]:
    rows = read_dataset(out, name).to_pylist()
    return {r[key]: {k: v for k, v in r.items() if not k.endswith(_VOLATILE)} for r in rows}


def test_both_loops_give_the_same_rows_and_the_manifest_names_the_loop(
        fake_internet: Any, tmp_path: Path) -> None:
    outs = {}
    for loop in ("asyncio", "uvloop"):
        outs[loop] = tmp_path / loop
        proc = subprocess.run(
            [sys.executable, "-m", "scanner", "scan", str(fake_internet.directory / "domains.txt"),
             "-o", str(outs[loop]), "--lab", str(fake_internet.directory), "--loop", loop,
             *FAST], capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        manifest = json.loads((outs[loop] / "manifest.json").read_text())
        assert manifest["config"]["event_loop"] == loop
    hosts = {loop: _rows(out, "hosts", "ip") for loop, out in outs.items()}
    assert len(hosts["uvloop"]) == pq.read_table(
        fake_internet.directory / "truth" / "hosts.parquet").num_rows
    assert hosts["uvloop"] == hosts["asyncio"]
    domains = {loop: _rows(out, "domains", "input") for loop, out in outs.items()}
    assert domains["uvloop"] == domains["asyncio"]
