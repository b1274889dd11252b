"""Shared benchmark helpers: machine and commit facts, child-process CPU/RSS, RESULTS.md rows."""

from __future__ import annotations

import json
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
RESULTS_MD = ROOT / "benchmarks" / "RESULTS.md"
CLK_TCK = os.sysconf("SC_CLK_TCK")


def machine() -> str:
    """`<cpus> x <model>, <RAM> GiB, <kernel>`: enough to compare rows of RESULTS.md."""
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    return f"{os.cpu_count()} x {model}, {mem_kb / 2**20:.0f} GiB, Linux {platform.release()}"


def commit() -> str:
    """The short commit of the working tree, `+dirty` when scanner/ has uncommitted edits."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "scanner"],
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


@dataclass(frozen=True, slots=True)
class ChildRun:
    """What one measured child process used: wall, user+sys CPU, peak RSS."""

    returncode: int
    wall_s: float
    user_s: float
    sys_s: float
    max_rss_mib: float
    timed_out: bool = False
    #: RSS (MiB) at each tenth of the run, sampled from /proc every second: where memory grows
    rss_by_tenth: tuple[float, ...] = ()

    @property
    def cpu_s(self) -> float:
        """User plus system CPU seconds."""
        return self.user_s + self.sys_s


def run_measured(args: list[str], *, log: Path, env: dict[str, str] | None = None,
                 timeout: float | None = None, cwd: Path = ROOT) -> ChildRun:
    """Run `args` to completion: its own CPU (os.wait4) and memory (/proc), not other children's.

    `cwd` is also where `python -m` looks first for the module it runs.
    """
    t0 = time.monotonic()
    with open(log, "ab") as out:
        # its own process group, so a timeout stops the whole pipeline (sh, xargs, openssl...)
        proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=env, cwd=cwd, start_new_session=True)
    deadline = None if timeout is None else t0 + timeout
    timed_out = False
    samples: list[tuple[float, float]] = []
    next_sample = t0
    peak: float | None = None
    own = "\0".join(map(str, args)) + "\0"
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        memory = _own_memory_mib(proc.pid, own)
        if memory is not None:
            peak = memory[1]
            if time.monotonic() >= next_sample:
                next_sample += 1.0
                samples.append((time.monotonic() - t0, memory[0]))
        if deadline is not None and time.monotonic() > deadline:
            timed_out = True
            os.killpg(proc.pid, signal.SIGKILL)
            pid, status, usage = os.wait4(proc.pid, 0)
            break
        time.sleep(0.05)
    wall = time.monotonic() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    # ru_maxrss is no use here: it counts the memory the child shared with this process between
    # fork and exec (a benchmark that has loaded a 345k-domain truth reports its own size)
    max_rss = peak if peak is not None else usage.ru_maxrss / 1024
    return ChildRun(proc.returncode, wall, usage.ru_utime, usage.ru_stime, max_rss,
                    timed_out, _by_tenth(samples, wall))


def _own_memory_mib(pid: int, cmdline: str) -> tuple[float, float] | None:
    """(RSS, peak RSS) of the process once it runs `cmdline`; None before its exec or after it.

    VmHWM belongs to the memory of the program exec'd, so unlike ru_maxrss it leaves out what
    the child held of its parent before exec; it is read every 50 ms, so growth in a process's
    last 50 ms can be missed.
    """
    try:
        if Path(f"/proc/{pid}/cmdline").read_text() != cmdline:
            return None
        fields = dict(line.split(":", 1) for line in
                      Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, ValueError, KeyError, IndexError):
        return None


def _by_tenth(samples: list[tuple[float, float]], wall: float) -> tuple[float, ...]:
    """The largest sample within each tenth of the run (empty when too short to sample)."""
    if len(samples) < 10:
        return ()
    tenths = [0.0] * 10
    for t, rss in samples:
        i = min(9, int(10 * t / wall))
        tenths[i] = max(tenths[i], round(rss, 1))
    return tuple(tenths)


def tree_cpu_s(pid: int) -> float:
    """User+sys CPU seconds of a live process and its live descendants (from /proc)."""
    total = 0.0
    stack = [pid]
    while stack:
        p = stack.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / CLK_TCK
            for task in Path(f"/proc/{p}/task").iterdir():
                children = (task / "children").read_text().split()
                stack.extend(int(c) for c in children)
        except (OSError, ValueError, IndexError):
            continue
    return total


def national_lab(domains: int, work: Path) -> Any:
    """Start (and, as a context manager, stop) the `norway-2010` lab of `domains` domains the
    floor benchmarks measure on: seed 1, 20-300 ms per-host latency, under `work`."""
    from scanner.lab.serve import LabProcess

    return LabProcess.start("norway-2010", domains, 1, work / f"lab-norway-2010-{domains}-1",
                            latency_ms=(20, 300), timeout=1800.0)


def served_hosts(lab_dir: Path, columns: Sequence[str]) -> Any:
    """The truth's hosts a lab serves SMTP on (a pyarrow table of `columns`).

    The truth also lists the private addresses some domains' MX point at (`private-mx.test`):
    they have no behaviour, are never served, and a benchmark must never contact them.
    """
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    hosts = pq.read_table(lab_dir / "truth" / "hosts.parquet", columns=[*columns, "behaviour"])
    return hosts.filter(pc.is_valid(hosts["behaviour"])).select(list(columns))


def own_cpu_s() -> float:
    """User plus system seconds of this process so far (in-process measurements)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def children_rusage() -> tuple[float, float]:
    """User and system seconds of all waited-for children of this process so far."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime, ru.ru_stime


def scanner_env() -> dict[str, str]:
    """The environment for measured child processes: the repository and the benchmarks
    importable, their bytecode written (`compile_bytecode`)."""
    compile_bytecode()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(ROOT), str(ROOT / "benchmarks"),
                                                      env.get("PYTHONPATH"))))
    return env


def compile_bytecode() -> None:
    """Write the .pyc files of the scanner and of these benchmarks, as an installed package has.

    `make install` compiles the package once; with PYTHONDONTWRITEBYTECODE set (it is on
    some machines) every measured start would otherwise compile each module edited since:
    22 of the scan's modules, ~40 ms of CPU a start, on 2026-12-06. py_compile writes
    whatever that variable says.
    """
    import compileall

    for package in (ROOT / "scanner", ROOT / "benchmarks"):
        compileall.compile_dir(package, quiet=1)


def emit(result: dict[str, Any]) -> None:
    """Print the run's JSON line (stdout) and keep it in benchmarks/results.jsonl."""
    line = json.dumps(result, sort_keys=True)
    print(line, flush=True)
    with open(ROOT / "benchmarks" / "results.jsonl", "a") as fh:
        fh.write(line + "\n")


