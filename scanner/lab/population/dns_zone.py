"""The lab's DNS data: records per name in wire format, plus names that fail on purpose.

Names are stored as lower-case DNS wire format (length-prefixed labels), so the server looks a
query up with the bytes it received, lower-cased, and never decodes text on the hot path. Record
data is packed once, when added; identical record sets (a provider's MX set shared by thousands of
domains) can share one tuple.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable
from enum import IntEnum

from dnslib import QTYPE

TTL = 300


class RType(IntEnum):
    """The record types the lab serves."""

    A = int(QTYPE.A)
    NS = int(QTYPE.NS)
    CNAME = int(QTYPE.CNAME)
    SOA = int(QTYPE.SOA)
    MX = int(QTYPE.MX)
    TXT = int(QTYPE.TXT)
    AAAA = int(QTYPE.AAAA)
    TLSA = int(QTYPE.TLSA)


Record = tuple[int, bytes]  # (type, packed rdata)


class FailMode(IntEnum):
    """How a name fails on purpose."""

    SERVFAIL = 1
    TIMEOUT = 2  # never answered
    REFUSED = 3


def wire_name(name: str) -> bytes:
    """`mx1.example.test` (or with a trailing dot) -> lower-case DNS wire format."""
    name = name.rstrip(".").lower()
    if not name:
        return b"\x00"
    out = bytearray()
    for label in name.split("."):
        raw = label.encode("ascii")
        if not 0 < len(raw) < 64:
            raise ValueError(f"bad DNS label in {name!r}")
        out.append(len(raw))
        out += raw
    out.append(0)
    return bytes(out)


def text_name(wire: bytes) -> str:
    """DNS wire format (uncompressed) -> `mx1.example.test`."""
    labels = []
    i = 0
    while wire[i]:
        n = wire[i]
        labels.append(wire[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += n + 1
    return ".".join(labels)


def parent(wire: bytes) -> bytes:
    """The wire name without its first label (the root stays the root)."""
    return wire[1 + wire[0]:] if wire[0] else wire


def mx_rdata(preference: int, exchange: str) -> bytes:
    """MX rdata; exchange "" or "." is the null MX target (RFC 7505)."""
    return struct.pack("!H", preference) + wire_name(exchange)


def txt_rdata(text: str) -> bytes:
    """TXT rdata: the text split into character-strings of at most 255 bytes."""
    raw = text.encode()
    chunks = [raw[i:i + 255] for i in range(0, len(raw), 255)] or [b""]
    return b"".join(bytes([len(c)]) + c for c in chunks)


class Zone:
    """Records for every name under `origin`; names outside it are refused."""

    def __init__(self, origin: str = "test") -> None:
        self.origin = wire_name(origin)
        self.records: dict[bytes, list[Record] | tuple[Record, ...]] = {}
        self.failing: dict[bytes, FailMode] = {}
        self.failing_types: dict[tuple[bytes, int], FailMode] = {}  # one type at a name
        self._empty: set[bytes] = set()  # names that exist without records (NODATA)
        self.signed: set[bytes] = set()  # names whose answers carry the AD bit ("signed")
        self.soa_rdata = (wire_name(f"ns.{origin}") + wire_name(f"hostmaster.{origin}")
                          + struct.pack("!IIIII", 1, 3600, 600, 86400, 60))
        # The root, as a recursive resolver answers for it (`. NS`, `. SOA`): the scanner asks
        # these before a scan to tell a working resolver from one broken at our end. The lab's
        # root names its own name server; nothing outside the lab is named.
        self.root_records: tuple[Record, ...] = (
            (int(RType.NS), wire_name(f"ns.{origin}")),
            (int(RType.SOA), wire_name(f"ns.{origin}") + wire_name(f"hostmaster.{origin}")
             + struct.pack("!IIIII", 1, 1800, 900, 604800, 86400)))

    # -- building -----------------------------------------------------------------------------

    def add(self, name: str, rtype: RType, rdata: bytes) -> None:
        """Add one record with packed rdata."""
        key = wire_name(name)
        current = self.records.get(key)
        if current is None:
            self.records[key] = [(int(rtype), rdata)]
            self._add_ancestors(key)
        elif isinstance(current, tuple):
            self.records[key] = [*current, (int(rtype), rdata)]
        else:
            current.append((int(rtype), rdata))

    def set_records(self, name: str, records: tuple[Record, ...]) -> None:
        """Replace a name's records with a (possibly shared) tuple."""
        key = wire_name(name)
        if key not in self.records:
            self._add_ancestors(key)
        self.records[key] = records

    def add_a(self, name: str, ip: str) -> None:
        """An A record (or AAAA, when the address is IPv6)."""
        addr = ipaddress.ip_address(ip)
        self.add(name, RType.A if addr.version == 4 else RType.AAAA, addr.packed)

    def add_aaaa(self, name: str, ip: str) -> None:
        """An AAAA record."""
        self.add(name, RType.AAAA, ipaddress.IPv6Address(ip).packed)

    def add_mx(self, name: str, preference: int, exchange: str) -> None:
        """An MX record; `add_mx(name, 0, ".")` is a null MX."""
        self.add(name, RType.MX, mx_rdata(preference, exchange))

    def add_null_mx(self, name: str) -> None:
        """RFC 7505: `0 .` means the domain accepts no mail."""
        self.add_mx(name, 0, ".")

    def add_cname(self, name: str, target: str) -> None:
        """A CNAME; the server follows it for other query types."""
        self.add(name, RType.CNAME, wire_name(target))

    def add_txt(self, name: str, text: str) -> None:
        """A TXT record."""
        self.add(name, RType.TXT, txt_rdata(text))

    def add_tlsa(self, name: str, usage: int, selector: int, mtype: int, data: bytes) -> None:
        """A TLSA record, e.g. for `_25._tcp.mx1.example.test`."""
        self.add(name, RType.TLSA, bytes([usage, selector, mtype]) + data)

    def add_empty(self, name: str) -> None:
        """A name that exists with no records: every query gets NODATA."""
        key = wire_name(name)
        self._empty.add(key)
        self._add_ancestors(key)

    def sign(self, name: str) -> None:
        """Answers for the name get the AD bit, as from a validating resolver (DNSSEC)."""
        self.signed.add(wire_name(name))

    def fail(self, name: str, mode: FailMode | str, rtype: RType | None = None) -> None:
        """Make every query for the name (or only those of `rtype`) fail: "servfail",
        "refused" or "timeout" (never answered). The root (`""`) may fail too."""
        if isinstance(mode, str):
            mode = FailMode[mode.upper()]
        if rtype is None:
            self.failing[wire_name(name)] = mode
        else:
            self.failing_types[(wire_name(name), int(rtype))] = mode

    def _add_ancestors(self, key: bytes) -> None:
        # Empty non-terminals (e.g. `_tcp.mx1.example.test`) exist: NODATA, not NXDOMAIN.
        node = parent(key)
        while len(node) > len(self.origin) and node not in self.records and node not in self._empty:
            self._empty.add(node)
            node = parent(node)

    # -- lookup -------------------------------------------------------------------------------

    def in_zone(self, key: bytes) -> bool:
        """True when the lower-case wire name is the origin or below it."""
        return key.endswith(self.origin) and (
            len(key) == len(self.origin) or self._label_boundary(key))

    def _label_boundary(self, key: bytes) -> bool:
        cut = len(key) - len(self.origin)
        i = 0
        while i < cut:
            i += key[i] + 1
        return i == cut

    def exists(self, key: bytes) -> bool:
        """True when the name has records or is an empty non-terminal (or the origin)."""
        return key in self.records or key in self._empty or key == self.origin

    def lookup(self, key: bytes) -> Iterable[Record]:
        """The records at a name (empty when none)."""
        return self.records.get(key, ())

    def __len__(self) -> int:
        return len(self.records)
