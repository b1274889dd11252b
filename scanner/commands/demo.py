"""`scanner demo`: start the lab, scan the bundled sample list, print the survey tables."""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
from pathlib import Path

import pyarrow.compute as pc

from scanner.analysis.stats import survey_stats
from scanner.commands.scan import run_scan_command
from scanner.commands.stats import render
from scanner.config import Limits, ScanConfig, Timeouts, TrustStore
from scanner.lab.serve import LabProcess
from scanner.sink.dataset import read_dataset

_ROOT = Path(__file__).resolve().parents[2]
#: The bundled sample list: the lab's `mixed` population, seed 1, 200 domains.
SAMPLE_LIST = _ROOT / "survey_inputs" / "demo-domains.txt"
NOTEBOOK = _ROOT / "notebooks" / "survey_statistics.ipynb"
DEMO_PROFILE, DEMO_SEED = "mixed", 1

#: The lab's tarpits never greet: short timeouts keep the demo to seconds.
DEMO_TIMEOUTS = Timeouts(dns_query=1.0, dns_tries=2, connect=3.0, greeting=3.0, command=3.0,
                         starttls=3.0, handshake=3.0, per_address=8.0)


def run_demo(out: Path, *, domains: int = 200) -> int:
    """Run the whole demo; returns the exit code."""
    if out.exists():
        shutil.rmtree(out)
    with tempfile.TemporaryDirectory(prefix="scanner-lab-") as tmp:
        print(f"starting the lab ({DEMO_PROFILE}, {domains} domains, seed {DEMO_SEED}) ...",
              file=sys.stderr)
        lab = LabProcess.start(DEMO_PROFILE, domains, DEMO_SEED, Path(tmp))
        try:
            sample = SAMPLE_LIST if domains == 200 and SAMPLE_LIST.is_file() \
                else lab.directory / "domains.txt"
            config = ScanConfig(
                output=out, inputs=(sample,), resolvers=(lab.resolver,), port=lab.smtp_port,
                timeouts=DEMO_TIMEOUTS, limits=Limits(max_in_flight=100),
                trust=TrustStore(extra_anchors=(lab.ca_pem,)), lab_mode=True,
                mta_sts_port=lab.mta_sts_port)
            code = run_scan_command(config, progress=sys.stderr.isatty(),
                                    argv=f"demo --out {out}")
        finally:
            lab.stop()
    if code != 0:
        return code
    print()
    print(render(survey_stats(out), "table"))
    print()
    print(next_commands(out, domains))
    return 0


def _shown(path: Path) -> str:
    """A path as the user can type it from here: relative below the working directory."""
    path = path.resolve()
    try:
        return shlex.quote(str(path.relative_to(Path.cwd())))
    except ValueError:
        return shlex.quote(str(path))


def _tool(name: str) -> str:
    """The command that runs `name` from this scanner's environment (`.venv/bin/scanner`)."""
    script = Path(sys.executable).parent / name
    return _shown(script) if script.is_file() else name


def _sample_domain(out: Path) -> str:
    """A domain of the scan worth a closer look: some but not all of its MX do STARTTLS."""
    domains = read_dataset(out, "domains", columns=["domain", "status", "starttls_class"])
    ok = domains.filter(pc.equal(domains["status"], "ok"))
    some = ok.filter(pc.equal(ok["starttls_class"], "some"))
    for table in (some, ok):
        if table.num_rows:
            return str(table["domain"][0])
    return "only-valid.test"


def next_commands(out: Path, domains: int) -> str:
    """What to try next on the demo's results: the other commands, with their arguments."""
    scanner, res = _tool("scanner"), _shown(out)
    report = _shown(out.with_name(out.name + "-report.html"))
    lab = _shown(out.with_name("lab"))
    size = "" if domains == 200 else f" --domains {domains}"
    notebook_out = shlex.quote(str(out.resolve().with_name(out.name + "-survey_statistics")))
    return "\n".join([
        f"next, on the demo's results ({res}):",
        f"  {scanner} stats {res} --by provider --top 10",
        f"  {scanner} stats {res} --failing strict",
        f"  {scanner} report {res} -o {report}",
        f"  SCANNER_RESULTS={shlex.quote(str(out.resolve()))} {_tool('jupyter')} execute "
        f"{_shown(NOTEBOOK)} --output {notebook_out}",
        "one domain, edge by edge: serve the same lab in another terminal (Ctrl-C stops it), "
        "then check",
        f"  {scanner} lab serve --dir {lab}{size}",
        f"  {scanner} check {_sample_domain(out)} --lab {lab}",
    ])
