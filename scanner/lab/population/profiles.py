"""The lab's population profiles: mixed (every case once), hostile, norway-2010, facebook-2014.

`mixed` also has `private-mx.test`, whose MX resolves only to RFC 1918 and ULA addresses: a
scan (lab mode or not) must record it `private_mx` without contacting them.

norway-2010 reproduces the 2010 Norwegian survey per domain (67% none / 17% some / 16% all among
domains whose servers answer); facebook-2014 reproduces Facebook's per-MX-host shares (76%
STARTTLS, 74% of those with forward secrecy, about half strict-valid, ~1.6% broken TLS).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from scanner.lab.population.behaviours import ANSWERS_SMTP, NEGOTIATES_TLS, Behaviour
from scanner.lab.population.builder import (
    IDN_ALABEL,
    IDN_DOMAIN,
    Builder,
    DnsCase,
    Population,
)
from scanner.lab.population.policies import TlsaKind
from scanner.lab.population.provider_mix import Mix, populate_class

B = Behaviour
PROFILES = ("mixed", "norway-2010", "facebook-2014", "hostile")
DEFAULT_LATENCY_MS: dict[str, tuple[int, int]] = {
    "mixed": (0, 0), "hostile": (0, 0), "norway-2010": (20, 300), "facebook-2014": (20, 300)}
#: Non-forward-secret TLS (RSA key exchange); approximated until the lab has such a behaviour.
NO_FS = B.NO_FS
_DNS_FAILURES = (DnsCase.NULL_MX, DnsCase.NO_MX, DnsCase.NXDOMAIN, DnsCase.SERVFAIL,
                 DnsCase.TIMEOUT, DnsCase.MX_NO_ADDRESS)


def slug(behaviour: Behaviour) -> str:
    """A host-name-safe form of a behaviour name."""
    return behaviour.value.replace("_", "-")


def generate(profile: str, n_domains: int, seed: int, *,
             latency_ms: tuple[int, int] | None = None) -> Population:
    """The population of a profile: `n_domains` domains (more if the profile's minimum is more)."""
    if profile not in _PROFILES:
        raise ValueError(f"unknown profile {profile!r}; choose from {', '.join(PROFILES)}")
    b = Builder(profile, seed, latency_ms or DEFAULT_LATENCY_MS[profile])
    _PROFILES[profile](b, n_domains)
    return b.build()


def _dns_failure(b: Builder, case: DnsCase) -> None:
    name = b.new_name(case.value.replace("_", "-"))
    b.domain(name, case, ((10, f"mail.{name}"),) if case is DnsCase.MX_NO_ADDRESS else ())


def _mixed(b: Builder, n: int) -> None:
    hosts = {beh: b.host(beh, f"mx.{slug(beh)}.hosting.test") for beh in Behaviour}
    for beh, draft in hosts.items():
        b.domain(f"only-{slug(beh)}.test", DnsCase.MX, ((10, draft.names[0]),))

    def pair(first: Behaviour, second: Behaviour) -> tuple[tuple[int, str], ...]:
        return ((10, hosts[first].names[0]), (20, hosts[second].names[0]))

    popular = (b.host(B.VALID, "mx1.popular-mail.test"), b.host(B.VALID, "mx2.popular-mail.test"))
    popular_mx = ((10, popular[0].names[0]), (10, popular[1].names[0]))
    plain_mx = ((10, b.host(B.NO_STARTTLS, "mx.plain-mail.test").names[0]),)
    sets = [(popular_mx, 40), (plain_mx, 20), (pair(B.VALID, B.NO_STARTTLS), 10),
            (pair(B.VALID, B.SELF_SIGNED), 8), (pair(B.VALID, B.TARPIT), 4),
            (pair(B.NO_STARTTLS, B.MASKED), 8), (pair(B.REFUSED, B.ACCEPT_CLOSE), 4),
            (pair(B.EXPIRED, B.STARTTLS_454), 6)]
    b.domain(IDN_ALABEL, DnsCase.MX, popular_mx, unicode=IDN_DOMAIN)
    web_tls, web_plain = b.host(B.VALID, None), b.host(B.NO_STARTTLS, None)
    for draft in (web_tls, web_tls, web_plain):
        b.implicit(b.new_name("implicit"), draft)
    for case in _DNS_FAILURES:
        _dns_failure(b, case)
    b.via_cname(b.new_name("cname"), popular[0])
    b.domain(b.new_name("bigmx"), DnsCase.BIG_MX, b.big_mx())
    _dane_domains(b, plain_mx[0][1])
    b.private_mx("private-mx.test")
    mx_sets = [s for s, _ in sets]
    weights = [w for _, w in sets]
    for mx in b.rng.choices(mx_sets, weights, k=max(0, n - len(b.domains))):
        b.domain(b.new_name(), DnsCase.MX, mx)
    b.add_policies(spf=0.5, dmarc=0.3, sts=0.15)
    b.add_tlsa(0.5)


#: DANE cases of the mixed profile: (name, host behaviour, TLSA kind). DANE-EE ignores names
#: and dates (an expired or wrong-name leaf still matches); DANE-TA needs the MX name.
DANE_CASES: tuple[tuple[str, Behaviour, TlsaKind], ...] = (
    *((k.value.replace("_", "-"), B.VALID, k) for k in TlsaKind),
    ("ee-expired", B.EXPIRED, TlsaKind.EE_SPKI_SHA256),
    ("ee-wrong-name", B.WRONG_NAME, TlsaKind.EE_SPKI_SHA256),
    ("ta-wrong-name", B.WRONG_NAME, TlsaKind.TA_CERT_SHA256),
    ("no-tls", B.NO_STARTTLS, TlsaKind.EE_SPKI_SHA256),
)


def _dane_domains(b: Builder, plain_mx: str) -> None:
    """One domain per DANE case (`dane-<case>.test`), and one with a DANE and a plain MX."""
    first = ""
    for case, behaviour, kind in DANE_CASES:
        name = b.host(behaviour, f"mx.dane-{case}.test").names[0]
        b.tlsa[f"_25._tcp.{name}"] = kind
        b.domain(f"dane-{case}.test", DnsCase.MX, ((10, name),))
        first = first or name
    b.domain("dane-partial.test", DnsCase.MX, ((10, first), (20, plain_mx)))


def _hostile(b: Builder, n: int) -> None:
    failures = [beh for beh in Behaviour if beh is not B.VALID]
    dns_cycle = (*_DNS_FAILURES, DnsCase.MX_CNAME, DnsCase.BIG_MX, DnsCase.IMPLICIT)
    n_dns = max(len(dns_cycle), n // 10)
    for i in range(max(len(failures), n - n_dns)):
        beh = failures[i % len(failures)]
        name = b.new_name("victim")
        b.domain(name, DnsCase.MX, ((10, b.host(beh, f"mx.{name}").names[0]),))
    for i in range(n_dns):
        case = dns_cycle[i % len(dns_cycle)]
        beh = failures[i % len(failures)]
        if case is DnsCase.MX_CNAME:
            name = b.new_name("cname")
            b.via_cname(name, b.host(beh, f"relay.{name}"))
        elif case is DnsCase.IMPLICIT:
            b.implicit(b.new_name("implicit"), b.host(beh, None))
        elif case is DnsCase.BIG_MX:
            b.domain(b.new_name("bigmx"), case, b.big_mx((B.TARPIT, B.GARBAGE, B.NO_STARTTLS)))
        else:
            _dns_failure(b, case)
    b.add_policies(spf=0.3, dmarc=0.1, sts=0.05)


_TLS_NORWAY = Mix({B.VALID: 30, B.SELF_SIGNED: 25, B.EXPIRED: 15, B.WRONG_NAME: 15,
                   B.MISSING_INTERMEDIATE: 5, B.RSA1024: 3, B.TLS10_11_ONLY: 3, B.DHE1024: 2,
                   B.NOT_YET_VALID: 0.5, B.MULTILINE_GREETING: 1, B.GREET_PAUSE: 0.4,
                   B.TLS13_ONLY: 0.5, B.LONG_CHAIN: 0.1})
_PLAIN_NORWAY = Mix({B.NO_STARTTLS: 95, B.MASKED: 1, B.STARTTLS_454: 1.5, B.HANDSHAKE_FAILS: 1,
                     B.TLS_ALERT: 0.5, B.RESET_MID_HANDSHAKE: 0.5, B.PLAINTEXT_AFTER_STARTTLS: 0.5})
_DEAD_NORWAY = Mix({B.REFUSED: 40, B.TARPIT: 20, B.GREETING_421: 12, B.GREETING_554: 8,
                    B.ACCEPT_CLOSE: 10, B.ALL_421: 5, B.EHLO_REJECTED: 5})


def _norway(b: Builder, n: int) -> None:
    shares = {DnsCase.NULL_MX: 0.003, DnsCase.NO_MX: 0.025, DnsCase.NXDOMAIN: 0.02,
              DnsCase.SERVFAIL: 0.005, DnsCase.TIMEOUT: 0.002, DnsCase.MX_NO_ADDRESS: 0.01}
    failures = {case: max(1, round(n * share)) for case, share in shares.items()}
    mail = max(4, n - sum(failures.values()))
    unreachable = max(1, round(mail * 0.04))
    answered = mail - unreachable
    none, some = round(answered * 0.67), round(answered * 0.17)
    classes = {"none": none, "some": some, "all": answered - none - some,
               "unreachable": unreachable}
    host_budget = max(n // 28, 40)
    mixes = (_TLS_NORWAY, _PLAIN_NORWAY, _DEAD_NORWAY)
    for cls, count in classes.items():
        if cls == "all":
            count -= 2
            _special_domains(b)
        populate_class(b, cls, count, max(1, round(host_budget * count / mail)), mixes,
                       p_implicit={"unreachable": 0.4, "none": 0.03, "all": 0.01}.get(cls, 0.0),
                       p_cname=0.03, p_dead_backup=0.08)
    for case, count in failures.items():
        for _ in range(count):
            _dns_failure(b, case)
    b.add_policies(spf=0.4, dmarc=0.1, sts=0.02)
    b.add_tlsa(0.01)


def _special_domains(b: Builder) -> None:
    """The IDN domain and the big-MX domain, both in the `all` class."""
    draft = b.host(B.VALID, "mx.idn-hosting.test")
    b.domain(IDN_ALABEL, DnsCase.MX, ((10, draft.names[0]),), unicode=IDN_DOMAIN)
    b.domain(b.new_name("bigmx"), DnsCase.BIG_MX, b.big_mx((B.VALID, B.SELF_SIGNED, B.VALID)))


_FS_VALID = Mix({B.VALID: 85, B.TLS13_ONLY: 5, B.MULTILINE_GREETING: 5, B.GREET_PAUSE: 5})
_FS_INVALID = Mix({B.SELF_SIGNED: 40, B.EXPIRED: 20, B.WRONG_NAME: 25,
                   B.MISSING_INTERMEDIATE: 10, B.RSA1024: 5})
_BROKEN = Mix({B.HANDSHAKE_FAILS: 40, B.TLS_ALERT: 20, B.RESET_MID_HANDSHAKE: 20,
               B.PLAINTEXT_AFTER_STARTTLS: 20})
#: Per-host shares (percent of hosts): 76 offer STARTTLS (74.4 negotiate + 1.6 broken), 74% of
#: the 76 have forward secrecy; strict-valid about half of the TLS hosts.
_FACEBOOK_GROUPS: tuple[tuple[float, Mix | Behaviour], ...] = (
    (76 * 0.74 * 0.34, _FS_VALID), (76 * 0.74 * 0.66, _FS_INVALID), (74.4 - 76 * 0.74, NO_FS),
    (1.6, _BROKEN), (23.0, B.NO_STARTTLS), (0.5, B.MASKED), (0.5, B.REFUSED), (0.5, B.TARPIT))


def _facebook(b: Builder, n: int) -> None:
    n_hosts = min(max(n // 3, 60), 12_000)  # the fleet listens on each: keep fds bounded
    picks = _quotas(b, _FACEBOOK_GROUPS, n_hosts)
    behaviours = [g if isinstance(g, Behaviour) else g.pick(b.rng) for g in picks]
    sets: list[tuple[tuple[int, str], ...]] = []
    i = 0
    while i < len(behaviours):  # providers of one or two hosts
        size = 2 if b.rng.random() < 0.4 and i + 1 < len(behaviours) else 1
        provider = b.new_name("site")
        sets.append(tuple((10 * (j + 1), b.host(beh, f"mx{j + 1}.{provider}").names[0])
                          for j, beh in enumerate(behaviours[i:i + size])))
        i += size
    failures = {DnsCase.NXDOMAIN: 0.005, DnsCase.SERVFAIL: 0.002, DnsCase.TIMEOUT: 0.001,
                DnsCase.MX_NO_ADDRESS: 0.003, DnsCase.NULL_MX: 0.001, DnsCase.NO_MX: 0.003}
    for case, share in failures.items():
        for _ in range(max(1, round(n * share))):
            _dns_failure(b, case)
    b.domain(IDN_ALABEL, DnsCase.MX, sets[0], unicode=IDN_DOMAIN)
    b.domain(b.new_name("bigmx"), DnsCase.BIG_MX, b.big_mx())
    _spread(b, sets, max(len(sets), n - len(b.domains)))
    b.add_policies(spf=0.6, dmarc=0.3, sts=0.05)
    b.add_tlsa(0.02)


def _quotas(b: Builder, groups: Sequence[tuple[float, Mix | Behaviour]],
            total: int) -> list[Mix | Behaviour]:
    """Exactly `total` picks in the groups' proportions (largest remainder), shuffled."""
    scale = total / sum(w for w, _ in groups)
    counts = [int(w * scale) for w, _ in groups]
    by_remainder = sorted(range(len(groups)), key=lambda i: counts[i] - groups[i][0] * scale)
    for i in by_remainder[:total - sum(counts)]:
        counts[i] += 1
    picks = [group for (_, group), count in zip(groups, counts, strict=True) for _ in range(count)]
    b.rng.shuffle(picks)
    return picks


def _spread(b: Builder, sets: Sequence[tuple[tuple[int, str], ...]], count: int) -> None:
    """Every MX set gets one domain; the rest go to a Zipf-weighted few (big providers)."""
    for mx in sets:
        b.domain(b.new_name(), DnsCase.MX, mx)
    weights = [1.0 / (rank + 1) for rank in range(len(sets))]
    for mx in b.rng.choices(sets, weights, k=max(0, count - len(sets))):
        b.domain(b.new_name(), DnsCase.MX, mx)


_PROFILES: dict[str, Callable[[Builder, int], None]] = {
    "mixed": _mixed, "norway-2010": _norway, "facebook-2014": _facebook, "hostile": _hostile}

assert ANSWERS_SMTP >= NEGOTIATES_TLS  # the classes below rely on it
