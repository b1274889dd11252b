"""LruMemo: computed once per key, None kept like any value, least recently used evicted."""

from __future__ import annotations

import pytest

from scanner.tls.lru import LruMemo


def test_a_value_is_computed_once_and_the_least_recent_key_evicted() -> None:
    calls: list[str] = []

    def compute(key: str, value: int | None) -> int | None:
        calls.append(key)
        return value

    memo: LruMemo[str, int | None] = LruMemo(2)
    assert memo.get("a", lambda: compute("a", 1)) == 1
    assert memo.get("b", lambda: compute("b", None)) is None
    assert memo.get("b", lambda: compute("b", 7)) is None  # a kept None is not recomputed
    assert memo.get("a", lambda: compute("a", 9)) == 1  # a is now the most recent
    memo.get("c", lambda: compute("c", 3))  # evicts b
    assert memo.get("b", lambda: compute("b", 5)) == 5
    assert calls == ["a", "b", "c", "b"] and memo.computed == 4 and len(memo) == 2


def test_a_failed_computation_keeps_nothing() -> None:
    memo: LruMemo[str, int] = LruMemo(2)

    def boom() -> int:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        memo.get("a", boom)
    assert len(memo) == 0 and memo.get("a", lambda: 1) == 1


def test_size_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        LruMemo(0)
