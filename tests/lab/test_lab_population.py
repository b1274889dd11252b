"""Lab populations: profile shares, determinism, coverage of behaviours and DNS cases, truth."""

from __future__ import annotations

import ipaddress
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from scanner.lab.population.behaviours import ANSWERS_SMTP, NEGOTIATES_TLS, STRICT_VALID, Behaviour
from scanner.lab.population.builder import (
    IDN_ALABEL,
    IDN_DOMAIN,
    INVALID_LINES,
    DnsCase,
    build_zone,
)
from scanner.lab.population.dns_zone import wire_name
from scanner.lab.population.profiles import NO_FS, generate
from scanner.lab.truth.tables import DOMAIN_TRUTH, HOST_TRUTH, truth_tables, write_truth
from scanner.sink.schema import TRUTH_DOMAIN_COLUMNS, TRUTH_HOST_COLUMNS


def _classes(profile: str, n: int, seed: int = 1) -> Counter[str]:
    domains, _ = truth_tables(generate(profile, n, seed), 25)
    return Counter(domains.column("starttls_class").to_pylist())


def test_mixed_has_every_behaviour_and_dns_case() -> None:
    pop = generate("mixed", 200, 1)
    assert {h.behaviour for h in pop.hosts} == set(Behaviour)
    assert {d.case for d in pop.domains} == set(DnsCase) - {DnsCase.INVALID}
    assert 200 <= len(pop.domains) <= 210
    names = set(pop.txt)
    for prefix in ("_dmarc.", "_mta-sts.", "_smtp._tls."):
        assert any(n.startswith(prefix) for n in names)
    assert any(t[0].startswith("v=spf1") for t in pop.txt.values())
    assert pop.tlsa


def test_mixed_covers_every_domain_class() -> None:
    assert set(_classes("mixed", 200)) == {"all", "some", "none", "unreachable", "no_mx",
                                          "null_mx", "dns_error", "private_mx", "invalid"}


def test_mixed_private_mx_domain_points_only_at_private_addresses() -> None:
    pop = generate("mixed", 200, 1)
    (domain,) = [d for d in pop.domains if d.case is DnsCase.PRIVATE_MX]
    ips = [ipaddress.ip_address(ip) for _, name in domain.mx for ip in pop.addresses[name]]
    # RFC 1918 and ULA, both families, none in the lab's 127.0.0.0/8 nor served by a lab host
    assert {ip.version for ip in ips} == {4, 6}
    assert all(ip.is_private and not ip.is_loopback and pop.behaviour_of(str(ip)) is None
               for ip in ips)
    assert set(pop.unserved_addresses()) == {str(ip) for ip in ips}


@pytest.mark.parametrize("profile", ["mixed", "norway-2010", "facebook-2014", "hostile"])
def test_same_seed_same_population_other_seed_differs(profile: str) -> None:
    first = generate(profile, 600, 7)
    assert first == generate(profile, 600, 7)
    assert first.input_lines() == generate(profile, 600, 7).input_lines()
    assert first != generate(profile, 600, 8)


@pytest.mark.parametrize("profile", ["mixed", "norway-2010", "facebook-2014", "hostile"])
def test_hosts_have_distinct_loopback_addresses_never_127_0_0_1(profile: str) -> None:
    pop = generate(profile, 500, 1)
    ips = [h.ip for h in pop.hosts]
    assert len(set(ips)) == len(ips)
    assert all(ipaddress.ip_address(ip).is_loopback and not ip.startswith("127.0.0.") for ip in ips)


@pytest.mark.parametrize("profile", ["mixed", "norway-2010", "facebook-2014", "hostile"])
def test_cert_names_cover_every_name_leading_to_the_host(profile: str) -> None:
    pop = generate(profile, 500, 1)
    for d in pop.domains:
        names = [d.name] if d.case is DnsCase.IMPLICIT else [n for _, n in d.mx]
        for name in names:
            for ip in pop.addresses.get(pop.cnames.get(name, name), ()):
                if d.case is not DnsCase.PRIVATE_MX:  # nothing serves those addresses
                    assert name in pop.host(ip).cert_names


