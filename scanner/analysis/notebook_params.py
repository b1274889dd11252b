"""Results directories named in a notebook's parameters, resolved where the user stands.

`jupyter execute notebooks/x.ipynb` starts the kernel in the notebook's own folder, papermill in
the caller's; Jupyter Lab in the notebook's folder too. A relative `SCANNER_RESULTS` is meant
relative to the directory the user typed the command in, so it is resolved against the shell's
working directory (`PWD`, which every kernel inherits from the command that started it) rather
than the kernel's own.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

#: what the notebooks read when no directory is named: `make demo`'s output
DEFAULT_RESULTS = "results/demo"


def caller_directory(environ: Mapping[str, str] | None = None) -> Path:
    """The directory the notebook was started from: the shell's `PWD`, else the kernel's own."""
    env = os.environ if environ is None else environ
    pwd = env.get("PWD")
    if pwd and Path(pwd).is_absolute() and Path(pwd).is_dir():
        return Path(pwd)
    return Path.cwd()


def results_dir(text: str | os.PathLike[str] | None,
                environ: Mapping[str, str] | None = None) -> Path:
    """One results directory: absolute as given, relative to the caller's directory."""
    path = Path(text) if text else Path(DEFAULT_RESULTS)
    return path if path.is_absolute() else caller_directory(environ) / path


def results_dirs(text: str | None, environ: Mapping[str, str] | None = None) -> list[Path]:
    """Directories separated by `os.pathsep`; when none is named, every scan under results/."""
    named = [p for p in (text or "").split(os.pathsep) if p]
    if named:
        return [results_dir(p, environ) for p in named]
    root = caller_directory(environ) / "results"
    return sorted(p.parent for p in root.glob("*/manifest.json"))
