"""read_domains / check_inputs: every format, compression, bad lines, duplicates and bad files."""

from __future__ import annotations

import gzip
import os
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest
from helpers.inputs import COMPRESSORS, ZONE, read_all, write
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.inputs import files as input_files
from scanner.inputs.domain_lists import (
    INPUT_REASONS,
    InputError,
    InputStats,
    check_inputs,
    read_domains,
)
from scanner.model.records import DomainInput
from scanner.model.status import InputStatus

ZONE_NAMES = ["example.no", "other.no", "ttlfirst.no", "classfirst.no", "bare.no", "paren.no",
              "xn--bcher-kva.no", None, "signed.no", "split.no", "inner.sub.no", "sub.no"]


def domains(rows: Sequence[DomainInput]) -> list[str | None]:
    """The A-label of each row, None for invalid rows."""
    return [row.domain for row in rows]


# --- bad and odd lines -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("exa mple.com", "invalid_character"),
        ("_dmarc.example.com", "invalid_character"),
        ("*.example.com", "invalid_character"),
        ("a..example.com", "empty_label"),
        ("-example.com", "leading_hyphen"),
        ("😀.example.com", "idna_error"),
        ("a" * 64 + ".com", "label_too_long"),
        (".".join(["a" * 63] * 4), "name_too_long"),
        ("192.0.2.1", "ip_address"),
        ("2001:db8::1", "ip_address"),
        ("http://example.com/", "url"),
        ("example.com/about", "url"),
        ("user@example.com", "email_address"),
        ("localhost", "single_label"),
    ],
)
def test_bad_line_becomes_invalid_row(tmp_path: Path, line: str, reason: str) -> None:
    path = write(tmp_path, "list.txt", f"good.example\n{line}\n")
    rows, stats = read_all([path])
    assert domains(rows) == ["good.example", None]
    bad = rows[1]
    assert (bad.status, bad.reason, bad.raw, bad.line_no, bad.source) == (
        InputStatus.INVALID, reason, line, 2, "list.txt")
    assert bad.domain_unicode is None
    assert reason in INPUT_REASONS
    assert (stats.valid, stats.invalid) == (1, 1)


@pytest.mark.parametrize(
    ("line", "domain", "unicode"),
    [
        ("  example.com  ", "example.com", "example.com"),
        ("example.com.", "example.com", "example.com"),
        ("EXAMPLE.Com", "example.com", "example.com"),
        ("Bücher.de", "xn--bcher-kva.de", "bücher.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de", "bücher.de"),
        ("example.com # trailing comment", "example.com", "example.com"),
        ("\texample.com\t#x", "example.com", "example.com"),
    ],
)
def test_good_line_is_normalised(tmp_path: Path, line: str, domain: str, unicode: str) -> None:
    rows, _ = read_all([write(tmp_path, "list.txt", line + "\n")])
    assert [(r.domain, r.domain_unicode, r.status, r.reason) for r in rows] == [
        (domain, unicode, InputStatus.OK, None)]
    assert rows[0].raw == line.split("#")[0].strip()


def test_blank_and_comment_lines_are_skipped_and_counted(tmp_path: Path) -> None:
    path = write(tmp_path, "list.txt", "# header\n\n   \na.example\n  # indented\nb.example\n")
    rows, stats = read_all([path])
    assert [(r.line_no, r.domain) for r in rows] == [(4, "a.example"), (6, "b.example")]
    assert stats.as_dict() == {"lines": 6, "records": 2, "valid": 2, "invalid": 0,
                               "duplicates": 0, "skipped": 4}


def test_bom_and_crlf(tmp_path: Path) -> None:
    path = write(tmp_path, "list.txt", b"\xef\xbb\xbfone.example\r\n# c\r\ntwo.example\r\n")
    rows, stats = read_all([path])
    assert [(r.line_no, r.raw, r.domain) for r in rows] == [
        (1, "one.example", "one.example"), (3, "two.example", "two.example")]
    assert stats.formats == {str(path): "text"}


def test_invalid_utf8_after_the_first_kib_is_an_invalid_row(tmp_path: Path) -> None:
    data = b"".join(b"d%d.example\n" % i for i in range(200)) + b"caf\xe9.example\nok.example\n"
    rows, _ = read_all([write(tmp_path, "latin1.txt", data)])
    assert rows[200].reason == "invalid_encoding" and rows[200].line_no == 201
    assert rows[201].domain == "ok.example"


