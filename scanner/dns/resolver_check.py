"""The resolver check: questions whose answers are known, asked of every resolver.

A resolver broken at our end (one that answers NXDOMAIN, SERVFAIL or REFUSED to everything, or
NOERROR without records) turns every surveyed domain into a DNS failure that reads like a fact
about the domain. So before the first domain, and again during the scan (`scan/resolver_watch.py`),
each configured resolver (or each of the system's) is asked alone, on a fresh c-ares channel
(the client the scan's MX lookups use), with no cache:

- `. NS` and `. SOA`, unless `--resolver-check none`: every recursive resolver answers them
  with records (from its root hints and cache);
- for each canary (`--resolver-check NAME`): A, AAAA and MX. The canary *resolves* when at
  least one of the three is answered NOERROR with a record of the asked type.

Verdict per resolver: `failed` when it answers neither root question with records, or a canary
does not resolve; `partial` when one root question passes and the other does not (a warning:
the resolver works); `silent` when nothing it was asked got any answer at all (timeouts, or its
port closed); otherwise `passed`. With `none` and no canary nothing is judged but silence: the
answer to `. NS` may be anything, REFUSED included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import aiodns
import pycares
from pycares import errno as ares

from scanner.config import ResolverCheck, Timeouts
from scanner.dns.errors import ares_code, dns_status_from, error_detail
from scanner.model.status import DnsStatus

if TYPE_CHECKING:
    from scanner.dns.channel import DnsChannel

ROOT_QUESTIONS = ((".", "NS"), (".", "SOA"))
CANARY_TYPES = ("A", "AAAA", "MX")
CHECK_TIMEOUT_S = 2.0  # per try, at most (a resolver on the scanning host answers in ms)
CHECK_TRIES = 2
_CODES = {"NS": pycares.QUERY_TYPE_NS, "SOA": pycares.QUERY_TYPE_SOA,
          "A": pycares.QUERY_TYPE_A, "AAAA": pycares.QUERY_TYPE_AAAA,
          "MX": pycares.QUERY_TYPE_MX}
_RCODES = {DnsStatus.NXDOMAIN: "NXDOMAIN", DnsStatus.NODATA: "NODATA",
           DnsStatus.SERVFAIL: "SERVFAIL", DnsStatus.REFUSED: "REFUSED"}


class Verdict(StrEnum):
    """How one resolver fared."""

    PASSED = "passed"
    PARTIAL = "partial"  # one root question failed, the other passed: a warning
    FAILED = "failed"
    SILENT = "silent"  # no answer at all


@dataclass(frozen=True, slots=True)
class CheckAnswer:
    """One question and what came back: `answer` is the rcode (NODATA: NOERROR without a record
    of the type), c-ares' message for a malformed reply, or why nothing came ("nothing
    (timeout)", "nothing (connection refused)", then `answered` is False)."""

    name: str
    qtype: str
    answer: str
    records: int = 0
    answered: bool = True

    @property
    def question(self) -> str:
        """`. NS`, `example.org A`."""
        return f"{self.name} {self.qtype}"

    @property
    def passed(self) -> bool:
        """NOERROR with at least one record of the asked type."""
        return self.answer == "NOERROR" and self.records > 0


@dataclass(frozen=True, slots=True)
class ServerCheck:
    """One resolver's answers and verdict; `problem` says what went wrong, in words."""

    server: str
    verdict: Verdict
    answers: tuple[CheckAnswer, ...]
    problem: str | None = None


@dataclass(frozen=True, slots=True)
class CheckReport:
    """One round of the check over every resolver."""

    at: datetime
    servers: tuple[ServerCheck, ...]

    @property
    def ok(self) -> bool:
        """Every resolver passed (a partial pass included)."""
        return all(s.verdict in (Verdict.PASSED, Verdict.PARTIAL) for s in self.servers)

    @property
    def silent(self) -> bool:
        """Some resolver answered nothing at all (at start-up: most likely a wrong address)."""
        return any(s.verdict is Verdict.SILENT for s in self.servers)

    def failure(self) -> str | None:
        """One line naming each resolver that failed and what it answered, or None."""
        bad = [f"resolver {s.server} {s.problem}" for s in self.servers
               if s.verdict in (Verdict.FAILED, Verdict.SILENT)]
        return "; ".join(bad) or None

    def warnings(self) -> list[str]:
        """One line per resolver that passed only in part."""
        return [f"resolver {s.server} {s.problem}; the other root question was answered, "
                "so the scan goes on" for s in self.servers if s.verdict is Verdict.PARTIAL]

    def to_json(self) -> dict[str, Any]:
        """What was asked and answered, for the manifest."""
        return {"time": self.at.isoformat(timespec="microseconds"), "resolvers": {
            s.server: {"verdict": s.verdict.value, "answers": [
                {"question": a.question, "answer": a.answer, "records": a.records}
                for a in s.answers]} for s in self.servers}}


