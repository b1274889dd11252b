"""The lab's MTA-STS policy server: HTTPS on loopback, one certificate per mta-sts.<domain>.

Every `mta-sts.<domain>` name of the population points at this one address; the server picks
the certificate by SNI (built on first use, from the lab CA) and the answer by the Host header:
the policy, a 404, a body that is not a policy, or a certificate for another name.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import ssl
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from scanner.lab.population.pki import LabPki
from scanner.lab.population.pki_certs import LeafKey, build_leaf, derive_leaf_key
from scanner.lab.population.policies import StsResponse

log = logging.getLogger(__name__)

WRONG_STS_NAME = "not-the-policy-host.test"
_MAX_REQUEST_BYTES = 8192
_READ_TIMEOUT_S = 5.0
_REASONS = {200: "OK", 404: "Not Found"}


class StsServer:
    """A running policy server; `requests` counts the requests answered."""

    def __init__(self, responses: Mapping[str, StsResponse], pki: LabPki, directory: Path
                 ) -> None:
        self.responses = dict(responses)
        self.requests = 0
        self.port = 0
        self._pki = pki
        self._directory = directory
        self._key = LeafKey(derive_leaf_key(pki.intermediate))
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._server: asyncio.Server | None = None

    def context_for(self, cert_name: str) -> ssl.SSLContext:
        """A server context whose leaf names `cert_name` (built once)."""
        context = self._contexts.get(cert_name)
        if context is None:
            now = self._pki.now
            leaf = build_leaf((cert_name,), self._key, self._pki.intermediate,
                              (now - timedelta(days=30), now + timedelta(days=365)))
            pem = b"".join(c.public_bytes(serialization.Encoding.PEM)
                           for c in (leaf, self._pki.intermediate.cert)) + self._key.pem
            digest = hashlib.sha256(cert_name.encode()).hexdigest()[:16]
            path = self._directory / f"sts-{digest}.pem"
            path.write_bytes(pem)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(path)
            context.sni_callback = self._pick_context
            context = self._contexts.setdefault(cert_name, context)
        return context

    def _pick_context(self, sock: ssl.SSLObject, server_name: str | None,
                      _context: ssl.SSLContext) -> None:
        """SNI: the policy host's own certificate, or another name's for `wrong_cert`."""
        name = (server_name or "").lower()
        response = self.responses.get(name)
        if response is None or response.wrong_cert:
            name = WRONG_STS_NAME
        sock.context = self.context_for(name)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(_READ_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError,
                ConnectionError, ssl.SSLError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 2 else ""
        host = next((line.partition(":")[2].strip().lower() for line in lines[1:]
                     if line.lower().startswith("host:")), "")
        response = self.responses.get(host.split(":")[0])
        if response is None or path != "/.well-known/mta-sts.txt":
            response = StsResponse(404, b"not found\n")
        self.requests += 1
        writer.write((f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Error')}\r\n"
                      f"Content-Type: text/plain\r\nContent-Length: {len(response.body)}\r\n"
                      "Connection: close\r\n\r\n").encode() + response.body)
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await writer.drain()
        writer.close()

    async def close(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def start_sts_server(responses: Mapping[str, StsResponse], pki: LabPki, directory: Path,
                           host: str = "127.0.0.1", port: int = 0) -> StsServer:
    """Serve MTA-STS policies over HTTPS on host:port (0: a free port)."""
    server = StsServer(responses, pki, directory)
    default = server.context_for(WRONG_STS_NAME)  # clients without SNI get the wrong name
    server._server = await asyncio.start_server(server._serve, host, port, ssl=default,
                                                limit=_MAX_REQUEST_BYTES)
    server.port = server._server.sockets[0].getsockname()[1]
    return server
