"""The CPU floor: the cheapest Python client doing the scanner's wire steps, and OpenSSL's cost.

The client connects, reads the greeting, sends EHLO, STARTTLS when offered, does the handshake
with the same permissive TLS settings, EHLO again and QUIT, waiting for each reply as the
scanner does, with raw asyncio streams and no analysis, over every host of a lab. Its CPU per
probe is the floor for this language; the scanner's CPU per probe is reported as a ratio to
it. `openssl speed` gives the handshake's own crypto (X25519 key exchange, ECDSA P-256
signature check) as the physical floor.

The scanner also asks DNS for what it probes (MX, then A and AAAA of each MX host) and, with
its policy stage, four TXT records per domain and TLSA per MX host. Two more floors do those
wire steps too, over the domains the scanner gets: `dns` (MX, A, AAAA; compared with the
scanner's `--no-policies`) and `dns+policies` (also TXT and TLSA, whose replies it does not
read; it skips the scanner's MTA-STS HTTPS fetches, so it is a little cheaper than the same
steps). Their DNS client is a bare UDP socket (queries encoded by the scanner's own
`question_wire`) with just enough parsing for MX and address records.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import socket
import ssl
import statistics
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, cast

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
    national_lab,
    run_measured,
    scanner_env,
    served_hosts,
    today,
)

from scanner.config import EVENT_LOOPS, Limits  # noqa: E402
from scanner.dns.udp import question_wire  # noqa: E402
from scanner.scan import event_loop  # noqa: E402


def _context() -> ssl.SSLContext:
    """What the scanner offers: TLS 1.0-1.3, every cipher at security level 0, no verification."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # TLS 1.0 is deprecated in Python; servers still use it
        warnings.simplefilter("ignore", DeprecationWarning)
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


