"""A seeded lab population: domains under `.test`, their MX sets, and the hosts behind them.

`generate(profile, n_domains, seed)` (profiles in `profiles.py`) returns a `Population`; from it
`build_zone` makes the DNS data and `truth/tables.py` the ground truth. Everything random comes
from one `random.Random` seeded by (profile, seed), so a seed always yields the same population.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import StrEnum

from scanner.lab.population.behaviours import Behaviour
from scanner.lab.population.dns_zone import RType, Zone, mx_rdata
from scanner.lab.population.model import LabHost
from scanner.lab.population.policies import (
    DmarcKind,
    PolicyPlan,
    SpfKind,
    StsKind,
    TlsaKind,
    TlsRptKind,
    sts_response,
    txt_records,
)

#: Where every mta-sts.<domain> name points: the lab's HTTPS server (on its own port).
STS_ADDRESS = "127.0.0.1"

#: Input lines that must come out `invalid`, one per kind of mistake.
INVALID_LINES = ("bad..name", "-x.test", "user@example.test", "a" * 64 + ".test")
IDN_DOMAIN = "blåbær.test"
IDN_ALABEL = "xn--blbr-roah.test"
#: Where the MX of a `private_mx` domain points: RFC 1918 and ULA addresses, outside the lab's
#: 127.0.0.0/8, that no scan may contact, lab mode or not (and the tests refuse to).
PRIVATE_MX_ADDRESSES = ("10.25.0.1", "fd00:25::1")
#: Greeting texts of the usual MTAs, with the software and version each announces.
_SOFTWARE = (("ESMTP Postfix", "postfix", None),
             ("ESMTP Postfix (Debian/GNU)", "postfix", None),
             ("ESMTP Exim 4.72", "exim", "4.72"),
             ("Microsoft ESMTP MAIL Service ready", "exchange", None),
             ("ESMTP Sendmail 8.14.4/8.14.4", "sendmail", "8.14.4"),
             ("ESMTP qmail", "qmail", None))
_WORDS = ("fjord", "bakeri", "fiske", "skog", "data", "bygg", "regnskap", "elektro", "hytte",
          "turisme", "advokat", "tann", "maling", "ror", "transport", "butikk", "kafe", "kunst",
          "musikk", "sport", "frisor", "auto", "media", "konsult", "eiendom", "energi", "helse")


class DnsCase(StrEnum):
    """How DNS describes a domain's mail."""

    MX = "mx"  # MX records with preferences, each MX name with an A record
    IMPLICIT = "implicit"  # no MX, an A record on the domain itself (RFC 5321 §5.1)
    NULL_MX = "null_mx"  # RFC 7505 `0 .`
    NO_MX = "no_mx"  # the name exists, no MX and no address
    NXDOMAIN = "nxdomain"
    SERVFAIL = "servfail"
    TIMEOUT = "timeout"  # the MX query is never answered
    MX_NO_ADDRESS = "mx_no_address"  # an MX whose name does not resolve
    MX_CNAME = "mx_cname"  # the MX name is a CNAME to a mail host's name
    BIG_MX = "big_mx"  # 30 MX records: the UDP answer is truncated, TCP has it all
    PRIVATE_MX = "private_mx"  # the MX host's addresses are all private (PRIVATE_MX_ADDRESSES)
    INVALID = "invalid"  # not a domain: a bad input line (truth rows only)


@dataclass(frozen=True, slots=True)
class LabDomain:
    """One domain of the population; `mx` is (preference, MX name), `()` when it has no MX."""

    name: str  # A-label, lower-case
    case: DnsCase
    mx: tuple[tuple[int, str], ...] = ()
    unicode: str | None = None  # the U-label form, written to domains.txt instead of `name`

    @property
    def input_line(self) -> str:
        """How the domain appears in domains.txt."""
        return self.unicode or self.name


@dataclass(frozen=True, slots=True)
class Population:
    """Domains, hosts and the DNS names tying them together."""

    profile: str
    seed: int
    domains: tuple[LabDomain, ...]
    hosts: tuple[LabHost, ...]
    addresses: dict[str, tuple[str, ...]]  # owner name -> its A/AAAA addresses
    cnames: dict[str, str]  # alias -> target
    txt: dict[str, tuple[str, ...]]
    tlsa: dict[str, TlsaKind]  # `_25._tcp.<mx>` -> the kind of TLSA RRset (data from the PKI)
    policies: dict[str, PolicyPlan] = field(default_factory=dict)  # domain -> what it publishes
    invalid_lines: tuple[str, ...] = INVALID_LINES
    _by_ip: dict[str, LabHost] = field(default_factory=dict, compare=False, repr=False)

    def host(self, ip: str) -> LabHost:
        """The host on an address."""
        if not self._by_ip:
            self._by_ip.update((h.ip, h) for h in self.hosts)
        return self._by_ip[ip]

    def behaviour_of(self, ip: str) -> Behaviour | None:
        """The behaviour of the host on an address; None for an address no lab host serves
        (a private one, which a scan never contacts)."""
        if not self._by_ip:
            self._by_ip.update((h.ip, h) for h in self.hosts)
        host = self._by_ip.get(ip)
        return host.behaviour if host is not None else None

    def unserved_addresses(self) -> dict[str, tuple[str, ...]]:
        """Addresses in the DNS that no lab host serves, with the names pointing at them."""
        served = {h.ip for h in self.hosts}
        names: dict[str, list[str]] = {}
        for name, ips in self.addresses.items():
            for ip in ips:
                if ip not in served:
                    names.setdefault(ip, []).append(name)
        return {ip: tuple(n) for ip, n in names.items()}

    def input_lines(self) -> list[str]:
        """The lines of domains.txt: every domain and the invalid lines, in a seeded order."""
        lines = [d.input_line for d in self.domains] + list(self.invalid_lines)
        random.Random(f"{self.profile}/{self.seed}/order").shuffle(lines)
        return lines


