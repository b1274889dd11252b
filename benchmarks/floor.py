"""The CPU floor: the cheapest Python client doing the scanner's wire steps, and OpenSSL's cost.

The client connects, reads the greeting, sends EHLO, STARTTLS when offered, does the handshake
with the same permissive TLS settings, EHLO again and QUIT, with raw asyncio streams and no
analysis, over every host of a lab. Its CPU per probe is the floor for this language; the
scanner's CPU per probe is reported as a ratio to it. `openssl speed` gives the handshake's own
crypto (X25519 key exchange, ECDSA P-256 signature check) as the physical floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import ssl
import subprocess
import sys
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
)


def _context() -> ssl.SSLContext:
    """What the scanner offers: TLS 1.0-1.3, every cipher at security level 0, no verification."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.minimum_version = ssl.TLSVersion.TLSv1
    ctx.set_ciphers("ALL:@SECLEVEL=0")
    return ctx


async def _reply(reader: asyncio.StreamReader) -> bytes:
    """Lines up to the last one of a reply (`250 ` after `250-`); returns the whole reply."""
    lines = []
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("closed")
        lines.append(line)
        if len(line) < 4 or line[3:4] != b"-":
            return b"".join(lines)


async def probe(ip: str, port: int, ctx: ssl.SSLContext, greeting_s: float = 10.0,
                deadline_s: float = 30.0) -> str:
    """One conversation; returns how far it got (`tls`, `plain`, or the failing step)."""
    step = "connect"
    writer = None
    try:
        async with asyncio.timeout(deadline_s):
            reader, writer = await asyncio.open_connection(ip, port)
            step = "greeting"
            async with asyncio.timeout(greeting_s):
                greeting = await _reply(reader)
            if not greeting.startswith(b"220"):
                return step
            step = "ehlo"
            writer.write(b"EHLO floor.invalid\r\n")
            ehlo = await _reply(reader)
            if not ehlo.startswith(b"250"):
                return step
            if b"STARTTLS" not in ehlo.upper():
                writer.write(b"QUIT\r\n")
                return "plain"
            step = "starttls"
            writer.write(b"STARTTLS\r\n")
            if not (await _reply(reader)).startswith(b"220"):
                return step
            step = "handshake"
            await writer.start_tls(ctx)
            step = "ehlo_tls"
            writer.write(b"EHLO floor.invalid\r\n")
            await _reply(reader)
            writer.write(b"QUIT\r\n")
            return "tls"
    except (OSError, TimeoutError, EOFError, ssl.SSLError):
        return step
    finally:
        if writer is not None:
            writer.transport.abort()


async def probe_all(targets: list[tuple[str, int]], concurrency: int, greeting_s: float = 10.0,
                    deadline_s: float = 30.0) -> dict[str, int]:
    """Probe every target, `concurrency` at a time; counts of how far each got."""
    ctx = _context()
    sem = asyncio.Semaphore(concurrency)
    counts: dict[str, int] = {}

    async def one(ip: str, port: int) -> None:
        async with sem:
            result = await probe(ip, port, ctx, greeting_s, deadline_s)
        counts[result] = counts.get(result, 0) + 1

    async with asyncio.TaskGroup() as tg:
        for ip, port in targets:
            tg.create_task(one(ip, port))
    return counts


def _client(args: argparse.Namespace) -> int:
    import pyarrow.parquet as pq

    hosts = pq.read_table(args.lab / "truth" / "hosts.parquet", columns=["ip", "port"])
    targets = list(zip(hosts.column("ip").to_pylist(), hosts.column("port").to_pylist(),
                       strict=True))[:args.limit]
    counts = asyncio.run(probe_all(targets, args.concurrency, args.greeting, args.deadline))
    print(json.dumps({"probes": len(targets), "reached": counts}))
    return 0


def run_floor(lab_dir: Path, work: Path, concurrency: int = 2000, limit: int | None = None,
              greeting_s: float = 10.0, deadline_s: float = 30.0) -> dict[str, Any]:
    """Run the floor client over a running lab's hosts in its own measured process."""
    log = work / "floor.log"
    log.unlink(missing_ok=True)
    args = [sys.executable, str(ROOT / "benchmarks" / "floor.py"), "--client", "--lab",
            str(lab_dir), "--concurrency", str(concurrency), "--greeting", str(greeting_s),
            "--deadline", str(deadline_s)]
    if limit:
        args += ["--limit", str(limit)]
    run = run_measured(args, log=log, env=scanner_env())
    out = json.loads(log.read_text().strip().splitlines()[-1])
    return {"bench": "floor", **as_dict(run), "cpu_s": round(run.cpu_s, 3), **out,
            "cpu_ms_per_probe": round(1000 * run.cpu_s / out["probes"], 3)}


def run_scanner_on_hosts(lab_dir: Path, work: Path, concurrency: int = 2000,
                         extra: tuple[str, ...] = ()) -> dict[str, Any]:
    """The scanner over the same hosts: one covering domain per host, so probes == hosts."""
    import shutil

    import pyarrow.parquet as pq
    from peers import cover_domains
    from survey import BENCH_TIMEOUTS

    ips = set(pq.read_table(lab_dir / "truth" / "hosts.parquet", columns=["ip"])
              .column("ip").to_pylist())
    domains = work / "floor-domains.txt"
    domains.write_text("\n".join(cover_domains(lab_dir, ips)) + "\n")
    out = work / ("floor-scan" + "".join(extra))
    shutil.rmtree(out, ignore_errors=True)
    args = [sys.executable, str(ROOT / "benchmarks" / "run_scan.py"), "--loop", "asyncio",
            "scan", str(domains), "-o", str(out), "--lab", str(lab_dir), "--no-progress",
            "--concurrency", str(concurrency), *BENCH_TIMEOUTS, *extra]
    run = run_measured(args, log=work / "floor-scan.log", env=scanner_env())
    manifest = json.loads((out / "manifest.json").read_text())
    probes = int(manifest["counts"]["probes"])
    return {**as_dict(run), "cpu_s": round(run.cpu_s, 3), "probes": probes,
            "domains": int(manifest["counts"]["domains"]),
            "cpu_ms_per_probe": round(1000 * run.cpu_s / probes, 3)}


