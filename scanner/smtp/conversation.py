"""probe_address: one SMTP conversation with one mail server address.

Connect, read the final `220 ` greeting, EHLO, STARTTLS when offered, TLS handshake, EHLO again,
QUIT. Never MAIL, RCPT or DATA. Each step runs under its own timeout inside the per-address
deadline; every outcome becomes a status (classified in `status.py`), and the record keeps
what was learned before the conversation ended. Replies are bounded by aiosmtplib's protocol
(8 KiB per line, 32 KiB per reply).
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from aiosmtplib.protocol import SMTPProtocol
from aiosmtplib.response import SMTPResponse

from scanner.config import ScanConfig
from scanner.model.records import ProbeTarget, SmtpProbe, TlsFacts
from scanner.model.status import ConnectStatus, HandshakeStatus, ReplyStatus, StartTlsStatus
from scanner.smtp.ehlo_parse import (
    ehlo_extensions,
    split_reply_lines,
    starttls_masked,
    starttls_offered,
)
from scanner.smtp.status import (
    STARTTLS_FROM_REPLY,
    ReplyError,
    checked_reply,
    connect_status_from,
    handshake_status_from,
    reply_error_from,
    unexpected_reply_status,
)
from scanner.tls.context import ProbeContext, unverified_chain_der

log = logging.getLogger(__name__)


@dataclass(slots=True, eq=False)
class _Probe:
    """Mutable scratch state of one conversation, frozen into an SmtpProbe at the end."""

    fields: dict[str, object] = field(default_factory=dict)
    step: str = "connect"
    protocol: SMTPProtocol | None = None  # set as soon as connected, so any ending can close it
    began: float = 0.0  # monotonic start of the conversation: the deadline runs from here
    since: float = 0.0  # monotonic start of the step under way: its timeout runs from here


@dataclass(frozen=True, slots=True)
class StepWait:
    """The conversations under way in one step, for the progress display."""

    step: str  # connect, greeting, ehlo, starttls, handshake, ehlo_tls or quit
    hosts: int
    timeout_s: float  # the step's own timeout
    ends_in_s: float  # the longest any of them can still take (its step timeout or deadline)
    deadline_first: bool  # the per-address deadline ends that last one before its step timeout


_STEP_STATUS: dict[str, type[ConnectStatus | StartTlsStatus | HandshakeStatus | ReplyStatus]] = {
    "connect": ConnectStatus, "starttls": StartTlsStatus, "handshake": HandshakeStatus,
    "greeting": ReplyStatus, "ehlo": ReplyStatus, "ehlo_tls": ReplyStatus,
}


def _mark_step(state: _Probe, value: str) -> None:
    """Set the status of the step under way to `value` (every step vocabulary has it)."""
    vocabulary = _STEP_STATUS.get(state.step)
    if vocabulary is not None:
        state.fields[f"{state.step}_status"] = vocabulary(value)


def _ms(since: float) -> int:
    return int((time.monotonic() - since) * 1000)


class SmtpProber:
    """Talks to addresses with one shared TLS context; one instance per scan."""

    def __init__(self, config: ScanConfig, tls: ProbeContext) -> None:
        self._config = config
        self._tls = tls
        self._ehlo = config.identity.ehlo_name.encode("ascii")
        source = config.source_address
        self._local_addr = (source, 0) if source is not None else None
        #: the conversations under way, for `under_way` (a set add and discard per probe)
        self._live: set[_Probe] = set()
        t = config.timeouts
        self._step_timeouts = {"connect": t.connect, "greeting": t.greeting, "ehlo": t.command,
                               "starttls": t.starttls, "handshake": t.handshake,
                               "ehlo_tls": t.command, "quit": min(2.0, t.command)}

    def under_way(self) -> list[StepWait]:
        """The conversations under way grouped by step, most hosts first."""
        now = time.monotonic()
        deadline = self._config.timeouts.per_address
        groups: dict[str, tuple[int, float, bool]] = {}
        for state in self._live:
            step_end = state.since + self._step_timeouts[state.step]
            deadline_end = state.began + deadline
            ends = min(step_end, deadline_end)
            n, latest, by_deadline = groups.get(state.step, (0, 0.0, False))
            if ends >= latest:
                latest, by_deadline = ends, deadline_end < step_end
            groups[state.step] = (n + 1, latest, by_deadline)
        waits = [StepWait(step, n, self._step_timeouts[step], max(0.0, latest - now), by_dl)
                 for step, (n, latest, by_dl) in groups.items()]
        waits.sort(key=lambda w: -w.hosts)
        return waits

    async def probe_address(self, target: ProbeTarget) -> SmtpProbe:
        """One conversation with target; never raises except on cancellation."""
        started_at = datetime.now(UTC)
        t0 = time.monotonic()
        state = _Probe(began=t0, since=t0)
        f = state.fields
        self._live.add(state)
        try:
            async with asyncio.timeout(self._config.timeouts.per_address):
                await self._converse(target, state)
        except TimeoutError:
            self._mark_deadline(state)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # our own bug: recorded apart from what servers did
            log.exception("internal error probing %s", target.ip)
            self._mark_internal(state, exc)
        finally:
            # whatever ended the conversation (deadline, bug, cancellation), no socket survives.
            # Duck-typed: uvloop's transports are not asyncio.Transport subclasses.
            transport = state.protocol.transport if state.protocol is not None else None
            if transport is not None:
                cast(asyncio.Transport, transport).abort()
            self._live.discard(state)
        f.setdefault("connect_status", ConnectStatus.OK)
        return SmtpProbe(ip=target.ip, port=target.port, started_at=started_at,
                         total_ms=_ms(t0), **f)  # type: ignore[arg-type]

    def _mark_deadline(self, state: _Probe) -> None:
        """The per-address deadline fired: the step under way timed out."""
        f = state.fields
        detail = f"per-address deadline of {self._config.timeouts.per_address:g}s"
        f["error_detail"] = f.get("error_detail") or detail
        _mark_step(state, "timeout")  # in "quit" everything was already learned

    def _mark_internal(self, state: _Probe, exc: BaseException) -> None:
        """Our own bug ended the conversation: recorded apart from anything a server did."""
        state.fields["error_detail"] = (
            f"internal error at {state.step}: {type(exc).__name__}: {exc}")
        _mark_step(state, "internal_error")

    async def _read(self, protocol: SMTPProtocol, command: bytes | None,
                    timeout: float) -> SMTPResponse:
        """Send command (None: just read, for the greeting) and return the reply."""
        try:
            if command is None:
                reply = await protocol.read_response(timeout=timeout)
            else:
                reply = await protocol.execute_command(command, timeout=timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            raise reply_error_from(exc) from exc
        return checked_reply(reply)

    async def _converse(self, target: ProbeTarget, state: _Probe) -> None:
        cfg = self._config.timeouts
        f = state.fields
        loop = asyncio.get_running_loop()

        # connect
        t = state.since = time.monotonic()
        try:
            async with asyncio.timeout(cfg.connect):
                transport, protocol = await loop.create_connection(
                    lambda: SMTPProtocol(loop=loop), host=target.ip, port=target.port,
                    local_addr=self._local_addr)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            f["connect_status"] = connect_status_from(exc)
            f["connect_ms"] = _ms(t)
            f["error_detail"] = f"{type(exc).__name__}: {exc}"
            return
        state.protocol = protocol
        f["connect_status"] = ConnectStatus.OK
        f["connect_ms"] = _ms(t)

        # greeting: aiosmtplib waits for the final "220 " line of a multi-line greeting
        state.step = "greeting"
        t = state.since = time.monotonic()
        try:
            greeting = await self._read(protocol, None, cfg.greeting)
        except ReplyError as err:
            f["greeting_status"] = err.status
            f["greeting_ms"] = _ms(t)
            f["greeting_code"] = err.code
            f["banner"] = err.text
            f["error_detail"] = f"greeting: {err}"
            return
        f["greeting_ms"] = _ms(t)
        f["greeting_code"] = greeting.code
        f["banner"] = greeting.message
        if greeting.code != 220:
            f["greeting_status"] = unexpected_reply_status(greeting.code)
            f["error_detail"] = f"greeting: {greeting.code}"
            await self._quit(protocol, state)
            return
        f["greeting_status"] = ReplyStatus.OK

        # EHLO; HELO is no substitute: it cannot tell whether STARTTLS is offered
        state.step = "ehlo"
        t = state.since = time.monotonic()
        try:
            ehlo = await self._read(protocol, b"EHLO " + self._ehlo, cfg.command)
        except ReplyError as err:
            f["ehlo_status"] = err.status
            f["ehlo_ms"] = _ms(t)
            f["ehlo_code"] = err.code
            f["error_detail"] = f"EHLO: {err}"
            return
        f["ehlo_ms"] = _ms(t)
        f["ehlo_code"] = ehlo.code
        lines = split_reply_lines(ehlo.message)
        f["ehlo_lines"] = lines[1:]
        if ehlo.code != 250:
            f["ehlo_status"] = unexpected_reply_status(ehlo.code)
            f["error_detail"] = f"EHLO: {ehlo.code} {ehlo.message[:200]}"
            await self._quit(protocol, state)
            return
        f["ehlo_status"] = ReplyStatus.OK
        extensions = ehlo_extensions(lines[1:])
        f["ehlo_extensions"] = extensions
        offered = starttls_offered(extensions)
        f["starttls_offered"] = offered
        if not offered:
            f["starttls_status"] = StartTlsStatus.MASKED if starttls_masked(extensions) \
                else StartTlsStatus.NOT_OFFERED
            await self._quit(protocol, state)
            return

        # STARTTLS command
        state.step = "starttls"
        t = state.since = time.monotonic()
        try:
            reply = await self._read(protocol, b"STARTTLS", cfg.starttls)
        except ReplyError as err:
            f["starttls_status"] = STARTTLS_FROM_REPLY[err.status]
            f["starttls_ms"] = _ms(t)
            f["starttls_code"] = err.code
            f["error_detail"] = f"STARTTLS: {err}"
            return
        f["starttls_ms"] = _ms(t)
        f["starttls_code"] = reply.code
        f["starttls_reply"] = reply.message
        if reply.code != 220:
            if reply.code == 454:
                f["starttls_status"] = StartTlsStatus.TLS_UNAVAILABLE_454
            else:
                f["starttls_status"] = STARTTLS_FROM_REPLY[unexpected_reply_status(reply.code)]
            await self._quit(protocol, state)
            return
        f["starttls_status"] = StartTlsStatus.OK

        # TLS handshake
        state.step = "handshake"
        tls_transport = await self._handshake(protocol, transport, state)
        if tls_transport is None:
            return

        # EHLO again, over TLS (RFC 3207 §4.2: the client discards what it knew)
        state.step = "ehlo_tls"
        state.since = time.monotonic()
        try:
            ehlo2 = await self._read(protocol, b"EHLO " + self._ehlo, cfg.command)
        except ReplyError as err:
            f["ehlo_tls_status"] = err.status
            f["error_detail"] = f"EHLO after TLS: {err}"
            return
        f["ehlo_tls_status"] = ReplyStatus.OK if ehlo2.code == 250 \
            else unexpected_reply_status(ehlo2.code)
        if ehlo2.code == 250:
            f["ehlo_tls_extensions"] = ehlo_extensions(split_reply_lines(ehlo2.message)[1:])
        await self._quit(protocol, state)

    async def _handshake(self, protocol: SMTPProtocol, transport: asyncio.BaseTransport,
                         state: _Probe) -> asyncio.BaseTransport | None:
        """Upgrade to TLS; record the facts and the chain as sent, or why it failed."""
        f = state.fields
        loop = asyncio.get_running_loop()
        timeout = self._config.timeouts.handshake
        # RFC 3207 §4.2: a compliant server sends nothing between its 220 and the handshake;
        # anything buffered is discarded, as aiosmtplib's own start_tls does.
        del protocol._buffer[:]
        t = state.since = time.monotonic()
        try:
            async with asyncio.timeout(timeout):
                tls_transport = await loop.start_tls(
                    transport, protocol, self._tls.ssl_context, server_side=False,  # type: ignore[arg-type]
                    ssl_handshake_timeout=timeout + 1.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            status, alert = handshake_status_from(exc)
            f["handshake_status"] = status
            f["tls_alert"] = alert
            f["handshake_ms"] = _ms(t)
            f["error_detail"] = f"handshake: {type(exc).__name__}: {exc}"
            return None
        f["handshake_ms"] = _ms(t)
        if tls_transport is None:
            f["handshake_status"] = HandshakeStatus.CLOSED
            return None
        protocol.transport = tls_transport
        protocol._over_ssl = True
        ssl_object = tls_transport.get_extra_info("ssl_object")
        facts: TlsFacts | None = None
        if ssl_object is not None:
            facts = self._tls.facts_for(ssl_object)
            f["chain_der"] = unverified_chain_der(ssl_object)
            self._tls.forget(ssl_object)
        f["tls"] = facts
        f["handshake_status"] = HandshakeStatus.OK
        return tls_transport

    async def _quit(self, protocol: SMTPProtocol, state: _Probe) -> None:
        """Say goodbye politely; its outcome changes nothing already learned."""
        state.step = "quit"
        state.since = time.monotonic()
        try:
            await protocol.execute_command(b"QUIT", timeout=min(2.0,
                                                               self._config.timeouts.command))
        except asyncio.CancelledError:
            raise
        except Exception:  # the conversation's facts are already recorded
            pass
