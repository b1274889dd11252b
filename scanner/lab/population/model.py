"""The lab's shared model: one simulated mail server host, as population and servers see it."""

from __future__ import annotations

from dataclasses import dataclass

from scanner.lab.population.behaviours import Behaviour


@dataclass(frozen=True, slots=True)
class LabHost:
    """One simulated mail server on its own loopback address.

    `cert_names` are the DNS names the (valid-kind) certificate carries: every MX host name that
    points at this address, so strict validation succeeds for each of them; behaviours that need
    another name (wrong_name) ignore it.
    """

    ip: str  # 127.x.y.z, never 127.0.0.1 (the lab's DNS and control live there)
    behaviour: Behaviour
    mx_names: tuple[str, ...]  # MX host names (A records) that resolve to this address
    banner: str  # greeting text after "220 ", e.g. "mx1.example.test ESMTP Postfix (Debian/GNU)"
    latency_ms: int = 0  # delay before every reply, so concurrency matters
    cert_names: tuple[str, ...] = ()
    software: str | None = None  # the MTA the banner announces, as the truth states it
    software_version: str | None = None

    @property
    def listens(self) -> bool:
        """False for `refused`: nothing listens on the address."""
        return self.behaviour is not Behaviour.REFUSED