async def _quit(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """QUIT, then wait for its reply as the scanner does (RFC 5321 §4.1.1.10: a client waits
    for the 221 before it closes)."""
    writer.write(b"QUIT\r\n")
    await _reply(reader)


async def probe(ip: str, port: int, ctx: ssl.SSLContext, greeting_s: float = 10.0,
                deadline_s: float = 30.0) -> str:
    """One conversation; returns how far it got (`tls`, `plain`, or the failing step).

    Wherever the scanner says QUIT (after a refusing greeting, EHLO or STARTTLS reply too),
    so does this client, and it reads the reply; a server that closes first ends it early.
    """
    step = "connect"
    writer = None
    try:
        async with asyncio.timeout(deadline_s):
            reader, writer = await asyncio.open_connection(ip, port)
            step = "greeting"
            async with asyncio.timeout(greeting_s):
                greeting = await _reply(reader)
            if not greeting.startswith(b"220"):
                await _quit(reader, writer)
                return step
            step = "ehlo"
            writer.write(b"EHLO floor.invalid\r\n")
            ehlo = await _reply(reader)
            if not ehlo.startswith(b"250"):
                await _quit(reader, writer)
                return step
            if b"STARTTLS" not in ehlo.upper():
                step = "plain"
                await _quit(reader, writer)
                return step
            step = "starttls"
            writer.write(b"STARTTLS\r\n")
            if not (await _reply(reader)).startswith(b"220"):
                await _quit(reader, writer)
                return step
            step = "handshake"
            await writer.start_tls(ctx)
            step = "ehlo_tls"
            writer.write(b"EHLO floor.invalid\r\n")
            await _reply(reader)
            step = "tls"
            await _quit(reader, writer)
            return step
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


_MX, _A, _AAAA, _TXT, _TLSA = 15, 1, 28, 16, 52
_POLICY_TXT = ("", "_dmarc.", "_smtp._tls.", "_mta-sts.")


class _Dns(asyncio.DatagramProtocol):
    """The cheapest DNS client: one UDP socket, hand-built queries, replies matched by id."""

    def __init__(self, timeout_s: float, in_flight: int) -> None:
        self.loop = asyncio.get_running_loop()
        self.slots = asyncio.Semaphore(in_flight)
        self.taking = asyncio.Lock()
        self.timeout_s = timeout_s
        self.pending: dict[int, asyncio.Future[bytes | None]] = {}
        self.deadlines: collections.deque[tuple[float, int]] = collections.deque()
        self.next_id = 0
        self.queries = 0
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)
        sock = transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 21)  # as the scanner's stub

    def datagram_received(self, data: bytes, addr: Any) -> None:
        fut = self.pending.pop(int.from_bytes(data[:2], "big"), None)
        if fut is not None:
            fut.set_result(data)

    async def ask(self, queries: list[tuple[str, int]], tries: int = 2) -> list[bytes | None]:
        """Replies to queries sent together, each asked again when a try goes unanswered."""
        async with self.taking:  # a batch takes all its slots at once, or batches deadlock
            for _ in queries:
                await self.slots.acquire()
        try:
            replies: list[bytes | None] = [None] * len(queries)
            todo = range(len(queries))
            for _ in range(tries):
                sent = [(i, self.send(*queries[i])) for i in todo]
                for i, fut in sent:
                    replies[i] = await fut
                todo = [i for i in todo if replies[i] is None]
                if not todo:
                    break
            for i, reply in enumerate(replies):
                if reply is not None and reply[2] & 0x02:  # TC: the whole answer over TCP
                    replies[i] = await self.over_tcp(*queries[i])
            return replies
        finally:
            for _ in queries:
                self.slots.release()

    async def over_tcp(self, name: str, qtype: int) -> bytes | None:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("peername")[:2]
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            return None
        try:
            query = struct.pack("!6H", 0, 0x0100, 1, 0, 0, 0) + question_wire(name, qtype)
            writer.write(len(query).to_bytes(2, "big") + query)
            async with asyncio.timeout(self.timeout_s):
                size = int.from_bytes(await reader.readexactly(2), "big")
                return await reader.readexactly(size)
        except (OSError, TimeoutError, asyncio.IncompleteReadError):
            return None
        finally:
            writer.close()

    def send(self, name: str, qtype: int) -> asyncio.Future[bytes | None]:
        """Send a query; the future gets the reply, or None after `timeout_s`."""
        self.next_id = qid = (self.next_id + 1) & 0xFFFF
        fut: asyncio.Future[bytes | None] = self.loop.create_future()
        self.pending[qid] = fut
        assert self.transport is not None
        self.transport.sendto(struct.pack("!6H", qid, 0x0100, 1, 0, 0, 0)
                              + question_wire(name, qtype))
        self.deadlines.append((self.loop.time() + self.timeout_s, qid))
        self.queries += 1
        return fut

    async def sweep(self) -> None:
        """Give up unanswered queries, a quarter of a second at a time."""
        while True:
            await asyncio.sleep(0.25)
            now = self.loop.time()
            while self.deadlines and self.deadlines[0][0] <= now:
                fut = self.pending.pop(self.deadlines.popleft()[1], None)
                if fut is not None:
                    fut.set_result(None)


def _name_end(msg: bytes, at: int) -> int:
    while msg[at] and msg[at] < 0xC0:
        at += msg[at] + 1
    return at + (2 if msg[at] else 1)


def _name(msg: bytes, at: int) -> str:
    labels = []
    while msg[at]:
        if msg[at] >= 0xC0:
            at = int.from_bytes(msg[at:at + 2], "big") & 0x3FFF
            continue
        labels.append(msg[at + 1:at + 1 + msg[at]].decode("ascii", "replace"))
        at += msg[at] + 1
    return ".".join(labels).lower()


def _answers(msg: bytes | None, qtype: int) -> list[tuple[bytes, int]]:
    """(message, RDATA offset) of each answer record of `qtype`."""
    if msg is None or len(msg) < 12:
        return []
    at = _name_end(msg, 12) + 4
    found = []
    for _ in range(int.from_bytes(msg[6:8], "big")):
        at = _name_end(msg, at)
        rtype, _, _, rdlen = struct.unpack_from("!HHIH", msg, at)
        at += 10
        if rtype == qtype:
            found.append((msg, at))
        at += rdlen
    return found


