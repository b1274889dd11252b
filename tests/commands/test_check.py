"""`scanner check DOMAIN` on lab domains: the same facts the survey writes, printed."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pytest

from scanner.commands.check import INTERNAL_FIELDS
from scanner.commands.cli import build_parser, main
from scanner.sink.schema import TRUTH_DOMAIN_COLUMNS


def _check(capsys: pytest.CaptureFixture[str], lab: Any, domain: str, *extra: str
           ) -> tuple[int, str]:
    code = main(["check", domain, "--lab", str(lab.directory), *extra])
    return code, capsys.readouterr().out


def _domain_with(lab: Any, **want: Any) -> str:
    return next(r["domain"] for r in lab.truth_domains().to_pylist()
                if all(r[k] == v for k, v in want.items()))


@pytest.mark.parametrize("want", [
    {"mta_sts_mode": "enforce", "mta_sts_delivery_ok": True, "dane_class": "valid"},
    {"dane_class": "broken"},
    {"spf_status": "multiple"},
    {"dns_case": "null_mx"},
])
def test_check_json_equals_truth(capsys: pytest.CaptureFixture[str], fake_internet: Any,
                                 want: dict[str, Any]) -> None:
    domain = _domain_with(fake_internet, **want)
    code, out = _check(capsys, fake_internet, domain, "--json")
    assert code == 0
    row = json.loads(out)["domain"]
    truth = fake_internet.expected(domain)
    assert {c: row[c] for c in TRUTH_DOMAIN_COLUMNS} == {c: truth[c] for c in TRUTH_DOMAIN_COLUMNS}


def test_check_text_names_every_fact(capsys: pytest.CaptureFixture[str],
                                     fake_internet: Any) -> None:
    code, out = _check(capsys, fake_internet, "dane-ee-spki-sha256.test")
    assert code == 0
    for label in ("STARTTLS", "strict TLS", "SPF", "DMARC", "TLS-RPT", "MTA-STS record",
                  "MTA-STS policy", "DANE ", "strict-capable", "TLSA _25._tcp.mx.dane-ee"):
        assert label in out, label
    assert "DANE            valid (1 valid pairs)" in out
    assert "mx.dane-ee-spki-sha256.test" in out and " secure " in out


@pytest.mark.parametrize("domain", ["bad..name", "user@example.test", "two words.test",
                                    "a.test\nb.test", "localhost"])
def test_check_invalid_domain_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str],
                                                     fake_internet: Any, domain: str) -> None:
    code = main(["check", domain, "--lab", str(fake_internet.directory)])
    out, err = capsys.readouterr()
    assert code == 2 and out == "", out  # no report of an "invalid" domain
    assert err.count("\n") == 1 and err.startswith("scanner: error: ") and "mail domain" in err


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_check_shares_the_step_timeouts_and_deadline_of_scan() -> None:
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    scan, check = _options(sub.choices["scan"]), _options(sub.choices["check"])
    timeouts = {s for s in scan if s.startswith("--timeout-")} | {"--deadline"}
    assert len(timeouts) == 7
    for flag in timeouts:  # the same definition: type, default and help
        assert (check[flag].type, check[flag].default, check[flag].help) == \
            (scan[flag].type, scan[flag].default, scan[flag].help)


def test_check_timeouts_reach_the_conversation(capsys: pytest.CaptureFixture[str],
                                               fake_internet: Any) -> None:
    # a tarpit never greets: the default greeting timeout (30 s) would hold the check that long
    started = time.monotonic()
    code, out = _check(capsys, fake_internet, "only-tarpit.test", "--json",
                       "--timeout-greeting", "0.4", "--deadline", "3")
    assert code == 0 and time.monotonic() - started < 15
    hosts = json.loads(out)["hosts"]
    assert [h["outcome"] for h in hosts] == ["greeting_timeout"]
    assert all(h["greeting_ms"] < 3000 for h in hosts)


def test_check_json_leaves_out_internal_fields(capsys: pytest.CaptureFixture[str],
                                               fake_internet: Any) -> None:
    code, out = _check(capsys, fake_internet, "dane-ee-spki-sha256.test", "--json")
    facts = json.loads(out)
    assert code == 0 and facts["checked_at"]
    assert "source" in INTERNAL_FIELDS["domain"]
    for part, fields in INTERNAL_FIELDS.items():
        rows = [facts[part]] if part == "domain" else facts[part]
        assert rows and all(set(fields).isdisjoint(row) for row in rows), part
    assert facts["domain"]["domain"] == "dane-ee-spki-sha256.test"
