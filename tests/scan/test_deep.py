"""`--deep`: TLS versions and DHE-only offers per host, shared DH primes, politeness, the lab."""

from __future__ import annotations

import asyncio
import base64
import dataclasses
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from scanner.commands.cli import main
from scanner.lab.population.pki import DH1024_PEM
from scanner.scan.deep import dh_prime_of
from scanner.scan.pipeline import Scan
from scanner.sink.dataset import read_dataset
from scanner.sink.schema import TRUTH_DEEP_COLUMNS
from scanner.tls.dh_primes import (
    ffdhe_group_name,
    prime_fingerprint,
    shared_group_name,
    shared_primes,
)

OAKLEY2 = int(
    "FFFFFFFFFFFFFFFFC90FDAA22168C234C4C6628B80DC1CD129024E088A67CC74020BBEA63B139B22514A0879"
    "8E3404DDEF9519B3CD3A431B302B0A6DF25F14374FE1356D6D51C245E485B576625E7EC6F44C42E9A637ED6B"
    "0BFF5CB6F406B7EDEE386BFB5A899FA5AE9F24117C4B1FE649286651ECE65381FFFFFFFFFFFFFFFF", 16)


def test_shared_primes_include_the_standard_groups() -> None:
    primes = shared_primes()
    assert primes[OAKLEY2] == "oakley2_1024"  # RFC 2409 §6.2, as printed there
    assert sorted({p.bit_length() for p in primes}) == [768, 1024, 1536, 2048, 3072, 4096,
                                                        6144, 8192]
    ffdhe = {name: p for p, name in primes.items() if name.startswith("ffdhe")}
    assert sorted(ffdhe) == ["ffdhe2048", "ffdhe3072", "ffdhe4096", "ffdhe6144", "ffdhe8192"]
    for name, prime in ffdhe.items():  # what the handshake parser names a negotiated group
        assert ffdhe_group_name(prime) == name
    assert ffdhe_group_name(OAKLEY2) is None


