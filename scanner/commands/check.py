"""`scanner check DOMAIN`: every fact about one domain, printed for a person.

The same code path as a survey: the pipeline scans a one-line input into a temporary results
directory, and the rows it wrote are what gets printed.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

from scanner.commands.options import CliError, _add_scan_arguments, config_from_args
from scanner.commands.scan import vantage_warning
from scanner.inputs.domain_names import InvalidDomain, normalise_domain
from scanner.model.records import DomainRecord, HostRecord
from scanner.report.server_text import printable
from scanner.scan import event_loop
from scanner.scan.pipeline import Progress, Scan, Waiting
from scanner.scan.vantage import VantageFailure, VantageStatus, VantageVerdict
from scanner.sink.dataset import read_dataset


class CheckProgress:
    """The line `check` shows on stderr while it waits on a slow server.

    Nothing for the first `after_s` seconds, so a quick check prints only its report. On a
    terminal the line is redrawn in place with a countdown; elsewhere (a log) a line is
    written each time what the check waits on changes.
    """

    def __init__(self, domain: str, stream: TextIO, after_s: float = 1.0) -> None:
        self._domain = domain
        self._stream = stream
        self._tty = stream.isatty()
        self._show_from = time.monotonic() + after_s
        self._last = ""
        self._drawn = False

    def on_domain_done(self, record: DomainRecord) -> None:
        pass

    def on_probe_done(self, record: HostRecord) -> None:
        pass

    def on_waiting(self, waiting: Waiting) -> None:
        if time.monotonic() < self._show_from:
            return
        text = waiting.describe(countdown=self._tty)
        if self._tty:
            # cut to the terminal's width: a wrapped line could not be redrawn in place
            line = f"{self._domain}: {text}"[:shutil.get_terminal_size().columns - 1]
            self._stream.write(f"\r\x1b[K{line}" if text else "\r\x1b[K")
            self._drawn = bool(text)
        elif text and text != self._last:
            self._stream.write(f"scanner: {self._domain}: {text}\n")
        self._last = text
        self._stream.flush()

    def close(self) -> None:
        """Clear the line on a terminal, so the report starts on a clean one."""
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._stream.flush()
            self._drawn = False


def _scan_namespace(args: argparse.Namespace, input_path: Path, output: Path
                    ) -> argparse.Namespace:
    """The `scan` arguments for one domain: scan defaults, with the check's options on top."""
    parser = argparse.ArgumentParser()
    _add_scan_arguments(parser)
    ns = parser.parse_args([str(input_path), "-o", str(output)])
    for name, value in vars(args).items():  # every option check shares with scan
        if hasattr(ns, name) and name not in ("inputs", "output"):
            setattr(ns, name, value)
    ns.deep_spacing = 0.2  # one domain: a short pause is polite enough
    return ns


#: Columns about the survey's input file and its bookkeeping, which mean nothing for one domain
#: typed on the command line: `check --json` leaves them out (README, "check").
INTERNAL_FIELDS = {"domain": ("source", "line_no", "input", "finished_at"),
                   "edges": (), "hosts": ("started_at",)}


def check_domain(args: argparse.Namespace, progress: Progress | None = None) -> dict[str, Any]:
    """Scan one domain; its `domains` row, `domain_mx` edges and `hosts` rows as dicts, and
    the run's vantage verdict (`vantage`: status and note, None when no server was contacted).

    Raises CliError for a domain that is not a mail domain (the reason in one line), and
    VantageFailure when the check stopped because the vantage point looks broken.
    """
    try:
        a_label, _unicode = normalise_domain(args.domain)
    except InvalidDomain as exc:
        raise CliError(f"{args.domain!r} is not a mail domain ({exc})") from None
    with tempfile.TemporaryDirectory(prefix="scanner-check-") as tmp:
        input_path = Path(tmp) / "domain.txt"
        input_path.write_text(a_label + "\n", encoding="utf-8")
        config, _notices = config_from_args(_scan_namespace(args, input_path, Path(tmp) / "out"))
        scan = Scan(config, progress, notify=_warn)
        try:
            event_loop.run(scan.run(), config.event_loop)
        except BaseExceptionGroup as group:
            failure, _rest = group.split(VantageFailure)
            if failure is None:
                raise
            first: BaseException = failure
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from group
        verdict = scan.vantage.verdict()
        facts = {"domain": read_dataset(config.output, "domains").to_pylist(),
                 "edges": read_dataset(config.output, "domain_mx").to_pylist(),
                 "hosts": read_dataset(config.output, "hosts").to_pylist()}
    for part, rows in facts.items():
        for row in rows:
            for name in INTERNAL_FIELDS[part]:
                row.pop(name, None)
    domain = facts.pop("domain")
    return {"domain": domain[0] if domain else {}, **facts,
            "checked_at": config.started_at.isoformat(),
            "vantage": None if verdict is None else {"status": verdict.status.value,
                                                     "note": verdict.note}}


