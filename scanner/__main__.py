"""python -m scanner -> cli.entry()."""

from scanner.commands.cli import entry

entry()
