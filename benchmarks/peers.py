"""The same lab hosts scanned by the tools researchers use today, and by this scanner.

A `norway-2010` lab sized to about 1,000 mail server addresses, SMTP on port 25 (so nmap's
scripts recognise SMTP and use STARTTLS). Each peer collects greeting/EHLO, STARTTLS, TLS
version and cipher and the certificate; each runs in its own measured process (wall, and the
user+sys CPU of it and its descendants from os.wait4). The ratios are to this scanner
configured to collect the same facts (`--no-policies`); the full scanner, which also looks up
MTA-STS, DANE, SPF and DMARC, is measured beside it. Peers that cannot be installed, or that
exceed their time budget, are reported as such. Results go to RESULTS.md ("Peers").
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
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
    median_run,
    run_measured,
    scanner_env,
    served_hosts,
    today,
)
from survey import BENCH_TIMEOUTS  # noqa: E402

PEERS_VENV = ROOT / "benchmarks" / ".peers-venv"
APT_PACKAGES = ("nmap", "testssl.sh", "openssl")


def install_peers() -> dict[str, str]:
    """apt-get the Debian peers and pip sslyze into its own venv; what failed, and why."""
    problems: dict[str, str] = {}
    missing = [p for p, exe in zip(APT_PACKAGES, ("nmap", "testssl", "openssl"), strict=True)
               if not shutil.which(exe)]
    if missing:
        for cmd in (["apt-get", "update", "-qq"],
                    ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]):
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False,
                                  env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
            if proc.returncode:
                for p in missing:
                    problems[p] = f"{' '.join(cmd[:2])} failed: {proc.stderr.strip()[-200:]}"
    sslyze = PEERS_VENV / "bin" / "sslyze"
    if not sslyze.exists():
        steps = ([sys.executable, "-m", "venv", str(PEERS_VENV)],
                 [str(PEERS_VENV / "bin" / "pip"), "install", "-q", "sslyze"])
        for cmd in steps:
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if proc.returncode:
                problems["sslyze"] = f"{' '.join(cmd[:3])} failed: {proc.stderr.strip()[-200:]}"
                break
    return problems


def peer_commands(ips: list[str], port: int, work: Path, parallel: int
                  ) -> dict[str, list[str]]:
    """The command line of each peer over the hosts listed in work/ips.txt."""
    ips_file = work / "ips.txt"
    ips_file.write_text("".join(f"{ip}\n" for ip in ips))
    targets = work / "targets.txt"
    targets.write_text("".join(f"{ip}:{port}\n" for ip in ips))
    s_client = (f"xargs -P {parallel} -I{{}} sh -c 'printf \"EHLO peer.invalid\\r\\nQUIT\\r\\n\""
                f" | timeout 30 openssl s_client -starttls smtp -connect {{}} "
                f"-name peer.invalid -showcerts > /dev/null 2>&1; true' < {targets}")
    testssl = (f"testssl --quiet --color 0 --warnings off --openssl-timeout 10 "
               f"--parallel --file {work / 'testssl-cmds.txt'} > /dev/null 2>&1; true")
    (work / "testssl-cmds.txt").write_text("".join(
        f"--starttls smtp -S -P --ip one {ip}:{port}\n" for ip in ips))
    return {
        "nmap": ["nmap", "-Pn", "-n", "-T4", "-p", str(port), "--script",
                 "smtp-commands,ssl-cert", "-iL", str(ips_file), "-oX", str(work / "nmap.xml")],
        "openssl s_client (xargs -P)": ["sh", "-c", s_client],
        "testssl.sh": ["sh", "-c", testssl],
        "sslyze": [str(PEERS_VENV / "bin" / "sslyze"), "--starttls", "smtp",
                   "--certinfo", "--tlsv1", "--tlsv1_1", "--tlsv1_2", "--tlsv1_3",
                   f"--targets_in={targets}", f"--json_out={work / 'sslyze.json'}", "--quiet"],
    }


def cover_domains(lab_dir: Path, ips: set[str]) -> list[str]:
    """A smallest-effort list of lab domains whose MX hosts together cover `ips`."""
    import pyarrow.parquet as pq

    hosts = pq.read_table(lab_dir / "truth" / "hosts.parquet", columns=["ip", "mx_hostnames"])
    ip_of = {n: ip for ip, names in zip(hosts.column("ip").to_pylist(),
                                        hosts.column("mx_hostnames").to_pylist(), strict=True)
             for n in (names or ())}
    doms = pq.read_table(lab_dir / "truth" / "domains.parquet",
                         columns=["domain", "mx_hostnames"]).to_pylist()
    wanted, chosen = set(ips), []
    for row in doms:
        covers = {ip_of[n] for n in (row["mx_hostnames"] or ()) if n in ip_of} & wanted
        if covers:
            chosen.append(row["domain"])
            wanted -= covers
        if not wanted:
            break
    return chosen


def _every_round(cmd: list[str]) -> Callable[[int], list[str]]:
    return lambda _round: cmd


#: The scanner configured to collect what the peers collect (no MTA-STS, DANE, SPF, DMARC):
#: the base of the ratios. The full scanner is measured beside it.
SAME_FACTS = "this scanner, same facts (--no-policies)"
FULL = "this scanner (with the policy stage)"


def main(argv: list[str] | None = None) -> int:
    """Command line: see --help."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hosts", type=int, default=1000)
    p.add_argument("--domains", type=int, default=28_000, help="lab size (~1,000 hosts)")
    p.add_argument("--parallel", type=int, default=100, help="xargs -P for s_client")
    p.add_argument("--budget", type=float, default=900.0, help="seconds per peer before it is cut")
    p.add_argument("--only", nargs="+", choices=("nmap", "openssl", "testssl.sh", "sslyze"),
                   help="peers to run (default: all)")
    p.add_argument("--testssl-hosts", type=int, default=50,
                   help="testssl.sh takes seconds per host: run it on this many, scale up")
    p.add_argument("--rounds", type=int, default=1,
                   help="interleaved rounds of every run; each tool's median run (by CPU) counts")
    p.add_argument("--no-install", action="store_true")
    p.add_argument("--work", type=Path, default=ROOT / "results" / "bench" / "peers")
    args = p.parse_args(argv)
    args.work.mkdir(parents=True, exist_ok=True)
    problems = {} if args.no_install else install_peers()
    from scanner.lab.serve import LabProcess

    results: list[dict[str, Any]] = []
    with LabProcess.start("norway-2010", args.domains, 1, args.work / "lab", smtp_port=25,
                          latency_ms=(20, 300), timeout=600.0) as lab:
        ips = served_hosts(lab.directory, ["ip"]).column("ip").to_pylist()[:args.hosts]
        domains = cover_domains(lab.directory, set(ips))
        (args.work / "domains.txt").write_text("\n".join(domains) + "\n")

        def scanner(extra: tuple[str, ...]) -> Callable[[int], list[str]]:
            def cmd(round_no: int) -> list[str]:
                out = args.work / f"scan{''.join(extra)}-{round_no}"
                shutil.rmtree(out, ignore_errors=True)
                return [sys.executable, "-m", "scanner", "scan", str(args.work / "domains.txt"),
                        "-o", str(out), "--lab", str(lab.directory), "--no-progress",
                        *BENCH_TIMEOUTS, *extra]
            return cmd

        cmds: dict[str, Callable[[int], list[str]]] = {
            SAME_FACTS: scanner(("--no-policies",)), FULL: scanner(())}
        chosen: dict[str, int] = {SAME_FACTS: len(ips), FULL: len(ips)}
        for name, cmd in peer_commands(ips, lab.smtp_port, args.work, args.parallel).items():
            if args.only and name.split()[0] not in args.only:
                continue
            exe = cmd[0] if cmd[0] != "sh" else cmd[2].split()[0]
            if name in problems or not (shutil.which(exe) or Path(exe).exists()):
                results.append({"peer": name, "status": "not installed",
                                "detail": problems.get(name, f"{exe} not found")})
                continue
            n_hosts = len(ips)
            if name == "testssl.sh" and args.testssl_hosts < len(ips):
                n_hosts = args.testssl_hosts
                sub = args.work / "testssl"
                sub.mkdir(exist_ok=True)
                cmd = peer_commands(ips[:n_hosts], lab.smtp_port, sub, args.parallel)[name]
            cmds[name] = _every_round(cmd)
            chosen[name] = n_hosts
        runs: dict[str, list[Any]] = {name: [] for name in chosen}
        for round_no in range(args.rounds):
            for name in chosen:
                slug = "-".join("".join(c if c.isalnum() else " " for c in name).split())
                runs[name].append(run_measured(
                    cmds[name](round_no), log=args.work / f"{slug}.log",
                    env=scanner_env(), timeout=args.budget))
        for name, n_hosts in chosen.items():
            run = median_run(runs[name], lambda r: r.cpu_s)
            scale = len(ips) / n_hosts
            status = "ok" if run.returncode == 0 else f"exit {run.returncode}"
            if any(r.timed_out for r in runs[name]):
                status = f"stopped after {args.budget:g} s (figures are lower bounds)"
            if args.rounds > 1:
                status += f", median of {args.rounds} rounds"
            results.append({"peer": name, "status": status, "hosts_run": n_hosts,
                            **as_dict(run), "cpu_s": round(run.cpu_s, 2),
                            "wall_s_1000": round(run.wall_s * scale, 1),
                            "cpu_s_1000": round(run.cpu_s * scale, 2),
                            "rounds_cpu_s": [round(r.cpu_s, 2) for r in runs[name]],
                            "rounds_wall_s": [round(r.wall_s, 1) for r in runs[name]]})
    base = next(r for r in results if r["peer"] == SAME_FACTS)
    for r in results:
        if "wall_s_1000" in r:
            r["wall_ratio"] = round(r["wall_s_1000"] / base["wall_s_1000"], 1)
            r["cpu_ratio"] = round(r["cpu_s_1000"] / max(base["cpu_s_1000"], 1e-3), 1)
    summary = {"bench": "peers", "date": today(), "machine": machine(), "commit": commit(),
               "hosts": len(ips), "domains": len(domains), "rounds": args.rounds,
               "peers": results}
    emit(summary)
    for r in results:
        append_row("Peers (same lab hosts)", PEER_HEADER, _peer_row(summary, r))
    return 0


PEER_HEADER = ["date (UTC)", "commit", "tool", "status", "hosts run", "wall s",
               "CPU s", "wall s per 1,000", "CPU s per 1,000", "wall × scanner", "CPU × scanner"]


def _peer_row(summary: dict[str, Any], r: dict[str, Any]) -> list[Any]:
    if "wall_s" not in r:
        return [summary["date"], summary["commit"], r["peer"], r["status"], "", "", "", "",
                "", "", ""]
    return [summary["date"], summary["commit"], r["peer"], r["status"], r["hosts_run"],
            r["wall_s"], r["cpu_s"], r["wall_s_1000"], r["cpu_s_1000"], r["wall_ratio"],
            r["cpu_ratio"]]


if __name__ == "__main__":
    raise SystemExit(main())
