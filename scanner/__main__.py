"""python -m scanner -> cli.entry()."""

from scanner.cli import entry

entry()
