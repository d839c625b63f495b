"""WaitGraph (cycles, chain weights) and PrioritySlots (bounded, by priority, cancellation-safe)."""

from __future__ import annotations

import asyncio
import random

import pytest

from rewheel.core.errors import ConfigError
from rewheel.core.scheduler import PrioritySlots, WaitGraph

# -- WaitGraph -------------------------------------------------------------------------------


def test_a_node_waiting_for_itself_is_a_cycle() -> None:
    g: WaitGraph[str] = WaitGraph()
    assert g.add("a", "a") == ["a", "a"]


def test_the_edge_closing_a_three_cycle_is_refused_with_the_cycle() -> None:
    g: WaitGraph[str] = WaitGraph()
    assert g.add("a", "b") is None
    assert g.add("b", "c") is None
    assert g.add("c", "a") == ["c", "a", "b", "c"]
    # The refused edge was not recorded: c waits for nothing.
    assert g.path("c", "a") is None
    assert g.path("a", "c") == ["a", "b", "c"]


def test_a_diamond_is_not_a_cycle() -> None:
    g: WaitGraph[str] = WaitGraph()
    for waiter, waited in [("top", "l"), ("top", "r"), ("l", "base"), ("r", "base")]:
        assert g.add(waiter, waited) is None


def test_done_removes_the_waits_on_a_node() -> None:
    g: WaitGraph[str] = WaitGraph()
    g.add("a", "b")
    g.add("b", "c")
    g.done("c")
    assert g.path("a", "c") is None
    assert g.add("c", "a") is None  # no longer a cycle: b does not wait for c any more


def test_chain_is_the_heaviest_line_of_waiters() -> None:
    weights = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 10.0}
    g: WaitGraph[str] = WaitGraph(weights.__getitem__)
    g.add("a", "b")  # a waits for b, b waits for c
    g.add("b", "c")
    assert g.chain("a") == 1.0
    assert g.chain("b") == 3.0
    assert g.chain("c") == 6.0
    g.add("d", "c")  # a heavier waiter on c
    assert g.chain("c") == 13.0
    g.done("c")
    assert g.chain("c") == 3.0


def test_chain_counts_nodes_with_the_default_weight() -> None:
    g: WaitGraph[int] = WaitGraph()
    for i in range(5):
        g.add(i + 1, i)  # 5 waits for 4 ... 1 waits for 0
    assert g.chain(0) == 6.0
    assert g.chain(5) == 1.0


def _chains_from_scratch(
    waiters: dict[int, set[int]], weight: dict[int, float], nodes: range
) -> dict[int, float]:
    memo: dict[int, float] = {}

    def walk(n: int) -> float:
        if n not in memo:
            memo[n] = weight.get(n, 1.0) + max((walk(w) for w in waiters.get(n, ())), default=0.0)
        return memo[n]

    return {n: walk(n) for n in nodes}


def test_chains_kept_up_to_date_equal_chains_computed_from_scratch() -> None:
    rng = random.Random(16)
    for _ in range(30):
        g: WaitGraph[int] = WaitGraph()
        nodes = range(25)
        waiters: dict[int, set[int]] = {}
        weight: dict[int, float] = {}
        for _ in range(80):
            op = rng.random()
            a, b = rng.choice(nodes), rng.choice(nodes)
            if op < 0.6:
                if g.add(a, b) is None:
                    waiters.setdefault(b, set()).add(a)
            elif op < 0.75:
                g.done(a)
                waiters.pop(a, None)
            elif op < 0.9:
                weight[a] = rng.choice((0.5, 2.0, 7.0))
                g.set_weight(a, weight[a])
            else:  # ask for some chains, so that later changes must update what is known
                g.chain(a)
            expected = _chains_from_scratch(waiters, weight, nodes)
            for n in rng.sample(list(nodes), 2):  # the known part grows a little at a time
                assert g.chain(n) == expected[n]
        assert all(g.chain(n) == _chains_from_scratch(waiters, weight, nodes)[n] for n in nodes)


