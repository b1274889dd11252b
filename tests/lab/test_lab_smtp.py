"""The lab's mail servers, checked with clients independent of the scanner.

One fleet per test (one host per behaviour on 127.77.0.N): raw sockets for the odd behaviours,
smtplib for dialogues, `openssl s_client -starttls smtp` for the TLS facts the catalogue expects.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import re
import shutil
import smtplib
import socket
import ssl
import struct
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509

from scanner.lab.population.behaviours import EXPECTED, NEGOTIATES_TLS, Behaviour
from scanner.lab.population.model import LabHost
from scanner.lab.population.pki import LabPki
from scanner.lab.servers import smtp_behaviours
from scanner.lab.servers.smtp import SmtpFleet, start_smtp_fleet

B = Behaviour
SLOW_IP = "127.77.0.200"  # a valid host with latency
SLOW_MS = 150
T = TypeVar("T")


@dataclass
class Lab:
    fleet: SmtpFleet
    port: int
    ips: dict[Behaviour, str]

    def ip(self, behaviour: Behaviour) -> str:
        return self.ips[behaviour]

    def name(self, behaviour: Behaviour) -> str:
        return mx_name(behaviour)


def mx_name(behaviour: Behaviour) -> str:
    return f"mx.{behaviour.value.replace('_', '-')}.lab.test"


class _Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def logged_errors() -> Iterator[_Errors]:
    """Every ERROR log (lab bugs, 'Task exception was never retrieved'): must stay empty."""
    handler = _Errors()
    logging.getLogger().addHandler(handler)
    try:
        yield handler
    finally:
        logging.getLogger().removeHandler(handler)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.77.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def lab(tmp_path: Path, logged_errors: _Errors,
              monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Lab]:
    monkeypatch.setattr(smtp_behaviours, "TRICKLE_INTERVAL_S", 0.05)
    monkeypatch.setattr(smtp_behaviours, "REJECT_LINGER_S", 0.3)
    pki = LabPki.create(tmp_path / "pki", datetime.now(UTC))
    ips = {b: f"127.77.0.{i}" for i, b in enumerate(Behaviour, start=10)}
    hosts = [LabHost(ip, b, (mx_name(b),), f"{mx_name(b)} ESMTP lab") for b, ip in ips.items()]
    hosts.append(LabHost(SLOW_IP, B.VALID, ("mx.slow.lab.test",), "mx.slow.lab.test ESMTP",
                         latency_ms=SLOW_MS))
    for attempt in range(5):
        port = _free_port()
        try:
            fleet = await start_smtp_fleet(hosts, port, pki, greet_pause_s=0.3)
            break
        except OSError:
            if attempt == 4:
                raise
    yield Lab(fleet, port, ips)
    await fleet.close()
    gc.collect()  # surfaces unclosed transports and never-retrieved task errors now
    assert [r.getMessage() for r in logged_errors.records] == []


# ---- clients -------------------------------------------------------------------------------

def client_context() -> ssl.SSLContext:
    """TLS 1.0-1.3, every cipher, no verification: what a survey offers."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.set_ciphers("ALL:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    return context


async def smtp(lab: Lab, behaviour: Behaviour, talk: Callable[[smtplib.SMTP], T]) -> T:
    """Run `talk` with an smtplib client of the host, in a thread; return what it returns."""

    def run() -> T:
        with smtplib.SMTP(lab.ip(behaviour), lab.port, timeout=5) as client:
            return talk(client)

    return await asyncio.to_thread(run)


def tls(client: smtplib.SMTP) -> ssl.SSLSocket:
    """STARTTLS with the survey's client context; the TLS socket."""
    client.starttls(context=client_context())
    assert isinstance(client.sock, ssl.SSLSocket)
    return client.sock


async def connect(lab: Lab, behaviour: Behaviour
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(lab.ip(behaviour), lab.port, limit=1 << 24)


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        async with asyncio.timeout(0.5):  # after a failed start_tls, wait_closed() never ends
            await writer.wait_closed()
    except (OSError, TimeoutError):
        writer.transport.abort()


async def line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), 5)