def test_overlong_line_is_cut_and_reading_goes_on(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(input_files, "MAX_LINE_CHARS", 100)
    long_line = "x" * 5000 + ".com"
    for name, text in [("list.txt", f"a.example\n{long_line}\nb.example\n"),
                       ("list.csv", f"1,a.example\n2,{long_line}\n3,b.example\n")]:
        rows, stats = read_all([write(tmp_path, name, text)])
        assert [(r.line_no, r.domain, r.reason) for r in rows] == [
            (1, "a.example", None), (2, None, "line_too_long"), (3, "b.example", None)]
        assert 90 < len(rows[1].raw) <= 100
        assert stats.lines == 3


# --- duplicates and numbering across files ------------------------------------------------------


def test_duplicates_are_rows_pointing_at_the_first_occurrence_across_files(
        tmp_path: Path) -> None:
    text = write(tmp_path, "a.txt", "example.no\nEXAMPLE.NO.\nbücher.no\nbad_one.no\nbad_one.no\n")
    csv = write(tmp_path, "b.csv", "1,xn--bcher-kva.no\n2,new.no\n3,example.no\n")
    zone = write(tmp_path, "c.zone", ZONE)
    rows, stats = read_all([text, csv, zone])
    zone_rows = rows[8:]
    assert domains(zone_rows) == ZONE_NAMES
    duplicates = [(r.line_no, r.source, r.domain, r.first_line_no, r.first_source)
                  for r in rows if r.status is InputStatus.DUPLICATE]
    # example.no (text, csv, zone) and bücher (csv, zone), each pointing at its first line;
    # the zone's further NS records of a delegation are no records at all
    assert duplicates == [(2, "a.txt", "example.no", 1, "a.txt"),
                          (6, "b.csv", "xn--bcher-kva.no", 3, "a.txt"),
                          (8, "b.csv", "example.no", 1, "a.txt"),
                          (8 + 10, "c.zone", "example.no", 1, "a.txt"),
                          (8 + 20, "c.zone", "xn--bcher-kva.no", 3, "a.txt")]
    assert [(r.line_no, r.status) for r in rows[:8]] == [
        (1, "ok"), (2, "duplicate"), (3, "ok"), (4, "invalid"), (5, "invalid"),  # invalid
        (6, "duplicate"), (7, "ok"), (8, "duplicate")]  # lines are never de-duplicated
    assert all(r.first_line_no is None and r.first_source is None
               for r in rows if r.status is not InputStatus.DUPLICATE)
    # every record is a row: the counts reconcile with the rows and the lines
    assert stats.duplicates == 5 and stats.records == len(rows)
    assert (stats.valid, stats.invalid) == (sum(r.status == "ok" for r in rows),
                                            sum(r.status == "invalid" for r in rows))
    assert stats.lines == 5 + 3 + ZONE.count("\n") == stats.records + stats.skipped
    assert {r.source for r in rows} == {"a.txt", "b.csv", "c.zone"}


def test_a_zone_record_is_an_owner_name_and_its_idna_twin_is_a_duplicate(
        tmp_path: Path) -> None:
    zone = write(tmp_path, "no.zone", "$ORIGIN no.\n@ SOA ns. h. 1 2 3 4 5\n@ NS ns1.nic.no.\n"
                 "bücher NS ns1.x.\nbücher NS ns2.x.\nglue.bücher A 192.0.2.1\n"
                 "other NS ns.x.\nBÜCHER NS ns3.x.\nxn--bcher-kva NS ns1.x.\n"
                 "xn--bcher-kva RRSIG NS 8 2 3600 ( 1 2 3 x. abc )\nother.no. NS ns.y.\n")
    rows, stats = read_all([zone])
    # bücher's three NS records (also far apart, and in capitals) are one delegation; the same
    # name spelt as an A-label is another owner name, thus a record, and a duplicate
    assert [(r.line_no, r.domain, r.status, r.first_line_no) for r in rows] == [
        (4, "xn--bcher-kva.no", "ok", None), (7, "other.no", "ok", None),
        (9, "xn--bcher-kva.no", "duplicate", 4)]
    assert (stats.lines, stats.records, stats.skipped) == (11, 3, 8)


def test_line_numbers_run_on_across_files(tmp_path: Path) -> None:
    first = write(tmp_path, "first.txt", "a.example\n\nb.example\n")
    second = write(tmp_path, "second.csv", "rank,domain\n1,c.example\n", "gzip")
    rows, _ = read_all([first, second])
    assert [(r.line_no, r.source, r.domain) for r in rows] == [
        (1, "first.txt", "a.example"), (3, "first.txt", "b.example"),
        (5, "second.csv", "c.example")]


# --- CSV --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "1,google.com\n2,facebook.com\n3,example.org\n",  # Tranco: no header
        "rank,domain\n1,google.com\n2,facebook.com\n3,example.org\n",
        "Domain,Rank\ngoogle.com,1\nfacebook.com,2\nexample.org,3\n",
        "GlobalRank,TldRank,Domain,TLD\n1,1,google.com,com\n2,2,facebook.com,com\n"
        "3,1,example.org,org\n",  # Majestic Million
        '"rank","domain"\n"1","google.com"\n"2","facebook.com"\n"3","example.org"\n',
        "1, google.com \r\n2,FACEBOOK.COM\r\n\r\n3,example.org.\r\n",
    ],
)
def test_csv_top_lists(tmp_path: Path, text: str) -> None:
    path = write(tmp_path, "top.csv", text)
    rows, stats = read_all([path])
    assert domains(rows) == ["google.com", "facebook.com", "example.org"]
    assert stats.formats[str(path)] == "csv"


