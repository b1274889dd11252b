"""`scanner scan`: start-up checks, the progress display, the pipeline, the final summary."""

from __future__ import annotations

import asyncio
import signal
import sys
from collections import Counter
from typing import Any

from scanner.config import ConfigError, ScanConfig
from scanner.inputs.domain_lists import InputError, check_inputs
from scanner.model.records import DomainRecord, HostRecord
from scanner.scan import event_loop
from scanner.scan.counts import ScanCounts
from scanner.scan.gc_policy import bulk_collector, release_freed_memory
from scanner.scan.pipeline import Scan, Waiting
from scanner.scan.resume_check import ResumeRefused
from scanner.scan.vantage import VantageFailure, VantageStatus, VantageVerdict
from scanner.sink.parquet import OutputError


def vantage_warning(verdict: VantageVerdict | None, *, manifest: bool = True) -> str | None:
    """The one terminal line for a run that could not tell the servers' failures from ours."""
    if verdict is None or verdict.status is not VantageStatus.UNDETERMINED:
        return None
    advice = "name a mail server known to answer with --reference-host HOST"
    if manifest:
        advice = f'recorded as vantage_status "undetermined" in manifest.json; to tell, {advice}'
    else:
        advice = f"to tell, {advice}"
    return f"scanner: warning: {verdict.note} ({advice})"


class TqdmProgress:
    """Two bars: domains done (with class counts) and probes done (with outcome counts), and
    a line under them saying what the scan waits on (hosts left by step, and its timeout).

    tqdm is imported only when the bars are shown: otherwise its import is start-up spent
    for nothing.
    """

    def __init__(self, total: int | None, enabled: bool) -> None:
        self.classes: Counter[str] = Counter()
        self.outcomes: Counter[str] = Counter()
        self._domains: Any = None
        self._probes: Any = None
        self._waiting: Any = None
        if enabled:
            from tqdm import tqdm

            self._domains = tqdm(total=total, unit="dom", desc="domains", position=0,
                                 dynamic_ncols=True, smoothing=0.05)
            self._probes = tqdm(unit="host", desc="probes ", position=1, dynamic_ncols=True,
                                smoothing=0.05)
            self._waiting = tqdm(bar_format="{desc}", position=2, dynamic_ncols=True,
                                 leave=False)

    def on_domain_done(self, record: DomainRecord) -> None:
        self.classes[record.starttls_class.value] += 1
        if self._domains is not None:
            self._domains.update(1)
            if self._domains.n % 50 == 0:
                self._domains.set_postfix(dict(self.classes.most_common(5)), refresh=False)

    def on_probe_done(self, record: HostRecord) -> None:
        self.outcomes[record.outcome.value] += 1
        if self._probes is not None:
            self._probes.update(1)
            if self._probes.n % 20 == 0:
                self._probes.set_postfix(dict(self.outcomes.most_common(5)), refresh=False)

    def on_waiting(self, waiting: Waiting) -> None:
        if self._waiting is not None:
            # the bars too: tqdm redraws only on updates, and the last ones may not have
            self._domains.refresh()
            self._probes.refresh()
            self._waiting.set_description_str(waiting.describe(), refresh=True)

    def warn(self, text: str) -> None:
        """A warning line on the terminal, above the bars when they are shown."""
        if self._domains is not None:
            from tqdm import tqdm

            tqdm.write(f"scanner: warning: {text}", file=sys.stderr)
        else:
            print(f"scanner: warning: {text}", file=sys.stderr)

    def close(self) -> None:
        if self._domains is None or self._probes is None:
            return
        self._domains.set_postfix(dict(self.classes.most_common(5)), refresh=True)
        self._probes.set_postfix(dict(self.outcomes.most_common(5)), refresh=True)
        self._waiting.set_description_str("", refresh=True)
        self._domains.close()
        self._probes.close()
        self._waiting.close()