async def _resolve_and_probe(domains: list[str], resolver: tuple[str, int], port: int,
                             probes: int, greeting_s: float, deadline_s: float,
                             policies: bool, dns_s: float = 2.0) -> dict[str, Any]:
    """Each domain's MX, each MX host's A and AAAA (once), each new address probed once."""
    loop = asyncio.get_running_loop()
    ctx = _context()
    # the scanner's two resolvers (MX and addresses; policy records) each allow 200 in flight
    dns_client = _Dns(dns_s, 2 * Limits().dns_in_flight)
    await loop.create_datagram_endpoint(lambda: dns_client, remote_addr=resolver)
    sweeper = loop.create_task(dns_client.sweep())
    probe_sem, domain_sem = asyncio.Semaphore(probes), asyncio.Semaphore(probes)
    hosts: dict[str, asyncio.Future[list[str]]] = {}
    probed: set[str] = set()
    counts: dict[str, int] = {}

    async def addresses(name: str, fut: asyncio.Future[list[str]]) -> None:
        a, aaaa = await dns_client.ask([(name, _A), (name, _AAAA)])
        found = [socket.inet_ntop(socket.AF_INET, m[at:at + 4]) for m, at in _answers(a, _A)]
        found += [socket.inet_ntop(socket.AF_INET6, m[at:at + 16])
                  for m, at in _answers(aaaa, _AAAA)]
        fut.set_result(found)

    async def one_probe(ip: str) -> None:
        async with probe_sem:
            result = await probe(ip, port, ctx, greeting_s, deadline_s)
        counts[result] = counts.get(result, 0) + 1

    async def unread(queries: list[tuple[str, int]]) -> None:
        await dns_client.ask(queries)  # asked, and the replies not looked at

    async def domain(name: str) -> None:
        async with domain_sem:
            if policies:
                tg.create_task(unread([(p + name, _TXT) for p in _POLICY_TXT]))
            reply = (await dns_client.ask([(name, _MX)]))[0]
            mx = [_name(m, at + 2) for m, at in _answers(reply, _MX)]
            new = [host for host in mx or [name] if host not in hosts]
            for host in new:
                hosts[host] = loop.create_future()
                tg.create_task(addresses(host, hosts[host]))
            if policies and new:
                tg.create_task(unread([(f"_25._tcp.{host}", _TLSA) for host in new]))
            for host in mx or [name]:
                for ip in await hosts[host]:
                    if ip not in probed:
                        probed.add(ip)
                        tg.create_task(one_probe(ip))

    async with asyncio.TaskGroup() as tg:
        for name in domains:
            tg.create_task(domain(name))
    sweeper.cancel()
    if dns_client.transport is not None:  # layers.py runs this in its own process, repeatedly
        dns_client.transport.close()
    return {"probes": len(probed), "reached": counts, "dns_queries": dns_client.queries}


def _client(args: argparse.Namespace) -> int:

    if args.dns:
        lab = json.loads((args.lab / "lab.json").read_text())
        host, _, port = lab["resolver"].rpartition(":")
        domains = args.domains_file.read_text().split()
        out = event_loop.run(_resolve_and_probe(
            domains, (host, int(port)), int(lab["smtp_port"]), args.concurrency, args.greeting,
            args.deadline, policies=args.dns == "dns+policies"), args.loop)
        print(json.dumps({"domains": len(domains), **out}))
        return 0
    hosts = served_hosts(args.lab, ["ip", "port"])
    targets = list(zip(hosts.column("ip").to_pylist(), hosts.column("port").to_pylist(),
                       strict=True))[:args.limit]
    counts = event_loop.run(probe_all(targets, args.concurrency, args.greeting, args.deadline),
                            args.loop)
    print(json.dumps({"probes": len(targets), "reached": counts}))
    return 0


