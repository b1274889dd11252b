"""Every input record gets a `domains` row: duplicates point at their first occurrence, the
counts reconcile with the rows, and duplicates never move a statistic."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.results import altered_copy

from scanner.analysis.compare import compare
from scanner.analysis.stats import MAIL_CLASSES, grouped_stats, survey_stats
from scanner.config import ScanConfig
from scanner.scan.pipeline import Scan
from scanner.sink.dataset import read_dataset, read_manifest
from scanner.sink.durable import committed_files
from scanner.sink.schema import DATASETS

# A zone file read first: its delegations come before the lab's list, the IDN domain twice
# (its U-label and its A-label are two owner names, so the second is a duplicate within the
# zone), glue, the apex and further NS records are not records.
ZONE = """\
$ORIGIN test.
$TTL 3600
@ IN SOA ns.test. hostmaster.test. 1 3600 900 604800 300
@ IN NS ns.test.
only-valid IN NS ns1.hosting.test.
           IN NS ns2.hosting.test.
blåbær IN NS ns1.hosting.test.
ns1.hosting IN A 192.0.2.1
xn--blbr-roah IN NS ns1.hosting.test.
only-valid IN NS ns3.hosting.test.
only-no-starttls IN NS ns1.hosting.test.
"""
ZONE_RECORDS = 4  # only-valid, blåbær, xn--blbr-roah (a duplicate), only-no-starttls
# Read last: lines repeating the lab's list (the first lines of each kind), a case variant,
# comments and blank lines, which are no records.
REPEATS = """\
# domains listed twice
ONLY-VALID.TEST.

