"""Two commits of the scanner on one lab, in alternating pairs: what a change did to the CPU.

This machine's speed drifts by 10-20 % within an hour, more than most changes make, so two
survey rows an hour apart cannot tell a change from the drift. Here the two sides scan the
same domains of one running lab by turns (old, new, then new, old, ...), and each pair's
ratio is of two runs a minute apart; the median of the pairs' ratios is the figure.

Each side runs from a tree of its own: a detached `git worktree` of its commit under
`--work` (removed afterwards), or the working tree itself for `.`. The scanner is started as
`python -m scanner scan` with that tree first on PYTHONPATH and the tree as the current
directory: `python -m` puts the current directory first on `sys.path`, so run from the
repository's root both sides would run the checked-out code. Before measuring, each side is
asked which `scanner` it imports, and the run stops when it is not its own tree's.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import survey  # noqa: E402
from common import (  # noqa: E402
    ROOT,
    ChildRun,
    append_row,
    as_dict,
    emit,
    machine,
    run_measured,
    today,
)

#: the working tree, uncommitted changes included, as one side
WORKING_TREE = "."


def _git(*args: str) -> str:
    return subprocess.run(["git", "-C", str(ROOT), *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@contextmanager
def side_tree(rev: str, work: Path) -> Iterator[tuple[str, Path]]:
    """(short commit or ".", the tree to run) of one side; a worktree lives while in use."""
    if rev == WORKING_TREE:
        yield WORKING_TREE, ROOT
        return
    sha = _git("rev-parse", "--verify", "--short", f"{rev}^{{commit}}")
    tree = Path(tempfile.mkdtemp(prefix=f"ab-{sha}-", dir=work))
    tree.rmdir()  # git makes the directory itself
    _git("worktree", "add", "--detach", str(tree), sha)
    try:
        yield sha, tree
    finally:
        _git("worktree", "remove", "--force", str(tree))


def side_env(tree: Path) -> dict[str, str]:
    """The measured environment of a side: its tree first on PYTHONPATH, bytecode written."""
    for package in ("scanner", "benchmarks"):
        if (tree / package).is_dir():
            compileall.compile_dir(tree / package, quiet=1)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, (str(tree), env.get("PYTHONPATH"))))
    return env


def imported_scanner(tree: Path, env: dict[str, str]) -> Path:
    """Where `python -m scanner`, started as a side is, finds the package."""
    out = subprocess.run([sys.executable, "-c", "import scanner; print(scanner.__file__)"],
                         cwd=tree, env=env, check=True, capture_output=True, text=True).stdout
    return Path(out.strip()).resolve().parent


def sample_domains(lab_dir: Path, n: int | None, seed: int, out: Path) -> Path:
    """The lab's domains, or a seeded random sample of n of them, one per line."""
    domains = (lab_dir / "domains.txt").read_text().split()
    if n is not None and n < len(domains):
        domains = random.Random(seed).sample(domains, n)
    out.write_text("\n".join(domains) + "\n")
    return out


def scan_command(domains: Path, lab_dir: Path, out: Path, extra: Sequence[str]) -> list[str]:
    """The measured scanner command line: the survey's, over `domains`."""
    return [sys.executable, "-m", "scanner", "scan", str(domains), "-o", str(out), "--lab",
            str(lab_dir), "--no-progress", "--concurrency", "2000", *survey.BENCH_TIMEOUTS,
            *extra]


