"""MTA-STS (RFC 8461): fetch and parse the policy, and judge it against the MX set.

The policy comes from https://mta-sts.<domain>/.well-known/mta-sts.txt with the certificate
validated for that name against the scan's trust store; no redirects, bounded size and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import ipaddress
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scanner.model.policy_status import RecordStatus, StsFetchStatus, StsMode
from scanner.model.status import DnsStatus

if TYPE_CHECKING:  # the resolver (and dnspython) only when the policy stage runs
    from scanner.dns.policy_resolver import PolicyResolver

POLICY_PATH = "/.well-known/mta-sts.txt"
MAX_POLICY_BYTES = 64 * 1024  # RFC 8461 §3.3 suggests 64 KB
MAX_AGE_LIMIT = 31_557_600  # RFC 8461 §3.2: at most one year
_MX_PATTERN = re.compile(r"(\*\.)?([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9-]{1,63}\.?$")


@dataclass(frozen=True, slots=True)
class StsPolicy:
    """A parsed STSv1 policy."""

    mode: StsMode
    mx_patterns: tuple[str, ...]
    max_age: int


@dataclass(frozen=True, slots=True)
class StsResult:
    """What fetching the policy gave: status, the policy when valid, the reason otherwise."""

    fetch_status: StsFetchStatus
    policy: StsPolicy | None = None
    detail: str | None = None
    #: nothing came back: the address lookup or the fetch timed out, or the connect found no
    #: route. A refused or reset connection is an answer. Not a column: the vantage watch
    #: counts only silence against the network path.
    unanswered: bool = False


def parse_policy(text: str) -> StsPolicy | None:
    """RFC 8461 §3.2: `key: value` lines; version STSv1, a mode, max_age, mx unless mode none."""
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        key, sep, value = line.partition(":")
        if not sep:
            return None
        fields.setdefault(key.strip().lower(), []).append(value.strip())
    version, mode, max_age = (fields.get(k, []) for k in ("version", "mode", "max_age"))
    if version != ["STSv1"] or len(mode) != 1 or len(max_age) != 1:
        return None
    try:
        sts_mode = StsMode(mode[0])
    except ValueError:
        return None
    if sts_mode is StsMode.INVALID or not max_age[0].isdigit() or len(max_age[0]) > 10:
        return None
    age = int(max_age[0])
    patterns = tuple(p.lower().rstrip(".") for p in fields.get("mx", []))
    if age > MAX_AGE_LIMIT or not all(_MX_PATTERN.match(p) for p in patterns):
        return None
    if sts_mode is not StsMode.NONE and not patterns:
        return None
    return StsPolicy(sts_mode, patterns, age)


def mx_matches(mx_hostname: str, patterns: Sequence[str]) -> bool:
    """RFC 8461 §4.1: exact names, or `*.` matching exactly one leftmost label."""
    name = mx_hostname.lower().rstrip(".")
    for pattern in patterns:
        if pattern.startswith("*."):
            head, _, rest = name.partition(".")
            if head and rest == pattern[2:]:
                return True
        elif name == pattern:
            return True
    return False


def _https_context(anchors: Sequence[str], use_mozilla: bool) -> ssl.SSLContext:
    """The scan's trust store, as the chain verifier has it: Mozilla's roots (certifi) when
    asked for, and the extra anchors; not the system's store besides."""
    if use_mozilla:
        import certifi

        context = ssl.create_default_context(cafile=certifi.where())
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    for anchor in anchors:
        context.load_verify_locations(anchor)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8461 §3.3: TLS 1.2 or later
    return context


#: connect errors that mean no route to the host: silence, like a timeout (anything else, a
#: refusal above all, came from the other end)
_NO_ROUTE = frozenset({errno.ENETUNREACH, errno.EHOSTUNREACH, errno.EADDRNOTAVAIL,
                       errno.ENETDOWN, errno.EHOSTDOWN})

_CLOSE_S = 1.0  # at most this long for a connection's close to be confirmed

#: HTTPS policy fetches in flight at once (each holds a descriptor).
MAX_FETCHES_IN_FLIGHT = 100


