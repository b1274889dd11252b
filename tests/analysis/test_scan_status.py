"""Partial data looks partial: stats, compare, report and the notebooks on an interrupted lab
scan warn (one line, with the state and the records still missing) and carry the state in
their JSON; on a finished scan they say nothing."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from scanner.analysis.scan_status import scan_status, scan_warnings
from scanner.report.build import build_report
from scanner.sink.dataset import committed_rows, read_dataset, read_manifest

FAST = ["--timeout-dns", "0.5", "--timeout-connect", "1", "--timeout-greeting", "1.5",
        "--timeout-command", "1.5", "--timeout-starttls", "1.5", "--timeout-handshake", "1.5",
        "--deadline", "4", "--no-progress"]
NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
STATS_MODES = [["--format", "table"], ["--format", "markdown"], ["--format", "json"],
               ["--format", "csv"], ["--by", "provider", "--format", "json"],
               ["--failing", "--format", "csv"]]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True,
                          text=True, timeout=120)


def _scan_args(lab: Any, out: Path) -> list[str]:
    return [sys.executable, "-m", "scanner", "scan", str(lab.directory / "domains.txt"), "-o",
            str(out), "--lab", str(lab.directory), *FAST]


@pytest.fixture(scope="module")
def finished(fake_internet: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("status") / "finished"
    proc = subprocess.run(_scan_args(fake_internet, out), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def interrupted(fake_internet: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lab scan stopped by SIGINT once 30 domains are committed (a few mail domains)."""
    out = tmp_path_factory.mktemp("status") / "interrupted"
    proc = subprocess.Popen([*_scan_args(fake_internet, out), "--batch-rows", "7",
                             "--concurrency", "8"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and committed_rows(out)[
            "domains"] < 30:
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert read_manifest(out)["state"] == "interrupted"
    assert 0 < read_dataset(out, "domains").num_rows < 204
    return out


def _missing(out: Path) -> int:
    return 204 - read_dataset(out, "domains", ["line_no"]).num_rows


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("scanner: warning:")]


@pytest.mark.parametrize("mode", STATS_MODES, ids=lambda m: "-".join(m).replace("--", ""))
def test_stats_of_an_interrupted_scan_warns_once_with_the_missing_records(
        interrupted: Path, mode: list[str]) -> None:
    proc = _run("stats", str(interrupted), *mode)
    assert proc.returncode == 0, proc.stderr
    warnings = _warnings(proc.stderr)
    assert len(warnings) == 1 and proc.stderr.strip() == warnings[0], proc.stderr
    assert "partial data: the scan is interrupted" in warnings[0]
    assert f"{204 - _missing(interrupted)} of 204 input records have a row, " \
           f"{_missing(interrupted)} still missing" in warnings[0]
    if "json" not in mode:
        assert "warning" not in proc.stdout  # stdout stays the table or CSV it was
    if mode == ["--format", "json"]:
        scan = json.loads(proc.stdout)["scan"]
        assert scan["state"] == "interrupted" and scan["input_records"] == 204
        assert scan["rows"] == 204 - _missing(interrupted)
        assert scan["missing"] == _missing(interrupted) > 0
        assert scan["warnings"] == [warnings[0].removeprefix("scanner: ")]


@pytest.mark.parametrize("mode", STATS_MODES, ids=lambda m: "-".join(m).replace("--", ""))
def test_stats_of_a_finished_scan_warns_of_nothing(finished: Path, mode: list[str]) -> None:
    proc = _run("stats", str(finished), *mode)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    if mode == ["--format", "json"]:
        scan = json.loads(proc.stdout)["scan"]
        assert (scan["state"], scan["input_records"], scan["rows"], scan["missing"],
                scan["warnings"]) == ("finished", 204, 204, 0, [])


@pytest.mark.parametrize("fmt", ["table", "json", "csv"])
def test_compare_with_an_interrupted_scan_warns_and_carries_its_state(
        finished: Path, interrupted: Path, fmt: str) -> None:
    proc = _run("compare", str(finished), str(interrupted), "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    warnings = _warnings(proc.stderr)
    assert len(warnings) == 1 and str(interrupted) in warnings[0], proc.stderr
    assert f"{_missing(interrupted)} still missing" in warnings[0]
    if fmt == "json":
        result = json.loads(proc.stdout)
        assert result["new"]["state"] == "interrupted"
        assert result["new"]["missing"] == _missing(interrupted)
        assert result["old"]["state"] == "finished" and result["old"]["warnings"] == []
    same = _run("compare", str(finished), str(finished), "--format", fmt)
    assert same.returncode == 0 and same.stderr == "", same.stderr
    vantage = _run("compare", "--vantage", str(finished), str(interrupted), "--format", fmt)
    assert vantage.returncode == 0, vantage.stderr
    assert _warnings(vantage.stderr) == warnings
    if fmt == "json":
        assert json.loads(vantage.stdout)["b"]["scan"]["state"] == "interrupted"


def test_report_of_an_interrupted_scan_shows_the_warning(
        finished: Path, interrupted: Path, tmp_path: Path) -> None:
    proc = _run("report", str(interrupted), "-o", str(tmp_path / "r.html"))
    assert proc.returncode == 0, proc.stderr
    warnings = _warnings(proc.stderr)
    assert len(warnings) == 1 and "partial data" in warnings[0], proc.stderr
    html = (tmp_path / "r.html").read_text()
    box = html[html.index('<div class="warning">'):html.index("</div>", html.index(
        '<div class="warning">'))]
    assert f"{_missing(interrupted)} still missing" in box and "interrupted" in box
    assert html.index('<div class="warning">') < html.index("<h2>")  # before any figure
    clean = _run("report", str(finished), "-o", str(tmp_path / "clean.html"))
    assert clean.returncode == 0 and clean.stderr == "", clean.stderr
    assert 'class="warning"' not in (tmp_path / "clean.html").read_text()
    both = build_report([finished, interrupted])
    assert both.count("<li data-warning=") == 1


def test_undetermined_vantage_point_is_a_warning_everywhere(finished: Path,
                                                            tmp_path: Path) -> None:
    out = tmp_path / "vantage"
    shutil.copytree(finished, out)
    manifest = read_manifest(out)
    note = "every probe of the 12 hosts failed at connect"
    manifest.update(vantage_status="undetermined", vantage_note=note)
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert scan_status(out).vantage_status == "undetermined"
    proc = _run("stats", str(out), "--format", "json")
    warnings = _warnings(proc.stderr)
    assert len(warnings) == 1 and "vantage point undetermined" in warnings[0]
    assert note in warnings[0]
    assert json.loads(proc.stdout)["scan"]["vantage_status"] == "undetermined"
    assert "vantage point undetermined" in build_report([out])
    compared = _run("compare", str(finished), str(out))
    assert len(_warnings(compared.stderr)) == 1


def test_a_manifest_older_than_input_records_says_missing_is_unknown(
        interrupted: Path, tmp_path: Path) -> None:
    out = tmp_path / "old"
    shutil.copytree(interrupted, out)
    manifest = read_manifest(out)
    del manifest["input_records"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    (warning,) = scan_warnings(out)
    assert "unknown still missing" in warning
    assert scan_status(out).missing is None


def test_a_limited_scan_says_what_was_not_scanned(fake_internet: Any, tmp_path: Path) -> None:
    out = tmp_path / "limited"
    proc = subprocess.run([*_scan_args(fake_internet, out), "--limit", "30"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (warning,) = scan_warnings(out)
    rows = read_dataset(out, "domains").num_rows
    assert f"--limit 30; {rows} of 204 input records have a row, {204 - rows} were not" \
           in warning
    # the limit that counts is the last run's
    for limit in (["--limit", "60"], []):
        proc = subprocess.run([*_scan_args(fake_internet, out), "--resume", *limit],
                              capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        if limit:
            (warning,) = scan_warnings(out)
            assert "--limit 60;" in warning
    assert scan_warnings(out) == []


@pytest.mark.parametrize("name", ["survey_statistics", "trend"])
def test_notebooks_print_the_warning(interrupted: Path, name: str,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    monkeypatch.setenv("SCANNER_RESULTS", str(interrupted))
    monkeypatch.setenv("SCANNER_RESULTS_LIST", str(interrupted))
    path = NOTEBOOKS / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    text = "".join(out.get("text", "") for cell in nb.cells for out in cell.get("outputs", []))
    assert "partial data: the scan is interrupted" in text
    assert f"{_missing(interrupted)} still missing" in text
