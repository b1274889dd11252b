"""Ground truth of the policy columns: per domain (SPF, DMARC, TLS-RPT, MTA-STS, DANE class)
and per domain x MX host x address edge (TLSA status, DANE status, MTA-STS match).

Written from the plans in `lab.policies` and the host behaviours, never with the scanner's
parsers: a scan and this truth compare by equality.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from scanner.lab.population.behaviours import (
    ANSWERS_SMTP,
    EXPECTED,
    NEGOTIATES_TLS,
    STRICT_VALID,
    Behaviour,
)
from scanner.lab.population.builder import DnsCase, LabDomain, Population, mx_names
from scanner.lab.population.model import LabHost
from scanner.lab.population.policies import (
    DMARC_TEXTS,
    ENFORCE_MAX_AGE,
    SPF_TEXTS,
    STS_ID,
    TESTING_MAX_AGE,
    TLSRPT_TEXTS,
    PolicyPlan,
    StsKind,
    TlsaKind,
    sts_patterns,
)

_EE_TA = {TlsaKind.TA_CERT_SHA256, TlsaKind.TA_SPKI_SHA512}
_STS_FETCH = {StsKind.NONE: "not_attempted", StsKind.TXT_INVALID: "not_attempted",
              StsKind.NO_HOST: "dns_error", StsKind.HTTP_404: "http_error",
              StsKind.BAD_POLICY: "invalid", StsKind.WRONG_CERT: "tls_error"}
_STS_MODE = {StsKind.ENFORCE: "enforce", StsKind.WILDCARD: "enforce",
             StsKind.MX_MISMATCH: "enforce", StsKind.TESTING: "testing",
             StsKind.MODE_NONE: "none"}
_NOT_QUERIED = ("not_queried", None, "not_queried", None, "not_queried", "not_queried", None,
                "not_attempted", None, None, (), None, None, "not_applicable", 0, False)
LeafNames = Callable[[LabHost], tuple[str, ...]]


def pairs(pop: Population, domain: LabDomain) -> list[tuple[str, str | None]]:
    """(MX host name, address or None) pairs of a domain, as the scan's edges are."""
    out: list[tuple[str, str | None]] = []
    for name in mx_names(domain):
        ips = pop.addresses.get(pop.cnames.get(name, name), ())
        out.extend((name, ip) for ip in ips) if ips else out.append((name, None))
    return out


def edge_dane(pop: Population, name: str, ip: str | None,
              leaf_names: LeafNames) -> tuple[str, str]:
    """(tlsa_status, dane_status) of one edge."""
    if ip is None:
        return "not_queried", "no_tlsa"
    kind = pop.tlsa.get(f"_25._tcp.{name}")
    if kind is None:
        return "none", "no_tlsa"
    if kind is TlsaKind.SERVFAIL:
        return "dns_error", "dns_error"
    if kind is TlsaKind.INSECURE:
        return "insecure", "insecure"
    host = pop.host(ip)
    if kind is TlsaKind.PKIX_ONLY:
        return "secure", "unusable"
    if host.behaviour not in NEGOTIATES_TLS:
        return "secure", "no_tls"
    if kind is TlsaKind.MISMATCH or (kind in _EE_TA and name not in leaf_names(host)):
        return "secure", "mismatch"
    return "secure", "valid"


def _dane_class(statuses: list[str]) -> str:
    if not statuses:
        return "not_applicable"
    if any(s in ("mismatch", "no_tls", "dns_error") for s in statuses):
        return "broken"
    valid = statuses.count("valid")
    if valid == len(statuses):
        return "valid"
    if valid:
        return "partial"
    return "insecure" if "insecure" in statuses else "none"


def _strict(pop: Population, name: str, ip: str) -> bool:
    host = pop.host(ip)
    return host.behaviour in STRICT_VALID and name in (host.cert_names or host.mx_names)


