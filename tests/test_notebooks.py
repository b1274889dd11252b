"""Every notebook runs top to bottom (nbclient) against a fresh lab scan, with scanner.stats'
numbers."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scanner.compare import compare
from scanner.pipeline import Scan
from scanner.sink.durable import committed_files
from scanner.sink.schema import DATASETS
from scanner.stats import distributions, grouped_stats, survey_stats

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


@pytest.fixture(scope="module")
def scans(fast_config_factory: Any, tmp_path_factory: pytest.TempPathFactory
          ) -> tuple[Path, Path]:
    """A lab scan and a later copy in which every `all` domain lost STARTTLS."""
    config = fast_config_factory(tmp_path_factory.mktemp("notebooks") / "first")
    asyncio.run(Scan(config).run())
    first = Path(config.output)
    later = first.parent / "later"
    shutil.copytree(first, later)
    for path in committed_files(later, "domains"):
        rows = [{**r, "starttls_class": "none"} if r["starttls_class"] == "all" else r
                for r in pq.read_table(path).to_pylist()]
        pq.write_table(pa.Table.from_pylist(rows, schema=DATASETS["domains"]), path)
    manifest = json.loads((later / "manifest.json").read_text())
    manifest["start_time"] = (datetime.fromisoformat(manifest["start_time"])
                              + timedelta(days=7)).isoformat()
    (later / "manifest.json").write_text(json.dumps(manifest))
    return first, later


def _execute(path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run a notebook (errors raise CellExecutionError); its NOTEBOOK_SUMMARY line as a dict."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # no migration warning from jupyter_core
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(path, as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), path.name
    NotebookClient(nb, timeout=60, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    lines = [line for cell in nb.cells for out in cell.get("outputs", [])
             if out.get("output_type") == "stream" for line in out["text"].splitlines()
             if line.startswith("NOTEBOOK_SUMMARY ")]
    assert len(lines) == 1, f"{path.name} printed no summary"
    images = sum(1 for cell in nb.cells for out in cell.get("outputs", [])
                 if "image/png" in out.get("data", {}))
    assert images >= 1, f"{path.name} drew no chart"
    summary: dict[str, Any] = json.loads(lines[0].split(" ", 1)[1])
    return summary


def test_every_notebook_is_tested() -> None:
    assert {p.name for p in NOTEBOOKS} == {"survey_statistics.ipynb", "trend.ipynb"}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_with_the_same_numbers(notebook: Path, scans: tuple[Path, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    first, later = scans
    env = {"SCANNER_RESULTS": str(first),
           "SCANNER_RESULTS_LIST": os.pathsep.join([str(later), str(first)])}
    summary = _execute(notebook, env, monkeypatch)
    stats = survey_stats(first)
    if notebook.stem == "survey_statistics":
        assert summary["norway"] == {c: stats["domains"]["starttls_share_of_mail_domains"][c]
                                     for c in ("none", "some", "all")}
        h = stats["hosts"]
        assert summary["facebook"] == {
            "STARTTLS offered": h["starttls_share_of_answered"],
            "TLS negotiated": h["tls_share_of_answered"],
            "forward secrecy (of TLS)": h["forward_secrecy_share_of_tls"],
            "strict-valid (of TLS)": h["strict_share_of_tls"]}
        assert summary["certificate_problems"] == distributions(first)["certificate_problems"]
        assert summary["top_provider"] == grouped_stats(first, "provider", top=1)[0]["group"]
    else:
        later_stats = survey_stats(later)
        assert summary["scans"] == [stats["scan"]["start_time"],
                                    later_stats["scan"]["start_time"]]
        assert summary["starttls_all"] == [
            stats["domains"]["starttls_share_of_mail_domains"]["all"], 0.0]
        lost = len(compare(first, later)["changes"]["starttls"]["lost"])
        assert lost == stats["domains"]["starttls"]["all"] > 0
        assert summary["changes"]["starttls_lost"] == lost


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_a_scan_of_the_oldest_schema(notebook: Path, scans: tuple[Path, Path],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from test_stats import older_scan

    first, later = scans
    old = older_scan(first, tmp_path / "v1.0", "1.0")
    env = {"SCANNER_RESULTS": str(old),
           "SCANNER_RESULTS_LIST": os.pathsep.join([str(later), str(old)])}
    summary = _execute(notebook, env, monkeypatch)
    stats = survey_stats(first)  # the same servers, read from the newest schema
    if notebook.stem == "survey_statistics":
        assert summary["norway"] == {c: stats["domains"]["starttls_share_of_mail_domains"][c]
                                     for c in ("none", "some", "all")}
        assert summary["certificate_problems"] == distributions(first)["certificate_problems"]
    else:
        assert summary["starttls_all"] == [
            stats["domains"]["starttls_share_of_mail_domains"]["all"], 0.0]
