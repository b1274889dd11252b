"""MTA software from the SMTP greeting (and EHLO lines): a small, conservative fingerprint.

Banners are whatever the operator configured, so this only names software that announces
itself; everything else is "unknown" (and a missing banner is None). Kept free of statistics
so it can later become a `hosts` column.
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


def mta_software(banner: str | None, ehlo_lines: Sequence[str] = ()) -> str | None:
    """The MTA software a greeting announces ("postfix", "exim", ...), "unknown", or None."""
    if banner is None and not ehlo_lines:
        return None
    for text in (banner or "", *ehlo_lines):
        for name, pattern in _PATTERNS:
            if pattern.search(text):
                return name
    return UNKNOWN
