"""`scanner check DOMAIN` on lab domains: the same facts the survey writes, printed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from scanner.cli import main
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


def test_check_invalid_domain_is_exit_2(capsys: pytest.CaptureFixture[str],
                                        fake_internet: Any) -> None:
    code, out = _check(capsys, fake_internet, "bad..name")
    assert code == 2 and "invalid" in out
