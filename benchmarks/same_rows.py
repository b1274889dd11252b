"""Two trees of the scanner on one lab: the same rows, timing columns aside.

A change that should not change what a scan finds (a refactoring, a speed-up) is checked here:
each side scans the same domains of one running lab (so the same ports and certificates), and
every dataset's committed rows are compared as multisets (part files are written in the order
probes finish), leaving out the columns that time the scan (`*_ms`, `*_at`) and `hosts`'
`mx_hostnames`, the names that had led to an address by the time its probe ended (two scans of
one lab by one commit differ there, by the order domains arrive in). A side is a git
revision (a detached worktree, removed afterwards, as `ab.py` makes), `.` for the working
tree, or a directory holding a scanner/ tree. Prints one line per dataset and a few rows found
on one side only; exit 1 when any dataset differs.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ab import imported_scanner, sample_domains, scan_command, side_env, side_tree  # noqa: E402
from common import ROOT  # noqa: E402

from scanner.sink.dataset import read_dataset  # noqa: E402
from scanner.sink.schema import DATASETS  # noqa: E402

#: (dataset, column) that two runs of one commit on one lab write differently
RUN_DEPENDENT = frozenset({("hosts", "mx_hostnames")})


def timing(dataset: str, column: str) -> bool:
    """A column that times the scan, or depends on the order of its events."""
    return column.endswith(("_ms", "_at")) or (dataset, column) in RUN_DEPENDENT


def _rows(outdir: Path, name: str) -> Counter[str]:
    table = read_dataset(outdir, name)
    kept = [c for c in table.column_names if not timing(name, c)]
    return Counter(json.dumps(row, sort_keys=True, default=repr)
                   for row in table.select(kept).to_pylist())


def differences(a: Path, b: Path) -> dict[str, dict[str, Any]]:
    """Per dataset: the rows of each side, and the rows found on one side only."""
    out = {}
    for name in DATASETS:
        ra, rb = _rows(a, name), _rows(b, name)
        out[name] = {"a_rows": ra.total(), "b_rows": rb.total(),
                     "only_a": sorted((ra - rb).elements()),
                     "only_b": sorted((rb - ra).elements())}
    return out


@contextmanager
def _tree(side: str, work: Path) -> Iterator[tuple[str, Path]]:
    if side != "." and (Path(side) / "scanner").is_dir():
        yield side, Path(side).resolve()
        return
    with side_tree(side, work) as found:
        yield found


def scan_both(old: str, new: str, lab_dir: Path, work: Path, *, sample: int | None = None,
              extra: Sequence[str] = ()) -> tuple[Path, Path]:
    """One scan of the lab's domains by each side; their results directories."""
    work.mkdir(parents=True, exist_ok=True)
    domains = sample_domains(lab_dir, sample, 1, work / "same-rows-domains.txt")
    outs = []
    with _tree(old, work) as (old_id, old_tree), _tree(new, work) as (new_id, new_tree):
        for name, rev, tree in (("old", old_id, old_tree), ("new", new_id, new_tree)):
            env = side_env(tree)
            found = imported_scanner(tree, env)
            if found != (tree / "scanner").resolve():
                raise SystemExit(f"same_rows: the {name} side ({rev}) imports {found}")
            out = work / f"same-rows-{name}"
            shutil.rmtree(out, ignore_errors=True)
            with open(work / f"same-rows-{name}.log", "wb") as log:
                code = subprocess.run(scan_command(domains, lab_dir, out, extra), cwd=tree,
                                      env=env, stdout=log, stderr=subprocess.STDOUT).returncode
            if code != 0:
                raise SystemExit(f"same_rows: the {name} side ({rev}) exited with {code}")
            outs.append(out)
    return outs[0], outs[1]


def report(diff: dict[str, dict[str, Any]], shown: int = 3) -> tuple[bool, str]:
    """(every dataset the same, the lines to print)."""
    lines, same = [], True
    for name, d in diff.items():
        ok = not d["only_a"] and not d["only_b"]
        same &= ok
        lines.append(f"{name:13} {d['a_rows']:8,} rows / {d['b_rows']:8,} rows  " + (
            "same" if ok else f"{len(d['only_a'])} only in old, {len(d['only_b'])} only in new"))
        lines += [f"  old: {row[:300]}" for row in d["only_a"][:shown]]
        lines += [f"  new: {row[:300]}" for row in d["only_b"][:shown]]
    return same, "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Command line: see --help."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("old", nargs="?", help="git revision, '.' or a directory holding scanner/")
    p.add_argument("new", nargs="?", default=".", help="the same; default '.', the working tree")
    p.add_argument("--lab", type=Path, help="a running lab's directory (default: start one)")
    p.add_argument("--profile", default="mixed", help="of the lab started (default mixed)")
    p.add_argument("--domains", type=int, default=200, help="of the lab started (default 200)")
    p.add_argument("--seed", type=int, default=1, help="of the lab started (default 1)")
    p.add_argument("--sample", type=int, default=0,
                   help="scan a seeded random sample of this many domains (default 0: all)")
    p.add_argument("--work", type=Path, default=ROOT / "results" / "bench",
                   help="where the scans are written (default results/bench)")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("OLD_OUT", "NEW_OUT"),
                   help="only compare two results directories already written (default: scan)")
    p.epilog = "Options after -- go to both sides' scans (e.g. -- --no-policies)."
    argv = sys.argv[1:] if argv is None else list(argv)
    cut = argv.index("--") if "--" in argv else len(argv)
    args, extra = p.parse_args(argv[:cut]), argv[cut + 1:]
    if args.compare:
        a, b = args.compare
    elif args.old is None:
        p.error("give OLD (and NEW), or --compare OLD_OUT NEW_OUT")
    elif args.lab is not None:
        a, b = scan_both(args.old, args.new, args.lab, args.work, sample=args.sample or None,
                         extra=extra)
    else:
        from scanner.lab.serve import LabProcess

        lab_dir = args.work / f"lab-{args.profile}-{args.domains}-{args.seed}"
        with LabProcess.start(args.profile, args.domains, args.seed, lab_dir,
                              timeout=1800.0) as lab:
            a, b = scan_both(args.old, args.new, lab.directory, args.work,
                             sample=args.sample or None, extra=extra)
    same, text = report(differences(a, b))
    print(text)
    return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
