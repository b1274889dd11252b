"""`scanner report`: the HTML file rendered in a real headless Chromium (Debian's `chromium`).

The numbers on the page are checked against `scanner stats --format json`; a hostile banner and
certificate issuer injected into a copy of a lab scan must render as text and run nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scanner.report.build import build_report, policy_section
from scanner.report.html import esc
from scanner.scan.pipeline import Scan
from scanner.sink.dataset import read_dataset
from scanner.sink.durable import committed_files
from scanner.sink.schema import DATASETS

CHROMIUM = Path("/usr/bin/chromium")
HOSTILE = ("ESMTP <script>document.title='PWNED';document.body.appendChild("
           "document.createElement('pwned'))</script><img src=x onerror=\"document.title='X'\">")
Rows = list[dict[str, Any]]


def _copy(src: Path, dst: Path, changes: dict[str, Callable[[Rows], Rows]],
          shift: timedelta = timedelta(0)) -> Path:
    """A copy of a results directory with committed rows rewritten and the start time moved."""
    shutil.copytree(src, dst)
    for dataset, change in changes.items():
        for path in committed_files(dst, dataset):
            rows = change(pq.read_table(path).to_pylist())
            pq.write_table(pa.Table.from_pylist(rows, schema=DATASETS[dataset]), path)
    manifest = json.loads((dst / "manifest.json").read_text())
    manifest["start_time"] = (datetime.fromisoformat(manifest["start_time"]) + shift).isoformat()
    (dst / "manifest.json").write_text(json.dumps(manifest))
    return dst


@pytest.fixture(scope="module")
def scan(fast_config_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = fast_config_factory(tmp_path_factory.mktemp("report") / "clean")
    asyncio.run(Scan(config).run())
    return Path(config.output)


@pytest.fixture(scope="module")
def hostile(scan: Path) -> Path:
    def banners(rows: Rows) -> Rows:
        return [{**r, "banner": f"mx.evil.test {HOSTILE}"} if r["banner"] else r for r in rows]

    def issuers(rows: Rows) -> Rows:
        return [{**r, "issuer": f"CN=<b id=evil>{HOSTILE}</b>"} for r in rows]
    return _copy(scan, scan.parent / "hostile", {"hosts": banners, "certificates": issuers})


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "scanner", *args], capture_output=True,
                          text=True, timeout=120)


def _chromium(tmp: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing: .ci/run installs it (apt-get install chromium)")
        pytest.skip("no /usr/bin/chromium (.ci/run installs Debian's chromium)")
    return subprocess.run(
        [str(CHROMIUM), "--headless", "--no-sandbox", "--disable-gpu",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--no-first-run", "--disable-extensions", f"--user-data-dir={tmp / 'profile'}", *args],
        capture_output=True, text=True, timeout=90)


class Page(HTMLParser):
    """What a dumped DOM holds: stat cells, elements by tag, title, text."""

    def __init__(self) -> None:
        super().__init__()
        self.stats: dict[str, str] = {}
        self.trend_rows: list[str] = []
        self.tags: list[str] = []
        self.ids: list[str] = []
        self.srcs: list[str] = []
        self.text: list[str] = []
        self.title = ""
        self._stat: str | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        self.ids.append(dict(attrs).get("id") or "")
        if tag == "img":
            self.srcs.append(dict(attrs).get("src") or "")
        self._stat = dict(attrs).get("data-stat")
        self._in_title = tag == "title"

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self._stat is not None:
            self.stats[self._stat] = self.stats.get(self._stat, "") + data
        if self._in_title:
            self.title += data

    def handle_endtag(self, tag: str) -> None:
        self._stat = None
        self._in_title = False


def parse(html: str) -> Page:
    page = Page()
    page.feed(html)
    return page


def _lookup(stats: dict[str, Any], path: str) -> Any:
    value: Any = stats
    for part in path.split("/"):
        value = value.get(part, 0) if isinstance(value, dict) else value[int(part)]
    return value


def test_report_in_chromium_matches_stats_and_runs_no_server_script(
        hostile: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.html"
    proc = _run("report", str(hostile), "-o", str(report))
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(_run("stats", str(hostile), "--format", "json").stdout)
    dom = _chromium(tmp_path, "--dump-dom", report.as_uri())
    assert dom.returncode == 0 and "<main>" in dom.stdout, dom.stderr[-2000:]
    page = parse(dom.stdout)
    assert len(page.stats) >= 40
    for path in ("domains/input_lines", "domains/mail_domains", "domains/starttls/none",
                 "domains/strict/all", "hosts/answered", "hosts/tls_ok", "hosts/strict_valid",
                 "hosts/forward_secrecy", "hosts/outcomes/greeting_timeout",
                 "distributions/certificate_problems/expired",
                 f"distributions/software/{next(iter(stats['distributions']['software']))}",
                 "distributions/tls_versions/TLSv1.2", "policies/adoption/spf_valid",
                 "policies/mail_adoption/dane_valid"):
        assert path in page.stats, path
    for path, shown in page.stats.items():
        want = _lookup(stats, path)
        if shown.endswith("%"):
            assert shown == f"{want:.1f}%", path
        else:
            assert int(shown) == want, path
    # the hostile strings are on the page as text, and nothing of theirs ran
    assert page.title.startswith("STARTTLS survey report"), page.title
    assert "pwned" not in page.tags and "script" not in page.tags and "evil" not in page.ids
    assert len(page.srcs) == 4 and all(src.startswith("data:image/svg+xml") for src in page.srcs)
    text = "".join(page.text)
    assert HOSTILE in text and f"CN=<b id=evil>{HOSTILE}</b>" in text
    shot = tmp_path / "report.png"
    proc2 = _chromium(tmp_path, f"--screenshot={shot}", "--window-size=1280,2400",
                      "--hide-scrollbars", report.as_uri())
    assert proc2.returncode == 0, proc2.stderr[-2000:]
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
    assert int.from_bytes(data[16:20], "big") == 1280


def test_report_is_self_contained(scan: Path) -> None:
    html = build_report([scan])
    assert html.startswith("<!DOCTYPE html>")
    assert not re.findall(r'(?:src|href)\s*=\s*"(?!data:)', html)
    assert "<script" not in html and "<link" not in html
    assert html.count('src="data:image/svg+xml;base64,') == 4  # classes, TLS, certs, providers


def test_several_scans_give_trends_in_time_order(scan: Path) -> None:
    def lose_all(rows: Rows) -> Rows:
        return [{**r, "starttls_class": "none"} if r["starttls_class"] == "all" else r
                for r in rows]
    later = _copy(scan, scan.parent / "later", {"domains": lose_all}, timedelta(days=90))
    page = parse(build_report([later, scan]))  # given out of order
    assert page.stats["trend/0/input_lines"] == page.stats["trend/1/input_lines"]
    html = build_report([later, scan])
    trends = html[html.index("<h2>Trends</h2>"):]
    assert trends.index("/clean</td>") < trends.index("/later</td>")
    lost = read_dataset(scan, "domains", columns=["starttls_class"]).column(
        "starttls_class").to_pylist().count("all")
    changes = trends[trends.index("Changes between scans"):]
    cells = re.findall(r"<td>(\d+)</td>", changes)
    assert [int(c) for c in cells[:2]] == [0, lost] and lost > 0


def test_report_of_an_empty_scan(scan: Path) -> None:
    def nothing(rows: Rows) -> Rows:
        return []
    empty = _copy(scan, scan.parent / "empty", dict.fromkeys(DATASETS, nothing))
    page = parse(build_report([empty]))
    assert page.stats["domains/input_lines"] == "0" and page.stats["hosts/tls_ok"] == "0"


def test_escaping_of_server_strings() -> None:
    assert esc("<script>x</script>") == "&lt;script&gt;x&lt;/script&gt;"
    assert esc('" onload="x') == "&quot; onload=&quot;x"
    assert esc("a\x00b\x1b[2J") == "a\\x00b\\x1b[2J" and esc(None) == "–"


def test_policy_section_shows_deep_checks() -> None:
    policies = {"domains_queried": 10, "mail_domains": 8, "adoption": {"spf_valid": 5},
                "mail_adoption": {"dane_valid": 2}, "dane_class": {"valid": 2},
                "deep": {"hosts_examined": 4, "accepts_TLSv1": 3, "dhe_le_1024_bits": 1}}
    page = parse(policy_section({"policies": policies}))
    assert page.stats["policies/deep/accepts_TLSv1"] == "3"
    assert page.stats["policies/adoption/spf_valid"] == "5"
    assert "hosts_examined" not in "".join(page.text) and "75.0%" in "".join(page.text)
    assert policy_section({"policies": None}) == ""


def test_report_command_errors(tmp_path: Path) -> None:
    proc = _run("report", str(tmp_path / "missing"), "-o", str(tmp_path / "r.html"))
    assert proc.returncode == 2 and "no scan results" in proc.stderr
    assert "Traceback" not in proc.stderr
