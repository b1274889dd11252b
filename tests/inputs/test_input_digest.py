"""Input fingerprints: the digest of the lines the scan reads, and the records that get rows."""

from __future__ import annotations

import codecs
import hashlib
import os
import threading
from pathlib import Path

import pytest
from helpers.inputs import COMPRESSORS, ZONE, read_all, write

from scanner.inputs.digest import digest_inputs, fingerprint_input

TEXT = """\
# a list with everything that is not one domain a line
example.no
Example.NO.
   spaced.no   # a comment after the name

not a domain!
example.no
b\u00fccher.no
xn--bcher-kva.no
"""

CSV = """\
rank,domain
1,example.no
2,other.no
# comment

3,example.no
4,
"""

# the zone's owners again, in another case and spelling: the same delegations
ZONE_AGAIN = ZONE + "$ORIGIN no.\nEXAMPLE IN NS ns3.example.no.\nxn--bcher-kva IN NS ns.x.com.\n"


@pytest.mark.parametrize(("name", "text"), [("list.txt", TEXT), ("top.csv", CSV),
                                            ("no.zone", ZONE), ("again.zone", ZONE_AGAIN)])
def test_records_are_the_rows_the_scan_writes(tmp_path: Path, name: str, text: str) -> None:
    path = write(tmp_path, name, text)
    fingerprint = fingerprint_input(path)
    rows, stats = read_all([path])
    # every record gets a row: a new name, an invalid line, or a duplicate's own row
    assert fingerprint.records == stats.valid + stats.invalid + stats.duplicates == len(rows)
    assert stats.duplicates == sum(r.status == "duplicate" for r in rows)
    assert fingerprint.lines == stats.lines == len(text.splitlines())
    assert fingerprint.format == stats.formats[str(path)]


def test_the_digest_is_of_the_lines_read_not_of_the_bytes(tmp_path: Path) -> None:
    plain = fingerprint_input(write(tmp_path, "plain.txt", TEXT))
    assert plain.sha256 == hashlib.sha256(TEXT.encode()).hexdigest()
    crlf_bom = codecs.BOM_UTF8 + TEXT.replace("\n", "\r\n").encode()
    for compression in (None, *COMPRESSORS):
        copy = fingerprint_input(write(tmp_path, f"copy-{compression}", crlf_bom, compression))
        assert (copy.sha256, copy.lines, copy.records) == (plain.sha256, plain.lines,
                                                           plain.records)
        assert copy.format == "text" + (f"+{compression}" if compression else "")
    no_final_newline = fingerprint_input(write(tmp_path, "cut.txt", TEXT.rstrip("\n")))
    assert no_final_newline.sha256 == plain.sha256
    for edited in (TEXT.replace("spaced", "spaces"), TEXT.replace("example.no\nExample",
                                                                  "Example.NO.\nexample")):
        assert fingerprint_input(write(tmp_path, "edited.txt", edited)).sha256 != plain.sha256


def test_a_named_pipe_is_digested_once_and_read_from_its_copy(tmp_path: Path) -> None:
    fifo = tmp_path / "list.pipe"
    os.mkfifo(fifo)
    data = COMPRESSORS["gzip"](TEXT.encode())

    def feed() -> None:
        with open(fifo, "wb") as writer:
            writer.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        inputs = digest_inputs([fifo])
    finally:
        feeder.join(timeout=5)
    try:
        copy = inputs.read_paths[0]
        assert copy != fifo and copy.name == fifo.name  # the `input` column names the pipe
        plain = fingerprint_input(write(tmp_path, "plain.txt", TEXT))
        assert inputs.fingerprints[0].sha256 == plain.sha256
        assert inputs.fingerprints[0].path == str(fifo)
        assert fingerprint_input(copy).sha256 == plain.sha256
        rows, _ = read_all([copy])
        assert rows and {r.source for r in rows} == {fifo.name}
    finally:
        inputs.remove_copies()
    assert not copy.exists()
