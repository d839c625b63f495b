"""The bootstrap: from requirements to a repository of wheels built from source, bottom-up.

This module is the policy only. It resolves, decides what must be built and in which order, and
keeps every core busy; all I/O (index, downloads, build environments, backends, the repository)
goes through a ``Steps`` object, which tests replace with a fake.

One pass runs as asyncio tasks, one per (name, version). A node resolves its build environment,
waits for the wheels of that environment (each its own node, deduplicated), then takes one of the
``jobs`` build slots. Slots go to the node with the longest chain of builds waiting behind it.
"""

from __future__ import annotations

import asyncio
import functools
import resource
import time
from collections import defaultdict, deque
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import (
    InvalidSdistFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
)
from packaging.version import Version

from .durations import PastBuild, SdistFeatures, estimate_build_seconds, seconds_from_history
from .errors import (
    BuildError,
    DigestMismatch,
    HashMismatch,
    Link,
    ResolutionError,
    RewheelError,
    Step,
)
from .records import BuildExtras, BuildRecord, EnvEntry, Why
from .report import BootstrapResult, Outcome, Reporter
from .resolver import Pin, Resolution
from .scheduler import PrioritySlots, WaitGraph
from .types import EdgeKind, WheelRef

__all__ = [
    "AwaitedSteps",
    "BootstrapResult",
    "Bootstrapper",
    "Built",
    "CacheHint",
    "Cached",
    "DependencyFailed",
    "NotAttempted",
    "Prepared",
    "Reporter",
    "RunIo",
    "SharedCache",
    "Steps",
]

T = TypeVar("T")
EnvT = TypeVar("EnvT")  # the Steps' handle on a build environment (opaque to the core)
NodeKey = tuple[NormalizedName, str]


@dataclass(frozen=True)
class Prepared:
    """An sdist downloaded, checked and extracted, with its ``build-system.requires`` read."""

    pin: Pin
    sdist_path: Path
    sdist_sha256: str
    source_dir: Path
    build_requires: tuple[str, ...]
    backend: object = None  # what the Steps need to call the backend again (opaque here)
    # What the sdist holds, counted while it was extracted: for the estimate of its build's
    # duration (``durations.estimate_build_seconds``) when no earlier build tells it.
    features: SdistFeatures | None = None


@dataclass(frozen=True)
class Built:
    wheel: WheelRef
    metadata: bytes  # the built wheel's METADATA
    seconds: float
    log: Path


@dataclass(frozen=True)
class Cached:
    """What an earlier run recorded for the same sdist."""

    wheel: WheelRef
    build_requires: tuple[str, ...]
    backend_requires: tuple[str, ...]
    cache_key: str
    record: BuildRecord


@dataclass(frozen=True)
class CacheHint:
    """A build of a pin that a shared build cache offers, as its (signed) provenance tells: the
    requirements its build environment was resolved from, the sha256 of that environment's
    wheels, and the key it was built under. The core resolves that environment itself, step by
    step as a build here would; only when its own key is this one is it fetched."""

    cache_key: str
    build_requires: tuple[str, ...]
    backend_requires: tuple[str, ...]
    build_env_sha256: tuple[str, ...]  # sorted


class SharedCache(Protocol):
    """Another repository's builds (``--cache-url``), asked before a pin is built here.

    ``hints`` offers the builds of the pin's sdist that it has checked so far (signature by a
    trusted key, record and statement in agreement); ``fetch`` takes the one whose key is the
    key this run computed for the environment it resolved, checks the rest (the wheel's bytes,
    the environment's wheels), publishes it into this repository and returns its record (with
    ``from_cache``); None when it refuses it, having said why. Neither raises for what the cache
    answers: a refused hit is built here.

    A hint must be of a build made from this run's sdist with this run's settings and
    interpreter (everything in the key but the environment), so that its ``build_requires`` are
    the ones a build here reads from the sdist: the core waits for the environment they resolve
    to, which a build here would wait for too. A hint of a build made otherwise is a sure miss
    that would change the run (other build tools resolved, built, waited for): not offered.
    """

    def hints(self, pin: Pin) -> Sequence[CacheHint]: ...

    def fetch(
        self, pin: Pin, hint: CacheHint, build_env: Sequence[WheelRef], cache_key: str
    ) -> BuildRecord | None: ...


