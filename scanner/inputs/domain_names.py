"""Domain name normalisation for mail domains: one A-label form, one Unicode form, or a reason.

IDNA 2008 through the `idna` package, with the UTS 46 mapping applied to input first (so
"Bücher.DE", fullwidth letters and the ideographic full stop all work). Pure ASCII input takes a
fast path: for ASCII, the UTS 46 mapping is lower-casing, and LDH labels need no IDNA check.
"""

from __future__ import annotations

import ipaddress
import re

import idna

#: Every reason `InvalidDomain` can carry; statistics group invalid lines by these.
REASONS = frozenset({
    "empty",  # nothing left after stripping whitespace and one trailing dot
    "invalid_character",  # whitespace, underscore, "*", control characters, other non-LDH ASCII
    "url",  # a scheme ("http://"), a path ("/") or a port (":")
    "email_address",  # "user@domain"
    "ip_address",  # an IPv4 or IPv6 address, bracketed or not
    "empty_label",  # "a..b", ".a.b"
    "leading_hyphen",
    "trailing_hyphen",
    "label_too_long",  # an A-label over 63 octets
    "name_too_long",  # over 253 octets in A-label form, without the trailing dot
    "idna_error",  # IDNA 2008 refuses a label (emoji, bad Punycode, bidi/context rules)
    "single_label",  # "localhost", "com": not a mail domain we can survey
    "numeric_tld",  # "1.2.3": the last label is all digits, so resolvers may read it as an address
})

MAX_NAME_OCTETS = 253  # RFC 1035: 255 octets on the wire = 253 characters without the final dot
MAX_LABEL_OCTETS = 63
# Input longer than this cannot map to a 253-octet name except through absurd runs of
# characters UTS 46 ignores; refusing it early keeps a garbage line from costing seconds.
_MAX_INPUT_CHARS = 2048

_LDH_LABEL = re.compile(r"[a-z0-9-]+")
_ASCII_NOT_NAME = re.compile(r"[^a-z0-9.\-\x80-\U0010ffff]")


class InvalidDomain(ValueError):
    """The input is not a usable mail domain; `reason` is one of REASONS."""

    def __init__(self, reason: str, detail: str | None = None) -> None:
        super().__init__(reason if detail is None else f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def normalise_domain(raw: str) -> tuple[str, str]:
    """Return (A-label form, Unicode form) of a mail domain, or raise InvalidDomain."""
    text = raw.strip()
    if not text:
        raise InvalidDomain("empty")
    if len(text) > _MAX_INPUT_CHARS:
        raise InvalidDomain("name_too_long")
    if "://" in text:
        raise InvalidDomain("url")
    if text.isascii():
        text = text.lower()  # all UTS 46 does to ASCII that can survive the LDH check
    else:
        try:
            text = idna.uts46_remap(text, std3_rules=False, transitional=False)
        except (idna.IDNAError, UnicodeError, ValueError) as exc:
            raise InvalidDomain("idna_error", str(exc)) from None
    _reject_non_names(text)
    if text.endswith("."):
        text = text[:-1]
    if not text:
        raise InvalidDomain("empty")
    a_labels: list[str] = []
    u_labels: list[str] = []
    for label in text.split("."):
        a_label, u_label = _normalise_label(label)
        a_labels.append(a_label)
        u_labels.append(u_label)
    a_name = ".".join(a_labels)
    if len(a_name) > MAX_NAME_OCTETS:
        raise InvalidDomain("name_too_long")
    if len(a_labels) == 1:
        raise InvalidDomain("single_label")
    if a_labels[-1].isdigit():
        raise InvalidDomain("numeric_tld")
    return a_name, ".".join(u_labels)


def _reject_non_names(text: str) -> None:
    """Raise for addresses, URLs, e-mail addresses and non-LDH ASCII, in that order."""
    if _is_ip_address(text):
        raise InvalidDomain("ip_address")
    if "@" in text:
        raise InvalidDomain("email_address")
    if "/" in text or ":" in text:
        raise InvalidDomain("url")
    # Underscores (DKIM/SRV owner names) are legal in DNS but never name a mail domain.
    if _ASCII_NOT_NAME.search(text):
        raise InvalidDomain("invalid_character")


def _is_ip_address(text: str) -> bool:
    """True for "192.0.2.1", "192.0.2.1.", "2001:db8::1" and "[2001:db8::1]"."""
    if ":" not in text and not text.replace(".", "").isdigit():
        return False  # the common case, without ipaddress's cost
    if text.startswith("[") and text.endswith("]"):
        text = text[1:-1]
    elif text.endswith("."):
        text = text[:-1]
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _normalise_label(label: str) -> tuple[str, str]:
    """Return (A-label, U-label) of one already-mapped label, or raise InvalidDomain."""
    if not label:
        raise InvalidDomain("empty_label")
    if label.startswith("-"):
        raise InvalidDomain("leading_hyphen")
    if label.endswith("-"):
        raise InvalidDomain("trailing_hyphen")
    if label.isascii():
        if len(label) > MAX_LABEL_OCTETS:
            raise InvalidDomain("label_too_long")
        if not _LDH_LABEL.fullmatch(label):
            raise InvalidDomain("invalid_character")
        if label.startswith("xn--"):
            return label, _decode_a_label(label)
        # Other "ab--" labels are reserved by IDNA 2008 but legal in DNS and seen in the wild.
        return label, label
    try:
        a_label = "xn--" + label.encode("punycode").decode("ascii")
    except UnicodeError as exc:
        raise InvalidDomain("idna_error", str(exc)) from None
    if len(a_label) > MAX_LABEL_OCTETS:
        raise InvalidDomain("label_too_long")
    try:
        checked = idna.alabel(label).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise InvalidDomain("idna_error", str(exc)) from None
    return checked, label


def _decode_a_label(label: str) -> str:
    """Return the U-label of an "xn--" label, refusing any that do not round-trip."""
    try:
        u_label = idna.ulabel(label)
        round_trip = idna.alabel(u_label).decode("ascii")
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise InvalidDomain("idna_error", str(exc)) from None
    if round_trip != label:
        raise InvalidDomain("idna_error", f"{label} does not round-trip")
    return u_label
