"""Per-domain rollup: (MX host, address) pairs -> counts and the starttls/strict classes.

The classes count pairs whose EHLO completed ("answered SMTP"): `all` / `some` / `none` of them
negotiated TLS (starttls_class) or passed strict validation for that MX name (strict_class).
When no pair answered and none was contacted: `private_mx` when every address is private
(loopback, RFC 1918, ULA, reserved...: a fact about the domain), `excluded` when at least one
is on the exclusion list (a public address we chose not to look at could have answered).
Private addresses beside contacted ones count like unreachable ones: not at all in
all/some/none, and `unreachable` when no contacted address answered.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from scanner.model.records import DomainInput, DomainMxRecord, DomainRecord, MailHosts
from scanner.model.status import DnsStatus, HostOutcome, InputStatus, MxSource, StartTlsClass
from scanner.scan.policy_rollup import PolicyColumns
from scanner.scan.summary import HostSummary
from scanner.tls.verify import name_matches


def _share_class(part: int, whole: int) -> StartTlsClass:
    if part == whole:
        return StartTlsClass.ALL
    return StartTlsClass.SOME if part else StartTlsClass.NONE


def _non_mail_record(item: DomainInput, status: str, cls: StartTlsClass,
                     mail: MailHosts | None = None, policy: Mapping[str, object] | None = None
                     ) -> DomainRecord:
    return DomainRecord(
        line_no=item.line_no, input=item.raw, source=item.source, domain=item.domain,
        domain_unicode=item.domain_unicode, status=status, reason=item.reason,
        mx_source=mail.mx_source if mail else None,
        mx_hostnames=tuple(h.name for h in mail.hosts) if mail else (),
        n_mx_hosts=len(mail.hosts) if mail else 0, n_addresses=0, n_pairs=0, n_reachable=0,
        n_starttls=0, n_tls=0, n_strict=0, starttls_class=cls, strict_class=cls,
        dns_ms=mail.dns_ms if mail else None, finished_at=datetime.now(UTC),
        first_line_no=item.first_line_no, first_source=item.first_source,
        **(policy or {}))  # type: ignore[arg-type]


def rollup_invalid(item: DomainInput) -> DomainRecord:
    """A bad input line: class `invalid`, with the reason."""
    return _non_mail_record(item, InputStatus.INVALID.value, StartTlsClass.INVALID)


def rollup_excluded(item: DomainInput) -> DomainRecord:
    """A domain on the exclusion list: never looked up, never contacted."""
    return _non_mail_record(item, "excluded", StartTlsClass.EXCLUDED)


def rollup_duplicate(item: DomainInput) -> DomainRecord:
    """A record repeating an earlier one: class `duplicate`, pointing at the first occurrence
    (its row holds the facts); never looked up again."""
    return _non_mail_record(item, InputStatus.DUPLICATE.value, StartTlsClass.DUPLICATE)


def rollup_domain(item: DomainInput, mail: MailHosts, port: int,
                  summaries: Mapping[str, HostSummary], policy: PolicyColumns
                  ) -> tuple[DomainRecord, tuple[DomainMxRecord, ...]]:
    """Roll a resolved domain and the probe results of its addresses into its row and edges,
    with the policy columns `policy` gives them."""
    status = mail.status.value
    if mail.mx_source is MxSource.NULL:
        return _non_mail_record(item, status, StartTlsClass.NULL_MX, mail, policy.domain(())), ()
    if mail.mx_source is MxSource.NONE:
        cls = StartTlsClass.NO_MX if mail.status is DnsStatus.NODATA else StartTlsClass.DNS_ERROR
        return _non_mail_record(item, status, cls, mail, policy.domain(())), ()

    edges: list[DomainMxRecord] = []
    for host in mail.hosts:
        if not host.addresses:
            edges.append(DomainMxRecord(
                domain=mail.domain, mx_hostname=host.name, preference=host.preference, ip=None,
                port=None, mx_source=mail.mx_source, outcome=None, smtp_ok=False,
                starttls_offered=False, tls_ok=False, chain_valid=None, name_match=None,
                strict_ok=False, address_status=host.address_status,
                **policy.edge(host.name, None, None, False)))  # type: ignore[arg-type]
            continue
        for ip in host.addresses:
            s = summaries[ip]
            match = name_matches(s.leaf_names, host.name) if s.leaf_names else (
                False if s.tls_ok else None)
            strict_ok = bool(s.tls_ok and s.chain_valid and match)
            edges.append(DomainMxRecord(
                domain=mail.domain, mx_hostname=host.name, preference=host.preference, ip=ip,
                port=port, mx_source=mail.mx_source, outcome=s.outcome, smtp_ok=s.smtp_ok,
                starttls_offered=bool(s.starttls_offered), tls_ok=s.tls_ok,
                chain_valid=s.chain_valid, name_match=match, strict_ok=strict_ok,
                address_status=host.address_status,
                **policy.edge(host.name, s, match, strict_ok)))  # type: ignore[arg-type]

    built = tuple(edges)
    with_address = [e for e in built if e.ip is not None]
    answered = [e for e in with_address if e.smtp_ok]
    n_tls = sum(e.tls_ok for e in answered)
    n_strict = sum(e.strict_ok for e in answered)
    if not with_address:
        cls = strict = StartTlsClass.DNS_ERROR
    elif not answered:
        outcomes = {e.outcome for e in with_address}
        if outcomes == {HostOutcome.PRIVATE_ADDRESS}:
            cls = strict = StartTlsClass.PRIVATE_MX
        elif outcomes <= {HostOutcome.EXCLUDED, HostOutcome.PRIVATE_ADDRESS}:
            cls = strict = StartTlsClass.EXCLUDED
        else:
            cls = strict = StartTlsClass.UNREACHABLE
    else:
        cls = _share_class(n_tls, len(answered))
        strict = _share_class(n_strict, len(answered))
    record = DomainRecord(
        line_no=item.line_no, input=item.raw, source=item.source, domain=item.domain,
        domain_unicode=item.domain_unicode, status=status, reason=item.reason,
        mx_source=mail.mx_source, mx_hostnames=tuple(h.name for h in mail.hosts),
        n_mx_hosts=len(mail.hosts), n_addresses=len({e.ip for e in with_address}),
        n_pairs=len(built), n_reachable=len(answered),
        n_starttls=sum(e.starttls_offered for e in with_address), n_tls=n_tls,
        n_strict=n_strict, starttls_class=cls, strict_class=strict, dns_ms=mail.dns_ms,
        finished_at=datetime.now(UTC), **policy.domain(built))  # type: ignore[arg-type]
    return record, built