class Steps(Protocol[EnvT]):
    def resolve(
        self,
        requirements: Sequence[Requirement],
        *,
        kinds: Mapping[str, EdgeKind],
        parent: Pin | None,
        preferred: Mapping[NormalizedName, Version],
        purpose: str,
    ) -> Resolution: ...

    def cached(self, pin: Pin) -> Cached | None: ...

    def cache_key(self, pin: Pin, build_env: Sequence[WheelRef]) -> str: ...

    def prepare(self, pin: Pin) -> Prepared: ...

    def create_env(self, prepared: Prepared, wheels: Sequence[WheelRef], *, name: str) -> EnvT: ...

    def get_requires(self, prepared: Prepared, env: EnvT) -> list[str]: ...

    def build(self, prepared: Prepared, env: EnvT) -> Built: ...

    def drifted(self, pin: Pin, built_metadata: bytes) -> bool: ...

    def prebuilt(self, pin: Pin) -> Built | None:
        """The upstream's own wheel, published, when the settings allow-list ``pin``; else None."""
        ...

    def record_extras(self, pin: Pin) -> BuildExtras: ...

    def save_record(self, record: BuildRecord) -> BuildRecord:
        """Save the build record of a package (adding what the machine knows, such as its
        provenance) and return it as saved: what ``build-order.json`` lists too."""
        ...


