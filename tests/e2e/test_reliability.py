"""Reliability end to end: limits, bad input, output failures, where the scanner must never go.

Also property tests over what servers send: any bytes become a reply or a classified status,
never an internal error; the EHLO extension parser never yields junk.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from unittest import mock

import pyarrow.parquet as pq
import pytest
from aiosmtplib.protocol import SMTPProtocol
from hypothesis import example, given, settings
from hypothesis import strategies as st

from scanner.model.status import ReplyStatus
from scanner.sink.dataset import read_dataset, read_manifest
from scanner.smtp.ehlo_parse import (
    ehlo_extensions,
    has_control_bytes,
    split_reply_lines,
    starttls_masked,
    starttls_offered,
)
from scanner.smtp.status import checked_reply, reply_error_from, reply_status

FAST = ["--timeout-dns", "0.5", "--timeout-connect", "1", "--timeout-greeting", "1.5",
        "--timeout-command", "1.5", "--timeout-starttls", "1.5", "--timeout-handshake", "1.5",
        "--deadline", "4", "--no-progress"]


def _scanner(*args: str, timeout: float = 120, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True,
                          text=True, timeout=timeout, **kw)


def _connections(lab: Any) -> dict[str, int]:
    return {ip: c["connections"] for ip, c in lab.counts().items()}


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    assert proc.stderr.startswith("scanner: error: ")


# --- limits ---------------------------------------------------------------------------------

def test_concurrency_above_the_descriptor_limit_is_capped_and_the_scan_runs(
        fake_internet: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _scanner("scan", str(fake_internet.directory / "domains.txt"), "-o", str(out),
                    "--lab", str(fake_internet.directory), *FAST, "--concurrency", "100000")
    assert proc.returncode == 0, proc.stderr
    assert "--concurrency 100000 exceeds" in proc.stderr and "capped at" in proc.stderr
    capped = read_manifest(out)["config"]["limits"]["max_in_flight"]
    import resource

    assert capped < resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    assert read_dataset(out, "domains").num_rows == 204  # every line, no EMFILE on the way
    hosts = read_dataset(out, "hosts", ["outcome", "error_detail"]).to_pylist()
    assert not [h for h in hosts if "Too many open files" in (h["error_detail"] or "")]


def test_output_file_size_limit_mid_scan_is_a_clear_error_and_resume_completes(
        fake_internet: Any, tmp_path: Path) -> None:
    """A file-size limit (EFBIG at the first big part file) stands in for a full disk."""
    out = tmp_path / "out"
    args = ("scan", str(fake_internet.directory / "domains.txt"), "-o", str(out), "--lab",
            str(fake_internet.directory), *FAST)

    def small_files() -> None:
        import resource

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead
        resource.setrlimit(resource.RLIMIT_FSIZE, (8 * 1024, 8 * 1024))

    proc = _scanner(*args, preexec_fn=small_files)
    _one_line_error(proc)
    assert "File too large" in proc.stderr, proc.stderr
    # what was committed is readable; nothing half-written is listed
    for part in out.glob("*/part-*.parquet"):
        pq.read_metadata(part)
    assert read_manifest(out)["state"] != "finished"
    final = _scanner(*args, "--resume")
    assert final.returncode == 0, final.stderr
    assert read_dataset(out, "domains").num_rows == 204


def test_sigkill_at_random_moments_never_leaves_an_unreadable_part(
        fake_internet: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    args = ["scan", str(fake_internet.directory / "domains.txt"), "-o", str(out), "--lab",
            str(fake_internet.directory), *FAST, "--batch-rows", "1", "--concurrency", "16"]
    rng = random.Random(6)
    for _attempt in range(3):
        # a kill before the manifest was written leaves no scan to resume: start it again
        resume = ["--resume"] if (out / "manifest.json").exists() else []
        proc = subprocess.Popen([sys.executable, "-m", "scanner", *args, *resume],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(rng.uniform(0.7, 1.3))  # with one-row batches, mostly inside a flush
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        for part in out.glob("*/part-*.parquet"):
            pq.read_metadata(part)
        for line in (out / "_commits.jsonl").read_text().splitlines()[:-1]:
            json.loads(line)  # only the last line may be cut short
    final = _scanner(*args, "--resume")
    assert final.returncode == 0, final.stderr
    lines = read_dataset(out, "domains", ["line_no"]).column("line_no").to_pylist()
    assert len(lines) == len(set(lines)) == 204


def test_sigint_stops_flushes_and_says_how_to_resume(fake_internet: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "scanner", "scan", str(fake_internet.directory / "domains.txt"),
         "-o", str(out), "--lab", str(fake_internet.directory), *FAST, "--batch-rows", "7",
         "--concurrency", "8"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None and not any(
            out.glob("domains/part-*.parquet")):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr
    assert read_manifest(out)["state"] == "interrupted"
    assert 0 < read_dataset(out, "domains").num_rows < 204


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "content", "fragment"), [
    ("empty.txt", b"", "is empty"),
    ("binary.bin", bytes(range(256)) * 4, "NUL byte"),
    ("latin1.txt", b"caf\xe9.example\n", "not UTF-8"),
    ("adir", None, "is a directory"),
], ids=["empty", "binary", "not-utf8", "directory"])
def test_bad_input_file_is_a_one_line_error_from_the_cli(
        tmp_path: Path, name: str, content: bytes | None, fragment: str) -> None:
    path = tmp_path / name
    if content is None:
        path.mkdir()
    else:
        path.write_bytes(content)
    proc = _scanner("scan", str(path), "-o", str(tmp_path / "out"), "--resolver",
                    "127.0.0.1:9", "--no-progress")
    _one_line_error(proc)
    assert fragment in proc.stderr and name in proc.stderr
    assert not (tmp_path / "out" / "domains").exists()


# --- never where it must not go ---------------------------------------------------------------

def test_exclusions_are_never_contacted_and_recorded_as_excluded(
        fake_internet: Any, tmp_path: Path) -> None:
    excluded_ip = fake_internet.address_of("no_starttls")
    excluded_domain = "only-valid.test"
    exclude = tmp_path / "exclude.txt"
    exclude.write_text(f"# opted out\n{excluded_domain}\n{excluded_ip}/32\n")
    before = _connections(fake_internet)
    out = tmp_path / "out"
    proc = _scanner("scan", str(fake_internet.directory / "domains.txt"), "-o", str(out),
                    "--lab", str(fake_internet.directory), *FAST, "--exclude", str(exclude))
    assert proc.returncode == 0, proc.stderr
    after = fake_internet.counts()
    assert after[excluded_ip]["connections"] == before[excluded_ip]
    assert sum(c["connections"] for c in after.values()) > sum(before.values())
    assert all(c["forbidden_commands"] == 0 for c in after.values())
    hosts = {r["ip"]: r for r in read_dataset(out, "hosts").to_pylist()}
    assert hosts[excluded_ip]["outcome"] == "excluded"
    assert hosts[excluded_ip]["connect_status"] == "excluded"
    domains = {r["domain"]: r for r in read_dataset(out, "domains").to_pylist()}
    assert domains[excluded_domain]["starttls_class"] == "excluded"


def test_private_mx_addresses_are_not_probed_outside_lab_mode(
        fake_internet: Any, tmp_path: Path) -> None:
    before = _connections(fake_internet)
    out = tmp_path / "out"
    proc = _scanner("scan", str(fake_internet.directory / "domains.txt"), "-o", str(out),
                    "--resolver", fake_internet.resolver, "--port", str(fake_internet.smtp_port),
                    "--trust-anchor", str(fake_internet.ca_pem), *FAST)
    assert proc.returncode == 0, proc.stderr
    assert _connections(fake_internet) == before  # not one connection, to any lab host
    statuses = read_dataset(out, "hosts", ["connect_status"]).column("connect_status")
    assert len(statuses) > 30 and set(statuses.to_pylist()) == {"private_address"}


def test_server_strings_are_escaped_in_terminal_output(fake_internet: Any) -> None:
    proc = _scanner("check", "only-nul-bytes.test", "--lab", str(fake_internet.directory))
    assert proc.returncode == 0, proc.stderr
    assert "nul-bytes" in proc.stdout
    assert not has_control_bytes(proc.stdout.replace("\r", "")), repr(proc.stdout[-300:])


# --- what servers send: properties -----------------------------------------------------------

_REPLY_BYTES = st.lists(st.one_of(
    st.binary(max_size=300),
    st.builds(lambda code, sep, text: f"{code}{sep}{text}\r\n".encode(errors="surrogatepass"),
              st.integers(0, 999), st.sampled_from([" ", "-", "", "x"]),
              st.text(max_size=80))), max_size=12)


async def _read_reply(chunks: list[bytes]) -> Any:
    loop = asyncio.get_running_loop()
    protocol = SMTPProtocol(loop=loop)
    transport = mock.Mock(spec=asyncio.Transport)
    transport.is_closing.return_value = False
    protocol.connection_made(transport)
    for chunk in chunks:
        protocol.data_received(chunk)
    protocol.eof_received()
    return await protocol.read_response(timeout=0.05)


@settings(max_examples=150, deadline=None)
@given(_REPLY_BYTES)
@example([b"-", b"1\n"])  # aiosmtplib reads "-1" as the code -1
def test_any_server_bytes_become_a_reply_or_a_classified_status(chunks: list[bytes]) -> None:
    try:
        reply = checked_reply(asyncio.run(_read_reply(chunks)))  # as the prober reads it
    except Exception as exc:  # what the prober would classify
        status = reply_error_from(exc).status
        assert status is not ReplyStatus.INTERNAL_ERROR, repr(exc)
        return
    assert 0 <= reply.code <= 999
    assert reply_status(reply.code) is not ReplyStatus.INTERNAL_ERROR
    lines = split_reply_lines(reply.message)
    assert "\n".join(lines) == reply.message


@given(st.integers())
def test_reply_codes_map_to_their_class(code: int) -> None:
    status = reply_status(code)
    if 200 <= code < 400:
        assert status is ReplyStatus.OK
    elif 400 <= code < 500:
        assert status in (ReplyStatus.REJECTED_421, ReplyStatus.REJECTED_4XX)
    elif 500 <= code < 600:
        assert status in (ReplyStatus.REJECTED_554, ReplyStatus.REJECTED_5XX)
    else:
        assert status is ReplyStatus.PROTOCOL_ERROR


@given(st.lists(st.text(max_size=40), max_size=15))
def test_ehlo_extensions_are_clean_unique_keywords(lines: list[str]) -> None:
    found = ehlo_extensions(tuple(lines))
    assert len(found) == len(set(found))
    firsts = {ln.strip().split(" ", 1)[0].split("=", 1)[0].upper() for ln in lines}
    for word in found:
        assert word and word == word.upper() and word.isprintable() and " " not in word
        assert word in firsts
    assert starttls_offered(found) == ("STARTTLS" in found)
    assert not (starttls_offered(found) and starttls_masked(found))


@given(st.lists(st.text(max_size=40), max_size=15), st.integers(0, 15),
       st.sampled_from(["STARTTLS", "starttls", " StartTLS  ", "STARTTLS extra"]))
def test_starttls_is_found_wherever_it_is_listed(lines: list[str], at: int, line: str) -> None:
    lines.insert(min(at, len(lines)), line)
    assert starttls_offered(ehlo_extensions(tuple(lines)))