async def until_no_connections(fleet: SmtpFleet) -> None:
    """The lab frees a connection soon after its client leaves."""
    async with asyncio.timeout(3):
        while fleet.open_connections():
            await asyncio.sleep(0.02)


async def s_client(lab: Lab, behaviour: Behaviour) -> str:
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    proc = await asyncio.create_subprocess_exec(
        "openssl", "s_client", "-starttls", "smtp", "-connect", f"{lab.ip(behaviour)}:{lab.port}",
        "-cipher", "ALL:@SECLEVEL=0", "-showcerts",
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT)
    async with asyncio.timeout(10):
        out, _ = await proc.communicate()
    return out.decode(errors="replace")


def negotiated_version(out: str) -> str | None:
    """The session's protocol (TLS 1.2 and older), else the "New, ..." line's (TLS 1.3).

    The "New" line names the cipher's version, which says TLSv1.0 for a TLS 1.1 session.
    """
    found = (re.search(r"^\s+Protocol\s+: (\S+)", out, re.M)
             or re.search(r"^New, (TLSv[\d.]+), Cipher", out, re.M))
    return found.group(1) if found else None


# ---- TLS behaviours --------------------------------------------------------------------------

CHAIN_LENGTH = {B.SELF_SIGNED: 1, B.MISSING_INTERMEDIATE: 1, B.LONG_CHAIN: 100}
TEMP_KEY = {"x25519": "X25519, 253 bits", "dhe": "DH, 1024 bits"}


@pytest.mark.parametrize("behaviour", sorted(NEGOTIATES_TLS))
async def test_openssl_negotiates_what_the_catalogue_expects(lab: Lab, behaviour: Behaviour
                                                             ) -> None:
    out = await s_client(lab, behaviour)
    expected = EXPECTED[behaviour]
    version = expected.tls_version
    assert version is not None and expected.kex_group is not None
    assert negotiated_version(out) == version, out
    if expected.kex_group == "rsa":  # RSA key exchange: no ephemeral key at all
        assert "Server Temp Key" not in out and "Cipher    : AES" in out, out
    else:
        assert f"Server Temp Key: {TEMP_KEY[expected.kex_group]}" in out
    assert out.count("-----BEGIN CERTIFICATE-----") == CHAIN_LENGTH.get(behaviour, 2)
    if behaviour is B.RSA1024:
        assert "Server public key is 1024 bit" in out
    if behaviour is B.DHE1024:
        assert "Cipher is DHE-RSA-" in out


async def test_openssl_rejects_the_huge_certificate(lab: Lab) -> None:
    out = await s_client(lab, B.HUGE_CERT)
    assert "excessive message size" in out


async def test_python_client_sees_each_tls_version(lab: Lab) -> None:
    def talk(c: smtplib.SMTP) -> tuple[str | None, str]:
        sock = tls(c)
        cipher = sock.cipher()
        assert cipher is not None
        return sock.version(), cipher[0]

    assert await smtp(lab, B.VALID, talk) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384")
    assert await smtp(lab, B.TLS10_11_ONLY, talk) == ("TLSv1.1", "ECDHE-ECDSA-AES256-SHA")
    assert await smtp(lab, B.DHE1024, talk) == ("TLSv1.2", "DHE-RSA-AES256-GCM-SHA384")
    assert await smtp(lab, B.TLS13_ONLY, talk) == ("TLSv1.3", "TLS_AES_256_GCM_SHA384")


