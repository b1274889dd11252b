"""ScanManifest: OUTDIR/manifest.json, written at start, finish and interruption.

It says how the results were produced: scanner and schema versions, the whole configuration,
vantage point, resolvers, trust store, times (UTC), counts and input statistics, and what the
scan read: `inputs` (one fingerprint per file: path, format, sha256, lines, records) and
`input_records` (their sum: the `domains` rows of a whole scan without --limit). A resumed scan
keeps the original start time and configuration (certificates are judged at that start time)
and appends one entry per run to `runs`, with the run's own counts, scanner and trust-store
versions; the top-level `counts` cover the whole scan.
"""

from __future__ import annotations

import hashlib
import json
import platform
import socket
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import certifi

import scanner
from scanner.config import ScanConfig, TrustStore
from scanner.sink.durable import MANIFEST, OutputError, load_json, write_atomic
from scanner.sink.schema import SCHEMA_VERSION

if TYPE_CHECKING:
    from scanner.sink.parquet import DatasetWriter

# configuration keys that differ between runs of one scan without changing what it measures
_PER_RUN_KEYS = frozenset({"started_at", "resume", "override_config"})


class ScanState(StrEnum):
    """Where a scan stands."""

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"


def _iso(value: datetime) -> str:
    # one fixed width, so that times compare as strings too
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def _sha256_file(path: Path) -> str | None:
    """Hex SHA-256 of a file; None when it cannot be read (verify.py reports that)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def system_resolvers(resolv_conf: Path = Path("/etc/resolv.conf")) -> list[str]:
    """The nameservers the system resolver uses (what aiodns picks without --resolver)."""
    try:
        lines = resolv_conf.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return []
    return [parts[1] for parts in (line.split() for line in lines)
            if len(parts) >= 2 and parts[0] == "nameserver"]


def trust_store_facts(trust: TrustStore) -> dict[str, Any]:
    """Which anchors judged the certificates: certifi's version and bundle, extra files."""
    return {
        "use_mozilla": trust.use_mozilla,
        "certifi_version": certifi.__version__,
        "mozilla_bundle_sha256": _sha256_file(Path(certifi.where())) if trust.use_mozilla else None,
        "extra_anchors": [{"path": str(p), "sha256": _sha256_file(Path(p))}
                          for p in trust.extra_anchors],
    }


def vantage_facts(config: ScanConfig) -> dict[str, Any]:
    """Where the scan ran from."""
    return {"name": config.vantage, "hostname": socket.gethostname(),
            "platform": platform.platform(), "python": platform.python_version()}


