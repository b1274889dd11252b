"""Per-domain policy TXT records: SPF, DMARC, TLS-RPT and the `_mta-sts` record.

Presence and syntax only (no SPF evaluation, no DMARC organisational-domain fallback): what a
survey counts as adoption. Several records of one kind are `multiple`, which every one of these
RFCs treats as "no valid record" (RFC 7208 §4.5, RFC 7489 §6.6.3, RFC 8460 §3, RFC 8461 §3.1).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scanner.model.policy_status import RecordStatus
from scanner.model.status import DnsStatus

if TYPE_CHECKING:  # the resolver (and dnspython) only when the policy stage runs
    from scanner.dns.policy_resolver import PolicyResolver

_OK_EMPTY = (DnsStatus.OK, DnsStatus.NODATA, DnsStatus.NXDOMAIN)
_SPF_MECHANISM = re.compile(
    r"[+\-~?]?(?:all|include:\S+|exists:\S+|(?:a|mx)(?::[^/\s]+)?(?:/\d{1,2})?(?://\d{1,3})?"
    r"|ptr(?::\S+)?|ip4:[0-9.]+(?:/\d{1,2})?|ip6:[0-9a-fA-F:.]+(?:/\d{1,3})?)$", re.IGNORECASE)
_SPF_MODIFIER = re.compile(r"[a-zA-Z][a-zA-Z0-9_.\-]*=\S*$")
_STS_ID = re.compile(r"[A-Za-z0-9]{1,32}$")
_URI_SCHEMES = ("mailto:", "https:")


@dataclass(frozen=True, slots=True)
class MailPolicy:
    """The policy TXT records of one domain. spf_all/dmarc_policy are None unless valid."""

    spf_status: RecordStatus = RecordStatus.NOT_QUERIED
    spf_all: str | None = None  # qualifier of the final `all`: "-all", "~all", "?all", "+all"
    dmarc_status: RecordStatus = RecordStatus.NOT_QUERIED
    dmarc_policy: str | None = None  # p=: "none", "quarantine", "reject"
    tlsrpt_status: RecordStatus = RecordStatus.NOT_QUERIED
    mta_sts_txt_status: RecordStatus = RecordStatus.NOT_QUERIED
    mta_sts_id: str | None = None
    #: a lookup got no answer at all (timeout), so its `dns_error` says nothing about the
    #: domain; an answer of any rcode (SERVFAIL, REFUSED...) shows the path to the resolver
    #: works. Not a column: the vantage watch reads it.
    unanswered: bool = False


def _select(texts: Sequence[str], prefix: str) -> list[str]:
    """The records of one kind: those whose first term is exactly `prefix` (case-insensitive)."""
    out = []
    for text in texts:
        head = re.split(r"[\s;]", text.strip(), maxsplit=1)[0]
        if head.lower() == prefix.lower():
            out.append(text.strip())
    return out


def _kind_status(status: DnsStatus, records: list[str]) -> RecordStatus | None:
    """none / multiple / dns_error, or None when exactly one record needs checking."""
    if status not in _OK_EMPTY:
        return RecordStatus.DNS_ERROR
    if not records:
        return RecordStatus.NONE
    return RecordStatus.MULTIPLE if len(records) > 1 else None


def check_spf(status: DnsStatus, texts: Sequence[str]) -> tuple[RecordStatus, str | None]:
    """RFC 7208: one `v=spf1` record whose terms are mechanisms or modifiers."""
    records = _select(texts, "v=spf1")
    early = _kind_status(status, records)
    if early is not None:
        return early, None
    terms = records[0].split()[1:]
    all_term = None
    for term in terms:
        if _SPF_MECHANISM.match(term):
            if term.lower().lstrip("+-~?") == "all":
                all_term = ("+" if term[0] not in "+-~?" else term[0]) + "all"
        elif not _SPF_MODIFIER.match(term):
            return RecordStatus.INVALID, None
    return RecordStatus.VALID, all_term


def _tags(record: str) -> dict[str, str] | None:
    """`k=v; k=v` tag list (RFC 6376 §3.2 style); None on a malformed tag or a repeated one."""
    tags: dict[str, str] = {}
    for part in record.split(";"):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        name = name.strip()
        if not sep or not re.fullmatch(r"[A-Za-z][A-Za-z0-9_]*", name) or name in tags:
            return None
        tags[name] = value.strip()
    return tags


def _uris_ok(value: str) -> bool:
    uris = [u.strip() for u in value.split(",")]
    return bool(uris) and all(u.lower().startswith(_URI_SCHEMES) and len(u) > 7 for u in uris)


def check_dmarc(status: DnsStatus, texts: Sequence[str]) -> tuple[RecordStatus, str | None]:
    """RFC 7489 §6.3: `v=DMARC1` first, then `p=` (none/quarantine/reject), known tag values."""
    records = _select(texts, "v=DMARC1")
    early = _kind_status(status, records)
    if early is not None:
        return early, None
    tags = _tags(records[0])
    if tags is None or list(tags)[0] != "v" or tags["v"] != "DMARC1":
        return RecordStatus.INVALID, None
    policy = tags.get("p", "").lower()
    checks = (
        policy in ("none", "quarantine", "reject"),
        tags.get("sp", "none").lower() in ("none", "quarantine", "reject"),
        tags.get("adkim", "r").lower() in ("r", "s"),
        tags.get("aspf", "r").lower() in ("r", "s"),
        tags.get("pct", "100").isdigit() and 0 <= int(tags.get("pct", "100")) <= 100,
        all(_uris_ok(tags[k]) for k in ("rua", "ruf") if k in tags),
    )
    if not all(checks):
        return RecordStatus.INVALID, None
    return RecordStatus.VALID, policy


def check_tlsrpt(status: DnsStatus, texts: Sequence[str]) -> RecordStatus:
    """RFC 8460 §3: `v=TLSRPTv1` first, then `rua=` with mailto: or https: URIs."""
    records = _select(texts, "v=TLSRPTv1")
    early = _kind_status(status, records)
    if early is not None:
        return early
    tags = _tags(records[0])
    if tags is None or list(tags)[0] != "v" or "rua" not in tags or not _uris_ok(tags["rua"]):
        return RecordStatus.INVALID
    return RecordStatus.VALID


def check_sts_txt(status: DnsStatus, texts: Sequence[str]) -> tuple[RecordStatus, str | None]:
    """RFC 8461 §3.1: `v=STSv1` first, then `id=` of 1-32 letters and digits."""
    records = _select(texts, "v=STSv1")
    early = _kind_status(status, records)
    if early is not None:
        return early, None
    tags = _tags(records[0])
    if tags is None or list(tags)[0] != "v" or not _STS_ID.match(tags.get("id", "")):
        return RecordStatus.INVALID, None
    return RecordStatus.VALID, tags["id"]


async def lookup_mail_policy(domain: str, resolver: PolicyResolver) -> MailPolicy:
    """The four TXT lookups of a domain, concurrently, checked."""
    spf, dmarc, tlsrpt, sts = await resolver.txt_many(
        [domain, f"_dmarc.{domain}", f"_smtp._tls.{domain}", f"_mta-sts.{domain}"])
    spf_status, spf_all = check_spf(*spf)
    dmarc_status, dmarc_policy = check_dmarc(*dmarc)
    sts_status, sts_id = check_sts_txt(*sts)
    return MailPolicy(spf_status=spf_status, spf_all=spf_all, dmarc_status=dmarc_status,
                      dmarc_policy=dmarc_policy, tlsrpt_status=check_tlsrpt(*tlsrpt),
                      mta_sts_txt_status=sts_status, mta_sts_id=sts_id,
                      unanswered=any(status is DnsStatus.TIMEOUT
                                     for status, _ in (spf, dmarc, tlsrpt, sts)))