def _warn(text: str) -> None:
    print(f"scanner: warning: {text}", file=sys.stderr)


def _yes(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def render_check(facts: dict[str, Any]) -> str:
    """The facts as lines of text."""
    d = facts["domain"]
    lines = [f"{d.get('domain') or d.get('input')}  (status {d.get('status')})"]
    if d.get("reason"):
        lines.append(f"  reason: {d['reason']}")
    lines += [
        f"  mail hosts      {d.get('mx_source')}: {', '.join(d.get('mx_hostnames') or []) or '-'}",
        f"  STARTTLS        {d.get('starttls_class')} ({d.get('n_tls')}/{d.get('n_reachable')} "
        f"answering pairs negotiated TLS)",
        f"  strict TLS      {d.get('strict_class')} ({d.get('n_strict')}/{d.get('n_reachable')})",
        f"  SPF             {d.get('spf_status')}"
        + (f" ({d['spf_all']})" if d.get("spf_all") else ""),
        f"  DMARC           {d.get('dmarc_status')}"
        + (f" (p={d['dmarc_policy']})" if d.get("dmarc_policy") else ""),
        f"  TLS-RPT         {d.get('tlsrpt_status')}",
        f"  MTA-STS record  {d.get('mta_sts_txt_status')}"
        + (f" (id={d['mta_sts_id']})" if d.get("mta_sts_id") else ""),
        f"  MTA-STS policy  fetch {d.get('mta_sts_fetch_status')}, mode "
        f"{d.get('mta_sts_mode') or '-'}, max_age {d.get('mta_sts_max_age') or '-'}, mx "
        f"{', '.join(d.get('mta_sts_mx_patterns') or []) or '-'}",
        f"                  every MX matches: {_yes(d.get('mta_sts_mx_all_match'))}, "
        f"delivery under the policy: {_yes(d.get('mta_sts_delivery_ok'))}",
        f"  DANE            {d.get('dane_class')} ({d.get('n_dane_valid')} valid pairs)",
        f"  strict-capable  {_yes(d.get('strict_capable'))} (DANE valid, or MTA-STS enforce "
        "with a deliverable MX)",
    ]
    hosts = {h["ip"]: h for h in facts["hosts"]}
    if facts["edges"]:
        lines += ["", f"  {'pref':>4} {'MX host':<32} {'address':<16} {'outcome':<18} "
                      f"{'TLS':<8} {'chain':<7} {'name':<5} {'TLSA':<10} {'DANE':<9} STS"]
    for e in facts["edges"]:
        h = hosts.get(e["ip"] or "", {})
        chain = "-" if e["chain_valid"] is None else ("valid" if e["chain_valid"]
                                                      else h.get("verify_error") or "invalid")
        lines.append(
            f"  {e['preference']:>4} {e['mx_hostname']:<32} {e['ip'] or '-':<16} "
            f"{e['outcome'] or e['address_status']:<18} {h.get('tls_version') or '-':<8} "
            f"{chain:<7} {_yes(e['name_match']):<5} {e['tlsa_status']:<10} "
            f"{e['dane_status']:<9} {_yes(e['mta_sts_ok'])}")
    seen: set[str] = set()
    for e in facts["edges"]:
        if e["mx_hostname"] not in seen and e["tlsa_records"]:
            seen.add(e["mx_hostname"])
            lines += [f"  TLSA _25._tcp.{e['mx_hostname']}: {r}" for r in e["tlsa_records"]]
    for h in facts["hosts"]:
        if h.get("deep_checked"):
            lines.append(
                f"  deep {h['ip']}: accepts {', '.join(h['tls_versions_accepted']) or '-'}; "
                f"refuses {', '.join(h['tls_versions_refused']) or '-'}; DHE-only "
                + (f"accepted ({h['dhe_bits']}-bit, {h['dhe_group']})" if h["dhe_accepted"]
                   else "refused" if h["dhe_accepted"] is False else "untested"))
    for h in facts["hosts"]:
        if h.get("banner"):
            lines.append(f"  banner {h['ip']}: {printable(h['banner'].splitlines()[0])}")
    return "\n".join(lines)


def run_check_command(args: argparse.Namespace) -> int:
    """Print the check of one domain; 0 when the domain was scanned, 3 when the resolver fails
    its check or the vantage point looks broken (nothing is recorded then)."""
    progress = CheckProgress(args.domain, sys.stderr)
    try:
        facts = check_domain(args, progress)
    except VantageFailure as exc:
        progress.close()
        print(f"scanner: stopped: {exc}", file=sys.stderr)
        return 3
    finally:
        progress.close()
    if args.json:
        print(json.dumps(facts, indent=2, sort_keys=True, default=str))
    else:
        print(render_check(facts))
    vantage = facts["vantage"]
    if vantage is not None:
        warning = vantage_warning(VantageVerdict(VantageStatus(vantage["status"]),
                                                 vantage["note"]), manifest=False)
        if warning is not None:
            print(warning, file=sys.stderr)
    return 0
