"""Whether a results directory holds a whole scan: partial data must say it is partial.

`scan_status` reads the manifest and the commit log (never the datasets) and says where the
scan stands: its state, the input records it read (`input_records`), the `domains` rows
committed, and how many records have no row yet. `scan_warnings` turns that into one line per
problem; `scanner stats`, `report`, `compare` and the notebooks all show them, and the JSON
outputs carry the status itself:

- a scan `running` (or killed, which leaves that state) or `interrupted`: the figures cover
  only the rows written so far;
- a finished scan limited by `--limit`: records past the limit have no row;
- `vantage_status: undetermined` (a small scan in which every probe failed at connect): the
  results cannot be told apart from a broken vantage point;
- no readable manifest: nothing says whether the scan is whole.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from scanner.sink.dataset import committed_rows
from scanner.sink.durable import MANIFEST, OutputError, load_json


@dataclass(frozen=True, slots=True)
class ScanStatus:
    """Where the scan of one results directory stands."""

    outdir: str
    state: str | None  # running, finished or interrupted; None without a readable manifest
    input_records: int | None  # None when the manifest predates input fingerprints
    rows: int  # committed `domains` rows
    missing: int | None  # input records without a row; None when input_records is None
    limit: int | None  # the scan's --limit, None when it had none
    vantage_status: str | None  # "undetermined" when the vantage point could not be judged
    vantage_note: str | None  # why, when vantage_status is set

    @property
    def partial(self) -> bool:
        """True when the scan did not finish (or the manifest cannot say)."""
        return self.state != "finished"

    def to_json(self) -> dict[str, Any]:
        """The JSON outputs' `scan` fields."""
        return asdict(self)


def scan_status(outdir: Path) -> ScanStatus:
    """The status of the scan in `outdir`, from its manifest and commit log."""
    try:
        manifest = load_json(Path(outdir) / MANIFEST)
    except OutputError:
        manifest = {}
    rows = committed_rows(Path(outdir))["domains"]
    records = manifest.get("input_records")
    records = records if isinstance(records, int) else None
    limit = (manifest.get("config") or {}).get("limit")
    runs = manifest.get("runs") or [{}]
    last_changes = runs[-1].get("config_changes") or {}
    if "limit" in last_changes:  # a resumed run with another --limit (or none)
        limit = last_changes["limit"]
    return ScanStatus(
        outdir=str(outdir), state=manifest.get("state"), input_records=records, rows=rows,
        missing=None if records is None else max(0, records - rows),
        limit=limit if isinstance(limit, int) else None,
        vantage_status=manifest.get("vantage_status"), vantage_note=manifest.get("vantage_note"))


def scan_warnings(scan: Path | ScanStatus) -> list[str]:
    """One line per reason not to read the directory's figures as a whole survey's."""
    status = scan if isinstance(scan, ScanStatus) else scan_status(scan)
    missing = "unknown" if status.missing is None else str(status.missing)
    of = "" if status.input_records is None else f" of {status.input_records}"
    where = f"warning: {status.outdir}:"
    warnings: list[str] = []
    if status.state is None:
        warnings.append(f"{where} no readable {MANIFEST}: whether the scan is complete is "
                        f"unknown ({status.rows} domain rows)")
    elif status.state != "finished":
        how = ("still running, or killed" if status.state == "running"
               else "resume it with `scanner scan ... --resume`")
        warnings.append(f"{where} partial data: the scan is {status.state} ({how}); "
                        f"{status.rows}{of} input records have a row, {missing} still missing")
    elif status.limit is not None and status.missing:
        warnings.append(f"{where} partial data: the scan was limited to --limit "
                        f"{status.limit}; {status.rows}{of} input records have a row, "
                        f"{missing} were not scanned")
    if status.vantage_status == "undetermined":
        note = f": {status.vantage_note}" if status.vantage_note else ""
        warnings.append(f"{where} vantage point undetermined{note}; these results cannot be "
                        "told apart from a broken vantage point")
    return warnings
