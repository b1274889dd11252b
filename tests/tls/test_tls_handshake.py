"""TLS facts from real loopback handshakes, and the message parsers against hostile bytes."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import hashlib
import ssl
import struct
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from hypothesis import given, settings
from hypothesis import strategies as st

from scanner.lab.population.behaviours import EXPECTED, NEGOTIATES_TLS, Behaviour
from scanner.lab.population.model import LabHost
from scanner.lab.population.pki import LabPki
from scanner.model.records import TlsFacts
from scanner.tls.context import ProbeContext, make_probe_context, unverified_chain_der
from scanner.tls.dh_primes import ffdhe_primes
from scanner.tls.handshake import (
    GROUPS,
    HandshakeObserver,
    KeyExchange,
    key_exchange_of,
    parse_server_hello,
    parse_server_key_exchange,
    tls_facts,
)

# openssl dhparam 1024 (generated once): a custom group, the logjam case.
DH1024_PEM = b"""-----BEGIN DH PARAMETERS-----
MIGHAoGBAPzhG4lVHn44HwHbREVXmdHme3ySPPr+pq8aPudKyOlwlk5J7861T+g2
Q66XYd+FYMV3DblpbfQuV2ys/1v58gqIVAm91yCNPbrV+VdXM3cukd2TWC9wFMDj
ffDrh1UQSqK+TJyv6hmbtu0Xl3oN8cfD3C/SJ+lPI7Fula7OfOE3AgEC
-----END DH PARAMETERS-----
"""
# openssl genpkey -genparam -algorithm DH -pkeyopt group:ffdhe2048 (RFC 7919)
FFDHE2048_PEM = b"""-----BEGIN DH PARAMETERS-----
MIIBCAKCAQEA//////////+t+FRYortKmq/cViAnPTzx2LnFg84tNpWp4TZBFGQz
+8yTnc4kmz75fS/jY2MMddj2gbICrsRhetPfHtXV/WVhJDP1H18GbtCFY2VVPe0a
87VXE15/V8k1mE8McODmi3fipona8+/och3xWKE2rec1MKzKT0g6eXq8CrGCsyT7
YdEIqUuyyOP7uWrat2DX9GgdT0Kj3jlN9K5W7edjcrsZCwenyO4KbXCeAvzhzffi
7MA0BM0oNC9hkXL+nOmFg/+OTxIy7vKBg8P+OxtMb61zO7X8vC7CIAXFjvGDfRaD
ssbzSibBsu/6iGtCOGEoXJf//////////wIBAg==
-----END DH PARAMETERS-----
"""
# sha256 of each RFC 7919 prime (big-endian bytes), from OpenSSL's built-in groups.
FFDHE_SHA256 = {
    "ffdhe2048": "9cd3b7f336872f46c09428d1bbc19877a4d440512cda8d1c1cf0cd6e33698966",
    "ffdhe3072": "0eaf67db3a839156d5013494a5318a772b5697d270d721f37f092efc69ea5a17",
    "ffdhe4096": "4648414224ac881b3d0dc59b466f96d06a558278776807797ecf1f66ff397b3e",
    "ffdhe6144": "227ac9066b3ddd9e193670cda2388fa884f65ba0cf98b742d1fe77a6687c79c7",
    "ffdhe8192": "770b14efaf6f049929c523113b3fa99a8d11dab1b18af3609590122075d19833",
}
HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")


def _self_signed(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mx.handshake.test")])
    now = dt.datetime.now(dt.UTC)
    return (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))


@pytest.fixture(scope="module")
def cert_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """Certificate and key files: an ECDSA P-256 one and an RSA-2048 one."""
    out = {}
    folder = tmp_path_factory.mktemp("handshake-certs")
    keys: dict[str, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey] = {
        "ec": ec.generate_private_key(ec.SECP256R1()),
            "rsa": rsa.generate_private_key(public_exponent=65537, key_size=2048)}
    for kind, key in keys.items():
        cert, key_file = folder / f"{kind}.crt", folder / f"{kind}.key"
        cert.write_bytes(_self_signed(key).public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                               serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
        out[kind] = (cert, key_file)
    for name, pem in (("dh1024", DH1024_PEM), ("ffdhe2048", FFDHE2048_PEM)):
        (folder / f"{name}.pem").write_bytes(pem)
        out[name] = (folder / f"{name}.pem", folder / f"{name}.pem")
    return out


def server_context(files: dict[str, tuple[Path, Path]], key: str,
                   configure: Callable[[ssl.SSLContext], None]) -> ssl.SSLContext:
    """A server context with one of the certificates, then configured by the test."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*files[key])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 on purpose
        configure(ctx)
    return ctx


