"""Delegated names from a DNS master file (RFC 1035 §5): the owner names of NS records.

Enough of the format for registry zone files: $ORIGIN, $TTL, relative names, "@", a blank owner
meaning the previous owner, parentheses spanning lines, ";" comments and quoted strings. $INCLUDE
and $GENERATE are not followed. NS records at the zone apex (the SOA owner, else the first
$ORIGIN) are the zone's own servers, not a delegation, and are left out.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Iterator

log = logging.getLogger(__name__)

_TTL = re.compile(r"(?:\d+[smhdw]?)+", re.IGNORECASE)  # "3600", "1h30m" (BIND units)
_CLASSES = frozenset({"IN", "CH", "HS", "CS", "ANY", "NONE"})
_NS_TYPES = frozenset({"NS", "TYPE2"})  # RFC 3597 spells NS "TYPE2"
_DIRECTIVES = frozenset({"$ORIGIN", "$TTL", "$INCLUDE", "$GENERATE"})


def looks_like_zone(lines: Iterable[str]) -> bool:
    """True when sample lines hold a zone directive or an NS/SOA record."""
    for line in lines:
        tokens = line.split(";", 1)[0].split()
        if not tokens:
            continue
        if tokens[0].upper() in _DIRECTIVES:
            return True
        if len(tokens) >= 2 and any(t.upper() in ("NS", "SOA") for t in tokens[:4]):
            return True
    return False


def delegated_owners(lines: Iterable[tuple[int, str]]) -> Iterator[tuple[int, str]]:
    """Yield (line number of the record, absolute owner name) for each NS record below the apex.

    An owner with several NS records is yielded once per record; the caller de-duplicates.
    """
    origin: str | None = None  # absolute, with its trailing dot
    apex: str | None = None
    apex_from_soa = False
    previous_owner: str | None = None
    record: list[str] = []
    depth = 0
    record_line = 0
    blank_owner = False
    for line_no, line in lines:
        tokens, depth_change = _tokens(line)
        if depth == 0:
            record_line, record = line_no, tokens
            blank_owner = line[:1] in (" ", "\t")
        else:
            record.extend(tokens)
        depth = max(0, depth + depth_change)  # a stray ")" must not swallow the rest of the file
        if depth > 0 or not record:
            continue
        if not blank_owner and record[0].startswith("$"):
            origin = _directive(record, origin, record_line)
            if apex is None:
                apex = origin
            continue
        if blank_owner:
            owner = previous_owner
            rest = record
        else:
            owner = _absolute(record[0], origin)
            rest = record[1:]
        previous_owner = owner
        rtype = _record_type(rest)
        if owner is None or rtype is None:
            continue
        if rtype == "SOA" and not apex_from_soa:
            apex, apex_from_soa = owner, True
        elif rtype in _NS_TYPES and (apex is None or owner.lower() != apex.lower()):
            yield record_line, owner


def _tokens(line: str) -> tuple[list[str], int]:
    """Split one line into tokens, dropping the comment; also return the parenthesis balance."""
    if '"' not in line and "\\" not in line:
        body = line.split(";", 1)[0]
        opens, closes = body.count("("), body.count(")")
        if opens or closes:
            body = body.replace("(", " ").replace(")", " ")
        return body.split(), opens - closes
    return _tokens_quoted(line)


def _tokens_quoted(line: str) -> tuple[list[str], int]:
    """The slow path of _tokens, for lines with quoted strings or backslash escapes."""
    tokens: list[str] = []
    current: list[str] = []
    balance = 0
    quoted = False
    chars = iter(line)
    for char in chars:
        if char == "\\":
            current.append(char + next(chars, ""))  # keep escapes; owner names with them fail later
        elif quoted:
            quoted = char != '"'
            current.append(char)
        elif char == '"':
            quoted = True
            current.append(char)
        elif char == ";":
            break
        elif char in "()" or char.isspace():
            balance += {"(": 1, ")": -1}.get(char, 0)
            if current:
                tokens.append("".join(current))
                current = []
        else:
            current.append(char)
    if current:
        tokens.append("".join(current))
    return tokens, balance


def _directive(record: list[str], origin: str | None, line_no: int) -> str | None:
    """Apply one $-directive and return the origin in force after it."""
    name = record[0].upper()
    if name == "$ORIGIN" and len(record) >= 2:
        return _absolute(record[1], origin)
    if name in ("$INCLUDE", "$GENERATE"):
        log.warning("zone file line %d: %s is not followed", line_no, name)
    return origin


def _absolute(name: str, origin: str | None) -> str | None:
    """Resolve a zone-file name against the origin; None for "@" when no origin is known."""
    if name == "@":
        return origin
    if name.endswith(".") and not name.endswith("\\."):
        return name
    if origin is None:
        return name + "."  # no origin to append: the name is the best guess there is
    if origin == ".":
        return name + "."
    return f"{name}.{origin}"


def _record_type(fields: list[str]) -> str | None:
    """The record type after an optional TTL and class, in either order (RFC 1035 §5.1)."""
    for field in fields[:3]:
        upper = field.upper()
        if _TTL.fullmatch(field) or upper in _CLASSES or upper.startswith("CLASS"):
            continue
        return upper
    return None