async def test_valid_dialogue_and_counts(lab: Lab) -> None:
    def talk(c: smtplib.SMTP) -> tuple[tuple[int, bytes], tuple[int, bytes], tuple[int, bytes],
                                       bytes | None, tuple[int, bytes]]:
        first = c.ehlo("scan.test")
        starttls = c.starttls(context=client_context())
        second = c.ehlo("scan.test")
        assert isinstance(c.sock, ssl.SSLSocket)
        return first, starttls, second, c.sock.getpeercert(True), c.quit()

    first, starttls, second, der, quit_reply = await smtp(lab, B.VALID, talk)
    assert der is not None
    assert first[0] == 250
    lines = first[1].decode().splitlines()
    assert lines[0] == lab.name(B.VALID)
    for keyword in ("PIPELINING", "SIZE 10240000", "8BITMIME", "ENHANCEDSTATUSCODES", "STARTTLS"):
        assert keyword in lines
    assert starttls == (220, b"2.0.0 Ready to start TLS")
    assert second[0] == 250 and b"STARTTLS" not in second[1] and b"PIPELINING" in second[1]
    assert quit_reply == (221, b"2.0.0 Bye")
    leaf = x509.load_der_x509_certificate(der)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == [lab.name(B.VALID)]
    counts = lab.fleet.counts()[lab.ip(B.VALID)]
    assert counts.connections == 1 and counts.max_concurrent == 1
    assert counts.forbidden_commands == 0
    assert counts.commands == {"EHLO": 2, "STARTTLS": 1, "QUIT": 1}


async def test_mail_rcpt_data_are_refused_and_counted(lab: Lab) -> None:
    replies = await smtp(lab, B.NO_STARTTLS, lambda c: (
        c.ehlo("x")[0], c.mail("a@b.test")[0], c.rcpt("c@d.test")[0], c.docmd("DATA")[0],
        c.noop()[0]))
    assert replies == (250, 550, 503, 503, 250)
    counts = lab.fleet.counts()[lab.ip(B.NO_STARTTLS)]
    assert counts.forbidden_commands == 3
    assert counts.commands["MAIL"] == counts.commands["RCPT"] == counts.commands["DATA"] == 1
    lab.fleet.reset_counts()
    assert lab.fleet.counts()[lab.ip(B.NO_STARTTLS)].forbidden_commands == 0


async def test_bad_cert_is_served_but_does_not_parse(lab: Lab) -> None:
    der = await smtp(lab, B.BAD_CERT, lambda c: tls(c).getpeercert(True))
    assert der is not None
    with pytest.raises(ValueError):
        _ = x509.load_der_x509_certificate(der).extensions


@pytest.mark.parametrize(("behaviour", "message"), [
    (B.HANDSHAKE_FAILS, "ALERT_HANDSHAKE_FAILURE"), (B.TLS_ALERT, "ALERT_INTERNAL_ERROR"),
    (B.HUGE_CERT, "EXCESSIVE_MESSAGE_SIZE"), (B.PLAINTEXT_AFTER_STARTTLS, "WRONG_VERSION_NUMBER"),
])
async def test_handshake_failures_seen_by_python(lab: Lab, behaviour: Behaviour,
                                                 message: str) -> None:
    with pytest.raises(ssl.SSLError, match=message):
        await smtp(lab, behaviour, tls)


async def test_reset_mid_handshake_sends_rst(lab: Lab) -> None:
    with pytest.raises(ConnectionResetError):
        await smtp(lab, B.RESET_MID_HANDSHAKE, tls)


@pytest.mark.parametrize(("behaviour", "alert"), [
    (B.HANDSHAKE_FAILS, "15030300020228"), (B.TLS_ALERT, "15030300020250"),
])
async def test_alerts_are_raw_fatal_records(lab: Lab, behaviour: Behaviour, alert: str) -> None:
    reader, writer = await connect(lab, behaviour)
    await line(reader)
    writer.write(b"STARTTLS\r\n" + bytes.fromhex("1603010004") + b"\x01\x00\x00\x00")
    assert await line(reader) == b"220 2.0.0 Ready to start TLS\r\n"
    assert await asyncio.wait_for(reader.read(), 5) == bytes.fromhex(alert)
    await close(writer)