def run_floor(lab_dir: Path, work: Path, concurrency: int = 2000, limit: int | None = None,
              greeting_s: float = 10.0, deadline_s: float = 30.0, dns: str | None = None,
              loop: str = "auto") -> dict[str, Any]:
    """Run the floor client over a running lab's hosts in its own measured process.

    With `dns` ("dns" or "dns+policies") it resolves the covering domains instead
    (`floor_domains`), doing the scanner's DNS wire steps as well.
    """
    log = work / "floor.log"
    log.unlink(missing_ok=True)
    # -m, not the script's path: a script is compiled at every start, a module is not
    args = [sys.executable, "-m", "floor", "--client", "--lab",
            str(lab_dir), "--concurrency", str(concurrency), "--greeting", str(greeting_s),
            "--deadline", str(deadline_s), "--loop", loop]
    if limit:
        args += ["--limit", str(limit)]
    if dns:
        args += ["--dns", dns, "--domains-file", str(floor_domains(lab_dir, work))]
    run = run_measured(args, log=log, env=scanner_env())
    out = json.loads(log.read_text().strip().splitlines()[-1])
    return {"bench": "floor", **as_dict(run), "cpu_s": round(run.cpu_s, 3), **out,
            "cpu_ms_per_probe": round(1000 * run.cpu_s / out["probes"], 3)}


def floor_domains(lab_dir: Path, work: Path) -> Path:
    """A file of lab domains whose MX hosts together cover every lab address (made once)."""
    from peers import cover_domains

    path = work / "floor-domains.txt"
    if not path.exists() or path.stat().st_mtime < (lab_dir / "lab.json").stat().st_mtime:
        ips = set(served_hosts(lab_dir, ["ip"]).column("ip").to_pylist())
        path.write_text("\n".join(cover_domains(lab_dir, ips)) + "\n")
    return path


def run_scanner_on_hosts(lab_dir: Path, work: Path, concurrency: int = 2000,
                         extra: tuple[str, ...] = (), loop: str = "auto") -> dict[str, Any]:
    """The scanner over the same hosts: one covering domain per host, so probes == hosts."""
    import shutil

    from survey import BENCH_TIMEOUTS

    domains = floor_domains(lab_dir, work)
    out = work / ("floor-scan" + "".join(extra))
    shutil.rmtree(out, ignore_errors=True)
    args = [sys.executable, "-m", "scanner", "scan", str(domains), "-o", str(out), "--lab",
            str(lab_dir), "--loop", loop, "--no-progress", "--concurrency", str(concurrency),
            *BENCH_TIMEOUTS, *extra]
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
    p.add_argument("--rounds", type=int, default=1,
                   help="interleaved rounds of all runs; ratios are the rounds' medians")
    p.add_argument("--greeting", type=float, default=10.0, help="greeting timeout (s)")
    p.add_argument("--deadline", type=float, default=30.0, help="per-address deadline (s)")
    p.add_argument("--dns", choices=("dns", "dns+policies"), help=argparse.SUPPRESS)
    p.add_argument("--loop", choices=EVENT_LOOPS, default="auto",
                   help="event loop of the floor clients and the scanner alike (default: the "
                        "scanner's own, uvloop when installed)")
    p.add_argument("--domains-file", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--work", type=Path, default=ROOT / "results" / "bench")
    args = p.parse_args(argv)
    if args.client:
        return _client(args)
    args.loop = event_loop.resolve(args.loop)
    args.work.mkdir(parents=True, exist_ok=True)
    speed = openssl_speed()
    if args.lab is not None:
        result = _floor_and_scanner(args.lab, args)
    else:
        with national_lab(args.domains, args.work) as lab:
            result = _floor_and_scanner(lab.directory, args)
    result.update(date=today(), machine=machine(), commit=commit(), openssl=speed,
                  loop=args.loop, n_rounds=args.rounds)
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
                       result["floor_dns"]["cpu_ms_per_probe"],
                       result["ratio_no_policies_to_dns_floor"],
                       result["floor_dns_policies"]["cpu_ms_per_probe"],
                       result["ratio_to_dns_policies_floor"],
                       speed.get("client_handshake_crypto_us", "n/a"),
                       result["loop"] + (f", median of {args.rounds} rounds"
                                         if args.rounds > 1 else "")])
    return 0


