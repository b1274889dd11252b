"""The command line: scan against the lab, one-line errors, stats formats, the demo list."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_pipeline import differences, keyed_domains

from scanner.cli import capped_concurrency, main, read_exclusions
from scanner.lab.profiles import generate
from scanner.sink.schema import TRUTH_DOMAIN_COLUMNS
from scanner.stats import survey_stats
from scanner.stats_policy import policy_stats

FAST = ["--timeout-dns", "0.5", "--timeout-connect", "1", "--timeout-greeting", "1.5",
        "--timeout-command", "1.5", "--timeout-starttls", "1.5", "--timeout-handshake", "1.5",
        "--deadline", "4", "--no-progress"]


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True,
                          text=True, timeout=timeout)


@pytest.fixture(scope="module")
def cli_scan(fake_internet: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "out"
    proc = _run("scan", str(fake_internet.directory / "domains.txt"), "-o", str(out),
                "--lab", str(fake_internet.directory), *FAST)
    assert proc.returncode == 0, proc.stderr
    assert "scanned 204 domains" in proc.stdout
    return out


def test_scan_command_writes_dataset_and_stats_agree(cli_scan: Path) -> None:
    proc = _run("stats", str(cli_scan), "--format", "json")
    assert proc.returncode == 0, proc.stderr
    expected = {**survey_stats(cli_scan), "policies": policy_stats(cli_scan)}
    assert json.loads(proc.stdout) == json.loads(json.dumps(expected))


@pytest.mark.parametrize("fmt", ["table", "markdown", "csv"])
def test_stats_formats_carry_the_same_numbers(cli_scan: Path, fmt: str) -> None:
    stats = survey_stats(cli_scan)
    proc = _run("stats", str(cli_scan), "--format", fmt)
    assert proc.returncode == 0, proc.stderr
    none_share = stats["domains"]["starttls"].get("none", 0)
    assert str(none_share) in proc.stdout
    if fmt == "csv":
        rows = list(csv.DictReader(io.StringIO(proc.stdout)))
        row = next(r for r in rows if r["table"] == "mail_domains.starttls_class"
                   and r["key"] == "none")
        assert int(row["count"]) == none_share
        assert int(row["denominator"]) == stats["domains"]["mail_domains"]


_ENTRY = """
import atexit, os, sys
class Teardown:
    def __del__(self, write=os.write):
        write(1, b"torn down\\n")