def test_asking_for_chains_again_does_not_walk_the_graph_again() -> None:
    """Every freed slot asks for the chain of every waiting node: that must not walk the graph
    (it made a run of 1,000 packages spend most of its coordinator time there)."""
    asked: list[int] = []

    def weight(node: int) -> float:
        asked.append(node)
        return 1.0

    g: WaitGraph[int] = WaitGraph(weight)
    for i in range(1, 300):
        g.add(i, i // 2)  # a binary tree of waiters: 1 waits for 0, 2 and 3 for 1, ...
    for _ in range(10):
        assert g.chain(0) == 10.0  # 0 <- 1 <- 3 <- 7 <- ... <- 255 <- 299: ten levels
        for i in range(300):
            g.chain(i)
    assert len(asked) == 300  # each node's weight asked once


# -- PrioritySlots ---------------------------------------------------------------------------


def test_at_least_one_slot() -> None:
    with pytest.raises(ConfigError):
        PrioritySlots(0, lambda _k: 0.0)


def test_never_more_holders_than_slots() -> None:
    async def main() -> tuple[int, int]:
        slots: PrioritySlots[int] = PrioritySlots(3, lambda _k: 0.0)
        holding = 0
        most = 0

        async def worker(i: int) -> None:
            nonlocal holding, most
            await slots.acquire(i)
            holding += 1
            most = max(most, holding)
            await asyncio.sleep(0.001 * (i % 3))
            holding -= 1
            slots.release(i)

        await asyncio.gather(*(worker(i) for i in range(20)))
        assert not slots.busy and not slots.waiting
        return most, slots.max_busy

    assert asyncio.run(main()) == (3, 3)


def test_a_freed_slot_goes_to_the_highest_priority_waiter() -> None:
    priority = {"x": 1.0, "y": 5.0, "z": 3.0, "w": 3.0}

    async def main() -> list[str]:
        slots: PrioritySlots[str] = PrioritySlots(1, lambda k: priority.get(k, 0.0))
        order: list[str] = []
        await slots.acquire("holder")

        async def waiter(key: str) -> None:
            await slots.acquire(key)
            order.append(key)
            await asyncio.sleep(0)
            slots.release(key)

        tasks = [asyncio.create_task(waiter(k)) for k in ["x", "z", "y", "w"]]
        await asyncio.sleep(0.01)
        assert sorted(slots.waiting) == ["w", "x", "y", "z"]
        priority["x"] = 4.0  # a priority that changes after the waiter queued, and is said to
        slots.changed("x")
        slots.release("holder")
        await asyncio.gather(*tasks)
        return order

    # Equal priorities (z, w) keep the order in which they asked.
    assert asyncio.run(main()) == ["y", "x", "z", "w"]


def test_a_cancelled_waiter_leaves_the_queue() -> None:
    async def main() -> None:
        slots: PrioritySlots[str] = PrioritySlots(1, lambda k: 10.0 if k == "gone" else 0.0)
        await slots.acquire("holder")
        gone = asyncio.create_task(slots.acquire("gone"))
        other = asyncio.create_task(slots.acquire("other"))
        await asyncio.sleep(0.01)
        gone.cancel()
        with pytest.raises(asyncio.CancelledError):
            await gone
        assert slots.waiting == ["other"]
        slots.release("holder")
        await asyncio.wait_for(other, 1)
        assert slots.busy == {"other"}

    asyncio.run(main())


def test_a_waiter_cancelled_just_as_it_gets_the_slot_gives_it_back() -> None:
    async def main() -> None:
        slots: PrioritySlots[str] = PrioritySlots(1, lambda _k: 0.0)
        await slots.acquire("holder")
        late = asyncio.create_task(slots.acquire("late"))
        await asyncio.sleep(0.01)
        slots.release("holder")  # hands the slot to "late", which has not run yet...
        late.cancel()  # ...and is cancelled before it could
        with pytest.raises(asyncio.CancelledError):
            await late
        assert not slots.busy
        # The slot is free again, not leaked.
        await asyncio.wait_for(slots.acquire("next"), 1)
        assert slots.busy == {"next"}

    asyncio.run(main())


def test_the_queue_callback_says_when_work_starts_and_stops_waiting() -> None:
    events: list[bool] = []

    async def main() -> None:
        slots: PrioritySlots[str] = PrioritySlots(1, lambda _k: 0.0, on_queue=events.append)
        await slots.acquire("a")
        assert events == []  # a free slot: nothing waited
        b = asyncio.create_task(slots.acquire("b"))
        c = asyncio.create_task(slots.acquire("c"))
        await asyncio.sleep(0.01)
        assert events == [True]  # once, when the first waiter queued
        slots.release("a")
        await b
        assert events == [True]  # c still waits
        slots.release("b")
        await c
        assert events == [True, False]
        d = asyncio.create_task(slots.acquire("d"))
        await asyncio.sleep(0.01)
        d.cancel()
        with pytest.raises(asyncio.CancelledError):
            await d
        assert events == [True, False, True, False]

    asyncio.run(main())


def test_a_freed_slot_goes_where_a_scan_of_every_waiter_would_send_it() -> None:
    """The heap of waiters hands each freed slot to the waiter that the old selection (a scan of
    every waiter's chain, computed from scratch; the first to ask among equals) would choose,
    while edges, weights and finished nodes change the chains of waiters under it."""

    async def one_graph(seed: int) -> int:
        rng = random.Random(seed)
        nodes = range(40)
        waiters: dict[int, set[int]] = {}
        weight: dict[int, float] = {}
        g: WaitGraph[int] = WaitGraph()
        jobs = rng.choice((1, 2, 3))
        slots: PrioritySlots[int] = PrioritySlots(jobs, g.chain)
        g.listen(slots.changed)
        queue: list[int] = []  # the reference: waiters in the order they asked
        busy: list[int] = []
        granted: list[int] = []
        fresh = iter(nodes)
        checked = 0
        tasks: list[asyncio.Task[None]] = []

        async def take(key: int) -> None:
            await slots.acquire(key)
            granted.append(key)

        for _ in range(200):
            op = rng.random()
            a, b = rng.choice(nodes), rng.choice(nodes)
            if op < 0.35:
                if g.add(a, b) is None:
                    waiters.setdefault(b, set()).add(a)
            elif op < 0.45:
                g.done(a)
                waiters.pop(a, None)
            elif op < 0.6:
                weight[a] = rng.choice((0.5, 2.0, 7.0, 40.0))
                g.set_weight(a, weight[a])
            elif op < 0.8:
                key = next(fresh, None)
                if key is None:
                    continue
                if len(busy) < jobs and not queue:
                    busy.append(key)
                else:
                    queue.append(key)
                tasks.append(asyncio.create_task(take(key)))
                await asyncio.sleep(0)
            elif busy:
                chains = _chains_from_scratch(waiters, weight, nodes)
                expected = max(queue, key=chains.__getitem__) if queue else None
                before = len(granted)
                slots.release(busy.pop(rng.randrange(len(busy))))
                await asyncio.sleep(0)
                if expected is not None:
                    queue.remove(expected)
                    busy.append(expected)
                    assert granted[before:] == [expected]
                    checked += 1
            assert sorted(slots.waiting) == sorted(queue)
        for key in [*busy, *queue]:  # let the rest through
            slots.release(key)
            await asyncio.sleep(0)
        return checked

    checked = sum(asyncio.run(one_graph(seed)) for seed in range(40))
    assert checked > 400  # the comparison really ran, many times


def test_a_freed_slot_does_not_ask_every_waiter_again() -> None:
    """With 1,000 waiters, handing over 100 freed slots asks for a few priorities, not for
    every waiter's on each (the scan that was left after chains were kept up to date)."""
    asked = 0

    def priority(key: int) -> float:
        nonlocal asked
        asked += 1
        return float(key % 7)

    async def main() -> None:
        nonlocal asked
        slots: PrioritySlots[int] = PrioritySlots(1, priority)
        await slots.acquire(-1)
        tasks = [asyncio.create_task(slots.acquire(i)) for i in range(1000)]
        await asyncio.sleep(0)
        asked = 0
        holder = -1
        for _ in range(100):
            slots.release(holder)
            await asyncio.sleep(0)
            (holder,) = slots.busy
        assert asked <= 100
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    asyncio.run(main())


class _Counted:
    """A node that counts how often the graph looks it up (every dict or set access hashes)."""

    lookups = 0

    def __init__(self, name: int) -> None:
        self.name = name

    def __hash__(self) -> int:
        _Counted.lookups += 1
        return hash(self.name)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Counted) and other.name == self.name


def test_waiters_added_to_a_node_many_wait_for_cost_no_scan_of_the_others() -> None:
    """setuptools is in the build environment of most packages: each new waiter of a node whose
    chain is known must not read the chains of all its other waiters (3,000 waiters made that
    4.5 million lookups, most of a 5,000-package run's coordinator time)."""
    g: WaitGraph[_Counted] = WaitGraph()
    hub, tool = _Counted(0), _Counted(1)
    g.add(tool, hub)
    assert g.chain(hub) == 2.0  # known from now on: every change is kept up to date
    _Counted.lookups = 0
    n = 3000
    for i in range(2, n + 2):
        waiter = _Counted(i)
        assert g.add(waiter, hub) is None
        if i % 3 == 0:
            assert g.add(_Counted(i + 100_000), waiter) is None  # some chains grow longer
    assert g.chain(hub) == 3.0
    assert _Counted.lookups < 60 * n