def run_pairs(old: str, new: str, lab_dir: Path, work: Path, *, pairs: int = 4,
              sample: int | None = None, seed: int = 1,
              extra: Sequence[str] = ()) -> dict[str, Any]:
    """`pairs` alternating scans of each side over the same domains; the result dict."""
    work.mkdir(parents=True, exist_ok=True)
    domains = sample_domains(lab_dir, sample, seed, work / "ab-domains.txt")
    with side_tree(old, work) as (old_id, old_tree), side_tree(new, work) as (new_id, new_tree):
        sides = {"old": (old_id, old_tree, side_env(old_tree)),
                 "new": (new_id, new_tree, side_env(new_tree))}
        for name, (rev, tree, env) in sides.items():
            found = imported_scanner(tree, env)
            if found != (tree / "scanner").resolve():
                raise SystemExit(f"ab: the {name} side ({rev}) imports {found}, not its own tree")
        runs: dict[str, list[ChildRun]] = {"old": [], "new": []}
        for i in range(pairs):
            for name in ("old", "new") if i % 2 == 0 else ("new", "old"):
                rev, tree, env = sides[name]
                out = work / f"ab-scan-{name}"
                shutil.rmtree(out, ignore_errors=True)
                run = run_measured(scan_command(domains, lab_dir, out, extra),
                                   log=work / f"ab-{name}.log", env=env, cwd=tree)
                if run.returncode != 0:
                    raise SystemExit(f"ab: the {name} side ({rev}) exited with "
                                     f"{run.returncode}; see {work / f'ab-{name}.log'}")
                runs[name].append(run)
        counts = {name: json.loads((work / f"ab-scan-{name}" / "manifest.json").read_text())
                  ["counts"] for name in sides}
    ratios = [n.cpu_s / o.cpu_s for o, n in zip(runs["old"], runs["new"], strict=True)]
    return {
        "bench": "ab", "date": today(), "machine": machine(), "old": old_id, "new": new_id,
        "domains": len(domains.read_text().split()), "pairs": pairs, "extra": " ".join(extra),
        "old_cpu_s": [round(r.cpu_s, 2) for r in runs["old"]],
        "new_cpu_s": [round(r.cpu_s, 2) for r in runs["new"]],
        "old_mean_cpu_s": round(statistics.mean(r.cpu_s for r in runs["old"]), 2),
        "new_mean_cpu_s": round(statistics.mean(r.cpu_s for r in runs["new"]), 2),
        "ratios": [round(r, 3) for r in ratios],
        "median_ratio": round(statistics.median(ratios), 3),
        "old_max_rss_mib": round(max(r.max_rss_mib for r in runs["old"]), 1),
        "new_max_rss_mib": round(max(r.max_rss_mib for r in runs["new"]), 1),
        # a speed change should not change what the scan found
        "same_classes": counts["old"]["starttls_class"] == counts["new"]["starttls_class"],
        "last_runs": {name: as_dict(runs[name][-1]) for name in runs},
    }


AB_HEADER = ["date (UTC)", "old", "new", "domains", "scanner options", "pairs",
             "old CPU s (each)", "new CPU s (each)", "new/old by pair", "median new/old",
             "peak RSS MiB old / new", "same classes"]


def result_row(r: dict[str, Any]) -> list[Any]:
    """The RESULTS.md row of an A/B result."""
    return [r["date"], r["old"], r["new"], f"{r['domains']:,}", r["extra"] or "(none)",
            r["pairs"], ", ".join(map(str, r["old_cpu_s"])), ", ".join(map(str, r["new_cpu_s"])),
            ", ".join(f"{x:.2f}" for x in r["ratios"]), f"{r['median_ratio']:.3f}",
            f"{r['old_max_rss_mib']:.0f} / {r['new_max_rss_mib']:.0f}",
            "yes" if r["same_classes"] else "no"]


def main(argv: list[str] | None = None) -> int:
    """Command line: see --help."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", help="the commit to compare against (any git revision)")
    p.add_argument("new", nargs="?", default=WORKING_TREE,
                   help="the changed commit; '.' (default) is the working tree as it is")
    p.add_argument("--lab", type=Path, help="a running lab's directory (default: start one)")
    p.add_argument("--lab-domains", type=int, default=345_000,
                   help="size of the norway-2010 lab started when there is no --lab")
    p.add_argument("--sample", type=int, default=40_000,
                   help="scan a seeded random sample of this many of the lab's domains "
                        "(0: all)")
    p.add_argument("--seed", type=int, default=1, help="of the sample")
    p.add_argument("--pairs", type=int, default=4)
    p.add_argument("--work", type=Path, default=ROOT / "results" / "bench")
    p.add_argument("--no-record", action="store_true", help="do not append to RESULTS.md")
    p.epilog = "Options after -- go to both sides' scans (e.g. -- --no-policies)."
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = p.parse_args(argv[:cut]), argv[cut + 1:]
    sample = args.sample or None
    if args.lab is not None:
        result = run_pairs(args.old, args.new, args.lab, args.work, pairs=args.pairs,
                           sample=sample, seed=args.seed, extra=extra)
    else:
        from scanner.lab.serve import LabProcess

        lab_dir = args.work / f"lab-norway-2010-{args.lab_domains}-1"
        with LabProcess.start("norway-2010", args.lab_domains, 1, lab_dir,
                              latency_ms=(20, 300), timeout=1800.0) as lab:
            result = run_pairs(args.old, args.new, lab.directory, args.work,
                               pairs=args.pairs, sample=sample, seed=args.seed, extra=extra)
    emit(result)
    if not args.no_record:
        append_row("A/B pairs (two commits, one lab, alternating scans of the same domains)",
                   AB_HEADER, result_row(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