keep = Teardown()
atexit.register(print, "atexit ran")
from scanner.cli import entry
entry(sys.argv[1:])
"""


def test_a_scan_process_ends_without_interpreter_teardown(fake_internet: Any, tmp_path: Path
                                                         ) -> None:
    domains = tmp_path / "d.txt"
    domains.write_text((fake_internet.directory / "domains.txt").read_text().split()[0] + "\n")
    scan = [sys.executable, "-c", _ENTRY, "scan", str(domains), "-o", str(tmp_path / "out"),
            "--lab", str(fake_internet.directory), *FAST]
    proc = subprocess.run(scan, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # the summary (buffered: stdout is a pipe) and the atexit functions, but no module teardown
    assert "scanned 1 domains" in proc.stdout and "atexit ran" in proc.stdout
    assert "torn down" not in proc.stdout
    assert (tmp_path / "out" / "manifest.json").exists()
    again = subprocess.run(scan, capture_output=True, text=True, timeout=120)
    assert again.returncode == 2 and "exists" in again.stderr  # the scan's exit code survives
    stats = subprocess.run([sys.executable, "-c", _ENTRY, "stats", str(tmp_path / "out")],
                           capture_output=True, text=True, timeout=120)
    assert stats.returncode == 0 and "torn down" in stats.stdout  # other commands tear down


def test_missing_input_is_one_line_error(tmp_path: Path) -> None:
    proc = _run("scan", str(tmp_path / "nope.txt"), "-o", str(tmp_path / "out"),
                "--resolver", "127.0.0.1:9", "--no-progress")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "nope.txt" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unwritable_output_is_one_line_error(fake_internet: Any, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    proc = _run("scan", str(fake_internet.directory / "domains.txt"), "-o",
                str(blocker / "out"), "--lab", str(fake_internet.directory), *FAST)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0


def test_unreachable_resolver_is_one_line_error(fake_internet: Any, tmp_path: Path) -> None:
    proc = _run("scan", str(fake_internet.directory / "domains.txt"), "-o",
                str(tmp_path / "out"), "--resolver", "127.0.0.1:9", "--timeout-dns", "0.3",
                "--no-progress")
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "127.0.0.1:9" in proc.stderr
    assert not (tmp_path / "out" / "domains").exists() or not any(
        (tmp_path / "out" / "domains").glob("*.parquet"))


def test_existing_output_without_resume_is_refused(cli_scan: Path, fake_internet: Any) -> None:
    proc = _run("scan", str(fake_internet.directory / "domains.txt"), "-o", str(cli_scan),
                "--lab", str(fake_internet.directory), *FAST)
    assert proc.returncode == 2
    assert "--resume" in proc.stderr and "Traceback" not in proc.stderr


def test_concurrency_is_capped_by_descriptor_limit() -> None:
    import resource

    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    capped, notice = capped_concurrency(soft * 2, 200)
    assert capped < soft and notice and "capped" in notice
    assert capped_concurrency(10, 200) == (10, None)


def test_exclusion_file_parses_domains_and_networks(tmp_path: Path) -> None:
    path = tmp_path / "exclude.txt"
    path.write_text("# opted out\nExample.TEST.\n127.5.0.0/16  # a network\n::1/128\n\n")
    ex = read_exclusions(path)
    assert ex.domains == {"example.test"}
    assert ex.excludes_domain("mx.example.test") and not ex.excludes_domain("example2.test")
    assert ex.excludes_address("127.5.3.4") and not ex.excludes_address("127.6.0.1")
    assert ex.excludes_address("::1")


def test_bad_exclusion_line_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]
                                         ) -> None:
    path = tmp_path / "exclude.txt"
    path.write_text("not a domain\n")
    inp = tmp_path / "in.txt"
    inp.write_text("a.test\n")
    code = main(["scan", str(inp), "-o", str(tmp_path / "o"), "--exclude", str(path)])
    assert code == 2
    assert "exclude.txt:1" in capsys.readouterr().err


def test_bundled_demo_list_is_the_lab_population() -> None:
    bundled = Path(__file__).resolve().parent.parent / "survey_inputs" / "demo-domains.txt"
    lines = generate("mixed", 200, 1).input_lines()
    assert bundled.read_text(encoding="utf-8").splitlines() == list(lines)


def test_demo_equals_the_lab_truth(tmp_path: Path, fake_internet: Any,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    # `make demo` starts its own lab of the same profile, size and seed as fake_internet's
    from scanner.demo import run_demo

    assert run_demo(tmp_path / "demo") == 0
    assert "domains.starttls_class" in capsys.readouterr().out
    scan = keyed_domains(tmp_path / "demo")
    fetched = [s for s in scan.column("mta_sts_fetch_status").to_pylist() if s == "ok"]
    assert fetched, "the demo fetched no MTA-STS policy"
    diff = differences(scan, fake_internet.truth_domains(), "domain", TRUTH_DOMAIN_COLUMNS)
    assert not diff, "\n".join(diff[:40])


def test_progress_bars_count_domains_and_probes(fake_internet: Any, tmp_path: Path) -> None:
    domains = tmp_path / "some.txt"
    lines = (fake_internet.directory / "domains.txt").read_text().splitlines()[:12]
    domains.write_text("\n".join(lines) + "\n")
    flags = [f for f in FAST if f != "--no-progress"]
    proc = _run("scan", str(domains), "-o", str(tmp_path / "out"), "--lab",
                str(fake_internet.directory), *flags)
    assert proc.returncode == 0, proc.stderr
    assert "12/12" in proc.stderr and "dom" in proc.stderr  # the domains bar, to its total
    assert "probes" in proc.stderr and "host" in proc.stderr
