"""`scanner report OUTDIR... -o report.html`: one self-contained HTML file.

Numbers come from scanner.analysis.stats (survey_stats, grouped_stats) and
scanner.analysis.compare: the report computes nothing of its own. The latest scan (by manifest
start_time) is shown in full; given several scans, a trends section follows with one row per
scan and the changes since the previous one. Charts are inline SVG (charts.py), markup and
escaping in html.py.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from scanner.analysis.compare import compare
from scanner.analysis.stats import DOMAIN_CLASSES, MAIL_CLASSES, grouped_stats, survey_stats
from scanner.report import charts
from scanner.report.html import chart, count_table, esc, grid_table, num_cell, page, pct

TOP_PROVIDERS = 20


def _start(stats: dict[str, Any]) -> datetime:
    raw = stats["scan"]["start_time"]
    return datetime.fromisoformat(raw) if raw else datetime.min.replace(tzinfo=UTC)


def _name(outdir: Path) -> str:
    """A results directory as shown: its last two path parts (".../2024-05/out")."""
    return "/".join(outdir.resolve().parts[-2:])


def _pct_cell(value: float | None, stat: str) -> str:
    return f'<td data-stat="{esc(stat)}">{pct(value)}</td>'


def warning_section(infos: Sequence[dict[str, Any]]) -> str:
    """Partial data, shown before any figure: each scan's warnings (analysis.scan_status)."""
    items = "".join(f'<li data-warning="{esc(info["outdir"])}">{esc(w)}</li>'
                    for info in infos for w in info["warnings"])
    return (f'<div class="warning"><b>These figures are not those of a whole survey.</b>'
            f"<ul>{items}</ul></div>" if items else "")


def domain_section(s: dict[str, Any]) -> str:
    """The Norway table: classes over all input lines and over mail domains."""
    d = s["domains"]
    duplicates = d.get("duplicates")
    repeated = ("" if not duplicates else
                f' (<b data-stat="domains/duplicates">{esc(duplicates)}</b> more records repeat '
                "a domain listed before: counted once)")
    parts = ["<h2>Domains</h2>",
             f'<p class="note"><b data-stat="domains/input_lines">{esc(d["input_lines"])}</b> '
             f'input lines{repeated}; <b data-stat="domains/mail_domains">'
             f'{esc(d["mail_domains"])}</b> mail '
             "domains (at least one mail server answered SMTP). A domain is <i>all</i> when every"
             " (MX host, address) pair that answered negotiated TLS, <i>some</i> when some did, "
             "<i>none</i> when none did; strict counts only pairs with a valid chain naming the "
             "MX host.</p>"]
    not_measured = set(d.get("not_measured") or ())
    for what, title in (("starttls", "STARTTLS"), ("strict", "strict TLS")):
        rows = []
        for cls in DOMAIN_CLASSES:
            if cls in not_measured:  # older schema: such domains are in another class
                rows.append([f'<td class="k {esc(cls)}">{esc(cls)}</td>',
                             '<td colspan="3">not measured by this scan</td>'])
                continue
            n = d[what].get(cls, 0)
            share = (_pct_cell(d[f"{what}_share_of_mail_domains"][cls],
                               f"domains/{what}_share_of_mail_domains/{cls}")
                     if cls in MAIL_CLASSES else "<td></td>")
            rows.append([f'<td class="k {esc(cls)}">{esc(cls)}</td>',
                         num_cell(n, f"domains/{what}/{cls}"),
                         f"<td>{pct(n, d['input_lines'])}</td>", share])
        parts.append(f"<h3>{title} per domain</h3>" + grid_table(
            ["class", "domains", "% of input lines", "% of mail domains"], rows))
    shares = [(title, d[f"{what}_share_of_mail_domains"]) for what, title in
              (("starttls", "STARTTLS"), ("strict", "strict TLS"))]
    parts.append(chart(charts.class_shares_chart(shares), "class shares of mail domains"))
    return "".join(parts)


def host_section(s: dict[str, Any]) -> str:
    """The Facebook table and the failure taxonomy."""
    h = s["hosts"]
    facts = [("answered SMTP (of addresses probed)", h["answered"], h["probed"], "answered"),
             ("STARTTLS offered", h["starttls_offered"], h["answered"], "starttls_offered"),
             ("TLS negotiated", h["tls_ok"], h["answered"], "tls_ok"),
             ("forward secrecy (of TLS)", h["forward_secrecy"], h["tls_ok"], "forward_secrecy"),
             ("strict-valid (of TLS)", h["strict_valid"], h["tls_ok"], "strict_valid"),
             ("DH ≤ 1024 bits, logjam (of TLS)", h["weak_dh"], h["tls_ok"], "weak_dh")]
    total = sum(h["outcomes"].values())
    return ("<h2>Mail servers</h2><p class=\"note\">One row per distinct address probed "
            f'(<span data-stat="hosts/probed">{esc(h["probed"])}</span> contacted).</p>'
            '<div class="grid"><section>'
            + count_table([(k, n, of, f"hosts/{stat}") for k, n, of, stat in facts],
                          key_title="hosts")
            + "</section><section><h3>Outcomes (failure taxonomy)</h3>"
            + count_table([(k, n, total, f"hosts/outcomes/{k}")
                           for k, n in h["outcomes"].items()], key_title="outcome",
                          denominator="of hosts")
            + "</section></div>")


