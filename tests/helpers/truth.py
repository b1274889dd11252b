"""A scan against the lab's ground truth: row-by-row differences, keyed as the truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa

from scanner.sink.dataset import read_dataset


def _rows_by(table: pa.Table, key: str, columns: tuple[str, ...]) -> dict[Any, dict[str, Any]]:
    rows = table.select([c for c in columns if c in table.column_names]).to_pylist()
    return {r[key]: r for r in rows}


def differences(scan: pa.Table, truth: pa.Table, key: str, columns: tuple[str, ...]
                ) -> list[str]:
    """Human-readable list of every (row, column) where the scan and the truth disagree."""
    got = _rows_by(scan, key, columns)
    want = _rows_by(truth, key, columns)
    out = [f"{key}={k}: missing from scan" for k in sorted(want.keys() - got.keys(), key=str)]
    out += [f"{key}={k}: not in truth" for k in sorted(got.keys() - want.keys(), key=str)]
    for k in sorted(want.keys() & got.keys(), key=str):
        for col in columns:
            if col not in want[k]:
                continue
            g, w = got[k].get(col), want[k][col]
            if isinstance(g, list) and isinstance(w, list):
                g, w = sorted(g), sorted(w)
            if g != w:
                out.append(f"{key}={k} {col}: scan={g!r} truth={w!r}")
    return out


def keyed_domains(out: Path) -> pa.Table:
    """The `domains` rows keyed as the truth keys them: an invalid line by its raw text."""
    scan = read_dataset(out, "domains")
    keys = [d if d is not None else raw for d, raw in zip(
        scan.column("domain").to_pylist(), scan.column("input").to_pylist(), strict=True)]
    return scan.set_column(scan.schema.get_field_index("domain"), "domain", pa.array(keys))