def _bar_total(config: ScanConfig, records: int) -> int:
    """Domains this run has left, for the progress bar's ETA: input records not yet written."""
    if not config.resume:
        return records
    from scanner.sink.dataset import committed_rows

    return max(0, records - committed_rows(config.output)["domains"])


def _summary(run: ScanCounts, counts: ScanCounts, config: ScanConfig) -> str:
    """The whole scan's counts (earlier runs' too), and what this run added."""
    lines = [f"scanned {counts.domains} domains ({run.domains} in this run, "
             f"{counts.domains - run.domains} before), "
             f"{counts.probes} mail server addresses probed ({run.probes} in this run), "
             f"{counts.certificates} distinct certificates"]
    classes = dict(counts.classes)
    duplicates = classes.pop("duplicate", 0)  # no domains: shares count each domain once
    if classes:
        total = sum(classes.values())
        parts = ", ".join(f"{k} {v} ({100 * v / total:.1f}%)"
                          for k, v in sorted(classes.items(), key=lambda kv: -kv[1]))
        lines.append(f"starttls_class: {parts}")
    if duplicates:
        lines.append(f"{duplicates} input records repeat a domain listed before "
                     "(rows with status duplicate)")
    if counts.outcomes:
        parts = ", ".join(f"{k} {v}" for k, v in sorted(counts.outcomes.items(),
                                                        key=lambda kv: -kv[1]))
        lines.append(f"host outcomes: {parts}")
    lines.append(f"results: {config.output}")
    return "\n".join(lines)


def _first_of(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The exception a user should hear about from a task group's failure."""
    for wanted in (VantageFailure, OutputError, InputError):
        match, _rest = group.split(wanted)
        if match is not None:
            exc: BaseException = match
            while isinstance(exc, BaseExceptionGroup):
                exc = exc.exceptions[0]
            return exc
    first: BaseException = group
    while isinstance(first, BaseExceptionGroup):
        first = first.exceptions[0]
    return first


def run_scan_command(config: ScanConfig, *, progress: bool, argv: str) -> int:
    """Run a scan from the CLI; returns the exit code."""
    scan = Scan(config)
    try:
        check_inputs(config.inputs)
        inputs = scan.prepare()  # one pass over the inputs; on resume, the check against them
    except (InputError, ResumeRefused, OutputError) as exc:
        print(f"scanner: error: {exc}", file=sys.stderr)
        return 2
    for notice in scan.resume_check.notices if scan.resume_check is not None else ():
        print(f"scanner: {notice}", file=sys.stderr)
    display = TqdmProgress(_bar_total(config, inputs.records) if progress else None, progress)
    scan.progress = display
    scan.notify = display.warn
    resume_hint = f"resume with: scanner {argv}" + ("" if config.resume else " --resume")

    async def main() -> ScanCounts:
        task = asyncio.current_task()
        assert task is not None
        install_signal_handlers(task)
        trimmer = asyncio.create_task(release_freed_memory())
        try:
            return await scan.run()
        finally:
            trimmer.cancel()

    try:
        try:
            with bulk_collector():
                counts = event_loop.run(main(), config.event_loop)
        except BaseExceptionGroup as group:
            raise _first_of(group) from group
    except (asyncio.CancelledError, KeyboardInterrupt):
        display.close()
        print(f"scanner: interrupted; everything written so far is kept. {resume_hint}",
              file=sys.stderr)
        return 130
    except VantageFailure as exc:
        display.close()
        print(f"scanner: stopped: {exc}", file=sys.stderr)
        return 3
    except (OutputError, InputError, ConfigError) as exc:
        display.close()
        print(f"scanner: error: {exc}", file=sys.stderr)
        return 2
    display.close()
    print(_summary(counts, scan.whole, config))
    warning = vantage_warning(scan.vantage.verdict())
    if warning is not None:
        print(warning, file=sys.stderr)
    return 0


def install_signal_handlers(task: asyncio.Task[Any]) -> None:
    """SIGINT/SIGTERM cancel the scan task; the pipeline flushes and marks the manifest."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, task.cancel)
