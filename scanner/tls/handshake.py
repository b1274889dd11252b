"""TLS facts from the raw handshake messages that SSLContext._msg_callback shows us.

CPython exposes the negotiated version and cipher but not the key-exchange group or the DH prime,
so we read them from the server's ServerHello (TLS 1.3 key_share, supported_versions) and
ServerKeyExchange (TLS <= 1.2: ECDHE named curve, or the DHE prime for the logjam question).
Servers may be hostile: every parser returns None on malformed input and never raises.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from scanner.model.records import TlsFacts
from scanner.tls.dh_primes import ffdhe_group_name

log = logging.getLogger(__name__)

HANDSHAKE_CONTENT_TYPE = 22
SERVER_HELLO = 2
SERVER_KEY_EXCHANGE = 12
# RFC 8446 §4.1.3: a HelloRetryRequest is a ServerHello with this random.
_HRR_RANDOM = bytes.fromhex("cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")
_EXT_SUPPORTED_VERSIONS = 43
_EXT_KEY_SHARE = 51
_NAMED_CURVE = 3  # RFC 8422 ECCurveType

#: Protocol version names as ssl.SSLObject.version() spells them.
VERSION_NAMES = {0x0300: "SSLv3", 0x0301: "TLSv1", 0x0302: "TLSv1.1", 0x0303: "TLSv1.2",
                 0x0304: "TLSv1.3"}

#: IANA TLS Supported Groups: id -> (name, key-exchange bits as OpenSSL reports them).
GROUPS: dict[int, tuple[str, int | None]] = {
    1: ("sect163k1", 163), 2: ("sect163r1", 163), 3: ("sect163r2", 163), 4: ("sect193r1", 193),
    5: ("sect193r2", 193), 6: ("sect233k1", 233), 7: ("sect233r1", 233), 8: ("sect239k1", 239),
    9: ("sect283k1", 283), 10: ("sect283r1", 283), 11: ("sect409k1", 409),
    12: ("sect409r1", 409), 13: ("sect571k1", 571), 14: ("sect571r1", 571),
    15: ("secp160k1", 160), 16: ("secp160r1", 160), 17: ("secp160r2", 160),
    18: ("secp192k1", 192), 19: ("secp192r1", 192), 20: ("secp224k1", 224),
    21: ("secp224r1", 224), 22: ("secp256k1", 256), 23: ("secp256r1", 256),
    24: ("secp384r1", 384), 25: ("secp521r1", 521), 26: ("brainpoolP256r1", 256),
    27: ("brainpoolP384r1", 384), 28: ("brainpoolP512r1", 512),
    29: ("x25519", 253),  # OpenSSL counts X25519 as 253 bits
    30: ("x448", 448), 31: ("brainpoolP256r1tls13", 256), 32: ("brainpoolP384r1tls13", 384),
    33: ("brainpoolP512r1tls13", 512), 256: ("ffdhe2048", 2048), 257: ("ffdhe3072", 3072),
    258: ("ffdhe4096", 4096), 259: ("ffdhe6144", 6144), 260: ("ffdhe8192", 8192),
    0x11EB: ("SecP256r1MLKEM768", None), 0x11EC: ("X25519MLKEM768", None),
    0x11ED: ("SecP384r1MLKEM1024", None), 0x6399: ("X25519Kyber768Draft00", None),
}


def group_name_and_bits(group_id: int) -> tuple[str, int | None]:
    """Name and size of a TLS group id; unknown ids keep their number."""
    return GROUPS.get(group_id, (f"group_0x{group_id:04x}", None))


class KeyExchange(StrEnum):
    """How the session key was agreed, as the cipher suite says."""

    TLS13 = "tls13"  # (EC)DHE via key_share, always forward secret here: we never resume
    ECDHE = "ecdhe"
    DHE = "dhe"
    RSA = "rsa"
    OTHER = "other"  # PSK, SRP, GOST: rare, no group to report


def key_exchange_of(cipher: str, version: str | None = None) -> KeyExchange:
    """Key exchange of an OpenSSL cipher name (agrees with SSLContext.get_ciphers()'s 'kea')."""
    if version == "TLSv1.3" or cipher.startswith("TLS_"):
        return KeyExchange.TLS13
    if cipher.startswith(("ECDHE-", "AECDH-")):
        return KeyExchange.ECDHE
    if cipher.startswith(("DHE-", "EDH-", "ADH-")):
        return KeyExchange.DHE
    if cipher.startswith(("PSK-", "SRP-", "GOST")):
        return KeyExchange.OTHER
    return KeyExchange.RSA  # plain RSA and RSA-PSK


@dataclass(frozen=True, slots=True)
class ServerHello:
    """What a ServerHello says. version is None when it names no known protocol version."""

    version: str | None  # from supported_versions when present (TLS 1.3), else legacy_version
    cipher_suite: int
    key_share_group: int | None  # TLS 1.3 (a HelloRetryRequest names the group it wants)
    hello_retry: bool


@dataclass(frozen=True, slots=True)
class ServerKeyExchange:
    """Both readings of a ServerKeyExchange; the negotiated cipher decides which one applies.

    The message does not say whether it holds ECDHE or DHE parameters, and the cipher name is
    only certain once the handshake is over, so both readings are kept (each a few bytes).
    """

    ec_group: int | None  # named curve id, when it reads as ECDHE parameters
    ec_explicit: bool  # ECDHE with explicit curve parameters (no name)
    dh_prime_bits: int | None  # when it reads as DHE parameters
    dh_named_group: str | None  # "ffdhe2048".. when the prime is an RFC 7919 one


class _Malformed(Exception):
    """A length or field ran past the end of its message."""


class _Reader:
    """A bounds-checked cursor over one message."""

    __slots__ = ("_data", "_pos")

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def take(self, n: int) -> bytes:
        end = self._pos + n
        if end > len(self._data):
            raise _Malformed
        chunk = self._data[self._pos:end]
        self._pos = end
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.uint(length_bytes))

    def remaining(self) -> int:
        return len(self._data) - self._pos


