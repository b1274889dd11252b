"""The lab's PKI: a root and an intermediate CA, and one server TLS context per behaviour.

Contexts are built lazily and kept in a bounded LRU cache keyed by (behaviour, certificate names),
so a lab of 10,000+ hosts starts at once and holds only the contexts in recent use (a context
costs ~1 ms of CPU to build, mostly OpenSSL loading the PEM, and ~30 KB to keep). Leaf keys are
shared per key type: generating keys per host would cost CPU and tells the survey nothing.
Leaves are deterministic, so an evicted context comes back with the same certificate.
"""

from __future__ import annotations

import os
import ssl
import tempfile
import threading
import warnings
from collections import OrderedDict
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from scanner.lab.population.behaviours import Behaviour
from scanner.lab.population.model import LabHost
from scanner.lab.population.pki_certs import (
    Issuer,
    LeafKey,
    build_ca,
    build_leaf,
    build_unrelated,
    derive_leaf_key,
    garbage_policies_extension,
    huge_extension,
)

#: A 1024-bit DH group (public parameters, made once with `openssl dhparam 1024`): logjam-weak.
DH1024_PEM = b"""-----BEGIN DH PARAMETERS-----
MIGHAoGBAL2okkD0fGUvSpATshXUwM9V7DJnhMtJDmtFrXRY8xvcNEqEIFohws/Q
ylnGPGUsVEDDc7Z/vaQPKl4WEITWFivS3KZwwsXhDYGkcE4wo2/GIeqamPNS/5tn
rn+5EPwKQdAsVEagnd8m9KaKPSClfNxtXEP9Fk1CEF7WvvNB+Yf3AgEC
-----END DH PARAMETERS-----
"""

WRONG_NAME = "not-this-host.test"
HUGE_CERT_NAME = "huge-cert.lab.test"
BAD_CERT_NAME = "bad-cert.lab.test"
UNRELATED_CERTS = 98  # long_chain: leaf + intermediate + this many unrelated certificates
HUGE_EXTENSION_BYTES = 1 << 20

#: Behaviours with a TLS profile of their own; every other behaviour that completes a handshake
#: (multiline_greeting, greet_pause, nul_bytes...) gets the `valid` one.
_OWN_PROFILE = frozenset({
    Behaviour.EXPIRED, Behaviour.NOT_YET_VALID, Behaviour.SELF_SIGNED, Behaviour.WRONG_NAME,
    Behaviour.MISSING_INTERMEDIATE, Behaviour.RSA1024, Behaviour.TLS10_11_ONLY,
    Behaviour.TLS13_ONLY, Behaviour.DHE1024, Behaviour.NO_FS, Behaviour.LONG_CHAIN,
    Behaviour.HUGE_CERT, Behaviour.BAD_CERT,
})
#: Behaviours whose certificate does not carry the host's names: one context serves them all.
_NAMELESS = frozenset({Behaviour.WRONG_NAME, Behaviour.HUGE_CERT, Behaviour.BAD_CERT})
_DAY = timedelta(days=1)
_Chain = tuple[x509.Certificate, ...]
_Entry = tuple[ssl.SSLContext, _Chain]


