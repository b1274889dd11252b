"""Mail providers for a target class: host behaviour mixes, MX sets, and Zipf-shared domains.

A domain's STARTTLS class follows from the behaviours of the hosts its MX set points at, so a
profile that must hit per-domain shares (norway-2010) fixes each domain's class first and then
puts it on a provider built for that class. A few providers carry most domains, the long tail one
each, as in real hosting markets.
"""

from __future__ import annotations

import random
from itertools import accumulate

from scanner.lab.population.behaviours import ANSWERS_SMTP, NEGOTIATES_TLS, Behaviour
from scanner.lab.population.builder import Builder, DnsCase, HostDraft

_IMPLICIT_PER_HOST = 40  # web hosts serving many domains' A records (their certs name them all)
_TAIL_SHARE = 0.7  # providers that serve exactly one domain
_ZIPF_S = 1.1


class Mix:
    """Weighted behaviours of one group (TLS, plain, or dead hosts)."""

    def __init__(self, weights: dict[Behaviour, float]) -> None:
        self.behaviours = tuple(weights)
        self._cum = list(accumulate(weights.values()))

    def pick(self, rng: random.Random) -> Behaviour:
        """One behaviour, drawn by weight."""
        return rng.choices(self.behaviours, cum_weights=self._cum)[0]

    def check(self, group: frozenset[Behaviour], inside: bool) -> None:
        """Fail fast when a profile puts a behaviour in the wrong group."""
        wrong = [b for b in self.behaviours if (b in group) != inside]
        if wrong:
            raise ValueError(f"behaviours in the wrong group: {wrong}")


def _behaviours(rng: random.Random, cls: str, size: int, tls: Mix, plain: Mix, dead: Mix,
                p_dead_backup: float) -> list[Behaviour]:
    """Host behaviours of one provider whose domains get class `cls`."""
    if cls == "unreachable":
        return [dead.pick(rng) for _ in range(size)]
    kind = tls.pick(rng)  # one administrator, one kind of certificate
    if cls == "all":
        chosen = [kind] * size
    elif cls == "none":
        chosen = [plain.pick(rng)] * size
    else:
        chosen = [kind, plain.pick(rng)]
        chosen += [rng.choice((kind, chosen[1])) for _ in range(size - 2)]
        rng.shuffle(chosen)
    required = 2 if cls == "some" else 1
    if size > required and rng.random() < p_dead_backup:
        chosen[-1] = dead.pick(rng)  # a dead backup MX: it does not change the class
    return chosen


def populate_class(b: Builder, cls: str, count: int, host_budget: int,
                   mixes: tuple[Mix, Mix, Mix], *, p_implicit: float, p_cname: float,
                   p_dead_backup: float) -> None:
    """Add `count` domains of class `cls` ("all", "some", "none", "unreachable")."""
    if count <= 0:
        return
    tls, plain, dead = mixes
    tls.check(NEGOTIATES_TLS, True)
    plain.check(ANSWERS_SMTP - NEGOTIATES_TLS, True)
    dead.check(ANSWERS_SMTP, False)
    rng = b.rng
    n_implicit = 0 if cls == "some" else min(count - 1, round(count * p_implicit))
    web: HostDraft | None = None
    for i in range(n_implicit):
        if i % _IMPLICIT_PER_HOST == 0:
            web = b.host(_behaviours(rng, cls, 1, tls, plain, dead, 0.0)[0], None)
        assert web is not None
        b.implicit(b.new_name(), web)
    rest = count - n_implicit
    providers: list[list[HostDraft]] = []
    used = 0
    while used < host_budget and len(providers) < rest:
        size = rng.choices((1, 2, 3), (55, 40, 5))[0]
        if cls == "some":
            size = max(2, size)
        name = b.new_name()
        drafts = [b.host(beh, f"mx{j + 1}.{name}") for j, beh in
                  enumerate(_behaviours(rng, cls, size, tls, plain, dead, p_dead_backup))]
        providers.append(drafts)
        used += size
    n_head = max(1, len(providers) - int(len(providers) * _TAIL_SHARE))
    for drafts in providers[n_head:]:  # the long tail: one domain each
        if len(drafts) == 1 and rng.random() < p_cname:
            b.via_cname(b.new_name(), drafts[0])
        else:
            b.domain(b.new_name(), DnsCase.MX, _mx_set(drafts))
    head = [_mx_set(drafts) for drafts in providers[:n_head]]
    for mx in head:
        b.domain(b.new_name(), DnsCase.MX, mx)
    weights = [1.0 / (rank + 1) ** _ZIPF_S for rank in range(len(head))]
    for mx in rng.choices(head, weights, k=rest - len(providers)):
        b.domain(b.new_name(), DnsCase.MX, mx)


def _mx_set(drafts: list[HostDraft]) -> tuple[tuple[int, str], ...]:
    return tuple((10 * (j + 1), d.names[0]) for j, d in enumerate(drafts))