def lab_ip(index: int) -> str:
    """The index-th host address: 127.1.0.1, 127.1.0.2, ... (no .0/.255, never 127.0.0.x)."""
    block, last = divmod(index, 254)
    return f"127.{1 + block // 256}.{block % 256}.{last + 1}"


@dataclass(slots=True)
class HostDraft:
    """A host while the population is being built."""

    ip: str
    behaviour: Behaviour
    names: list[str]  # names with an A record to this address
    aliases: list[str] = field(default_factory=list)  # CNAMEs to one of `names`
    latency_ms: int = 0


class Builder:
    """Accumulates hosts, domains and names; `build()` freezes them into a Population."""

    def __init__(self, profile: str, seed: int, latency_ms: tuple[int, int]) -> None:
        self.profile, self.seed, self.latency_ms = profile, seed, latency_ms
        self.rng = random.Random(f"{profile}/{seed}")
        self.hosts: list[HostDraft] = []
        self.domains: list[LabDomain] = []
        self.addresses: dict[str, tuple[str, ...]] = {}
        self.cnames: dict[str, str] = {}
        self.txt: dict[str, tuple[str, ...]] = {}
        self.tlsa: dict[str, TlsaKind] = {}
        self.policies: dict[str, PolicyPlan] = {}
        # policies and TLSA draw from their own stream, so adding kinds moves nothing else
        self.policy_rng = random.Random(f"{profile}/{seed}/policies")
        self._names = 0
        self._big_mx: tuple[tuple[int, str], ...] | None = None

    def new_name(self, prefix: str = "") -> str:
        """A fresh domain name under .test."""
        self._names += 1
        return f"{prefix or self.rng.choice(_WORDS)}{self._names}.test"

    def host(self, behaviour: Behaviour, name: str | None) -> HostDraft:
        """A new host on the next address, with an A record for `name` (if any)."""
        lo, hi = self.latency_ms
        draft = HostDraft(lab_ip(len(self.hosts)), behaviour, [],
                          latency_ms=self.rng.randint(lo, hi) if hi else 0)
        self.hosts.append(draft)
        if name:
            self.name_host(name, draft)
        return draft

    def name_host(self, name: str, draft: HostDraft) -> None:
        """Give the host one more name (an A record pointing at it)."""
        draft.names.append(name)
        self.addresses[name] = (draft.ip,)

    def domain(self, name: str, case: DnsCase, mx: tuple[tuple[int, str], ...] = (),
               unicode: str | None = None) -> LabDomain:
        """Add a domain as given."""
        domain = LabDomain(name, case, mx, unicode)
        self.domains.append(domain)
        return domain

    def implicit(self, name: str, draft: HostDraft) -> None:
        """A domain without MX whose own A record points at the host."""
        self.name_host(name, draft)
        self.domain(name, DnsCase.IMPLICIT)

    def private_mx(self, name: str) -> None:
        """A domain whose one MX host resolves only to private addresses (A and AAAA)."""
        mx = f"mx.{name}"
        self.addresses[mx] = PRIVATE_MX_ADDRESSES
        self.domain(name, DnsCase.PRIVATE_MX, ((10, mx),))

    def via_cname(self, name: str, draft: HostDraft) -> None:
        """A domain whose MX name is a CNAME to the host's first name."""
        alias = f"mail.{name}"
        self.cnames[alias] = draft.names[0]
        draft.aliases.append(alias)
        self.domain(name, DnsCase.MX_CNAME, ((10, alias),))

    def big_mx(self, behaviours: tuple[Behaviour, ...] = (Behaviour.VALID, Behaviour.VALID,
                                                          Behaviour.NO_STARTTLS)) -> tuple[
                                                              tuple[int, str], ...]:
        """The shared 30-record MX set (long names, over 1232 bytes), spread over a few hosts."""
        if self._big_mx is None:
            drafts = [self.host(b, None) for b in behaviours]
            names = [f"mx-{i:02d}-{'relay' * 8}.bigmx.test" for i in range(30)]
            for i, name in enumerate(names):
                self.name_host(name, drafts[i % len(drafts)])
            self._big_mx = tuple((10 + i, name) for i, name in enumerate(names))
        return self._big_mx

    def add_policies(self, spf: float, dmarc: float, sts: float) -> None:
        """SPF, DMARC, MTA-STS and TLS-RPT for seeded shares of the mail domains.

        The first mail domains cycle through every kind, so small populations have each.
        """
        mail = [d for d in self.domains if d.case in (DnsCase.MX, DnsCase.IMPLICIT)]
        rng = self.policy_rng
        spf_kinds, dmarc_kinds = list(SpfKind)[1:], list(DmarcKind)[1:]
        rpt_kinds, sts_kinds = list(TlsRptKind)[1:], list(StsKind)[1:]
        for i, d in enumerate(mail):
            if d.name in self.policies:
                continue
            first = i < len(sts_kinds)
            sts_kind = StsKind.NONE
            if first or rng.random() < sts:
                sts_kind = sts_kinds[i % len(sts_kinds)] if first else rng.choice(
                    (StsKind.ENFORCE, StsKind.ENFORCE, StsKind.TESTING, StsKind.MODE_NONE,
                     StsKind.HTTP_404, StsKind.MX_MISMATCH))
                if sts_kind is StsKind.WILDCARD and d.case is not DnsCase.MX:
                    sts_kind = StsKind.ENFORCE  # `*.test` is no pattern for an implicit MX
            plan = PolicyPlan(
                spf=(spf_kinds[i % len(spf_kinds)] if first else rng.choice(spf_kinds[:2]))
                if first or rng.random() < spf else SpfKind.NONE,
                dmarc=(dmarc_kinds[i % len(dmarc_kinds)] if first else rng.choice(dmarc_kinds))
                if first or rng.random() < dmarc else DmarcKind.NONE,
                tlsrpt=(rpt_kinds[i % len(rpt_kinds)] if first else TlsRptKind.VALID)
                if first or sts_kind is not StsKind.NONE else TlsRptKind.NONE,
                sts=sts_kind)
            self.policies[d.name] = plan
            self.txt.update(txt_records(d.name, plan))

    def add_tlsa(self, share: float) -> None:
        """Signed 3 1 1 TLSA records for `_25._tcp.<mx>` of a share of the valid hosts (>= 1)."""
        valid = [h for h in self.hosts if h.behaviour is Behaviour.VALID and h.names]
        for i, h in enumerate(valid):
            if i == 0 or self.policy_rng.random() < share:
                for name in h.names:
                    self.tlsa.setdefault(f"_25._tcp.{name}", TlsaKind.EE_SPKI_SHA256)

    def build(self) -> Population:
        """Freeze into a Population."""
        hosts = []
        for h in self.hosts:
            text, software, version = self.rng.choice(_SOFTWARE)
            hosts.append(LabHost(
                ip=h.ip, behaviour=h.behaviour, mx_names=tuple(h.names),
                banner=f"{(h.names or [h.ip])[0]} {text}", latency_ms=h.latency_ms,
                cert_names=tuple(h.names + h.aliases), software=software,
                software_version=version))
        return Population(self.profile, self.seed, tuple(self.domains), tuple(hosts),
                          self.addresses,
                          self.cnames, self.txt, self.tlsa, self.policies)