class RunIo(Protocol):
    """How the bootstrap runs a blocking call: in a thread of its pool, awaited."""

    def __call__(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Awaitable[T]: ...


@runtime_checkable
class AwaitedSteps(Protocol):
    """What ``Steps`` whose builds run elsewhere (on a Dask cluster) may offer besides:
    get-requires and build awaited on the bootstrap's event loop, instead of each blocking a
    thread of its pool for as long as the remote task lasts; their own blocking work (logs,
    publishing) goes through ``io``, the bootstrap's pool. The bootstrap uses them when the
    steps have them (the same results and errors as ``get_requires`` and ``build``)."""

    async def get_requires_async(self, prepared: Prepared, env: Any, io: RunIo) -> list[str]: ...

    async def build_async(self, prepared: Prepared, env: Any, io: RunIo) -> Built: ...


class DependencyFailed(BuildError):
    """A node could not be built because something its build needs failed."""


class NotAttempted(DependencyFailed):
    """A node left unbuilt because the run stopped at the first failure (no --keep-going)."""


def _new_record(
    pin: Pin,
    built: Built,
    *,
    prebuilt: bool = False,
    prepared: Prepared | None = None,
    build_env: Sequence[WheelRef] = (),
    backend_requires: Sequence[str] = (),
    cache_key: str | None = None,
    extras: BuildExtras | None = None,
) -> BuildRecord:
    """The record of a wheel built (from ``prepared``) or taken pre-built: the one place a
    record is made (``Steps.save_record`` adds what writing the provenance tells)."""
    extras = extras or BuildExtras()
    return BuildRecord(
        name=pin.name,
        version=str(pin.version),
        sdist_url=None if prepared is None else pin.sdist.url,
        sdist_sha256=None if prepared is None else prepared.sdist_sha256,
        wheel=built.wheel.filename,
        wheel_sha256=built.wheel.sha256,
        build_env=tuple(EnvEntry.of(w) for w in build_env),
        build_system_requires=() if prepared is None else tuple(prepared.build_requires),
        backend_requires=tuple(backend_requires),
        cache_key=cache_key,
        seconds=round(built.seconds, 3),
        log=str(built.log),
        prebuilt=prebuilt,
        system_tools=extras.system_tools,
        sandbox=extras.sandbox,
        settings=extras.settings,
        rust=extras.rust,
    )


def _key(pin: Pin) -> NodeKey:
    return (pin.name, str(pin.version))


def _node_id(pin: Pin) -> str:
    return f"{pin.name}=={pin.version}"


def _parse_requirements(texts: Sequence[str], pin: Pin, step: str) -> list[Requirement]:
    out = []
    for text in texts:
        try:
            out.append(Requirement(text))
        except InvalidRequirement as exc:
            raise BuildError(
                f"invalid requirement {text!r}: {exc}",
                package=pin.name,
                version=str(pin.version),
                step=step,
            ) from exc
    return out


class Bootstrapper(Generic[EnvT]):
    def __init__(
        self,
        steps: Steps[EnvT],
        *,
        jobs: int,
        reporter: Reporter | None = None,
        threads: int = 32,
        keep_going: bool = False,
        shared_cache: SharedCache | None = None,
        sdist_hashes: Mapping[NormalizedName, Collection[str]] | None = None,
        past_builds: Callable[[NormalizedName], Sequence[PastBuild]] | None = None,
    ) -> None:
        self.steps = steps
        # The builds of a project this repository recorded (any version): how long a build of
        # another version took weighs a pin with no record of its own in the scheduler's chains.
        self.past_builds = past_builds
        self.shared_cache = shared_cache
        # The sha256 digests the requirement files or lock allow for a project's sdist (pip's
        # hash-checking mode); a project without an entry is checked against the index only.
        self.sdist_hashes = {name: frozenset(d) for name, d in (sdist_hashes or {}).items()}
        self.jobs = jobs
        self.keep_going = keep_going
        self.reporter = reporter or Reporter()
        self.threads = threads
        self._pass: _Pass[EnvT] | None = None
        self._built_before: set[str] = set()  # built by the passes before the current one
        self._from_cache: set[str] = set()  # taken from the shared cache by this run

    def run(self, requirements: Sequence[Requirement], *, max_passes: int = 3) -> BootstrapResult:
        """Bootstrap ``requirements``; resolve again while built wheels contradict predictions."""
        self._built_before = set()
        self._from_cache = set()
        result = asyncio.run(self._new_pass().run(requirements))
        built_here = set(result.built_nodes)
        window, window_cpu = result.build_window_seconds, result.build_window_cpu_seconds
        queued, (busy, total) = result.queued_seconds, result.queued_cpu
        passes = 1
        while result.drifted and result.ok and passes < max_passes:
            # A built wheel's Requires-Dist differed from what the resolver was told: resolve
            # again, now from the built metadata. Unchanged nodes are reused from the cache.
            self._built_before = set(built_here)
            result = asyncio.run(self._new_pass().run(requirements))
            built_here |= result.built_nodes
            window += result.build_window_seconds
            window_cpu += result.build_window_cpu_seconds
            queued += result.queued_seconds
            busy, total = busy + result.queued_cpu[0], total + result.queued_cpu[1]
            passes += 1
        result.build_window_seconds, result.build_window_cpu_seconds = window, window_cpu
        result.queued_seconds, result.queued_cpu = queued, (busy, total)
        return _counted_over_passes(result, built_here, self._from_cache)

    def _new_pass(self) -> _Pass[EnvT]:
        self._pass = _Pass(self)
        return self._pass

    def partial(self) -> BootstrapResult | None:
        """What the run had done when it stopped with an exception (an interrupt, an error):
        the current pass's nodes, edges and outcomes so far; None before the first pass began.
        Nodes it had not finished have no outcome (not attempted)."""
        if self._pass is None:
            return None
        result = self._pass._result()
        return _counted_over_passes(
            result, self._built_before | result.built_nodes, self._from_cache
        )


def _counted_over_passes(
    result: BootstrapResult, built_here: set[str], from_cache: AbstractSet[str] = frozenset()
) -> BootstrapResult:
    """``result`` of the last pass, counted over the whole run: a wheel built (or taken
    pre-built, or from the shared cache) by an earlier pass was built by this run, not reused."""
    result.built = result.prebuilt = result.from_cache = 0
    for record in result.order:
        if record.node in from_cache:
            result.from_cache += 1
            result.outcomes[record.node] = Outcome.FROM_CACHE
            continue
        if record.node not in built_here:
            continue
        if record.prebuilt:
            result.prebuilt += 1
            result.outcomes[record.node] = Outcome.PREBUILT
        else:
            result.built += 1
            result.outcomes[record.node] = Outcome.BUILT
    result.reused = len(result.order) - result.built - result.prebuilt - result.from_cache
    result.built_nodes = built_here
    return result


class _Pass(Generic[EnvT]):
    def __init__(self, owner: Bootstrapper[EnvT]) -> None:
        self.owner = owner
        self.steps = owner.steps
        self.reporter = owner.reporter
        self.jobs = owner.jobs
        self.threads = owner.threads
        self.keep_going = owner.keep_going
        self.sdist_hashes = owner.sdist_hashes
        # Sdists prepared by the hash check before any build (the index listed no sha256), for
        # their node to take instead of downloading and extracting them again.
        self.prepared_early: dict[NodeKey, Prepared] = {}
        self.stopping = False
        self.waits: WaitGraph[NodeKey] = WaitGraph()  # every node weighs 1 until known
        self.weighed: set[NodeKey] = set()  # weighed by a record, not by an estimate
        self.queue = QueueWindow()
        self.slots: PrioritySlots[NodeKey] = PrioritySlots(
            owner.jobs, self.waits.chain, on_queue=self.queue.changed
        )
        self.waits.listen(self.slots.changed)  # a waiter's chain changed: its place in the queue
        self.tasks: dict[NodeKey, asyncio.Task[WheelRef]] = {}
        self.pins: dict[NodeKey, Pin] = {}
        self.edges: list[dict[str, Any]] = []
        self.edge_seen: set[tuple[str | None, str, str, str]] = set()
        self.order: list[BuildRecord] = []
        self.failures: dict[str, RewheelError] = {}
        self.unbuilt: dict[str, DependencyFailed] = {}  # nodes a failure left unbuilt
        self.drifted: list[str] = []
        self.built = 0
        self.reused = 0
        self.built_nodes: set[str] = set()
        self.window = BuildWindow()
        self.pool: ThreadPoolExecutor | None = None
        # Steps whose get-requires and build are awaited here (builds on Dask), if they are.
        self.awaited = self.steps if isinstance(self.steps, AwaitedSteps) else None

    async def _io(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        assert self.pool is not None
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.pool, functools.partial(fn, *args, **kwargs))

    async def run(self, requirements: Sequence[Requirement]) -> BootstrapResult:
        with ThreadPoolExecutor(self.threads, thread_name_prefix="rewheel") as pool:
            self.pool = pool
            try:
                top = await self._io(
                    self.steps.resolve,
                    requirements,
                    kinds={},
                    parent=None,
                    preferred={},
                    purpose="the requested packages",
                )
                self.reporter.resolved("the requested packages", len(top.pins))
                await self._check_hashes_first(top)
            except DigestMismatch as exc:
                held = self._held_to_hashes(exc)
                if held is exc:
                    raise
                raise held from exc
            self._add_edges(top)
            tops = [self._ensure(pin) for pin in top.sorted_pins()]
            await asyncio.gather(*tops, return_exceptions=True)
            # Wait for every node, not only those the top-level ones still awaited: a node that
            # hit a cycle may have started others, which may start more, before the pool closes.
            while pending := [t for t in self.tasks.values() if not t.done()]:
                await asyncio.gather(*pending, return_exceptions=True)
        return self._result()

    # -- hashes ------------------------------------------------------------------------------

    async def _check_hashes_first(self, top: Resolution) -> None:
        """Every requested sdist that has hashes given, checked before anything is built: by
        the sha256 the index lists, or, where it lists none, by downloading it."""
        for pin in top.sorted_pins():
            if pin.name not in self.sdist_hashes:
                continue
            if pin.sdist.sha256:
                self._check_hash(pin, pin.sdist.sha256, first=True)
            else:
                prepared = await self._io(self.steps.prepare, pin)
                self._check_hash(pin, prepared.sdist_sha256, first=True)
                self.prepared_early[_key(pin)] = prepared

    def _check_hash(self, pin: Pin, digest: str, *, first: bool = False) -> None:
        """Refuse ``pin``'s sdist unless ``digest`` is among the hashes given for its project
        (the same project in a build environment too, whatever its version)."""
        allowed = self.sdist_hashes.get(pin.name)
        if allowed is None or not digest or digest.lower() in allowed:
            return
        raise HashMismatch(
            package=pin.name,
            version=str(pin.version),
            filename=pin.sdist.filename,
            found=digest.lower(),
            expected=allowed,
            hint=(
                "the upstream serves another file than the one the hashes were made of, and"
                " nothing was built from it; if the change is expected, lock again"
                if first
                else "a project listed with hashes is held to them in build environments too;"
                " pass the file with -c as well so that they use the version it pins"
            ),
        )

    def _held_to_hashes(self, exc: RewheelError) -> RewheelError:
        """``exc`` as a ``HashMismatch`` when it is a download of a project held to hashes whose
        bytes are not the sha256 the index listed (and so not among the allowed ones either):
        the index listed an allowed hash for a file it then served otherwise. Else ``exc``."""
        if not isinstance(exc, DigestMismatch) or exc.package is None:
            return exc
        name = canonicalize_name(exc.package)
        allowed = self.sdist_hashes.get(name)
        if allowed is None or exc.found.lower() in allowed:
            return exc
        version = exc.version
        if version is None:
            try:
                version = str(parse_sdist_filename(exc.filename)[1])
            except (InvalidSdistFilename, ValueError):
                version = ""
        return HashMismatch(
            package=name,
            version=version,
            filename=exc.filename,
            found=exc.found.lower(),
            expected=allowed,
            hint=(
                f"the index lists {exc.filename} with sha256 {exc.expected} but served other"
                " bytes, and nothing was built from them; the index or a proxy on the way serves"
                " a file that is not the one the hashes were made of"
            ),
        )

    # -- nodes -------------------------------------------------------------------------------

    def _ensure(self, pin: Pin) -> asyncio.Task[WheelRef]:
        key = _key(pin)
        task = self.tasks.get(key)
        if task is None:
            self.pins[key] = pin
            task = asyncio.create_task(self._node(pin), name=_node_id(pin))
            task.add_done_callback(functools.partial(self._forget_waits, key))
            self.tasks[key] = task
        return task

    def _forget_waits(self, key: NodeKey, _task: object) -> None:
        self.waits.done(key)

    async def _node(self, pin: Pin) -> WheelRef:
        node = _node_id(pin)
        try:
            return await self._node_inner(pin)
        except DependencyFailed as exc:
            self.unbuilt[node] = exc
            raise
        except RewheelError as exc:
            err = self._held_to_hashes(exc)
            self.failures[node] = err
            self.reporter.failed(node, err)
            if not self.keep_going:
                self.stopping = True
            if err is exc:
                raise
            raise err from exc
        except Exception as exc:  # a bug or an unexpected OS error: still one node's failure
            err = BuildError(
                f"unexpected error: {exc!r}", package=pin.name, version=str(pin.version)
            )
            self.failures[node] = err
            self.reporter.failed(node, err)
            if not self.keep_going:
                self.stopping = True
            raise err from exc

    async def _node_inner(self, pin: Pin) -> WheelRef:
        node = _node_id(pin)
        started = time.monotonic()
        if pin.sdist.sha256:
            self._check_hash(pin, pin.sdist.sha256)
        cached = await self._io(self.steps.cached, pin)
        await self._weigh_by_records(pin, cached)
        if cached is not None:
            self.reporter.step(node, Step.CHECK_CACHE)
            env = await self._build_env(
                pin, cached.build_requires, cached.backend_requires, preferred={}
            )
            if self.steps.cache_key(pin, env) == cached.cache_key:
                self._finish(pin, cached.record, cached=True, seconds=time.monotonic() - started)
                return cached.wheel

        if self.owner.shared_cache is not None:
            taken = await self._from_shared_cache(pin, self.owner.shared_cache, started)
            if taken is not None:
                return taken

        self._check_stopping(pin)
        prebuilt = await self._io(self.steps.prebuilt, pin)
        if prebuilt is not None:
            saved = self.steps.save_record(_new_record(pin, prebuilt, prebuilt=True))
            self._finish(pin, saved, cached=False, seconds=prebuilt.seconds)
            return prebuilt.wheel

        self.reporter.step(node, Step.PREPARE)
        early = self.prepared_early.pop(_key(pin), None)
        prepared = early if early is not None else await self._io(self.steps.prepare, pin)
        self._check_hash(pin, prepared.sdist_sha256)
        if _key(pin) not in self.weighed and prepared.features is not None:
            # A cold build: weighed by what its sdist holds, before it waits for its tools.
            self.waits.set_weight(_key(pin), estimate_build_seconds(prepared.features))
        env1 = await self._build_env(pin, prepared.build_requires, (), preferred={})
        self._check_stopping(pin)
        built: Built | None = None
        async with self._slot(pin):
            self._check_stopping(pin)
            self.reporter.step(node, Step.GET_REQUIRES)
            handle = await self._io(self.steps.create_env, prepared, env1, name="env")
            backend_requires = tuple(await self._get_requires(prepared, handle))
            if not backend_requires:
                # Nothing more to wait for: build in the same slot rather than queue again
                # behind others (on Dask the get-requires task has built the wheel already, and
                # this only publishes it).
                self._check_stopping(pin)
                self.reporter.step(node, Step.BUILD)
                built = await self._build(prepared, handle)
        env2 = env1
        if built is None:
            self.reporter.step(node, Step.WAITING)
            preferred = {w.name: Version(w.version) for w in env1}
            env2 = await self._build_env(
                pin, prepared.build_requires, backend_requires, preferred=preferred
            )
            self._check_stopping(pin)
            async with self._slot(pin):
                self._check_stopping(pin)
                self.reporter.step(node, Step.BUILD)
                if env2 != env1:
                    handle = await self._io(self.steps.create_env, prepared, env2, name="env2")
                built = await self._build(prepared, handle)
        if self.steps.drifted(pin, built.metadata):
            self.drifted.append(node)
        record = _new_record(
            pin,
            built,
            prepared=prepared,
            build_env=env2,
            backend_requires=backend_requires,
            cache_key=self.steps.cache_key(pin, env2),
            extras=self.steps.record_extras(pin),
        )
        # As saved, so that a fresh entry of build-order.json has the same fields (provenance,
        # source_date_epoch, build_env_dir) as the one a later run reuses.
        saved = self.steps.save_record(record)
        self._finish(pin, saved, cached=False, seconds=built.seconds)
        return built.wheel

    async def _weigh_by_records(self, pin: Pin, cached: Cached | None) -> None:
        """Weigh ``pin`` in the chains by the seconds its last build took, or else by those of
        the nearest version of its project built here (``durations.seconds_from_history``)."""
        seconds: float | None = cached.record.seconds if cached is not None else None
        if not seconds and self.owner.past_builds is not None:
            past = await self._io(self.owner.past_builds, pin.name)
            seconds = seconds_from_history(str(pin.version), past)
        if seconds:
            self.weighed.add(_key(pin))
            self.waits.set_weight(_key(pin), seconds)

    async def _get_requires(self, prepared: Prepared, env: EnvT) -> list[str]:
        if self.awaited is not None:
            return await self.awaited.get_requires_async(prepared, env, self._io)
        return await self._io(self.steps.get_requires, prepared, env)

    async def _build(self, prepared: Prepared, env: EnvT) -> Built:
        if self.awaited is not None:
            return await self.awaited.build_async(prepared, env, self._io)
        return await self._io(self.steps.build, prepared, env)

    async def _from_shared_cache(
        self, pin: Pin, cache: SharedCache, started: float
    ) -> WheelRef | None:
        """The wheel of ``pin`` taken from the shared cache, when it offers exactly the build
        this run would make: the environment its hint names, resolved here, gives the key it was
        built under. Anything else (no hint, another key, a refused fetch, an environment that
        cannot be had) leaves ``pin`` to be built here."""
        node = _node_id(pin)
        self.reporter.step(node, Step.CHECK_CACHE)
        for hint in await self._io(cache.hints, pin):
            env = await self._hinted_env(pin, hint)
            if env is None:
                continue
            key = self.steps.cache_key(pin, env)
            if key != hint.cache_key:
                continue
            record = await self._io(cache.fetch, pin, hint, env, key)
            if record is None:
                continue
            saved = await self._io(self.steps.save_record, record)
            self.owner._from_cache.add(node)
            self._finish(
                pin, saved, cached=True, seconds=time.monotonic() - started, from_cache=True
            )
            return WheelRef(pin.name, str(pin.version), saved.wheel, saved.wheel_sha256)
        return None

    async def _hinted_env(self, pin: Pin, hint: CacheHint) -> list[WheelRef] | None:
        """The build environment a build of ``pin`` here would have if its backend asked for
        what the hint's did: resolved and waited for in the steps of a build here (the
        ``build-system.requires``; then, preferring those wheels, the backend's), so that a miss
        leaves no edge, build or wait a build here would not have made. None when it cannot be
        had, or when the first step's wheels are not the hint's (its key cannot be this run's,
        and the backend's answer it names may not be either)."""
        try:
            env1 = await self._build_env(pin, hint.build_requires, (), preferred={})
            if not {w.sha256 for w in env1} <= set(hint.build_env_sha256):
                return None
            if not hint.backend_requires:
                return env1
            preferred = {w.name: Version(w.version) for w in env1}
            return await self._build_env(
                pin, hint.build_requires, hint.backend_requires, preferred=preferred
            )
        except RewheelError:
            return None  # its environment cannot be had here: built here, with its own

    def _check_stopping(self, pin: Pin) -> None:
        if self.stopping:
            raise NotAttempted(
                "not built: the run stopped at the first failure (--keep-going builds on)",
                package=pin.name,
                version=str(pin.version),
                step=Step.SCHEDULING,
            )

    def _finish(
        self,
        pin: Pin,
        record: BuildRecord,
        *,
        cached: bool,
        seconds: float,
        from_cache: bool = False,
    ) -> None:
        self.order.append(record)
        if cached:
            self.reused += 1
        else:
            self.built += 1
            self.built_nodes.add(_node_id(pin))
        self.reporter.done(
            _node_id(pin),
            record.wheel,
            cached=cached,
            seconds=seconds,
            prebuilt=record.prebuilt and not cached,
            from_cache=from_cache,
        )

    async def _build_env(
        self,
        pin: Pin,
        build_requires: Sequence[str],
        backend_requires: Sequence[str],
        *,
        preferred: Mapping[NormalizedName, Version],
    ) -> list[WheelRef]:
        """Resolve a build environment and wait until each of its wheels is in the repository."""
        system = _parse_requirements(build_requires, pin, "build-env")
        backend = _parse_requirements(backend_requires, pin, "get-requires")
        kinds = {str(r): EdgeKind.BUILD_SYSTEM for r in system}
        kinds.update({str(r): EdgeKind.BUILD_BACKEND for r in backend if str(r) not in kinds})
        if not system and not backend:
            return []
        try:
            resolution = await self._io(
                self.steps.resolve,
                [*system, *backend],
                kinds=kinds,
                parent=pin,
                preferred=preferred,
                purpose=f"the build environment of {_node_id(pin)}",
            )
        except ResolutionError as exc:
            # Its chains start in the build environment: say how the user's request led there.
            raise exc.under(self._chain_to(pin)) from None
        self._add_edges(resolution)
        return await self._wait_for(pin, resolution.sorted_pins())

    def _chain_to(self, pin: Pin) -> list[Link]:
        """The shortest chain of the graph's edges from a package the user asked for down to
        ``pin``: each package with the kind of requirement that brought it in."""
        into: defaultdict[str, list[dict[str, Any]]] = defaultdict(list)
        for edge in self.edges:
            into[edge["to"]].append(edge)
        target = _node_id(pin)
        below: dict[str, tuple[str, str]] = {}  # node -> (the next node towards pin, edge kind)
        queue, seen = deque([target]), {target}
        while queue:
            node = queue.popleft()
            if any(edge["from"] is None for edge in into[node]):
                links = [Link(node, EdgeKind.TOPLEVEL)]
                while node != target:
                    node, kind = below[node]
                    links.append(Link(node, EdgeKind(kind)))
                return links
            for edge in into[node]:
                if edge["from"] not in seen:
                    seen.add(edge["from"])
                    below[edge["from"]] = (node, edge["kind"])
                    queue.append(edge["from"])
        return []  # not reached from a requested package (cannot happen): the chain starts at pin

    async def _wait_for(self, waiter: Pin, pins: Sequence[Pin]) -> list[WheelRef]:
        tasks = []
        for pin in pins:
            cycle = self.waits.add(_key(waiter), _key(pin))
            if cycle is not None:
                chain = " -> ".join(f"{n}=={v}" for n, v in cycle)
                raise BuildError(
                    f"build dependency cycle: {chain}; such a package cannot be built from "
                    "source alone",
                    package=waiter.name,
                    version=str(waiter.version),
                    step=Step.BUILD_ENV,
                )
            tasks.append(self._ensure(pin))
        results = await asyncio.gather(*tasks, return_exceptions=True)
        errors = [r for r in results if isinstance(r, BaseException)]
        failed = [
            _node_id(p) for p, r in zip(pins, results, strict=True) if isinstance(r, BaseException)
        ]
        if errors and all(isinstance(r, NotAttempted) for r in errors):
            # Nothing it needs failed: the run stopped before building what it needs.
            raise NotAttempted(
                f"not built: its build environment needs {', '.join(failed)}, which the run "
                "did not build: it stopped at the first failure (--keep-going builds on)",
                package=waiter.name,
                version=str(waiter.version),
                step=Step.BUILD_ENV,
            )
        if failed:
            raise DependencyFailed(
                f"its build environment needs {', '.join(failed)}, which failed",
                package=waiter.name,
                version=str(waiter.version),
                step=Step.BUILD_ENV,
            )
        return sorted((r for r in results if isinstance(r, WheelRef)), key=lambda w: w.name)

    def _slot(self, pin: Pin) -> _SlotContext:
        return _SlotContext(self.slots, _key(pin), self.window)

    # -- records -----------------------------------------------------------------------------

    def _add_edges(self, resolution: Resolution) -> None:
        for edge in resolution.edges:
            child = resolution.pins.get(edge.child)
            if child is None:
                continue
            parent = _node_id(edge.parent) if edge.parent is not None else None
            seen = (parent, _node_id(child), edge.requirement, edge.kind.value)
            if seen in self.edge_seen:
                continue
            self.edge_seen.add(seen)
            self.edges.append(
                {
                    "from": parent,
                    "to": _node_id(child),
                    "requirement": edge.requirement,
                    "kind": edge.kind.value,
                }
            )

    def _result(self) -> BootstrapResult:
        why: dict[str, list[Why]] = {}
        for e in self.edges:
            why.setdefault(e["to"], []).append(Why(e["from"], e["requirement"], e["kind"]))
        order = [record.with_why(why.get(record.node, [])) for record in self.order]
        nodes = sorted(
            {f"{p.name}=={p.version}": p for p in self.pins.values()}.items(),
        )
        graph = {
            "nodes": [
                {"id": node, "name": pin.name, "version": str(pin.version)} for node, pin in nodes
            ],
            "edges": self.edges,
        }
        outcomes: dict[str, Outcome] = {}
        for record in self.order:
            if record.node in self.owner._from_cache:
                outcomes[record.node] = Outcome.FROM_CACHE
            elif record.node not in self.built_nodes:
                outcomes[record.node] = Outcome.REUSED
            else:
                outcomes[record.node] = Outcome.PREBUILT if record.prebuilt else Outcome.BUILT
        outcomes.update(dict.fromkeys(self.failures, Outcome.FAILED))
        for node, exc in self.unbuilt.items():
            stopped = isinstance(exc, NotAttempted)
            outcomes[node] = Outcome.NOT_ATTEMPTED if stopped else Outcome.DEPENDENCY_FAILED
        for node, _pin in nodes:  # never reached (a run cut short)
            outcomes.setdefault(node, Outcome.NOT_ATTEMPTED)
        return BootstrapResult(
            order=order,
            graph=graph,
            failures=dict(self.failures),
            built=self.built,
            reused=self.reused,
            outcomes=outcomes,
            unbuilt=dict(self.unbuilt),
            drifted=self.drifted,
            max_parallel_builds=self.slots.max_busy,
            built_nodes=set(self.built_nodes),
            build_window_seconds=self.window.seconds,
            build_window_cpu_seconds=self.window.cpu_seconds,
            queued_seconds=self.queue.seconds,
            queued_cpu=(self.queue.busy, self.queue.total),
        )


def process_cpu_seconds() -> float:
    """CPU time of this process and of its children that have ended (builds end with their hook)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class BuildWindow:
    """From the first build slot taken to the last one given back: how busy the cores were."""

    clock: Callable[[], float] = time.monotonic
    cpu_clock: Callable[[], float] = process_cpu_seconds
    start: float | None = None
    cpu_start: float = 0.0
    end: float = 0.0
    cpu_end: float = 0.0

    def opened(self) -> None:
        if self.start is None:
            self.start, self.cpu_start = self.clock(), self.cpu_clock()

    def closed(self) -> None:
        self.end, self.cpu_end = self.clock(), self.cpu_clock()

    @property
    def seconds(self) -> float:
        return 0.0 if self.start is None else max(0.0, self.end - self.start)

    @property
    def cpu_seconds(self) -> float:
        return 0.0 if self.start is None else max(0.0, self.cpu_end - self.cpu_start)


def machine_cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) CPU time of the whole machine since boot, from /proc/stat (None elsewhere)."""
    try:
        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields)
    return total - idle, total


