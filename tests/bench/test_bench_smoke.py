"""Smoke version of the national-scale benchmark: a tiny norway-2010 survey, measured, checked."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

import common  # noqa: E402
import dns_queries  # noqa: E402
import floor  # noqa: E402
import layers  # noqa: E402
import survey  # noqa: E402


@pytest.fixture(scope="module")
def small_lab(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from scanner.lab.serve import LabProcess

    lab = LabProcess.start("norway-2010", 600, 3, tmp_path_factory.mktemp("bench-lab"),
                           latency_ms=(0, 20), greet_pause_s=0.1, timeout=60.0)
    try:
        yield lab
    finally:
        lab.stop()


def test_survey_measures_and_matches_truth(small_lab, tmp_path: Path,  # type: ignore[no-untyped-def]
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    # short timeouts: the lab's tarpits would otherwise hold the smoke run for 10 s
    monkeypatch.setattr(survey, "BENCH_TIMEOUTS", (
        "--timeout-dns", "1", "--timeout-connect", "2", "--timeout-greeting", "1.5",
        "--timeout-command", "2", "--timeout-starttls", "2", "--timeout-handshake", "2",
        "--deadline", "5"))
    r = survey.run_survey(600, seed=3, latency="0-20", work=tmp_path, loop="asyncio",
                          concurrency=200, lab=small_lab)
    assert r["returncode"] == 0
    assert r["domains_done"] >= 600 and r["probes"] == small_lab.info["hosts"]
    assert r["cpu_s"] > 0 and r["max_rss_mib"] > 20 and r["wall_s"] > 0
    assert r["cpu_ms_per_probe"] > 0
    conn = r["connections"]
    assert conn["wrong"] == 0 and conn["max_concurrent"] == 1 and conn["forbidden_commands"] == 0
    assert r["truth"]["domain_mismatches"] == 0, r["truth"]["domain_examples"]
    assert r["truth"]["host_mismatches"] == 0, r["truth"]["host_examples"]
    row = survey.result_row(r)
    assert len(row) == len(survey.RESULT_HEADER)


def test_dns_queries_measures_the_channel_with_the_cache_off_and_on(  # type: ignore[no-untyped-def]
        small_lab, capsys: pytest.CaptureFixture[str]) -> None:
    assert dns_queries.main(["--lab", str(small_lab.directory), "--queries", "300",
                             "--rounds", "2", "--loop", "asyncio", "--no-record"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["queries"] == 300 and r["answered"] > 250  # the lab's DNS failures excepted
    for side, cache in (("off", False), ("on", True)):  # each round ran with the cache asked for
        assert [run["query_cache"] for run in r["runs"][side]] == [cache, cache]
        assert all(us > 0 for us in r[f"us_per_query_{side}"])
    assert r["off_to_on"] > 0


def test_layers_measure_the_same_probes_in_every_layer(  # type: ignore[no-untyped-def]
        small_lab, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    # short timeouts: the lab's tarpits would otherwise hold every pass for 10 s
    monkeypatch.setattr(survey, "BENCH_TIMEOUTS", (
        "--timeout-dns", "1", "--timeout-connect", "1", "--timeout-greeting", "1",
        "--timeout-command", "1", "--timeout-starttls", "1", "--timeout-handshake", "1",
        "--deadline", "3"))
    assert layers.main(["--lab", str(small_lab.directory), "--rounds", "2", "--loop", "asyncio",
                        "--concurrency", "200", "--no-record"]) == 0
    r = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert r["probes"] == small_lab.info["hosts"]
    # every pass probed every address once (the DNS layers found them all through their
    # covering domains) and reached TLS on the same hosts
    assert {run["probes"] for layer in layers.LAYERS for run in r["runs"][layer]} == {
        small_lab.info["hosts"]}
    tls = {run["tls"] for layer in layers.LAYERS for run in r["runs"][layer]}
    assert len(tls) == 1 and tls.pop() > 0
    for layer in layers.LAYERS:
        assert len(r["runs"][layer]) == 2 and r["ms_per_probe"][layer] > 0
    # the DNS layers asked at least an MX query per domain and an address query per address
    # found, then also four TXT per domain (and TLSA per MX host); the others asked nothing
    plain, policies = (r["runs"][layer][0]["dns_queries"]
                       for layer in ("floor_dns", "floor_dns_policies"))
    assert plain >= r["domains"] + small_lab.info["hosts"]
    assert policies >= plain + 4 * r["domains"]
    assert all(run["dns_queries"] == 0 for layer in layers.LAYERS[:3]
               for run in r["runs"][layer])
    # only the judged layer judged, and every TLS host's chain
    assert [run["judged"] for run in r["runs"]["judged"]] == [run["tls"] for run in
                                                             r["runs"]["judged"]]
    assert all(run["judged"] == 0 for layer in layers.LAYERS if layer != "judged"
               for run in r["runs"][layer])
    ms = r["ms_per_probe"]
    for layer in layers.LAYERS[1:]:
        assert r["ratio_to_floor"][layer] == round(ms[layer] / ms["floor"], 2)
    assert r["design_steps_at_cheapest"] == round(
        (ms["judged"] + ms["floor_dns_policies"] - ms["floor"]) / ms["floor"], 2)


def test_floor_client_reaches_every_listening_host(small_lab, tmp_path: Path  # type: ignore[no-untyped-def]
                                                   ) -> None:
    r = floor.run_floor(small_lab.directory, tmp_path, concurrency=200, greeting_s=1.5,
                        deadline_s=5.0)
    assert r["probes"] == small_lab.info["hosts"]
    reached = r["reached"]
    assert reached.get("tls", 0) > 0 and reached.get("plain", 0) > 0
    assert r["cpu_ms_per_probe"] > 0


def test_floors_with_dns_resolve_and_probe_every_host(small_lab, tmp_path: Path  # type: ignore[no-untyped-def]
                                                      ) -> None:
    plain = floor.run_floor(small_lab.directory, tmp_path, concurrency=200, greeting_s=1.5,
                            deadline_s=5.0, dns="dns")
    policies = floor.run_floor(small_lab.directory, tmp_path, concurrency=200, greeting_s=1.5,
                               deadline_s=5.0, dns="dns+policies")
    domains = len(floor.floor_domains(small_lab.directory, tmp_path).read_text().split())
    for r in (plain, policies):  # every address found through MX and A/AAAA, probed once
        assert r["domains"] == domains and r["probes"] == small_lab.info["hosts"]
        assert r["reached"].get("tls", 0) > 0
    # MX per domain and A + AAAA per MX host, at least; then four TXT per domain and TLSA per
    # MX host on top
    assert plain["dns_queries"] >= domains + 2 * small_lab.info["hosts"] // 2
    assert policies["dns_queries"] >= plain["dns_queries"] + 4 * domains


def test_scanner_over_the_floor_hosts_with_and_without_policies(  # type: ignore[no-untyped-def]
        small_lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(survey, "BENCH_TIMEOUTS", (
        "--timeout-dns", "1", "--timeout-greeting", "1.5", "--deadline", "5"))
    full = floor.run_scanner_on_hosts(small_lab.directory, tmp_path, 200)
    lean = floor.run_scanner_on_hosts(small_lab.directory, tmp_path, 200, ("--no-policies",))
    # one covering domain per host: every host probed once, by both runs
    assert full["probes"] == lean["probes"] == small_lab.info["hosts"]
    assert full["domains"] == lean["domains"] < 600
    assert 0 < lean["cpu_ms_per_probe"] and 0 < full["cpu_ms_per_probe"]


def test_floor_rounds_report_medians_of_interleaved_runs(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    def run(cpu: float) -> dict[str, float]:
        return {"cpu_ms_per_probe": cpu, "cpu_s": cpu * 10}

    made = iter([(0.5, 1.5, 1.0), (0.4, 1.6, 1.2), (0.6, 1.2, 0.9)])  # floor, scanner, lean

    def one_round(lab_dir: Path, args: argparse.Namespace) -> dict[str, object]:
        f, full, lean = next(made)
        r: dict[str, object] = {**run(f), "scanner": run(full), "scanner_no_policies": run(lean),
                                "floor_dns": run(f + 0.1), "floor_dns_policies": run(f + 0.2)}
        for ratio, scan_key, floor_key in floor._RATIOS:
            base = r if floor_key is None else r[floor_key]
            r[ratio] = round(r[scan_key]["cpu_ms_per_probe"]  # type: ignore[index]
                             / base["cpu_ms_per_probe"], 2)  # type: ignore[index]
        return r

    monkeypatch.setattr(floor, "_one_round", one_round)
    result = floor._floor_and_scanner(Path("."), argparse.Namespace(rounds=3))
    # each ratio is the median of its rounds' ratios (3.0, 4.0, 2.0 for scanner/floor) ...
    assert result["ratio"] == 3.0
    assert result["ratio_no_policies"] == 2.0  # 2.0, 3.0, 1.5
    assert result["ratio_to_dns_policies_floor"] == round(1.5 / 0.7, 2)  # of 2.14, 2.67, 1.5
    # ... and each run reported is its median run
    assert result["cpu_ms_per_probe"] == 0.5 and result["scanner"]["cpu_ms_per_probe"] == 1.5
    assert result["scanner_no_policies"]["cpu_ms_per_probe"] == 1.0
    assert [r["floor"] for r in result["rounds"]] == [0.5, 0.4, 0.6]


def test_results_table_appends_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(common, "RESULTS_MD", tmp_path / "RESULTS.md")
    common.append_row("Runs", ["a", "b"], [1, 2])
    common.append_row("Other", ["c"], [3])
    common.append_row("Runs", ["a", "b"], [4, 5])
    text = (tmp_path / "RESULTS.md").read_text()
    runs = text.split("## Runs")[1].split("## Other")[0]
    assert "| 1 | 2 |" in runs and "| 4 | 5 |" in runs
    assert "| 3 |" in text.split("## Other")[1]


def test_rss_by_tenth_keeps_the_largest_sample_of_each_tenth(tmp_path: Path) -> None:
    samples = [(t / 2, 100.0 + t) for t in range(40)]  # 20 s, growing 2 MiB a second
    assert common._by_tenth(samples, 20.0) == tuple(103.0 + 4 * i for i in range(10))
    assert common._by_tenth(samples[:5], 20.0) == ()  # too short to say
    run = common.run_measured([sys.executable, "-c", "import time; b = bytearray(60 << 20); "
                               "b[::4096] = b'x' * len(b[::4096]); time.sleep(11)"],
                              log=tmp_path / "log")
    assert len(run.rss_by_tenth) == 10 and min(run.rss_by_tenth[1:]) > 60


def test_peak_rss_is_the_childs_own_not_what_it_shared_with_its_parent(tmp_path: Path) -> None:
    # ru_maxrss of a child counts the parent's memory it held between fork and exec
    parent = bytearray(400 << 20)
    parent[::4096] = b"x" * len(parent[::4096])
    run = common.run_measured([sys.executable, "-c", "import time; b = bytearray(60 << 20); "
                               "b[::4096] = b'x' * len(b[::4096]); time.sleep(0.5)"],
                              log=tmp_path / "log")
    del parent
    assert 60 < run.max_rss_mib < 200, run.max_rss_mib


def test_measured_children_start_from_current_bytecode() -> None:
    import importlib.util

    # a module edited since its .pyc was written (or never compiled): the measured process
    # would compile it at every start, where PYTHONDONTWRITEBYTECODE is set
    sources = [ROOT / "scanner" / "scan" / "gc_policy.py", ROOT / "benchmarks" / "floor.py"]
    for source in sources:
        Path(importlib.util.cache_from_source(str(source))).unlink(missing_ok=True)
    env = common.scanner_env()
    assert str(ROOT / "benchmarks") in env["PYTHONPATH"].split(":")  # `-m floor` finds it
    for source in sources:
        pyc = Path(importlib.util.cache_from_source(str(source))).read_bytes()
        # the header's source mtime and size (PEP 552, timestamp-based) are the file's own
        stat = source.stat()
        assert int.from_bytes(pyc[8:12], "little") == int(stat.st_mtime) & 0xFFFFFFFF
        assert int.from_bytes(pyc[12:16], "little") == stat.st_size & 0xFFFFFFFF


def test_ab_sides_import_their_own_trees(tmp_path: Path) -> None:
    import ab

    with ab.side_tree("HEAD", tmp_path) as (sha, tree):
        assert sha == common.commit()[:len(sha)] and tree != ROOT
        env = ab.side_env(tree)
        assert ab.imported_scanner(tree, env) == (tree / "scanner").resolve()
        # the pitfall the side's own directory avoids: started from the repository's root,
        # the same environment imports the root's scanner, whatever PYTHONPATH says
        assert ab.imported_scanner(ROOT, env) == (ROOT / "scanner").resolve()
    assert not tree.exists()  # the worktree is gone, and git no longer lists it
    assert str(tree) not in subprocess.run(["git", "-C", str(ROOT), "worktree", "list"],
                                           capture_output=True, text=True, check=True).stdout


def test_ab_alternates_two_sides_over_one_sample(small_lab, tmp_path: Path,  # type: ignore[no-untyped-def]
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import ab

    monkeypatch.setattr(survey, "BENCH_TIMEOUTS", (
        "--timeout-dns", "1", "--timeout-greeting", "1.5", "--deadline", "5"))
    r = ab.run_pairs("HEAD", ".", small_lab.directory, tmp_path, pairs=2, sample=60,
                     extra=("--no-policies",))
    assert r["new"] == "." and r["old"] and r["domains"] == 60
    assert len(r["old_cpu_s"]) == len(r["new_cpu_s"]) == len(r["ratios"]) == 2
    assert all(c > 0 for c in r["old_cpu_s"] + r["new_cpu_s"])
    # each pair's ratio is of its own two runs; the figure is their median
    for o, n, ratio in zip(r["old_cpu_s"], r["new_cpu_s"], r["ratios"], strict=True):
        assert abs(ratio - n / o) < 0.05
    assert abs(r["median_ratio"] - statistics.median(r["ratios"])) <= 0.001
    assert isinstance(r["same_classes"], bool)
    row = ab.result_row(r)
    assert len(row) == len(ab.AB_HEADER) and row[4] == "--no-policies"
    sample = (tmp_path / "ab-domains.txt").read_text().split()
    lab_domains = set((small_lab.directory / "domains.txt").read_text().split())
    assert len(set(sample)) == 60 and set(sample) <= lab_domains
    # the same seed gives the same sample
    again = ab.sample_domains(small_lab.directory, 60, 1, tmp_path / "again.txt")
    assert again.read_text().split() == sample


def test_ab_command_line_passes_what_follows_the_double_dash_to_the_scans(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import ab

    seen: dict[str, object] = {}

    def run_pairs(old: str, new: str, lab_dir: Path, work: Path, **kw: object) -> dict[str, object]:
        seen.update(old=old, new=new, lab=lab_dir, work=work, **kw)
        raise SystemExit(0)

    monkeypatch.setattr(ab, "run_pairs", run_pairs)
    with pytest.raises(SystemExit):
        ab.main(["abc123", "--lab", str(tmp_path), "--pairs", "3", "--work", str(tmp_path / "w"),
                 "--sample", "0", "--", "--no-policies", "--concurrency", "50"])
    assert seen["old"] == "abc123" and seen["new"] == ab.WORKING_TREE
    assert seen["lab"] == tmp_path and seen["work"] == tmp_path / "w"
    assert seen["pairs"] == 3 and seen["sample"] is None
    assert seen["extra"] == ["--no-policies", "--concurrency", "50"]


def test_benchmarks_contact_only_the_hosts_a_lab_serves(fake_internet) -> None:  # type: ignore[no-untyped-def]
    """The truth lists private MX addresses too (never served): the benchmarks skip them."""
    import ipaddress

    served = common.served_hosts(fake_internet.directory, ["ip"]).column("ip").to_pylist()
    truth = fake_internet.truth_hosts()
    behaviours = truth.column("behaviour").to_pylist()
    assert None in behaviours  # the mixed profile's private-mx.test addresses
    assert sorted(served) == sorted(ip for ip, b in zip(truth.column("ip").to_pylist(),
                                                        behaviours, strict=True) if b is not None)
    assert all(ipaddress.ip_address(ip).is_loopback for ip in served)


def test_same_rows_scans_both_sides_of_one_lab_and_shows_a_changed_row(
        small_lab, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        capsys: pytest.CaptureFixture[str]) -> None:
    import same_rows
    from helpers.results import altered_copy

    monkeypatch.setattr(survey, "BENCH_TIMEOUTS", (
        "--timeout-dns", "1", "--timeout-greeting", "1.5", "--deadline", "5"))
    # the working tree against a copy of itself: a directory side, as a detached tree would be
    assert same_rows.main([str(ROOT), ".", "--lab", str(small_lab.directory), "--sample", "60",
                           "--work", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["domains", "domain_mx", "hosts", "certificates"]
    assert all(line.endswith("same") for line in lines)
    old, new = tmp_path / "same-rows-old", tmp_path / "same-rows-new"
    assert (old / "manifest.json").is_file() and (new / "manifest.json").is_file()
    # a changed value is found; a changed timing column is not
    banner = altered_copy(new, tmp_path / "banner", "hosts",
                          lambda rows: [{**rows[0], "banner": "changed"}, *rows[1:]])
    assert same_rows.main(["--compare", str(old), str(banner)]) == 1
    found = [line for line in capsys.readouterr().out.splitlines() if not line.startswith(" ")]
    assert [line.endswith("same") for line in found] == [True, True, False, True]
    assert found[2].startswith("hosts") and found[2].endswith("1 only in old, 1 only in new")
    timing = altered_copy(new, tmp_path / "timing", "hosts",
                          lambda rows: [{**r, "total_ms": 1, "mx_hostnames": []} for r in rows])
    assert same_rows.main(["--compare", str(old), str(timing)]) == 0
