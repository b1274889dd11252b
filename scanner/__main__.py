"""python -m scanner -> commands.cli.entry()."""

from scanner.commands.cli import entry

entry()
