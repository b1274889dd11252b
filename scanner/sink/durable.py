"""Crash-safe output: temp + fsync + rename, the commit log that decides what a scan wrote,
and opening an output directory for a new or a resumed scan.

A part file counts only once its checkpoint's line is in `OUTDIR/_commits.jsonl`: a crash between
the rename of a part and its commit line leaves an uncommitted part, which readers ignore and
`--resume` deletes.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanner.sink.schema import DATASETS

COMMIT_LOG = "_commits.jsonl"
MANIFEST = "manifest.json"
log = logging.getLogger(__name__)

_PART_RE = re.compile(r"^part-(\d{6,})\.parquet$")


class OutputError(Exception):
    """The output directory cannot be used or written: reported as one line, never a traceback."""


def part_name(seq: int) -> str:
    """File name of the part written by checkpoint `seq`."""
    return f"part-{seq:06d}.parquet"


def part_seq(name: str) -> int | None:
    """The checkpoint number of a part file name; None for anything else."""
    match = _PART_RE.match(name)
    return int(match.group(1)) if match else None


def describe_os_error(exc: OSError, path: Path | str) -> str:
    """One line for an OSError: what failed, where."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    return f"cannot write {path}: {reason}"


def fsync_dir(path: Path) -> None:
    """Make renames and creations inside a directory durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that readers see the old or the new file, never a mix."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(describe_os_error(exc, path)) from exc


@dataclass(frozen=True, slots=True)
class Commit:
    """One committed checkpoint: its part files (relative to OUTDIR) and row counts."""

    seq: int
    files: tuple[str, ...]
    rows: dict[str, int]
    time: str


def _parse_line(line: bytes) -> Commit | None:
    try:
        data = json.loads(line)
        return Commit(seq=int(data["seq"]), files=tuple(str(f) for f in data["files"]),
                      rows={str(k): int(v) for k, v in data["rows"].items()},
                      time=str(data.get("time", "")))
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _scan_log(path: Path) -> tuple[list[Commit], int]:
    """Committed checkpoints and the byte length of the log's valid prefix."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return [], 0
    commits: list[Commit] = []
    good = 0
    pos = 0
    for line in raw.splitlines(keepends=True):
        pos += len(line)
        # a crash while appending leaves a last line without newline (or half-written): not
        # committed, and everything after the first bad line is ignored
        commit = _parse_line(line) if line.endswith(b"\n") else None
        if commit is None:
            break
        commits.append(commit)
        good = pos
    return commits, good


def read_commits(outdir: Path) -> list[Commit]:
    """The committed checkpoints of an output directory, in order (empty when none)."""
    return _scan_log(outdir / COMMIT_LOG)[0]


def committed_files(outdir: Path, dataset: str) -> list[Path]:
    """Committed part files of one dataset, in checkpoint order."""
    prefix = dataset + "/"
    return [outdir / f for c in read_commits(outdir) for f in c.files if f.startswith(prefix)]


class CommitLog:
    """Appends checkpoints to `OUTDIR/_commits.jsonl`, each line fsynced before it counts."""

    def __init__(self, outdir: Path) -> None:
        self.path = outdir / COMMIT_LOG
        commits, good = _scan_log(self.path)
        self.commits = commits
        self._size = good

    def repair(self) -> None:
        """Cut a torn last line, so the next append starts on a line of its own."""
        if self.path.exists() and self.path.stat().st_size != self._size:
            with open(self.path, "r+b") as fh:
                fh.truncate(self._size)
                os.fsync(fh.fileno())

    @property
    def last_seq(self) -> int:
        """The highest committed checkpoint number (0 when none)."""
        return max((c.seq for c in self.commits), default=0)

    def committed_paths(self) -> set[str]:
        """Every committed part file, relative to OUTDIR."""
        return {f for c in self.commits for f in c.files}

    def append(self, seq: int, files: Iterable[str], rows: dict[str, int]) -> Commit:
        """Record a checkpoint durably; on failure the log is cut back and OutputError raised."""
        commit = Commit(seq=seq, files=tuple(files), rows=dict(rows),
                        time=datetime.now(UTC).isoformat())
        line = json.dumps({"seq": commit.seq, "files": list(commit.files), "rows": commit.rows,
                           "time": commit.time}, sort_keys=True).encode() + b"\n"
        created = not self.path.exists()
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                try:
                    written = 0
                    while written < len(line):
                        written += os.write(fd, line[written:])
                    os.fsync(fd)
                except OSError:
                    os.ftruncate(fd, self._size)  # a half line would hide every later commit
                    raise
            finally:
                os.close(fd)
            if created:
                fsync_dir(self.path.parent)
        except OSError as exc:
            raise OutputError(describe_os_error(exc, self.path)) from exc
        self._size += len(line)
        self.commits.append(commit)
        return commit


def iter_parts(directory: Path) -> Iterator[tuple[Path, int]]:
    """Part files (committed or not) in one dataset directory, with their checkpoint numbers."""
    if not directory.is_dir():
        return
    for entry in directory.iterdir():
        seq = part_seq(entry.name)
        if seq is not None:
            yield entry, seq


def load_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file (OutputError when it is not one)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise OutputError(f"cannot read {path}: not a JSON object")
    return data


def _prepare_dir(outdir: Path) -> None:
    """Create outdir and the dataset directories (OutputError when that is impossible)."""
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        for name in DATASETS:
            (outdir / name).mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot use output directory {outdir}: "
                          f"{exc.strerror or exc}") from exc


def open_new(outdir: Path) -> CommitLog:
    """The commit log of a new scan's directory; OutputError when it already holds datasets."""
    try:
        used = outdir.is_dir() and ((outdir / COMMIT_LOG).exists()
                                    or any(any(iter_parts(outdir / n)) for n in DATASETS))
    except OSError as exc:
        raise OutputError(f"cannot use output directory {outdir}: "
                          f"{exc.strerror or exc}") from exc
    if used:
        raise OutputError(f"{outdir} exists; use --resume or a new directory")
    _prepare_dir(outdir)
    return CommitLog(outdir)


def open_for_resume(outdir: Path) -> CommitLog:
    """The commit log of a scan to continue; temporary and uncommitted part files are deleted."""
    _prepare_dir(outdir)
    commit_log = CommitLog(outdir)
    committed = commit_log.committed_paths()
    try:
        commit_log.repair()
        for name in DATASETS:
            for entry in (outdir / name).glob("*.tmp"):
                entry.unlink()
            for entry, _seq in iter_parts(outdir / name):
                if f"{name}/{entry.name}" not in committed:
                    # renamed but never committed: a crash between rename and commit
                    log.info("removing uncommitted part %s", entry)
                    entry.unlink()
    except OSError as exc:
        raise OutputError(describe_os_error(exc, outdir)) from exc
    return commit_log