def test_csv_short_and_empty_fields_are_invalid_rows(tmp_path: Path) -> None:
    rows, _ = read_all([write(tmp_path, "top.csv", "1,a.example\n2\n3,\n4,b.example\n")])
    assert [(r.line_no, r.domain, r.reason) for r in rows] == [
        (1, "a.example", None), (2, None, "missing_column"), (3, None, "empty"),
        (4, "b.example", None)]


def test_a_few_commas_do_not_make_a_text_list_csv(tmp_path: Path) -> None:
    path = write(tmp_path, "list.txt", "a.example\nb.example\nc,d.example\n")
    rows, stats = read_all([path])
    assert stats.formats[str(path)] == "text"
    assert rows[2].reason == "invalid_character"


# --- zone files -------------------------------------------------------------------------------


def test_zone_file_yields_each_delegation_once_without_the_apex(tmp_path: Path) -> None:
    path = write(tmp_path, "no.zone", ZONE)
    rows, stats = read_all([path])
    assert domains(rows) == ZONE_NAMES
    assert stats.formats[str(path)] == "zone"
    # each row points at the first line of its record
    assert [r.line_no for r in rows] == [10, 13, 15, 16, 17, 18, 20, 21, 26, 27, 30, 31]
    assert rows[ZONE_NAMES.index(None)].raw == "_bad.no."
    assert stats.duplicates == 0 and stats.invalid == 1


@pytest.mark.parametrize(
    ("text", "names"),
    [
        # no $ORIGIN: the SOA owner is the apex, absolute names throughout
        ("example.com. IN SOA ns. h. 1 2 3 4 5\nexample.com. IN NS ns1.\n"
         "a.example.com. IN NS ns1.\n", ["a.example.com"]),
        # no SOA: the first $ORIGIN is the apex
        ("$ORIGIN com.\n@ NS a.gtld.\nfoo NS ns.foo.com.\n", ["foo.com"]),
        # RFC 3597 type name, lower-case keywords, CLASS1
        ("$ORIGIN test.\nfoo in ns ns.\nbar CLASS1 TYPE2 ns.\n", ["foo.test", "bar.test"]),
        # $TTL only, relative owner resolved against a later $ORIGIN; $INCLUDE is not followed
        ("$TTL 1h\n$INCLUDE other.zone\n$ORIGIN org.\nx 1d IN NS ns.\n", ["x.org"]),
        # a stray ")" does not swallow the file
        ("$ORIGIN test.\nfoo NS ns. )\nbar NS ns.\n", ["foo.test", "bar.test"]),
    ],
)
def test_zone_file_variants(tmp_path: Path, text: str, names: list[str]) -> None:
    path = write(tmp_path, "z.txt", text)
    rows, stats = read_all([path])
    assert domains(rows) == names
    assert stats.formats[str(path)] == "zone"


def test_text_list_of_ns_hosts_is_not_a_zone(tmp_path: Path) -> None:
    path = write(tmp_path, "list.txt", "ns.example.com\nns1.example.net\n")
    _, stats = read_all([path])
    assert stats.formats[str(path)] == "text"


# --- compression --------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("\ufeff# c\r\nexample.no\r\nbad_.no\r\n", ["example.no", None]),
        ("rank,domain\n1,example.no\n2,other.no\n", ["example.no", "other.no"]),
        (ZONE, ZONE_NAMES),
    ],
    ids=["text", "csv", "zone"],
)
def test_compressed_inputs_read_like_plain_ones(tmp_path: Path, compression: str, text: str,
                                                expected: list[str | None]) -> None:
    path = write(tmp_path, "input.dat", text, compression)  # detected by magic, not by name
    rows, stats = read_all([path])
    assert domains(rows) == expected
    assert stats.formats[str(path)].endswith(f"+{compression}")


