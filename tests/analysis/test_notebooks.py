"""Every notebook runs top to bottom (nbclient) against a fresh lab scan, with
scanner.analysis.stats' numbers."""

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

from scanner.analysis.compare import compare
from scanner.analysis.stats import distributions, grouped_stats, survey_stats
from scanner.scan.pipeline import Scan
from scanner.sink.durable import committed_files
from scanner.sink.schema import DATASETS

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))


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


#: what each notebook found, printed by a cell the test appends (the tracked notebooks hold no
#: test-harness output): the names are the notebooks' own variables
_SUMMARY_CELLS = {
    "survey_statistics": 'summary = {"norway": norway, "facebook": facebook, '
                         '"certificate_problems": problems, '
                         '"top_provider": providers[0]["group"] if providers else None}',
    "trend": 'summary = {"scans": [r["start"] for r in rows], '
             '"starttls_all": [r["starttls_all"] for r in rows], "changes": changes}',
}


def _execute(path: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Run a notebook (errors raise CellExecutionError) and return what it found, as a dict."""
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("JUPYTER_PLATFORM_DIRS", "1")  # no migration warning from jupyter_core
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    nb = nbformat.read(path, as_version=4)
    assert any("parameters" in c.metadata.get("tags", []) for c in nb.cells), path.name
    nb.cells.append(nbformat.v4.new_code_cell(
        "import json as _json\n" + _SUMMARY_CELLS[path.stem]
        + '\nprint("NOTEBOOK_SUMMARY " + _json.dumps(summary))'))
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


def test_tracked_notebooks_hold_no_outputs_or_test_harness() -> None:
    """What is committed is the notebook a reader opens: no outputs, no lines for the tests."""
    import nbformat

    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            assert "NOTEBOOK_SUMMARY" not in cell.source, path.name
            if cell.cell_type == "code":
                assert cell.outputs == [] and cell.execution_count is None, path.name


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


def test_relative_results_are_taken_from_where_the_user_stands(
        scans: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """SCANNER_RESULTS relative to the caller's directory, though the kernel runs elsewhere."""
    first, later = scans
    monkeypatch.setenv("PWD", str(first.parent))  # what a shell exports for its directory
    summary = _execute(NOTEBOOKS[0], {"SCANNER_RESULTS": first.name}, monkeypatch)
    assert summary["norway"] == {c: survey_stats(first)["domains"][
        "starttls_share_of_mail_domains"][c] for c in ("none", "some", "all")}
    trend = _execute(NOTEBOOKS[1], {"SCANNER_RESULTS_LIST": ""}, monkeypatch)
    # no list named: every scan under results/ of the caller's directory (none here)
    assert trend["scans"] == []


def test_readme_notebook_command_leaves_the_tracked_notebook_alone(
        scans: tuple[Path, Path], tmp_path: Path) -> None:
    """`jupyter execute --output` from another directory, with a relative SCANNER_RESULTS."""
    import subprocess
    import sys

    first, _later = scans
    notebook = NOTEBOOKS[0]
    before = notebook.read_bytes()
    out = tmp_path / "executed"
    jupyter = Path(sys.executable).with_name("jupyter")
    env = {**os.environ, "SCANNER_RESULTS": os.path.relpath(first, tmp_path), "PWD": str(tmp_path),
           "JUPYTER_PLATFORM_DIRS": "1", "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    proc = subprocess.run([str(jupyter), "execute", str(notebook), "--output", str(out)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert notebook.read_bytes() == before
    executed = json.loads((tmp_path / "executed.ipynb").read_text())
    text = "".join("".join(o.get("text", "")) for c in executed["cells"]
                   for o in c.get("outputs", []))
    assert f"mail domains of {survey_stats(first)['domains']['input_lines']} input lines" in text


def test_notebooks_run_on_a_scan_without_mail_domains(
        fast_config_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No mail domain: the shares are "-" (not measured), never a crash or 0 %."""
    import dataclasses

    names = tmp_path / "names.txt"
    names.write_text("no-such-domain.test\nbad..name\n", encoding="utf-8")
    config = dataclasses.replace(fast_config_factory(tmp_path / "out"), inputs=(names,))
    asyncio.run(Scan(config).run())
    assert survey_stats(config.output)["domains"]["mail_domains"] == 0
    summary = _execute(NOTEBOOKS[0], {"SCANNER_RESULTS": str(config.output)}, monkeypatch)
    assert set(summary["norway"].values()) == {None}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_reads_a_scan_of_the_oldest_schema(notebook: Path, scans: tuple[Path, Path],
                                                    tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from helpers.results import older_scan

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