def test_norway_shares_among_answering_domains() -> None:
    classes = _classes("norway-2010", 20_000)
    answered = classes["all"] + classes["some"] + classes["none"]
    assert classes["none"] / answered == pytest.approx(0.67, abs=0.005)
    assert classes["some"] / answered == pytest.approx(0.17, abs=0.005)
    assert classes["all"] / answered == pytest.approx(0.16, abs=0.005)
    total = sum(classes.values())
    for cls in ("unreachable", "no_mx", "null_mx", "dns_error"):
        assert 0 < classes[cls] / total < 0.1  # present, in small shares


def test_norway_hosts_shared_like_providers_with_broken_certificates() -> None:
    pop = generate("norway-2010", 20_000, 1)
    _, hosts = truth_tables(pop, 25)
    behaviours = Counter(hosts.column("behaviour").to_pylist())
    tls = sum(n for b, n in behaviours.items() if Behaviour(b) in NEGOTIATES_TLS)
    bad = sum(behaviours[b] for b in ("self_signed", "expired", "wrong_name"))
    assert bad / tls > 0.4
    dead = sum(n for b, n in behaviours.items() if Behaviour(b) not in ANSWERS_SMTP)
    assert 0.01 < dead / len(pop.hosts) < 0.1
    per_host = Counter(n for d in pop.domains for _, n in d.mx)
    assert max(per_host.values()) > 500  # a big provider
    assert sum(1 for c in per_host.values() if c == 1) > len(pop.hosts) / 3  # the long tail
    assert all(20 <= h.latency_ms <= 300 for h in pop.hosts)


def test_norway_scales_to_345k_domains_and_10k_hosts() -> None:
    pop = generate("norway-2010", 345_000, 1)
    assert len(pop.domains) == 345_000
    assert len(pop.hosts) >= 10_000


def test_facebook_per_host_shares() -> None:
    _, hosts = truth_tables(generate("facebook-2014", 6000, 1), 25)
    rows = [r for r in hosts.to_pylist() if r["ehlo_status"] == "ok"]
    offered = [r for r in rows if r["starttls_offered"]]
    tls = [r for r in rows if Behaviour(r["behaviour"]) in NEGOTIATES_TLS]
    fs = [r for r in tls if r["behaviour"] != NO_FS.value]
    strict = [r for r in tls if Behaviour(r["behaviour"]) in STRICT_VALID]
    assert len(offered) / len(rows) == pytest.approx(0.76, abs=0.01)
    assert len(fs) / len(offered) == pytest.approx(0.74, abs=0.01)
    assert len(strict) / len(tls) == pytest.approx(0.5, abs=0.03)
    assert (len(offered) - len(tls)) / len(rows) == pytest.approx(0.016, abs=0.004)


def test_hostile_cycles_every_failure_mode() -> None:
    pop = generate("hostile", 1000, 1)
    assert {h.behaviour for h in pop.hosts} >= set(Behaviour) - {Behaviour.VALID}
    assert len(pop.hosts) >= 900
    # private_mx is the mixed profile's: a failure of the domain, not a server's behaviour
    assert {d.case for d in pop.domains} == set(DnsCase) - {DnsCase.INVALID, DnsCase.PRIVATE_MX}
    assert all(h.latency_ms == 0 for h in pop.hosts)


def test_latency_override() -> None:
    pop = generate("mixed", 100, 1, latency_ms=(5, 6))
    assert {h.latency_ms for h in pop.hosts} <= {5, 6}


def test_unknown_profile_is_rejected() -> None:
    with pytest.raises(ValueError, match="unknown profile"):
        generate("atlantis", 10, 1)


def _row(table: object, domain: str) -> dict[str, object]:
    rows = [r for r in table.to_pylist() if r["domain"] == domain]  # type: ignore[attr-defined]
    assert len(rows) == 1
    return rows[0]


