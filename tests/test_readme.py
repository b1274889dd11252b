"""The README describes the tool as it is today: its history lives in benchmarks/RESULTS.md."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"
RESULTS = README.parent / "benchmarks" / "RESULTS.md"


def test_readme_holds_no_benchmark_history() -> None:
    """Dated runs and commit-stamped figures belong in RESULTS.md, not in the README."""
    text = README.read_text(encoding="utf-8")
    dates = re.findall(r"\b20\d\d-\d\d-\d\d\b", text)
    commits = [c for c in re.findall(r"\b(?:at|of|commit) ([0-9a-f]{7,40})\b", text)
               if not c.isdigit()]
    assert dates == [], f"dates in the README: {dates[:5]}"
    assert commits == [], f"commit-stamped figures in the README: {commits[:5]}"


def test_readme_performance_figures_come_with_their_commands() -> None:
    """The Performance section names the benchmark command behind its figures."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Performance", 1)[1].split("\n## ", 1)[0]
    for script in ("survey.py", "floor.py", "layers.py", "peers.py", "ab.py"):
        assert f"benchmarks/{script}" in section
    assert "History of the README's performance section" in RESULTS.read_text(encoding="utf-8")
