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

    Chains are kept up to date as the graph changes (an edge added, a node done, a weight set):
    a change updates the node it touches and, only while values change, the nodes it waits for
    (a chain that grew by one sum, one that fell by its waiters again only where it was the
    longest, so that a node thousands wait for costs no scan of them on each new waiter).
    Asking for a chain is then a lookup (recomputing chains from scratch for every waiting node
    on each freed slot made a run quadratic in the number of packages), and whoever
    ``listen``s is told of each known chain whose value changed, so that the build slots keep
    their waiters in a heap instead of scanning them.
    """

    def __init__(self, weight: Callable[[K], float] | None = None) -> None:
        """``weight(node)`` is asked once per node, when its chain is first needed; a weight
        that changes later is given with ``set_weight``."""
        self._waits_on: dict[K, set[K]] = defaultdict(set)
        self._waiters: dict[K, set[K]] = defaultdict(set)
        self._weight = weight or (lambda _k: 1.0)
        self._weights: dict[K, float] = {}
        # node -> its chain, for the nodes asked about and everything that waits on them (a
        # node's chain is known only when those of all its waiters are).
        self._chains: dict[K, float] = {}
        self._listeners: list[Callable[[K], None]] = []

    def listen(self, changed: Callable[[K], None]) -> None:
        """Call ``changed(node)`` whenever the chain of a node, once asked for, takes another
        value (a chain first computed is not a change)."""
        self._listeners.append(changed)

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
        if waited in self._chains:
            # A new waiter can only lengthen the chain: no need to look at the others (a node
            # that thousands of builds wait for, setuptools, would make that quadratic).
            through = self._weight_of(waited) + self.chain(waiter)
            if through > self._chains[waited]:
                self._propagate(waited, through)
        return None

    def done(self, node: K) -> None:
        """``node`` finished: nobody waits for it any more."""
        for waiter in self._waiters.pop(node, set()):
            self._waits_on[waiter].discard(node)
        self._recompute(node)

    def set_weight(self, node: K, weight: float) -> None:
        """``node`` weighs ``weight`` from now on (instead of what ``weight(node)`` said)."""
        self._weights[node] = weight
        self._recompute(node)

    def _weight_of(self, node: K) -> float:
        weight = self._weights.get(node)
        if weight is None:
            weight = self._weights[node] = self._weight(node)
        return weight

    def chain(self, node: K) -> float:
        """Weight of the longest chain of waiters from ``node`` up to a node nobody waits for."""
        known = self._chains.get(node)
        if known is not None:
            return known
        # Depth first, without recursion: a node's chain after all its waiters' chains.
        stack: list[tuple[K, bool]] = [(node, False)]
        while stack:
            n, ready = stack.pop()
            if n in self._chains:
                continue
            waiters = self._waiters.get(n, ())
            if ready:
                self._chains[n] = self._computed(n)
                continue
            stack.append((n, True))
            stack.extend((w, False) for w in waiters if w not in self._chains)
        return self._chains[node]

    def _computed(self, node: K) -> float:
        """``node``'s chain from its waiters' known chains."""
        return self._weight_of(node) + max(
            (self._chains[w] for w in self._waiters.get(node, ())), default=0.0
        )

    def _recompute(self, node: K) -> None:
        """``node``'s weight or waiters changed: its chain again, and those it waits for."""
        if node in self._chains:  # else neither is any below it: nothing to update
            self._propagate(node, self._computed(node))

    def _propagate(self, node: K, value: float) -> None:
        """``node``'s chain is now ``value``: bring the known chains below it up to date.

        A waiter's chain that grew can only raise the chain of a node it waits for (one sum);
        one that fell makes that node compute its chain again from all its waiters only if it
        may have been the longest. Values are read when an update is taken from the stack, so a
        waiter that changed twice is seen at its last value."""
        todo: list[tuple[K, K, float]] = []  # (node, its waiter that changed, that one's old chain)
        self._set(node, value, todo)
        while todo:
            below, waiter, before = todo.pop()
            current = self._chains[below]
            weight = self._weight_of(below)
            through = weight + self._chains[waiter]
            if through > current:
                self._set(below, through, todo)
            elif through < current and weight + before >= current:
                self._set(below, self._computed(below), todo)

    def _set(self, node: K, value: float, todo: list[tuple[K, K, float]]) -> None:
        old = self._chains[node]
        if value == old:
            return
        self._chains[node] = value
        for changed in self._listeners:
            changed(node)
        todo.extend((d, node, old) for d in self._waits_on.get(node, ()) if d in self._chains)


class PrioritySlots(Generic[K]):
    """A semaphore of ``n`` slots that, when a slot frees, hands it to the waiter whose priority
    is highest; among equals, to the one that asked first.

    A waiter's priority is asked when it queues and again whenever ``changed(key)`` says it may
    have changed (``WaitGraph.listen`` says so for chains): the waiters are kept in a heap, so
    a freed slot costs O(log n) in the number of waiters, not a scan of all of them. A heap
    entry made stale by a change is skipped when it comes up (lazy invalidation).
    """

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
        # One entry per acquire that waits, by its number (the order of asking), in that order.
        self._waiting: dict[int, tuple[K, asyncio.Future[None]]] = {}
        self._by_key: dict[K, set[int]] = defaultdict(set)
        # (-priority, number, stamp); an entry counts only while its stamp is the number's last.
        self._heap: list[tuple[float, int, int]] = []
        self._stamps: dict[int, int] = {}
        self._counter = itertools.count()
        self._stamp = itertools.count()
        self.busy: set[K] = set()
        self.max_busy = 0

    async def acquire(self, key: K) -> None:
        if self._free > 0 and not self._waiting:
            self._take(key)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        number = next(self._counter)
        self._waiting[number] = (key, fut)
        self._by_key[key].add(number)
        self._push(number, key)
        if len(self._waiting) == 1:
            self._on_queue(True)
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release(key)  # the slot was handed over just as we were cancelled
            elif number in self._waiting:
                self._forget(number)
                if not self._waiting:
                    self._on_queue(False)
            raise

    def changed(self, key: K) -> None:
        """``key``'s priority may have changed: ask it again if ``key`` waits."""
        for number in self._by_key.get(key, ()):
            self._push(number, key)

    def _push(self, number: int, key: K) -> None:
        stamp = self._stamps[number] = next(self._stamp)
        heapq.heappush(self._heap, (-self._priority(key), number, stamp))
        if len(self._heap) > 64 + 4 * len(self._waiting):
            # Mostly stale entries: keep only the live ones.
            self._heap = [e for e in self._heap if self._stamps.get(e[1]) == e[2]]
            heapq.heapify(self._heap)

    def _forget(self, number: int) -> None:
        key, _ = self._waiting.pop(number)
        self._stamps.pop(number, None)
        numbers = self._by_key[key]
        numbers.discard(number)
        if not numbers:
            del self._by_key[key]

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
        while self._free > 0 and self._heap:
            _, number, stamp = heapq.heappop(self._heap)
            if self._stamps.get(number) != stamp:
                continue  # stale: the waiter left, or its priority changed since
            key, fut = self._waiting[number]
            self._forget(number)
            if fut.cancelled():
                continue
            self._take(key)
            fut.set_result(None)

    @property
    def waiting(self) -> list[K]:
        """The waiting keys, in the order they asked."""
        return [key for key, _ in self._waiting.values()]
