"""Mail providers: an MX host name grouped by its registrable domain (the Public Suffix List).

publicsuffixlist ships the list offline, so grouping never touches the network. Names whose
suffix is not on the list (the lab's `.test`) fall back to their last two labels.
"""

from __future__ import annotations

from functools import lru_cache

from publicsuffixlist import PublicSuffixList


@lru_cache(maxsize=1)
def _psl() -> PublicSuffixList:
    # loading the list takes ~50 ms: once per process
    return PublicSuffixList()


@lru_cache(maxsize=65536)
def provider_of(hostname: str | None) -> str:
    """The registrable domain of an MX host name ("mx1.mail.example.co.uk" -> "example.co.uk")."""
    if not hostname:
        return "(none)"
    name = hostname.lower().rstrip(".")
    if _looks_like_address(name):
        return name
    registrable = _psl().privatesuffix(name)
    if registrable:
        return str(registrable)
    labels = name.split(".")
    return ".".join(labels[-2:])


def tld_of(domain: str | None) -> str:
    """The top-level label of a domain ("example.no" -> "no")."""
    if not domain:
        return "(invalid)"
    return domain.lower().rstrip(".").rsplit(".", 1)[-1]


def _looks_like_address(name: str) -> bool:
    """An implicit MX may be an address literal: keep it whole."""
    return ":" in name or name.replace(".", "").isdigit()
