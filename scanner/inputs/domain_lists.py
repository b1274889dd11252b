"""The inputs stage: domain lists in, one DomainInput per input record out, streaming.

A record is a line of a text or CSV file (blank lines, comments and a CSV header are not
records) or a delegated owner name of a zone file (its further NS records, glue, SOA and
signatures are not records). Every record becomes one DomainInput: `ok`, `invalid` (with the
reason), or `duplicate` (the same A-label as an earlier record, in any file), which points at
its first occurrence by line number and file, so that input records and `domains` rows
reconcile one to one.

Formats are detected per file from its first 64 KiB: DNS zone files (directives or NS/SOA
records), CSV top lists (commas in most of the first data lines), else plain text. Compression
is detected from magic bytes: gzip, bzip2 and xz are read; zstd and zip are refused by name.
A file without a single record (only comments and blank lines, a CSV header alone, a zone
without delegations) is an InputError, as an empty file is.

Memory: one line at a time, plus the de-duplication across all files (`name_set.NameSet`: an
8-byte digest and the 8-byte line number of its first occurrence per A-label seen, in a
temporary file but for the latest 65,536; 55 MB of file and a 9.4 MiB heap peak for 3.45
million names, where a set of the strings took ~350 MB of heap), plus, while a zone file is
read, an 8-byte digest per owner it delegated.
"""

from __future__ import annotations

import bisect
import csv
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from scanner.inputs import files as input_files
from scanner.inputs.domain_names import REASONS, InvalidDomain, normalise_domain
from scanner.inputs.files import InputError, open_text
from scanner.inputs.name_set import NameSet
from scanner.inputs.zone_file import delegated_owners, looks_like_zone
from scanner.model.records import DomainInput
from scanner.model.status import InputStatus

__all__ = ["INPUT_REASONS", "InputError", "InputStats", "check_inputs", "detect_format",
           "read_domains", "record_candidates"]

#: Reasons on invalid rows: the name's (domain_names.REASONS) and the line's.
INPUT_REASONS = REASONS | {
    "invalid_encoding",  # bytes that are not UTF-8 (decoded as U+FFFD)
    "missing_column",  # a CSV row too short to hold the domain column
    "line_too_long",  # over input_files.MAX_LINE_CHARS: cut there, never a domain
}

_SNIFF_LINES = 100
_CSV_SNIFF_LINES = 10
_MAX_RAW_CHARS = 1024  # an invalid row keeps this much of its line
_DOMAIN_HEADERS = frozenset({
    "domain", "domains", "domain_name", "domainname", "name", "host", "hostname", "site",
    "website", "origin",
})


@dataclass(slots=True)
class InputStats:
    """Running counts over every line read; `records` and `skipped` are derived, so the counts
    always add up: lines = records + skipped, records = valid + invalid + duplicates."""

    lines: int = 0  # physical lines read, all files
    valid: int = 0  # yielded with status ok
    invalid: int = 0  # yielded with status invalid
    duplicates: int = 0  # yielded with status duplicate: an A-label seen before, in any file
    formats: dict[str, str] = field(default_factory=dict)  # path -> "text", "csv+gzip", "zone"

    @property
    def records(self) -> int:
        """Records yielded: one `domains` row each."""
        return self.valid + self.invalid + self.duplicates

    @property
    def skipped(self) -> int:
        """Lines that are no record: blank, comment and CSV header lines, and the zone lines
        other than the first NS record of each delegated owner."""
        return self.lines - self.records

    def as_dict(self) -> dict[str, int]:
        """The counts, for the manifest and the CLI summary."""
        return {"lines": self.lines, "records": self.records, "valid": self.valid,
                "invalid": self.invalid, "duplicates": self.duplicates,
                "skipped": self.skipped}


def check_inputs(paths: Sequence[Path]) -> None:
    """Raise InputError for the first input that is missing, unreadable, empty, not text, or
    without a single record (only comments and blank lines)."""
    if not paths:
        raise InputError("no input files given")
    for path in paths:
        if Path(path).is_fifo():
            continue  # reading a pipe here would eat what read_domains needs
        with open_text(Path(path)) as opened:
            # read up to the first record: at once for any real list
            kind = _detect_format(opened.sample_lines)
            lines = _Lines(opened.read_lines(), 0, InputStats())
            if next(iter(_CANDIDATES[kind](lines)), None) is None:
                raise _no_records(Path(path), kind)


def _no_records(path: Path, kind: str) -> InputError:
    """The error for a file without a single record."""
    what = {"zone": "no delegation (no NS record below the zone apex)",
            "csv": "no domain: only a CSV header, comments and blank lines"}
    return InputError(f"{path}: holds {what.get(kind, 'no domain: only comments and blank lines')}")


def read_domains(paths: Sequence[Path], stats: InputStats | None = None) -> Iterator[DomainInput]:
    """Yield one DomainInput per record, across all files, in order.

    A record whose A-label an earlier record had (in any file) is yielded with status
    `duplicate` and the line number and file of that first occurrence. Raises InputError for a
    bad file before yielding anything from it, mid-file for corrupt compressed data, and at
    the end of a file that held no record. line_no runs on across files.
    """
    stats = stats if stats is not None else InputStats()
    line_offset = 0
    sources = _Sources()
    with NameSet(values=True) as seen:
        for path in map(Path, paths):
            with open_text(path) as opened:
                kind = _detect_format(opened.sample_lines)
                compression = f"+{opened.compression}" if opened.compression else ""
                stats.formats[str(path)] = kind + compression
                sources.add(line_offset + 1, path.name)
                lines = _Lines(opened.read_lines(), line_offset, stats)
                records_before = stats.records
                candidates = _CANDIDATES[kind](lines)
                yield from _rows(candidates, path.name, kind == "zone", seen, sources, stats)
                if stats.records == records_before:
                    raise _no_records(path, kind)
                line_offset = lines.last_line_no


