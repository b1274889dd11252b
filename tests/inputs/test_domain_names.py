"""normalise_domain: table-driven good and bad names, and Hypothesis properties."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.provisional import domains

from scanner.inputs.domain_names import REASONS, InvalidDomain, normalise_domain

LABEL_63 = "a" * 63
NAME_253 = ".".join([LABEL_63, LABEL_63, LABEL_63, "b" * 61])  # 4 labels, 253 octets
_LDH_NAME = re.compile(r"[a-z0-9-]+(\.[a-z0-9-]+)+")


@pytest.mark.parametrize(
    ("raw", "a_label", "u_label"),
    [
        ("example.com", "example.com", "example.com"),
        ("  example.com\t", "example.com", "example.com"),
        ("example.com.", "example.com", "example.com"),
        ("EXAMPLE.Com", "example.com", "example.com"),
        ("Bücher.DE", "xn--bcher-kva.de", "bücher.de"),
        ("xn--bcher-kva.de", "xn--bcher-kva.de", "bücher.de"),
        ("XN--BCHER-KVA.DE", "xn--bcher-kva.de", "bücher.de"),
        ("faß.de", "xn--fa-hia.de", "faß.de"),  # IDNA 2008, non-transitional: ß stays
        ("рф.рф", "xn--p1ai.xn--p1ai", "рф.рф"),
        ("ｅｘａｍｐｌｅ．ｃｏｍ", "example.com", "example.com"),  # UTS 46 maps fullwidth forms
        ("example。com", "example.com", "example.com"),  # ideographic full stop
        ("\ufeffexample.com", "example.com", "example.com"),  # stray BOM is ignored by UTS 46
        ("a-b.example", "a-b.example", "a-b.example"),
        ("ab--cd.com", "ab--cd.com", "ab--cd.com"),  # legal in DNS, seen in the wild
        ("1.example", "1.example", "1.example"),
        (f"{LABEL_63}.com", f"{LABEL_63}.com", f"{LABEL_63}.com"),
        (NAME_253, NAME_253, NAME_253),
        (NAME_253 + ".", NAME_253, NAME_253),
    ],
)
def test_normalise_accepts(raw: str, a_label: str, u_label: str) -> None:
    assert normalise_domain(raw) == (a_label, u_label)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        (".", "empty"),
        ("exa mple.com", "invalid_character"),
        ("example .com", "invalid_character"),
        ("a\u3000b.com", "invalid_character"),  # ideographic space maps to a space
        ("ex\x00ample.com", "invalid_character"),
        ("_dmarc.example.com", "invalid_character"),
        ("ex_ample.com", "invalid_character"),
        ("*.example.com", "invalid_character"),
        ("exa!mple.com", "invalid_character"),
        ("example.com..", "empty_label"),
        (".example.com", "empty_label"),
        ("a..example.com", "empty_label"),
        ("-example.com", "leading_hyphen"),
        ("example-.com", "trailing_hyphen"),
        ("😀.com", "idna_error"),
        ("mail.😀.example", "idna_error"),
        ("xn--zz.com", "idna_error"),  # not Punycode
        ("xn--a.com", "idna_error"),  # decodes to a control character
        ("xn--ls8h.com", "idna_error"),  # Punycode of an emoji
        ("xn--.com", "trailing_hyphen"),
        ("a" * 64 + ".com", "label_too_long"),
        ("ü" * 60 + ".com", "label_too_long"),  # short in characters, long as an A-label
        (NAME_253 + "b", "name_too_long"),
        (".".join(["a" * 50] * 6), "name_too_long"),
        ("x" * 5000, "name_too_long"),
        ("192.0.2.1", "ip_address"),
        ("192.0.2.1.", "ip_address"),
        ("2001:db8::1", "ip_address"),
        ("[2001:db8::1]", "ip_address"),
        ("::ffff:192.0.2.1", "ip_address"),
        ("http://example.com", "url"),
        ("https://example.com/", "url"),
        ("HTTP://EXAMPLE.COM", "url"),
        ("example.com/path", "url"),
        ("example.com:25", "url"),
        ("user@example.com", "email_address"),
        ("postmaster@bücher.de", "email_address"),
        ("x＠example.com", "email_address"),  # fullwidth at sign maps to "@"
        ("localhost", "single_label"),
        ("com", "single_label"),
        ("1.2.3", "numeric_tld"),
    ],
)
def test_normalise_rejects_with_reason(raw: str, reason: str) -> None:
    with pytest.raises(InvalidDomain) as caught:
        normalise_domain(raw)
    assert caught.value.reason == reason
    assert reason in REASONS


def test_invalid_domain_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="idna_error"):
        normalise_domain("😀.com")


def _assert_well_formed(a_label: str) -> None:
    """The A-label form fits DNS limits and uses LDH characters only."""
    assert len(a_label) <= 253
    assert _LDH_NAME.fullmatch(a_label)
    for label in a_label.split("."):
        assert 1 <= len(label) <= 63
        assert not label.startswith("-") and not label.endswith("-")


_NAME_ALPHABET = st.sampled_from("abcXYZ019-._@:/ üßçрф😀\u3002\uff0e\u00ad\u200d\t")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=80) | st.text(_NAME_ALPHABET, max_size=40))
def test_random_text_raises_only_invalid_domain(raw: str) -> None:
    try:
        a_label, u_label = normalise_domain(raw)
    except InvalidDomain as exc:
        assert exc.reason in REASONS
        return
    _assert_well_formed(a_label)
    assert normalise_domain(a_label) == (a_label, u_label)  # idempotent on both forms
    assert normalise_domain(u_label) == (a_label, u_label)


_UNICODE_LABEL = st.text(st.sampled_from("abcdeüéøßçрфжあい中文-0"), min_size=1, max_size=20)


@settings(max_examples=200, deadline=None)
@given(st.lists(_UNICODE_LABEL, min_size=2, max_size=5))
def test_unicode_names_round_trip(labels: list[str]) -> None:
    raw = ".".join(labels)
    try:
        a_label, u_label = normalise_domain(raw)
    except InvalidDomain as exc:
        assert exc.reason in {"leading_hyphen", "trailing_hyphen", "idna_error", "numeric_tld",
                              "ip_address"}
        return
    _assert_well_formed(a_label)
    assert u_label == raw.lower()
    assert normalise_domain(a_label) == (a_label, u_label)
    assert normalise_domain(f" {u_label}. ") == (a_label, u_label)


@settings(max_examples=200, deadline=None)
@given(domains())
def test_valid_dns_names_are_accepted(name: str) -> None:
    try:
        a_label, u_label = normalise_domain(name)
    except InvalidDomain as exc:
        # Random LDH labels may start "xn--" without being Punycode, or be a single TLD.
        assert exc.reason == "idna_error" and "xn--" in name.lower() or exc.reason == "single_label"
        return
    _assert_well_formed(a_label)
    assert a_label == name.lower().removesuffix(".")
    assert normalise_domain(a_label) == (a_label, u_label)
