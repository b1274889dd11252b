"""The policy stage of a scan: per-domain TXT/MTA-STS lookups, per-MX-host TLSA lookups, and
per-address chain keys, joined onto each domain's row and edges by `policy_rollup`.

One instance per scan, created inside the event loop. After a domain's MX lookup, while its
new addresses are probed, come its TLSA lookups (once per MX host name, cached), then its TXT
lookups and, for a valid `_mta-sts` record, the MTA-STS fetch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from pathlib import Path

from scanner.config import ScanConfig
from scanner.dns.cache import LookupCache
from scanner.dns.mail_resolver import FAILURE_KEEP_S
from scanner.dns.policy_resolver import PolicyResolver
from scanner.model.policy_status import RecordStatus, StsFetchStatus, TlsaStatus
from scanner.model.records import HostRecord, MailHosts
from scanner.model.status import HandshakeStatus
from scanner.policy.dane import ChainKeys, TlsaLookup, chain_keys, lookup_tlsa_many
from scanner.policy.mail_policy import lookup_mail_policy
from scanner.policy.mta_sts import StsFetcher, StsResult
from scanner.scan.policy_rollup import DomainPolicyFacts
from scanner.scan.probe import may_contact
from scanner.tls.lru import LruMemo

log = logging.getLogger(__name__)

TLSA_CACHE_SIZE = 20_000  # MX host names (LRU, ~0.3 KB each): see dns.HOST_CACHE_SIZE
CHAIN_KEYS_CACHE_SIZE = 4096  # chains whose DANE keys are kept: see tls.verify.VERDICT_CACHE_SIZE
STS_FETCH_TIMEOUT_S = 10.0


class PolicyChecker:
    """Looks up and remembers what the policy columns need."""

    def __init__(self, config: ScanConfig) -> None:
        self._config = config
        self.resolver = PolicyResolver(config.resolvers, config.timeouts,
                                       config.limits.dns_in_flight)
        self._fetcher = StsFetcher(
            self.resolver, [str(p) for p in config.trust.extra_anchors],
            use_mozilla=config.trust.use_mozilla, port=config.mta_sts_port,
            timeout=min(STS_FETCH_TIMEOUT_S, config.timeouts.per_address),
            allow_address=self._may_contact)
        self._tlsa: LookupCache[TlsaLookup] = LookupCache(self._load_tlsa, TLSA_CACHE_SIZE)
        # deriving keys parses each certificate and checks each issuer signature: once per
        # distinct chain (keyed by its SHA-256 digests), and addresses with one chain share them
        self.chain_keys: LruMemo[tuple[str, ...], ChainKeys | None] = LruMemo(
            CHAIN_KEYS_CACHE_SIZE)

    def _may_contact(self, ip: str) -> bool:
        if self._config.exclusions.excludes_address(ip):
            return False
        return may_contact(ip, self._config.lab_mode)

    async def _load_tlsa(self, names: Sequence[str]) -> list[tuple[TlsaLookup, float | None]]:
        # a failed lookup (timeout, SERVFAIL) is asked again after a while, as MX hosts' are:
        # kept for the whole scan, a moment's outage would mark every later domain of that host
        return [(found, FAILURE_KEEP_S if found.status is TlsaStatus.DNS_ERROR else None)
                for found in await lookup_tlsa_many(names, self.resolver)]

    async def domain_facts(self, domain: str) -> DomainPolicyFacts:
        """TXT records of the domain, and its MTA-STS policy when the TXT record is valid."""
        mail = await lookup_mail_policy(domain, self.resolver)
        if mail.mta_sts_txt_status is not RecordStatus.VALID:
            return DomainPolicyFacts(mail)
        try:
            sts = await self._fetcher.fetch(domain)
        except Exception as exc:  # our own bug: recorded on the domain, the scan goes on
            log.exception("MTA-STS fetch for %s failed", domain)
            sts = StsResult(StsFetchStatus.INTERNAL_ERROR, detail=f"{type(exc).__name__}: {exc}")
        return DomainPolicyFacts(mail, sts)

    async def tlsa_for(self, mail: MailHosts) -> dict[str, TlsaLookup]:
        """TLSA lookups of every MX host with an address (a sender looks up no others)."""
        names = [h.name for h in mail.hosts if h.addresses]
        found = await self._tlsa.get_many(names)
        return dict(zip(names, found, strict=True))

    def keys_of(self, record: HostRecord) -> ChainKeys | None:
        """The compact DANE keys of a probed address's chain (its summary keeps them)."""
        if record.probe.handshake_status != HandshakeStatus.OK:
            return None
        return self.chain_keys.get(record.chain_sha256,
                                   partial(chain_keys, record.probe.chain_der))

    def written_keys(self, outdir: Path) -> dict[str, ChainKeys]:
        """On resume: the keys of addresses already written, from `hosts` and `certificates`."""
        from scanner.sink.dataset import read_dataset

        hosts = read_dataset(outdir, "hosts", ["ip", "handshake_status", "chain_sha256"])
        certs = read_dataset(outdir, "certificates", ["sha256", "der"])
        der = dict(zip(certs.column("sha256").to_pylist(), certs.column("der").to_pylist(),
                       strict=True))
        found: dict[str, ChainKeys] = {}
        for ip, handshake, chain in zip(*(hosts.column(c).to_pylist() for c in hosts.column_names),
                                        strict=True):
            if handshake == HandshakeStatus.OK and all(s in der for s in chain or ()):
                keys = self.chain_keys.get(tuple(chain),
                                           partial(chain_keys, [der[s] for s in chain]))
                if keys is not None:
                    found[ip] = keys
        return found

    async def close(self) -> None:
        """Cancel TLSA lookups still in flight; release the resolver's sockets."""
        await self._tlsa.close()
        self.resolver.close()
