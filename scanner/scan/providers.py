"""Mail providers: an MX host name grouped by its registrable domain (the Public Suffix List).

publicsuffixlist ships the list offline, so grouping never touches the network. Names whose
suffix is not on the list (the lab's `.test`) fall back to their last two labels.
"""

from __future__ import annotations

from functools import lru_cache

import publicsuffixlist
from publicsuffixlist import PublicSuffixList


@lru_cache(maxsize=1)
def public_suffix_list() -> PublicSuffixList:
    """The list publicsuffixlist ships, loaded once per process.

    Told to accept A-labels, the library IDNA-encodes every one of the list's ~10,000 rules,
    though all but ~460 are ASCII and encode to themselves: most of its ~35 ms a load. The
    same rules come from giving it the source with the A-label form of each non-ASCII rule
    added (by the same "idna" codec it uses) and asking for no encoding; a test compares the
    two rule sets.
    """
    with open(publicsuffixlist.PSLFILE, encoding="utf-8", errors="surrogateescape") as fh:
        lines = fh.read().splitlines()
    extra = []
    for line in lines:
        rule = line.lower().split(" ")[0].rstrip()
        if rule and not rule.isascii() and not rule.startswith("//"):
            bang = "!" if rule.startswith("!") else ""
            extra.append(bang + rule.lstrip("!").encode("idna").decode("ascii"))
    return PublicSuffixList(lines + extra, accept_encoded_idn=False)


@lru_cache(maxsize=65536)
def provider_of(hostname: str | None) -> str:
    """The registrable domain of an MX host name ("mx1.mail.example.co.uk" -> "example.co.uk")."""
    if not hostname:
        return "(none)"
    name = hostname.lower().rstrip(".")
    if _looks_like_address(name):
        return name
    registrable = public_suffix_list().privatesuffix(name)
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