def questions_of(check: ResolverCheck) -> list[tuple[str, str]]:
    """The (name, type) questions a check asks of each resolver."""
    if not check.judged:
        return [ROOT_QUESTIONS[0]]  # only whether the resolver answers at all
    asked = list(ROOT_QUESTIONS) if check.root else []
    return asked + [(name, qtype) for name in check.canaries for qtype in CANARY_TYPES]


async def check_resolvers(channel: DnsChannel, check: ResolverCheck,
                          timeouts: Timeouts) -> CheckReport:
    """Ask every resolver the check's questions (concurrently) and judge the answers."""
    asked = questions_of(check)
    timeout_s = min(timeouts.dns_query, CHECK_TIMEOUT_S)
    servers = channel.servers
    results = await asyncio.gather(*(channel.ask_server(server, asked, timeout_s, CHECK_TRIES)
                                     for server in servers))
    checks = []
    for server, replies in zip(servers, results, strict=True):
        answers = tuple(_answer_of(name, qtype, reply)
                        for (name, qtype), reply in zip(asked, replies, strict=True))
        checks.append(_judge(server, answers, check, timeout_s))
    return CheckReport(datetime.now(UTC), tuple(checks))


def _answer_of(name: str, qtype: str, reply: pycares.DNSResult | BaseException) -> CheckAnswer:
    if isinstance(reply, asyncio.CancelledError):
        raise reply
    if isinstance(reply, BaseException):
        code = ares_code(reply)
        if code == ares.ARES_ETIMEOUT or isinstance(reply, TimeoutError):
            return CheckAnswer(name, qtype, "nothing (timeout)", answered=False)
        if code == ares.ARES_ECONNREFUSED:
            return CheckAnswer(name, qtype, "nothing (connection refused)", answered=False)
        if isinstance(reply, aiodns.error.DNSError | pycares.AresError):
            rcode = _RCODES.get(dns_status_from(reply))
            return CheckAnswer(name, qtype, rcode or error_detail(reply))
        return CheckAnswer(name, qtype, f"error ({type(reply).__name__}: {reply})")
    records = sum(1 for r in reply.answer if r.type == _CODES[qtype])
    return CheckAnswer(name, qtype, "NOERROR" if records else "NODATA", records)


def _judge(server: str, answers: tuple[CheckAnswer, ...], check: ResolverCheck,
           timeout_s: float) -> ServerCheck:
    if not any(a.answered for a in answers):
        return ServerCheck(server, Verdict.SILENT, answers,
                           f"answered {_answered(answers)} ({CHECK_TRIES} tries of "
                           f"{timeout_s:g} s each)")
    if not check.judged:
        return ServerCheck(server, Verdict.PASSED, answers)
    root = [a for a in answers if a.name == "." and (a.name, a.qtype) in ROOT_QUESTIONS] \
        if check.root else []
    failing = list(root) if root and not any(a.passed for a in root) else []
    for name in check.canaries:
        tries = [a for a in answers if a.name == name]
        if not any(a.passed for a in tries):
            failing += tries
    if failing:
        return ServerCheck(server, Verdict.FAILED, answers, f"answered {_answered(failing)}")
    missed = [a for a in root if not a.passed]
    if missed:
        return ServerCheck(server, Verdict.PARTIAL, answers, f"answered {_answered(missed)}")
    return ServerCheck(server, Verdict.PASSED, answers)


def _answered(answers: Sequence[CheckAnswer]) -> str:
    """"NXDOMAIN to . NS and . SOA, SERVFAIL to example.org MX": answers grouped as they came."""
    groups: dict[str, list[str]] = {}
    for a in answers:
        groups.setdefault(a.answer, []).append(a.question)
    return ", ".join(f"{answer} to {_and(questions)}" for answer, questions in groups.items())


def _and(items: Sequence[str]) -> str:
    return items[0] if len(items) == 1 else f"{', '.join(items[:-1])} and {items[-1]}"