def tls_section(s: dict[str, Any]) -> str:
    """TLS versions, ciphers, key exchange, DH sizes, certificates, issuers, software."""
    dist = s["distributions"]
    tls, answered = dist["tls_hosts"], dist["answered_hosts"]

    def table(section: str, key_title: str, of: int, tagged: bool = True) -> str:
        return count_table([(k, n, of, f"distributions/{section}/{k}" if tagged else None)
                            for k, n in dist[section].items()], key_title=key_title)
    problems = {k: 100.0 * n / tls for k, n in dist["certificate_problems"].items()} if tls else {}
    return (
        "<h2>TLS</h2><div class=\"grid\"><section><h3>Versions</h3>"
        + table("tls_versions", "version", tls)
        + chart(charts.bar_chart(dist["tls_versions"], "TLS hosts"), "TLS versions")
        + "</section><section><h3>Key exchange</h3>" + table("kex_groups", "group", tls)
        + "<h3>DH prime sizes</h3>"
        + count_table([(k, n, tls, f"distributions/dh_sizes/{k}")
                       for k, n in dist["dh_sizes"].items()]
                      + [("≤ 1024 (logjam-exposed)", dist["dh_logjam_exposed"], tls,
                          "distributions/dh_logjam_exposed")], key_title="bits")
        + "</section><section><h3>Ciphers</h3>" + table("ciphers", "cipher", tls, False)
        + "</section></div><h2>Certificates</h2><p class=\"note\">Problems of the leaf "
        "certificate and chain each TLS host presented, judged at the scan's start time; a host "
        "may have several.</p><div class=\"grid\"><section>"
        + table("certificate_problems", "problem", tls)
        + "</section><section>"
        + chart(charts.bar_chart(problems, "% of TLS hosts", "#c62828"), "certificate problems")
        + "</section></div><h3>Issuers of leaf certificates</h3>"
        + table("issuers", "issuer", tls, False)
        + "<h2>MTA software</h2><div class=\"grid\"><section><h3>From the greeting</h3>"
        + (table("software", "software", answered) if dist["software"] is not None
           else '<p class="note">not measured by this scan (schema before 1.2)</p>')
        + "</section><section><h3>Most common greetings (host name removed)</h3>"
        + table("banners", "greeting", answered, False) + "</section></div>")


def policy_section(s: dict[str, Any]) -> str:
    """SPF, DMARC, TLS-RPT, MTA-STS and DANE adoption (absent from scans without those columns)."""
    p = s.get("policies")
    if not p:
        return ""

    def table(key: str, of: int, title: str) -> str:
        return count_table([(k, n, of, f"policies/{key}/{k}") for k, n in p[key].items()],
                           key_title=title)
    return ("<h2>Policies beyond STARTTLS</h2><p class=\"note\">TXT records over the "
            f'<span data-stat="policies/domains_queried">{esc(p["domains_queried"])}</span> '
            "domains looked up; MTA-STS, DANE and strict-capable over the "
            f'<span data-stat="policies/mail_domains">{esc(p["mail_domains"])}</span> mail '
            'domains.</p><div class="grid"><section>'
            + table("adoption", p["domains_queried"], "all domains")
            + "</section><section>" + table("mail_adoption", p["mail_domains"], "mail domains")
            + "</section><section><h3>DANE</h3>"
            + table("dane_class", p["mail_domains"], "class") + "</section>"
            + _deep_table(p.get("deep")) + "</div>")


def _deep_table(deep: dict[str, int] | None) -> str:
    """What `scan --deep` found: versions accepted and DHE-only offers per examined host."""
    if not deep:
        return ""
    of = deep["hosts_examined"]
    return ("<section><h3>Deep TLS checks (--deep)</h3>"
            + count_table([(k, n, of, f"policies/deep/{k}") for k, n in deep.items()
                           if k != "hosts_examined"], key_title="hosts examined")
            + "</section>")


