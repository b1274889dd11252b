"""The scan's options: the arguments `scan` and `check` share, and the one ScanConfig built
from them (`config_from_args`); CliError, the one-line error every command may raise."""

from __future__ import annotations

import argparse
import ipaddress
import json
import resource
from collections.abc import Sequence
from pathlib import Path

from scanner.config import (
    EVENT_LOOPS,
    ConfigError,
    Exclusions,
    Identity,
    Limits,
    ResolverCheck,
    ScanConfig,
    Timeouts,
    TrustStore,
)
from scanner.policy.mta_sts import MAX_FETCHES_IN_FLIGHT
from scanner.scan import event_loop

# Descriptors the process keeps for itself (resolver sockets, output files, the lab in tests,
# MTA-STS policy fetches, which have their own cap).
_FD_RESERVE = 256 + MAX_FETCHES_IN_FLIGHT


class CliError(Exception):
    """A one-line error for the user; no traceback."""


_REFERENCE_HELP = (
    "a mail server known to answer, talked to once before any other: no SMTP reply stops the "
    "run (exit 3: port 25 looks blocked here); a reply shows the path works, so servers that "
    "all fail are theirs (default: none, no third-party host is contacted; PORT defaults to "
    "--port)")


def _add_scan_arguments(p: argparse.ArgumentParser) -> None:
    lim = Limits()
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT",
                   help="domain lists: text, CSV top list (rank,domain) or zone file; .gz ok")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUTDIR",
                   help="output directory for the Parquet datasets and manifest.json")
    p.add_argument("--resolver", action="append", default=[], metavar="HOST[:PORT]",
                   help="DNS resolver to use (repeatable; default: the system's resolvers)")
    _add_resolver_check_argument(p)
    p.add_argument("--resolver-recheck", type=float, default=ResolverCheck().every_s,
                   metavar="S",
                   help="ask the resolvers the --resolver-check questions again every S seconds "
                        "during the scan, and stop when they fail; domains with DNS failures "
                        "are written once a later check passes (default "
                        f"{ResolverCheck().every_s:g})")
    p.add_argument("--port", type=int, default=25, help="SMTP port (default 25)")
    p.add_argument("--reference-host", metavar="HOST[:PORT]",
                   help=_REFERENCE_HELP + "; recorded in manifest.json")
    p.add_argument("--source-address", metavar="IP",
                   help="local address to connect from (a multi-homed vantage point)")
    p.add_argument("--concurrency", type=int, default=lim.max_in_flight,
                   help=f"SMTP conversations in flight (default {lim.max_in_flight})")
    p.add_argument("--per-address", type=int, default=lim.per_address,
                   help="concurrent connections per mail server address (default 1)")
    p.add_argument("--per-provider", type=int, default=lim.per_provider,
                   help=f"concurrent connections per mail provider (default {lim.per_provider})")
    p.add_argument("--dns-concurrency", type=int, default=lim.dns_in_flight,
                   help=f"DNS queries in flight (default {lim.dns_in_flight})")
    _add_timeout_arguments(p)
    p.add_argument("--ehlo-name", default=Identity().ehlo_name,
                   help="the name this scan announces in EHLO: use a host you control, with a "
                        f"web page about the survey (default {Identity().ehlo_name})")
    p.add_argument("--trust-anchor", action="append", default=[], type=Path, metavar="PEM",
                   help="extra trusted roots, added to Mozilla's (repeatable)")
    p.add_argument("--exclude", type=Path, metavar="FILE",
                   help="domains and CIDR networks never contacted (one per line)")
    p.add_argument("--resume", action="store_true",
                   help="continue the scan in OUTDIR; refused when the inputs or an option "
                        "that changes results differ from the scan's (default: a new scan)")
    p.add_argument("--override-config", action="store_true",
                   help="with --resume: accept changed result-altering options (timeouts, "
                        "resolver, EHLO name, exclusions...) and record them in the manifest "
                        "(default: refuse them)")
    p.add_argument("--limit", type=int, metavar="N", help="scan only the first N domains")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--lab", type=Path, metavar="LABDIR",
                   help="scan a running lab: resolver, port and CA from LABDIR/lab.json; "
                        "the lab's 127.0.0.0/8 is probed too")
    p.add_argument("--batch-rows", type=int, default=lim.batch_rows, help=argparse.SUPPRESS)
    p.add_argument("--no-policies", dest="policies", action="store_false",
                   help="STARTTLS only: skip the SPF, DMARC, TLS-RPT, MTA-STS and TLSA lookups "
                        "(four fewer DNS queries per domain); their columns say not_queried")
    p.add_argument("--deep", action="store_true",
                   help="per TLS host also test TLS 1.0-1.3 and DHE-only offers (extra "
                        "conversations, one at a time per address)")
    p.add_argument("--deep-spacing", type=float, default=1.0, metavar="S",
                   help="pause before each extra --deep conversation with an address (default 1)")
    p.add_argument("--loop", choices=EVENT_LOOPS, default="auto",
                   help="event loop (default auto: uvloop when installed, less CPU; asyncio: "
                        "the standard one)")


