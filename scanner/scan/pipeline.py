"""The scan: inputs -> dns -> one probe per address -> rollup -> sink, streaming.

Inputs stream and concurrency is bounded: at most `limits.domains_in_flight` domains sit between
DNS and rollup, at most `limits.max_in_flight` SMTP conversations run, at most
`limits.per_provider` of them to one provider. The probe table maps each (address) to its
pending probe, so an address is probed once however many domains use it, and its summary fans
out to every domain. A domain's row is buffered only after the host rows it depends on, so a
committed checkpoint never holds a domain without its hosts.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Protocol

from scanner.config import ConfigError, ScanConfig, split_host_port
from scanner.dns.mail_resolver import MailResolver
from scanner.dns.resolver_check import CheckReport, questions_of
from scanner.dns.slot_gate import SlotGate
from scanner.inputs.digest import DigestedInputs, digest_inputs
from scanner.inputs.domain_lists import InputStats, read_domains
from scanner.model.records import (
    DomainInput,
    DomainMxRecord,
    DomainRecord,
    HostRecord,
    MailHosts,
    ProbeTarget,
)
from scanner.model.status import InputStatus
from scanner.scan.counts import ScanCounts, committed_counts
from scanner.scan.deep import DeepProber, with_deep
from scanner.scan.outcome import host_outcome
from scanner.scan.policy_rollup import POLICIES_NOT_QUERIED, AppliedPolicies
from scanner.scan.probe import HostAnalyser
from scanner.scan.probe_table import ProbeTable
from scanner.scan.providers import public_suffix_list
from scanner.scan.resolver_watch import ResolverWatch, has_dns_failure
from scanner.scan.resume_check import ResumeCheck, check_resume
from scanner.scan.rollup import rollup_domain, rollup_duplicate, rollup_excluded, rollup_invalid
from scanner.scan.summary import HostSummary, load_resume_state
from scanner.scan.vantage import VantageFailure, VantageWatch, server_spoke
from scanner.sink.durable import OutputError
from scanner.sink.manifest import ScanManifest
from scanner.sink.parquet import DatasetWriter
from scanner.smtp.conversation import SmtpProber, StepWait
from scanner.tls.context import ProbeContext, make_probe_context
from scanner.tls.verify import ChainVerifier

if TYPE_CHECKING:  # imported when the policy stage runs: --no-policies never loads dnspython
    from scanner.scan.policy_checks import PolicyChecker

log = logging.getLogger(__name__)


class Progress(Protocol):
    """What the pipeline reports as it goes; the CLI draws bars from it, tests count calls.

    A progress object that also has `on_waiting(waiting: Waiting)` is told, every
    `waiting_every` seconds, what the scan is waiting on (`Scan.waiting()`).
    """

    def on_domain_done(self, record: DomainRecord) -> None: ...

    def on_probe_done(self, record: HostRecord) -> None: ...


_STEP_WORDS = {"connect": "connecting", "greeting": "waiting for the greeting",
               "ehlo": "waiting for the EHLO reply", "starttls": "waiting for the STARTTLS reply",
               "handshake": "in the TLS handshake", "ehlo_tls": "waiting for EHLO over TLS",
               "quit": "closing"}


@dataclass(frozen=True, slots=True)
class Waiting:
    """What the scan waits on at one moment: why the bars stand still near the end."""

    hosts: int  # probes under way: begun and not yet written
    steps: tuple[StepWait, ...]  # those in a conversation, by step, most hosts first
    held: int  # finished timeouts held back until the network path is confirmed (vantage.py)
    queued: int  # waiting for a connection slot (with --deep: or in the extra conversations)
    domains: int  # domains read and not yet written
    inputs_done: bool  # every input line was read: what is left is all there is
    deadline_s: float  # the per-address deadline

    def describe(self, countdown: bool = True) -> str:
        """One line, e.g. "12 hosts left: 9 waiting for the greeting (timeout 30 s), ..."."""
        left = "left" if self.inputs_done else "in flight"
        if not self.hosts:
            if not self.domains:
                return ""
            return (f"{self.domains} domain{'s' if self.domains != 1 else ''} {left}, waiting "
                    "on DNS and policy lookups")
        parts = [f"{w.hosts} {_STEP_WORDS.get(w.step, w.step)} "
                 + (f"(deadline {self.deadline_s:g} s)" if w.deadline_first
                    else f"(timeout {w.timeout_s:g} s)") for w in self.steps]
        if self.queued:
            parts.append(f"{self.queued} queued for a connection slot")
        if self.held:
            parts.append(f"{self.held} timed out, held until the network is confirmed")
        line = f"{self.hosts} host{'s' if self.hosts != 1 else ''} {left}: {', '.join(parts)}"
        if countdown and self.steps:
            ends_in_s = math.ceil(max(w.ends_in_s for w in self.steps))
            line += f"; the last ends within {ends_in_s} s"
        return line


class _NoProgress:
    def on_domain_done(self, record: DomainRecord) -> None:
        pass

    def on_probe_done(self, record: HostRecord) -> None:
        pass


class Scan:
    """One scan run; `run()` is the entry point."""

    def __init__(self, config: ScanConfig, progress: Progress | None = None,
                 notify: Callable[[str], None] | None = None, *,
                 waiting_every: float = 1.0) -> None:
        self.config = config
        self.progress: Progress = progress or _NoProgress()
        #: warnings for the user (a resolver that passed its check only in part)
        self.notify: Callable[[str], None] = notify or (lambda text: log.warning("%s", text))
        self._waiting_every = waiting_every
        self.counts = ScanCounts()  # this run's
        self.earlier = ScanCounts()  # what earlier runs committed (on resume)
        self.input_stats = InputStats()
        self.inputs: DigestedInputs | None = None  # set by prepare()
        self.resume_check: ResumeCheck | None = None  # set by prepare() on resume
        self._table = ProbeTable()
        self._names_in_flight: dict[str, list[str]] = {}
        self._provider_sems: dict[str, asyncio.Semaphore] = {}
        self._provider_users: dict[str, int] = {}
        self._psl = public_suffix_list()
        self._done_lines: set[int] = set()
        self.vantage = VantageWatch(settle_after=config.timeouts.per_address,
                                    port=config.port)
        self._tg: asyncio.TaskGroup | None = None
        #: the scan's conversation slots (an asyncio Semaphore binds to the loop that first
        #: waits on it, so it can be made here)
        self._probe_slots = asyncio.Semaphore(config.limits.max_in_flight)
        self._policies: PolicyChecker | None = None
        self._deep = DeepProber(config) if config.deep else None
        self._analyser: HostAnalyser | None = None
        self._domain_gate: SlotGate | None = None
        self._inputs_done = False
        # what may still start a probe: the input loop, each domain until its probes are
        # started, each probe until it begins; at 0 the vantage watch knows none is to come
        self._feeding = 1
        self._resolver_watch: ResolverWatch | None = None

    def _provider_of(self, mx_hostname: str) -> str:
        """The MX host's registrable domain: the unit of the per-provider connection cap."""
        return self._psl.privatesuffix(mx_hostname) or mx_hostname

    @property
    def whole(self) -> ScanCounts:
        """The whole scan's counts: earlier runs' and this run's."""
        return self.earlier.plus(self.counts)

    def prepare(self) -> DigestedInputs:
        """Fingerprint the inputs and, on resume, check that inputs and settings are the scan's.

        Raises InputError or ResumeRefused before anything is written. `run` calls it when the
        caller has not (the CLI does, to size its progress bar before the event loop starts).
        """
        if self.inputs is None:
            inputs = digest_inputs(self.config.inputs)
            try:
                if self.config.resume:  # its notices are the caller's to show
                    self.resume_check = check_resume(self.config, inputs)
            except BaseException:
                inputs.remove_copies()
                raise
            self.inputs = inputs
        return self.inputs

    async def run(self) -> ScanCounts:
        """Check the resolvers, scan every input; flush and write the manifest however it ends.

        Returns this run's counts (`whole` has the whole scan's). Raises VantageFailure
        (nothing written yet) when a resolver fails the check before the first domain,
        ConfigError when one answers nothing at all.
        """
        inputs = self.prepare()
        try:
            return await self._run(inputs)
        finally:
            inputs.remove_copies()

    async def _run(self, inputs: DigestedInputs) -> ScanCounts:
        cfg = self.config
        resolver = MailResolver(cfg.resolvers, cfg.timeouts, cfg.limits)
        try:
            first = await self._check_resolvers_first(resolver)
            writer = DatasetWriter(cfg.output, batch_rows=cfg.limits.batch_rows,
                                   flush_seconds=cfg.limits.flush_seconds, resume=cfg.resume)
            check = self.resume_check
            manifest = ScanManifest.start(
                cfg, writer, inputs=[f.to_json() for f in inputs.fingerprints],
                run_facts=check.run_facts(cfg.override_config) if check is not None else None)
        except BaseException:
            await resolver.close()
            raise
        watch = None
        if cfg.resolver_check.judged:
            watch = ResolverWatch(partial(resolver.check_resolvers, cfg.resolver_check),
                                  cfg.resolver_check.every_s,
                                  partial(self._finish_domain, writer), first)
        self._resolver_watch = watch
        manifest.note("resolver_check", self._resolver_facts(first))
        manifest.write()
        policies = None
        if cfg.policies:
            from scanner.scan.policy_checks import PolicyChecker

            policies = PolicyChecker(cfg)
        self._policies = policies
        tls = make_probe_context()
        # certificates are judged at the scan's start time, the original one on resume
        verifier = ChainVerifier(cfg.trust.extra_anchors, cfg.trust.use_mozilla,
                                 manifest.started_at)
        analyser = self._analyser = HostAnalyser(cfg, tls, verifier)
        if cfg.resume:
            state = load_resume_state(writer.outdir)
            writer.remember_written(state.certificates)
            self._done_lines = set(state.line_nos)
            written_keys = policies.written_keys(cfg.output) if policies is not None else {}
            for ip, summary in state.hosts.items():
                self._table.finish(ip, dataclasses.replace(summary,
                                                           dane_keys=written_keys.get(ip)))
            analyser.remember_written(state.certificates)
            self.counts.probes_resumed = len(state.hosts)
            self.earlier = committed_counts(state)
        domain_sem = self._domain_gate = SlotGate(cfg.limits.domains_in_flight)
        state_name = "interrupted"
        on_waiting = getattr(self.progress, "on_waiting", None)
        ticker = asyncio.create_task(self._tell_waiting(on_waiting)) \
            if callable(on_waiting) and self._waiting_every > 0 else None
        try:
            if cfg.reference_host is not None:
                await self._check_reference(resolver, tls, manifest)
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                if watch is not None:
                    tg.create_task(watch.run())
                for item in self._inputs():
                    await domain_sem.take()
                    self._feeding += 1
                    tg.create_task(self._domain(item, resolver, analyser, writer, domain_sem))
                self._inputs_done = True
                self._fed()
                if watch is not None:
                    await domain_sem.take(domain_sem.size)  # every domain is done
                    domain_sem.give(domain_sem.size)
                    watch.stop()
            if watch is not None:
                await watch.settle()  # the rows still held wait for one more check
            state_name = "finished"
        finally:
            if ticker is not None:
                ticker.cancel()
            try:
                if watch is not None and state_name != "finished":
                    # stopped early: the rows held for the resolver are kept if it checks out
                    with contextlib.suppress(VantageFailure, OutputError):
                        await watch.settle()
            finally:
                try:
                    writer.close()
                except BaseException:
                    state_name = "interrupted"  # the last batch is not committed: not finished
                    raise
                finally:
                    await resolver.close()
                    if policies is not None:
                        await policies.close()
                    verdict = self.vantage.verdict()
                    # stopped as the vantage point's fault: the doubtful results were not written
                    if verdict is not None and self.vantage.failure is None:
                        manifest.set_vantage(verdict.status.value, verdict.note)
                    manifest.note("resolver_check", self._resolver_facts(first))
                    stats = self.input_stats.as_dict()
                    manifest.finish(state_name, self.whole.to_manifest(stats), stats,
                                    run_counts=self.counts.to_manifest(stats))
        return self.counts

    def waiting(self) -> Waiting:
        """What the scan waits on now (cheap: a walk over the conversations under way)."""
        steps = tuple(self._analyser.under_way()) if self._analyser is not None else ()
        hosts = len(self._names_in_flight)
        held = self.vantage.held
        return Waiting(hosts=hosts, steps=steps, held=held,
                       queued=max(0, hosts - held - sum(w.hosts for w in steps)),
                       domains=self._domain_gate.taken if self._domain_gate is not None else 0,
                       inputs_done=self._inputs_done,
                       deadline_s=self.config.timeouts.per_address)

    async def _tell_waiting(self, on_waiting: Callable[[Waiting], None]) -> None:
        while True:
            await asyncio.sleep(self._waiting_every)
            on_waiting(self.waiting())

    def _fed(self) -> None:
        """One source of probes is done starting them."""
        self._feeding -= 1
        if not self._feeding:
            self.vantage.no_more_probes()

    async def _check_reference(self, resolver: MailResolver, tls: ProbeContext,
                               manifest: ScanManifest) -> None:
        """`--reference-host`: one conversation with a server the user knows answers, before
        any surveyed server is contacted. A reply proves port 25 works from here; silence
        stops the scan (VantageFailure)."""
        cfg = self.config
        spec = cfg.reference_host
        assert spec is not None
        host, port = split_host_port(spec, cfg.port)
        try:
            addresses: tuple[str, ...] = (str(ipaddress.ip_address(host)),)
        except ValueError:
            found = await resolver.resolve_host(host)
            addresses = found.addresses
            if not addresses:
                raise ConfigError(f"--reference-host {spec}: {host} has no address "
                                  f"({found.status}: {found.error_detail or 'no A/AAAA'})"
                                  ) from None
        prober = SmtpProber(cfg, tls)
        for ip in addresses:  # the first that answers
            probe = await prober.probe_address(ProbeTarget(ip=ip, port=port, mx_hostname=host))
            answered = server_spoke(probe)
            if answered:
                break
        outcome = host_outcome(probe).value
        manifest.set_reference({
            "host": spec, "address": probe.ip, "port": port, "answered": answered,
            "outcome": outcome, "greeting_code": probe.greeting_code,
            "total_ms": probe.total_ms, "error_detail": probe.error_detail,
            "started_at": probe.started_at.isoformat()})
        where = (host if host == probe.ip else f"{host} ({probe.ip})") + f" port {port}"
        if not answered:
            raise self.vantage.reference_failed(
                f"the reference host {where} sent no SMTP reply ({outcome}"
                + (f": {probe.error_detail}" if probe.error_detail else "") + "): outbound "
                f"port {port} looks blocked at this vantage point, so no surveyed server was "
                "contacted; fix egress or name a host that answers, then rerun with --resume")
        self.vantage.reference_answered(
            f"The reference host {where} sent an SMTP reply at the start of the run, so port "
            f"{port} traffic from this vantage point reaches mail servers.")

    async def _check_resolvers_first(self, resolver: MailResolver) -> CheckReport:
        """The resolver check before the first domain: stop unless every resolver passes."""
        report = await resolver.check_resolvers(self.config.resolver_check)
        failure = report.failure()
        if failure is not None and not report.silent:
            raise VantageFailure(
                f"{failure}, before any domain was looked up: a resolver broken at our end "
                "would have every domain recorded as a DNS failure. Fix it or choose another "
                "--resolver (--resolver-check none if it refuses root questions on purpose)")
        if failure is not None:
            raise ConfigError(f"DNS resolver not answering: {failure}")
        for warning in report.warnings():
            self.notify(warning)
        return report

    def _resolver_facts(self, first: CheckReport) -> dict[str, object]:
        """The manifest's `resolver_check`: what was asked, and what came back."""
        check = self.config.resolver_check
        facts: dict[str, object] = {
            "questions": [f"{name} {qtype}" for name, qtype in questions_of(check)],
            "root": check.root, "canaries": list(check.canaries),
            "every_s": check.every_s if check.judged else None}
        if self._resolver_watch is not None:
            facts.update(self._resolver_watch.facts())
        else:  # only whether the resolver answers: asked once, at the start
            facts.update(checks=1, first=first.to_json(),
                         last_passed=first.at.isoformat(timespec="microseconds"))
        return facts

    def _inputs(self) -> Iterator[DomainInput]:
        # with --limit, reading stops right after the limit-th valid domain: every record read
        # (and counted in input_stats) gets its row
        valid = 0
        assert self.inputs is not None
        limit = self.config.limit
        for item in read_domains(self.inputs.read_paths, stats=self.input_stats):
            if item.line_no in self._done_lines:
                self.counts.skipped_resumed += 1
            else:
                yield item
            if limit is not None and item.status is InputStatus.OK:
                valid += 1
                if valid >= limit:
                    return

    async def _domain(self, item: DomainInput, resolver: MailResolver, analyser: HostAnalyser,
                      writer: DatasetWriter, domain_sem: SlotGate) -> None:
        probes_started = False
        try:
            if item.status is InputStatus.DUPLICATE:
                self._finish_domain(writer, rollup_duplicate(item), ())
                return
            if item.status is not InputStatus.OK or item.domain is None:
                self._finish_domain(writer, rollup_invalid(item), ())
                return
            if self.config.exclusions.excludes_domain(item.domain):
                self._finish_domain(writer, rollup_excluded(item), ())
                return
            started = self.vantage.begin_lookup()
            policies = self._policies  # None with --no-policies: MX, SMTP and TLS only
            # counted in flight from here: while a DNS outage holds domains at their MX lookup,
            # their policy lookups are still to come, so held policy timeouts stay held
            policy_started = self.vantage.begin_policies() if policies is not None else 0.0
            mail = await resolver.resolve_mail_hosts(item.domain)
            await self.vantage.admit_dns(mail, started)  # held while a DNS outage is suspected
            # The new addresses' probes start here and run while the policy lookups (TLSA, then
            # the TXT records and the MTA-STS fetch) are awaited in this task. A task of their
            # own, to ask the TXT records beside the MX lookup, saved a domain one DNS round trip
            # and cost 6 % of the CPU of a 40,000-domain survey sample (A/B of 5d22a74 in
            # benchmarks/RESULTS.md).
            waits, ready = self._start_probes(mail, analyser, writer)
            probes_started = True
            self._fed()
            if policies is None:
                summaries = await self._summaries(waits, ready)
                record, edges = rollup_domain(item, mail, self.config.port, summaries,
                                              POLICIES_NOT_QUERIED)
                failed = has_dns_failure(mail, None, {})
            else:
                tlsa = await policies.tlsa_for(mail)
                domain_facts = await policies.domain_facts(item.domain)
                summaries = await self._summaries(waits, ready)
                # the policy lookups share the resolver: held too while an outage is suspected
                await self.vantage.admit_policies(item.domain, domain_facts, tlsa,
                                                  policy_started)
                record, edges = rollup_domain(item, mail, self.config.port, summaries,
                                              AppliedPolicies(domain_facts, tlsa))
                failed = has_dns_failure(mail, domain_facts, tlsa)
            watch = self._resolver_watch
            if failed and watch is not None:
                # what a resolver gone bad says of every domain: written once it checks out
                await watch.hold(record, edges)
            else:
                self._finish_domain(writer, record, edges)
        finally:
            if not probes_started:
                self._fed()
            domain_sem.give()

    def _finish_domain(self, writer: DatasetWriter, record: DomainRecord,
                       edges: tuple[DomainMxRecord, ...]) -> None:
        writer.append_domain(record, edges)  # edges and row land in one checkpoint
        writer.maybe_flush()
        self.counts.domains += 1
        key = record.starttls_class.value
        self.counts.classes[key] = self.counts.classes.get(key, 0) + 1
        self.progress.on_domain_done(record)

    def _start_probes(self, mail: MailHosts, analyser: HostAnalyser, writer: DatasetWriter
                      ) -> tuple[dict[str, asyncio.Future[HostSummary]], dict[str, HostSummary]]:
        """The domain's addresses: summaries known, and futures of those being probed.

        Starts a probe of every address never seen before. Not a coroutine: the caller awaits
        its other lookups meanwhile without a task of its own for this (`asyncio.gather`
        made two tasks a domain: `_ensure_future` alone was 3 % of py-spy's samples of a
        40,000-domain survey sample).
        """
        waits: dict[str, asyncio.Future[HostSummary]] = {}
        ready: dict[str, HostSummary] = {}
        for host in mail.hosts:
            for ip in host.addresses:
                if ip in ready or ip in waits:
                    continue
                entry = self._table.get(ip)
                if isinstance(entry, HostSummary):
                    ready[ip] = entry
                    continue
                if entry is None:
                    entry = self._table.start(ip)
                    self._names_in_flight[ip] = []
                    target = ProbeTarget(ip=ip, port=self.config.port, mx_hostname=host.name)
                    assert self._tg is not None
                    self._feeding += 1  # until the probe begins
                    self._tg.create_task(self._probe(target, entry, analyser, writer))
                else:
                    names = self._names_in_flight.get(ip)
                    if names is not None and host.name not in names and len(names) < 100:
                        names.append(host.name)
                waits[ip] = entry
        return waits, ready

    @staticmethod
    async def _summaries(waits: dict[str, asyncio.Future[HostSummary]],
                         ready: dict[str, HostSummary]) -> dict[str, HostSummary]:
        """`ready` completed with the awaited summaries (shielded: a domain cancelled must
        not cancel a probe that other domains await)."""
        for ip, fut in waits.items():
            ready[ip] = await asyncio.shield(fut)
        return ready

    async def _probe(self, target: ProbeTarget, fut: asyncio.Future[HostSummary],
                     analyser: HostAnalyser, writer: DatasetWriter) -> None:
        provider = self._provider_of(target.mx_hostname)
        sem = self._provider_sems.get(provider)
        if sem is None:
            sem = self._provider_sems[provider] = asyncio.Semaphore(
                self.config.limits.per_provider)
        # a provider's semaphore lives while probes use it: the dict stays as small as the
        # providers in flight, not as large as every provider seen in the scan
        self._provider_users[provider] = self._provider_users.get(provider, 0) + 1
        try:
            # the provider's slot first: a probe queued behind its provider holds none of the
            # scan's slots, which other providers' addresses can use meanwhile
            async with sem, self._probe_slots:
                started = self.vantage.begin_probe()
                self._fed()
                record, certs = await analyser.analyse(
                    target, self._names_in_flight.get(target.ip, ()))
                if self._deep is not None and self._deep.wanted(record.probe):
                    # in the same slot: the address never sees two conversations at once
                    record = with_deep(record, await self._deep.examine(target, record.probe))
            # held while the port-25 path is suspected dead: a false timeout is never written
            await self.vantage.admit(record, started, provider)
            for cert in certs:
                writer.append_certificate(cert)
            writer.append_host(record)
            summary = HostSummary.from_record(
                record, self._policies.keys_of(record) if self._policies is not None else None)
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc if isinstance(exc, Exception)
                                  else asyncio.CancelledError())
                fut.exception()  # retrieved here; waiters see it through shield
            raise
        finally:
            self._names_in_flight.pop(target.ip, None)
            users = self._provider_users.pop(provider) - 1
            if users:
                self._provider_users[provider] = users
            else:
                del self._provider_sems[provider]
        summary = self._table.finish(target.ip, summary)
        if not fut.done():
            fut.set_result(summary)
        self.counts.probes += 1
        self.counts.certificates += len(certs)
        key = record.outcome.value
        self.counts.outcomes[key] = self.counts.outcomes.get(key, 0) + 1
        self.progress.on_probe_done(record)


async def run_scan(config: ScanConfig, progress: Progress | None = None) -> ScanCounts:
    """Run a whole scan with the given configuration."""
    return await Scan(config, progress).run()
