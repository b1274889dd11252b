"""Input files for the inputs tests: compressors, a zone file, writing and reading."""

from __future__ import annotations

import bz2
import gzip
import lzma
from collections.abc import Callable, Sequence
from pathlib import Path

from scanner.inputs.domain_lists import (
    InputStats,
    read_domains,
)
from scanner.model.records import DomainInput

COMPRESSORS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip.compress, "bzip2": bz2.compress, "xz": lzma.compress,
}


ZONE = """\
; the .no zone, abridged
$ORIGIN no.
$TTL 3600
@ IN SOA ns1.nic.no. hostmaster.nic.no. (
        2024010101 ; serial
        3600 900 604800 ; refresh retry expire
        300 )
@        IN NS ns1.nic.no.
         IN NS ns2.nic.no.
example  IN NS ns1.example.no.
         IN NS ns2.example.no.
ns1.example IN A 192.0.2.1
other.no. 86400 IN NS ns.other.com.
txt      IN TXT "( not a parenthesis ; nor a comment"
ttlfirst 300 IN NS ns.x.com.
classfirst IN 300 NS ns.x.com.
bare     NS ns.x.com.
paren    IN NS (
                ns.x.com. )
Bücher   IN NS ns.x.com.
_bad     IN NS ns.x.com.
_bad     IN NS ns.y.com.
;retired IN NS ns.x.com.
signed   IN DS 12345 8 2 (
                49FD46E6C4B45C55D4AC )
         IN NS ns.x.com.
split IN (
NS ns.x.com. )
$ORIGIN sub.no.
inner    IN NS ns.x.com.
@        IN NS ns.x.com.
"""


def write(directory: Path, name: str, text: str | bytes, compression: str | None = None) -> Path:
    """Write a (possibly compressed) input file and return its path."""
    data = text.encode() if isinstance(text, str) else text
    path = directory / name
    path.write_bytes(COMPRESSORS[compression](data) if compression else data)
    return path


def read_all(paths: Sequence[Path]) -> tuple[list[DomainInput], InputStats]:
    """Everything read_domains yields, and its stats."""
    stats = InputStats()
    return list(read_domains(paths, stats=stats)), stats