def openssl_speed(seconds: int = 2) -> dict[str, float]:
    """Microseconds per operation of the handshake's crypto, from `openssl speed`."""
    result: dict[str, float] = {}
    for alg in ("ecdhx25519", "ecdsap256", "rsa2048"):
        proc = subprocess.run(["openssl", "speed", "-seconds", str(seconds), alg],
                              capture_output=True, text=True, check=False)
        for line in proc.stdout.splitlines():
            nums = re.findall(r"[\d.]+(?:e[+-]?\d+)?", line)
            # the seconds columns round to 0.0000s on a fast machine: use operations/second
            if alg == "ecdhx25519" and "X25519" in line and len(nums) >= 3:
                result["x25519_derive_us"] = round(1e6 / float(nums[-1]), 1)
            elif alg == "ecdsap256" and "nistp256" in line and len(nums) >= 5:
                result["ecdsa_p256_sign_us"] = round(1e6 / float(nums[-2]), 1)
                result["ecdsa_p256_verify_us"] = round(1e6 / float(nums[-1]), 1)
            elif alg == "rsa2048" and line.startswith("rsa 2048") and len(nums) >= 5:
                result["rsa2048_sign_us"] = round(1e6 / float(nums[-2]), 1)
                result["rsa2048_verify_us"] = round(1e6 / float(nums[-1]), 1)
    # client side of one ECDHE handshake: an X25519 key pair and one derivation (~2 scalar
    # multiplications) plus checking the server's P-256 signature
    if {"x25519_derive_us", "ecdsa_p256_verify_us"} <= result.keys():
        result["client_handshake_crypto_us"] = round(
            2 * result["x25519_derive_us"] + result["ecdsa_p256_verify_us"], 1)
    return result


def main(argv: list[str] | None = None) -> int:
    """Command line: see --help."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--lab", type=Path, help="a running lab's directory")
    p.add_argument("--domains", type=int, default=34_500, help="lab size when no --lab")
    p.add_argument("--concurrency", type=int, default=2000)
    p.add_argument("--limit", type=int)
    p.add_argument("--no-scanner", action="store_true", help="only the floor client")
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    p.add_argument("--greeting", type=float, default=10.0, help="greeting timeout (s)")
    p.add_argument("--deadline", type=float, default=30.0, help="per-address deadline (s)")
    p.add_argument("--work", type=Path, default=ROOT / "results" / "bench")
    args = p.parse_args(argv)
    if args.client:
        return _client(args)
    args.work.mkdir(parents=True, exist_ok=True)
    speed = openssl_speed()
    if args.lab is not None:
        result = _floor_and_scanner(args.lab, args)
    else:
        from scanner.lab.serve import LabProcess

        with LabProcess.start("norway-2010", args.domains, 1,
                              args.work / f"lab-norway-2010-{args.domains}-1",
                              latency_ms=(20, 300), timeout=1800.0) as lab:
            result = _floor_and_scanner(lab.directory, args)
    result.update(date=today(), machine=machine(), commit=commit(), openssl=speed)
    emit(result)
    if result.get("scanner") and not args.no_record:
        sc = result["scanner"]
        sn = result["scanner_no_policies"]
        append_row("Floor (same hosts, one covering domain per host; scanner with and without "
                   "the policy stage)", FLOOR_HEADER, [
                       result["date"], result["commit"], result["probes"], result["cpu_s"],
                       result["cpu_ms_per_probe"], sc["domains"], sc["cpu_s"],
                       sc["cpu_ms_per_probe"], result["ratio"], sn["cpu_s"],
                       sn["cpu_ms_per_probe"], result["ratio_no_policies"],
                       speed.get("client_handshake_crypto_us", "n/a")])
    return 0


FLOOR_HEADER = ["date (UTC)", "commit", "hosts", "floor CPU s", "floor CPU ms/probe",
                "scanner domains", "scanner CPU s", "scanner CPU ms/probe", "scanner/floor",
                "--no-policies CPU s", "--no-policies CPU ms/probe", "--no-policies/floor",
                "OpenSSL client handshake crypto µs"]


def _floor_and_scanner(lab_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    result = run_floor(lab_dir, args.work, args.concurrency, args.limit)
    if not args.no_scanner:
        scan = run_scanner_on_hosts(lab_dir, args.work, args.concurrency)
        result["scanner"] = scan
        result["ratio"] = round(scan["cpu_ms_per_probe"] / result["cpu_ms_per_probe"], 2)
        # the same wire steps as the floor, with only the MX and address lookups besides
        lean = run_scanner_on_hosts(lab_dir, args.work, args.concurrency, ("--no-policies",))
        result["scanner_no_policies"] = lean
        result["ratio_no_policies"] = round(
            lean["cpu_ms_per_probe"] / result["cpu_ms_per_probe"], 2)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