def test_naming_a_negotiated_ffdhe_group_computes_no_pi_group(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from scanner.tls import dh_primes

    expected = dict(dh_primes.ffdhe_primes())

    def no_pi(bits: int) -> int:
        raise AssertionError("the pi groups were computed")

    monkeypatch.setattr(dh_primes, "_pi_times_power_of_two", no_pi)
    dh_primes.ffdhe_primes.cache_clear()
    try:
        assert dh_primes.ffdhe_primes() == expected and len(expected) == 5
    finally:
        dh_primes.ffdhe_primes.cache_clear()


def test_the_lab_dh1024_prime_is_custom() -> None:
    der = base64.b64decode(b"".join(DH1024_PEM.splitlines()[1:-1]))
    # DHParameter ::= SEQUENCE { prime INTEGER, base INTEGER }: 30 81 xx 02 81 yy <prime> ...
    assert der[0] == 0x30 and der[3] == 0x02 and der[4] == 0x81
    prime = int.from_bytes(der[6:6 + der[5]], "big")
    assert prime.bit_length() == 1024 and shared_group_name(prime) is None
    assert len(prime_fingerprint(prime)) == 16


def _ske(p: int) -> bytes:
    raw = p.to_bytes((p.bit_length() + 7) // 8, "big")
    body = len(raw).to_bytes(2, "big") + raw + b"\x00\x01\x02" + b"\x00\x01\x05"
    return b"\x0c" + len(body).to_bytes(3, "big") + body


@pytest.mark.parametrize(("message", "expected"), [
    (_ske(OAKLEY2), OAKLEY2),
    (_ske(OAKLEY2)[:40], None),  # cut short
    (b"\x02\x00\x00\x00", None),  # not a ServerKeyExchange
    (b"", None),
])
def test_dh_prime_of_server_key_exchange(message: bytes, expected: int | None) -> None:
    assert dh_prime_of(message) == expected


@pytest.fixture(scope="module")
def deep_scan(tmp_path_factory: pytest.TempPathFactory, fast_config_factory: Any,
              fake_internet: Any) -> Path:
    fake_internet.control("reset_counts")
    base = fast_config_factory(tmp_path_factory.mktemp("deep") / "out")
    config = dataclasses.replace(base, deep=True, deep_spacing_s=0.0)
    asyncio.run(Scan(config).run())
    output: Path = config.output
    return output


def test_deep_scan_equals_truth(deep_scan: Path, fake_internet: Any) -> None:
    truth = {r["ip"]: r for r in fake_internet.truth_hosts().select(
        [*TRUTH_DEEP_COLUMNS, "behaviour"]).to_pylist()}
    scan = read_dataset(deep_scan, "hosts").to_pylist()
    diff = [f"{h['ip']} ({truth[h['ip']]['behaviour']}) {c}: scan={h[c]!r} "
            f"truth={truth[h['ip']][c]!r}"
            for h in scan for c in TRUTH_DEEP_COLUMNS if h[c] != truth[h["ip"]][c]]
    assert not diff, "\n".join(diff[:40])
    assert {h["dhe_group"] for h in scan} == {None, "custom"}
    assert all(h["deep_checked"] == bool(h["tls_versions_accepted"]) for h in scan)


def test_deep_conversations_never_overlap_on_one_address(deep_scan: Path,
                                                          fake_internet: Any) -> None:
    counts = fake_internet.counts()
    hosts = read_dataset(deep_scan, "hosts", ["ip", "deep_checked"]).to_pylist()
    for h in hosts:
        c = counts.get(h["ip"])
        if c is None:
            continue
        assert c["max_concurrent"] <= 1, h["ip"]
        assert c["forbidden_commands"] == 0
        if h["deep_checked"]:  # the main probe, three other versions, one DHE-only offer
            assert c["connections"] == 5, h["ip"]


def test_default_scan_leaves_deep_columns_empty(tmp_path: Path, fast_config_factory: Any
                                                ) -> None:
    config = fast_config_factory(tmp_path / "out")
    config = dataclasses.replace(config, inputs=(tmp_path / "one.txt",))
    (tmp_path / "one.txt").write_text("only-dhe1024.test\n")
    asyncio.run(Scan(config).run())
    row = read_dataset(config.output, "hosts").to_pylist()[0]
    assert (row["deep_checked"], row["tls_versions_accepted"], row["dhe_accepted"]) == (
        False, [], None)


def test_check_deep_prints_versions_and_dhe(capsys: pytest.CaptureFixture[str],
                                            fake_internet: Any) -> None:
    assert main(["check", "only-dhe1024.test", "--lab", str(fake_internet.directory),
                 "--deep"]) == 0
    out = capsys.readouterr().out
    assert "accepts TLSv1.2; refuses TLSv1, TLSv1.1, TLSv1.3; DHE-only accepted (1024-bit, " \
           "custom)" in out


def test_truth_deep_columns_are_in_the_schema() -> None:
    from scanner.sink.schema import HOSTS

    assert all(isinstance(HOSTS.field(c).type, pa.DataType) for c in TRUTH_DEEP_COLUMNS)


def test_stats_weak_dh_table(deep_scan: Path, fake_internet: Any) -> None:
    from scanner.analysis.policy import policy_rows, policy_stats

    stats = policy_stats(deep_scan)
    assert stats is not None and stats["deep"] is not None
    truth = [r for r in fake_internet.truth_hosts().to_pylist() if r["tls_versions_accepted"]]
    deep = stats["deep"]
    assert deep["hosts_examined"] == len(truth)
    assert deep["accepts_TLSv1"] == sum("TLSv1" in r["tls_versions_accepted"] for r in truth)
    assert deep["accepts_dhe_only_offer"] == sum(bool(r["dhe_accepted"]) for r in truth)
    assert deep["dhe_le_1024_bits"] == deep["accepts_dhe_only_offer"] > 0
    assert deep["dhe_shared_prime"] == 0
    assert any(r[0] == "deep_hosts" and r[1] == "dhe_le_1024_bits" for r in policy_rows(stats))
