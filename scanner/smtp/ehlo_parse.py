"""Parsing of SMTP replies as the prober sees them: greeting text, EHLO extensions, masking."""

from __future__ import annotations

import re

# A middlebox that strips STARTTLS usually overwrites the keyword with as many bytes: Cisco's
# "XXXXXXXA" is the classic (IMC 2015); some blank it as "XXXXXXXX".
_MASKED_KEYWORD = re.compile(r"^X{4,}A?$|^X{7}[A-Z]$", re.IGNORECASE)


def split_reply_lines(message: str) -> tuple[str, ...]:
    """The lines of a (multi-line) reply text, as aiosmtplib joins them with newlines."""
    return tuple(message.split("\n")) if message else ()


def ehlo_extensions(lines: tuple[str, ...]) -> tuple[str, ...]:
    """Upper-case extension keywords of the EHLO reply lines after the first (RFC 5321 4.1.1.1)."""
    keywords: list[str] = []
    for line in lines:
        word = line.strip().split(" ", 1)[0].split("=", 1)[0]
        if word and word.isprintable():
            keywords.append(word.upper())
    return tuple(dict.fromkeys(keywords))


def starttls_offered(extensions: tuple[str, ...]) -> bool:
    """True when STARTTLS is among the extensions (RFC 3207)."""
    return "STARTTLS" in extensions


def starttls_masked(extensions: tuple[str, ...]) -> bool:
    """True when STARTTLS is absent and a keyword looks like a middlebox's mask of it."""
    return not starttls_offered(extensions) and any(
        _MASKED_KEYWORD.match(word) for word in extensions
    )


_CONTROL_BYTE = re.compile("[\x00-\x08\x0b-\x1f\x7f]")  # C0 but tab and newline, and DEL


def has_control_bytes(text: str) -> bool:
    """True for NUL and other C0 controls (besides tab and newline) inside a reply's text."""
    return _CONTROL_BYTE.search(text) is not None