def append_row(section: str, header: list[str], row: list[Any]) -> None:
    """Append a row to the table under `## section` of RESULTS.md (created when missing)."""
    text = RESULTS_MD.read_text() if RESULTS_MD.exists() else "# Benchmark results\n"
    heading = f"## {section}"
    line = "| " + " | ".join(str(c) for c in row) + " |"
    if heading not in text:
        table = ("| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n")
        text = text.rstrip("\n") + f"\n\n{heading}\n\n{table}{line}\n"
    else:
        head, rest = text.split(heading, 1)
        # the section's table ends at the first blank line after its header row
        body_start = rest.index("\n|")
        end = rest.find("\n\n", body_start)
        end = len(rest.rstrip("\n")) if end < 0 else end
        rest = rest[:end] + "\n" + line + rest[end:]
        text = head + heading + rest
    RESULTS_MD.write_text(text if text.endswith("\n") else text + "\n")


def today() -> str:
    """UTC date and time, minutes."""
    return datetime.now(UTC).strftime("%Y-%m-%d %H:%M")


def python_version() -> str:
    """`3.11.x`."""
    return sys.version.split()[0]


def as_dict(run: ChildRun) -> dict[str, Any]:
    """A ChildRun as JSON-ready numbers (rounded)."""
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in asdict(run).items()}


def median_run(runs: Sequence[T], key: Callable[[T], float]) -> T:
    """The run in the middle by `key` (the lower middle one of an even count): a whole run,
    so that its figures stay those of one process."""
    return sorted(runs, key=key)[(len(runs) - 1) // 2]
