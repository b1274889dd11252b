"""What a policy lookup's UDP reply says: its rcode and flags, and the records that answer it.

The stub (`udp.py`) sends the queries and matches each reply to its question; this module
reads the reply. A reply without answer records is read from its 12-byte header alone (RFC
1035 §4.1.1); one with records through dnspython's wire parser, without building a message
(`_chain_end`), and a TXT record's strings without building its rdata (`TxtStrings`). An
answer that came over TCP is a dnspython message, chained by dnspython.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.wire

# plain ints: an IntFlag operation builds an enum member each time (per reply)
_TC = int(dns.flags.TC)
_QR = int(dns.flags.QR)
_OPCODE = 0x7800  # the header's opcode bits (RFC 1035 §4.1.1)
_QUERY = int(dns.opcode.to_flags(dns.opcode.QUERY))  # a standard query's: 0
_NOERROR = int(dns.rcode.NOERROR)
_CNAME = int(dns.rdatatype.CNAME)
_TXT = int(dns.rdatatype.TXT)
_IN = int(dns.rdataclass.IN)
_TO_QUESTION = b"\xc0\x0c"  # a compression pointer to offset 12, the question's name


class TxtStrings(NamedTuple):
    """A TXT record read from a UDP reply: its character-strings (RFC 1035 §3.3.14).

    `strings` is the attribute of dnspython's TXT rdata, which an answer over TCP carries: the
    policy checks read either. dnspython's TXT rdata checks each string again as it builds an
    immutable object; reading the strings with dnspython's parser alone costs 2.9 us a record
    instead of 14.4, and a survey reads about one TXT record a domain: a 40,000-domain sample
    of the national profile used 0.927x and 0.945x the CPU in two runs of `benchmarks/ab.py`,
    the second with the two commits' roles swapped (2026-12-06, benchmarks/RESULTS.md).
    """

    strings: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class StubReply:
    """An answer: header rcode and flags, and the records that answer the question.

    `records` are the records of the asked type at the end of the answer's CNAME chain, without
    duplicates, as dnspython rdata (TXT records as `TxtStrings`); empty when there are none
    (NODATA) or the rcode is not NOERROR.
    """

    rcode: int
    flags: int
    records: tuple[dns.rdata.Rdata | TxtStrings, ...] = ()


def read_reply(reply: bytes, question_length: int) -> StubReply | None:
    """The reply as a StubReply; None when it is truncated (TC) and must be asked over TCP.

    The reply's question is the one asked, `question_length` bytes long: the stub matched its
    id and its question bytes.
    """
    flags = int.from_bytes(reply[2:4], "big")
    if flags & _TC:
        return None
    rcode = flags & 0x000F
    if reply[6:8] == b"\0\0" or rcode != _NOERROR:
        return StubReply(rcode, flags)  # no answer to read: the header says all
    if not flags & _QR or flags & _OPCODE != _QUERY \
            or reply[4:6] != b"\0\1":
        raise dns.exception.FormError(  # type: ignore[no-untyped-call]
            "the reply is not an answer to one query")
    return StubReply(rcode, flags, _chain_end(reply, question_length))


def _chain_end(reply: bytes, question_length: int
               ) -> tuple[dns.rdata.Rdata | TxtStrings, ...]:
    """The records of the asked type at the end of the answer section's CNAME chain.

    The same records as dnspython's `Message.resolve_chaining()` (tests compare the two), read
    by dnspython's own name and rdata parsers but without building a message: its record sets,
    section searches and type enums were most of the cost of a TXT answer. Only records of
    the asked type and CNAMEs are parsed; the rest (the RRSIGs a DO query brings back) are
    skipped by their length. An owner that is a pointer to the question's name (RFC 1035
    §4.1.4), as almost every answer's is, is that name and is not parsed again; the question's
    name itself is parsed only when another owner must be compared with it. 68.9 -> 19.1 us for a
    TXT answer (2026-12-06). The authority and additional sections are never read: the policy
    checks need the answer and the header's rcode and AD bit.
    """
    wanted = int.from_bytes(reply[8 + question_length:10 + question_length], "big")
    parser = dns.wire.Parser(reply, 12 + question_length)
    # (owner, type, rdata's bytes, rdata); owner None: the question's name
    records: list[tuple[dns.name.Name | None, int, bytes, dns.rdata.Rdata | TxtStrings]] = []
    for _ in range(int.from_bytes(reply[6:8], "big")):
        at = parser.current
        if reply[at:at + 2] == _TO_QUESTION:
            owner = None
            parser.seek(at + 2)
        else:
            owner = parser.get_name(None, True)
        rdtype, rdclass, _ttl, length = parser.get_struct("!HHIH")
        start = parser.current
        if rdclass == _IN and (rdtype == wanted or rdtype == _CNAME):
            data = reply[start:start + length]
            rdata: dns.rdata.Rdata | TxtStrings
            if rdtype == _TXT:
                parser.seek(start + length)  # FormError when the rdata overruns the reply
                rdata = _txt_strings(dns.wire.Parser(data))
            else:
                with parser.restrict_to(length):
                    rdata = dns.rdata.from_wire_parser(rdclass, rdtype, parser)
            records.append((owner, rdtype, data, rdata))
        else:
            parser.seek(start + length)
    if all(owner is None for owner, _, _, _ in records):  # every record is at the question
        found = _unique((wire, rdata) for _, rdtype, wire, rdata in records if rdtype == wanted)
        if found or all(rdtype != _CNAME for _, rdtype, _, _ in records):
            return found
    question = dns.wire.Parser(reply, 12).get_name(None, True)
    named = [(question if owner is None else owner, rdtype, wire, rdata)
             for owner, rdtype, wire, rdata in records]
    name = question
    for _ in range(dns.message.MAX_CHAIN):
        found = _unique((wire, rdata) for owner, rdtype, wire, rdata in named
                        if rdtype == wanted and owner == name)
        if found or wanted == _CNAME:
            return found
        target = next((rdata.target for owner, rdtype, _, rdata in named  # type: ignore[union-attr]
                       if rdtype == _CNAME and owner == name), None)
        if target is None:
            return ()
        name = target
    raise dns.message.ChainTooLong


def _txt_strings(parser: dns.wire.Parser) -> TxtStrings:
    """The character-strings of a TXT rdata (a parser over its bytes alone), as dnspython's TXT
    rdata reads them; FormError where dnspython's would not parse (no string at all, or one
    that overruns the rdata)."""
    strings = []
    while parser.remaining() > 0:
        strings.append(parser.get_counted_bytes())
    if not strings:
        raise dns.exception.FormError(  # type: ignore[no-untyped-call]
            "a TXT record without a string")
    return TxtStrings(tuple(strings))


def _unique(records: Iterable[tuple[bytes, dns.rdata.Rdata | TxtStrings]]
            ) -> tuple[dns.rdata.Rdata | TxtStrings, ...]:
    """Rdata by first appearance of their bytes: a record set holds no duplicates (RFC 2181
    §5), and dnspython drops them as it builds one."""
    unique: dict[bytes, dns.rdata.Rdata | TxtStrings] = {}
    for wire, rdata in records:
        unique.setdefault(wire, rdata)
    return tuple(unique.values())


def reply_of_message(message: dns.message.Message) -> StubReply:
    """A StubReply from a whole message (an answer over TCP), chained by dnspython itself."""
    if not isinstance(message, dns.message.QueryMessage):
        raise dns.exception.FormError(  # type: ignore[no-untyped-call]
            "the reply is not an answer to a query")
    rcode = message.rcode()
    if rcode != _NOERROR or not message.answer:
        return StubReply(rcode, int(message.flags))
    chain = message.resolve_chaining()
    return StubReply(rcode, int(message.flags), tuple(chain.answer) if chain.answer else ())