def provider_section(groups: list[dict[str, Any]], title: str, key_title: str) -> str:
    """Per-group table: domains served, class shares, hosts' TLS."""
    rows = [[f'<td class="k">{esc(g["group"])}</td>', num_cell(g["domains"]),
             num_cell(g["mail_domains"]),
             *(f"<td>{pct(g['starttls_share'][c])}</td>" for c in MAIL_CLASSES),
             f"<td>{pct(g['strict_all_share'])}</td>", num_cell(g["hosts_answered"]),
             f"<td>{pct(g['hosts_tls_share'])}</td>", f"<td>{pct(g['hosts_strict_share'])}</td>"]
            for g in groups]
    return f"<h3>{esc(title)}</h3>" + grid_table(
        [key_title, "domains", "mail domains", "STARTTLS all", "some", "none", "strict all",
         "hosts answered", "hosts TLS", "strict-valid of TLS"], rows)


def trend_section(scans: list[tuple[Path, dict[str, Any]]]) -> str:
    """One row per scan in time order, a chart, and the changes since the previous scan."""
    rows, times = [], []
    series: dict[str, list[float | None]] = {"STARTTLS all": [], "STARTTLS none": [],
                                             "strict all": [], "hosts TLS": []}
    for i, (outdir, s) in enumerate(scans):
        d, h = s["domains"], s["hosts"]
        share = d["starttls_share_of_mail_domains"]
        tls_share = None if not h["answered"] else 100.0 * h["tls_ok"] / h["answered"]
        values = [share["all"], share["some"], share["none"],
                  d["strict_share_of_mail_domains"]["all"], tls_share,
                  s["hosts"]["strict_share_of_tls"] if "strict_share_of_tls" in h else None]
        times.append(_start(s))
        for name, v in zip(series, (share["all"], share["none"],
                                    d["strict_share_of_mail_domains"]["all"], tls_share),
                           strict=True):
            series[name].append(v)
        rows.append([f'<td class="k">{esc(s["scan"]["start_time"])}</td>',
                     f"<td class=\"k\">{esc(_name(outdir))}</td>",
                     num_cell(d["input_lines"], f"trend/{i}/input_lines"),
                     num_cell(d["mail_domains"], f"trend/{i}/mail_domains"),
                     *(f'<td data-trend="{i}">{pct(v)}</td>' for v in values)])
    changes = []
    for (old, _), (new, _) in zip(scans, scans[1:], strict=False):
        c = compare(old, new)["changes"]
        changes.append([f'<td class="k">{esc(_name(old))} → {esc(_name(new))}</td>',
                        *(num_cell(len(c[w][d])) for w in ("starttls", "strict")
                          for d in ("gained", "lost"))])
    return ("<h2>Trends</h2>" + grid_table(
        ["scan start (UTC)", "results", "input lines", "mail domains", "STARTTLS all", "some",
         "none", "strict all", "hosts TLS", "strict-valid of TLS"], rows)
        + chart(charts.trend_chart(times, series), "trends") + "<h3>Changes between scans</h3>"
        + grid_table(["scans", "gained STARTTLS", "lost STARTTLS", "gained strict",
                      "lost strict"], changes))


def build_report(outdirs: Sequence[Path]) -> str:
    """The whole HTML document for one or more results directories."""
    scans = sorted(((Path(o), survey_stats(Path(o))) for o in outdirs),
                   key=lambda item: _start(item[1]))
    latest_dir, latest = scans[-1]
    providers = grouped_stats(latest_dir, "provider", top=TOP_PROVIDERS)
    info = latest["scan"]
    body = [f"<h1>STARTTLS survey: {esc(_name(latest_dir))}</h1>"
            f'<p class="meta">scan started {esc(info["start_time"])}, ended '
            f'{esc(info["end_time"])}, state {esc(info["state"])}; '
            f"{len(scans)} scan(s) in this report. Generated "
            f"{esc(datetime.now(UTC).isoformat(timespec='seconds'))}.</p>",
            warning_section([s["scan"] for _, s in scans]),
            domain_section(latest), host_section(latest), tls_section(latest),
            policy_section(latest),
            "<h2>Mail providers</h2><p class=\"note\">A domain counts for the provider of its "
            "primary MX host (registrable domain, Public Suffix List); biggest first.</p>",
            chart(charts.providers_chart([g for g in providers if g["mail_domains"]]),
                  "top providers"),
            provider_section(providers, f"Top {TOP_PROVIDERS} providers", "provider"),
            provider_section(grouped_stats(latest_dir, "tld", top=10), "Top-level domains",
                             "TLD")]
    if len(scans) > 1:
        body.append(trend_section(scans))
    return page(f"STARTTLS survey report: {_name(latest_dir)}", "".join(body))


def write_report(outdirs: Sequence[Path], output: Path) -> Path:
    """Write the report atomically (temporary file, then rename)."""
    text = build_report(outdirs)
    output.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".report-", suffix=".html", dir=output.parent)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the report from a web server
    os.replace(tmp, output)
    return output
