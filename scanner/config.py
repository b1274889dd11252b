"""ScanConfig: the one configuration object, built by commands/options.py and passed down.

Defaults sit in the dataclasses, checks in __post_init__, and the whole object goes into the
manifest (`to_json`), so every result set says how it was produced.
"""

from __future__ import annotations

import hashlib
import ipaddress
import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

#: `--loop` values (scanner/scan/event_loop.py); "auto" is uvloop when installed, else asyncio.
EVENT_LOOPS = ("auto", "asyncio", "uvloop")


class ConfigError(ValueError):
    """A configuration problem found at start-up: reported as one line, never a traceback."""


#: The command-line flag that sets each checked field, by its path in ScanConfig: error
#: messages name what the user typed (`--deadline`), not the field (`timeouts.per_address`).
FLAGS = {
    "port": "--port", "limit": "--limit", "source_address": "--source-address",
    "deep_spacing_s": "--deep-spacing", "event_loop": "--loop",
    "timeouts.dns_query": "--timeout-dns", "timeouts.connect": "--timeout-connect",
    "timeouts.greeting": "--timeout-greeting", "timeouts.command": "--timeout-command",
    "timeouts.starttls": "--timeout-starttls", "timeouts.handshake": "--timeout-handshake",
    "timeouts.per_address": "--deadline",
    "limits.max_in_flight": "--concurrency", "limits.per_address": "--per-address",
    "limits.per_provider": "--per-provider", "limits.dns_in_flight": "--dns-concurrency",
    "limits.batch_rows": "--batch-rows",
    "identity.ehlo_name": "--ehlo-name", "reference_host": "--reference-host",
}


def flag(path: str) -> str:
    """The flag that sets a field (`limits.max_in_flight` -> `--concurrency`), else its name."""
    return FLAGS.get(path, path.rpartition(".")[2])


def split_host_port(spec: str, default_port: int) -> tuple[str, int]:
    """"host", "host:port", "[v6]:port" or a bare IPv6 address -> (host, port)."""
    host, port = spec, str(default_port)
    if spec.startswith("["):
        host, _, rest = spec[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ValueError(f"{spec!r} is not HOST[:PORT]")
            port = rest[1:]
    elif spec.count(":") == 1:
        host, port = spec.split(":")
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(f"{spec!r} is not HOST[:PORT] with a port in 1..65535")
    return host, int(port)


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
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ConfigError(f"{flag('timeouts.' + name)} must be a positive number of "
                                  f"seconds, not {value:g}")
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
                raise ConfigError(f"{flag('limits.' + name)} must be at least 1, "
                                  f"not {getattr(self, name)}")


@dataclass(frozen=True, slots=True)
class Identity:
    """How the scan names itself to the servers it measures."""

    ehlo_name: str = "starttls-survey.invalid"

    def __post_init__(self) -> None:
        if not self.ehlo_name or any(c.isspace() for c in self.ehlo_name):
            raise ConfigError(f"{flag('identity.ehlo_name')} must be a non-empty host name "
                              "without spaces")


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

    def sha256(self) -> str:
        """Hex digest of the parsed list: equal for the same entries in any order or spelling."""
        text = "\n".join([*sorted(self.domains), "", *sorted(str(n) for n in self.networks)])
        return hashlib.sha256(text.encode()).hexdigest()

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
    """Everything a scan needs; nothing below commands/ reads arguments or the environment."""

    output: Path
    inputs: tuple[Path, ...] = ()
    resolvers: tuple[str, ...] = ()  # "host" or "host:port"; empty = system resolvers
    port: int = 25
    timeouts: Timeouts = field(default_factory=Timeouts)
    limits: Limits = field(default_factory=Limits)
    identity: Identity = field(default_factory=Identity)
    exclusions: Exclusions = field(default_factory=Exclusions)
    trust: TrustStore = field(default_factory=TrustStore)
    lab_mode: bool = False  # the lab's 127.0.0.0/8 is probed too (probe.may_contact)
    resume: bool = False
    override_config: bool = False  # --override-config: resume despite result-altering changes
    limit: int | None = None  # scan only the first N valid domains
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    vantage: str = ""
    mta_sts_port: int = 443  # HTTPS port of MTA-STS policy hosts (the lab serves another)
    policies: bool = True  # SPF/DMARC/TLS-RPT/MTA-STS and TLSA lookups; --no-policies skips them
    deep: bool = False  # --deep: versions and DHE accepted, extra conversations per TLS host
    deep_spacing_s: float = 1.0  # pause before each extra conversation with one address
    source_address: str | None = None  # local address SMTP connections come from (multi-homed)
    event_loop: str = "auto"  # the CLI records the loop that ran: "uvloop" or "asyncio"
    #: "host[:port]" of a mail server known to answer, asked once at each run's start whether
    #: port 25 works from here (port: `port`); None = no third-party host is contacted
    reference_host: str | None = None
    resolver_check: ResolverCheck = field(default_factory=ResolverCheck)

    def __post_init__(self) -> None:
        if not 1 <= self.port <= 65535:
            raise ConfigError(f"{flag('port')} {self.port} is not in 1..65535")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"{flag('limit')} must be at least 1, not {self.limit}")
        if not (math.isfinite(self.deep_spacing_s) and self.deep_spacing_s >= 0):
            raise ConfigError(f"{flag('deep_spacing_s')} must be 0 or more seconds, "
                              f"not {self.deep_spacing_s:g}")
        if self.started_at.tzinfo is None:
            raise ConfigError("started_at must be timezone-aware")
        if self.event_loop not in EVENT_LOOPS:
            raise ConfigError(f"{flag('event_loop')}: unknown event loop {self.event_loop!r}: "
                              f"choose one of {', '.join(EVENT_LOOPS)}")
        if self.source_address is not None:
            try:
                ipaddress.ip_address(self.source_address)
            except ValueError:
                raise ConfigError(f"{flag('source_address')} {self.source_address!r} is not an "
                                  "IP address") from None
        if self.reference_host is not None:
            try:
                split_host_port(self.reference_host, self.port)
            except ValueError as exc:
                raise ConfigError(f"--reference-host: {exc}") from None

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
            "sha256": self.exclusions.sha256(),
        }
        result: dict[str, Any] = convert(data)
        return result