@contextlib.asynccontextmanager
async def tls_server(ctx: ssl.SSLContext) -> AsyncIterator[int]:
    """A TLS server on 127.0.0.1 that waits for the client to hang up; yields its port."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await reader.read(1)
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()

    server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def probe(context: ProbeContext, port: int
                ) -> tuple[TlsFacts | None, tuple[bytes, ...], HandshakeObserver | None]:
    """Handshake as the prober does; return the facts, the chain and the observer."""
    _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context.ssl_context)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        return (context.facts_for(ssl_object), unverified_chain_der(ssl_object),
                context.observer_for(ssl_object))
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.wait_closed()


def _tls12(ciphers: str, curve: str | None = None, dh: Path | None = None
           ) -> Callable[[ssl.SSLContext], None]:
    def configure(ctx: ssl.SSLContext) -> None:
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers(ciphers)
        if curve:
            ctx.set_ecdh_curve(curve)
        if dh:
            ctx.load_dh_params(str(dh))
    return configure


async def test_tls13_ecdsa_reports_x25519(cert_files: dict[str, tuple[Path, Path]]) -> None:
    context = make_probe_context()
    async with tls_server(server_context(cert_files, "ec", lambda c: None)) as port:
        facts, chain, observer = await probe(context, port)
    assert facts is not None and facts.version == "TLSv1.3"
    assert facts.cipher.startswith("TLS_") and facts.forward_secrecy
    assert (facts.kex_group, facts.kex_bits) == ("x25519", 253)
    assert observer is not None and observer.server_hello is not None
    assert observer.server_hello.version == "TLSv1.3"  # from supported_versions
    assert chain == (x509.load_pem_x509_certificate(cert_files["ec"][0].read_bytes())
                     .public_bytes(serialization.Encoding.DER),)


async def test_tls13_hello_retry_reports_the_final_group(
        cert_files: dict[str, tuple[Path, Path]]) -> None:
    # The client's first key share is x25519; a P-384-only server asks again (HRR).
    context = make_probe_context()
    ctx = server_context(cert_files, "ec", lambda c: c.set_ecdh_curve("secp384r1"))
    async with tls_server(ctx) as port:
        facts, _, _ = await probe(context, port)
    assert facts is not None and facts.version == "TLSv1.3"
    assert (facts.kex_group, facts.kex_bits) == ("secp384r1", 384)


async def test_tls12_ecdhe_rsa_secp384r1(cert_files: dict[str, tuple[Path, Path]]) -> None:
    context = make_probe_context()
    ctx = server_context(cert_files, "rsa", _tls12("ECDHE-RSA-AES256-GCM-SHA384", "secp384r1"))
    async with tls_server(ctx) as port:
        facts, _, observer = await probe(context, port)
    assert facts == TlsFacts("TLSv1.2", "ECDHE-RSA-AES256-GCM-SHA384", True, "secp384r1", 384)
    assert observer is not None and observer.server_hello is not None
    assert observer.server_hello.version == "TLSv1.2"


async def test_dhe_1024_custom_group_is_reported_for_logjam(
        cert_files: dict[str, tuple[Path, Path]]) -> None:
    context = make_probe_context()
    ctx = server_context(cert_files, "rsa", _tls12("DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0",
                                                   dh=cert_files["dh1024"][0]))
    async with tls_server(ctx) as port:
        facts, _, _ = await probe(context, port)
    assert facts == TlsFacts("TLSv1.2", "DHE-RSA-AES128-GCM-SHA256", True, "dhe", 1024)


async def test_dhe_with_rfc7919_prime_is_named(cert_files: dict[str, tuple[Path, Path]]) -> None:
    context = make_probe_context()
    ctx = server_context(cert_files, "rsa", _tls12("DHE-RSA-AES256-GCM-SHA384",
                                                   dh=cert_files["ffdhe2048"][0]))
    async with tls_server(ctx) as port:
        facts, _, _ = await probe(context, port)
    assert facts is not None and (facts.kex_group, facts.kex_bits) == ("ffdhe2048", 2048)


async def test_rsa_key_exchange_has_no_forward_secrecy(
        cert_files: dict[str, tuple[Path, Path]]) -> None:
    context = make_probe_context()
    ctx = server_context(cert_files, "rsa", _tls12("AES128-GCM-SHA256"))
    async with tls_server(ctx) as port:
        facts, _, _ = await probe(context, port)
    assert facts == TlsFacts("TLSv1.2", "AES128-GCM-SHA256", False, "rsa", None)


async def test_tls11_only_server_completes_at_seclevel_0(
        cert_files: dict[str, tuple[Path, Path]]) -> None:
    def tls11(ctx: ssl.SSLContext) -> None:
        ctx.minimum_version = ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        ctx.set_ciphers("ECDHE-RSA-AES128-SHA:@SECLEVEL=0")

    context = make_probe_context()
    async with tls_server(server_context(cert_files, "rsa", tls11)) as port:
        facts, _, _ = await probe(context, port)
    assert facts == TlsFacts("TLSv1.1", "ECDHE-RSA-AES128-SHA", True, "x25519", 253)


async def test_concurrent_connections_share_one_context_but_not_facts(
        cert_files: dict[str, tuple[Path, Path]]) -> None:
    context = make_probe_context()
    dhe = server_context(cert_files, "rsa", _tls12("DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0",
                                                   dh=cert_files["dh1024"][0]))
    p384 = server_context(cert_files, "ec", lambda c: c.set_ecdh_curve("secp384r1"))
    async with tls_server(dhe) as dhe_port, tls_server(p384) as p384_port:
        results = await asyncio.gather(*(probe(context, port)
                                         for port in [dhe_port, p384_port] * 5))
    groups = [(facts.kex_group, facts.kex_bits) for facts, _, _ in results if facts]
    assert groups == [("dhe", 1024), ("secp384r1", 384)] * 5


async def test_observers_are_forgotten_and_do_not_outlive_connections(
        cert_files: dict[str, tuple[Path, Path]]) -> None:
    context = make_probe_context()
    async with tls_server(server_context(cert_files, "ec", lambda c: None)) as port:
        _, writer = await asyncio.open_connection("127.0.0.1", port, ssl=context.ssl_context)
        ssl_object = writer.get_extra_info("ssl_object")
        assert len(context) == 1 and context.facts_for(ssl_object) is not None
        context.forget(ssl_object)
        assert len(context) == 0 and context.observer_for(ssl_object) is None
        writer.close()
        await writer.wait_closed()
        for _ in range(3):
            await probe(context, port)  # never forgotten
    del ssl_object, writer
    gc.collect()
    assert len(context) == 0


@pytest.fixture(scope="module")
def lab_pki(tmp_path_factory: pytest.TempPathFactory) -> LabPki:
    return LabPki.create(tmp_path_factory.mktemp("lab-pki"), dt.datetime.now(dt.UTC))


@pytest.mark.parametrize("behaviour", sorted(NEGOTIATES_TLS))
async def test_lab_servers_give_the_expected_facts_and_chain(
        lab_pki: LabPki, behaviour: Behaviour) -> None:
    host = LabHost("127.9.0.1", behaviour, ("mx1.lab.test",), "mx1.lab.test ESMTP")
    context = make_probe_context()
    async with tls_server(lab_pki.server_context(host)) as port:
        facts, chain, _ = await probe(context, port)
    expected = EXPECTED[behaviour]
    assert facts is not None
    assert (facts.version, facts.forward_secrecy, facts.kex_group, facts.kex_bits) == (
        expected.tls_version, expected.forward_secrecy, expected.kex_group, expected.kex_bits)
    assert chain == tuple(c.public_bytes(serialization.Encoding.DER)
                          for c in lab_pki.served_chain(host))


async def test_lab_huge_certificate_fails_the_handshake(lab_pki: LabPki) -> None:
    # OpenSSL's 100 kB certificate-list limit stays: a 1 MB chain is the server's failure.
    host = LabHost("127.9.0.2", Behaviour.HUGE_CERT, ("mx1.lab.test",), "mx1.lab.test ESMTP")
    context = make_probe_context()
    async with tls_server(lab_pki.server_context(host)) as port:
        with pytest.raises(ssl.SSLError, match="EXCESSIVE_MESSAGE_SIZE|excessive message size"):
            await probe(context, port)


def test_facts_for_an_unconnected_object_is_none() -> None:
    context = make_probe_context()
    ssl_object = context.ssl_context.wrap_bio(ssl.MemoryBIO(), ssl.MemoryBIO())
    assert context.facts_for(ssl_object) is None
    assert unverified_chain_der(ssl_object) == ()


def test_probe_context_settings() -> None:
    ctx = make_probe_context().ssl_context
    assert ctx.verify_mode is ssl.CERT_NONE and not ctx.check_hostname
    assert ctx.minimum_version is ssl.TLSVersion.TLSv1
    assert ctx.maximum_version is ssl.TLSVersion.TLSv1_3
    assert ctx.options & 0x4  # SSL_OP_LEGACY_SERVER_CONNECT
    assert any(c["name"] == "DHE-RSA-AES128-GCM-SHA256" for c in ctx.get_ciphers())


def test_key_exchange_agrees_with_openssl_for_every_cipher() -> None:
    expected = {"kx-any": KeyExchange.TLS13, "kx-ecdhe": KeyExchange.ECDHE,
                "kx-dhe": KeyExchange.DHE, "kx-rsa": KeyExchange.RSA,
                "kx-ecdhe-psk": KeyExchange.ECDHE, "kx-dhe-psk": KeyExchange.DHE,
                "kx-rsa-psk": KeyExchange.RSA, "kx-psk": KeyExchange.OTHER,
                "kx-srp": KeyExchange.OTHER, "kx-gost": KeyExchange.OTHER,
                "kx-gost18": KeyExchange.OTHER}
    for cipher in make_probe_context().ssl_context.get_ciphers():
        assert key_exchange_of(cipher["name"]) is expected[cipher["kea"]], cipher["name"]


def test_ffdhe_primes_match_rfc7919() -> None:
    primes = ffdhe_primes()
    assert {name: hashlib.sha256(p.to_bytes(p.bit_length() // 8, "big")).hexdigest()
            for p, name in primes.items()} == FFDHE_SHA256


# --- hand-built messages -----------------------------------------------------------------


def _handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body


def _ext(ext_type: int, data: bytes) -> bytes:
    return struct.pack("!HH", ext_type, len(data)) + data


def server_hello(version: int = 0x0303, suite: int = 0x1301, random: bytes = b"\x11" * 32,
                 extensions: bytes | None = None) -> bytes:
    body = struct.pack("!H", version) + random + b"\x00" + struct.pack("!HB", suite, 0)
    if extensions is not None:
        body += struct.pack("!H", len(extensions)) + extensions
    return _handshake(2, body)


def test_server_hello_tls13_fields() -> None:
    msg = server_hello(extensions=_ext(43, b"\x03\x04") + _ext(51, b"\x00\x1d\x00\x02ab"))
    hello = parse_server_hello(msg)
    assert hello is not None
    assert (hello.version, hello.cipher_suite, hello.key_share_group, hello.hello_retry) == (
        "TLSv1.3", 0x1301, 29, False)


def test_server_hello_without_extensions_is_old_tls() -> None:
    hello = parse_server_hello(server_hello(version=0x0301, suite=0x002F))
    assert hello is not None and (hello.version, hello.key_share_group) == ("TLSv1", None)


def test_hello_retry_request_names_the_wanted_group() -> None:
    msg = server_hello(random=HRR_RANDOM, extensions=_ext(43, b"\x03\x04") + _ext(51, b"\x00\x18"))
    hello = parse_server_hello(msg)
    assert hello is not None and hello.hello_retry and hello.key_share_group == 24


def test_server_key_exchange_ecdhe_and_dhe() -> None:
    ecdhe = parse_server_key_exchange(_handshake(12, b"\x03\x00\x17\x41" + b"\x04" * 65))
    assert ecdhe is not None and ecdhe.ec_group == 23 and ecdhe.dh_prime_bits is None
    p = b"\x80" + b"\x01" * 127
    dhe = parse_server_key_exchange(_handshake(12, b"\x00\x80" + p + b"\x00\x01\x02\x00\x01\x05"))
    assert dhe is not None and dhe.dh_prime_bits == 1024 and dhe.dh_named_group is None


@pytest.mark.parametrize("message", [
    b"", b"\x02", b"\x02\x00\x00", b"\x02\xff\xff\xff", server_hello()[:-1],
    server_hello(extensions=_ext(43, b"\x03")), server_hello(extensions=b"\x00\x2b\x00\x09"),
    server_hello(extensions=_ext(51, b"")), _handshake(12, b""), b"\x0c\x00\x00\x01\x03",
])
def test_truncated_messages_parse_to_none(message: bytes) -> None:
    assert parse_server_hello(message) is None
    assert parse_server_key_exchange(message) is None


def test_missing_messages_give_none_groups_not_errors() -> None:
    assert tls_facts("TLSv1.3", "TLS_AES_128_GCM_SHA256", None) == TlsFacts(
        "TLSv1.3", "TLS_AES_128_GCM_SHA256", True, None, None)
    assert tls_facts("TLSv1.2", "DHE-RSA-AES128-SHA", HandshakeObserver()).kex_group is None


def test_unknown_group_keeps_its_number() -> None:
    observer = HandshakeObserver()
    observer.observe("read", 22, server_hello(extensions=_ext(51, b"\xfa\xfa\x00\x01x")))
    facts = tls_facts("TLSv1.3", "TLS_AES_128_GCM_SHA256", observer)
    assert (facts.kex_group, facts.kex_bits) == ("group_0xfafa", None)
    assert GROUPS[29] == ("x25519", 253)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parsers_never_raise_on_random_bytes(data: bytes) -> None:
    for msg_type in (b"\x02", b"\x0c", b""):
        message = msg_type + data
        parse_server_hello(message)
        parse_server_key_exchange(message)
        observer = HandshakeObserver()
        observer.observe("read", 22, message)
        tls_facts("TLSv1.2", "ECDHE-RSA-AES128-SHA", observer)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 0xFFFF), st.binary(max_size=40)), max_size=6),
       st.integers(0, 400))
def test_server_hello_with_random_extensions_never_raises(
        extensions: list[tuple[int, bytes]], cut: int) -> None:
    message = server_hello(extensions=b"".join(_ext(t, d) for t, d in extensions))
    parse_server_hello(message[:cut] if cut < len(message) else message)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=1, max_size=200), st.sampled_from(["read", "write"]),
       st.integers(0, 300))
def test_message_callback_never_raises(data: bytes, direction: str, content_type: int) -> None:
    context = make_probe_context()
    callback = context.ssl_context._msg_callback  # type: ignore[attr-defined]
    owner = ssl.MemoryBIO()  # any weak-referenceable stand-in for the connection
    callback(owner, direction, 0x0303, content_type, data[0], data)
    callback(None, direction, 0x0303, content_type, data[0], data)
    callback(object(), "read", 0x0303, 22, 2, b"\x02" + data)  # not weak-referenceable
