"""DatasetWriter: rows of the four datasets -> zstd Parquet part files, one checkpoint per flush.

Layout: `OUTDIR/{domains,domain_mx,hosts,certificates}/part-NNNNNN.parquet` and the commit log
`OUTDIR/_commits.jsonl`. A flush writes every non-empty buffer as `part-<seq>.parquet.tmp`,
fsyncs and renames it, then appends the checkpoint's line to the log; only then is it committed.
Every buffer goes into the same checkpoint, so a `domains` row added after the hosts,
certificates and domain_mx rows it depends on is never committed before them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import pyarrow.parquet as pq

from scanner.config import ScanConfig
from scanner.model.records import CertificateRecord, DomainMxRecord, DomainRecord, HostRecord
from scanner.sink.durable import (
    OutputError,
    describe_os_error,
    fsync_dir,
    open_for_resume,
    open_new,
    part_name,
)
from scanner.sink.packed_keys import PackedKeys, digest_key
from scanner.sink.rows import (
    ColumnBuffer,
    append_certificate,
    append_domain,
    append_domain_mx,
    append_host,
)
from scanner.sink.schema import DATASETS

__all__ = ["DatasetWriter", "OutputError"]

log = logging.getLogger(__name__)

COMPRESSION = "zstd"


@dataclass(slots=True)
class _Checkpoint:
    """Buffers taken out of the writer, waiting to be written as checkpoint `seq`."""

    seq: int
    buffers: dict[str, ColumnBuffer]


class DatasetWriter:
    """Buffers rows of the four datasets of one output directory and commits them in parts.

    `DatasetWriter(outdir, resume=False)` starts a new scan (OutputError when outdir already
    holds datasets); with resume=True it continues one: uncommitted and temporary files are
    deleted and the numbering goes on. Appends never write; `maybe_flush()` writes when a
    buffer reached batch_rows or flush_seconds passed, and `close()` writes the rest.
    """

    def __init__(self, outdir: Path, *, batch_rows: int = 5000, flush_seconds: float = 10.0,
                 resume: bool = False, clock: Callable[[], float] = time.monotonic) -> None:
        self.outdir = Path(outdir)
        self.batch_rows = batch_rows
        self.flush_seconds = flush_seconds
        self._log = open_for_resume(self.outdir) if resume else open_new(self.outdir)
        self.resumed = bool(self._log.commits)  # False when there was nothing to resume
        self._clock = clock
        self._seq = self._log.last_seq + 1
        self._buffers = {name: ColumnBuffer(name) for name in DATASETS}
        self._certificates = PackedKeys()  # digest_key of every certificate in the dataset
        self._last_flush = clock()
        self._write_lock = threading.Lock()  # checkpoints commit in order, one at a time
        self._failure: str | None = None
        self._closed = False
        self.rows_written: dict[str, int] = dict.fromkeys(DATASETS, 0)  # by this run

    @classmethod
    def create(cls, outdir: Path, *, batch_rows: int = 5000, flush_seconds: float = 10.0,
               clock: Callable[[], float] = time.monotonic) -> DatasetWriter:
        """A writer for a new scan; OutputError when outdir already holds datasets."""
        return cls(outdir, batch_rows=batch_rows, flush_seconds=flush_seconds, clock=clock)

    @classmethod
    def open_for_resume(cls, outdir: Path, *, batch_rows: int = 5000,
                        flush_seconds: float = 10.0,
                        clock: Callable[[], float] = time.monotonic) -> DatasetWriter:
        """A writer continuing a scan: uncommitted and temporary files go, numbering goes on."""
        return cls(outdir, batch_rows=batch_rows, flush_seconds=flush_seconds, resume=True,
                   clock=clock)

    @classmethod
    def for_scan(cls, config: ScanConfig) -> DatasetWriter:
        """The writer a scan's configuration asks for (output, resume, batch size, interval)."""
        return cls(config.output, batch_rows=config.limits.batch_rows,
                   flush_seconds=config.limits.flush_seconds, resume=config.resume)

    @property
    def committed_rows(self) -> dict[str, int]:
        """Rows per dataset in every committed checkpoint, earlier runs included."""
        rows = dict.fromkeys(DATASETS, 0)
        for commit in self._log.commits:
            for name, count in commit.rows.items():
                rows[name] = rows.get(name, 0) + count
        return rows

    def remember_written(self, certificates: Iterable[str]) -> None:
        """On resume: certificates committed before (their sha256) are not written again."""
        self._certificates.update(digest_key(sha) for sha in certificates)

    # -- appending -----------------------------------------------------------------------------

    def append_host(self, rec: HostRecord) -> None:
        """Buffer one `hosts` row."""
        append_host(self._buffers["hosts"], rec)

    def append_certificate(self, rec: CertificateRecord) -> bool:
        """Buffer a certificate unless this scan already has it; True when buffered."""
        if not self._certificates.add(digest_key(rec.sha256)):
            return False
        append_certificate(self._buffers["certificates"], rec)
        return True

    def append_domain_mx(self, rec: DomainMxRecord) -> None:
        """Buffer one `domain_mx` edge (before its domain's row, with no flush in between)."""
        append_domain_mx(self._buffers["domain_mx"], rec)

    def append_domain(self, rec: DomainRecord, edges: Iterable[DomainMxRecord] = ()) -> None:
        """Buffer a domain's edges and its row together, after the hosts it depends on.

        Edges and row share a checkpoint, so a resumed scan that redoes a domain whose row was
        not committed never duplicates its edges.
        """
        for edge in edges:
            append_domain_mx(self._buffers["domain_mx"], edge)
        append_domain(self._buffers["domains"], rec)

    @property
    def pending_rows(self) -> dict[str, int]:
        """Buffered, not yet written rows per dataset."""
        return {name: len(buf) for name, buf in self._buffers.items()}

    # -- flushing ------------------------------------------------------------------------------

    def flush_due(self) -> bool:
        """True when a buffer is full or rows waited flush_seconds."""
        sizes = [len(buf) for buf in self._buffers.values()]
        if max(sizes) >= self.batch_rows:
            return True
        if not any(sizes):
            # the interval counts from when rows start waiting, not from an idle stretch
            self._last_flush = self._clock()
            return False
        return self._clock() - self._last_flush >= self.flush_seconds

    def maybe_flush(self) -> bool:
        """Flush when due; True when a checkpoint was committed."""
        return self.flush_due() and self.flush() is not None

    def flush(self) -> int | None:
        """Write and commit every buffered row; the checkpoint number, None when nothing."""
        checkpoint = self._take()
        if checkpoint is None:
            return None
        self._write(checkpoint)
        return checkpoint.seq

    async def maybe_flush_async(self) -> bool:
        """maybe_flush with the file work in a thread, so the event loop keeps probing."""
        return self.flush_due() and await self.flush_async() is not None

    async def flush_async(self) -> int | None:
        """flush with the file work in a thread; buffers are swapped out before it starts."""
        checkpoint = self._take()
        if checkpoint is None:
            return None
        await asyncio.to_thread(self._write, checkpoint)
        return checkpoint.seq

    def close(self) -> None:
        """Commit what is buffered; after an OutputError, only give up quietly."""
        if self._closed:
            return
        self._closed = True
        if self._failure is None:
            self.flush()

    def __enter__(self) -> DatasetWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()  # on an interruption too: what was buffered is consistent, keep it

    def _take(self) -> _Checkpoint | None:
        """Swap the non-empty buffers out (on the caller's thread) under a new number."""
        self._check_usable()
        self._last_flush = self._clock()
        full = {name: buf for name, buf in self._buffers.items() if len(buf)}
        if not full:
            return None
        for name in full:
            self._buffers[name] = ColumnBuffer(name)
        checkpoint = _Checkpoint(self._seq, full)
        self._seq += 1
        return checkpoint

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise OutputError(self._failure)

    def _write(self, checkpoint: _Checkpoint) -> None:
        with self._write_lock:
            # a later checkpoint must not commit after an earlier one failed: its domains
            # could depend on rows that were lost
            self._check_usable()
            try:
                files = self._write_parts(checkpoint)
                rows = {name: len(buf) for name, buf in checkpoint.buffers.items()}
                self._log.append(checkpoint.seq, files, rows)
            except OutputError as exc:
                self._discard(checkpoint)
                self._failure = str(exc)
                raise
            except BaseException:
                self._discard(checkpoint)
                self._failure = f"checkpoint {checkpoint.seq} failed: internal error"
                raise
        for name, count in rows.items():
            self.rows_written[name] += count

    def _write_parts(self, checkpoint: _Checkpoint) -> list[str]:
        """Each buffer -> a fsynced, renamed part file; names relative to outdir."""
        files: list[str] = []
        name = part_name(checkpoint.seq)
        for dataset, buf in checkpoint.buffers.items():
            final = self.outdir / dataset / name
            tmp = final.with_name(name + ".tmp")
            try:
                table = buf.to_table()
                pq.write_table(table, tmp, compression=COMPRESSION)
                fd = os.open(tmp, os.O_RDONLY)
                try:
                    os.fsync(fd)
                finally:
                    os.close(fd)
                os.replace(tmp, final)
                fsync_dir(final.parent)
            except OSError as exc:
                raise OutputError(describe_os_error(exc, tmp).replace("\n", " ")) from exc
            files.append(f"{dataset}/{name}")
        return files

    def _discard(self, checkpoint: _Checkpoint) -> None:
        """Remove whatever a failed checkpoint left behind; committed parts stay readable."""
        name = part_name(checkpoint.seq)
        for dataset in checkpoint.buffers:
            for path in (self.outdir / dataset / (name + ".tmp"), self.outdir / dataset / name):
                try:
                    path.unlink(missing_ok=True)
                except OSError:
                    log.warning("could not remove %s", path)
