"""Reading a policy lookup's reply: the records dnspython would chain to, from the header and
the answer section only."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import pytest

from scanner.dns.reply import TxtStrings, read_reply


def _reply(answers: Sequence[tuple[str | None, str, str]], qname: str = "example.test",
           qtype: str = "TXT", flags: int = 0x8180, extra: bytes = b"") -> tuple[bytes, int]:
    """A reply to one question with the given answer records, and the question's length.

    An answer's owner None is written as a pointer to the question's name; a name is written
    out in full, as spelled, so that case and compression vary as they may on the wire.
    """
    import dns.name
    import dns.rdata
    import dns.rdataclass

    question = dns.name.from_text(qname).to_wire() + struct.pack(  # type: ignore[operator]
        "!HH", dns.rdatatype.from_text(qtype), 1)
    body = b""
    for owner, rdtype, text in answers:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, text)
        data = rdata.to_wire()
        assert data is not None
        body += (b"\xc0\x0c" if owner is None else dns.name.from_text(owner).to_wire())  # type: ignore[operator]
        body += struct.pack("!HHIH", rdata.rdtype, 1, 300, len(data)) + data
    header = struct.pack("!HHHHHH", 7, flags, 1, len(answers), 0, 0)
    return header + question + body + extra, len(question)


def _dnspython_answer(wire: bytes) -> tuple[object, ...]:
    """dnspython's chained answer, its TXT records as the strings they carry (`TxtStrings`)."""
    import dns.message

    chain = dns.message.from_wire(wire).resolve_chaining()  # type: ignore[attr-defined]
    if chain.answer is None:
        return ()
    return tuple(TxtStrings(r.strings) if r.rdtype == dns.rdatatype.TXT else r
                 for r in chain.answer)


CHAINS: dict[str, tuple[list[tuple[str | None, str, str]], str]] = {
    "two records": ([(None, "TXT", '"v=spf1 -all"'), (None, "TXT", '"other"')], "TXT"),
    "a duplicate": ([(None, "TXT", '"a"'), (None, "TXT", '"b"'), (None, "TXT", '"a"')], "TXT"),
    "spelled and pointed owners": ([(None, "TXT", '"a"'), ("EXAMPLE.test", "TXT", '"b"')],
                                   "TXT"),
    "other owner only": ([("other.test", "TXT", '"a"')], "TXT"),
    "signatures between": ([(None, "RRSIG", "TXT 13 2 300 20300101000000 20200101000000 1 "
                             "example.test. AAAA"), (None, "TXT", '"a"')], "TXT"),
    "a CNAME chain": ([(None, "CNAME", "b.test."), ("b.test", "CNAME", "c.test."),
                       ("C.TEST", "TXT", '"at c"'), ("b.test", "TXT", '"not the end"')], "TXT"),
    "a CNAME to nothing": ([(None, "CNAME", "gone.test."), ("else.test", "A", "127.0.0.1")],
                           "TXT"),
    "a CNAME beside the answer": ([(None, "TXT", '"here"'), (None, "CNAME", "b.test.")], "TXT"),
    "the CNAME asked for": ([(None, "CNAME", "b.test."), ("b.test", "CNAME", "c.test.")],
                            "CNAME"),
    "addresses": ([(None, "A", "127.0.0.1"), (None, "AAAA", "::1"), (None, "A", "127.0.0.2")],
                  "A"),
    "TLSA through a CNAME": ([(None, "CNAME", "t.test."), ("t.test", "TLSA", "3 1 1 " + "ab" * 32)],
                             "TLSA"),
}


FOUND = {"other owner only": 0, "a CNAME to nothing": 0, "signatures between": 1}


@pytest.mark.parametrize("case", list(CHAINS))
def test_answers_are_those_dnspython_chains_to(case: str) -> None:
    answers, qtype = CHAINS[case]
    wire, question_length = _reply(answers, qtype=qtype)
    reply = read_reply(wire, question_length)
    assert reply is not None
    assert reply.records == _dnspython_answer(wire)
    # not vacuous: what was found, once each
    assert len(reply.records) == FOUND.get(case, 1 if "CNAME" in case else 2)


def test_a_cname_loop_is_an_error_as_in_dnspython() -> None:
    import dns.message

    wire, question_length = _reply([(None, "CNAME", "example.test.")])
    with pytest.raises(dns.message.ChainTooLong):
        _dnspython_answer(wire)
    with pytest.raises(dns.message.ChainTooLong):
        read_reply(wire, question_length)


def test_a_reply_is_read_from_its_header_and_answers_only() -> None:
    import dns.flags
    import dns.rcode

    authority = struct.pack("!HHHIH", 0xC00C, dns.rdatatype.NS, 1, 300, 2) + b"\xc0\x0c"
    wire, question_length = _reply([(None, "TXT", '"v=spf1 -all"')],
                                   flags=0x8180 | int(dns.flags.AD), extra=authority)
    wire = wire[:8] + b"\0\1" + wire[10:]  # one authority record after the answer
    reply = read_reply(wire, question_length)
    assert reply is not None and reply.rcode == dns.rcode.NOERROR and reply.flags & dns.flags.AD
    assert reply.records == (TxtStrings((b"v=spf1 -all",)),)
    broken = wire[:-3] + b"\xff\xff\xff"  # the authority section no longer parses
    with pytest.raises(dns.exception.FormError):
        _dnspython_answer(broken)
    assert read_reply(broken, question_length).records == reply.records  # type: ignore[union-attr]
    # no answer records: the header alone, even when what follows would not parse
    empty = broken[:6] + b"\0\0" + broken[8:]
    assert read_reply(empty, question_length) == type(reply)(dns.rcode.NOERROR, 0x8180 |
                                                         int(dns.flags.AD))
    # a broken answer is an error, not a silent empty answer
    with pytest.raises(dns.exception.FormError):
        read_reply(wire[:12 + question_length + 12], question_length)
    # a query (QR clear) is no answer
    with pytest.raises(dns.exception.FormError):
        read_reply(wire[:2] + b"\x01\x00" + wire[4:], question_length)


@pytest.mark.parametrize("strings", [(b"v=spf1 -all",), (b"v=spf1 ", b"", b"-all"), (b"x" * 255,)])
def test_txt_strings_are_dnspythons(strings: tuple[bytes, ...]) -> None:
    import dns.rdata
    import dns.rdataclass

    text = " ".join('"' + s.decode() + '"' for s in strings)
    wire, question_length = _reply([(None, "TXT", text)])
    dnspython = dns.rdata.from_text(dns.rdataclass.IN, "TXT", text)
    reply = read_reply(wire, question_length)
    assert reply is not None
    assert reply.records == (TxtStrings(strings),)
    assert reply.records[0].strings == dnspython.strings  # type: ignore[union-attr]


@pytest.mark.parametrize("rdata", [b"", b"\x05abc", b"\x03abc\x02a"])
def test_a_txt_record_dnspython_refuses_is_an_error(rdata: bytes) -> None:
    """No string at all, or one longer than what is left of the rdata."""
    import dns.exception
    import dns.message

    question = b"\x07example\x04test\x00" + struct.pack("!HH", 16, 1)
    wire = (struct.pack("!HHHHHH", 7, 0x8180, 1, 1, 0, 0) + question + b"\xc0\x0c"
            + struct.pack("!HHIH", 16, 1, 300, len(rdata)) + rdata)
    with pytest.raises(dns.exception.FormError):
        dns.message.from_wire(wire)
    with pytest.raises(dns.exception.FormError):
        read_reply(wire, len(question))