class LabPki:
    """The lab CA (root + intermediate) and a cache of per-behaviour server contexts."""

    def __init__(self, directory: Path, now: datetime, root: Issuer, intermediate: Issuer,
                 *, cache_size: int = 1024) -> None:
        self.directory = directory
        self.now = now
        self.root = root
        self.intermediate = intermediate
        self.cache_size = cache_size
        self._cache: OrderedDict[tuple[Behaviour, tuple[str, ...]], _Entry] = OrderedDict()
        # Derived from the intermediate's key, so processes sharing the CA (lab workers) serve
        # the very same EC leaves; RSA keys cannot be derived and differ per instance.
        self._keys: dict[str, LeafKey] = {"ec": LeafKey(derive_leaf_key(intermediate))}
        self._unrelated: tuple[x509.Certificate, ...] | None = None
        self._lock = threading.Lock()  # serve.py may build contexts from several threads
        # RSA key generation takes up to a few hundred ms: done in the background (it releases
        # the GIL) so the first rsa1024/dhe1024 handshake does not stall a whole event loop.
        self._rsa_keys = threading.Thread(target=self._generate_rsa_keys, name="lab-pki-rsa",
                                          daemon=True)
        self._rsa_keys.start()

    @classmethod
    def create(cls, directory: Path, now: datetime, *, cache_size: int = 1024) -> LabPki:
        """Make a root and an intermediate CA valid around `now`; write the root to lab-ca.pem."""
        directory.mkdir(parents=True, exist_ok=True)
        root = build_ca("STARTTLS Survey Lab Root CA", now, issuer=None)
        intermediate = build_ca("STARTTLS Survey Lab Intermediate CA", now, issuer=root)
        pki = cls(directory, now, root, intermediate, cache_size=cache_size)
        pki.ca_pem.write_bytes(root.cert.public_bytes(serialization.Encoding.PEM))
        return pki

    @property
    def ca_pem(self) -> Path:
        """The root certificate (PEM): the trust anchor a lab scan adds to its store."""
        return self.directory / "lab-ca.pem"

    def server_context(self, host: LabHost) -> ssl.SSLContext:
        """The server-side context for `host`'s behaviour, built on first use and cached."""
        return self._entry(host)[0]

    def served_chain(self, host: LabHost) -> tuple[x509.Certificate, ...]:
        """The certificates `server_context(host)` sends, leaf first (same cache entry)."""
        return self._entry(host)[1]

    def _entry(self, host: LabHost) -> _Entry:
        behaviour = host.behaviour if host.behaviour in _OWN_PROFILE else Behaviour.VALID
        names = () if behaviour in _NAMELESS else tuple(host.cert_names or host.mx_names)
        key = (behaviour, names)
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None:
                self._cache.move_to_end(key)
                return entry
            chain = self._chain(behaviour, names)
            entry = self._cache[key] = (self._build_context(behaviour, chain), chain)
            if len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
            return entry

    def _chain(self, behaviour: Behaviour, names: tuple[str, ...]) -> _Chain:
        now, inter, ec_key = self.now, self.intermediate, self._key("ec")
        usual = (now - 30 * _DAY, now + 365 * _DAY)
        leaf_names = names or ("lab-host.test",)
        if behaviour is Behaviour.EXPIRED:
            leaf = build_leaf(leaf_names, ec_key, inter, (now - 400 * _DAY, now - 30 * _DAY))
        elif behaviour is Behaviour.NOT_YET_VALID:
            leaf = build_leaf(leaf_names, ec_key, inter, (now + 30 * _DAY, now + 395 * _DAY))
        elif behaviour is Behaviour.SELF_SIGNED:
            return (build_leaf(leaf_names, ec_key, None, usual),)
        elif behaviour is Behaviour.WRONG_NAME:
            leaf = build_leaf((WRONG_NAME,), ec_key, inter, usual)
        elif behaviour is Behaviour.MISSING_INTERMEDIATE:
            return (build_leaf(leaf_names, ec_key, inter, usual),)
        elif behaviour is Behaviour.RSA1024:
            leaf = build_leaf(leaf_names, self._key("rsa1024"), inter, usual)
        elif behaviour in (Behaviour.DHE1024, Behaviour.NO_FS):
            leaf = build_leaf(leaf_names, self._key("rsa2048"), inter, usual)
        elif behaviour is Behaviour.HUGE_CERT:
            leaf = build_leaf((HUGE_CERT_NAME,), ec_key, inter, usual,
                              extra=huge_extension(HUGE_EXTENSION_BYTES))
        elif behaviour is Behaviour.BAD_CERT:
            leaf = build_leaf((BAD_CERT_NAME,), ec_key, inter, usual,
                              extra=garbage_policies_extension())
        else:
            leaf = build_leaf(leaf_names, ec_key, inter, usual)
        if behaviour is Behaviour.LONG_CHAIN:
            return (leaf, inter.cert, *self._unrelated_certs())
        return (leaf, inter.cert)

    def _build_context(self, behaviour: Behaviour, chain: _Chain) -> ssl.SSLContext:
        key = self._key({Behaviour.RSA1024: "rsa1024", Behaviour.DHE1024: "rsa2048",
                         Behaviour.NO_FS: "rsa2048"}.get(behaviour, "ec"))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.num_tickets = 0  # resumption is useless to a survey and costs every handshake
        context.options |= ssl.OP_NO_TICKET
        if behaviour is Behaviour.TLS10_11_ONLY:
            # Debian's OpenSSL 3.0 refuses TLS < 1.2 above security level 0.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                context.minimum_version = ssl.TLSVersion.TLSv1
                context.maximum_version = ssl.TLSVersion.TLSv1_1
        elif behaviour is Behaviour.TLS13_ONLY:
            context.minimum_version = ssl.TLSVersion.TLSv1_3
        elif behaviour is Behaviour.DHE1024:
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers("DHE-RSA-AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0")
            context.load_dh_params(str(self._dh_params_path()))
        elif behaviour is Behaviour.NO_FS:
            # RSA key exchange only: the session keys die with the server's RSA key
            context.maximum_version = ssl.TLSVersion.TLSv1_2
            context.set_ciphers("AES256-GCM-SHA384:AES128-GCM-SHA256")
        elif behaviour is Behaviour.RSA1024:
            context.set_ciphers("DEFAULT:@SECLEVEL=0")  # a 1024-bit key fails level 2 at load
        pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in chain) + key.pem
        _load_chain(context, pem, self.directory)
        return context

    def _key(self, kind: str) -> LeafKey:
        """The shared leaf key of a kind: "ec" (P-256), "rsa1024" or "rsa2048"."""
        if kind != "ec":
            self._rsa_keys.join()
        return self._keys[kind]

    def _generate_rsa_keys(self) -> None:
        for bits in (1024, 2048):
            self._keys[f"rsa{bits}"] = LeafKey(rsa.generate_private_key(65537, bits))

    def _unrelated_certs(self) -> _Chain:
        if self._unrelated is None:
            self._unrelated = build_unrelated(UNRELATED_CERTS, self._key("ec"), self.now)
        return self._unrelated

    def _dh_params_path(self) -> Path:
        path = self.directory / "dh1024.pem"
        if not path.exists():
            path.write_bytes(DH1024_PEM)
        return path


def _load_chain(context: ssl.SSLContext, pem: bytes, directory: Path) -> None:
    """Load a PEM chain and key: ssl reads them only from a file, so a short-lived one."""
    if hasattr(os, "memfd_create"):  # Linux: an anonymous in-memory file, no disk involved
        fd = os.memfd_create("lab-chain")
        with open(fd, "wb") as memfile:
            memfile.write(pem)
            memfile.flush()
            context.load_cert_chain(f"/proc/self/fd/{fd}")
        return
    with tempfile.NamedTemporaryFile(dir=directory, suffix=".pem") as handle:
        handle.write(pem)
        handle.flush()
        context.load_cert_chain(handle.name)
