"""`make bench`: a national-scale survey of the lab, measured.

Generates the lab's `norway-2010` population (default 345,000 domains), serves it in its own
process(es), scans it with the real CLI in another process, and reports wall time, the
scanner's user+sys CPU and peak RSS (os.wait4 of that process alone), rates, CPU per probe and
per domain, the lab's per-address connection counts, and the scan checked against the truth.
One JSON line per run (stdout and benchmarks/results.jsonl) and a row in RESULTS.md.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import (  # noqa: E402
    ROOT,
    append_row,
    as_dict,
    commit,
    emit,
    machine,
    run_measured,
    scanner_env,
    today,
    tree_cpu_s,
)
from truth_check import check_against_truth, connection_report  # noqa: E402

from scanner.config import EVENT_LOOPS  # noqa: E402
from scanner.lab.serve import LabProcess  # noqa: E402
from scanner.scan import event_loop  # noqa: E402

#: Realistic survey timeouts, shorter than the CLI's defaults (which are for the real internet).
BENCH_TIMEOUTS = ("--timeout-dns", "2", "--timeout-connect", "5", "--timeout-greeting", "10",
                  "--timeout-command", "10", "--timeout-starttls", "10",
                  "--timeout-handshake", "10", "--deadline", "30")


def scan_args(lab_dir: Path, out: Path, loop: str, concurrency: int,
              extra: tuple[str, ...] = ()) -> list[str]:
    """The measured scanner command line."""
    return [sys.executable, "-m", "scanner", "scan", str(lab_dir / "domains.txt"), "-o", str(out),
            "--lab", str(lab_dir), "--loop", loop, "--no-progress", "--concurrency",
            str(concurrency), *BENCH_TIMEOUTS, *extra]


def run_survey(domains: int, *, profile: str = "norway-2010", seed: int = 1,
               latency: str = "20-300", work: Path, loop: str = "auto",
               concurrency: int = 2000, lab: LabProcess | None = None,
               lab_start_s: float = 0.0, check: bool = True,
               extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """One measured survey; returns the result dict (also what the JSON line holds)."""
    loop = event_loop.resolve(loop)  # what the scanner will run on
    lab_dir = work / f"lab-{profile}-{domains}-{seed}"
    out = work / f"scan-{profile}-{domains}-{loop}{''.join(extra)}"
    shutil.rmtree(out, ignore_errors=True)
    own_lab = lab is None
    t0 = time.monotonic()
    if lab is None:
        lo, hi = (int(x) for x in latency.split("-"))
        lab = LabProcess.start(profile, domains, seed, lab_dir, latency_ms=(lo, hi),
                               timeout=1800.0)
        lab_start_s = time.monotonic() - t0
    try:
        lab.control("reset_counts")
        lab_cpu0 = tree_cpu_s(lab.pid)
        args = scan_args(lab.directory, out, loop, concurrency, extra)
        run = run_measured(args, log=work / f"scan-{domains}.log", env=scanner_env())
        lab_cpu = tree_cpu_s(lab.pid) - lab_cpu0
        counts = lab.counts()
        truth_hosts = lab.truth_hosts()
        conn = connection_report(counts, truth_hosts)
        truth = check_against_truth(out, lab.truth_domains(), truth_hosts) if check else {}
    finally:
        if own_lab:
            lab.stop()
    from scanner.sink.dataset import read_manifest

    manifest = read_manifest(out) if run.returncode == 0 else {}
    probes = int(manifest.get("counts", {}).get("probes", 0))
    n_domains = int(manifest.get("counts", {}).get("domains", 0))
    return {
        "bench": "survey", "date": today(), "machine": machine(), "commit": commit(),
        "profile": profile + "".join(f" {a}" for a in extra), "domains": domains, "seed": seed,
        "latency_ms": latency,
        "loop": loop, "concurrency": concurrency, "timeouts": " ".join(BENCH_TIMEOUTS),
        "lab_hosts": lab.info.get("hosts"), "lab_start_s": round(lab_start_s, 1),
        "lab_cpu_s": round(lab_cpu, 1), **as_dict(run),
        "cpu_s": round(run.cpu_s, 2), "domains_done": n_domains, "probes": probes,
        "domains_per_s": round(n_domains / run.wall_s, 1) if run.wall_s else 0,
        "probes_per_s": round(probes / run.wall_s, 1) if run.wall_s else 0,
        "cpu_ms_per_probe": round(1000 * run.cpu_s / probes, 3) if probes else None,
        "cpu_ms_per_domain": round(1000 * run.cpu_s / n_domains, 3) if n_domains else None,
        "connections": conn, "truth": truth,
    }


RESULT_HEADER = ["date (UTC)", "machine", "commit", "profile", "domains", "loop", "wall s",
                 "scanner CPU s", "peak RSS MiB", "domains/s", "probes", "probes/s",
                 "CPU ms/probe", "CPU ms/domain", "lab CPU s", "conns/addr", "max at once",
                 "truth mismatches"]


def result_row(r: dict[str, Any]) -> list[Any]:
    """The RESULTS.md row of a survey result."""
    c, t = r["connections"], r["truth"]
    mism = (t.get("domain_mismatches", 0) + t.get("host_mismatches", 0)) if t else "not checked"
    return [r["date"], r["machine"], r["commit"], r["profile"], f"{r['domains']:,}", r["loop"],
            f"{r['wall_s']:.1f}", f"{r['cpu_s']:.1f}", f"{r['max_rss_mib']:.0f}",
            f"{r['domains_per_s']:.0f}", f"{r['probes']:,}", f"{r['probes_per_s']:.0f}",
            r["cpu_ms_per_probe"], r["cpu_ms_per_domain"], f"{r['lab_cpu_s']:.0f}",
            c["histogram"], c["max_concurrent"], mism]


def main(argv: list[str] | None = None) -> int:
    """Command line: see --help."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--domains", type=int, nargs="+", default=[345_000])
    p.add_argument("--profile", default="norway-2010")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--latency", default="20-300", metavar="LO-HI")
    # the scanner's own default (uvloop when installed); give both to compare them in one run
    p.add_argument("--loop", nargs="+", default=["auto"], choices=EVENT_LOOPS)
    p.add_argument("--concurrency", type=int, default=2000)
    p.add_argument("--work", type=Path, default=ROOT / "results" / "bench")
    p.add_argument("--no-check", action="store_true", help="skip the truth comparison")
    p.add_argument("--no-policies", action="store_true",
                   help="scan with --no-policies (STARTTLS only, no policy lookups)")
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    status = 0
    for n in args.domains:
        lab_dir = args.work / f"lab-{args.profile}-{n}-{args.seed}"
        lo, hi = (int(x) for x in args.latency.split("-"))
        t0 = time.monotonic()
        with LabProcess.start(args.profile, n, args.seed, lab_dir, latency_ms=(lo, hi),
                              timeout=1800.0) as lab:
            lab_start_s = time.monotonic() - t0
            for loop in args.loop:
                r = run_survey(n, profile=args.profile, seed=args.seed, latency=args.latency,
                               work=args.work, loop=loop, concurrency=args.concurrency,
                               lab=lab, lab_start_s=lab_start_s, check=not args.no_check,
                               extra=("--no-policies",) if args.no_policies else ())
                emit(r)
                if not args.no_record:
                    append_row("Survey runs", RESULT_HEADER, result_row(r))
                if r["returncode"] != 0:
                    status = 1
    return status


if __name__ == "__main__":
    raise SystemExit(main())
