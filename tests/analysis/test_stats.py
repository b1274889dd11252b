"""Survey statistics: distributions and groups against the lab's truth; the norway-2010 and
facebook-2014 profiles give back the published shares."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from helpers.results import older_scan

from scanner.analysis.compare import compare
from scanner.analysis.stats import (
    MAIL_CLASSES,
    distributions,
    failing_domains,
    grouped_stats,
    survey_stats,
)
from scanner.commands.cli import main
from scanner.commands.stats import table_text as printable
from scanner.config import Limits, ScanConfig, Timeouts, TrustStore
from scanner.lab.serve import LabProcess
from scanner.report.build import build_report
from scanner.scan.pipeline import Scan
from scanner.scan.providers import provider_of, tld_of
from scanner.sink.dataset import read_dataset
from scanner.smtp.mta_software import mta_software


def scan_lab(config: ScanConfig) -> Path:
    """Run one scan to the end; its results directory."""
    asyncio.run(Scan(config).run())
    return config.output


@pytest.fixture(scope="module")
def lab_scan(fast_config_factory: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scan_lab(fast_config_factory(tmp_path_factory.mktemp("stats") / "out"))


def _truth_tls_hosts(truth: pa.Table) -> list[dict[str, Any]]:
    return [h for h in truth.to_pylist() if h["outcome"] == "tls_ok"]


# -- units ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("banner", "software"), [
    ("mx1.example.no ESMTP Postfix (Debian/GNU)", "postfix"),
    ("mail.example.com ESMTP Exim 4.72 Mon, 1 Jan 2010", "exim"),
    ("EX01.corp.example Microsoft ESMTP MAIL Service ready at Mon", "exchange"),
    ("mx.example.org ESMTP Sendmail 8.14.4/8.14.4; Mon", "sendmail"),
    ("mx.example ESMTP qmail", "qmail"),
    ("mx.google.com ESMTP a1si2 - gsmtp", "gmail"),
    ("mx.example ESMTP ready", "unknown"),
    (None, None),
])
def test_mta_software_fingerprint(banner: str | None, software: str | None) -> None:
    assert mta_software(banner) == software


def test_mta_software_reads_ehlo_lines_when_banner_is_silent() -> None:
    assert mta_software("mx.example ESMTP", ("mx.example Hello", "X-EXPS GSSAPI", "Postfix"))\
        == "postfix"


def test_providers_use_the_public_suffix_list() -> None:
    assert provider_of("mx1.mail.example.co.uk") == "example.co.uk"
    assert provider_of("ASPMX.L.Google.COM.") == "google.com"
    assert provider_of("mx.popular-mail.test") == "popular-mail.test"
    assert provider_of("127.0.0.5") == "127.0.0.5"
    assert provider_of(None) == "(none)"
    assert tld_of("example.no") == "no" and tld_of(None) == "(invalid)"


def test_the_quick_public_suffix_list_has_the_librarys_rules() -> None:
    from publicsuffixlist import PublicSuffixList

    from scanner.scan.providers import public_suffix_list

    ours, theirs = public_suffix_list(), PublicSuffixList()
    assert ours._publicsuffix == theirs._publicsuffix  # every rule, U-label and A-label forms
    assert ours._maxlabel == theirs._maxlabel
    # an IDN suffix in both forms: "公司.香港" is a public suffix under "香港" (hk)
    for name in ("example.公司.香港", "example.xn--55qx5d.xn--j6w193g"):
        assert ours.privatesuffix(name) == theirs.privatesuffix(name) == name


def test_printable_neutralises_terminal_controls() -> None:
    assert printable("a\x1b[2Jb\r") == "a\\x1b[2Jb\\x0d"
    assert printable("x|y", markdown=True) == "x\\|y"


# -- distributions against the mixed lab's truth --------------------------------------------------

def test_tls_distributions_equal_truth(lab_scan: Path, fake_internet: Any) -> None:
    dist = distributions(lab_scan)
    tls = _truth_tls_hosts(fake_internet.truth_hosts())
    assert dist["tls_hosts"] == len(tls)
    assert dist["tls_versions"] == dict(Counter(h["tls_version"] for h in tls))
    assert dist["kex_groups"] == dict(Counter(h["kex_group"] for h in tls))
    logjam = sum(1 for h in tls if h["kex_group"] == "dhe" and h["kex_bits"] <= 1024)
    assert logjam >= 1 and dist["dh_logjam_exposed"] == logjam
    assert dist["dh_sizes"].get("1024") == logjam


def test_certificate_problems_follow_verify_errors(lab_scan: Path, fake_internet: Any) -> None:
    problems = distributions(lab_scan)["certificate_problems"]
    errors = Counter(h["verify_error"] for h in _truth_tls_hosts(fake_internet.truth_hosts()))
    # each behaviour's defect is found, and at least as often as the chain check reports it
    assert problems["expired"] >= errors["expired"] >= 1
    assert problems["self_signed"] >= errors["self_signed"] >= 1
    assert problems["weak_key"] >= errors["weak_key"] >= 1
    assert problems["untrusted"] >= errors["missing_intermediate"] >= 1
    assert problems["wrong_name"] >= 1
    assert 1 <= problems["no_problem"] < distributions(lab_scan)["tls_hosts"]


def test_software_counts_every_answering_host(lab_scan: Path) -> None:
    dist = distributions(lab_scan)
    assert sum(dist["software"].values()) == dist["answered_hosts"]
    assert {"postfix", "exim", "exchange", "sendmail"} <= set(dist["software"])
    assert sum(dist["banners"].values()) <= dist["answered_hosts"]


def test_survey_stats_carries_distributions_and_scan(lab_scan: Path) -> None:
    stats = survey_stats(lab_scan)
    assert stats["distributions"] == json.loads(json.dumps(distributions(lab_scan)))
    assert stats["scan"]["state"] == "finished" and stats["scan"]["start_time"]


# -- groups ---------------------------------------------------------------------------------------

def test_by_provider_orders_by_domains_served(lab_scan: Path, fake_internet: Any) -> None:
    groups = grouped_stats(lab_scan, "provider")
    sizes = [g["domains"] for g in groups]
    assert sizes == sorted(sizes, reverse=True)
    assert sum(sizes) == survey_stats(lab_scan)["domains"]["input_lines"]
    rows = read_dataset(lab_scan, "domains", columns=["mx_hostnames"]).to_pylist()
    popular = sum(1 for r in rows if r["mx_hostnames"]
                  and provider_of(r["mx_hostnames"][0]) == "popular-mail.test")
    # the lab's behaviour hosts all live under hosting.test: the biggest provider
    assert groups[0]["group"] == "hosting.test"
    group = next(g for g in groups if g["group"] == "popular-mail.test")
    assert group["domains"] == popular >= 40
    assert group["starttls"]["all"] == popular and group["hosts_tls"] == 2


@pytest.mark.parametrize("by", ["tld", "mx"])
def test_other_groupings_add_up(lab_scan: Path, by: str) -> None:
    stats = survey_stats(lab_scan)["domains"]
    groups = grouped_stats(lab_scan, by)
    assert sum(g["domains"] for g in groups) == stats["input_lines"]
    for cls in MAIL_CLASSES:
        assert sum(g["starttls"][cls] for g in groups) == stats["starttls"].get(cls, 0)


def test_failing_export_is_grouped_csv(lab_scan: Path, capsys: pytest.CaptureFixture[str]
                                       ) -> None:
    assert main(["stats", str(lab_scan), "--failing", "--by", "provider"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    domains = read_dataset(lab_scan, "domains", columns=["domain", "starttls_class"]).to_pylist()
    want = {d["domain"] for d in domains if d["starttls_class"] in ("none", "some")}
    assert {r["domain"] for r in rows} == want and len(rows) == len(want)
    seen: list[str] = []
    for r in rows:  # each provider's rows together, biggest first
        if not seen or seen[-1] != r["provider"]:
            assert r["provider"] not in seen
            seen.append(r["provider"])
    sizes = [int(next(r for r in rows if r["provider"] == p)["group_failing"]) for p in seen]
    assert sizes == sorted(sizes, reverse=True)
    strict = list(failing_domains(lab_scan, "strict"))
    assert len(strict) > len(rows) and all(r["strict_class"] != "all" for r in strict)


def test_by_provider_cli_formats(lab_scan: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["stats", str(lab_scan), "--by", "provider", "--format", "json", "--top", "3"]) \
        == 0
    assert json.loads(capsys.readouterr().out) == grouped_stats(lab_scan, "provider", top=3)
    assert main(["stats", str(lab_scan), "--by", "provider", "--format", "csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["group"] for r in rows[:2]] == [g["group"] for g in grouped_stats(
        lab_scan, "provider", top=2)]


# -- the published tables, from a lab built to reproduce them -------------------------------------

def _profile_scan(profile: str, domains: int, tmp: Path, repeat: int = 0
                  ) -> tuple[Path, LabProcess]:
    """A scan of a fresh lab of the profile; with `repeat`, a second input file lists that
    many of its domains again (in capitals), as a list merged from two sources would."""
    lab = LabProcess.start(profile, domains, 7, tmp / "lab", latency_ms=(0, 0),
                           greet_pause_s=0.3, timeout=60.0)
    inputs = [lab.directory / "domains.txt"]
    if repeat:
        valid = [r["input"] for r in lab.truth_domains().to_pylist() if r["dns_case"] != "invalid"]
        inputs.append(tmp / "repeats.txt")
        inputs[-1].write_text("".join(f"{name.upper()}\n" for name in valid[:repeat]))
    config = ScanConfig(
        output=tmp / "out", inputs=tuple(inputs), resolvers=(lab.resolver,),
        port=lab.smtp_port,
        # margins for a loaded 2-core CI machine: only tarpits wait the full greeting timeout
        timeouts=Timeouts(dns_query=1.0, dns_tries=2, connect=2.0, greeting=2.5, command=5.0,
                          starttls=5.0, handshake=5.0, per_address=10.0),
        limits=Limits(max_in_flight=256, dns_in_flight=200, batch_rows=2000),
        trust=TrustStore(extra_anchors=(lab.ca_pem,)), lab_mode=True)
    try:
        scan_lab(config)
    except BaseException:
        lab.stop()
        raise
    return config.output, lab


def test_norway_2010_shares(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # 150 domains listed twice: each is counted once, the duplicates apart
    out, lab = _profile_scan("norway-2010", 1000, tmp_path, repeat=150)
    try:
        truth = Counter(lab.truth_domains().column("starttls_class").to_pylist())
    finally:
        lab.stop()
    d = survey_stats(out)["domains"]
    assert d["starttls"] == dict(truth) and d["strict"].keys() <= truth.keys()
    assert d["input_lines"] == truth.total() and d["duplicates"] == 150
    assert read_dataset(out, "domains").num_rows == truth.total() + 150
    mail = d["mail_domains"]
    assert mail == sum(truth[c] for c in MAIL_CLASSES)
    tolerance = 100 / mail + 0.05  # the profile rounds each class to whole domains
    assert main(["stats", str(out)]) == 0
    lines = capsys.readouterr().out.splitlines()
    for line in lines[lines.index("domains.starttls_class") + 1:]:
        if not line.startswith("  "):
            break
        assert line.split()[3] == str(truth.total()), line  # every share of each domain once
    table = lines[lines.index("mail_domains.starttls_class"):]
    for cls, published in (("none", 67), ("some", 17), ("all", 16)):
        assert abs(d["starttls_share_of_mail_domains"][cls] - published) <= tolerance
        printed = next(ln.split() for ln in table if ln.split() and ln.split()[0] == cls)
        assert printed[1:4] == [str(d["starttls"][cls]), "/", str(mail)]
        assert abs(float(printed[4].rstrip("%")) - published) <= tolerance, printed


def test_facebook_2014_host_shares(tmp_path: Path) -> None:
    out, lab = _profile_scan("facebook-2014", 1000, tmp_path)
    try:
        truth = lab.truth_hosts().to_pylist()
    finally:
        lab.stop()
    h = survey_stats(out)["hosts"]
    answered = [t for t in truth if t["ehlo_status"] == "ok"]
    tls = [t for t in answered if t["outcome"] == "tls_ok"]
    assert h["answered"] == len(answered)
    assert h["starttls_offered"] == sum(1 for t in answered if t["starttls_offered"])
    assert h["tls_ok"] == len(tls)
    assert h["forward_secrecy"] == sum(1 for t in tls if t["forward_secrecy"])
    assert abs(h["starttls_share_of_answered"] - 76) <= 2
    assert abs(h["tls_share_of_answered"] - 74.4) <= 2
    assert 40 <= h["strict_share_of_tls"] <= 60


# -- results written by older schema versions ----------------------------------------------

OLDER_VERSIONS = ("1.0", "1.1", "1.2", "1.3")


@pytest.mark.parametrize("version", OLDER_VERSIONS)
def test_older_scans_read_as_not_measured_never_as_zero(
        lab_scan: Path, tmp_path: Path, version: str, capsys: pytest.CaptureFixture[str]
        ) -> None:
    old = older_scan(lab_scan, tmp_path / version, version)
    now, then = survey_stats(lab_scan), survey_stats(old)
    d = then["domains"]
    # duplicates had no row and private MX domains were `excluded`: neither can be told
    assert d["duplicates"] is None and d["not_measured"] == ["private_mx"]
    assert now["domains"]["duplicates"] == 0 and now["domains"]["not_measured"] == []
    assert "private_mx" not in d["starttls"]
    assert d["starttls"]["excluded"] == now["domains"]["starttls"]["private_mx"] == 1
    for key in ("input_lines", "mail_domains", "starttls_share_of_mail_domains",
                "strict_share_of_mail_domains"):
        assert d[key] == now["domains"][key], key
    assert then["hosts"] == now["hosts"]
    # the greeting's fingerprint (1.2) and the policy columns (1.1): absent, not "(no banner)"
    assert (then["distributions"]["software"] is None) == (version < "1.2")
    assert (then["policies"] is None) == (version < "1.1")
    assert main(["stats", str(old), "--format", "csv"]) == 0
    keys = {(r[0], r[1]) for r in csv.reader(io.StringIO(capsys.readouterr().out)) if r}
    assert ("domains.starttls_class", "private_mx") not in keys
    assert ("domains.starttls_class", "excluded") in keys
    assert not any(table == "input_records" for table, _ in keys)
    assert any(table == "software" for table, _ in keys) == (version >= "1.2")
    for args in (["--format", "json"], ["--format", "markdown"], ["--by", "provider"],
                 ["--failing", "strict"]):
        assert main(["stats", str(old), *args]) == 0, args
    capsys.readouterr()
    # compare, across the schema change: the same domains, no move
    result = compare(old, lab_scan)
    assert result["domains"]["only_old"] == result["domains"]["only_new"] == 0
    assert result["changes"]["starttls"] == {"gained": [], "lost": []}
    assert all(row["change_pct_points"] in (0, None) for row in result["shares"])
    assert main(["compare", str(old), str(lab_scan)]) == 0
    capsys.readouterr()
    html = build_report([old, lab_scan])
    assert "not measured by this scan" not in html  # the latest scan is shown in full
    html = build_report([old])
    assert html.count("not measured by this scan") == 2 + (version < "1.2")
    assert main(["report", str(old), "-o", str(tmp_path / "report.html")]) == 0