async def test_plaintext_after_starttls(lab: Lab) -> None:
    reader, writer = await connect(lab, B.PLAINTEXT_AFTER_STARTTLS)
    await line(reader)
    writer.write(b"STARTTLS\r\n")
    assert await line(reader) == b"220 2.0.0 Ready to start TLS\r\n"
    writer.write(bytes.fromhex("1603010004") + b"\x01\x00\x00\x00")  # a (tiny) ClientHello
    assert await line(reader) == b"220 ready\r\n"
    await close(writer)
    await until_no_connections(lab.fleet)


# ---- greetings and replies -------------------------------------------------------------------

async def test_refused_host_has_no_listener(lab: Lab) -> None:
    with pytest.raises(ConnectionRefusedError):
        await connect(lab, B.REFUSED)
    assert lab.ip(B.REFUSED) not in lab.fleet.counts()
    assert lab.ip(B.VALID) in lab.fleet.counts()


async def test_accept_close_closes_at_once(lab: Lab) -> None:
    reader, writer = await connect(lab, B.ACCEPT_CLOSE)
    assert await asyncio.wait_for(reader.read(), 2) == b""
    await close(writer)
    assert lab.fleet.counts()[lab.ip(B.ACCEPT_CLOSE)].connections == 1


async def test_multiline_greeting_then_tls(lab: Lab) -> None:
    reader, writer = await connect(lab, B.MULTILINE_GREETING)
    lines = [await line(reader) for _ in range(4)]
    assert [x[:4] for x in lines] == [b"220-", b"220-", b"220-", b"220 "]
    assert lines[0] == f"220-{lab.name(B.MULTILINE_GREETING)} ESMTP lab\r\n".encode()
    await close(writer)
    assert await smtp(lab, B.MULTILINE_GREETING, lambda c: tls(c).version()) == "TLSv1.3"


async def test_greet_pause_and_latency_delay_replies(lab: Lab) -> None:
    started = time.monotonic()
    reader, writer = await connect(lab, B.GREET_PAUSE)
    assert (await line(reader)).startswith(b"220 ")
    assert time.monotonic() - started >= 0.28
    await close(writer)
    reader, writer = await asyncio.open_connection(SLOW_IP, lab.port)
    started = time.monotonic()
    await line(reader)
    writer.write(b"NOOP\r\n")
    await line(reader)
    assert time.monotonic() - started >= 2 * SLOW_MS / 1000 * 0.95
    await close(writer)


@pytest.mark.parametrize(("behaviour", "first"), [
    (B.NUL_BYTES, b"220 mx.nul-bytes.lab.test\x00\x00 ESMTP\r\n"),
    (B.DATA_BEFORE_GREETING, b"hello there\r\n"),
])
async def test_malformed_greetings(lab: Lab, behaviour: Behaviour, first: bytes) -> None:
    reader, writer = await connect(lab, behaviour)
    assert await line(reader) == first
    if behaviour is B.DATA_BEFORE_GREETING:
        assert (await line(reader)).startswith(b"220 mx.data-before-greeting")
    await close(writer)


async def test_garbage_is_invalid_utf8_without_line_structure(lab: Lab) -> None:
    reader, writer = await connect(lab, B.GARBAGE)
    data = await line(reader)
    assert data[0] == 0xFF and len(data) > 1000
    assert b"\r" not in data[:-2] and b"\n" not in data[:-2] and data.endswith(b"\r\n")
    with pytest.raises(UnicodeDecodeError):
        data.decode()
    await close(writer)
    await until_no_connections(lab.fleet)


@pytest.mark.parametrize("behaviour", [B.GREETING_421, B.GREETING_554])
async def test_rejecting_greetings(lab: Lab, behaviour: Behaviour) -> None:
    code = b"421 " if behaviour is B.GREETING_421 else b"554 "
    reader, writer = await connect(lab, behaviour)
    assert (await line(reader)).startswith(code)
    writer.write(b"QUIT\r\n")
    assert await line(reader) == b"221 2.0.0 Bye\r\n"
    assert await asyncio.wait_for(reader.read(), 2) == b""
    await close(writer)
    reader, writer = await connect(lab, behaviour)  # a client that says nothing is dropped
    assert (await line(reader)).startswith(code)
    assert await asyncio.wait_for(reader.read(), 2) == b""
    await close(writer)


