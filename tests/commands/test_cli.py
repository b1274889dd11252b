"""The command line: scan against the lab, one-line errors, stats formats, the demo list."""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import re
import shlex
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers.truth import differences, keyed_domains

import scanner
from scanner.analysis.policy import policy_stats
from scanner.analysis.stats import survey_stats
from scanner.commands.cli import build_parser, main
from scanner.commands.options import capped_concurrency, read_exclusions
from scanner.config import FLAGS
from scanner.lab.population.profiles import generate
from scanner.sink.schema import TRUTH_DOMAIN_COLUMNS

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
from scanner.commands.cli import entry
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
    bundled = Path(__file__).resolve().parents[2] / "survey_inputs" / "demo-domains.txt"
    lines = generate("mixed", 200, 1).input_lines()
    assert bundled.read_text(encoding="utf-8").splitlines() == list(lines)


def test_demo_equals_the_lab_truth(demo_run: tuple[Path, str], fake_internet: Any) -> None:
    # `make demo` starts its own lab of the same profile, size and seed as fake_internet's
    out, printed = demo_run
    assert "domains.starttls_class" in printed
    scan = keyed_domains(out)
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


# -- help: user documentation ------------------------------------------------------------------

def _parsers(parser: argparse.ArgumentParser, name: str = "scanner"
             ) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every parser of the command line, subcommands found by walking, not by a list."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _stated(default: Any) -> str | None:
    """How a help text writes a default, or None where there is no value to state."""
    if default is None or default is False or default == [] or default is argparse.SUPPRESS:
        return None
    return f"{default:g}" if isinstance(default, float) else str(default)


def test_every_option_of_every_command_has_help_with_its_default() -> None:
    problems = []
    parsers = dict(_parsers(build_parser()))
    assert {"scanner scan", "scanner check", "scanner demo", "scanner lab serve"} <= set(parsers)
    for name, parser in parsers.items():
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._VersionAction):
                continue
            label = f"{name} {'/'.join(action.option_strings) or action.dest}"
            if action.help is argparse.SUPPRESS and action.option_strings:
                continue  # hidden on purpose (--batch-rows)
            if isinstance(action, argparse._SubParsersAction):
                hidden = [c.dest for c in action._choices_actions if c.help is argparse.SUPPRESS]
                problems += [f"{name} {h}: hidden subcommand" for h in hidden]
                continue
            text = formatter._expand_help(action) if action.help else ""
            if not text.strip():
                problems.append(f"{label}: no help")
                continue
            stated = _stated(action.default)
            if action.option_strings and action.nargs != 0 and not action.required and stated \
                    and not re.search(rf"default:? {re.escape(stated)}(?![\w.])", text):
                problems.append(f"{label}: help does not state its default {stated}: {text!r}")
        rendered = parser.format_help()
        if "==SUPPRESS==" in rendered:
            problems.append(f"{name} --help shows ==SUPPRESS==")
    assert not problems, "\n".join(problems)


def test_help_describes_the_tool_with_exit_codes_and_version(
        capsys: pytest.CaptureFixture[str]) -> None:
    docstrings = {m.__doc__.strip() for n, m in sys.modules.items()
                  if n.startswith("scanner") and m.__doc__}
    for name, parser in _parsers(build_parser()):
        assert parser.description, f"{name} has no description"
        assert parser.description.strip() not in docstrings, f"{name}: a developer docstring"
    top = build_parser().format_help()
    for code, meaning in (("0", "finished"), ("2", "one-line error"),
                          ("3", "vantage point looks broken"), ("130", "interrupted")):
        assert re.search(rf"^  {code} +.*{meaning}", top, re.M), code
    scan = dict(_parsers(build_parser()))["scanner scan"]
    assert "exit codes" in scan.format_help() and "130" in scan.format_help()
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out.strip() == f"scanner {scanner.__version__}"


# -- errors name the flag the user typed -------------------------------------------------------

_BAD_VALUES = {"--port": "70000", "--limit": "0", "--source-address": "not-an-ip",
               "--deep-spacing": "-1", "--timeout-dns": "0", "--timeout-connect": "-1",
               "--timeout-greeting": "0", "--timeout-command": "nan", "--timeout-starttls": "0",
               "--timeout-handshake": "-2", "--deadline": "0", "--concurrency": "0",
               "--per-address": "0", "--per-provider": "-5", "--dns-concurrency": "0",
               "--batch-rows": "0", "--ehlo-name": "two words", "--reference-host": "mx.test:0"}


def test_every_mapped_flag_is_a_scan_option() -> None:
    scan = dict(_parsers(build_parser()))["scanner scan"]
    options = {s for a in scan._actions for s in a.option_strings}
    assert set(FLAGS.values()) - {"--loop"} <= set(_BAD_VALUES) and set(FLAGS.values()) <= options


