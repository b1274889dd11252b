"""Reading a scan's output for consumers (stats, reports, tests, notebooks): committed data only.

Results of older schema versions stay readable: a column their part files lack (added by a later
schema, see README "Output: one schema") reads as nulls, and `dataset_columns` says which
columns the files hold, so that statistics can tell "not measured" from 0 or false.
"""

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

    Part files not in `_commits.jsonl` (a crash before their commit) are ignored. A column a
    part file lacks (written by an older schema version) is all nulls.
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
    tables = [_read_part(path, target) for path in committed_files(Path(outdir), name)]
    if not tables:
        return target.empty_table()
    return pa.concat_tables(tables)


def _read_part(path: Path, target: pa.Schema) -> pa.Table:
    """One part file with exactly the columns of `target`: nulls where the file has none."""
    present = set(pq.read_schema(path).names)
    table = pq.read_table(path, columns=[c for c in target.names if c in present])
    for i, f in enumerate(target):
        if f.name not in present:
            table = table.add_column(i, f.name, pa.nulls(table.num_rows, f.type))
    # Parquet names list items "element": cast back to the schema's exact types
    return table.cast(target)


def dataset_columns(outdir: Path, name: str) -> frozenset[str]:
    """The columns every committed part file of a dataset holds: the current schema's, less
    those added after the oldest schema version that wrote a part (a resumed scan may hold
    parts of two). All of the schema's when nothing is committed."""
    columns = frozenset(DATASETS[name].names)
    for path in committed_files(Path(outdir), name):
        columns &= frozenset(pq.read_schema(path).names)
    return columns


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