async def test_554_answers_503_until_quit(lab: Lab) -> None:
    reader, writer = await connect(lab, B.GREETING_554)
    await line(reader)
    writer.write(b"EHLO scan.test\r\n")
    assert (await line(reader)).startswith(b"503 ")
    await close(writer)


async def test_ehlo_rejected_helo_accepted(lab: Lab) -> None:
    replies = await smtp(lab, B.EHLO_REJECTED,
                         lambda c: (c.ehlo("x")[0], c.helo("x")[0], c.docmd("STARTTLS")[0]))
    assert replies == (502, 250, 502)


async def test_all_421_answers_421_and_closes(lab: Lab) -> None:
    reader, writer = await connect(lab, B.ALL_421)
    assert (await line(reader)).startswith(b"220 ")
    writer.write(b"EHLO scan.test\r\n")
    assert await line(reader) == b"421 4.3.2 Service shutting down\r\n"
    assert await asyncio.wait_for(reader.read(), 2) == b""
    await close(writer)


async def test_starttls_missing_masked_or_454(lab: Lab) -> None:
    def talk(c: smtplib.SMTP) -> tuple[list[str], tuple[int, bytes]]:
        return c.ehlo("x")[1].decode().splitlines(), c.docmd("STARTTLS")

    lines, reply = await smtp(lab, B.NO_STARTTLS, talk)
    assert "STARTTLS" not in lines and "PIPELINING" in lines and reply[0] == 502
    lines, reply = await smtp(lab, B.MASKED, talk)
    assert "XXXXXXXA" in lines and "STARTTLS" not in lines and reply[0] == 502
    lines, reply = await smtp(lab, B.STARTTLS_454, talk)
    assert "STARTTLS" in lines
    assert reply == (454, b"4.7.0 TLS not available due to local problem")


async def test_unknown_command_502_and_helo(lab: Lab) -> None:
    replies = await smtp(lab, B.VALID, lambda c: (c.docmd("VRFY", "x")[0], c.helo("scan.test")))
    assert replies == (502, (250, lab.name(B.VALID).encode()))


# ---- endless talkers and silent hosts --------------------------------------------------------

async def test_tarpit_never_greets_and_frees_the_connection(lab: Lab) -> None:
    reader, writer = await connect(lab, B.TARPIT)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    writer.write(b"EHLO scan.test\r\n")
    await writer.drain()
    await close(writer)
    await until_no_connections(lab.fleet)
    assert lab.fleet.counts()[lab.ip(B.TARPIT)].commands == {"EHLO": 1}


async def test_trickle_sends_one_byte_at_a_time(lab: Lab) -> None:
    reader, writer = await connect(lab, B.TRICKLE)
    received = b""
    async with asyncio.timeout(2):
        while len(received) < 8:
            chunk = await reader.read(100)
            assert len(chunk) == 1
            received += chunk
    assert received == b"220 mx.t"
    await close(writer)
    await until_no_connections(lab.fleet)


async def test_endless_reply_until_the_client_leaves(lab: Lab) -> None:
    reader, writer = await connect(lab, B.ENDLESS_REPLY)
    received = b""
    while len(received) < 1 << 20:
        received += await asyncio.wait_for(reader.read(1 << 16), 5)
    lines = received.split(b"\r\n")[:-1]
    assert len(lines) > 1000 and all(x.startswith(b"220-") for x in lines)
    await close(writer)
    await until_no_connections(lab.fleet)


