"""Whether `--resume` continues the same scan: the same inputs and the same result settings.

A resumed scan adds rows to the first run's: with another input (a fixed typo, moved lines, the
wrong file) rows would be matched by line number to lines they do not describe, and with
another timeout, resolver, EHLO name, trust anchor or exclusion list the runs would measure
different things. So `--resume` compares the inputs' fingerprints (`scanner.inputs.digest`) and
every result-altering setting with the scan's manifest, and refuses on a difference, naming it.
A changed setting is accepted with `--override-config`, and that run's manifest entry records
the old and new values; a changed input is never accepted. Settings that only change speed
may change freely (the run's `config_changes` records them), as may the scanner's and the
trust store's versions (recorded per run).

Every ScanConfig field is classified here, and only here: `RESULT_SETTINGS`,
`SPEED_SETTINGS` or `RUN_FIELDS` (a test fails on a field that is in none of them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from scanner.config import ScanConfig
from scanner.inputs.digest import DigestedInputs, InputFingerprint
from scanner.sink.durable import MANIFEST, load_json
from scanner.sink.manifest import system_resolvers, trust_store_facts

#: Settings that change what a scan measures, by their path in `ScanConfig.to_json()`, with
#: the name the user knows them by. `--deep-spacing` is here too: it is the pause between the
#: extra conversations with one address, where a server's per-client rate limit decides
#: whether they are answered.
RESULT_SETTINGS: Mapping[str, str] = {
    "resolvers": "--resolver",
    "port": "--port",
    "timeouts.dns_query": "--timeout-dns",
    "timeouts.dns_tries": "DNS tries (timeouts.dns_tries)",
    "timeouts.connect": "--timeout-connect",
    "timeouts.greeting": "--timeout-greeting",
    "timeouts.command": "--timeout-command",
    "timeouts.starttls": "--timeout-starttls",
    "timeouts.handshake": "--timeout-handshake",
    "timeouts.per_address": "--deadline",
    "identity.ehlo_name": "--ehlo-name",
    "exclusions": "--exclude",
    "trust.extra_anchors": "--trust-anchor",
    "trust.use_mozilla": "Mozilla's roots (trust.use_mozilla)",
    "lab_mode": "--lab",
    "mta_sts_port": "MTA-STS port (--lab)",
    "policies": "--no-policies",
    "deep": "--deep",
    "deep_spacing_s": "--deep-spacing",
    "source_address": "--source-address",
    "vantage": "vantage name (ScanConfig.vantage)",
}

#: Settings that change only how fast (or how politely) the same measurements are made.
SPEED_SETTINGS: Mapping[str, str] = {
    "limits.max_in_flight": "--concurrency",
    "limits.per_address": "--per-address",
    "limits.per_provider": "--per-provider",
    "limits.dns_in_flight": "--dns-concurrency",
    "limits.domains_in_flight": "domains in flight (limits.domains_in_flight)",
    "limits.batch_rows": "--batch-rows",
    "limits.flush_seconds": "flush interval (limits.flush_seconds)",
    "limit": "--limit",
    "event_loop": "--loop",
}

#: Fields that describe one run, not the scan: the inputs are checked by their fingerprints.
#: `reference_host` and `resolver_check` decide whether a run may go on, not what a row says:
#: each run records its own checks in its manifest entry.
RUN_FIELDS = frozenset({"output", "inputs", "resume", "override_config", "started_at",
                        "reference_host", "resolver_check"})


class ResumeRefused(Exception):
    """`--resume` would not continue the same scan; the message is one line naming why."""


@dataclass(frozen=True, slots=True)
class ResumeCheck:
    """What a resume found: notices for the user and the overridden settings."""

    notices: tuple[str, ...] = ()
    #: result settings that differ from the scan's, accepted with --override-config:
    #: name -> {"old": value, "new": value}
    overridden: dict[str, dict[str, Any]] = field(default_factory=dict)
    inputs_checked: bool = True  # False for a manifest older than input fingerprints

    def run_facts(self, override: bool) -> dict[str, Any]:
        """What the run's manifest entry records about the check."""
        facts: dict[str, Any] = {"inputs_checked": self.inputs_checked}
        if override:
            facts["override_config"] = True
            facts["overridden"] = self.overridden
        return facts


def _at(data: Mapping[str, Any], path: str) -> Any:
    value: Any = data
    for key in path.split("."):
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def result_settings(config: Mapping[str, Any], trust_store: Mapping[str, Any],
                    resolvers: Sequence[str]) -> dict[str, Any]:
    """The result settings by name, from a manifest's `config`, `trust_store` and `resolvers`.

    Files count by their content: trust anchors by their SHA-256, the exclusion list by the
    digest of its entries; the resolvers are those used (the system's when none was given).
    """
    settings: dict[str, Any] = {}
    for path, name in RESULT_SETTINGS.items():
        value = _at(config, path)
        if path == "resolvers":
            value = list(resolvers)
        elif path == "trust.extra_anchors":
            value = sorted(str(a.get("sha256")) for a in trust_store.get("extra_anchors", []))
        elif path == "exclusions":
            value = {k: v for k, v in (value or {}).items() if k != "source"}
        elif path == "policies":
            value = value is False  # the flag's state: --no-policies given
        settings[name] = value
    return settings