@pytest.mark.parametrize("flag", sorted(_BAD_VALUES))
def test_config_error_names_the_flag(flag: str, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    inp = tmp_path / "in.txt"
    inp.write_text("a.test\n")
    code = main(["scan", str(inp), "-o", str(tmp_path / "o"), "--resolver", "127.0.0.1:9",
                 flag, _BAD_VALUES[flag]])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and err.startswith("scanner: error: "), err
    assert flag in err, err
    field = next(path for path, f in FLAGS.items() if f == flag).rpartition(".")[2]
    assert not re.search(rf"(?<![\w-]){field}(?![\w-])", err), err  # not `max_in_flight`
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize(("args", "says"), [
    (["--top", "5"], "--top needs --by"),
    (["--by", "provider", "--top", "0"], "--top must be at least 1"),
    (["--by", "tld", "--top", "-3"], "--top must be at least 1"),
    (["--failing", "--format", "table"], "--failing writes CSV"),
    (["--failing", "strict", "--format", "markdown"], "--failing writes CSV"),
    (["--failing", "--by", "tld", "--top", "3"], "--top applies to the --by tables"),
])
def test_stats_options_it_would_ignore_are_errors(cli_scan: Path, args: list[str], says: str,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(cli_scan), *args]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and says in captured.err


@pytest.mark.parametrize("args", [["--failing", "--format", "csv"], ["--failing"],
                                  ["--failing", "--format", "json"], ["--by", "mx", "--top", "1"]])
def test_stats_options_that_go_together_still_work(cli_scan: Path, args: list[str],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(cli_scan), *args]) == 0
    out = capsys.readouterr().out
    if "json" in args:
        assert isinstance(json.loads(out), list)
    elif "--failing" in args:
        assert out.startswith("provider,group_failing,domain,")
    else:
        assert len(out.strip().splitlines()) == 2  # the header and the one biggest group


# -- the demo's output --------------------------------------------------------------------------

@pytest.fixture(scope="module")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """`make demo`'s command, once: its results directory and what it printed."""
    from scanner.commands.demo import run_demo

    out = tmp_path_factory.mktemp("demo") / "demo"
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert run_demo(out) == 0
    return out, printed.getvalue()


def _tables(printed: str) -> dict[str, list[str]]:
    """The demo's tables by heading: after the scan's summary, before the closing advice."""
    body = printed.split("\n\n", 1)[1].split("\nnext, ", 1)[0]
    heads = Counter(line for line in body.splitlines() if line and not line.startswith(" "))
    assert heads and max(heads.values()) == 1, [h for h, n in heads.items() if n > 1]
    tables: dict[str, list[str]] = {}
    for block in body.strip().split("\n\n"):
        head, *rows = block.splitlines()
        tables[head] = rows
    return tables


def test_demo_prints_each_table_once_with_aligned_columns(demo_run: tuple[Path, str]) -> None:
    _out, printed = demo_run
    tables = _tables(printed)
    # the DH table holds the sizes and the logjam count together
    dh = [row.split()[0] for row in tables["dh_sizes"]]
    assert dh == ["1024", "logjam_exposed_le_1024"]
    rows = [row for rows in tables.values() for row in rows]
    assert len({row.index(" / ") for row in rows}) == 1, "the count columns are not aligned"
    assert any("…" in row for row in tables["issuers"])  # the lab CA's long name, cut
    assert all(len(row) <= 80 for row in rows)


def test_demo_ends_with_next_commands_that_work(demo_run: tuple[Path, str], fake_internet: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out, printed = demo_run
    advice = [shlex.split(line) for line in printed.split("\nnext, ", 1)[1].splitlines()
              if line.startswith("  ")]
    commands: dict[str, list[str]] = {}
    for words in advice:
        if words[0].endswith("scanner"):  # `.venv/bin/scanner`, or `scanner` on the PATH
            commands.setdefault(" ".join(words[1:3]) if words[1] == "lab" else words[1],
                                words[1:])
        else:
            commands["notebook"] = words
    assert {"stats", "report", "notebook", "lab serve", "check"} <= set(commands), advice
    capsys.readouterr()
    for words in advice:
        if words[0].endswith("scanner") and words[1] in ("stats", "report"):
            assert Path(words[2]).resolve() == out.resolve(), words
            args = [str(out.parent / "report.html") if w.endswith(".html") else w
                    for w in words[1:]]
            assert main(args) == 0, words
    notebook = commands["notebook"]
    assert notebook[0] == f"SCANNER_RESULTS={out.resolve()}"
    assert notebook[2] == "execute" and Path(notebook[3]).is_file()
    assert not notebook[notebook.index("--output") + 1].startswith(str(Path(notebook[3]).parent))
    serve, check = commands["lab serve"], commands["check"]
    assert check[check.index("--lab") + 1] == serve[serve.index("--dir") + 1]
    # the demo's population is the shared lab's: the domain it suggests checks there
    assert main(["check", check[1], "--lab", str(fake_internet.directory), *FAST[:-1]]) == 0
    assert check[1] in capsys.readouterr().out
