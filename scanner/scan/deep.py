"""`--deep`: what a host accepts, not only what it negotiated with our default offer.

Per TLS host: which protocol versions it accepts (TLS 1.0 to 1.3, one conversation each with the
client pinned to that version), and whether it accepts DHE when only DHE is offered, with which
prime size, and whether that prime is a widely shared one (the logjam question). The extra
conversations run one after another on the address, after the main probe and inside the same
per-address slot, `spacing_s` apart, so the per-address politeness limits still hold.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from scanner.config import ScanConfig
from scanner.model.records import HostRecord, ProbeTarget, SmtpProbe
from scanner.model.status import HandshakeStatus, StartTlsStatus
from scanner.smtp.conversation import SmtpProber
from scanner.tls.context import PROBE_CIPHERS, ProbeContext
from scanner.tls.dh_primes import prime_fingerprint, shared_group_name

VERSIONS: dict[str, ssl.TLSVersion] = {
    "TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
    "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
DHE_ONLY_CIPHERS = "kDHE:@SECLEVEL=0"
#: After a 220 to STARTTLS, a handshake that fails, draws an alert or is cut off is the server
#: refusing what we offered: many MTAs close or reset instead of sending protocol_version.
_REFUSED = (HandshakeStatus.FAILED, HandshakeStatus.ALERT, HandshakeStatus.RESET,
            HandshakeStatus.CLOSED)
_SERVER_KEY_EXCHANGE = 12


@dataclass(frozen=True, slots=True)
class DeepFacts:
    """What the extra conversations found; a version in neither tuple could not be tested."""

    versions_accepted: tuple[str, ...]
    versions_refused: tuple[str, ...]
    dhe_accepted: bool | None  # None when the DHE-only conversation did not reach a verdict
    dhe_bits: int | None = None
    dhe_group: str | None = None  # a shared group's name ("oakley2_1024"...) or "custom"
    dhe_prime_id: str | None = None  # fingerprint of the prime, to group servers sharing one


def _client_context(version: ssl.TLSVersion | None, ciphers: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 on purpose
        if version is None:  # DHE only: TLS 1.3 has no DHE cipher suites
            ctx.minimum_version, ctx.maximum_version = ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_2
        else:
            ctx.minimum_version = ctx.maximum_version = version
    ctx.set_ciphers(ciphers)
    ctx.options |= getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)
    ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return ctx


def dh_prime_of(message: bytes) -> int | None:
    """The prime of a DHE ServerKeyExchange handshake message; None when it does not read so."""
    if len(message) < 6 or message[0] != _SERVER_KEY_EXCHANGE:
        return None
    size = int.from_bytes(message[4:6], "big")
    prime = message[6:6 + size]
    return int.from_bytes(prime, "big") if size and len(prime) == size else None


def _prime_catcher(probe_context: ProbeContext) -> Callable[[], int | None]:
    """Wrap the context's message callback to keep the last DHE prime the server sent."""
    ctx = probe_context.ssl_context
    inner = ctx._msg_callback  # type: ignore[attr-defined]
    seen: list[int] = []

    def on_message(conn: Any, direction: str, version: object, content_type: int,
                   msg_type: object, data: bytes) -> None:
        inner(conn, direction, version, content_type, msg_type, data)
        try:
            if direction == "read" and content_type == 22 and data[:1] == b"\x0c":
                prime = dh_prime_of(bytes(data))
                if prime is not None:
                    seen.append(prime)
        except Exception:  # noqa: BLE001 - must never surface inside OpenSSL
            pass

    ctx._msg_callback = on_message  # type: ignore[attr-defined]
    return lambda: seen[-1] if seen else None


class DeepProber:
    """Runs the extra conversations for one host at a time; one instance per scan."""

    def __init__(self, config: ScanConfig, spacing_s: float | None = None) -> None:
        self._config = config
        self._spacing = config.deep_spacing_s if spacing_s is None else spacing_s

    def wanted(self, probe: SmtpProbe) -> bool:
        """Deep checks where the default offer completed a handshake: a refusal then means
        the server refused what the deep conversation offered, not that TLS is broken."""
        return (probe.starttls_status == StartTlsStatus.OK
                and probe.handshake_status == HandshakeStatus.OK)

    async def _converse(self, target: ProbeTarget, ctx: ProbeContext) -> SmtpProbe:
        await asyncio.sleep(self._spacing)
        return await SmtpProber(self._config, ctx).probe_address(target)

    async def examine(self, target: ProbeTarget, main: SmtpProbe) -> DeepFacts:
        """Version and DHE conversations with a host whose STARTTLS worked."""
        accepted: list[str] = []
        refused: list[str] = []
        if main.tls is not None:
            accepted.append(main.tls.version)
        for name, version in VERSIONS.items():
            if name in accepted:
                continue
            probe = await self._converse(target, ProbeContext(_client_context(version,
                                                                              PROBE_CIPHERS)))
            if probe.handshake_status == HandshakeStatus.OK:
                accepted.append(name)
            elif probe.handshake_status in _REFUSED and probe.starttls_status == StartTlsStatus.OK:
                refused.append(name)
        ctx = ProbeContext(_client_context(None, DHE_ONLY_CIPHERS))
        last_prime = _prime_catcher(ctx)
        probe = await self._converse(target, ctx)
        order = list(VERSIONS)
        facts = DeepFacts(tuple(sorted(accepted, key=order.index)),
                          tuple(sorted(refused, key=order.index)), None)
        if probe.handshake_status in _REFUSED and probe.starttls_status == StartTlsStatus.OK:
            return dataclasses.replace(facts, dhe_accepted=False)
        prime = last_prime()
        if probe.handshake_status != HandshakeStatus.OK or prime is None:
            return facts
        return dataclasses.replace(
            facts, dhe_accepted=True, dhe_bits=prime.bit_length(),
            dhe_group=shared_group_name(prime) or "custom", dhe_prime_id=prime_fingerprint(prime))


def with_deep(record: HostRecord, facts: DeepFacts) -> HostRecord:
    """The host record with the deep columns filled in."""
    return dataclasses.replace(
        record, deep_checked=True, tls_versions_accepted=facts.versions_accepted,
        tls_versions_refused=facts.versions_refused, dhe_accepted=facts.dhe_accepted,
        dhe_bits=facts.dhe_bits, dhe_group=facts.dhe_group, dhe_prime_id=facts.dhe_prime_id)
