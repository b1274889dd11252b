"""MTA software from the SMTP greeting (and EHLO lines): a small, conservative fingerprint.

Banners are whatever the operator configured, so this only names software that announces
itself; everything else is "unknown" (and a missing banner is None). The pipeline stores it in
the `hosts` columns `mta_software` and `mta_version`; statistics read those columns.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# (software, pattern): first match wins, so the more specific patterns come first
_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE)) for name, pattern in (
        ("exchange", r"microsoft esmtp mail service|microsoft exchange|\bexchange server\b"),
        ("postfix", r"\bpostfix\b"),
        ("exim", r"\bexim\b"),
        ("sendmail", r"\bsendmail\b"),
        ("qmail", r"\bqmail\b|\bnetqmail\b"),
        ("opensmtpd", r"\bopensmtpd\b"),
        ("haraka", r"\bharaka\b"),
        ("zimbra", r"\bzimbra\b"),
        ("communigate", r"\bcommunigate\b"),
        ("mdaemon", r"\bmdaemon\b"),
        ("kerio", r"\bkerio\b"),
        ("lotus-domino", r"\blotus domino\b|\bdomino\b"),
        ("ironport", r"\bironport\b|\bcisco\b"),
        ("postini", r"\bpostini\b"),
        ("mimecast", r"\bmimecast\b"),
        ("barracuda", r"\bbarracuda\b"),
        ("proofpoint", r"\bproofpoint\b|\bpphosted\b"),
        ("gmail", r"\bmx\.google\.com\b|\bgsmtp\b"),
        ("coremail", r"\bcoremail\b"),
        ("courier", r"\bcourier\b"),
        ("smail", r"\bsmail\b"),
    ))

UNKNOWN = "unknown"

# "Exim 4.96", "Sendmail 8.15.2/8.15.2", "Postfix 3.7.10", "Version: 15.1.2507.39" (Exchange)
_VERSION = re.compile(
    r"\b(?:exim|sendmail|postfix|qmail|opensmtpd|haraka|mdaemon|kerio connect|communigate pro)"
    r"[ /]v?(\d+(?:\.\d+)+)|\bversion:? (\d+(?:\.\d+)+)", re.IGNORECASE)


def mta_software(banner: str | None, ehlo_lines: Sequence[str] = ()) -> str | None:
    """The MTA software a greeting announces ("postfix", "exim", ...), "unknown", or None."""
    if banner is None and not ehlo_lines:
        return None
    for text in (banner or "", *ehlo_lines):
        for name, pattern in _PATTERNS:
            if pattern.search(text):
                return name
    return UNKNOWN


def mta_version(banner: str | None) -> str | None:
    """The software version a greeting announces ("4.96" of "ESMTP Exim 4.96"), or None."""
    match = _VERSION.search(banner or "")
    if match is None:
        return None
    return match.group(1) or match.group(2)
