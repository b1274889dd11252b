"""Policy facts onto a domain's row and edges: DANE per edge, MTA-STS against the MX set.

Runs after `rollup.py` on its output (dataclasses.replace), so the STARTTLS rollup stays as it
is. A sender applies DANE per MX host and MTA-STS per domain; both are judged here on the
(MX host, address) pairs that answered SMTP, like the STARTTLS classes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from scanner.dane import ChainKeys, TlsaLookup, dane_class, dane_status
from scanner.mail_policy import MailPolicy
from scanner.mta_sts import StsResult, mx_matches, sts_mode
from scanner.policy_status import DaneClass, DaneStatus, StsFetchStatus, StsMode
from scanner.records import DomainMxRecord, DomainRecord


@dataclass(frozen=True, slots=True)
class DomainPolicyFacts:
    """Everything looked up about a domain beyond its MX set."""

    mail: MailPolicy
    sts: StsResult = StsResult(StsFetchStatus.NOT_ATTEMPTED)


def apply_policies(record: DomainRecord, edges: tuple[DomainMxRecord, ...],
                   facts: DomainPolicyFacts | None, tlsa: Mapping[str, TlsaLookup],
                   keys: Mapping[str, ChainKeys | None]
                   ) -> tuple[DomainRecord, tuple[DomainMxRecord, ...]]:
    """The row and edges with every policy column filled in."""
    mode = sts_mode(facts.mail.mta_sts_txt_status, facts.sts) if facts else None
    policy = facts.sts.policy if facts else None
    judged = mode in (StsMode.ENFORCE, StsMode.TESTING) and policy is not None
    new_edges: list[DomainMxRecord] = []
    for e in edges:
        lookup = tlsa.get(e.mx_hostname)
        changes: dict[str, object] = {}
        if lookup is not None:
            changes.update(tlsa_status=lookup.status,
                           tlsa_records=tuple(r.text() for r in lookup.records))
            if e.ip is not None:
                changes["dane_status"] = dane_status(lookup, keys.get(e.ip), e.tls_ok,
                                                     e.name_match)
        if judged and policy is not None:
            match = mx_matches(e.mx_hostname, policy.mx_patterns)
            changes.update(mta_sts_mx_match=match, mta_sts_ok=match and e.strict_ok)
        new_edges.append(dataclasses.replace(e, **changes) if changes else e)  # type: ignore[arg-type]
    answered = [e for e in new_edges if e.ip is not None and e.smtp_ok]
    dclass = dane_class([e.dane_status for e in answered]) if answered else \
        DaneClass.NOT_APPLICABLE
    delivery = any(e.mta_sts_ok for e in answered) if judged else None
    all_match = all(e.mta_sts_mx_match for e in new_edges) if judged and new_edges else None
    changes_d: dict[str, object] = dict(
        dane_class=dclass, n_dane_valid=sum(e.dane_status == "valid" for e in answered),
        mta_sts_mode=mode, mta_sts_mx_all_match=all_match, mta_sts_delivery_ok=delivery,
        strict_capable=dclass is DaneClass.VALID or (mode is StsMode.ENFORCE and bool(delivery)))
    if facts is not None:
        m = facts.mail
        changes_d.update(
            spf_status=m.spf_status, spf_all=m.spf_all, dmarc_status=m.dmarc_status,
            dmarc_policy=m.dmarc_policy, tlsrpt_status=m.tlsrpt_status,
            mta_sts_txt_status=m.mta_sts_txt_status, mta_sts_id=m.mta_sts_id,
            mta_sts_fetch_status=facts.sts.fetch_status,
            mta_sts_max_age=policy.max_age if policy else None,
            mta_sts_mx_patterns=policy.mx_patterns if policy else ())
    return dataclasses.replace(record, **changes_d), tuple(new_edges)  # type: ignore[arg-type]


def policies_not_queried(record: DomainRecord, edges: tuple[DomainMxRecord, ...]
                         ) -> tuple[DomainRecord, tuple[DomainMxRecord, ...]]:
    """The row and edges of a scan without the policy stage (`--no-policies`).

    The TXT and TLSA statuses already default to not_queried; the edges' DANE status says so
    too. A domain with MX pairs that answered SMTP has DANE class not_queried and
    strict_capable null (unknown, not false); one without stays not_applicable and false, as
    it would with the lookups.
    """
    new_edges = tuple(dataclasses.replace(e, dane_status=DaneStatus.NOT_QUERIED) for e in edges)
    if not any(e.ip is not None and e.smtp_ok for e in edges):
        return record, new_edges
    return dataclasses.replace(record, dane_class=DaneClass.NOT_QUERIED,
                               strict_capable=None), new_edges