class ScanManifest:
    """The manifest of one output directory; every change is written at once (temp + rename)."""

    def __init__(self, path: Path, data: dict[str, Any],
                 now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.path = path
        self.data = data
        self._now = now

    @classmethod
    def start(cls, config: ScanConfig, writer: DatasetWriter | None = None, *,
              input_stats: Mapping[str, Any] | None = None,
              inputs: Sequence[Mapping[str, Any]] | None = None,
              run_facts: Mapping[str, Any] | None = None,
              now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> ScanManifest:
        """Write the manifest in state "running"; on resume, continue the existing one.

        With the run's writer, the run entry notes the rows already committed when it began.
        `inputs` are the input fingerprints (`InputFingerprint.to_json()`): the scan's, kept
        from its first run, and each run's own; `run_facts` go into the run entry as they are.
        """
        path = Path(config.output) / MANIFEST
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"cannot use output directory {path.parent}: "
                              f"{exc.strerror or exc}") from exc
        config_json = config.to_json()
        trust = trust_store_facts(config.trust)
        run: dict[str, Any] = {
            "start_time": _iso(config.started_at), "end_time": None,
            "state": ScanState.RUNNING.value, "scanner_version": scanner.__version__,
            "certifi_version": trust["certifi_version"],
            "mozilla_bundle_sha256": trust["mozilla_bundle_sha256"],
            "hostname": socket.gethostname(), "counts": {},
        }
        if writer is not None:
            run["rows_at_start"] = writer.committed_rows
        if inputs is not None:
            run["inputs"] = [dict(i) for i in inputs]
        run.update(run_facts or {})
        if config.resume and path.exists():
            data = load_json(path)
            original = data.get("config", {})
            run["config_changes"] = {k: v for k, v in config_json.items()
                                     if k not in _PER_RUN_KEYS and original.get(k) != v}
            data["resumed_count"] = int(data.get("resumed_count", 0)) + 1
            data.setdefault("runs", []).append(run)
        else:
            data = {
                "scanner_version": scanner.__version__,
                "schema_version": SCHEMA_VERSION,
                "start_time": _iso(config.started_at),
                "end_time": None,
                "config": config_json,
                "vantage": vantage_facts(config),
                "resolvers": list(config.resolvers) or system_resolvers(),
                "resolvers_source": "config" if config.resolvers else "system",
                "trust_store": trust,
                "counts": {},
                "input_stats": {},
                "resumed_count": 0,
                "runs": [run],
            }
        if inputs is not None and "inputs" not in data:  # new, or older than fingerprints
            data["inputs"] = [dict(i) for i in inputs]
            data["input_records"] = sum(int(i["records"]) for i in inputs)
        data["state"] = ScanState.RUNNING.value
        data["end_time"] = None
        if input_stats is not None:
            data["input_stats"] = dict(input_stats)
        manifest = cls(path, data, now)
        manifest.write()
        return manifest

    @property
    def state(self) -> ScanState:
        """The state last written."""
        return ScanState(self.data["state"])

    @property
    def started_at(self) -> datetime:
        """The scan's original start time: the moment certificates are judged at, on resume too."""
        return datetime.fromisoformat(self.data["start_time"])

    def note(self, key: str, value: Any) -> None:
        """Record a fact of this run under `key`, at the top and in the run's entry (written
        with the next write)."""
        self.data[key] = value
        self.data["runs"][-1][key] = value

    def update(self, counts: Mapping[str, Any],
               input_stats: Mapping[str, Any] | None = None) -> None:
        """Record progress while running (counts are totals for the whole scan)."""
        self._set(ScanState.RUNNING, counts, input_stats)

    def finish(self, state: ScanState | str = ScanState.FINISHED,
               counts: Mapping[str, Any] | None = None,
               input_stats: Mapping[str, Any] | None = None,
               reason: str | None = None,
               run_counts: Mapping[str, Any] | None = None) -> None:
        """Record how the run ended: "finished" (whole input done) or "interrupted".

        `counts` cover the whole scan; `run_counts` this run alone (the same when None).
        """
        self._set(ScanState(state), counts or {}, input_stats, reason, run_counts)

    def interrupt(self, counts: Mapping[str, Any],
                  input_stats: Mapping[str, Any] | None = None,
                  reason: str | None = None) -> None:
        """The scan stopped early (signal, output error); `--resume` continues it."""
        self._set(ScanState.INTERRUPTED, counts, input_stats, reason)

    def set_vantage(self, status: str, note: str) -> None:
        """Record whether this run's results can be told from a failure of its own path.

        Top level (`vantage_status`, `vantage_note`) for the whole scan: "undetermined" once
        any run was, since its rows stay in the dataset; each run entry keeps its own.
        Written with the next state change.
        """
        self.data["runs"][-1].update(vantage_status=status, vantage_note=note)
        if self.data.get("vantage_status") != "undetermined":
            self.data["vantage_status"] = status
            self.data["vantage_note"] = note

    def set_reference(self, facts: Mapping[str, Any]) -> None:
        """Record this run's `--reference-host` check (top level: the latest run's)."""
        self.data["reference_host"] = dict(facts)
        self.data["runs"][-1]["reference_host"] = dict(facts)
        self.write()

    def _set(self, state: ScanState, counts: Mapping[str, Any],
             input_stats: Mapping[str, Any] | None, reason: str | None = None,
             run_counts: Mapping[str, Any] | None = None) -> None:
        ended = None if state is ScanState.RUNNING else _iso(self._now())
        self.data["state"] = state.value
        self.data["end_time"] = ended
        self.data["counts"] = dict(counts)
        if input_stats is not None:
            self.data["input_stats"] = dict(input_stats)
        run = self.data["runs"][-1]
        run.update(state=state.value, end_time=ended,
                   counts=dict(counts if run_counts is None else run_counts))
        if reason is not None:
            run["reason"] = reason
        self.write()

    def write(self) -> None:
        """Replace manifest.json atomically (OutputError when it cannot be written)."""
        text = json.dumps(self.data, indent=2, default=str) + "\n"
        write_atomic(self.path, text.encode("utf-8"))