def test_plain_file_named_gz_is_read_as_text(tmp_path: Path) -> None:
    path = write(tmp_path, "list.txt.gz", "example.no\n")
    rows, stats = read_all([path])
    assert domains(rows) == ["example.no"] and stats.formats[str(path)] == "text"


def test_long_gzip_input_streams_lazily(tmp_path: Path) -> None:
    text = "".join(f"d{i}.example\n" for i in range(50_000))
    path = write(tmp_path, "big.txt.gz", text, "gzip")
    stats = InputStats()
    reader = read_domains([path], stats=stats)
    assert next(reader).domain == "d0.example"
    assert stats.lines == 1  # nothing read ahead beyond the buffer
    assert sum(1 for _ in reader) == 49_999
    assert stats.valid == 50_000


def test_truncated_gzip_raises_input_error_mid_file(tmp_path: Path) -> None:
    text = "".join(f"d{i}.example\n" for i in range(30_000))
    data = gzip.compress(text.encode())
    path = write(tmp_path, "cut.gz", data[: len(data) * 2 // 3])
    check_inputs([path])  # the head is fine: the damage shows only while reading
    with pytest.raises(InputError, match=r"cut\.gz: read failed"):
        list(read_domains([path]))


def test_named_pipe_is_read_once(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    data = gzip.compress(b"a.example\nb.example\n")

    def feed() -> None:
        with open(fifo, "wb") as writer:
            writer.write(data)

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        check_inputs([fifo])
        rows, _ = read_all([fifo])
    finally:
        feeder.join(timeout=5)
    assert domains(rows) == ["a.example", "b.example"]


# --- bad files ----------------------------------------------------------------------------------


def _bad_files(directory: Path) -> dict[str, tuple[Path, str]]:
    """Bad input files by name, with the message fragment each must produce."""
    return {
        "missing": (directory / "nope.txt", "no such file"),
        "directory": (directory, "is a directory"),
        "empty": (write(directory, "empty.txt", b""), "is empty"),
        "empty_gzip": (write(directory, "empty.gz", b"", "gzip"), "is empty after decompression"),
        "bom_only": (write(directory, "bom.txt", b"\xef\xbb\xbf"), "is empty"),
        "nul": (write(directory, "nul.txt", b"a.example\n\x00\x01\x02"), "NUL byte at offset 10"),
        "binary_gzip": (write(directory, "bin.gz", bytes(range(256)), "gzip"), "not a text file"),
        "latin1": (write(directory, "latin1.txt", b"caf\xe9.example\n"), "not UTF-8"),
        "utf16": (write(directory, "u16.txt", "a.example\n".encode("utf-16")), "UTF-16"),
        "zstd": (write(directory, "z.zst", b"\x28\xb5\x2f\xfd\x00\x00"), "zstd"),
        "zip": (write(directory, "z.zip", b"PK\x03\x04rest"), "zip"),
        "corrupt_gzip": (write(directory, "bad.gz", b"\x1f\x8b\x08\x00garbage"), "cannot read"),
        "comments_only": (write(directory, "comments.txt", "# a list\n\n  # to come\n \r\n"),
                          "holds no domain: only comments and blank lines"),
        "blank_gzip": (write(directory, "blank.gz", "\n" * 100_000, "gzip"),
                       "holds no domain: only comments and blank lines"),
        "long_comments": (write(directory, "long.txt", "# padding\n" * 20_000),
                          "holds no domain: only comments and blank lines"),
        "csv_header_only": (write(directory, "top.csv", "rank,domain\n# none yet\n"),
                            "holds no domain: only a CSV header"),
        "zone_without_delegation": (
            write(directory, "empty.zone", "$ORIGIN no.\n@ SOA ns. h. 1 2 3 4 5\n@ NS ns.\n"),
            "holds no delegation"),
    }


BAD_FILE_KINDS = ["missing", "directory", "empty", "empty_gzip", "bom_only", "nul", "binary_gzip",
                  "latin1", "utf16", "zstd", "zip", "corrupt_gzip", "comments_only", "blank_gzip",
                  "long_comments", "csv_header_only", "zone_without_delegation"]


def test_every_bad_file_kind_is_tested(tmp_path: Path) -> None:
    assert sorted(_bad_files(tmp_path)) == sorted(BAD_FILE_KINDS)


@pytest.mark.parametrize("kind", BAD_FILE_KINDS)
def test_bad_file_raises_one_line_input_error(tmp_path: Path, kind: str) -> None:
    path, fragment = _bad_files(tmp_path)[kind]
    good = write(tmp_path, "good.txt", "good.example\n")
    with pytest.raises(InputError) as caught:
        check_inputs([good, path])
    message = str(caught.value)
    assert fragment in message and str(path) in message and "\n" not in message
    # read_domains raises too, after the good file's names and before any of the bad one's
    reader = read_domains([good, path])
    assert next(reader).domain == "good.example"
    with pytest.raises(InputError, match=fragment):
        next(reader)


def test_a_file_of_comments_is_a_one_line_error_of_scan(tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]
                                                        ) -> None:
    from scanner.commands.cli import main

    good = write(tmp_path, "good.txt", "good.example\n")
    comments = write(tmp_path, "comments.txt", "# nothing here yet\n\n")
    out = tmp_path / "out"
    assert main(["scan", str(good), str(comments), "-o", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err == f"scanner: error: {comments}: holds no domain: only comments and blank lines\n"
    assert not out.exists()  # refused before anything was contacted or written


def test_a_record_after_a_long_comment_header_is_found(tmp_path: Path) -> None:
    path = write(tmp_path, "list.txt", "# licence text\n" * 20_000 + "\nlate.example\n", "gzip")
    check_inputs([path])  # read up to its first record, well past the sniffed head
    rows, stats = read_all([path])
    assert domains(rows) == ["late.example"] and rows[0].line_no == 20_002
    assert (stats.records, stats.skipped) == (1, 20_001)


def test_a_pipe_of_comments_is_an_error_at_its_end(tmp_path: Path) -> None:
    fifo = tmp_path / "list.pipe"
    os.mkfifo(fifo)

    def feed() -> None:
        with open(fifo, "wb") as writer:
            writer.write(b"# only a comment\n")

    feeder = threading.Thread(target=feed)
    feeder.start()
    try:
        check_inputs([fifo])  # a pipe is read once, by read_domains
        with pytest.raises(InputError, match="only comments and blank lines"):
            read_all([fifo])
    finally:
        feeder.join(timeout=5)


def test_unreadable_file_raises_input_error(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, "secret.txt", "a.example\n")
    real_open = open

    def refuse(file: object, *args: object, **kwargs: object) -> object:
        if file == path:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(file, *args, **kwargs)  # type: ignore[call-overload]

    monkeypatch.setattr("builtins.open", refuse)
    with pytest.raises(InputError, match="secret.txt: permission denied"):
        check_inputs([path])


def test_no_inputs_is_an_error() -> None:
    with pytest.raises(InputError, match="no input files"):
        check_inputs([])


def test_input_error_is_a_value_error() -> None:
    assert issubclass(InputError, ValueError)


# --- properties ---------------------------------------------------------------------------------

_LABEL = st.text(st.sampled_from("abcxyz019-ü"), min_size=1, max_size=12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(_LABEL, _LABEL), min_size=1, max_size=30))
def test_text_csv_and_zone_forms_of_a_list_agree(pairs: list[tuple[str, str]]) -> None:
    names = [f"{a}.{b}" for a, b in pairs]
    renderings = {
        "list.text": "".join(f"{n}\n" for n in names),
        "list.csv": "".join(f"{i},{n}\n" for i, n in enumerate(names, 1)),
        "list.zone": "$ORIGIN .\n" + "".join(f"{n}. IN NS ns.example.\n" for n in names),
    }
    results = []
    with tempfile.TemporaryDirectory() as directory:
        for name, text in renderings.items():
            rows, stats = read_all([write(Path(directory), name, text, "gzip")])
            assert stats.formats[str(Path(directory) / name)].split("+")[0] == name[5:]
            assert stats.lines == len(names) + (name == "list.zone")
            results.append([(r.domain, r.reason, r.status) for r in rows])
            assert stats.records == len(rows)
    text_rows, csv_rows, zone_rows = results
    assert text_rows == csv_rows and len(text_rows) == len(names)
    # a zone repeats no owner (the second NS of a name is the same delegation): each name is
    # one record, valid or not, where a list has a row for each of its lines
    firsts: dict[str, tuple[str | None, str | None, str]] = {}
    for name, row in zip(names, text_rows, strict=True):
        firsts.setdefault(name, row)
    assert zone_rows == list(firsts.values())
    assert [r for r in text_rows if r[2] != "duplicate" and r[0]] == [r for r in zone_rows if r[0]]
    valid = [d for d, _, status in text_rows if status == "ok"]
    assert len(valid) == len(set(valid))
