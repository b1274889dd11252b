"""Distributions over the hosts of a scan: TLS versions, ciphers, key exchange, DH sizes,
certificate problems, issuers, MTA software and the most common banners.

Denominators: TLS facts and certificate problems are shares of the hosts that negotiated TLS
(`tls_hosts`); software and banners of the hosts that answered SMTP (`answered_hosts`).
A host may have several certificate problems; `no_problem` counts hosts with none.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow.compute as pc

from scanner.sink.dataset import dataset_columns, read_dataset, read_manifest

#: The certificate problems, in the order tables show them.
CERT_PROBLEMS = ("expired", "not_yet_valid", "self_signed", "wrong_name", "untrusted",
                 "weak_key", "sha1_signature")
LOGJAM_BITS = 1024  # DH primes of this size or less are exposed to logjam
TOP = 20  # long tails (ciphers, issuers, banners) keep this many entries plus "(other)"
_UNTRUSTED = frozenset({"unknown_issuer", "missing_intermediate", "invalid", "unparseable"})
_WEAK_SIG = ("sha1", "md5", "md2")


def scan_start(outdir: Path) -> datetime | None:
    """The scan's start time from its manifest (certificates are judged at that time)."""
    try:
        return datetime.fromisoformat(read_manifest(outdir)["start_time"])
    except Exception:  # noqa: BLE001 - a results dir without manifest still has statistics
        return None


def _weak_key(key_type: str | None, bits: int | None) -> bool:
    if bits is None:
        return False
    if key_type in ("rsa", "dsa"):
        return bits < 2048
    return key_type == "ec" and bits < 224


def _top(counter: Counter[str], top: int = TOP) -> dict[str, int]:
    items = counter.most_common()
    out = dict(items[:top])
    rest = sum(n for _, n in items[top:])
    if rest:
        out["(other)"] = rest
    return out


def distributions(outdir: Path) -> dict[str, Any]:
    """Every distribution of the report, as a JSON-ready dict of counts with denominators."""
    # the greeting's fingerprint came with schema 1.2: not measured before, never "(no banner)"
    has_software = "mta_software" in dataset_columns(outdir, "hosts")
    hosts = read_dataset(outdir, "hosts", columns=[
        "ip", "outcome", "ehlo_status", "banner", "mta_software", "tls_version", "tls_cipher",
        "kex_group", "kex_bits", "leaf_sha256", "chain_valid", "verify_error"]).to_pylist()
    edges = read_dataset(outdir, "domain_mx", columns=["ip", "name_match"])
    named = set(pc.filter(edges.column("ip"),
                          pc.fill_null(edges.column("name_match"), False)).to_pylist())
    certs = {r["sha256"]: r for r in read_dataset(outdir, "certificates", columns=[
        "sha256", "issuer", "not_before", "not_after", "key_type", "key_bits",
        "signature_algorithm", "self_signed"]).to_pylist()}
    start = scan_start(outdir)
    versions: Counter[str] = Counter()
    ciphers: Counter[str] = Counter()
    groups: Counter[str] = Counter()
    dh_bits: Counter[str] = Counter()
    problems: Counter[str] = Counter({p: 0 for p in CERT_PROBLEMS})
    issuers: Counter[str] = Counter()
    software: Counter[str] = Counter()
    banners: Counter[str] = Counter()
    answered = tls = logjam = clean = 0
    for h in hosts:
        if h["ehlo_status"] != "ok" or h["outcome"] in ("excluded", "private_address"):
            continue
        answered += 1
        software[h["mta_software"] or "(no banner)"] += 1  # the pipeline's fingerprint
        if h["banner"] is not None:
            banners[banner_text(h["banner"])] += 1
        if h["outcome"] != "tls_ok":
            continue
        tls += 1
        versions[h["tls_version"] or "(unknown)"] += 1
        ciphers[h["tls_cipher"] or "(unknown)"] += 1
        groups[h["kex_group"] or "(unknown)"] += 1
        if (h["kex_group"] or "").startswith(("dhe", "ffdhe")) and h["kex_bits"]:
            dh_bits[str(h["kex_bits"])] += 1
            logjam += h["kex_bits"] <= LOGJAM_BITS
        cert = certs.get(h["leaf_sha256"] or "", {})
        issuers[cert.get("issuer") or "(no certificate)"] += 1
        found = _cert_problems(h, cert, h["ip"] in named, start)
        problems.update(found)
        clean += not found
    problems["no_problem"] = clean
    return {
        "answered_hosts": answered, "tls_hosts": tls,
        "tls_versions": dict(versions.most_common()), "ciphers": _top(ciphers),
        "kex_groups": dict(groups.most_common()),
        "dh_sizes": dict(sorted(dh_bits.items(), key=lambda kv: int(kv[0]))),
        "dh_logjam_exposed": logjam,
        "certificate_problems": dict(problems), "issuers": _top(issuers),
        "software": dict(software.most_common()) if has_software else None,
        "banners": _top(banners, 15),
    }


def banner_text(banner: str) -> str:
    """A greeting's first line without its leading host name, so that equal software groups."""
    first = banner.split("\n", 1)[0].strip()
    head, _, rest = first.partition(" ")
    return rest.strip() if "." in head and rest.strip() else first


def _cert_problems(host: dict[str, Any], cert: dict[str, Any], name_ok: bool,
                   start: datetime | None) -> set[str]:
    """The problems of one TLS host's leaf certificate (and chain) at the scan's start time."""
    error = host["verify_error"]
    found: set[str] = set()
    not_after, not_before = cert.get("not_after"), cert.get("not_before")
    if error == "expired" or (start and not_after and not_after < start):
        found.add("expired")
    if error == "not_yet_valid" or (start and not_before and not_before > start):
        found.add("not_yet_valid")
    if error == "self_signed" or cert.get("self_signed"):
        found.add("self_signed")
    if not name_ok:
        found.add("wrong_name")
    if error in _UNTRUSTED:
        found.add("untrusted")
    if error == "weak_key" or _weak_key(cert.get("key_type"), cert.get("key_bits")):
        found.add("weak_key")
    algorithm = (cert.get("signature_algorithm") or "").lower()
    if error == "weak_signature" or any(w in algorithm for w in _WEAK_SIG):
        found.add("sha1_signature")
    return found