def build_zone(population: Population) -> Zone:
    """The DNS data of a population: MX sets (packed once per distinct set), addresses, TXT..."""
    zone = Zone()
    packed: dict[tuple[tuple[int, str], ...], tuple[tuple[int, bytes], ...]] = {}
    null_mx = ((int(RType.MX), mx_rdata(0, ".")),)
    for d in population.domains:
        if d.mx:
            records = packed.get(d.mx)
            if records is None:
                records = packed[d.mx] = tuple((int(RType.MX), mx_rdata(p, n)) for p, n in d.mx)
            zone.set_records(d.name, records)
        elif d.case is DnsCase.NULL_MX:
            zone.set_records(d.name, null_mx)
        elif d.case is DnsCase.NO_MX:
            zone.add_empty(d.name)
        elif d.case in (DnsCase.SERVFAIL, DnsCase.TIMEOUT):
            zone.fail(d.name, d.case.value)
    for name, ips in population.addresses.items():
        for ip in ips:
            zone.add_a(name, ip)
    for alias, target in population.cnames.items():
        zone.add_cname(alias, target)
    for name, texts in population.txt.items():
        for text in texts:
            zone.add_txt(name, text)
    for d in population.domains:  # TLSA records need the PKI: see lab.policies.add_tlsa_to_zone
        plan = population.policies.get(d.name)
        if plan is not None and sts_response(plan.sts, mx_names(d)) is not None:
            zone.add_a(f"mta-sts.{d.name}", STS_ADDRESS)
    return zone


def mx_names(domain: LabDomain) -> tuple[str, ...]:
    """The MX host names of a domain as a scan sees them (the domain itself for implicit MX)."""
    return (domain.name,) if domain.case is DnsCase.IMPLICIT else tuple(n for _, n in domain.mx)
