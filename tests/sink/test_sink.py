"""The sink: part files, the commit log, resume, failures, the manifest and the readers."""

from __future__ import annotations

import errno
import hashlib
import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import scanner
from scanner.config import Limits, ScanConfig, TrustStore
from scanner.model.records import (
    CertificateRecord,
    ChainVerdict,
    DomainMxRecord,
    DomainRecord,
    HostRecord,
    SmtpProbe,
    TlsFacts,
)
from scanner.model.status import (
    ChainStatus,
    ConnectStatus,
    DnsStatus,
    HandshakeStatus,
    HostOutcome,
    MxSource,
    ReplyStatus,
    StartTlsClass,
    StartTlsStatus,
)
from scanner.scan.summary import HostSummary, load_resume_state
from scanner.sink.dataset import committed_rows, read_dataset, read_manifest
from scanner.sink.durable import OutputError, read_commits
from scanner.sink.manifest import ScanManifest
from scanner.sink.parquet import DatasetWriter
from scanner.sink.schema import DATASETS, SCHEMA_VERSION

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def make_host(ip: str, *, tls: bool = True, valid: bool = True) -> HostRecord:
    """A probed address: TLS with a one-certificate chain, or a server without STARTTLS."""
    sha = hashlib.sha256(ip.encode()).hexdigest()
    probe = SmtpProbe(
        ip=ip, port=25, started_at=T0, connect_status=ConnectStatus.OK,
        greeting_status=ReplyStatus.OK, ehlo_status=ReplyStatus.OK,
        starttls_status=StartTlsStatus.OK if tls else StartTlsStatus.NOT_OFFERED,
        handshake_status=HandshakeStatus.OK if tls else HandshakeStatus.NOT_REACHED,
        ehlo_tls_status=ReplyStatus.OK if tls else ReplyStatus.NOT_REACHED,
        greeting_code=220, banner=f"{ip} ESMTP", ehlo_code=250,
        ehlo_extensions=("PIPELINING", "STARTTLS") if tls else ("PIPELINING",),
        starttls_offered=tls, tls=TlsFacts("TLSv1.3", "TLS_AES_128_GCM_SHA256", True,
                                           "x25519", 253) if tls else None,
        chain_der=(sha.encode(),) if tls else (), total_ms=42)
    chain = ChainVerdict(ChainStatus.VALID if valid else ChainStatus.SELF_SIGNED, valid) \
        if tls else None
    return HostRecord(probe=probe, outcome=HostOutcome.TLS_OK if tls else HostOutcome.NO_STARTTLS,
                      mx_hostnames=(f"mx.{ip}.test",), leaf_sha256=sha if tls else None,
                      chain_sha256=(sha,) if tls else (), chain=chain,
                      leaf_names=(f"mx.{ip}.test",) if tls else ())


def make_cert(host: HostRecord) -> CertificateRecord:
    """The leaf certificate of a TLS host."""
    assert host.leaf_sha256 is not None
    return CertificateRecord(sha256=host.leaf_sha256, der=host.probe.chain_der[0], parse_ok=True,
                             subject="CN=leaf", san_dns=host.leaf_names, not_before=T0,
                             not_after=T0 + timedelta(days=90), key_type="ec", key_bits=256)


def make_edge(domain: str, host: HostRecord) -> DomainMxRecord:
    """The edge from a domain to one of its hosts."""
    tls = host.probe.tls is not None
    return DomainMxRecord(domain=domain, mx_hostname=host.mx_hostnames[0], preference=10,
                          ip=host.probe.ip, port=25, mx_source=MxSource.MX, outcome=host.outcome,
                          smtp_ok=True, starttls_offered=tls, tls_ok=tls, chain_valid=tls or None,
                          name_match=tls or None, strict_ok=tls, address_status=DnsStatus.OK)


def make_domain(line_no: int, name: str | None, cls: StartTlsClass = StartTlsClass.ALL,
                ) -> DomainRecord:
    """One rolled-up input line (invalid when name is None)."""
    return DomainRecord(
        line_no=line_no, input=name or "not a domain", source="list.txt", domain=name,
        domain_unicode=name, status="ok" if name else "invalid",
        reason=None if name else "bad label", mx_source=MxSource.MX if name else None,
        mx_hostnames=("mx.a.test",) if name else (), n_mx_hosts=1, n_addresses=1, n_pairs=1,
        n_reachable=1, n_starttls=1, n_tls=1, n_strict=1, starttls_class=cls, strict_class=cls,
        dns_ms=3, finished_at=T0)


