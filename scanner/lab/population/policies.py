"""The lab's mail policies: what each domain publishes (SPF, DMARC, TLS-RPT, MTA-STS) and which
MX host names have TLSA records of which kind, with the result a correct scan must report.

Plans are chosen when the population is built (seeded); record data that depends on the lab's
certificates (TLSA digests) is filled in by `add_tlsa_records` once the PKI exists. The expected
values here are written down per kind, never computed with the scanner's own parsers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from scanner.lab.population.dns_zone import Zone


class SpfKind(StrEnum):
    """What a domain publishes as SPF."""

    NONE = "none"
    HARDFAIL = "hardfail"
    SOFTFAIL = "softfail"
    INVALID = "invalid"
    MULTIPLE = "multiple"


class DmarcKind(StrEnum):
    """What a domain publishes at `_dmarc`."""

    NONE = "none"
    REJECT = "reject"
    QUARANTINE = "quarantine"
    MONITOR = "monitor"  # p=none
    INVALID = "invalid"


class TlsRptKind(StrEnum):
    """What a domain publishes at `_smtp._tls`."""

    NONE = "none"
    VALID = "valid"
    INVALID = "invalid"


class StsKind(StrEnum):
    """A domain's MTA-STS deployment, including the broken ones."""

    NONE = "none"
    ENFORCE = "enforce"  # mx: every MX name
    TESTING = "testing"
    MODE_NONE = "mode_none"
    MX_MISMATCH = "mx_mismatch"  # enforce, but the patterns name another host
    WILDCARD = "wildcard"  # enforce with `*.` patterns (MX-record domains only)
    HTTP_404 = "http_404"
    BAD_POLICY = "bad_policy"  # a 200 whose body is not an STSv1 policy
    WRONG_CERT = "wrong_cert"  # the HTTPS certificate names another host
    NO_HOST = "no_host"  # mta-sts.<domain> does not resolve
    TXT_INVALID = "txt_invalid"  # `v=STSv1` without an id: no fetch


class TlsaKind(StrEnum):
    """A TLSA RRset at `_25._tcp.<mx>`; the expected dane_status depends on the host too."""

    EE_SPKI_SHA256 = "ee_spki_sha256"  # 3 1 1
    EE_CERT_SHA512 = "ee_cert_sha512"  # 3 0 2
    EE_SPKI_FULL = "ee_spki_full"  # 3 1 0
    TA_CERT_SHA256 = "ta_cert_sha256"  # 2 0 1 of the intermediate
    TA_SPKI_SHA512 = "ta_spki_sha512"  # 2 1 2 of the intermediate
    MISMATCH = "mismatch"  # 3 1 1 of some other key
    INSECURE = "insecure"  # a correct 3 1 1, but the zone is not signed (no AD bit)
    SERVFAIL = "servfail"  # the TLSA query fails
    PKIX_ONLY = "pkix_only"  # 1 1 1 of the leaf: unusable for SMTP


@dataclass(frozen=True, slots=True)
class PolicyPlan:
    """What one domain publishes."""

    spf: SpfKind = SpfKind.NONE
    dmarc: DmarcKind = DmarcKind.NONE
    tlsrpt: TlsRptKind = TlsRptKind.NONE
    sts: StsKind = StsKind.NONE


STS_ID = "20240101T000000"
ENFORCE_MAX_AGE = 604800
TESTING_MAX_AGE = 86400
OTHER_MX = "mx.elsewhere.test"

#: (TXT texts at the apex, expected spf_status, expected spf_all)
SPF_TEXTS: dict[SpfKind, tuple[tuple[str, ...], str, str | None]] = {
    SpfKind.NONE: (("lab-verification=0123456789",), "none", None),
    SpfKind.HARDFAIL: (("v=spf1 mx -all", "lab-verification=0123456789"), "valid", "-all"),
    SpfKind.SOFTFAIL: (("v=spf1 ip4:127.1.0.0/16 a:relay.{d} include:_spf.{d} ~all",),
                       "valid", "~all"),
    SpfKind.INVALID: (("v=spf1 mx bogus:term -all",), "invalid", None),
    SpfKind.MULTIPLE: (("v=spf1 mx -all", "v=spf1 a ~all"), "multiple", None),
}
DMARC_TEXTS: dict[DmarcKind, tuple[tuple[str, ...], str, str | None]] = {
    DmarcKind.NONE: ((), "none", None),
    DmarcKind.REJECT: (("v=DMARC1; p=reject; rua=mailto:dmarc@{d}",), "valid", "reject"),
    DmarcKind.QUARANTINE: (("v=DMARC1; p=quarantine; pct=50; adkim=s",), "valid", "quarantine"),
    DmarcKind.MONITOR: (("v=DMARC1; p=none; rua=mailto:dmarc@{d}",), "valid", "none"),
    DmarcKind.INVALID: (("v=DMARC1; p=maybe",), "invalid", None),
}
TLSRPT_TEXTS: dict[TlsRptKind, tuple[tuple[str, ...], str]] = {
    TlsRptKind.NONE: ((), "none"),
    TlsRptKind.VALID: (("v=TLSRPTv1; rua=mailto:tls@{d},https://report.{d}/tlsrpt",), "valid"),
    TlsRptKind.INVALID: (("v=TLSRPTv1; rua=ftp://report.{d}",), "invalid"),
}