class StsFetcher:
    """Fetches MTA-STS policies; one per scan. `port` is 443 except in the lab."""

    def __init__(self, resolver: PolicyResolver, anchors: Sequence[str], *, use_mozilla: bool,
                 port: int = 443, timeout: float = 10.0,
                 allow_address: Callable[[str], bool] | None = None,
                 max_in_flight: int = MAX_FETCHES_IN_FLIGHT) -> None:
        self._resolver = resolver
        # bounded apart from the SMTP conversations: descriptors are reserved for it at start-up
        self._slots = asyncio.Semaphore(max_in_flight)
        # built at the first fetch: loading Mozilla's roots takes tens of ms, and most scans of
        # a few domains never fetch (the anchors were checked at start-up by the chain verifier)
        self._anchors, self._use_mozilla = list(anchors), use_mozilla
        self._context_built: ssl.SSLContext | None = None
        self._port = port
        self._timeout = timeout
        self._allow = allow_address or (lambda ip: ipaddress.ip_address(ip).is_global)

    def _context(self) -> ssl.SSLContext:
        if self._context_built is None:
            self._context_built = _https_context(self._anchors, self._use_mozilla)
        return self._context_built

    async def fetch(self, domain: str) -> StsResult:
        """The policy of a domain whose `_mta-sts` record is valid."""
        host = f"mta-sts.{domain}"
        status, addresses = await self._resolver.addresses(host)
        if status is not DnsStatus.OK:
            return StsResult(StsFetchStatus.DNS_ERROR, detail=f"{host}: {status.value}",
                             unanswered=status is DnsStatus.TIMEOUT)
        allowed = [ip for ip in addresses if self._allow(ip)]
        if not allowed:
            return StsResult(StsFetchStatus.EXCLUDED, detail=f"{host}: {addresses[0]}")
        async with self._slots:
            try:
                async with asyncio.timeout(self._timeout):
                    return await self._get(host, allowed[0])
            except TimeoutError:
                return StsResult(StsFetchStatus.TIMEOUT, unanswered=True)

    async def _get(self, host: str, ip: str) -> StsResult:
        try:
            reader, writer = await asyncio.open_connection(ip, self._port)
        except OSError as exc:
            return StsResult(StsFetchStatus.CONNECT_ERROR, detail=str(exc),
                             unanswered=exc.errno in _NO_ROUTE)
        try:
            try:
                await writer.start_tls(self._context(), server_hostname=host)
            except (ssl.SSLError, ssl.CertificateError, OSError) as exc:
                return StsResult(StsFetchStatus.TLS_ERROR, detail=str(exc))
            writer.write(f"GET {POLICY_PATH} HTTP/1.1\r\nHost: {host}\r\n"
                         "User-Agent: starttls-survey\r\nConnection: close\r\n\r\n".encode())
            await writer.drain()
            raw = b""
            while len(raw) <= MAX_POLICY_BYTES + 8192:  # headers plus a body over the limit
                chunk = await reader.read(65536)
                if not chunk:
                    break
                raw += chunk
            return parse_response(raw)
        except (ssl.SSLError, OSError) as exc:
            return StsResult(StsFetchStatus.CONNECT_ERROR, detail=str(exc))
        finally:
            writer.close()
            # bounded: after a handshake cut short (the fetch's timeout), the stream never
            # learns that its transport closed, and an unbounded wait would hang the domain
            with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
                await asyncio.wait_for(writer.wait_closed(), _CLOSE_S)


def parse_response(raw: bytes) -> StsResult:
    """Judge a whole HTTP/1.x response (Connection: close, no chunked bodies expected)."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return StsResult(StsFetchStatus.HTTP_ERROR, detail="no HTTP header")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        return StsResult(StsFetchStatus.HTTP_ERROR, detail=lines[0][:100])
    if parts[1] != "200":
        return StsResult(StsFetchStatus.HTTP_ERROR, detail=lines[0][:100])
    headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
    if len(body) > MAX_POLICY_BYTES:
        return StsResult(StsFetchStatus.TOO_LARGE)
    if headers.get("content-type", "").split(";")[0].strip().lower() != "text/plain":
        return StsResult(StsFetchStatus.INVALID, detail="not text/plain")
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _unchunk(body)
    policy = parse_policy(body.decode("utf-8", "replace"))
    if policy is None:
        return StsResult(StsFetchStatus.INVALID, detail="not an STSv1 policy")
    return StsResult(StsFetchStatus.OK, policy)


def _unchunk(body: bytes) -> bytes:
    out = bytearray()
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            break
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2:]
    return bytes(out)


def sts_mode(txt_status: RecordStatus, result: StsResult) -> StsMode | None:
    """The mode a sender applies; None when the domain publishes no `_mta-sts` record."""
    if txt_status is RecordStatus.NONE or txt_status is RecordStatus.NOT_QUERIED:
        return None
    if txt_status is RecordStatus.DNS_ERROR:
        return None
    if result.policy is None:
        return StsMode.INVALID
    return result.policy.mode