def add_scanned_domain(writer: DatasetWriter, line_no: int, name: str, host: HostRecord) -> None:
    """What the pipeline does for one domain: certificate and host first, then edges and row."""
    if host.leaf_sha256 is not None:
        writer.append_certificate(make_cert(host))
    writer.append_host(host)
    writer.append_domain(make_domain(line_no, name), [make_edge(name, host)])


def all_files(outdir: Path) -> set[str]:
    """Every file under outdir, relative."""
    return {str(p.relative_to(outdir)) for p in outdir.rglob("*") if p.is_file()}


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


# -- writing and reading -----------------------------------------------------------------------

def test_round_trip_keeps_every_dataset_and_the_exact_schema(tmp_path: Path) -> None:
    out = tmp_path / "out"
    tls_host, plain_host = make_host("192.0.2.1"), make_host("192.0.2.2", tls=False)
    with DatasetWriter(out) as writer:
        add_scanned_domain(writer, 1, "a.test", tls_host)
        add_scanned_domain(writer, 2, "b.test", plain_host)
        writer.append_domain(make_domain(3, None, StartTlsClass.INVALID))
    domains = read_dataset(out, "domains")
    assert domains.column("domain").to_pylist() == ["a.test", "b.test", None]
    assert domains.column("starttls_class").to_pylist() == ["all", "all", "invalid"]
    assert domains.column("finished_at").to_pylist() == [T0] * 3
    hosts = read_dataset(out, "hosts").to_pylist()
    assert [(h["ip"], h["outcome"], h["tls_version"], h["chain_length"]) for h in hosts] == [
        ("192.0.2.1", "tls_ok", "TLSv1.3", 1), ("192.0.2.2", "no_starttls", None, 0)]
    certs = read_dataset(out, "certificates")
    assert certs.column("der").to_pylist() == [tls_host.probe.chain_der[0]]
    edges = read_dataset(out, "domain_mx")
    assert edges.column("address_status").to_pylist() == ["ok", "ok"]
    for name, schema in DATASETS.items():
        assert read_dataset(out, name).schema.equals(schema, check_metadata=True), name