def txt_records(domain: str, plan: PolicyPlan) -> dict[str, tuple[str, ...]]:
    """The TXT records a plan puts in DNS, by owner name."""
    out = {domain: tuple(t.format(d=domain) for t in SPF_TEXTS[plan.spf][0]),
           f"_dmarc.{domain}": tuple(t.format(d=domain) for t in DMARC_TEXTS[plan.dmarc][0]),
           f"_smtp._tls.{domain}": tuple(t.format(d=domain)
                                         for t in TLSRPT_TEXTS[plan.tlsrpt][0])}
    if plan.sts is StsKind.TXT_INVALID:
        out[f"_mta-sts.{domain}"] = ("v=STSv1;",)
    elif plan.sts is not StsKind.NONE:
        out[f"_mta-sts.{domain}"] = (f"v=STSv1; id={STS_ID};",)
    return {name: texts for name, texts in out.items() if texts}


def sts_patterns(kind: StsKind, mx_names: tuple[str, ...]) -> tuple[str, ...]:
    """The mx patterns of a policy kind for a domain with these MX names."""
    if kind in (StsKind.ENFORCE, StsKind.TESTING):
        return tuple(dict.fromkeys(mx_names))
    if kind is StsKind.WILDCARD:
        return tuple(dict.fromkeys("*." + n.partition(".")[2] for n in mx_names))
    if kind is StsKind.MX_MISMATCH:
        return (OTHER_MX,)
    return ()


@dataclass(frozen=True, slots=True)
class StsResponse:
    """What the lab's HTTPS server answers for one mta-sts.<domain> name."""

    status: int
    body: bytes
    wrong_cert: bool = False


def sts_response(kind: StsKind, mx_names: tuple[str, ...]) -> StsResponse | None:
    """The HTTPS answer of a kind (None: no policy host at all)."""
    if kind in (StsKind.NONE, StsKind.NO_HOST, StsKind.TXT_INVALID):
        return None
    if kind is StsKind.HTTP_404:
        return StsResponse(404, b"not found\n")
    if kind is StsKind.BAD_POLICY:
        return StsResponse(200, b"<html>this is not a policy</html>\n")
    mode = {StsKind.TESTING: "testing", StsKind.MODE_NONE: "none"}.get(kind, "enforce")
    age = ENFORCE_MAX_AGE if mode == "enforce" else TESTING_MAX_AGE
    lines = ["version: STSv1", f"mode: {mode}",
             *(f"mx: {p}" for p in sts_patterns(kind, mx_names)), f"max_age: {age}"]
    return StsResponse(200, ("\r\n".join(lines) + "\r\n").encode(),
                       wrong_cert=kind is StsKind.WRONG_CERT)


def _spki(cert: x509.Certificate) -> bytes:
    return cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo)


def tlsa_rdata(kind: TlsaKind, chain: tuple[x509.Certificate, ...]) -> tuple[int, int, int, bytes]:
    """(usage, selector, matching type, data) of a kind against the chain the host serves."""
    leaf = chain[0]
    der = leaf.public_bytes(serialization.Encoding.DER)
    if kind is TlsaKind.EE_CERT_SHA512:
        return 3, 0, 2, hashlib.sha512(der).digest()
    if kind is TlsaKind.EE_SPKI_FULL:
        return 3, 1, 0, _spki(leaf)
    if kind is TlsaKind.TA_CERT_SHA256:
        return 2, 0, 1, hashlib.sha256(chain[1].public_bytes(serialization.Encoding.DER)).digest()
    if kind is TlsaKind.TA_SPKI_SHA512:
        return 2, 1, 2, hashlib.sha512(_spki(chain[1])).digest()
    if kind is TlsaKind.MISMATCH:
        return 3, 1, 1, hashlib.sha256(b"some other key").digest()
    if kind is TlsaKind.PKIX_ONLY:
        return 1, 1, 1, hashlib.sha256(_spki(leaf)).digest()
    return 3, 1, 1, hashlib.sha256(_spki(leaf)).digest()


def add_tlsa_to_zone(zone: Zone, owner: str, kind: TlsaKind,
                     chain: tuple[x509.Certificate, ...]) -> None:
    """Put one planned TLSA RRset in the zone; signed (AD bit) unless the kind says otherwise."""
    if kind is TlsaKind.SERVFAIL:
        zone.fail(owner, "servfail")
        return
    zone.add_tlsa(owner, *tlsa_rdata(kind, chain))
    if kind is not TlsaKind.INSECURE:
        zone.sign(owner)
