"""PackedKeys: the compact exact map behind the probe table and the certificate sets."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from scanner.sink.packed_keys import PackedKeys, address_key, digest_key

# keys full of NUL bytes: the ones a fixed-width NumPy bytes array could shorten
_KEYS = st.integers(0, 16).flatmap(
    lambda zeros: st.binary(min_size=16 - zeros, max_size=16 - zeros).map(
        lambda head: head + bytes(zeros)))


@given(st.lists(st.tuples(_KEYS, st.integers(0, 2**32 - 1)), max_size=300),
       st.lists(_KEYS, max_size=50), st.integers(1, 40))
def test_answers_like_a_dict_across_merges(items: list[tuple[bytes, int]], others: list[bytes],
                                          merge_every: int) -> None:
    packed = PackedKeys(merge_every)
    model: dict[bytes, int] = {}
    for key, value in items:
        if key in model:
            with pytest.raises(KeyError):
                packed.put(key, value)
        else:
            packed.put(key, value)
            model[key] = value
    assert len(packed) == len(model)
    for key in [*model, *others]:
        assert packed.get(key) == model.get(key)
        assert (key in packed) == (key in model)


def test_a_set_of_certificate_digests() -> None:
    shas = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(5000)]
    seen = PackedKeys(merge_every=64)
    assert all(seen.add(digest_key(s)) for s in shas)  # every one new
    assert not any(seen.add(digest_key(s)) for s in shas)  # every one known, merged or recent
    seen.update(digest_key(s) for s in [*shas[:10], hashlib.sha256(b"new").hexdigest()])
    assert len(seen) == 5001


def test_an_address_is_one_key_however_it_is_spelt() -> None:
    assert address_key("2001:db8::1") == address_key("2001:0db8:0:0:0:0:0:1")
    assert address_key("::ffff:192.0.2.1") == address_key("192.0.2.1")
    assert address_key("192.0.2.1") != address_key("192.0.2.10")
    assert len(address_key("127.0.0.1")) == len(address_key("::1")) == 16


def test_wrong_keys_and_values_are_refused() -> None:
    packed = PackedKeys()
    with pytest.raises(ValueError, match="16 bytes"):
        packed.put(b"short", 1)
    with pytest.raises(ValueError, match="32 bits"):
        packed.put(bytes(16), 2**32)
    with pytest.raises(ValueError):
        PackedKeys(merge_every=0)
    assert "not bytes" not in packed