@dataclass
class QueueWindow:
    """While work waits for a build slot, every slot being taken: how busy the cores were.

    Read from the machine's own CPU counters, so builds still running count too; on a quiet
    machine that is the builds' CPU. This is the figure a scheduler answers for: when there is
    more work than slots, are the cores busy?
    """

    sample: Callable[[], tuple[int, int] | None] = machine_cpu_jiffies
    clock: Callable[[], float] = time.monotonic
    seconds: float = 0.0
    busy: int = 0
    total: int = 0
    _since: float | None = None
    _at: tuple[int, int] | None = None

    def changed(self, queued: bool) -> None:
        if queued:
            self._since, self._at = self.clock(), self.sample()
            return
        if self._since is None:
            return
        self.seconds += self.clock() - self._since
        now = self.sample()
        if now is not None and self._at is not None:
            self.busy += now[0] - self._at[0]
            self.total += now[1] - self._at[1]
        self._since = self._at = None


class _SlotContext:
    def __init__(self, slots: PrioritySlots[NodeKey], key: NodeKey, window: BuildWindow) -> None:
        self.slots = slots
        self.key = key
        self.window = window

    async def __aenter__(self) -> None:
        await self.slots.acquire(self.key)
        self.window.opened()

    async def __aexit__(self, *exc: object) -> None:
        self.slots.release(self.key)
        self.window.closed()