def _same(name: str, old: Any, new: Any) -> bool:
    if name == RESULT_SETTINGS["exclusions"] and isinstance(old, dict) and isinstance(new, dict):
        if "sha256" not in old:  # recorded before the list's digest was: compare what was
            new = {k: v for k, v in new.items() if k != "sha256"}
    return bool(old == new)


def _show(name: str, value: Any) -> str:
    """A setting's value, short, for a one-line message."""
    if name == RESULT_SETTINGS["exclusions"] and isinstance(value, dict):
        digest = str(value.get("sha256") or "?")[:12]
        return (f"{value.get('domains', 0)} domains, {len(value.get('networks') or [])} "
                f"networks, sha256 {digest}")
    if name == RESULT_SETTINGS["trust.extra_anchors"] and isinstance(value, list):
        return f"{len(value)} files" + (f" (sha256 {', '.join(v[:12] for v in value)})"
                                        if value else "")
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None or value == []:
        return "none"
    if isinstance(value, list):
        return ",".join(map(str, value))
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def scan_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """The result settings a scan runs with: its first run's, with every override since."""
    settings = result_settings(data.get("config", {}), data.get("trust_store", {}),
                               data.get("resolvers", []))
    for run in data.get("runs", []):
        for name, change in (run.get("overridden") or {}).items():
            settings[name] = change.get("new")
    return settings


def changed_settings(data: Mapping[str, Any], config: ScanConfig
                     ) -> dict[str, dict[str, Any]]:
    """Result settings of `config` that differ from the scan's: name -> {"old", "new"}."""
    old = scan_settings(data)
    new = result_settings(config.to_json(), trust_store_facts(config.trust),
                          list(config.resolvers) or system_resolvers())
    return {name: {"old": old.get(name), "new": value} for name, value in new.items()
            if not _same(name, old.get(name), value)}


def _describe(fp: Mapping[str, Any]) -> str:
    return (f"{fp.get('path')} (sha256 {str(fp.get('sha256'))[:12]}, {fp.get('lines')} lines, "
            f"{fp.get('records')} records)")


def _check_inputs(recorded: Sequence[Mapping[str, Any]],
                  given: Sequence[InputFingerprint]) -> None:
    """Raise ResumeRefused naming the first difference between the scan's inputs and these."""
    if len(recorded) != len(given):
        raise ResumeRefused(
            f"--resume refused: the scan read {len(recorded)} input file(s) "
            f"({', '.join(str(r.get('path')) for r in recorded)}), now {len(given)} are given "
            f"({', '.join(g.path for g in given)})")
    old_digests = [r.get("sha256") for r in recorded]
    new_digests = [g.sha256 for g in given]
    same_files = sorted(map(str, old_digests)) == sorted(new_digests)
    for n, (old, new) in enumerate(zip(recorded, given, strict=True), 1):
        if old.get("sha256") == new.sha256:
            continue
        if same_files:
            raise ResumeRefused(
                f"--resume refused: the input files are in another order: input {n} is "
                f"{new.path}, the scan's input {n} was {old.get('path')}")
        raise ResumeRefused(
            f"--resume refused: input {n} differs from the one scanned: now "
            f"{_describe(new.to_json())}, scanned {_describe(old)}")


def check_resume(config: ScanConfig, inputs: DigestedInputs) -> ResumeCheck:
    """Check that resuming `config.output` with these inputs and settings continues its scan.

    Raises ResumeRefused when the directory holds no scan, when an input differs, and when a
    result setting differs without `config.override_config`. Reads only the manifest.
    """
    path = config.output / MANIFEST
    if not path.is_file():
        raise ResumeRefused(f"--resume: {config.output} holds no scan to resume (no {MANIFEST}); "
                            "leave out --resume to start a new scan there")
    data = load_json(path)
    notices: list[str] = []
    recorded = data.get("inputs")
    if isinstance(recorded, list):
        _check_inputs(recorded, inputs.fingerprints)
    else:
        notices.append(f"warning: the input could not be checked: {path} predates input "
                       "fingerprints, so it cannot tell whether these are the files scanned")
    changed = changed_settings(data, config)
    if changed:
        listed = ", ".join(f"{name} {_show(name, c['old'])} -> {_show(name, c['new'])}"
                           for name, c in changed.items())
        if not config.override_config:
            raise ResumeRefused(
                f"--resume refused: options that change results differ from the scan's: "
                f"{listed}; pass --override-config to resume with them anyway (recorded in "
                "the manifest)")
        notices.append(f"warning: resuming with changed options (--override-config, recorded "
                       f"in the manifest): {listed}")
    return ResumeCheck(tuple(notices), changed, isinstance(recorded, list))