def _add_timeout_arguments(p: argparse.ArgumentParser) -> None:
    """The step timeouts and the per-address deadline: shared by scan and check."""
    t = Timeouts()
    p.add_argument("--timeout-dns", type=float, default=t.dns_query, metavar="S",
                   help=f"seconds per DNS query, {t.dns_tries} tries (default {t.dns_query:g})")
    p.add_argument("--timeout-connect", type=float, default=t.connect, metavar="S",
                   help=f"seconds for the TCP connect (default {t.connect:g})")
    p.add_argument("--timeout-greeting", type=float, default=t.greeting, metavar="S",
                   help=f"seconds to wait for the server's greeting (default {t.greeting:g})")
    p.add_argument("--timeout-command", type=float, default=t.command, metavar="S",
                   help=f"seconds for the reply to EHLO or QUIT (default {t.command:g})")
    p.add_argument("--timeout-starttls", type=float, default=t.starttls, metavar="S",
                   help=f"seconds for the reply to STARTTLS (default {t.starttls:g})")
    p.add_argument("--timeout-handshake", type=float, default=t.handshake, metavar="S",
                   help=f"seconds for the TLS handshake (default {t.handshake:g})")
    p.add_argument("--deadline", type=float, default=t.per_address, metavar="S",
                   help=f"seconds for the whole conversation with one address: stops tarpits "
                        f"(default {t.per_address:g})")


def _add_resolver_check_argument(p: argparse.ArgumentParser) -> None:
    p.add_argument("--resolver-check", action="append", default=[], metavar="NAME|none",
                   help="before the first domain every resolver must answer '. NS' and '. SOA' "
                        "with records (the default check); NAME adds a canary that must "
                        "resolve (A, AAAA or MX answered with records); 'none' drops the root "
                        "questions, for a resolver that refuses them on purpose (repeatable)")


def resolver_check_from(values: Sequence[str], every_s: float) -> ResolverCheck:
    """`--resolver-check` values (names, or "none") as a ResolverCheck."""
    from scanner.inputs.domain_names import InvalidDomain, normalise_domain

    root = True
    canaries: dict[str, None] = {}
    for value in values:
        if value.strip().lower() == "none":
            root = False
            continue
        try:
            name, _unicode = normalise_domain(value)
        except InvalidDomain as exc:
            raise CliError(f"--resolver-check {value!r}: not a domain name "
                           f"({exc.reason})") from None
        canaries[name] = None
    try:
        return ResolverCheck(root=root, canaries=tuple(canaries), every_s=every_s)
    except ConfigError as exc:
        raise CliError(str(exc)) from None


def read_exclusions(path: Path) -> Exclusions:
    """Parse an exclusion file: one domain or CIDR network per line, `#` comments."""
    domains: set[str] = set()
    networks = []
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read exclusion list {path}: {exc}") from None
    for n, line in enumerate(text.splitlines(), 1):
        entry = line.split("#", 1)[0].strip().lower().rstrip(".")
        if not entry:
            continue
        try:
            networks.append(ipaddress.ip_network(entry, strict=False))
            continue
        except ValueError:
            pass
        if " " in entry or "/" in entry:
            raise CliError(f"{path}:{n}: not a domain or network: {line.strip()!r}")
        domains.add(entry)
    return Exclusions(domains=frozenset(domains), networks=tuple(networks), source=str(path))


def capped_concurrency(requested: int, dns: int) -> tuple[int, str | None]:
    """Cap in-flight conversations to what the file-descriptor limit allows."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    allowed = max(1, soft - _FD_RESERVE - dns)
    if requested > allowed:
        return allowed, (f"--concurrency {requested} exceeds what the file-descriptor limit "
                         f"({soft}) allows; capped at {allowed}")
    return requested, None


def config_from_args(args: argparse.Namespace) -> tuple[ScanConfig, list[str]]:
    """Build the one ScanConfig from the parsed arguments; also return notices for the user."""
    notices: list[str] = []
    resolvers = list(args.resolver)
    port = args.port
    anchors = list(args.trust_anchor)
    lab_mode = False
    mta_sts_port = 443
    if args.lab is not None:
        lab_json = args.lab / "lab.json"
        try:
            lab = json.loads(lab_json.read_text())
        except (OSError, ValueError) as exc:
            raise CliError(f"no running lab at {args.lab}: {exc}") from None
        resolvers = resolvers or [lab["resolver"]]
        port = lab["smtp_port"] if port == 25 else port
        anchors.append(Path(lab["ca_pem"]))
        mta_sts_port = lab.get("mta_sts_port", mta_sts_port)
        lab_mode = True
    for anchor in anchors:
        if not anchor.is_file():
            raise CliError(f"trust anchor {anchor} does not exist")
    if args.override_config and not args.resume:
        raise CliError("--override-config applies only with --resume")
    concurrency, notice = capped_concurrency(args.concurrency, args.dns_concurrency)
    if notice:
        notices.append(notice)
    exclusions = read_exclusions(args.exclude) if args.exclude else Exclusions()
    config = ScanConfig(
        output=args.output, inputs=tuple(args.inputs), resolvers=tuple(resolvers), port=port,
        timeouts=Timeouts(dns_query=args.timeout_dns, connect=args.timeout_connect,
                          greeting=args.timeout_greeting, command=args.timeout_command,
                          starttls=args.timeout_starttls, handshake=args.timeout_handshake,
                          per_address=args.deadline),
        limits=Limits(max_in_flight=concurrency, per_address=args.per_address,
                      per_provider=args.per_provider, dns_in_flight=args.dns_concurrency,
                      batch_rows=args.batch_rows),
        identity=Identity(ehlo_name=args.ehlo_name), exclusions=exclusions,
        trust=TrustStore(extra_anchors=tuple(anchors)), lab_mode=lab_mode,
        resume=args.resume, override_config=args.override_config, limit=args.limit,
        mta_sts_port=mta_sts_port, deep=args.deep,
        policies=args.policies, deep_spacing_s=args.deep_spacing,
        source_address=args.source_address, event_loop=event_loop.resolve(args.loop),
        reference_host=args.reference_host,
        resolver_check=resolver_check_from(args.resolver_check, args.resolver_recheck))
    return config, notices