def _body(message: bytes, msg_type: int) -> bytes:
    """The body of a handshake message (type, 3-byte length, body) of the given type."""
    r = _Reader(message)
    if r.uint(1) != msg_type:
        raise _Malformed
    return r.vector(3)


def parse_server_hello(message: bytes) -> ServerHello | None:
    """Parse a ServerHello handshake message (with its 4-byte header); None when malformed."""
    try:
        r = _Reader(_body(message, SERVER_HELLO))
        version = r.uint(2)
        random = r.take(32)
        r.vector(1)  # session id
        suite = r.uint(2)
        r.uint(1)  # compression method
        group = None
        if r.remaining():  # extensions are optional before TLS 1.3
            exts = _Reader(r.vector(2))
            while exts.remaining():
                ext_type = exts.uint(2)
                ext = _Reader(exts.vector(2))
                if ext_type == _EXT_SUPPORTED_VERSIONS:
                    version = ext.uint(2)
                elif ext_type == _EXT_KEY_SHARE:
                    group = ext.uint(2)  # KeyShareEntry.group, or HRR's selected_group
        return ServerHello(VERSION_NAMES.get(version), suite, group, random == _HRR_RANDOM)
    except _Malformed:
        return None


def parse_server_key_exchange(message: bytes) -> ServerKeyExchange | None:
    """Parse a ServerKeyExchange handshake message both ways; None when neither reading fits."""
    try:
        body = _body(message, SERVER_KEY_EXCHANGE)
    except _Malformed:
        return None
    ec_group, ec_explicit = None, False
    try:
        r = _Reader(body)
        curve_type = r.uint(1)
        if curve_type == _NAMED_CURVE:
            ec_group = r.uint(2)
            if not r.vector(1):  # the server's public point
                raise _Malformed
        elif curve_type in (1, 2):  # explicit_prime / explicit_char2 (RFC 4492)
            ec_explicit = True
    except _Malformed:
        ec_group = None
    dh_bits, dh_named = None, None
    try:
        r = _Reader(body)
        p, g, ys = r.vector(2), r.vector(2), r.vector(2)
        if p and g and ys:
            prime = int.from_bytes(p, "big")
            dh_bits = prime.bit_length()
            dh_named = ffdhe_group_name(prime)
    except _Malformed:
        pass
    if ec_group is None and not ec_explicit and dh_bits is None:
        return None
    return ServerKeyExchange(ec_group, ec_explicit, dh_bits, dh_named)


class HandshakeObserver:
    """The ServerHello and ServerKeyExchange of ONE connection, parsed as they arrive.

    Only the parsed facts are kept, never the transcript. A later message of the same type
    (the ServerHello after a HelloRetryRequest, a renegotiation) replaces the earlier one.
    """

    __slots__ = ("server_hello", "server_key_exchange", "malformed", "__weakref__")

    def __init__(self) -> None:
        self.server_hello: ServerHello | None = None
        self.server_key_exchange: ServerKeyExchange | None = None
        self.malformed = False  # a message we wanted could not be parsed

    def observe(self, direction: str, content_type: int, data: bytes) -> None:
        """Take one message from _msg_callback; never raises."""
        try:
            if direction != "read" or content_type != HANDSHAKE_CONTENT_TYPE or not data:
                return
            msg_type = data[0]
            if msg_type == SERVER_HELLO:
                self.server_hello = parse_server_hello(bytes(data))
                self.malformed |= self.server_hello is None
            elif msg_type == SERVER_KEY_EXCHANGE:
                self.server_key_exchange = parse_server_key_exchange(bytes(data))
                self.malformed |= self.server_key_exchange is None
        except Exception:  # an exception here would surface inside OpenSSL's handshake
            log.debug("handshake message not understood", exc_info=True)
            self.malformed = True


def tls_facts(version: str, cipher: str, observer: HandshakeObserver | None) -> TlsFacts:
    """TlsFacts from the SSLObject's version and cipher plus what the observer parsed.

    kex_group and kex_bits are None when the message that names them was missing or malformed.
    """
    kx = key_exchange_of(cipher, version)
    hello = observer.server_hello if observer else None
    params = observer.server_key_exchange if observer else None
    group: str | None = None
    bits: int | None = None
    if kx is KeyExchange.TLS13:
        if hello is not None and hello.key_share_group is not None:
            group, bits = group_name_and_bits(hello.key_share_group)
    elif kx is KeyExchange.ECDHE:
        if params is not None and params.ec_group is not None:
            group, bits = group_name_and_bits(params.ec_group)
    elif kx is KeyExchange.DHE:
        if params is not None and params.dh_prime_bits is not None:
            group = params.dh_named_group or "dhe"
            bits = params.dh_prime_bits
    elif kx is KeyExchange.RSA:
        group = "rsa"
    forward_secrecy = kx in (KeyExchange.TLS13, KeyExchange.ECDHE, KeyExchange.DHE)
    return TlsFacts(version=version, cipher=cipher, forward_secrecy=forward_secrecy,
                    kex_group=group, kex_bits=bits)
