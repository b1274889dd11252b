"""SlotGate: never more than its size held, batches served whole and in order, cancellation
loses no slot and holds up no one."""

from __future__ import annotations

import asyncio

import pytest

from scanner.dns.slot_gate import SlotGate


async def _settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_batches_are_served_whole_first_come_first_served() -> None:
    gate = SlotGate(4)
    served: list[str] = []

    async def taker(name: str, n: int) -> None:
        await gate.take(n)
        served.append(name)

    await gate.take(3)  # one slot left
    big = asyncio.create_task(taker("big", 4))
    await _settle()
    small = asyncio.create_task(taker("small", 1))
    await _settle()
    # one slot is free, but "small" came after "big", which waits for all four
    assert served == [] and gate.taken == 3
    gate.give(3)
    await _settle()
    assert served == ["big"] and gate.taken == 4
    gate.give(4)
    await asyncio.gather(big, small)
    assert served == ["big", "small"] and gate.taken == 1
    gate.give(1)
    assert gate.taken == 0


async def test_many_takers_never_hold_more_than_the_size() -> None:
    gate = SlotGate(5)
    held = peak = 0

    async def work(n: int) -> None:
        nonlocal held, peak
        await gate.take(n)
        held += n
        peak = max(peak, held)
        await asyncio.sleep(0.001 * (n % 3))
        held -= n
        gate.give(n)

    await asyncio.gather(*(work(1 + i % 4) for i in range(200)))
    assert peak == 5 and gate.taken == 0 and held == 0


async def test_a_cancelled_waiter_takes_nothing_and_lets_the_next_one_in() -> None:
    gate = SlotGate(2)
    await gate.take(1)  # one free
    first = asyncio.create_task(gate.take(2))  # waits for both
    await _settle()
    second = asyncio.create_task(gate.take(1))  # behind first, though one slot is free
    await _settle()
    assert not second.done()
    first.cancel()
    await _settle()
    assert first.cancelled() and second.done() and gate.taken == 2
    gate.give(1)
    gate.give(1)
    assert gate.taken == 0


async def test_a_waiter_cancelled_once_served_hands_its_slots_on() -> None:
    gate = SlotGate(1)
    await gate.take()
    waiter = asyncio.create_task(gate.take())
    await _settle()
    gate.give()  # serves the waiter, which has not run yet
    waiter.cancel()  # ... and is cancelled before it runs
    await _settle()
    assert waiter.cancelled() and gate.taken == 0
    await asyncio.wait_for(gate.take(), 1)  # the slot was not lost
    assert gate.taken == 1


async def test_one_give_serves_every_waiter_that_fits_without_a_loop_turn() -> None:
    # asyncio's Lock woke one waiter per event-loop iteration: a national survey's policy
    # lookups went out one domain per iteration. A give serves all that fit at once.
    gate = SlotGate(8)
    await gate.take(8)
    waiters = [asyncio.create_task(gate.take(4)) for _ in range(4)]
    await _settle()
    gate.give(8)
    assert gate.taken == 8  # two batches of four served within the call, none run yet
    await _settle()
    assert [w.done() for w in waiters] == [True, True, False, False]
    gate.give(8)
    await asyncio.gather(*waiters)
    assert gate.taken == 8


async def test_a_give_between_a_cancellation_and_its_cleanup_skips_that_waiter() -> None:
    gate = SlotGate(2)
    await gate.take(2)
    gone = asyncio.create_task(gate.take(2))
    stays = asyncio.create_task(gate.take(1))
    await _settle()
    gone.cancel()  # its future is cancelled now; its own cleanup runs only when it is resumed
    gate.give(2)  # must pass over it, not hand it the slots
    assert gate.taken == 1
    await _settle()
    assert gone.cancelled() and stays.done() and gate.taken == 1


@pytest.mark.parametrize("n", [0, 4])
async def test_a_request_it_can_never_serve_is_refused(n: int) -> None:
    with pytest.raises(ValueError, match=f"cannot take {n} of 3"):
        await SlotGate(3).take(n)


def test_a_gate_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="at least one slot"):
        SlotGate(0)
