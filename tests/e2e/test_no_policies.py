"""`scan --no-policies`: a STARTTLS-only survey, the policy stage skipped and said to be."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from scanner.analysis.stats import survey_stats
from scanner.commands.cli import main
from scanner.config import ScanConfig
from scanner.scan.pipeline import Scan
from scanner.sink.dataset import read_dataset, read_manifest


@pytest.fixture(scope="module")
def starttls_only(fake_internet: Any, tmp_path_factory: pytest.TempPathFactory,
                  fast_config_factory: Any) -> Path:
    config: ScanConfig = dataclasses.replace(
        fast_config_factory(tmp_path_factory.mktemp("nopol") / "out"), policies=False)
    asyncio.run(Scan(config).run())
    return config.output


def test_starttls_classes_still_equal_the_truth(starttls_only: Path, fake_internet: Any) -> None:
    cols = ("starttls_class", "strict_class", "n_reachable", "n_starttls", "n_strict")
    got = read_dataset(starttls_only, "domains", ["domain", *cols]).to_pylist()
    truth = {r["domain"]: r for r in fake_internet.truth_domains().to_pylist()}
    scanned = [r for r in got if r["domain"] is not None]
    assert len(scanned) > 100
    for row in scanned:
        assert {c: row[c] for c in cols} == {c: truth[row["domain"]][c] for c in cols}, row


def test_policy_columns_say_not_queried(starttls_only: Path) -> None:
    domains = read_dataset(starttls_only, "domains").to_pylist()
    valid = [d for d in domains if d["status"] == "ok"]
    assert any(d["n_reachable"] for d in valid) and not all(d["n_reachable"] for d in valid)
    for d in valid:
        assert (d["spf_status"], d["dmarc_status"], d["tlsrpt_status"],
                d["mta_sts_txt_status"]) == ("not_queried",) * 4
        assert d["mta_sts_mode"] is None
        if d["n_reachable"]:  # a sender could deliver: whether strictly is not known
            assert d["dane_class"] == "not_queried" and d["strict_capable"] is None
        else:
            assert d["dane_class"] == "not_applicable" and d["strict_capable"] is False
    edges = read_dataset(starttls_only, "domain_mx", ["ip", "tlsa_status", "dane_status"])
    for e in edges.to_pylist():
        assert e["tlsa_status"] == "not_queried"
        assert e["dane_status"] == "not_queried"


def test_manifest_and_stats_say_the_policy_stage_was_skipped(starttls_only: Path) -> None:
    assert read_manifest(starttls_only)["config"]["policies"] is False
    stats = survey_stats(starttls_only)
    assert stats["policies"] is None  # no adoption table over domains never looked up


def test_cli_flag(fake_internet: Any, tmp_path: Path) -> None:
    out = tmp_path / "out"
    rc = main(["scan", str(fake_internet.directory / "domains.txt"), "-o", str(out),
               "--lab", str(fake_internet.directory), "--no-progress", "--no-policies",
               "--limit", "20", "--timeout-greeting", "2", "--deadline", "5"])
    assert rc == 0
    assert read_manifest(out)["config"]["policies"] is False


def test_stats_and_report_render_without_policy_tables(starttls_only: Path, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(starttls_only), "--format", "markdown"]) == 0
    text = capsys.readouterr().out
    assert "starttls" in text.lower() and "spf_valid" not in text and "dmarc" not in text.lower()
    html = tmp_path / "report.html"
    assert main(["report", str(starttls_only), "-o", str(html)]) == 0
    assert html.stat().st_size > 1000
