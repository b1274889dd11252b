"""`scanner compare --vantage`: hosts offering STARTTLS from one vantage point only."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from scanner.analysis.vantage_compare import compare_vantage
from scanner.commands.cli import main
from scanner.scan.pipeline import Scan
from scanner.sink.dataset import read_dataset
from scanner.sink.durable import committed_files
from scanner.sink.schema import HOSTS

DOMAINS = ("only-valid.test", "only-self-signed.test", "only-no-starttls.test",
           "only-masked.test", "only-refused.test")


def _strip(src: Path, dst: Path, ips: set[str], how: str) -> Path:
    """A copy of a results directory in which STARTTLS of `ips` was stripped on the way."""
    shutil.copytree(src, dst)
    for path in committed_files(dst, "hosts"):
        rows = pq.read_table(path).to_pylist()
        for r in rows:
            if r["ip"] in ips:
                r.update(starttls_offered=False, starttls_status=how, outcome=(
                    "masked" if how == "masked" else "no_starttls"), handshake_status="not_reached")
        pq.write_table(pa.Table.from_pylist(rows, schema=HOSTS), path)
    return dst


@pytest.fixture(scope="module")
def two_vantages(tmp_path_factory: pytest.TempPathFactory, fast_config_factory: Any,
                 fake_internet: Any) -> tuple[Path, Path, Path, dict[str, str]]:
    base = tmp_path_factory.mktemp("vantage")
    (base / "in.txt").write_text("\n".join(DOMAINS) + "\n")
    config = dataclasses.replace(fast_config_factory(base / "a"), inputs=(base / "in.txt",))
    asyncio.run(Scan(config).run())
    ips = {b: fake_internet.address_of(b) for b in ("valid", "self_signed")}
    b = _strip(base / "a", base / "b", {ips["valid"]}, "masked")  # rewritten to XXXXXXXA at B
    c = _strip(base / "a", base / "c", {ips["self_signed"]}, "not_offered")  # dropped at C
    return base / "a", b, c, ips


def test_masked_at_one_vantage_point_is_listed(two_vantages: Any) -> None:
    a, b, _, ips = two_vantages
    result = compare_vantage(a, b)
    assert [(d["ip"], d["missing_at"], d["how"]) for d in result["differing"]] == [
        (ips["valid"], "b", "masked")]
    hosts = read_dataset(a, "hosts").to_pylist()
    answered = [h for h in hosts if h["ehlo_status"] == "ok"]
    assert result["answered_at_both"] == len(answered) == 4  # refused never answered
    assert result["masked_at_a"] == result["masked_at_b"] - 1 == 1  # only-masked: both sides
    assert result["offered_at_both"] == 1  # self_signed


def test_stripping_at_the_first_vantage_point_too(two_vantages: Any) -> None:
    a, _, c, ips = two_vantages
    result = compare_vantage(c, a)
    assert [(d["ip"], d["missing_at"], d["how"]) for d in result["differing"]] == [
        (ips["self_signed"], "a", "not_offered")]
    assert (result["missing_at_a"], result["missing_at_b"]) == (1, 0)


def test_same_vantage_twice_lists_nothing(two_vantages: Any) -> None:
    a = two_vantages[0]
    assert compare_vantage(a, a)["differing"] == []


def test_compare_vantage_command(two_vantages: Any, capsys: pytest.CaptureFixture[str]) -> None:
    a, b, _, ips = two_vantages
    assert main(["compare", str(a), str(b), "--vantage"]) == 0
    out = capsys.readouterr().out
    assert f"{ips['valid']}:" in out and "missing at B (masked)" in out
    assert main(["compare", str(a), str(b), "--vantage", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["missing_at_b"] == 1
    assert main(["compare", str(a), str(b), "--vantage", "--format", "csv"]) == 0
    assert capsys.readouterr().out.count("\n") == 2


def test_lab_stripping_path_is_found(two_vantages: Any, fast_config_factory: Any,
                                     fake_internet: Any, tmp_path: Path) -> None:
    a = two_vantages[0]
    strip_port = fake_internet.lab.info["strip_port"]
    assert strip_port and strip_port != fake_internet.smtp_port
    base = fast_config_factory(tmp_path / "stripped")
    config = dataclasses.replace(base, inputs=(a.parent / "in.txt",), port=strip_port)
    asyncio.run(Scan(config).run())
    result = compare_vantage(a, config.output)
    truth = {r["ip"]: r for r in fake_internet.truth_hosts().to_pylist()}
    answered = [ip for ip, r in truth.items() if r["ehlo_status"] == "ok"
                and ip in {h["ip"] for h in read_dataset(a, "hosts").to_pylist()}]
    offered = sorted(ip for ip in answered if truth[ip]["starttls_offered"])
    assert sorted(d["ip"] for d in result["differing"]) == offered == sorted(
        fake_internet.address_of(b) for b in ("valid", "self_signed"))
    assert {(d["missing_at"], d["how"]) for d in result["differing"]} == {("b", "masked")}
    assert result["masked_at_b"] == len(answered) - 1  # all but the plain host: masked


def test_lab_strips_starttls_for_one_client_address(tmp_path: Path) -> None:
    """`lab serve --strip-client`: the same lab, scanned from two source addresses."""
    from scanner.config import Limits, ScanConfig, Timeouts, TrustStore
    from scanner.lab.serve import LabProcess

    with LabProcess.start("mixed", 60, 3, tmp_path / "lab", latency_ms=(0, 0),
                          strip_clients=["127.0.0.2"], timeout=60.0) as lab:
        assert lab.info["strip_clients"] == ["127.0.0.2"]

        def scan(name: str, source: str) -> Path:
            config = ScanConfig(
                output=tmp_path / name, inputs=(lab.directory / "domains.txt",),
                resolvers=(lab.resolver,), port=lab.smtp_port,
                timeouts=Timeouts(dns_query=0.5, dns_tries=2, connect=1.0, greeting=1.5,
                                  command=1.5, starttls=1.5, handshake=1.5, per_address=4.0),
                limits=Limits(max_in_flight=64, batch_rows=50),
                trust=TrustStore(extra_anchors=(lab.ca_pem,)), lab_mode=True,
                mta_sts_port=lab.info.get("mta_sts_port", 443), source_address=source)
            asyncio.run(Scan(config).run())
            return config.output

        a, b = scan("a", "127.0.0.1"), scan("b", "127.0.0.2")
        truth = {r["ip"]: r for r in lab.truth_hosts().to_pylist()}
    assert json.loads((a / "manifest.json").read_text())["config"]["source_address"] == (
        "127.0.0.1")
    result = compare_vantage(a, b)
    answered = {h["ip"] for h in read_dataset(a, "hosts").to_pylist() if h["ehlo_status"] == "ok"}
    offered = sorted(ip for ip, r in truth.items() if r["starttls_offered"])
    assert offered and set(offered) <= answered  # STARTTLS hosts to strip, all of them scanned
    assert sorted(d["ip"] for d in result["differing"]) == offered
    assert {(d["missing_at"], d["how"]) for d in result["differing"]} == {("b", "masked")}
    assert result["missing_at_a"] == 0 and result["offered_at_both"] == 0
    assert result["answered_at_both"] == len(answered)
