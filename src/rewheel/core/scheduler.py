"""Concurrency primitives for the bootstrap: who waits on whom, and who gets a build slot next.

Pure bookkeeping plus one asyncio primitive; no I/O. The bootstrap owns the policy.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import defaultdict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from .errors import ConfigError

K = TypeVar("K", bound=Hashable)


class WaitGraph(Generic[K]):
    """Edges "a waits for b" between build nodes.

    Refuses an edge that would close a cycle (a build that needs itself, directly or through its
    build tools), and measures the longest chain of waiters behind a node, so that the work that
    holds up the most is done first.
    """

    def __init__(self, weight: Callable[[K], float] | None = None) -> None:
        self._waits_on: dict[K, set[K]] = defaultdict(set)
        self._waiters: dict[K, set[K]] = defaultdict(set)
        self._weight = weight or (lambda _k: 1.0)

    def path(self, start: K, goal: K) -> list[K] | None:
        """A chain of waits from ``start`` to ``goal``, if there is one."""
        stack: list[tuple[K, list[K]]] = [(start, [start])]
        seen = {start}
        while stack:
            node, path = stack.pop()
            if node == goal:
                return path
            for nxt in self._waits_on.get(node, ()):
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
        return None

    def add(self, waiter: K, waited: K) -> list[K] | None:
        """Record that ``waiter`` waits for ``waited``, or return the cycle this would close."""
        if waiter == waited:
            return [waiter, waited]
        back = self.path(waited, waiter)
        if back is not None:
            return [waiter, *back]
        self._waits_on[waiter].add(waited)
        self._waiters[waited].add(waiter)
        return None

    def done(self, node: K) -> None:
        """``node`` finished: nobody waits for it any more."""
        for waiter in self._waiters.pop(node, set()):
            self._waits_on[waiter].discard(node)

    def chain(self, node: K) -> float:
        """Weight of the longest chain of waiters from ``node`` up to a node nobody waits for."""
        memo: dict[K, float] = {}

        def walk(n: K, active: frozenset[K]) -> float:
            if n in memo:
                return memo[n]
            best = 0.0
            for w in self._waiters.get(n, ()):
                if w not in active:
                    best = max(best, walk(w, active | {w}))
            memo[n] = self._weight(n) + best
            return memo[n]

        return walk(node, frozenset({node}))


class PrioritySlots(Generic[K]):
    """A semaphore of ``n`` slots that, when a slot frees, hands it to the waiter whose priority
    (asked at that moment, since priorities change as the graph grows) is highest."""

    def __init__(
        self,
        n: int,
        priority: Callable[[K], float],
        on_queue: Callable[[bool], None] | None = None,
    ) -> None:
        """``on_queue(True)`` is called when work starts waiting for a slot (every slot is
        taken), ``on_queue(False)`` when nothing waits any more."""
        if n < 1:
            raise ConfigError("the number of parallel jobs must be at least 1")
        self._on_queue = on_queue or (lambda _queued: None)
        self._free = n
        self._priority = priority
        self._waiting: list[tuple[K, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()
        self.busy: set[K] = set()
        self.max_busy = 0

    async def acquire(self, key: K) -> None:
        if self._free > 0 and not self._waiting:
            self._take(key)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((key, next(self._counter), fut))
        if len(self._waiting) == 1:
            self._on_queue(True)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(key)  # the slot was handed over just as we were cancelled
            else:
                self._waiting = [w for w in self._waiting if w[2] is not fut]
                if not self._waiting:
                    self._on_queue(False)
            raise

    def _take(self, key: K) -> None:
        self._free -= 1
        self.busy.add(key)
        self.max_busy = max(self.max_busy, len(self.busy))

    def release(self, key: K) -> None:
        self.busy.discard(key)
        self._free += 1
        self._wake()

    def _wake(self) -> None:
        was_queued = bool(self._waiting)
        self._hand_over()
        if was_queued and not self._waiting:
            self._on_queue(False)

    def _hand_over(self) -> None:
        while self._free > 0 and self._waiting:
            # Highest priority first; among equals, the earliest to ask.
            ranked = [(-self._priority(k), order, k, fut) for k, order, fut in self._waiting]
            heapq.heapify(ranked)
            _, _, key, fut = heapq.heappop(ranked)
            self._waiting = [w for w in self._waiting if w[2] is not fut]
            if fut.cancelled():
                continue
            self._take(key)
            fut.set_result(None)

    @property
    def waiting(self) -> list[K]:
        return [k for k, _, _ in self._waiting]
