"""Start-up cost: what merely starting the scanner spends before the first query."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

_CHILD = """
import json, os, sys
import scanner.commands.cli, scanner.commands.scan, numpy
progress = scanner.commands.scan.TqdmProgress(10, enabled=False)
tasks = os.listdir("/proc/self/task")
names = [open(f"/proc/self/task/{t}/comm").read().strip() for t in tasks]
print(json.dumps({"threads": names, "tqdm": "tqdm" in sys.modules,
                  "dnspython": "dns" in sys.modules}))
"""


@pytest.fixture(scope="module")
def started() -> dict[str, object]:
    """What a fresh interpreter holds once the scan path is imported (no BLAS settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENBLAS", "OMP_"))}
    out = subprocess.run([sys.executable, "-c", _CHILD], capture_output=True, text=True,
                         env=env, check=True, timeout=60)
    result: dict[str, object] = json.loads(out.stdout)
    return result


def test_importing_the_scanner_starts_no_spinning_worker_threads(
        started: dict[str, object]) -> None:
    # numpy's OpenBLAS would start a worker per extra core, spinning while numpy loads
    # (0.1-0.2 s of CPU per start); pyarrow's jemalloc purger is the only helper allowed.
    threads = started["threads"]
    assert isinstance(threads, list)
    assert len([t for t in threads if t != "jemalloc_bg_thd"]) == 1, threads  # the main one


def test_no_progress_display_does_not_import_tqdm(started: dict[str, object]) -> None:
    assert started["tqdm"] is False


def test_the_scan_path_loads_dnspython_only_for_the_policy_stage(
        started: dict[str, object]) -> None:
    # a --no-policies scan never needs it (the pipeline imports the policy checker when the
    # stage runs)
    assert started["dnspython"] is False
