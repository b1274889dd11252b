"""Results directories altered on purpose: rows changed, or as an older schema wrote them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from scanner.sink.durable import committed_files
from scanner.sink.schema import DATASETS

Rows = list[dict[str, Any]]


def altered_copy(src: Path, dst: Path, dataset: str, change: Callable[[Rows], Rows],
                 shift: timedelta = timedelta(0)) -> Path:
    """A copy of a results directory whose committed `dataset` rows went through `change`."""
    shutil.copytree(src, dst)
    for path in committed_files(dst, dataset):
        rows = change(pq.read_table(path).to_pylist())
        pq.write_table(pa.Table.from_pylist(rows, schema=DATASETS[dataset]), path,
                       compression="zstd")
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["start_time"] = (datetime.fromisoformat(manifest["start_time"]) + shift).isoformat()
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


#: The columns each schema version added (1.3 added none, only values); 1.0 had the rest.
ADDED_IN: dict[str, dict[str, tuple[str, ...]]] = {
    "1.1": {"domains": ("spf_status", "spf_all", "dmarc_status", "dmarc_policy",
                        "tlsrpt_status", "mta_sts_txt_status", "mta_sts_id",
                        "mta_sts_fetch_status", "mta_sts_mode", "mta_sts_max_age",
                        "mta_sts_mx_patterns", "mta_sts_mx_all_match", "mta_sts_delivery_ok",
                        "dane_class", "n_dane_valid", "strict_capable"),
            "domain_mx": ("tlsa_status", "tlsa_records", "dane_status", "mta_sts_mx_match",
                          "mta_sts_ok"),
            "hosts": ("deep_checked", "tls_versions_accepted", "tls_versions_refused",
                      "dhe_accepted", "dhe_bits", "dhe_group", "dhe_prime_id")},
    "1.2": {"hosts": ("mta_software", "mta_version")},
    "1.4": {"domains": ("first_source", "first_line_no")},
}


def older_scan(src: Path, dst: Path, version: str) -> Path:
    """A copy of a results directory as a scanner of an older schema version wrote it: the
    columns added since are gone, the version is in each file and the manifest, and (before
    1.4) a domain whose MX addresses were all private was recorded `excluded`."""
    import shutil

    import pyarrow.parquet as pq

    from scanner.sink.durable import committed_files

    shutil.copytree(src, dst)
    newer = [added for v, added in ADDED_IN.items() if v > version]
    for dataset in ("domains", "domain_mx", "hosts", "certificates"):
        gone = {c for added in newer for c in added.get(dataset, ())}
        for path in committed_files(dst, dataset):
            table = pq.read_table(path)
            if dataset == "domains" and version < "1.4":
                rows = [{**r, **({"starttls_class": "excluded", "strict_class": "excluded"}
                                 if r["starttls_class"] == "private_mx" else {})}
                        for r in table.to_pylist()]
                table = pa.Table.from_pylist(rows, schema=table.schema)
            table = table.drop_columns(sorted(gone & set(table.column_names)))
            meta = {**(table.schema.metadata or {}), b"scanner.schema_version": version.encode()}
            pq.write_table(table.replace_schema_metadata(meta), path, compression="zstd")
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["schema_version"] = version
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst
