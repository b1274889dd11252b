"""Status vocabularies of the policy checks: SPF, DMARC, TLS-RPT, MTA-STS and DANE.

Kept apart from status.py (the STARTTLS steps) because they describe DNS records and policies,
not steps of the SMTP conversation. Values are short snake_case strings, as everywhere else.
"""

from __future__ import annotations

from enum import StrEnum


class RecordStatus(StrEnum):
    """A policy TXT record (SPF, DMARC, TLS-RPT, `_mta-sts`): present, and well formed?"""

    NONE = "none"  # no record of that kind (NXDOMAIN, NODATA, or TXT of other kinds only)
    VALID = "valid"
    INVALID = "invalid"  # one record, syntax wrong (error_detail-like reason not kept)
    MULTIPLE = "multiple"  # more than one record of the kind: the RFCs say ignore them all
    DNS_ERROR = "dns_error"  # SERVFAIL, timeout...: could not tell
    NOT_QUERIED = "not_queried"  # invalid or excluded input line


class StsFetchStatus(StrEnum):
    """Fetching the MTA-STS policy from https://mta-sts.<domain>/.well-known/mta-sts.txt."""

    NOT_ATTEMPTED = "not_attempted"  # no valid `_mta-sts` TXT record: a sender would not fetch
    OK = "ok"
    DNS_ERROR = "dns_error"  # mta-sts.<domain> has no address
    CONNECT_ERROR = "connect_error"
    TLS_ERROR = "tls_error"  # handshake failed or the certificate is not valid for the name
    HTTP_ERROR = "http_error"  # not a 200 (redirects are not followed, RFC 8461 §3.3)
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    INVALID = "invalid"  # fetched, but not a valid STSv1 policy (or not text/plain)
    EXCLUDED = "excluded"  # the policy host's address is excluded or not public
    INTERNAL_ERROR = "internal_error"


class StsMode(StrEnum):
    """The mode a sender would apply; the column is null when there is no `_mta-sts` record."""

    ENFORCE = "enforce"
    TESTING = "testing"
    NONE = "none"  # the policy itself says mode: none
    INVALID = "invalid"  # a TXT record, but no usable policy (fetch failed or syntax wrong)


class TlsaStatus(StrEnum):
    """The TLSA lookup of `_25._tcp.<mx host>`."""

    NONE = "none"  # no TLSA records
    SECURE = "secure"  # TLSA records with the AD bit: DNSSEC-validated
    INSECURE = "insecure"  # TLSA records without the AD bit: a sender must ignore them
    DNS_ERROR = "dns_error"
    NOT_QUERIED = "not_queried"


class DaneStatus(StrEnum):
    """DANE (RFC 7672) verdict for one domain x MX host x address edge."""

    NO_TLSA = "no_tlsa"
    INSECURE = "insecure"  # TLSA present but not DNSSEC-validated: ignored by senders
    VALID = "valid"  # a usable record matched the chain the server presented
    MISMATCH = "mismatch"  # secure TLSA, nothing matched: a DANE sender defers mail
    NO_TLS = "no_tls"  # secure TLSA, but no TLS session with this address
    DNS_ERROR = "dns_error"  # the TLSA lookup failed (a DANE sender defers mail too)
    UNUSABLE = "unusable"  # secure TLSA, but only usages/selectors/types SMTP cannot use
    NOT_QUERIED = "not_queried"  # the scan skipped the policy stage (--no-policies)


class DaneClass(StrEnum):
    """Per-domain DANE class over the edges of MX hosts with an address."""

    NONE = "none"  # no MX host has TLSA records
    INSECURE = "insecure"  # TLSA only without DNSSEC
    VALID = "valid"  # every edge has secure TLSA that matched
    PARTIAL = "partial"  # some MX hosts DANE-valid, the others without secure TLSA
    BROKEN = "broken"  # at least one edge with secure TLSA fails (mismatch, no TLS, dns error)
    NOT_APPLICABLE = "not_applicable"  # no MX host with an address (or an invalid input line)
    NOT_QUERIED = "not_queried"  # the scan skipped the policy stage (--no-policies)