async def test_long_line_is_ten_megabytes(lab: Lab) -> None:
    reader, writer = await connect(lab, B.LONG_LINE)
    data = await asyncio.wait_for(reader.readuntil(b"\r\n"), 10)
    assert data.startswith(b"220 ") and len(data) >= 10 * 1024 * 1024
    assert b"\n" not in data[:-1]
    await close(writer)
    await until_no_connections(lab.fleet)
    reader, writer = await connect(lab, B.LONG_LINE)  # a client that gives up early
    assert len(await reader.read(1000)) > 0
    await close(writer)
    await until_no_connections(lab.fleet)


# ---- fleet: concurrency, pause, close, clients that vanish -----------------------------------

async def test_concurrent_connections_are_counted(lab: Lab) -> None:
    clients = [await connect(lab, B.TARPIT) for _ in range(5)]
    async with asyncio.timeout(2):
        while lab.fleet.open_connections() < 5:
            await asyncio.sleep(0.01)
    for _, writer in clients:
        await close(writer)
    counts = lab.fleet.counts()[lab.ip(B.TARPIT)]
    assert counts.connections == 5 and counts.max_concurrent == 5
    await until_no_connections(lab.fleet)


async def test_pause_makes_every_host_a_tarpit(lab: Lab) -> None:
    lab.fleet.pause()
    assert lab.fleet.paused
    reader, writer = await connect(lab, B.VALID)
    gone_reader, gone_writer = await connect(lab, B.ACCEPT_CLOSE)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(reader.read(1), 0.3)
    with pytest.raises(TimeoutError):  # even accept_close stays silent
        await asyncio.wait_for(gone_reader.read(1), 0.05)
    await close(gone_writer)  # a client that leaves while paused frees its connection
    async with asyncio.timeout(2):
        while lab.fleet.open_connections() > 1:
            await asyncio.sleep(0.01)
    lab.fleet.resume()
    assert (await line(reader)).startswith(b"220 ")
    await close(writer)


async def test_close_ends_open_connections_and_listeners(lab: Lab) -> None:
    idle = [await connect(lab, b) for b in (B.TARPIT, B.ENDLESS_REPLY, B.TRICKLE, B.VALID)]
    await line(idle[3][0])
    async with asyncio.timeout(2):
        while lab.fleet.open_connections() < 4:
            await asyncio.sleep(0.01)
    started = time.monotonic()
    await lab.fleet.close()
    assert time.monotonic() - started < 1
    assert lab.fleet.open_connections() == 0
    for _, writer in idle:
        writer.transport.abort()
    with pytest.raises(ConnectionRefusedError):
        await connect(lab, B.VALID)


HELLO_PART = bytes.fromhex("16030100c8010000c40303") + bytes(20)  # a ClientHello, cut short


@pytest.mark.parametrize("stage", ["connect", "greeting", "starttls", "mid_handshake", "tls"])
async def test_clients_vanishing_at_any_point_leave_no_trace(lab: Lab, stage: str) -> None:
    """Every host, a client that leaves (or resets) at `stage`: no error, nothing left open."""

    async def vanish(behaviour: Behaviour, ip: str) -> None:
        try:
            reader, writer = await asyncio.open_connection(ip, lab.port)
        except ConnectionRefusedError:
            return
        try:
            async with asyncio.timeout(0.5):
                if stage != "connect":
                    await reader.readline()
                if stage in ("starttls", "mid_handshake", "tls"):
                    writer.write(b"EHLO scan.test\r\nSTARTTLS\r\n")
                    while (await reader.readline())[:4] not in (b"220 ", b""):
                        pass
                if stage == "mid_handshake":
                    writer.write(HELLO_PART)
                    await writer.drain()
                if stage == "tls":
                    await writer.start_tls(client_context())
        except (TimeoutError, OSError, ValueError, asyncio.IncompleteReadError):
            pass
        if stage == "mid_handshake" and not writer.transport.is_closing():  # leave with an RST
            sock = writer.get_extra_info("socket")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        else:
            await close(writer)

    await asyncio.gather(*(vanish(b, ip) for b, ip in lab.ips.items()))
    await until_no_connections(lab.fleet)
