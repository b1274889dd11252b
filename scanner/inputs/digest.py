"""Input fingerprints: what each input file holds, so that a resumed scan reads the same input.

One streaming pass per file, over the lines as `read_domains` sees them (decompressed, UTF-8
with its BOM removed, any line ending read as one): the SHA-256 of those lines (each followed
by "\\n"), their number, and the number of input *records*, the lines that get a `domains` row:
every candidate of a text or CSV file (blank, comment and CSV header lines are not records;
duplicates are), and every delegated owner of a zone file once (its further NS records are not
records). A gzip copy of a file has the file's fingerprint; a fixed typo or a moved line does
not. Format detection and candidate extraction are the inputs stage's own
(`scanner.inputs.domain_lists`).

Memory stays flat: a zone file's owners are de-duplicated in a `NameSet`, as `read_domains`
does. A named pipe can be read only once: its lines are copied to a temporary file as they are
digested, and the scan reads that copy (`DigestedInputs.read_paths`).
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from scanner.inputs.domain_lists import detect_format, record_candidates
from scanner.inputs.files import open_text
from scanner.inputs.name_set import NameSet


@dataclass(frozen=True, slots=True)
class InputFingerprint:
    """One input file as the scan reads it; the manifest's `inputs` entries."""

    path: str  # as given on the command line
    format: str  # "text", "csv", "zone", with "+gzip" (or bzip2, xz) when compressed
    sha256: str  # hex digest of the decoded lines, each followed by "\n"
    lines: int  # physical lines
    records: int  # lines that get a `domains` row (see the module docstring)

    def to_json(self) -> dict[str, Any]:
        """The manifest's form: exactly path, format, sha256, lines, records."""
        return {"path": self.path, "format": self.format, "sha256": self.sha256,
                "lines": self.lines, "records": self.records}


@dataclass(frozen=True, slots=True)
class DigestedInputs:
    """The fingerprints of a scan's inputs, in order, and the files the scan then reads."""

    fingerprints: tuple[InputFingerprint, ...]
    read_paths: tuple[Path, ...]  # the inputs; a named pipe's copy instead of the pipe
    copies: Path | None = None  # the temporary directory of the copies, when there are some

    @property
    def records(self) -> int:
        """Input records over every file: the `domains` rows of a whole scan without --limit."""
        return sum(f.records for f in self.fingerprints)

    def remove_copies(self) -> None:
        """Delete the named pipes' copies (once the scan has read them)."""
        if self.copies is not None:
            shutil.rmtree(self.copies, ignore_errors=True)


class _Counted:
    """Numbered lines of one file, digested (and copied to `spool`) as they are read."""

    def __init__(self, lines: Iterator[str], spool: IO[str] | None) -> None:
        self._lines = lines
        self._spool = spool
        self.digest = hashlib.sha256()
        self.count = 0

    def __iter__(self) -> Iterator[tuple[int, str]]:
        update, spool = self.digest.update, self._spool
        for line in self._lines:
            self.count += 1
            update(line.encode() + b"\n")
            if spool is not None:
                spool.write(line + "\n")
            yield self.count, line


def _zone_owner_key(raw: str) -> str:
    """The key `read_domains` de-duplicates a zone's owners by: the owner as written, ignoring
    case (a U-label owner and its A-label are two owners; the second is a duplicate record)."""
    return raw.lower()


def _zone_records(candidates: Iterator[tuple[int, str, str | None]]) -> int:
    """Distinct delegated owners; an owner's further NS records mostly follow its first."""
    records = 0
    previous = None
    with NameSet() as owners:
        for _line_no, raw, _reason in candidates:
            if raw != previous and owners.add(_zone_owner_key(raw)):
                records += 1
            previous = raw
    return records


def fingerprint_input(path: Path, spool: IO[str] | None = None) -> InputFingerprint:
    """Fingerprint one input file (InputError when it cannot be read as a domain list)."""
    with open_text(Path(path)) as opened:
        kind = detect_format(opened.sample_lines)
        lines = _Counted(opened.read_lines(), spool)
        candidates = record_candidates(kind, lines)
        if kind == "zone":
            records = _zone_records(candidates)
        else:
            records = sum(1 for _ in candidates)
        compression = f"+{opened.compression}" if opened.compression else ""
    return InputFingerprint(path=str(path), format=kind + compression,
                            sha256=lines.digest.hexdigest(), lines=lines.count, records=records)


def digest_inputs(paths: Sequence[Path]) -> DigestedInputs:
    """Fingerprint every input, in order (InputError naming the first bad one).

    A named pipe is copied, under its own name (the `domains.input` column), into a temporary
    directory that `remove_copies` deletes.
    """
    fingerprints: list[InputFingerprint] = []
    read_paths: list[Path] = []
    copies: Path | None = None
    try:
        for path in map(Path, paths):
            if not path.is_fifo():
                fingerprints.append(fingerprint_input(path))
                read_paths.append(path)
                continue
            if copies is None:
                copies = Path(tempfile.mkdtemp(prefix="scanner-inputs-"))
            # a directory per input: two pipes may share a name (/dev/fd/63 of two shells)
            copy = copies / str(len(read_paths)) / path.name
            copy.parent.mkdir()
            with open(copy, "w", encoding="utf-8", newline="\n") as spool:
                fingerprints.append(fingerprint_input(path, spool))
            read_paths.append(copy)
    except BaseException:
        if copies is not None:
            shutil.rmtree(copies, ignore_errors=True)
        raise
    return DigestedInputs(tuple(fingerprints), tuple(read_paths), copies)
