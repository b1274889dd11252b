"""Resolver failures as DnsStatus values: the one place that reads c-ares error codes.

aiodns raises `aiodns.error.DNSError(code, message)` (and pycares, synchronously,
`pycares.AresError(code, message)`), where `code` is a c-ares status. Statistics use the
status; `error_detail` keeps the c-ares message for debugging.
"""

from __future__ import annotations

import aiodns
import pycares
from pycares import errno as ares

from scanner.model.status import DnsStatus

_STATUS_BY_CODE: dict[int, DnsStatus] = {
    ares.ARES_ENOTFOUND: DnsStatus.NXDOMAIN,
    ares.ARES_ENODATA: DnsStatus.NODATA,
    ares.ARES_ESERVFAIL: DnsStatus.SERVFAIL,
    ares.ARES_EREFUSED: DnsStatus.REFUSED,  # the server answered REFUSED
    ares.ARES_ETIMEOUT: DnsStatus.TIMEOUT,
    # ARES_ECONNREFUSED means the resolver's port is closed (ICMP port unreachable): a problem
    # at our end, not an answer about the name, so it stays `error` rather than `refused`.
}

#: Statuses that are answers about the name (they do not change if asked again).
NEGATIVE_ANSWERS = frozenset({DnsStatus.NXDOMAIN, DnsStatus.NODATA})


def ares_code(error: BaseException) -> int | None:
    """The c-ares status code carried by an aiodns/pycares error, or None."""
    if isinstance(error, aiodns.error.DNSError | pycares.AresError) and error.args:
        code = error.args[0]
        if isinstance(code, int):
            return code
    return None


def dns_status_from(error: BaseException) -> DnsStatus:
    """Map a resolver failure to its DnsStatus; anything unexpected is our own internal_error."""
    code = ares_code(error)
    if code is not None:
        return _STATUS_BY_CODE.get(code, DnsStatus.ERROR)
    if isinstance(error, aiodns.error.DNSError | pycares.AresError):
        return DnsStatus.ERROR
    if isinstance(error, TimeoutError):  # our own deadline around a c-ares query
        return DnsStatus.TIMEOUT
    return DnsStatus.INTERNAL_ERROR


def error_detail(error: BaseException) -> str:
    """The c-ares message ("DNS server returned general failure"), else the exception text."""
    code = ares_code(error)
    if code is not None and len(error.args) > 1 and isinstance(error.args[1], str):
        return error.args[1]
    return str(error) or type(error).__name__


def no_data_error() -> aiodns.error.DNSError:
    """The error c-ares gives for NODATA, for answers that hold no record of the asked type.

    c-ares only reports ENODATA for an empty answer section; an answer with just a CNAME (to a
    name without the type) succeeds with no usable record, which is NODATA all the same.
    """
    code = ares.ARES_ENODATA
    return aiodns.error.DNSError(code, ares.strerror(code))


def combine_statuses(statuses: tuple[DnsStatus, ...]) -> DnsStatus:
    """One status for a name's A and AAAA lookups when neither gave an address.

    Both negative: NXDOMAIN if either says so, else NODATA. Otherwise the first failure that is
    not a negative answer (A before AAAA): with one family unknown, "no address" is not proven.
    """
    if all(s in NEGATIVE_ANSWERS for s in statuses):
        return DnsStatus.NXDOMAIN if DnsStatus.NXDOMAIN in statuses else DnsStatus.NODATA
    return next(s for s in statuses if s not in NEGATIVE_ANSWERS)
