"""The probe phase: one distinct address -> HostRecord (+ certificates not seen before).

Separable from DNS and rollup so that an internet-scale survey can run it sharded by address.
Certificates are parsed once per distinct SHA-256 and chains verified once per distinct chain.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable
from datetime import UTC, datetime

from scanner.config import ScanConfig
from scanner.model.records import CertificateRecord, HostRecord, ProbeTarget, SmtpProbe
from scanner.model.status import ConnectStatus, HostOutcome, ReplyStatus
from scanner.scan.outcome import host_outcome
from scanner.sink.packed_keys import PackedKeys, digest_key
from scanner.smtp.conversation import SmtpProber, StepWait
from scanner.smtp.mta_software import mta_software, mta_version
from scanner.tls.certs import leaf_names, parse_certificate
from scanner.tls.context import ProbeContext
from scanner.tls.lru import LruMemo
from scanner.tls.verify import ChainVerifier

#: leaves whose names are kept: the busy providers' certificates stay, the rest are re-parsed
LEAF_NAMES_CACHE_SIZE = 4096


#: The lab's own range: every simulated host is bound in it, and lab mode probes it too.
LAB_NETWORK = ipaddress.ip_network("127.0.0.0/8")


def may_contact(ip: str, lab_mode: bool) -> bool:
    """Whether an address may be contacted at all: public ones (not loopback, private,
    link-local, multicast, reserved or unspecified), and in lab mode the lab's 127.0.0.0/8
    too. Other private, loopback and reserved addresses never are, lab or not."""
    address = ipaddress.ip_address(ip)
    return address.is_global or (lab_mode and address in LAB_NETWORK)


class HostAnalyser:
    """Probes addresses and judges what they presented; one instance per scan."""

    def __init__(self, config: ScanConfig, tls: ProbeContext, verifier: ChainVerifier) -> None:
        self._config = config
        self._prober = SmtpProber(config, tls)
        self._verifier = verifier
        # the names a leaf carries, by its sha256, for the next address that presents it
        self._names: LruMemo[str, tuple[str, ...]] = LruMemo(LEAF_NAMES_CACHE_SIZE)
        self.seen_certificates = PackedKeys()  # digest_key of every certificate written

    def remember_written(self, certificates: Iterable[str]) -> None:
        """On resume: the sha256 of certificates already written are not parsed again."""
        self.seen_certificates.update(digest_key(sha) for sha in certificates)

    def skip_reason(self, ip: str) -> ConnectStatus | None:
        """Why an address must not be contacted, or None.

        A private address on the exclusion list is `private_address`: never contacted either
        way, and that it is private is a fact about the domain, the list only our choice.
        """
        if not may_contact(ip, self._config.lab_mode):
            return ConnectStatus.PRIVATE_ADDRESS
        if self._config.exclusions.excludes_address(ip):
            return ConnectStatus.EXCLUDED
        return None

    def under_way(self) -> list[StepWait]:
        """The conversations under way, grouped by the step they are in."""
        return self._prober.under_way()

    async def analyse(self, target: ProbeTarget, mx_hostnames: Iterable[str] = ()
                      ) -> tuple[HostRecord, list[CertificateRecord]]:
        """Probe the target (unless excluded) and build its host row and new certificates."""
        skip = self.skip_reason(target.ip)
        if skip is not None:
            probe = SmtpProbe(ip=target.ip, port=target.port, started_at=datetime.now(UTC),
                              connect_status=skip)
        else:
            probe = await self._prober.probe_address(target)
        return self.judge(probe, tuple(dict.fromkeys((target.mx_hostname, *mx_hostnames))))

    def judge(self, probe: SmtpProbe, mx_hostnames: tuple[str, ...]
              ) -> tuple[HostRecord, list[CertificateRecord]]:
        """Outcome, certificates and chain verdict for a finished probe."""
        outcome = host_outcome(probe)
        new_certs: list[CertificateRecord] = []
        chain_sha = tuple(hashlib.sha256(der).hexdigest() for der in probe.chain_der)
        for sha, der in zip(chain_sha, probe.chain_der, strict=True):
            if self.seen_certificates.add(digest_key(sha)):
                new_certs.append(parse_certificate(der, sha))
        names: tuple[str, ...] = ()
        verdict = None
        if probe.chain_der:
            leaf = new_certs[0] if new_certs and new_certs[0].sha256 == chain_sha[0] else None
            names = self._names.get(chain_sha[0], lambda: _names_of(
                leaf or parse_certificate(probe.chain_der[0], chain_sha[0])))
            verdict = self._verifier.verify(probe.chain_der, chain_sha)
        elif outcome is HostOutcome.TLS_OK:
            verdict = self._verifier.verify(())
        software = version = None
        if probe.greeting_status is ReplyStatus.OK:
            software = mta_software(probe.banner, probe.ehlo_lines)
            version = mta_version(probe.banner)
        record = HostRecord(probe=probe, outcome=outcome, mx_hostnames=mx_hostnames,
                            leaf_sha256=chain_sha[0] if chain_sha else None,
                            chain_sha256=chain_sha, chain=verdict, leaf_names=names,
                            mta_software=software, mta_version=version)
        return record, new_certs


def _names_of(rec: CertificateRecord) -> tuple[str, ...]:
    return leaf_names(rec) if rec.parse_ok else ()
