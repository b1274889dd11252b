"""ScanConfig: the one configuration object, built by cli.py and passed down.

Defaults sit in the dataclasses, checks in __post_init__, and the whole object goes into the
manifest (`to_json`), so every result set says how it was produced.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: `--loop` values (scanner/event_loop.py); "auto" is uvloop when installed, else asyncio.
EVENT_LOOPS = ("auto", "asyncio", "uvloop")


class ConfigError(ValueError):
    """A configuration problem found at start-up: reported as one line, never a traceback."""


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds per step, and per_address: a deadline for the whole conversation (stops tarpits)."""

    dns_query: float = 5.0
    dns_tries: int = 3
    connect: float = 10.0
    greeting: float = 30.0  # RFC 5321 §4.5.3.2 suggests 5 minutes; surveys use less
    command: float = 30.0
    starttls: float = 30.0
    handshake: float = 15.0
    per_address: float = 90.0

    def __post_init__(self) -> None:
        for name in ("dns_query", "connect", "greeting", "command", "starttls", "handshake",
                     "per_address"):
            if getattr(self, name) <= 0:
                raise ConfigError(f"timeout {name} must be positive")
        if self.dns_tries < 1:
            raise ConfigError("dns_tries must be at least 1")


@dataclass(frozen=True, slots=True)
class Limits:
    """Concurrency and size bounds."""

    max_in_flight: int = 500  # concurrent SMTP conversations
    per_address: int = 1  # concurrent connections to one address
    per_provider: int = 50  # concurrent connections to one provider (MX registrable domain)
    dns_in_flight: int = 200
    domains_in_flight: int = 5000  # domains between DNS and rollup
    batch_rows: int = 5000
    flush_seconds: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_in_flight", "per_address", "per_provider", "dns_in_flight",
                     "domains_in_flight", "batch_rows"):
            if getattr(self, name) < 1:
                raise ConfigError(f"limit {name} must be at least 1")


@dataclass(frozen=True, slots=True)
class Identity:
    """How the scan names itself to the servers it measures."""

    ehlo_name: str = "starttls-survey.invalid"

    def __post_init__(self) -> None:
        if not self.ehlo_name or any(c.isspace() for c in self.ehlo_name):
            raise ConfigError("EHLO name must be a non-empty host name without spaces")


@dataclass(frozen=True, slots=True)
class Exclusions:
    """Domains (and their subdomains) and networks never contacted."""

    domains: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()
    source: str | None = None

    def excludes_domain(self, domain: str) -> bool:
        """True when the domain or one of its parents is listed."""
        labels = domain.split(".")
        return any(".".join(labels[i:]) in self.domains for i in range(len(labels)))

    def excludes_address(self, ip: str) -> bool:
        """True when the address falls in a listed network."""
        addr = ipaddress.ip_address(ip)
        return any(addr.version == net.version and addr in net for net in self.networks)


@dataclass(frozen=True, slots=True)
class TrustStore:
    """Mozilla's roots (certifi) plus extra anchors."""

    extra_anchors: tuple[Path, ...] = ()
    use_mozilla: bool = True


@dataclass(frozen=True, slots=True)
class ResolverCheck:
    """Questions with known answers, asked of every resolver before the first domain and then
    every `every_s` seconds (`resolver_check.py`): a resolver broken at our end stops the scan.

    `root`: `. NS` and `. SOA`, which every recursive resolver answers with records
    (`--resolver-check none` turns them off). `canaries`: names that must resolve, that is
    answer A, AAAA or MX with at least one record of that type.
    """

    root: bool = True
    canaries: tuple[str, ...] = ()
    every_s: float = 120.0

    def __post_init__(self) -> None:
        if not self.every_s > 0:
            raise ConfigError("--resolver-recheck must be positive")

    @property
    def judged(self) -> bool:
        """False when nothing is asked but whether the resolver answers at all."""
        return self.root or bool(self.canaries)


@dataclass(frozen=True, slots=True)
class ScanConfig:
    """Everything a scan needs; nothing below cli.py reads arguments or the environment."""

    output: Path
    inputs: tuple[Path, ...] = ()
    resolvers: tuple[str, ...] = ()  # "host" or "host:port"; empty = system resolvers
    port: int = 25
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    identity: Identity = field(default_factory=Identity)
    exclusions: Exclusions = field(default_factory=Exclusions)
    trust: TrustStore = field(default_factory=TrustStore)
    lab_mode: bool = False  # loopback/private MX addresses are probed (the lab lives there)
    resume: bool = False
    limit: int | None = None  # scan only the first N valid domains
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    vantage: str = ""
    mta_sts_port: int = 443  # HTTPS port of MTA-STS policy hosts (the lab serves another)
    policies: bool = True  # SPF/DMARC/TLS-RPT/MTA-STS and TLSA lookups; --no-policies skips them
    deep: bool = False  # --deep: versions and DHE accepted, extra conversations per TLS host
    deep_spacing_s: float = 1.0  # pause before each extra conversation with one address
    source_address: str | None = None  # local address SMTP connections come from (multi-homed)
    event_loop: str = "auto"  # the CLI records the loop that ran: "uvloop" or "asyncio"
    resolver_check: ResolverCheck = field(default_factory=ResolverCheck)

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"port {self.port} is not in 1..65535")
        if self.limit is not None and self.limit < 1:
            raise ConfigError("--limit must be at least 1")
        if self.started_at.tzinfo is None:
            raise ConfigError("started_at must be timezone-aware")
        if self.event_loop not in EVENT_LOOPS:
            raise ConfigError(f"unknown event loop {self.event_loop!r}: choose one of "
                              f"{', '.join(EVENT_LOOPS)}")
        if self.source_address is not None:
            try:
                ipaddress.ip_address(self.source_address)
            except ValueError:
                raise ConfigError(
                    f"source address {self.source_address!r} is not an IP address") from None

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict for the manifest."""

        def convert(value: Any) -> Any:
            if isinstance(value, Path):
                return str(value)
            if isinstance(value, datetime):
                return value.isoformat()
            if isinstance(value, frozenset | set):
                return sorted(convert(v) for v in value)
            if isinstance(value, tuple | list):
                return [convert(v) for v in value]
            if isinstance(value, dict):
                return {k: convert(v) for k, v in value.items()}
            if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
                return str(value)
            return value

        data = asdict(self)
        data["exclusions"] = {
            "domains": len(self.exclusions.domains),
            "networks": [str(n) for n in self.exclusions.networks],
            "source": self.exclusions.source,
        }
        result: dict[str, Any] = convert(data)
        return result
