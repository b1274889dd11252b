"""`scanner compare`: results directories from lab scans (rows altered, or a second scan)."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import io
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from helpers.results import Rows, altered_copy

from scanner.analysis.compare import compare
from scanner.analysis.stats import survey_stats
from scanner.commands.cli import main
from scanner.config import Exclusions
from scanner.scan.pipeline import Scan
from scanner.sink.dataset import read_dataset


@pytest.fixture(scope="module")
def scans(fast_config_factory: Any, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Path, Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("compare")
    config = fast_config_factory(base / "old")
    asyncio.run(Scan(config).run())
    domains = read_dataset(config.output, "domains").to_pylist()
    pick = {
        "gains": next(r["domain"] for r in domains if r["starttls_class"] == "none"),
        "loses": next(r["domain"] for r in domains if r["starttls_class"] == "all"
                      and r["strict_class"] == "all"),
        "gone": next(r["domain"] for r in domains if r["starttls_class"] == "some"),
    }

    def change(rows: Rows) -> Rows:
        out = []
        for r in rows:
            if r["domain"] == pick["gains"]:
                r = {**r, "starttls_class": "all", "strict_class": "all"}
            elif r["domain"] == pick["loses"]:
                r = {**r, "starttls_class": "none", "strict_class": "none"}
            elif r["domain"] == pick["gone"]:
                continue
            out.append(r)
        return out

    new = altered_copy(config.output, base / "new", "domains", change, timedelta(days=30))
    return config.output, new, pick


def test_gained_and_lost_domains(scans: tuple[Path, Path, dict[str, str]]) -> None:
    old, new, pick = scans
    changes = compare(old, new)["changes"]
    assert changes["starttls"]["gained"] == [{"domain": pick["gains"], "old": "none",
                                              "new": "all"}]
    assert changes["starttls"]["lost"] == [{"domain": pick["loses"], "old": "all",
                                            "new": "none"}]
    assert [r["domain"] for r in changes["strict"]["gained"]] == [pick["gains"]]
    assert [r["domain"] for r in changes["strict"]["lost"]] == [pick["loses"]]


def test_shares_then_and_now_come_from_stats(scans: tuple[Path, Path, dict[str, str]]) -> None:
    old, new, _ = scans
    result = compare(old, new)
    assert result["domains"]["only_old"] == 1 and result["domains"]["only_new"] == 0
    for side, outdir in (("old", old), ("new", new)):
        d = survey_stats(outdir)["domains"]
        for row in result["shares"]:
            if row["table"] == "starttls_class":
                assert row[f"{side}_count"] == d["starttls"].get(row["key"], 0)
                assert row[f"{side}_of"] == d["mail_domains"]
                assert row[f"{side}_pct"] == d["starttls_share_of_mail_domains"][row["key"]]
    some = next(r for r in result["shares"] if r["table"] == "starttls_class"
                and r["key"] == "some")
    assert some["new_count"] == some["old_count"] - 1
    assert some["change_pct_points"] == pytest.approx(some["new_pct"] - some["old_pct"])


def test_compare_command(scans: tuple[Path, Path, dict[str, str]],
                         capsys: pytest.CaptureFixture[str]) -> None:
    old, new, pick = scans
    assert main(["compare", str(old), str(new)]) == 0
    text = capsys.readouterr().out
    assert "gained starttls (1 domains)" in text and f"{pick['gains']}: none -> all" in text
    assert "lost starttls (1 domains)" in text and f"{pick['loses']}: all -> none" in text
    assert main(["compare", str(old), str(new), "--format", "csv"]) == 0
    rows = list(csv.reader(io.StringIO(capsys.readouterr().out)))
    assert ["starttls", "gained", pick["gains"], "none", "all"] in rows
    assert main(["compare", str(old), str(new), "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(compare(old, new)))
    assert main(["compare", str(old), str(old.parent / "missing")]) == 2


def test_two_real_scans_with_a_different_exclusion(
        scans: tuple[Path, Path, dict[str, str]], fast_config_factory: Any) -> None:
    old, _, pick = scans
    config = fast_config_factory(old.parent / "excluded")
    excluded = pick["loses"]
    config = dataclasses.replace(config, exclusions=Exclusions(domains=frozenset({excluded})))
    asyncio.run(Scan(config).run())
    result = compare(old, config.output)
    # the lab answers the same way twice: only the excluded domain moved, out of the mail domains
    assert result["changes"] == {w: {"gained": [], "lost": []} for w in ("starttls", "strict")}
    assert result["domains"]["left_mail"] == 1 and result["domains"]["both"] == \
        result["domains"]["old"]
    row = next(r for r in result["shares"] if r["table"] == "starttls_class" and r["key"] == "all")
    assert row["new_count"] == row["old_count"] - 1 and row["new_of"] == row["old_of"] - 1