FLOOR_HEADER = ["date (UTC)", "commit", "hosts", "floor CPU s", "floor CPU ms/probe",
                "scanner domains", "scanner CPU s", "scanner CPU ms/probe", "scanner/floor",
                "--no-policies CPU s", "--no-policies CPU ms/probe", "--no-policies/floor",
                "floor+DNS ms/probe", "--no-policies/floor+DNS",
                "floor+DNS+policy queries ms/probe", "scanner/floor+DNS+policy queries",
                "OpenSSL client handshake crypto µs", "event loop (all runs)"]


_RUNS = ("scanner", "scanner_no_policies", "floor_dns", "floor_dns_policies")
#: (ratio, the scanner run, the floor run it is divided by; None: the bare floor)
_RATIOS = (("ratio", "scanner", None), ("ratio_no_policies", "scanner_no_policies", None),
           ("ratio_no_policies_to_dns_floor", "scanner_no_policies", "floor_dns"),
           ("ratio_to_dns_policies_floor", "scanner", "floor_dns_policies"))


def _floor_and_scanner(lab_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    """`args.rounds` interleaved rounds of the five runs; medians when more than one.

    The machines are noisy: a single run's CPU varies by 10-20 % from one minute to the next,
    so the ratios of one round are of runs minutes apart. With several rounds each ratio is
    the median of its per-round ratios, and each run reported is the round's median run.
    """
    rounds = [_one_round(lab_dir, args) for _ in range(args.rounds)]
    if len(rounds) == 1:
        return rounds[0]
    middle = median_run(rounds, _cpu)
    result = dict(middle)
    for key in _RUNS:
        if key in rounds[0]:
            result[key] = median_run([r[key] for r in rounds], _cpu)
    for ratio, _, _ in _RATIOS:
        if ratio in rounds[0]:
            result[ratio] = round(statistics.median(r[ratio] for r in rounds), 2)
    result["rounds"] = [_round_summary(r) for r in rounds]
    return result


def _round_summary(r: dict[str, Any]) -> dict[str, float]:
    """CPU ms per probe of each run of a round, and its ratios."""
    runs = {"floor": r["cpu_ms_per_probe"]} | {
        k: r[k]["cpu_ms_per_probe"] for k in _RUNS if k in r}
    return runs | {ratio: r[ratio] for ratio, _, _ in _RATIOS if ratio in r}


def _cpu(run: dict[str, Any]) -> float:
    return float(run["cpu_ms_per_probe"])


def _one_round(lab_dir: Path, args: argparse.Namespace) -> dict[str, Any]:
    result = run_floor(lab_dir, args.work, args.concurrency, args.limit, loop=args.loop)
    if args.no_scanner:
        return result
    result["scanner"] = run_scanner_on_hosts(lab_dir, args.work, args.concurrency,
                                             loop=args.loop)
    # the same wire steps as the floor, with only the MX and address lookups besides
    result["scanner_no_policies"] = run_scanner_on_hosts(
        lab_dir, args.work, args.concurrency, ("--no-policies",), loop=args.loop)
    # the floors that also do the scanner's DNS queries, over the same domains
    for key, dns in (("floor_dns", "dns"), ("floor_dns_policies", "dns+policies")):
        result[key] = run_floor(lab_dir, args.work, args.concurrency, args.limit, dns=dns,
                                loop=args.loop)
    for ratio, scan_key, floor_key in _RATIOS:
        floor = result if floor_key is None else result[floor_key]
        result[ratio] = round(result[scan_key]["cpu_ms_per_probe"] / floor["cpu_ms_per_probe"],
                              2)
    return result


if __name__ == "__main__":
    raise SystemExit(main())
