"""Reading a scan's output for consumers (stats, reports, tests, notebooks): committed data only."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scanner.sink.durable import MANIFEST, committed_files, load_json, read_commits
from scanner.sink.schema import DATASETS


def read_dataset(outdir: Path, name: str, columns: Sequence[str] | None = None) -> pa.Table:
    """One dataset's committed part files, concatenated; an empty table with the schema if none.

    Part files not in `_commits.jsonl` (a crash before their commit) are ignored.
    """
    try:
        schema = DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; one of {', '.join(DATASETS)}") from None
    wanted = list(columns) if columns is not None else None
    target = schema
    if wanted is not None:
        unknown = [c for c in wanted if c not in schema.names]
        if unknown:
            raise ValueError(f"{name} has no column {', '.join(unknown)}")
        target = pa.schema([schema.field(c) for c in wanted], metadata=schema.metadata)
    tables = [pq.read_table(path, columns=wanted) for path in committed_files(Path(outdir), name)]
    if not tables:
        return target.empty_table()
    # Parquet names list items "element": cast back to the schema's exact types
    return pa.concat_tables(tables).cast(target)


def committed_rows(outdir: Path) -> dict[str, int]:
    """Committed rows per dataset, from the commit log alone."""
    rows = dict.fromkeys(DATASETS, 0)
    for commit in read_commits(Path(outdir)):
        for name, count in commit.rows.items():
            rows[name] = rows.get(name, 0) + count
    return rows


def read_manifest(outdir: Path) -> dict[str, Any]:
    """The scan's manifest.json as a dict (OutputError when missing or unreadable)."""
    return load_json(Path(outdir) / MANIFEST)