def test_truth_rows_for_each_dns_case() -> None:
    pop = generate("mixed", 200, 1)
    domains, _ = truth_tables(pop, 25)
    by_case = {d.case: d.name for d in pop.domains}
    expect = {
        DnsCase.NXDOMAIN: ("nxdomain", "dns_error"), DnsCase.SERVFAIL: ("servfail", "dns_error"),
        DnsCase.TIMEOUT: ("timeout", "dns_error"), DnsCase.NO_MX: ("nodata", "no_mx"),
        DnsCase.NULL_MX: ("ok", "null_mx"), DnsCase.MX_NO_ADDRESS: ("ok", "dns_error"),
        DnsCase.MX_CNAME: ("ok", "all"), DnsCase.BIG_MX: ("ok", "some"),
    }
    for case, (status, cls) in expect.items():
        row = _row(domains, by_case[case])
        assert (row["status"], row["starttls_class"], row["dns_case"]) == (status, cls, case)
    big = _row(domains, by_case[DnsCase.BIG_MX])
    assert (big["n_mx_hosts"], big["n_pairs"], big["n_addresses"]) == (30, 30, 3)
    no_addr = _row(domains, by_case[DnsCase.MX_NO_ADDRESS])
    assert (no_addr["n_mx_hosts"], no_addr["n_pairs"], no_addr["n_addresses"]) == (1, 1, 0)
    cname = _row(domains, by_case[DnsCase.MX_CNAME])
    assert cname["n_strict"] == 1 and cname["strict_class"] == "all"


def test_truth_counts_pairs_and_classes() -> None:
    domains, _ = truth_tables(generate("mixed", 200, 1), 25)
    some = _row(domains, "only-valid.test")
    assert (some["n_reachable"], some["n_tls"], some["n_strict"], some["strict_class"]) == (
        1, 1, 1, "all")
    wrong = _row(domains, "only-wrong-name.test")
    assert (wrong["starttls_class"], wrong["strict_class"]) == ("all", "none")
    tarpit = _row(domains, "only-tarpit.test")
    assert (tarpit["starttls_class"], tarpit["n_pairs"], tarpit["n_reachable"]) == (
        "unreachable", 1, 0)
    s454 = _row(domains, "only-starttls-454.test")
    assert (s454["starttls_class"], s454["n_starttls"], s454["n_tls"]) == ("none", 1, 0)


def test_truth_files_and_domain_list(tmp_path: Path) -> None:
    pop = generate("mixed", 200, 1)
    write_truth(pop, tmp_path, 2525)
    lines = (tmp_path / "domains.txt").read_text(encoding="utf-8").splitlines()
    assert len(lines) == len(pop.domains) + len(INVALID_LINES)
    assert IDN_DOMAIN in lines and set(INVALID_LINES) <= set(lines)
    domains = pq.read_table(tmp_path / "truth" / "domains.parquet")
    hosts = pq.read_table(tmp_path / "truth" / "hosts.parquet")
    assert domains.schema.equals(DOMAIN_TRUTH) and hosts.schema.equals(HOST_TRUTH)
    assert set(TRUTH_DOMAIN_COLUMNS) | {"dns_case"} <= set(domains.column_names)
    assert set(TRUTH_HOST_COLUMNS) | {"behaviour"} <= set(hosts.column_names)
    assert domains.num_rows == len(lines)
    assert set(hosts.column("port").to_pylist()) == {2525}
    invalid = [r for r in domains.to_pylist() if r["starttls_class"] == "invalid"]
    assert sorted(r["domain"] for r in invalid) == sorted(INVALID_LINES)
    idn = _row(domains, IDN_ALABEL)
    assert idn["input"] == IDN_DOMAIN and idn["starttls_class"] == "all"


def test_leaf_names_only_for_parseable_tls_certificates() -> None:
    _, hosts = truth_tables(generate("mixed", 200, 1), 25)
    rows = {r["behaviour"]: r for r in hosts.to_pylist()}
    assert rows["valid"]["leaf_names"]
    assert rows["wrong_name"]["leaf_names"] and not set(rows["wrong_name"]["leaf_names"]) & set(
        rows["wrong_name"]["mx_hostnames"])
    for behaviour in ("bad_cert", "no_starttls", "huge_cert", "tarpit"):
        assert rows[behaviour]["leaf_names"] == []


def test_zone_matches_population() -> None:
    pop = generate("mixed", 200, 1)
    zone = build_zone(pop)
    by_case = {d.case: d for d in pop.domains}
    assert wire_name(by_case[DnsCase.NXDOMAIN].name) not in zone.records
    assert zone.exists(wire_name(by_case[DnsCase.NO_MX].name))
    assert zone.failing[wire_name(by_case[DnsCase.TIMEOUT].name)].name == "TIMEOUT"
    assert len(zone.lookup(wire_name(by_case[DnsCase.BIG_MX].name))) == 30
    assert zone.lookup(wire_name(IDN_ALABEL))
