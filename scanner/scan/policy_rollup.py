"""Policy facts onto a domain's row and edges: DANE per edge, MTA-STS against the MX set.

`rollup.py` asks a `PolicyColumns` for these columns while it builds each edge and the row;
the STARTTLS rollup does not look at them. A sender applies DANE per MX host and MTA-STS per
domain; both are judged here on the (MX host, address) pairs that answered SMTP, like the
STARTTLS classes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from scanner.model.policy_status import DaneClass, DaneStatus, StsFetchStatus, StsMode
from scanner.model.records import DomainMxRecord
from scanner.policy.dane import TlsaLookup, dane_class, dane_status
from scanner.policy.mail_policy import MailPolicy
from scanner.policy.mta_sts import StsResult, mx_matches, sts_mode
from scanner.scan.summary import HostSummary


@dataclass(frozen=True, slots=True)
class DomainPolicyFacts:
    """Everything looked up about a domain beyond its MX set."""

    mail: MailPolicy
    sts: StsResult = StsResult(StsFetchStatus.NOT_ATTEMPTED)


class PolicyColumns:
    """The policy columns of a domain's edges and row, asked for while `rollup_domain` builds
    them, so that each record is built once.

    Filling them in afterwards (`dataclasses.replace` of the row and of each edge) was ~3 % of
    the CPU of a 40,000-domain survey sample (py-spy; building once: 0.97x the CPU, A/B of
    774485f in benchmarks/RESULTS.md). This base class is a scan
    without the policy stage (`--no-policies`): the TXT and TLSA statuses keep their
    `not_queried` defaults and the edges' DANE status says so too. A domain with MX pairs that
    answered SMTP has DANE class not_queried and strict_capable null (unknown, not false); one
    without stays not_applicable and false, as it would with the lookups.
    """

    def edge(self, mx_hostname: str, summary: HostSummary | None, name_match: bool | None,
             strict_ok: bool) -> dict[str, object]:
        """The policy columns of one (MX host, address) edge; `summary` is its address's, None
        when the MX host has no address."""
        return {"dane_status": DaneStatus.NOT_QUERIED}

    def domain(self, edges: tuple[DomainMxRecord, ...]) -> dict[str, object]:
        """The policy columns of the domain's row, from its edges as built."""
        if not any(e.ip is not None and e.smtp_ok for e in edges):
            return {}
        return {"dane_class": DaneClass.NOT_QUERIED, "strict_capable": None}


POLICIES_NOT_QUERIED = PolicyColumns()


class AppliedPolicies(PolicyColumns):
    """The policy columns from what was looked up: DANE per edge, MTA-STS against the MX set.

    `tlsa` is by MX host name; each address's DANE keys are in its summary.
    """

    def __init__(self, facts: DomainPolicyFacts | None, tlsa: Mapping[str, TlsaLookup]) -> None:
        self._facts, self._tlsa = facts, tlsa
        self._mode = sts_mode(facts.mail.mta_sts_txt_status, facts.sts) if facts else None
        self._policy = facts.sts.policy if facts else None
        self._judged = self._mode in (StsMode.ENFORCE, StsMode.TESTING) \
            and self._policy is not None

    def edge(self, mx_hostname: str, summary: HostSummary | None, name_match: bool | None,
             strict_ok: bool) -> dict[str, object]:
        columns: dict[str, object] = {}
        lookup = self._tlsa.get(mx_hostname)
        if lookup is not None:
            columns.update(tlsa_status=lookup.status,
                           tlsa_records=tuple(r.text() for r in lookup.records))
            if summary is not None:
                columns["dane_status"] = dane_status(lookup, summary.dane_keys, summary.tls_ok,
                                                     name_match)
        if self._judged and self._policy is not None:
            match = mx_matches(mx_hostname, self._policy.mx_patterns)
            columns.update(mta_sts_mx_match=match, mta_sts_ok=match and strict_ok)
        return columns

    def domain(self, edges: tuple[DomainMxRecord, ...]) -> dict[str, object]:
        judged, policy = self._judged, self._policy
        answered = [e for e in edges if e.ip is not None and e.smtp_ok]
        dclass = dane_class([e.dane_status for e in answered]) if answered else \
            DaneClass.NOT_APPLICABLE
        delivery = any(e.mta_sts_ok for e in answered) if judged else None
        all_match = all(e.mta_sts_mx_match for e in edges) if judged and edges else None
        columns: dict[str, object] = dict(
            dane_class=dclass, n_dane_valid=sum(e.dane_status == "valid" for e in answered),
            mta_sts_mode=self._mode, mta_sts_mx_all_match=all_match,
            mta_sts_delivery_ok=delivery,
            strict_capable=dclass is DaneClass.VALID or (self._mode is StsMode.ENFORCE
                                                         and bool(delivery)))
        if self._facts is not None:
            m, sts = self._facts.mail, self._facts.sts
            columns.update(
                spf_status=m.spf_status, spf_all=m.spf_all, dmarc_status=m.dmarc_status,
                dmarc_policy=m.dmarc_policy, tlsrpt_status=m.tlsrpt_status,
                mta_sts_txt_status=m.mta_sts_txt_status, mta_sts_id=m.mta_sts_id,
                mta_sts_fetch_status=sts.fetch_status,
                mta_sts_max_age=policy.max_age if policy else None,
                mta_sts_mx_patterns=policy.mx_patterns if policy else ())
        return columns
