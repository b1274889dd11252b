"""`scanner demo`: start the lab, scan the bundled sample list, print the survey tables."""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from scanner.config import Limits, ScanConfig, Timeouts, TrustStore
from scanner.lab.serve import LabProcess
from scanner.scan_command import run_scan_command
from scanner.stats import survey_stats
from scanner.stats_command import render

#: The bundled sample list: the lab's `mixed` population, seed 1, 200 domains.
SAMPLE_LIST = Path(__file__).resolve().parent.parent / "survey_inputs" / "demo-domains.txt"
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
    return 0