def domain_values(pop: Population, domain: LabDomain | None,
                  leaf_names: LeafNames) -> tuple[Any, ...]:
    """The policy columns of one input line (TRUTH order, from `spf_status` on)."""
    if domain is None:
        return _NOT_QUERIED
    plan = pop.policies.get(domain.name, PolicyPlan())
    spf_status, spf_all = SPF_TEXTS[plan.spf][1:]
    if domain.case in (DnsCase.SERVFAIL, DnsCase.TIMEOUT):
        spf_status = "dns_error"  # every query for the name fails, TXT included
    _, dmarc_status, dmarc_policy = DMARC_TEXTS[plan.dmarc]
    kind = plan.sts
    txt = {StsKind.NONE: "none", StsKind.TXT_INVALID: "invalid"}.get(kind, "valid")
    mode = None if kind is StsKind.NONE else _STS_MODE.get(kind, "invalid")
    fetched = kind in _STS_MODE
    names = mx_names(domain) if domain.mx or domain.case is DnsCase.IMPLICIT else ()
    patterns = sts_patterns(kind, names) if fetched else ()
    max_age = (ENFORCE_MAX_AGE if mode == "enforce" else TESTING_MAX_AGE) if fetched else None
    edges = pairs(pop, domain) if names else []
    answered = [(n, ip) for n, ip in edges
                if ip is not None and pop.behaviour_of(ip) in ANSWERS_SMTP]
    dane = [edge_dane(pop, n, ip, leaf_names)[1] for n, ip in answered]
    dclass = _dane_class(dane)
    judged = mode in ("enforce", "testing")
    match = {n: n in patterns or any(p.startswith("*.") and n.partition(".")[2] == p[2:]
                                     for p in patterns) for n in names}
    all_match = all(match[n] for n, _ in edges) if judged and edges else None
    delivery = any(match[n] and _strict(pop, n, ip) for n, ip in answered) if judged else None
    return (spf_status, spf_all, dmarc_status, dmarc_policy, TLSRPT_TEXTS[plan.tlsrpt][1], txt,
            STS_ID if txt == "valid" else None, _STS_FETCH.get(kind, "ok"), mode, max_age,
            patterns, all_match, delivery, dclass, dane.count("valid"),
            dclass == "valid" or (mode == "enforce" and bool(delivery)))


def edge_rows(pop: Population, leaf_names: LeafNames) -> Iterable[tuple[Any, ...]]:
    """(domain, mx_hostname, ip, tlsa_status, dane_status, mta_sts_mx_match, mta_sts_ok)."""
    for d in pop.domains:
        if not (d.mx or d.case is DnsCase.IMPLICIT):
            continue
        kind = pop.policies.get(d.name, PolicyPlan()).sts
        judged = _STS_MODE.get(kind) in ("enforce", "testing")
        patterns = sts_patterns(kind, mx_names(d))
        for name, ip in pairs(pop, d):
            tlsa, dane = edge_dane(pop, name, ip, leaf_names)
            match = (name in patterns or any(p.startswith("*.") and name.partition(".")[2]
                                             == p[2:] for p in patterns)) if judged else None
            ok = None
            if match is not None:
                ok = bool(match and ip is not None and pop.behaviour_of(ip) in ANSWERS_SMTP
                          and _strict(pop, name, ip))
            yield d.name, name, ip, tlsa, dane, match, ok


_ALL_VERSIONS = ("TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3")
#: Versions each TLS profile of the lab PKI accepts (the default server context: 1.2 and 1.3).
_VERSIONS = {Behaviour.TLS10_11_ONLY: ("TLSv1", "TLSv1.1"), Behaviour.TLS13_ONLY: ("TLSv1.3",),
             Behaviour.DHE1024: ("TLSv1.2",), Behaviour.NO_FS: ("TLSv1.2",)}


def deep_values(behaviour: Behaviour) -> tuple[Any, ...]:
    """(tls_versions_accepted, tls_versions_refused, dhe_accepted, dhe_bits, dhe_group) that a
    `--deep` scan must find: only hosts whose default handshake completes are examined."""
    if EXPECTED[behaviour].handshake_status.value != "ok":
        return (), (), None, None, None
    accepted = _VERSIONS.get(behaviour, ("TLSv1.2", "TLSv1.3"))
    refused = tuple(v for v in _ALL_VERSIONS if v not in accepted)
    if behaviour is Behaviour.DHE1024:  # the lab's own `openssl dhparam 1024` prime
        return accepted, refused, True, 1024, "custom"
    return accepted, refused, False, None, None  # EC or RSA-kx-only servers: no DHE suite
