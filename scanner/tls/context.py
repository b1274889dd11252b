"""The client SSLContext of a scan, and which handshake messages belong to which connection.

One SSLContext serves the whole scan (building one is expensive), but _msg_callback is set per
context, so the callback files each message under the connection it came from: a weak mapping
from the SSLObject (or SSLSocket) to that connection's HandshakeObserver.
"""

from __future__ import annotations

import logging
import ssl
import warnings
import weakref
from typing import Any

from scanner.model.records import TlsFacts
from scanner.tls.handshake import (
    HANDSHAKE_CONTENT_TYPE,
    SERVER_HELLO,
    SERVER_KEY_EXCHANGE,
    HandshakeObserver,
    tls_facts,
)

log = logging.getLogger(__name__)

#: Everything OpenSSL has, at security level 0: a survey must complete handshakes that a
#: mail client would refuse (TLS 1.0, SHA-1 signatures, 1024-bit DH, RSA key exchange).
PROBE_CIPHERS = "ALL:@SECLEVEL=0"
# ssl.OP_LEGACY_SERVER_CONNECT is only named from Python 3.12 on; OpenSSL 3 refuses servers
# without RFC 5746 secure renegotiation unless it is set.
_OP_LEGACY_SERVER_CONNECT = getattr(ssl, "OP_LEGACY_SERVER_CONNECT", 0x4)
_WANTED = frozenset((SERVER_HELLO, SERVER_KEY_EXCHANGE))
_DER = getattr(getattr(ssl, "_ssl", None), "ENCODING_DER", 2)  # for _ssl.Certificate


def _set_raw_msg_callback(context: ssl.SSLContext, callback: Any) -> None:
    """Install callback on the C context, bypassing ssl.py's wrapper.

    The wrapper turns version, content type and message type into enum members for every TLS
    record of every connection, before our callback drops all but two kinds of message (~1 %
    of a scan's CPU by py-spy). The C level passes plain ints, which compare equal to those
    enums. Python versions without the C descriptor get the wrapper.
    """
    descriptor = getattr(getattr(getattr(ssl, "_ssl", None), "_SSLContext", None),
                         "_msg_callback", None)
    if descriptor is None or not hasattr(descriptor, "__set__"):
        context._msg_callback = callback  # type: ignore[attr-defined]
        return
    callback.user_function = callback  # what ssl.py's getter returns
    descriptor.__set__(context, callback)


class ProbeContext:
    """One client SSLContext per scan, with handshake facts attributed to each connection.

    Use `ssl_context` for every STARTTLS of the scan; after a handshake, `facts_for(ssl_object)`
    and then `forget(ssl_object)`. Observers of connections never forgotten vanish with their
    SSLObject, so memory stays bounded either way.
    """

    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._observers: weakref.WeakKeyDictionary[Any, HandshakeObserver] = (
            weakref.WeakKeyDictionary())
        self._ssl_context = ssl_context
        observers = self._observers  # the callback must not keep self (and the context) alive

        def on_message(conn: Any, direction: str, version: object, content_type: int,
                       msg_type: object, data: bytes) -> None:
            # Called for every TLS record; an exception would be re-raised by the SSL call.
            try:
                if (direction != "read" or content_type != HANDSHAKE_CONTENT_TYPE
                        or not data or data[0] not in _WANTED or conn is None):
                    return  # certificates and everything else: the chain comes from the SSLObject
                observer = observers.get(conn)
                if observer is None:
                    observer = observers[conn] = HandshakeObserver()
                observer.observe(direction, content_type, data)
            except Exception:
                log.debug("TLS message callback failed", exc_info=True)

        _set_raw_msg_callback(ssl_context, on_message)

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The client context to hand to start_tls / starttls."""
        return self._ssl_context

    def observer_for(self, ssl_object: object) -> HandshakeObserver | None:
        """The messages seen so far on this connection; None when none was seen."""
        try:
            return self._observers.get(ssl_object)
        except TypeError:  # not weak-referenceable: never observed
            return None

    def facts_for(self, ssl_object: ssl.SSLObject | ssl.SSLSocket) -> TlsFacts | None:
        """TlsFacts of a finished handshake; None when the handshake did not complete."""
        try:
            version = ssl_object.version()
            cipher = ssl_object.cipher()
        except (ValueError, OSError):  # closed or never connected
            return None
        if version is None or cipher is None:
            return None
        return tls_facts(version, cipher[0], self.observer_for(ssl_object))

    def forget(self, ssl_object: object) -> None:
        """Drop what was recorded for this connection."""
        try:
            self._observers.pop(ssl_object, None)
        except TypeError:
            pass

    def __len__(self) -> int:
        """Connections currently tracked."""
        return len(self._observers)


def make_probe_context() -> ProbeContext:
    """The scan's client context: no verification, TLS 1.0 to 1.3, every cipher, no SNI needed."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the chain is judged afterwards, by verify.py
    with warnings.catch_warnings():
        # TLS 1.0/1.1 are deprecated in Python; measuring who still needs them is the point.
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.minimum_version = ssl.TLSVersion.TLSv1
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_ciphers(PROBE_CIPHERS)
    ctx.options |= _OP_LEGACY_SERVER_CONNECT
    # Many MTAs close after QUIT without close_notify; that is not an error worth reporting.
    ctx.options |= getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    return ProbeContext(ctx)


def unverified_chain_der(ssl_object: ssl.SSLObject | ssl.SSLSocket) -> tuple[bytes, ...]:
    """The certificates as the server sent them, leaf first, as DER; () when none were sent."""
    chain: list[Any] | None = None
    try:
        public = getattr(ssl_object, "get_unverified_chain", None)  # Python 3.13+
        if public is not None:
            chain = public()
        else:
            inner = getattr(ssl_object, "_sslobj", None)  # Python 3.10-3.12: _ssl._SSLSocket
            chain = inner.get_unverified_chain() if inner is not None else None
        if chain:
            return tuple(c if isinstance(c, bytes) else c.public_bytes(_DER) for c in chain)
    except (ValueError, OSError, AttributeError):
        log.debug("unverified chain not available", exc_info=True)
    try:
        leaf = ssl_object.getpeercert(binary_form=True)
    except (ValueError, OSError):
        return ()
    return (leaf,) if leaf else ()