only-expired.test
only-expired.test  # once more
bad..name
"""


@pytest.fixture(scope="module")
def inputs(fake_internet: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ...]:
    base = tmp_path_factory.mktemp("records-inputs")
    zone, repeats = base / "lab.zone", base / "repeats.txt"
    zone.write_text(ZONE, encoding="utf-8")
    repeats.write_text(REPEATS, encoding="utf-8")
    return zone, fake_internet.directory / "domains.txt", repeats


def _config(fast_config_factory: Any, out: Path, inputs: tuple[Path, ...]) -> ScanConfig:
    config: ScanConfig = dataclasses.replace(fast_config_factory(out), inputs=inputs)
    return config


@pytest.fixture(scope="module")
def scan(fast_config_factory: Any, tmp_path_factory: pytest.TempPathFactory,
         inputs: tuple[Path, ...]) -> Path:
    config = _config(fast_config_factory, tmp_path_factory.mktemp("records") / "out", inputs)
    asyncio.run(Scan(config).run())
    return config.output


def _rows(out: Path) -> dict[int, dict[str, Any]]:
    return {r["line_no"]: r for r in read_dataset(out, "domains").to_pylist()}


def test_every_record_is_a_row_and_the_counts_reconcile(scan: Path, fake_internet: Any,
                                                         inputs: tuple[Path, ...]) -> None:
    rows = _rows(scan)
    assert len(rows) == read_dataset(scan, "domains").num_rows  # one row a line number
    stats = read_manifest(scan)["input_stats"]
    lab_lines = fake_internet.truth_domains().num_rows
    assert stats["records"] == len(rows) == ZONE_RECORDS + lab_lines + 4
    assert stats["records"] == stats["valid"] + stats["invalid"] + stats["duplicates"]
    assert stats["lines"] == stats["records"] + stats["skipped"] == sum(
        len(p.read_text(encoding="utf-8").splitlines()) for p in inputs)
    by_status = Counter(r["status"] for r in rows.values())
    assert by_status["duplicate"] == stats["duplicates"] == 1 + 3 + 3
    assert by_status["invalid"] == stats["invalid"]
    assert read_manifest(scan)["counts"]["domains"] == len(rows)


def test_duplicates_point_at_their_first_occurrence(scan: Path, inputs: tuple[Path, ...]
                                                    ) -> None:
    rows = _rows(scan)
    zone_lines = ZONE.count("\n")
    list_line = {r["domain"]: n for n, r in rows.items() if r["source"] == "domains.txt"}
    got = sorted((r["line_no"], r["source"], r["domain"], r["first_line_no"], r["first_source"])
                 for r in rows.values() if r["status"] == "duplicate")
    repeats_at = zone_lines + len(inputs[1].read_text(encoding="utf-8").splitlines())
    assert got == sorted([
        # within the zone: the A-label twin of the U-label owner read before it
        (9, "lab.zone", "xn--blbr-roah.test", 7, "lab.zone"),
        # the lab's list repeats the zone's three domains
        (list_line["only-valid.test"], "domains.txt", "only-valid.test", 5, "lab.zone"),
        (list_line["xn--blbr-roah.test"], "domains.txt", "xn--blbr-roah.test", 7, "lab.zone"),
        (list_line["only-no-starttls.test"], "domains.txt", "only-no-starttls.test", 11,
         "lab.zone"),
        # the last file repeats both
        (repeats_at + 2, "repeats.txt", "only-valid.test", 5, "lab.zone"),
        (repeats_at + 4, "repeats.txt", "only-expired.test", list_line["only-expired.test"],
         "domains.txt"),
        (repeats_at + 5, "repeats.txt", "only-expired.test", list_line["only-expired.test"],
         "domains.txt")])
    for r in rows.values():
        if r["status"] == "duplicate":
            first = rows[r["first_line_no"]]  # a join on line_no, no string parsing
            assert (first["domain"], first["source"]) == (r["domain"], r["first_source"])
            assert first["status"] != "duplicate"
            assert (r["starttls_class"], r["strict_class"]) == ("duplicate", "duplicate")
            assert (r["mx_source"], r["n_mx_hosts"], r["spf_status"]) == (None, 0, "not_queried")
        else:
            assert r["first_line_no"] is None and r["first_source"] is None
    # a duplicate has no edges of its own: each domain's edges once
    edges = Counter((e["domain"], e["mx_hostname"], e["ip"])
                    for e in read_dataset(scan, "domain_mx").to_pylist())
    assert set(edges.values()) == {1}


def test_duplicates_move_no_statistic(scan: Path, fake_internet: Any) -> None:
    truth = fake_internet.truth_domains().to_pylist()
    d = survey_stats(scan)["domains"]
    # each domain once: the lab's truth, the only domains of the scan, plus one invalid line
    want = Counter(r["starttls_class"] for r in truth) + Counter({"invalid": 1})
    assert d["starttls"] == dict(want) and "duplicate" not in d["strict"]
    assert d["input_lines"] == len(truth) + 1 and d["duplicates"] == 7
    assert d["mail_domains"] == sum(want[c] for c in MAIL_CLASSES)
    shares = {c: 100.0 * want[c] / d["mail_domains"] for c in MAIL_CLASSES}
    assert d["starttls_share_of_mail_domains"] == pytest.approx(shares)
    groups = grouped_stats(scan, "provider")
    assert sum(g["domains"] for g in groups) == d["input_lines"]
    assert sum(g["mail_domains"] for g in groups) == d["mail_domains"]



def test_compare_reads_each_domains_own_row(scan: Path, fake_internet: Any, tmp_path: Path
                                            ) -> None:
    # the same scan without its duplicate rows: nothing changed between the two. Rows are
    # written as domains finish, a duplicate's often first: in `late` every duplicate comes
    # last, after its first occurrence, where it would shadow that row if compare read it
    plain = altered_copy(scan, tmp_path / "plain", "domains",
                         lambda rows: [r for r in rows if r["status"] != "duplicate"])
    late = altered_copy(scan, tmp_path / "late", "domains", lambda rows: rows)
    parts = committed_files(late, "domains")
    tables = [pq.read_table(path).to_pylist() for path in parts]
    duplicates = [r for rows in tables for r in rows if r["status"] == "duplicate"]
    for i, (path, rows) in enumerate(zip(parts, tables, strict=True)):
        kept = [r for r in rows if r["status"] != "duplicate"]
        kept += duplicates if i == len(parts) - 1 else []
        pq.write_table(pa.Table.from_pylist(kept, schema=DATASETS["domains"]), path)
    truth = fake_internet.truth_domains().to_pylist()
    for old, new in ((late, plain), (plain, late)):
        result = compare(old, new)
        assert result["domains"]["old"] == result["domains"]["both"] == len(
            {r["domain"] for r in truth if r["dns_case"] != "invalid"})
        assert result["domains"]["left_mail"] == result["domains"]["joined_mail"] == 0
        assert result["changes"]["starttls"] == result["changes"]["strict"] == {
            "gained": [], "lost": []}
        assert all(row["change_pct_points"] in (0, None) for row in result["shares"])


def test_stats_print_the_duplicates_apart(scan: Path, capsys: pytest.CaptureFixture[str]
                                          ) -> None:
    from scanner.commands.cli import main

    assert main(["stats", str(scan), "--format", "csv"]) == 0
    rows = [line.split(",") for line in capsys.readouterr().out.splitlines()]
    d = survey_stats(scan)["domains"]
    records = str(d["input_lines"] + 7)
    assert ["input_records", "domains", str(d["input_lines"]), records] in [r[:4] for r in rows]
    assert ["input_records", "duplicate", "7", records] in [r[:4] for r in rows]
    assert not any(r[1] == "duplicate" for r in rows if r[0].startswith(("domains.", "mail_")))


def test_limit_and_resume_with_duplicate_rows(fast_config_factory: Any, tmp_path: Path,
                                              inputs: tuple[Path, ...], scan: Path) -> None:
    config = _config(fast_config_factory, tmp_path / "out", inputs)
    first = asyncio.run(Scan(dataclasses.replace(config, limit=40)).run())
    written = _rows(config.output)
    # --limit counts valid domains; reading stops right after the 40th: every record read
    # has its row, duplicates and invalid lines among them
    assert sum(r["status"] == "ok" for r in written.values()) == 40
    assert any(r["status"] == "duplicate" for r in written.values())
    stats = read_manifest(config.output)["input_stats"]
    assert stats["records"] == len(written) == first.domains and stats["valid"] == 40
    resumed = Scan(dataclasses.replace(config, resume=True))
    counts = asyncio.run(resumed.run())
    assert counts.skipped_resumed == len(written)
    keep = ("status", "domain", "source", "starttls_class", "strict_class", "first_line_no",
            "first_source")
    whole, again = _rows(scan), _rows(config.output)
    assert {n: [r[c] for c in keep] for n, r in again.items()} == {
        n: [r[c] for c in keep] for n, r in whole.items()}
    assert read_manifest(config.output)["input_stats"] == read_manifest(scan)["input_stats"]