class _Sources:
    """Which input file a (run-on) line number belongs to: the first line of each file."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._names: list[str] = []

    def add(self, first_line_no: int, name: str) -> None:
        """The next file, whose lines start at `first_line_no`."""
        self._starts.append(first_line_no)
        self._names.append(name)

    def of(self, line_no: int) -> str:
        """The name of the file holding `line_no`."""
        return self._names[bisect.bisect_right(self._starts, line_no) - 1]


def _rows(candidates: Iterable[tuple[int, str, str | None]], source: str, zone: bool,
          seen: NameSet, sources: _Sources, stats: InputStats) -> Iterator[DomainInput]:
    """Normalise one file's candidates into rows; a name seen before is a `duplicate` row."""
    # A zone's record is a delegated owner name, whatever number of NS records (anywhere in the
    # file) delegate it: only the first makes a row. Owners compare as written, case aside, so
    # a U-label owner and its A-label are two records, the second a duplicate of the first.
    with NameSet() as zone_owners:
        for line_no, raw, reason in candidates:
            if zone and not zone_owners.add(raw.lower()):
                continue
            if reason is None and "\ufffd" in raw:
                reason = "invalid_encoding"
            try:
                if reason is not None:
                    raise InvalidDomain(reason)
                a_label, u_label = normalise_domain(raw)
            except InvalidDomain as exc:
                stats.invalid += 1
                yield DomainInput(line_no, raw[:_MAX_RAW_CHARS], None, None, InputStatus.INVALID,
                                  exc.reason, source)
                continue
            first = seen.add_first(a_label, line_no)
            if first is not None:
                stats.duplicates += 1
                yield DomainInput(line_no, raw, a_label, u_label, InputStatus.DUPLICATE, None,
                                  source, first, sources.of(first))
                continue
            stats.valid += 1
            yield DomainInput(line_no, raw, a_label, u_label, InputStatus.OK, None, source)


class _Lines:
    """Numbered lines of one file, counting each into the stats as it is read."""

    def __init__(self, lines: Iterator[str], offset: int, stats: InputStats) -> None:
        self._lines = lines
        self._stats = stats
        self.last_line_no = offset

    def __iter__(self) -> Iterator[tuple[int, str]]:
        for line in self._lines:
            self.last_line_no += 1
            self._stats.lines += 1
            yield self.last_line_no, line


def _detect_format(sample: Sequence[str]) -> str:
    """Name the format from the first lines: zone, csv (commas in half the data lines) or text."""
    data_lines = [s for s in sample if s.strip() and not s.lstrip().startswith("#")]
    if looks_like_zone(data_lines[:_SNIFF_LINES]):
        return "zone"
    first = data_lines[:_CSV_SNIFF_LINES]
    if first and 2 * sum("," in line for line in first) >= len(first):
        return "csv"
    return "text"


def _text_candidates(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str, str | None]]:
    """One domain per line; "#" starts a comment anywhere on a line."""
    for line_no, line in lines:
        if len(line) >= input_files.MAX_LINE_CHARS:
            yield line_no, line, "line_too_long"
            continue
        if "#" in line:
            line = line.split("#", 1)[0]
        text = line.strip()
        if text:
            yield line_no, text, None


def _csv_candidates(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str, str | None]]:
    """The domain column of a CSV top list (Tranco: "rank,domain"), with or without a header."""
    column: int | None = None
    first_row = True
    for line_no, line in lines:
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if len(line) >= input_files.MAX_LINE_CHARS:
            yield line_no, text, "line_too_long"
            continue
        row = [f.strip() for f in (next(csv.reader([text])) if '"' in text else text.split(","))]
        if first_row:
            first_row = False
            if not any("." in f for f in row):  # domains have dots, header names do not
                column = next((i for i, f in enumerate(row) if f.lower() in _DOMAIN_HEADERS),
                              None)
                continue
        if column is None:
            # Without a header, the domain is the first field that is not a rank.
            column = next((i for i, f in enumerate(row) if not f.isdigit()), len(row) - 1)
        if column < len(row):
            yield line_no, row[column], None
        else:
            yield line_no, text, "missing_column"


def _zone_candidates(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str, str | None]]:
    """Owner names of the delegations in a zone file."""
    for line_no, owner in delegated_owners(lines):
        yield line_no, owner, None


_CANDIDATES: dict[str, Callable[[Iterable[tuple[int, str]]],
                                Iterator[tuple[int, str, str | None]]]] = {
    "text": _text_candidates, "csv": _csv_candidates, "zone": _zone_candidates,
}


def detect_format(sample_lines: Sequence[str]) -> str:
    """The format `read_domains` reads a file as, from its first lines: zone, csv or text."""
    return _detect_format(sample_lines)


def record_candidates(kind: str, lines: Iterable[tuple[int, str]]
                      ) -> Iterator[tuple[int, str, str | None]]:
    """The (line number, raw name, reason) candidates `read_domains` normalises, for one format.

    Each candidate of a text or CSV file becomes one `domains` row; a zone file's owner becomes
    one row however many NS records it has (see `read_domains`).
    """
    return _CANDIDATES[kind](lines)