def test_part_files_are_zstd_and_carry_the_schema_version(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path) as writer:
        writer.append_host(make_host("192.0.2.1"))
    meta = pq.ParquetFile(tmp_path / "hosts" / "part-000001.parquet").metadata
    assert meta.metadata[b"scanner.schema_version"] == SCHEMA_VERSION.encode()
    assert meta.metadata[b"scanner.dataset"] == b"hosts"
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_flush_writes_one_committed_part_per_nonempty_dataset(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    writer.append_host(make_host("192.0.2.1"))
    assert writer.flush() == 1
    assert all_files(tmp_path) == {"hosts/part-000001.parquet", "_commits.jsonl"}
    writer.append_domain(make_domain(1, "a.test"))
    assert writer.flush() == 2
    assert writer.flush() is None  # nothing buffered: no empty part, no commit line
    lines = (tmp_path / "_commits.jsonl").read_text().splitlines()
    assert [json.loads(line)["seq"] for line in lines] == [1, 2]
    second = json.loads(lines[1])
    assert second["files"] == ["domains/part-000002.parquet"]
    assert second["rows"] == {"domains": 1}
    assert datetime.fromisoformat(second["time"]).tzinfo is not None
    assert committed_rows(tmp_path) == {"domains": 1, "domain_mx": 0, "hosts": 1,
                                        "certificates": 0}


def test_domain_row_is_committed_with_the_rows_it_depends_on(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    add_scanned_domain(writer, 1, "a.test", make_host("192.0.2.1"))
    writer.flush()
    (commit,) = read_commits(tmp_path)
    assert sorted(commit.files) == sorted(f"{name}/part-000001.parquet" for name in DATASETS)


def test_maybe_flush_when_a_buffer_reaches_batch_rows(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path, batch_rows=2, flush_seconds=3600)
    writer.append_host(make_host("192.0.2.1"))
    assert writer.maybe_flush() is False
    writer.append_host(make_host("192.0.2.2"))
    assert writer.maybe_flush() is True
    assert writer.pending_rows["hosts"] == 0
    assert read_dataset(tmp_path, "hosts").num_rows == 2


def test_maybe_flush_after_flush_seconds(tmp_path: Path) -> None:
    clock = FakeClock()
    writer = DatasetWriter(tmp_path, batch_rows=1000, flush_seconds=10, clock=clock)
    clock.now += 60
    assert writer.maybe_flush() is False  # time passed but nothing buffered
    writer.append_domain(make_domain(1, "a.test"))
    clock.now += 9
    assert writer.maybe_flush() is False
    clock.now += 1
    assert writer.maybe_flush() is True
    assert [c.seq for c in read_commits(tmp_path)] == [1]


async def test_flush_async_writes_off_the_event_loop(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path, batch_rows=1)
    writer.append_host(make_host("192.0.2.1"))
    assert await writer.maybe_flush_async() is True
    writer.append_host(make_host("192.0.2.2"))  # buffered after the swap: next checkpoint
    assert await writer.flush_async() == 2
    assert read_dataset(tmp_path, "hosts").column("ip").to_pylist() == ["192.0.2.1", "192.0.2.2"]


def test_close_on_an_exception_keeps_what_was_buffered(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), DatasetWriter(tmp_path) as writer:
        writer.append_domain(make_domain(1, "a.test"))
        raise KeyboardInterrupt
    assert read_dataset(tmp_path, "domains").num_rows == 1


def test_reading_a_dataset_without_parts_gives_an_empty_table(tmp_path: Path) -> None:
    DatasetWriter(tmp_path).close()
    empty = read_dataset(tmp_path, "certificates")
    assert empty.num_rows == 0 and empty.schema.equals(DATASETS["certificates"])
    assert read_dataset(tmp_path, "hosts", columns=["ip", "outcome"]).column_names == [
        "ip", "outcome"]
    with pytest.raises(ValueError, match="unknown dataset"):
        read_dataset(tmp_path, "nope")


def test_read_selects_columns_from_committed_parts(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path) as writer:
        writer.append_host(make_host("192.0.2.1"))
    table = read_dataset(tmp_path, "hosts", columns=["ip", "chain_valid"])
    assert table.to_pylist() == [{"ip": "192.0.2.1", "chain_valid": True}]


# -- crash safety and resume -------------------------------------------------------------------

def _simulate_crash_leftovers(out: Path) -> None:
    """A crash during checkpoint 2: a renamed but uncommitted part and a half-written tmp."""
    stray = pa.table({"line_no": [99]}).cast(pa.schema([("line_no", pa.int64())]))
    pq.write_table(stray, out / "domains" / "part-000002.parquet")
    (out / "hosts" / "part-000002.parquet.tmp").write_bytes(b"PAR1 half")


def test_uncommitted_parts_are_ignored_by_readers_and_removed_on_resume(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path) as writer:
        add_scanned_domain(writer, 1, "a.test", make_host("192.0.2.1"))
    _simulate_crash_leftovers(tmp_path)
    assert read_dataset(tmp_path, "domains").column("line_no").to_pylist() == [1]
    writer = DatasetWriter(tmp_path, resume=True)
    assert writer.resumed
    assert "domains/part-000002.parquet" not in all_files(tmp_path)
    assert not any(f.endswith(".tmp") for f in all_files(tmp_path))
    writer.append_domain(make_domain(2, "b.test"))
    assert writer.flush() == 2  # the numbering goes on from the last commit
    assert read_dataset(tmp_path, "domains").column("line_no").to_pylist() == [1, 2]


def test_torn_commit_line_is_no_commit_and_resume_repairs_the_log(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path) as writer:
        writer.append_domain(make_domain(1, "a.test"))
    with DatasetWriter(tmp_path, resume=True) as writer:
        writer.append_domain(make_domain(2, "b.test"))
    log = tmp_path / "_commits.jsonl"
    # a crash in the middle of writing commit 2's line
    log.write_bytes(log.read_bytes()[:-20])
    assert [c.seq for c in read_commits(tmp_path)] == [1]
    assert read_dataset(tmp_path, "domains").column("line_no").to_pylist() == [1]
    with DatasetWriter(tmp_path, resume=True) as writer:
        writer.append_domain(make_domain(3, "c.test"))
    assert [c.seq for c in read_commits(tmp_path)] == [1, 2]
    assert read_dataset(tmp_path, "domains").column("line_no").to_pylist() == [1, 3]


def test_resume_state_holds_written_domains_hosts_and_certificates(tmp_path: Path) -> None:
    tls_host, plain_host = make_host("192.0.2.1", valid=False), make_host("192.0.2.2", tls=False)
    with DatasetWriter(tmp_path) as writer:
        add_scanned_domain(writer, 1, "a.test", tls_host)
        add_scanned_domain(writer, 2, "b.test", plain_host)
        writer.append_domain(make_domain(5, None, StartTlsClass.INVALID))
    writer = DatasetWriter(tmp_path, resume=True)
    state = load_resume_state(tmp_path)
    writer.remember_written(state.certificates)
    assert state.line_nos == {1, 2, 5}
    assert state.domains == {"a.test", "b.test"}
    assert state.hosts == {"192.0.2.1": HostSummary.from_record(tls_host),
                           "192.0.2.2": HostSummary.from_record(plain_host)}
    assert list(state.hosts) == ["192.0.2.1", "192.0.2.2"]  # in the order written
    assert state.hosts["192.0.2.1"].chain_valid is False
    assert state.certificates == {tls_host.leaf_sha256}
    assert state.rows == {"certificates": 1, "hosts": 2, "domain_mx": 2, "domains": 3}
    assert state.checkpoints == 1
    # a certificate written by the earlier run is not written again
    assert writer.append_certificate(make_cert(tls_host)) is False
    assert writer.pending_rows["certificates"] == 0


def test_host_summary_from_record() -> None:
    summary = HostSummary.from_record(make_host("192.0.2.9", tls=False))
    assert summary == HostSummary(outcome=HostOutcome.NO_STARTTLS,
                                  smtp_ok=True, starttls_offered=False, tls_ok=False,
                                  chain_valid=None, leaf_names=())


def test_resume_of_an_empty_directory_starts_fresh(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path / "new", resume=True)
    assert not writer.resumed
    assert load_resume_state(writer.outdir).line_nos == frozenset()


# -- refusing and failing ----------------------------------------------------------------------

def test_new_scan_into_a_used_directory_is_refused(tmp_path: Path) -> None:
    with DatasetWriter(tmp_path) as writer:
        writer.append_domain(make_domain(1, "a.test"))
    with pytest.raises(OutputError, match="exists; use --resume or a new directory"):
        DatasetWriter(tmp_path)


def test_new_scan_into_a_directory_without_datasets_is_allowed(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    (tmp_path / "domains").mkdir()
    DatasetWriter(tmp_path).close()


def test_output_path_that_cannot_be_a_directory_is_an_output_error(tmp_path: Path) -> None:
    # tests run as root, which ignores permissions; a regular file in the path stops root too
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError, match="cannot use output directory") as info:
        DatasetWriter(tmp_path / "file" / "out")
    assert "\n" not in str(info.value)


def test_failed_flush_removes_its_files_and_keeps_committed_ones(tmp_path: Path) -> None:
    writer = DatasetWriter(tmp_path)
    add_scanned_domain(writer, 1, "a.test", make_host("192.0.2.1"))
    writer.flush()
    before = all_files(tmp_path)
    # the certificates directory turns into a file: checkpoint 2 fails after hosts was renamed
    for part in (tmp_path / "certificates").iterdir():
        part.unlink()
    (tmp_path / "certificates").rmdir()
    (tmp_path / "certificates").write_text("not a directory")
    add_scanned_domain(writer, 2, "b.test", make_host("192.0.2.2"))
    with pytest.raises(OutputError, match="cannot write") as info:
        writer.flush()
    assert "\n" not in str(info.value)
    after = all_files(tmp_path)
    assert after == (before - {"certificates/part-000001.parquet"}) | {"certificates"}
    assert read_dataset(tmp_path, "hosts").column("ip").to_pylist() == ["192.0.2.1"]
    assert read_dataset(tmp_path, "domains").column("domain").to_pylist() == ["a.test"]
    # nothing commits after a failed checkpoint; closing gives up quietly
    writer.append_domain(make_domain(3, "c.test"))
    with pytest.raises(OutputError):
        writer.flush()
    writer.close()
    assert [c.seq for c in read_commits(tmp_path)] == [1]


def test_disk_full_while_committing_cuts_the_log_back(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    writer = DatasetWriter(tmp_path)
    writer.append_domain(make_domain(1, "a.test"))
    writer.flush()
    log_before = (tmp_path / "_commits.jsonl").read_bytes()
    real_write = os.write

    def half_write(fd: int, data: bytes) -> int:
        real_write(fd, data[:10])  # some bytes make it, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", half_write)
    writer.append_domain(make_domain(2, "b.test"))
    with pytest.raises(OutputError, match="No space left on device"):
        writer.flush()
    monkeypatch.undo()
    assert (tmp_path / "_commits.jsonl").read_bytes() == log_before
    assert all_files(tmp_path) == {"_commits.jsonl", "domains/part-000001.parquet"}


# -- manifest ----------------------------------------------------------------------------------

def _config(out: Path, *, resume: bool = False, anchors: tuple[Path, ...] = (),
            started_at: datetime = T0, batch_rows: int = 5000) -> ScanConfig:
    return ScanConfig(output=out, resolvers=("127.0.0.1:5353",), resume=resume,
                      trust=TrustStore(extra_anchors=anchors), started_at=started_at,
                      limits=Limits(batch_rows=batch_rows), vantage="lab")


def test_manifest_is_running_at_start_and_finished_at_the_end(tmp_path: Path) -> None:
    anchor = tmp_path / "lab-ca.pem"
    anchor.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    config = _config(tmp_path / "out", anchors=(anchor,))
    ends = iter([T0 + timedelta(hours=2)])
    manifest = ScanManifest.start(config, input_stats={"lines": 3}, now=lambda: next(ends))
    data = read_manifest(config.output)
    assert data["state"] == "running" and data["end_time"] is None
    assert data["scanner_version"] == scanner.__version__
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["config"] == json.loads(json.dumps(config.to_json()))
    assert data["start_time"] == "2024-05-01T12:00:00.000000+00:00"
    assert data["resolvers"] == ["127.0.0.1:5353"]
    assert data["vantage"]["name"] == "lab" and data["vantage"]["hostname"]
    assert data["trust_store"]["extra_anchors"] == [
        {"path": str(anchor), "sha256": hashlib.sha256(anchor.read_bytes()).hexdigest()}]
    assert data["trust_store"]["certifi_version"]
    assert data["input_stats"] == {"lines": 3} and data["resumed_count"] == 0
    manifest.finish("finished", {"domains": 3})
    data = read_manifest(config.output)
    assert data["state"] == "finished"
    assert data["end_time"] == "2024-05-01T14:00:00.000000+00:00"
    assert data["end_time"] > data["start_time"]
    assert data["counts"] == {"domains": 3}
    assert data["runs"][-1]["state"] == "finished"
    assert not (config.output / "manifest.json.tmp").exists()


def test_interrupted_scan_resumes_with_its_original_start_and_config(tmp_path: Path) -> None:
    out = tmp_path / "out"
    first = ScanManifest.start(_config(out))
    first.interrupt({"domains": 1}, reason="SIGINT")
    assert read_manifest(out)["state"] == "interrupted"
    assert read_manifest(out)["runs"][0]["reason"] == "SIGINT"
    later = T0 + timedelta(days=1)
    resumed_config = _config(out, resume=True, started_at=later, batch_rows=10)
    with DatasetWriter(out, resume=True) as writer:
        manifest = ScanManifest.start(resumed_config, writer)
    data = read_manifest(out)
    assert data["state"] == "running" and data["resumed_count"] == 1
    assert manifest.started_at == T0
    assert datetime.fromisoformat(data["start_time"]) == T0
    assert data["config"]["limits"]["batch_rows"] == 5000
    assert [datetime.fromisoformat(run["start_time"]) for run in data["runs"]] == [T0, later]
    assert data["runs"][1]["config_changes"] == {
        "limits": resumed_config.to_json()["limits"]}
    assert data["runs"][1]["rows_at_start"]["domains"] == 0
    manifest.finish(counts={"domains": 2})
    data = read_manifest(out)
    assert [run["state"] for run in data["runs"]] == ["interrupted", "finished"]
    assert data["state"] == "finished"


def test_manifest_in_an_unusable_place_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputError):
        ScanManifest.start(_config(tmp_path / "file" / "out"))
