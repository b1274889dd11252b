"""Resuming: SIGKILL a lab scan at several points, resume each time, get the same dataset; a
resume with other inputs or other result settings is refused; counts cover the whole scan."""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from scanner.commands.cli import build_parser
from scanner.config import ScanConfig
from scanner.scan.resume_check import RESULT_SETTINGS, RUN_FIELDS, SPEED_SETTINGS
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
    assert "scanned 204 domains (0 in this run, 204 before)" in proc.stdout
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



# --- a resumed scan is the same scan, or is refused ------------------------------------------

def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True,
                          text=True, timeout=120)


def _one_line_refusal(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("scanner: error: --resume"), proc.stderr
    return lines[0]


class Partial:
    """A scan of two small lists stopped by --limit after 12 domains, and its inputs (the
    fourth line of the first has a typo)."""

    def __init__(self, lab: Any, base: Path) -> None:
        self.lab = lab
        lines = (lab.directory / "domains.txt").read_text().splitlines()
        assert lines[3].endswith(".test")
        lines[3] = lines[3].removesuffix(".test") + ".tset"  # a typo, fixed in a test below
        self.first, self.second, self.third = (base / "first.txt", base / "second.txt",
                                               base / "third.txt")
        self.first.write_text("".join(f"{x}\n" for x in lines[:20]))
        self.second.write_text("".join(f"{x}\n" for x in lines[20:40]))
        self.third.write_text("".join(f"{x}\n" for x in lines[40:60]))
        self.exclude = base / "exclude.txt"
        self.exclude.write_text(f"{lines[30]}\n")
        self.out = base / "scan"
        proc = _run(*self.args(self.out, self.first, self.second), "--limit", "12")
        assert proc.returncode == 0, proc.stderr
        self.commits = _commits(self.out)

    def args(self, out: Path, *inputs: Path, exclude: Path | None = None) -> list[str]:
        return ["scan", *map(str, inputs), "-o", str(out), "--lab", str(self.lab.directory),
                *FAST, "--exclude", str(exclude or self.exclude)]

    def copy(self, tmp_path: Path) -> Path:
        """A copy of the partial scan to resume (the fixture's own stays as it is)."""
        out = tmp_path / "scan"
        shutil.copytree(self.out, out)
        return out


@pytest.fixture(scope="module")
def partial(fake_internet: Any, tmp_path_factory: pytest.TempPathFactory) -> Partial:
    return Partial(fake_internet, tmp_path_factory.mktemp("partial"))


def _edited(partial: Partial, tmp_path: Path, edit: str) -> Path:
    lines = partial.first.read_text().splitlines()
    if edit == "typo_fixed":
        lines[3] = lines[3].removesuffix(".tset") + ".test"
    else:
        lines[2], lines[15] = lines[15], lines[2]
    path = tmp_path / "first.txt"
    path.write_text("".join(f"{x}\n" for x in lines))
    return path


@pytest.mark.parametrize("edit", ["typo_fixed", "reordered"])
def test_resume_with_an_edited_input_is_refused(partial: Partial, tmp_path: Path,
                                                edit: str) -> None:
    out = partial.copy(tmp_path)
    before = read_manifest(out)
    edited = _edited(partial, tmp_path, edit)
    line = _one_line_refusal(_run(*partial.args(out, edited, partial.second), "--resume"))
    assert "input 1 differs" in line and str(edited) in line and str(partial.first) in line
    assert _commits(out) == partial.commits and read_manifest(out) == before  # untouched


def test_resume_with_another_file_fewer_files_or_another_order_is_refused(
        partial: Partial, tmp_path: Path) -> None:
    out = partial.copy(tmp_path)
    line = _one_line_refusal(_run(*partial.args(out, partial.first, partial.third),
                                  "--resume"))
    assert "input 2 differs" in line and "third.txt" in line and "second.txt" in line
    line = _one_line_refusal(_run(*partial.args(out, partial.first), "--resume"))
    assert "2 input file(s)" in line and "now 1" in line
    line = _one_line_refusal(_run(*partial.args(out, partial.second, partial.first),
                                  "--resume"))
    assert "another order" in line and "input 1 is" in line and "second.txt" in line
    assert _commits(out) == partial.commits


def test_resume_with_a_gzip_of_the_same_content_continues_the_scan(
        partial: Partial, tmp_path: Path) -> None:
    out = partial.copy(tmp_path)
    packed = tmp_path / "first.txt.gz"
    # the same lines with CRLF endings and a BOM: the reader sees the same lines
    packed.write_bytes(gzip.compress(b"\xef\xbb\xbf" + partial.first.read_bytes()
                                     .replace(b"\n", b"\r\n")))
    proc = _run(*partial.args(out, packed, partial.second), "--resume")
    assert proc.returncode == 0, proc.stderr
    lines = read_dataset(out, "domains", ["line_no"]).column("line_no").to_pylist()
    assert sorted(lines) == list(range(1, 41))
    manifest = read_manifest(out)
    assert manifest["inputs"][0]["path"] == str(partial.first)  # the scan's own inputs stay
    assert manifest["runs"][-1]["inputs"][0]["format"] == "text+gzip"
    assert manifest["runs"][-1]["inputs"][0]["sha256"] == manifest["inputs"][0]["sha256"]


@pytest.mark.parametrize(("flag", "value", "recorded"), [
    ("--timeout-connect", "2", 2.0),
    ("--ehlo-name", "survey.example", "survey.example"),
    ("--exclude", None, None),
])
def test_resume_with_a_changed_result_setting_is_refused_unless_overridden(
        partial: Partial, tmp_path: Path, flag: str, value: str | None,
        recorded: Any) -> None:
    out = partial.copy(tmp_path)
    exclude = None
    extra: list[str] = []
    if flag == "--exclude":
        # the same file name and the same number of entries, another entry
        exclude = tmp_path / "exclude.txt"
        exclude.write_text(partial.second.read_text().splitlines()[5] + "\n")
    else:
        extra = [flag, str(value)]
    args = [*partial.args(out, partial.first, partial.second, exclude=exclude), *extra]
    line = _one_line_refusal(_run(*args, "--resume"))
    assert "differ from the scan's" in line and flag in line and "--override-config" in line
    assert _commits(out) == partial.commits
    proc = _run(*args, "--resume", "--override-config")
    assert proc.returncode == 0, proc.stderr
    # the user is told, once, what was overridden
    told = [x for x in proc.stderr.splitlines() if x.startswith("scanner: warning: resuming")]
    assert len(told) == 1 and flag in told[0], proc.stderr
    run = read_manifest(out)["runs"][-1]
    assert run["override_config"] is True and set(run["overridden"]) == {flag}
    change = run["overridden"][flag]
    if recorded is not None:
        assert change["new"] == recorded
    assert change["old"] != change["new"]
    # the overridden value is the scan's from now on: resuming with it again is no change
    proc = _run(*args, "--resume")
    assert proc.returncode == 0, proc.stderr


def test_resume_with_another_concurrency_continues_and_records_it(
        partial: Partial, tmp_path: Path) -> None:
    out = partial.copy(tmp_path)
    proc = _run(*partial.args(out, partial.first, partial.second), "--resume",
                "--concurrency", "3", "--per-provider", "2", "--dns-concurrency", "17")
    assert proc.returncode == 0, proc.stderr
    manifest = read_manifest(out)
    assert manifest["state"] == "finished"
    assert manifest["runs"][-1]["config_changes"]["limits"]["max_in_flight"] == 3
    assert "overridden" not in manifest["runs"][-1]
    assert read_dataset(out, "domains").num_rows == manifest["input_records"] == 40


def test_resume_of_a_directory_without_a_scan_is_an_error(fake_internet: Any,
                                                          tmp_path: Path) -> None:
    for out in (tmp_path / "empty", tmp_path / "missing"):
        if out.name == "empty":
            out.mkdir()
        line = _one_line_refusal(_run("scan", str(fake_internet.directory / "domains.txt"),
                                      "-o", str(out), "--lab", str(fake_internet.directory),
                                      *FAST, "--resume"))
        assert "holds no scan to resume" in line
        assert not (out / "manifest.json").exists() and not (out / "domains").exists()


def test_resume_of_a_scan_older_than_fingerprints_warns_and_records_them(
        partial: Partial, tmp_path: Path) -> None:
    out = partial.copy(tmp_path)
    manifest = read_manifest(out)
    del manifest["inputs"], manifest["input_records"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    proc = _run(*partial.args(out, partial.first, partial.second), "--resume")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.count("the input could not be checked") == 1, proc.stderr
    manifest = read_manifest(out)
    assert manifest["runs"][-1]["inputs_checked"] is False
    assert manifest["input_records"] == 40 and len(manifest["inputs"]) == 2


def test_a_new_scan_records_its_inputs_fingerprints(partial: Partial) -> None:
    manifest = read_manifest(partial.out)
    assert [set(i) for i in manifest["inputs"]] == [
        {"path", "format", "sha256", "lines", "records"}] * 2
    assert [i["path"] for i in manifest["inputs"]] == [str(partial.first), str(partial.second)]
    assert manifest["inputs"][0]["sha256"] == hashlib.sha256(partial.first.read_bytes()
                                                             ).hexdigest()
    assert manifest["input_records"] == 40
    assert manifest["runs"][0]["certifi_version"] and manifest["runs"][0]["scanner_version"]


def test_override_config_without_resume_is_an_error(partial: Partial, tmp_path: Path) -> None:
    proc = _run(*partial.args(tmp_path / "new", partial.first), "--override-config")
    assert proc.returncode == 2 and "--override-config" in proc.stderr


# --- counts after a resume cover the whole scan ------------------------------------------------

def _dataset_counts(out: Path) -> dict[str, Any]:
    domains = read_dataset(out, "domains", ["starttls_class"]).column("starttls_class")
    hosts = read_dataset(out, "hosts", ["outcome"]).column("outcome")
    return {"domains": len(domains), "probes": len(hosts),
            "certificates": read_dataset(out, "certificates", ["sha256"]).num_rows,
            "starttls_class": dict(Counter(domains.to_pylist())),
            "outcome": dict(Counter(hosts.to_pylist()))}


def test_counts_after_resumes_cover_the_whole_scan(fake_internet: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = subprocess.run(_scan_cmd(fake_internet, out, "--limit", "40"), capture_output=True,
                           text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    # the second run dies by SIGKILL: its manifest entry never gets counts
    proc = subprocess.Popen(_scan_cmd(fake_internet, out, "--resume"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    target, deadline = _commits(out) + 3, time.monotonic() + 60
    while proc.poll() is None and _commits(out) < target and time.monotonic() < deadline:
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    killed_at = _dataset_counts(out)
    assert 40 < killed_at["domains"] < 204, "the scan finished before it could be killed"
    final = subprocess.run(_scan_cmd(fake_internet, out, "--resume"), capture_output=True,
                           text=True, timeout=120)
    assert final.returncode == 0, final.stderr
    manifest = read_manifest(out)
    whole = _dataset_counts(out)
    assert whole["domains"] == 204
    counts = manifest["counts"]
    assert {k: counts[k] for k in whole} == whole
    # the last run's entry keeps its own counts: what it added
    last = manifest["runs"][-1]["counts"]
    assert last["domains"] == 204 - killed_at["domains"]
    assert last["probes"] == whole["probes"] - killed_at["probes"]
    assert last["certificates"] == whole["certificates"] - killed_at["certificates"]
    assert sum(last["starttls_class"].values()) == last["domains"]
    # the final summary speaks of the whole scan too
    assert (f"scanned 204 domains ({last['domains']} in this run, {killed_at['domains']} "
            f"before), {whole['probes']} mail server addresses probed") in final.stdout


def _config_paths(cls: type, prefix: str = "") -> set[str]:
    """Every leaf field of ScanConfig by its path in to_json() (Exclusions is one setting)."""
    paths: set[str] = set()
    for f in dataclasses.fields(cls):
        path = prefix + f.name
        if f.name in ("timeouts", "limits", "identity", "trust"):
            paths |= _config_paths(type(getattr(ScanConfig(output=Path("x")), f.name)),
                                   path + ".")
        else:
            paths.add(path)
    return paths


def test_every_config_field_is_classified_once() -> None:
    classes = [set(RESULT_SETTINGS), set(SPEED_SETTINGS), set(RUN_FIELDS)]
    assert _config_paths(ScanConfig) == set.union(*classes)
    assert sum(map(len, classes)) == len(set.union(*classes))
    # the names a refusal lists are the flags the user typed
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    flags = set(sub.choices["scan"]._option_string_actions)
    for name in [*RESULT_SETTINGS.values(), *SPEED_SETTINGS.values()]:
        assert name in flags or "(" in name, name
