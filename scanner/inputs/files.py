"""Opening one input file: compression from magic bytes, up-front checks, a UTF-8 line stream.

Each file is opened once (so a named pipe works too): the first 64 KiB are read for the checks
and format sniffing, then served again ahead of the rest of the stream.
"""

from __future__ import annotations

import bz2
import codecs
import gzip
import io
import lzma
import zlib
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from types import TracebackType

HEAD_BYTES = 64 * 1024
_TEXT_CHECK_BYTES = 1024  # NUL or invalid UTF-8 in here: not a text file
# A longer line is cut here, so that one newline-free gigabyte cannot exhaust memory.
MAX_LINE_CHARS = 1 << 20
_READ_ERRORS = (OSError, EOFError, zlib.error, lzma.LZMAError)


class InputError(ValueError):
    """An input file that cannot be read as a domain list; the message is one line naming it."""


def _compression(magic: bytes) -> str | None:
    """The compression format a file's first bytes announce, if any."""
    if magic.startswith(b"\x1f\x8b"):
        return "gzip"
    if magic[:3] == b"BZh" and magic[4:10] == b"1AY&SY":
        return "bzip2"
    if magic.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    if magic.startswith(b"PK\x03\x04"):
        return "zip"
    return None


class OpenedInput:
    """An open input: its compression, its first lines for sniffing, and all its lines."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stack = ExitStack()
        try:
            self._open()
        except BaseException:
            self._stack.close()
            raise

    def _open(self) -> None:
        path = self.path
        if path.is_dir():
            raise InputError(f"{path}: is a directory, not a file")
        try:
            raw = self._stack.enter_context(open(path, "rb"))
            magic = raw.peek(16)[:16]
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except PermissionError:
            raise InputError(f"{path}: permission denied") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from None
        self.compression = _compression(magic)
        stream: io.BufferedIOBase = raw
        if self.compression in ("zstd", "zip"):
            raise InputError(f"{path}: {self.compression} files are not supported; "
                             "decompress it, or use gzip")
        if self.compression == "gzip":
            stream = self._stack.enter_context(gzip.GzipFile(fileobj=raw, mode="rb"))
        elif self.compression == "bzip2":
            stream = self._stack.enter_context(bz2.BZ2File(raw, mode="rb"))
        elif self.compression == "xz":
            stream = self._stack.enter_context(lzma.LZMAFile(raw, mode="rb"))
        try:
            head = stream.read(HEAD_BYTES)
        except _READ_ERRORS as exc:
            raise InputError(f"{path}: cannot read {self.compression or 'file'}: {exc}") from None
        self._check_text(head)
        sample = head.decode("utf-8-sig", errors="replace").replace("\r\n", "\n").split("\n")
        if len(head) == HEAD_BYTES:
            sample.pop()  # most likely cut short
        self.sample_lines = sample
        self._text = io.TextIOWrapper(io.BufferedReader(_Rejoined(head, stream)),
                                      encoding="utf-8-sig", errors="replace", newline=None)
        self._stack.callback(self._text.close)

    def _check_text(self, head: bytes) -> None:
        """Raise InputError unless the head of the file is non-empty UTF-8 text."""
        path, where = self.path, " after decompression" if self.compression else ""
        if not head or head == codecs.BOM_UTF8:
            raise InputError(f"{path}: is empty{where}")
        if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise InputError(f"{path}: is UTF-16 text; convert it to UTF-8")
        check = head[:_TEXT_CHECK_BYTES]
        if b"\x00" in check:
            raise InputError(f"{path}: is not a text file{where} (NUL byte at offset "
                             f"{check.index(0)})")
        try:
            codecs.getincrementaldecoder("utf-8")().decode(check, final=len(head) == len(check))
        except UnicodeDecodeError as exc:
            raise InputError(f"{path}: is not UTF-8 text{where} (bad byte at offset "
                             f"{exc.start})") from None

    def read_lines(self) -> Iterator[str]:
        """Every line of the file, without its line ending; corrupt data raises InputError."""
        text = self._text
        try:
            while line := text.readline(MAX_LINE_CHARS):
                if line.endswith("\n"):
                    yield line[:-1]
                    continue
                if len(line) == MAX_LINE_CHARS:
                    while (rest := text.readline(MAX_LINE_CHARS)) and not rest.endswith("\n"):
                        pass
                yield line
        except _READ_ERRORS as exc:
            raise InputError(f"{self.path}: read failed: {exc}") from None

    def close(self) -> None:
        """Close the file and any decompressor."""
        self._stack.close()

    def __enter__(self) -> OpenedInput:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def open_text(path: Path) -> OpenedInput:
    """Open and check one input file; raise InputError naming it when it cannot be used."""
    return OpenedInput(path)


class _Rejoined(io.RawIOBase):
    """The head already read, then the rest of the stream: one file again."""

    def __init__(self, head: bytes, rest: io.BufferedIOBase) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._head:
            size = min(len(buffer), len(self._head))
            buffer[:size] = self._head[:size]
            self._head = self._head[size:]
            return size
        return self._rest.readinto(buffer)
