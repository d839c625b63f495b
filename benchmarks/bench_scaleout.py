#!/usr/bin/env python3
"""Scale-out: how the makespan of a 1,000-package tree falls with workers, and what the
coordinator costs per package.

What runs, and what does not:

- **Real**: ``core.bootstrap.Bootstrapper`` (one asyncio task per package, the build graph, the
  ``core.scheduler`` wait graph and priority slots, records, the result), its thread pool, and,
  for ``--executor dask``, a Dask cluster made by ``dask.dask_steps.dask_client`` exactly as
  ``--dask local:N`` makes it (N worker processes, one thread each, the interpreter resource);
  every build is one Dask task run by ``DaskSteps``' own ``DaskTasks`` and awaited on the
  bootstrap's event loop (``core.bootstrap.AwaitedSteps``), followed by one call through its
  pool for the answer and one for publishing, as ``DaskSteps`` does (``--dask-wait thread``: a
  pool thread blocked per task instead, as ``DaskSteps`` did before).
- **Fake** (``SleepSteps``, the core's ``Steps`` interface): resolution returns a precomputed
  graph (no resolvelib, no index, no HTTP); prepare, create_env and get_requires return at once;
  a build sleeps for its known duration, in the pool thread (local) or in a Dask worker (dask).
  No sdist is downloaded, nothing is uploaded or published, no record or provenance is written,
  no sandbox is started: the figures are the scheduling and the coordinator's bookkeeping only.

What the scheduler knows of each build's duration (``--durations``):

- ``known``: every package has a record of an earlier build that took its duration (a rebuild,
  as after ``rewheel update``), so chains weigh the true seconds.
- ``unknown`` (a cold run, estimated): no record; ``prepare`` hands the core sdist features
  (``core.durations.SdistFeatures``) from which the core's own ``estimate_build_seconds``
  weighs the build, as a real preparation does. The features are not derived perfectly from
  the duration: for a build of ``d`` seconds, a target ``t = d x (0.5 / median) x exp(e)`` is
  drawn, with ``e`` normal of mean +0.5 and standard deviation 1.0, the mean and spread of
  ln(estimate / seconds) that ``calibrate_estimate.py`` measured on the 63 real builds of the
  langchain example (+0.43 to +0.57, 0.97 to 1.02; ``0.5 / median`` puts the synthetic builds on
  the scale of real ones, whose median is about 0.5 s); then features whose estimate is ``t``
  (``features_for``: a pure-Python sdist of the right size up to 1.15 s, else C sources). The
  draw is seeded (``--seed``), independent of the graph's.
- ``weight1``: a cold run that knows nothing (every build weighs 1): the reference, what a cold
  run did before the estimate.

The graph (``make_graph``, seeded): a build-tool core (flit-core, setuptools, hatchling and its
dependencies, setuptools-scm, hatch-vcs, poetry-core, Cython, meson, meson-python, pybind11, and
two long "numpy-like" and "scipy-like" builds that need most of them), then packages that each
build with one of the backends, some with a plugin, some with one or two of the earlier
packages in their build environment (which gives the graph its depth). Durations are log-normal
(a median and sigma), with the numpy-like and scipy-like builds 40 and 60 times the median.

For each executor and number of workers N the bootstrap runs with ``-j N`` and the script
prints the makespan against the two lower bounds (the critical path: the longest chain of
builds, each waiting for its build environment; and total work / N), the CPU time of the
coordinator process (for Dask this includes the Dask scheduler of the local cluster, which runs
in the same process, unless ``--scheduler-apart``), split into the bootstrap's event-loop
thread, the Dask client's threads (its IO loop, offload and callback threads, each thread's own
CPU clock) and the rest (the bootstrap's pool threads), the Dask client threads' CPU per second
when idle, the load average, and the memory Python allocated per package (``tracemalloc``,
measured in a separate run of the local executor).

    .venv/bin/python benchmarks/bench_scaleout.py                 # local and dask, 1 2 4 8
    .venv/bin/python benchmarks/bench_scaleout.py --executor local --durations all --policy-only
    .venv/bin/python benchmarks/bench_scaleout.py --executor local --workers 8 --profile out.prof
    .venv/bin/python benchmarks/bench_scaleout.py --executor both --scheduler-apart \
        --durations known --workers 8 --median 1.0                # the coordinator CPU target
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import heapq
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from rewheel.core.bootstrap import Bootstrapper, Built, Cached, Prepared, RunIo
from rewheel.core.durations import SdistFeatures, estimate_build_seconds
from rewheel.core.records import BuildExtras, BuildRecord
from rewheel.core.resolver import Edge, Pin, Resolution
from rewheel.core.types import EdgeKind, IndexFile, WheelRef

CPU_TARGET_MS = 5.0
MAKESPAN_TARGET = 1.10

# -- the graph -------------------------------------------------------------------------------

# name: (direct build requirements, runtime requirements that a build environment pulls in too,
# duration in medians). The real tools' graph, simplified.
CORE: dict[str, tuple[tuple[str, ...], tuple[str, ...], float]] = {
    "flit-core": ((), (), 1.0),
    "setuptools": ((), (), 3.0),
    "wheel": (("flit-core",), (), 1.0),
    "packaging": (("flit-core",), (), 1.0),
    "pathspec": (("flit-core",), (), 1.0),
    "pluggy": (("setuptools",), (), 1.0),
    "trove-classifiers": (("setuptools",), (), 1.0),
    "pyproject-metadata": (("flit-core",), ("packaging",), 1.0),
    "hatchling": (
        ("packaging", "pathspec", "pluggy", "trove-classifiers"),
        ("packaging", "pathspec", "pluggy", "trove-classifiers"),
        2.0,
    ),
    "setuptools-scm": (("setuptools",), ("packaging", "setuptools"), 1.5),
    "hatch-vcs": (("hatchling", "setuptools-scm"), ("hatchling", "setuptools-scm"), 1.0),
    "poetry-core": ((), (), 2.0),
    "cython": (("setuptools",), (), 4.0),
    "meson": (("setuptools",), (), 2.0),
    "meson-python": (
        ("meson", "pyproject-metadata", "packaging"),
        ("meson", "pyproject-metadata", "packaging"),
        1.0,
    ),
    "pybind11": (("setuptools", "cmake-lite"), (), 2.0),
    "cmake-lite": (("setuptools", "setuptools-scm"), (), 3.0),
    "numpy-like": (("meson-python", "cython"), (), 40.0),
    "scipy-like": (("meson-python", "cython", "pybind11", "numpy-like"), ("numpy-like",), 60.0),
}
# (build requirements, share of the other packages)
BACKENDS: list[tuple[tuple[str, ...], float]] = [
    (("setuptools",), 0.35),
    (("setuptools", "wheel"), 0.08),
    (("setuptools", "setuptools-scm"), 0.12),
    (("hatchling",), 0.17),
    (("hatchling", "hatch-vcs"), 0.05),
    (("poetry-core",), 0.10),
    (("flit-core",), 0.07),
    (("setuptools", "cython"), 0.03),
    (("meson-python", "cython", "numpy-like"), 0.02),
    (("setuptools", "pybind11"), 0.01),
]


@dataclass
class Graph:
    env: dict[str, tuple[str, ...]]  # name -> every package its build environment holds
    requires: dict[str, tuple[str, ...]]  # name -> its direct build requirements
    seconds: dict[str, float]

    @property
    def total(self) -> float:
        return sum(self.seconds.values())

    def critical_path(self) -> tuple[float, list[str]]:
        """The longest chain: a build starts when every wheel of its build environment is
        published (what the bootstrap waits for)."""
        finish: dict[str, float] = {}
        best: dict[str, str | None] = {}

        def visit(name: str) -> float:
            if name not in finish:
                before = max(self.env[name], key=visit, default=None)
                best[name] = before
                finish[name] = self.seconds[name] + (visit(before) if before else 0.0)
            return finish[name]

        end = max(self.env, key=visit)
        chain: list[str] = []
        node: str | None = end
        while node is not None:
            chain.append(node)
            node = best[node]
        return finish[end], chain[::-1]

    def depth(self) -> int:
        memo: dict[str, int] = {}

        def d(name: str) -> int:
            if name not in memo:
                memo[name] = 1 + max((d(e) for e in self.env[name]), default=0)
            return memo[name]

        return max(d(n) for n in self.env)


def make_graph(packages: int, *, median: float, sigma: float, seed: int) -> Graph:
    rng = random.Random(seed)
    runtime: dict[str, tuple[str, ...]] = {}
    requires: dict[str, tuple[str, ...]] = {}
    seconds: dict[str, float] = {}
    for name, (build, run, medians) in CORE.items():
        requires[name], runtime[name] = build, run
        seconds[name] = medians * median
    choices = [b for b, _ in BACKENDS]
    weights = [w for _, w in BACKENDS]
    others: list[str] = []
    for i in range(packages - len(CORE)):
        name = f"pkg-{i:04d}"
        needs = list(rng.choices(choices, weights)[0])
        # Some builds need earlier packages (plugins, headers, code generators): depth.
        if others and rng.random() < 0.15:
            needs += rng.sample(others[-200:], k=min(len(others[-200:]), rng.choice((1, 1, 2))))
        requires[name] = tuple(needs)
        runtime[name] = ()
        seconds[name] = median * math.exp(rng.gauss(0.0, sigma))
        others.append(name)

    def closure(names: Sequence[str]) -> tuple[str, ...]:
        seen: set[str] = set()
        stack = list(names)
        while stack:
            n = stack.pop()
            if n not in seen:
                seen.add(n)
                stack.extend(runtime[n])
        return tuple(sorted(seen))

    env = {name: closure(requires[name]) for name in requires}
    return Graph(env=env, requires=requires, seconds=seconds)


# -- the fake steps ----------------------------------------------------------------------------


def _pin(name: str) -> Pin:
    filename = f"{name.replace('-', '_')}-1.0.tar.gz"
    return Pin(
        canonicalize_name(name),
        Version("1.0"),
        IndexFile(filename, f"https://example.invalid/{filename}", "0" * 64),
    )


class SleepSteps:
    """``core.bootstrap.Steps`` over a ``Graph``: resolution from the graph, builds that
    sleep through ``sleep(name, seconds)``.

    ``in_get_requires``: the build sleeps in ``get_requires`` and ``build`` only "publishes",
    as with ``DaskSteps`` (whose get-requires task builds the wheel when the backend needs
    nothing more); else in ``build``, as with ``LocalSteps``. ``history``: each package has a
    record of an earlier build that took its duration, with a build environment that no longer
    matches (a rebuild, as after ``rewheel update``): the scheduler then knows the durations.
    ``features``: what ``prepare`` says each sdist holds (``cold_features``), from which the
    core estimates a build it has no record of; without them every such build weighs 1.
    """

    def __init__(
        self,
        graph: Graph,
        sleep: Callable[[str, float], None],
        *,
        in_get_requires: bool = False,
        history: bool = False,
        features: Mapping[str, SdistFeatures] | None = None,
    ) -> None:
        self.graph = graph
        self.sleep = sleep
        self.in_get_requires = in_get_requires
        self.history = history
        self.features = features or {}
        self.pins = {canonicalize_name(n): _pin(n) for n in graph.env}
        self.names = {canonicalize_name(n): n for n in graph.env}
        self.lock = threading.Lock()
        self.published: set[str] = set()
        self.violations: list[str] = []

    def resolve(
        self,
        requirements: Sequence[Requirement],
        *,
        kinds: Mapping[str, EdgeKind],
        parent: Pin | None,
        preferred: Mapping[NormalizedName, Version],
        purpose: str,
    ) -> Resolution:
        if parent is None:
            names = [canonicalize_name(str(r.name)) for r in requirements]
            return Resolution(
                {n: self.pins[n] for n in names},
                [Edge(None, n, n, EdgeKind.TOPLEVEL) for n in names],
            )
        env = [canonicalize_name(n) for n in self.graph.env[self.names[parent.name]]]
        return Resolution(
            {n: self.pins[n] for n in env},
            [Edge(parent, n, n, EdgeKind.BUILD_SYSTEM) for n in env],
        )

    def cached(self, pin: Pin) -> Cached | None:
        if not self.history:
            return None
        name = self.names[pin.name]
        wheel = self._wheel(pin)
        record = BuildRecord(
            name=pin.name,
            version="1.0",
            sdist_url=pin.sdist.url,
            sdist_sha256="0" * 64,
            wheel=wheel.filename,
            wheel_sha256=wheel.sha256,
            build_system_requires=self.graph.requires[name],
            cache_key="an older build environment",
            seconds=self.graph.seconds[name],
        )
        return Cached(wheel, self.graph.requires[name], (), "an older build environment", record)

    def _wheel(self, pin: Pin) -> WheelRef:
        filename = f"{self.names[pin.name].replace('-', '_')}-1.0-py3-none-any.whl"
        return WheelRef(pin.name, "1.0", filename, "0" * 64)

    def cache_key(self, pin: Pin, build_env: Sequence[WheelRef]) -> str:
        return pin.name

    def prepare(self, pin: Pin) -> Prepared:
        return Prepared(
            pin=pin,
            sdist_path=Path("/nonexistent") / pin.sdist.filename,
            sdist_sha256="0" * 64,
            source_dir=Path("/nonexistent"),
            build_requires=self.graph.requires[self.names[pin.name]],
            features=self.features.get(self.names[pin.name]),
        )

    def create_env(self, prepared: Prepared, wheels: Sequence[WheelRef], *, name: str) -> Any:
        with self.lock:
            missing = [w.name for w in wheels if w.name not in self.published]
        if missing:
            self.violations.append(f"{prepared.pin.name}: env before {missing}")
        return tuple(wheels)

    def get_requires(self, prepared: Prepared, env: Any) -> list[str]:
        if self.in_get_requires:
            name = self.names[prepared.pin.name]
            self.sleep(name, self.graph.seconds[name])
        return []

    def build(self, prepared: Prepared, env: Any) -> Built:
        name = self.names[prepared.pin.name]
        seconds = self.graph.seconds[name]
        if not self.in_get_requires:
            self.sleep(name, seconds)
        with self.lock:
            self.published.add(prepared.pin.name)
        return Built(
            wheel=self._wheel(prepared.pin),
            metadata=b"Metadata-Version: 2.1\nName: x\nVersion: 1.0\n\n",
            seconds=seconds,
            log=Path("/nonexistent.log"),
        )

    def drifted(self, pin: Pin, built_metadata: bytes) -> bool:
        return False

    def prebuilt(self, pin: Pin) -> Built | None:
        return None

    def record_extras(self, pin: Pin) -> BuildExtras:
        return BuildExtras()

    def save_record(self, record: BuildRecord) -> BuildRecord:
        return record


# The spread of ln(estimate / seconds) measured by calibrate_estimate.py on the langchain
# example's 63 real builds (two runs: mean +0.43 and +0.57, standard deviation 1.02 and 0.97).
ESTIMATE_LOG_ERROR_MEAN = 0.5
ESTIMATE_LOG_ERROR_SD = 1.0
REAL_MEDIAN_SECONDS = 0.5  # the median real build of that tree (0.53 s): the scale of targets


def features_for(target: float) -> SdistFeatures:
    """Sdist features whose estimate (``core.durations.estimate_build_seconds``) is ``target``
    seconds: a pure-Python sdist of the size that gives it up to 1.15 s, else 1 MB of Python
    and C sources (as many files as seconds above 0.65, and the bytes that make up the rest)."""
    if target < 1.15:
        return SdistFeatures(total_bytes=int(max(0.0, target - 0.4) / 0.25 * 1e6), files=20)
    files = max(1, math.floor(target - 0.65))
    c_kb = max(0.0, (target - 0.65 - 0.5 * files) / 0.00525)
    c_bytes = int(c_kb * 1000)
    return SdistFeatures(
        total_bytes=1_000_000 + c_bytes,
        files=20 + files,
        compiled_bytes={"c": c_bytes},
        compiled_files={"c": files},
    )


def cold_features(
    graph: Graph,
    *,
    median: float,
    seed: int,
    error_mean: float = ESTIMATE_LOG_ERROR_MEAN,
    error_sd: float = ESTIMATE_LOG_ERROR_SD,
) -> dict[str, SdistFeatures]:
    """Each package's sdist features for a cold run: estimated with the error real builds
    showed (module docstring), drawn with its own seeded generator."""
    rng = random.Random(f"cold-estimate-{seed}")
    scale = REAL_MEDIAN_SECONDS / median if median > 0 else 1.0
    out = {}
    for name in sorted(graph.seconds):
        error = rng.gauss(error_mean, error_sd)
        out[name] = features_for(graph.seconds[name] * scale * math.exp(error))
    return out


def weights_of(
    graph: Graph, durations: str, features: Mapping[str, SdistFeatures]
) -> dict[str, float]:
    """What the scheduler weighs each build by, for ``durations`` (as the bootstrap does)."""
    if durations == "known":
        return dict(graph.seconds)
    if durations == "unknown":
        return {n: estimate_build_seconds(features[n]) for n in graph.seconds}
    return dict.fromkeys(graph.seconds, 1.0)


class AwaitedSleepSteps(SleepSteps):
    """``SleepSteps`` for Dask that offer ``core.bootstrap.AwaitedSteps``, as ``DaskSteps``
    does: the get-requires task (which builds) is awaited on the bootstrap's event loop, then,
    as ``DaskSteps`` checks the answer and appends the worker's log there, one call through
    ``io`` (the bootstrap's pool); ``build`` (publishing) goes through ``io`` too."""

    def __init__(
        self,
        graph: Graph,
        sleep_async: SleepAsync,
        *,
        history: bool,
        features: Mapping[str, SdistFeatures] | None = None,
    ) -> None:
        super().__init__(
            graph, local_sleep, in_get_requires=True, history=history, features=features
        )
        self.sleep_async = sleep_async

    async def get_requires_async(self, prepared: Prepared, env: Any, io: RunIo) -> list[str]:
        name = self.names[prepared.pin.name]
        await self.sleep_async(name, self.graph.seconds[name])
        return await io(list)  # the answer checked, the log appended: [] asked for

    async def build_async(self, prepared: Prepared, env: Any, io: RunIo) -> Built:
        return await io(self.build, prepared, env)


# -- executors ---------------------------------------------------------------------------------


def local_sleep(_name: str, seconds: float) -> None:
    time.sleep(seconds)


CLUSTER = """
import sys
from distributed import LocalCluster
from rewheel.dask.dask_worker import worker_resource
with LocalCluster(n_workers=int(sys.argv[1]), threads_per_worker=1, processes=True,
                  resources={worker_resource(): 1}, dashboard_address="127.0.0.1:0") as cluster:
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()  # until the benchmark closes it
"""


@contextlib.contextmanager
def cluster_elsewhere(workers: int) -> Iterator[str]:
    """The same cluster as ``local:N`` (N worker processes, one thread each, the interpreter's
    resource), with its scheduler in a process of its own, as on a real cluster: its address."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CLUSTER, str(workers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        address = proc.stdout.readline().strip()
        if not address:
            raise SystemExit("the Dask cluster did not start")
        yield address
    finally:
        assert proc.stdin is not None
        proc.stdin.close()
        proc.wait(timeout=60)


SleepAsync = Callable[[str, float], Awaitable[None]]


@contextlib.contextmanager
def dask_sleep(
    workers: int, *, scheduler_here: bool
) -> Iterator[tuple[Callable[[str, float], None], SleepAsync]]:
    """Builds as Dask tasks, run by ``DaskSteps``' own ``DaskTasks`` (the interpreter resource,
    ``pure=False``, the same waiting and release): waited for in a thread (``run``) and awaited
    on an event loop (``run_async``, what ``DaskSteps`` does in a bootstrap), on the cluster
    ``--dask local:N`` makes (its scheduler in this process) or, unless ``scheduler_here``, on
    the same cluster run in another process and reached by its address (``--dask tcp://...``)."""
    from rewheel.dask.dask_steps import DaskTasks, dask_client

    with contextlib.ExitStack() as stack:
        target = (
            f"local:{workers}"
            if scheduler_here
            else stack.enter_context(cluster_elsewhere(workers))
        )
        client, resource_name = stack.enter_context(dask_client(target))
        tasks = DaskTasks(client, resource_name)
        counter = iter(range(1 << 62))

        def sleep(name: str, seconds: float) -> None:
            tasks.run(time.sleep, seconds, key=f"rewheel-build-{name}-{next(counter)}")

        async def sleep_async(name: str, seconds: float) -> None:
            await tasks.run_async(time.sleep, seconds, key=f"rewheel-build-{name}-{next(counter)}")

        yield sleep, sleep_async


# -- one run -----------------------------------------------------------------------------------


@dataclass
class Run:
    executor: str
    durations: str  # "known" to the scheduler (from the records of earlier builds) or not
    workers: int
    packages: int
    makespan_s: float
    critical_path_s: float
    work_per_worker_s: float
    bound_s: float
    ratio: float
    process_cpu_ms_per_pkg: float
    loop_cpu_ms_per_pkg: float
    # The Dask client's own threads (its IO loop, offload and callback threads): 0 for local.
    dask_cpu_ms_per_pkg: float
    # The rest: the bootstrap's pool threads (which end with the run), anything else.
    other_cpu_ms_per_pkg: float
    idle_dask_cpu_ms_per_s: float  # the Dask client threads' CPU per second while idle
    load: tuple[float, float]  # the machine's 1-minute load average when the run began, ended
    policy_s: float  # the scheduler's policy simulated without overhead (list scheduling)
    roundtrip_ms: float  # an empty Dask task, submitted and waited for (0 for local)
    max_parallel: int
    built: int
    violations: int
    notes: list[str] = field(default_factory=list)


def _process_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# The threads the Dask client runs in this process (distributed names them so).
DASK_THREADS = ("IO loop", "Dask-")


def dask_threads_cpu() -> float:
    """CPU seconds so far of the Dask client's threads alive in this process (each thread's own
    CPU clock)."""
    total = 0.0
    for t in threading.enumerate():
        if t.ident is None or not t.name.startswith(DASK_THREADS):
            continue
        with contextlib.suppress(OSError, OverflowError):
            total += time.clock_gettime(time.pthread_getcpuclockid(t.ident))
    return total


def idle_dask_cpu(seconds: float = 5.0) -> float:
    """CPU seconds per second the Dask client's threads take while nothing is submitted."""
    before = dask_threads_cpu()
    time.sleep(seconds)
    return (dask_threads_cpu() - before) / seconds


def run_once(
    graph: Graph,
    executor: str,
    workers: int,
    *,
    durations: str,
    features: Mapping[str, SdistFeatures],
    scheduler_here: bool = True,
    dask_wait: str = "loop",
    profile: Path | None = None,
) -> Run:
    history = durations == "known"
    roots = [Requirement(n) for n in graph.env]
    with contextlib.ExitStack() as stack:
        roundtrip = idle = 0.0
        if executor == "dask":
            sleep, sleep_async = stack.enter_context(
                dask_sleep(workers, scheduler_here=scheduler_here)
            )
            sleep("warm-up", 0.0)  # the workers' first task imports what tasks need
            t = time.perf_counter()
            for i in range(20):
                sleep(f"round-trip-{i}", 0.0)
            roundtrip = (time.perf_counter() - t) / 20
            idle = idle_dask_cpu()
        else:
            sleep = local_sleep
        steps: SleepSteps
        cold = features if durations == "unknown" else None
        if executor == "dask" and dask_wait == "loop":
            steps = AwaitedSleepSteps(graph, sleep_async, history=history, features=cold)
        else:
            steps = SleepSteps(
                graph,
                sleep,
                in_get_requires=executor == "dask",
                history=history,
                features=cold,
            )
        boot = Bootstrapper(steps, jobs=workers, threads=max(32, workers * 4))
        profiler = cProfile.Profile() if profile else None
        load0 = os.getloadavg()[0]
        cpu0, loop0, t0 = _process_cpu(), time.thread_time(), time.perf_counter()
        dask0 = dask_threads_cpu()
        if profiler:
            profiler.enable()
        result = boot.run(roots, max_passes=1)
        if profiler:
            profiler.disable()
        makespan = time.perf_counter() - t0
        loop_cpu, cpu = time.thread_time() - loop0, _process_cpu() - cpu0
        dask_cpu = dask_threads_cpu() - dask0
        if profiler and profile:
            profiler.dump_stats(str(profile))
    cp, _chain = graph.critical_path()
    per = graph.total / workers
    bound = max(cp, per)
    n = len(graph.env)
    label = executor if executor == "local" or scheduler_here else "dask (scheduler apart)"
    if executor == "dask" and dask_wait == "thread":
        label += ", waited in threads"
    return Run(
        executor=label,
        durations=durations,
        workers=workers,
        packages=n,
        makespan_s=round(makespan, 3),
        critical_path_s=round(cp, 3),
        work_per_worker_s=round(per, 3),
        bound_s=round(bound, 3),
        ratio=round(makespan / bound, 3) if bound else float("inf"),
        policy_s=round(simulate(graph, workers, weights_of(graph, durations, features)), 3),
        roundtrip_ms=round(roundtrip * 1000, 1),
        process_cpu_ms_per_pkg=round(cpu / n * 1000, 3),
        loop_cpu_ms_per_pkg=round(loop_cpu / n * 1000, 3),
        dask_cpu_ms_per_pkg=round(dask_cpu / n * 1000, 3),
        other_cpu_ms_per_pkg=round((cpu - loop_cpu - dask_cpu) / n * 1000, 3),
        idle_dask_cpu_ms_per_s=round(idle * 1000, 3),
        load=(round(load0, 2), round(os.getloadavg()[0], 2)),
        max_parallel=result.max_parallel_builds,
        built=result.built,
        violations=len(steps.violations) + len(result.failures),
    )


def simulate(graph: Graph, workers: int, weights: Mapping[str, float]) -> float:
    """The makespan of the bootstrap's policy with no overhead at all: a build starts as soon as
    its environment is built and a worker is free; among ready builds the one with the heaviest
    chain of builds waiting behind it goes first (each weighing ``weights[name]``, as
    ``core.scheduler.WaitGraph`` weighs them: ``weights_of``)."""
    waiters: dict[str, list[str]] = {n: [] for n in graph.env}
    for name, env in graph.env.items():
        for e in env:
            waiters[e].append(name)
    chains: dict[str, float] = {}
    for name in graph.env:
        _chain(name, waiters, chains, weights)
    remaining = {n: len(env) for n, env in graph.env.items()}
    ready = [(-chains[n], n) for n, k in remaining.items() if k == 0]
    heapq.heapify(ready)
    running: list[tuple[float, str]] = []
    now = 0.0
    while ready or running:
        while ready and len(running) < workers:
            _, name = heapq.heappop(ready)
            heapq.heappush(running, (now + graph.seconds[name], name))
        now, name = heapq.heappop(running)
        for w in waiters[name]:
            remaining[w] -= 1
            if remaining[w] == 0:
                heapq.heappush(ready, (-chains[w], w))
    return now


def _chain(
    name: str,
    waiters: dict[str, list[str]],
    chains: dict[str, float],
    weights: Mapping[str, float],
) -> float:
    stack = [(name, False)]
    while stack:
        n, ready = stack.pop()
        if n in chains:
            continue
        if ready:
            chains[n] = weights[n] + max((chains[w] for w in waiters[n]), default=0.0)
        else:
            stack.append((n, True))
            stack.extend((w, False) for w in waiters[n] if w not in chains)
    return chains[name]


def memory_per_package(graph: Graph, workers: int) -> float:
    """KiB of Python allocations per package at the run's peak (local executor, builds of no
    duration: only the coordinator's own objects)."""
    quick = Graph(graph.env, graph.requires, dict.fromkeys(graph.seconds, 0.0))
    steps = SleepSteps(quick, local_sleep)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    Bootstrapper(steps, jobs=workers).run([Requirement(n) for n in graph.env], max_passes=1)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return (peak - base) / len(graph.env) / 1024


def table(runs: Sequence[Run]) -> str:
    head = [
        "executor",
        "durations",
        "workers",
        "makespan s",
        "critical path s",
        "work/N s",
        "makespan/bound",
        "policy alone s",
        "process CPU ms/pkg",
        "loop CPU ms/pkg",
        "Dask client CPU ms/pkg",
        "other CPU ms/pkg",
        "max parallel",
    ]
    rows = [head] + [
        [
            r.executor,
            r.durations,
            str(r.workers),
            f"{r.makespan_s:.2f}",
            f"{r.critical_path_s:.2f}",
            f"{r.work_per_worker_s:.2f}",
            f"{r.ratio:.3f}",
            f"{r.policy_s:.2f}",
            f"{r.process_cpu_ms_per_pkg:.2f}",
            f"{r.loop_cpu_ms_per_pkg:.2f}",
            f"{r.dask_cpu_ms_per_pkg:.2f}",
            f"{r.other_cpu_ms_per_pkg:.2f}",
            str(r.max_parallel),
        ]
        for r in runs
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    out = []
    for i, row in enumerate(rows):
        out.append("| " + " | ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) + " |")
        if i == 0:
            out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--packages", type=int, default=1000)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--executor", choices=("local", "dask", "both"), default="both")
    parser.add_argument(
        "--median", type=float, default=0.1, help="median build seconds (default 0.1)"
    )
    parser.add_argument("--sigma", type=float, default=1.0, help="log-normal sigma (default 1)")
    parser.add_argument("--seed", type=int, default=16)
    parser.add_argument(
        "--durations",
        choices=("unknown", "known", "weight1", "both", "all"),
        default="both",
        help="what the scheduler knows of build durations: known (earlier builds' records), "
        "unknown (a cold run: estimated from the sdists' features), weight1 (a cold run with "
        "every build weighing 1, the reference); both = unknown and known; all = the three",
    )
    parser.add_argument(
        "--estimate-error",
        type=float,
        nargs=2,
        metavar=("MEAN", "SD"),
        default=(ESTIMATE_LOG_ERROR_MEAN, ESTIMATE_LOG_ERROR_SD),
        help="the normal law of ln(estimate / seconds) the cold run's sdist features are drawn "
        f"with (default {ESTIMATE_LOG_ERROR_MEAN} {ESTIMATE_LOG_ERROR_SD}: measured on real "
        "builds by calibrate_estimate.py)",
    )
    parser.add_argument(
        "--policy-only",
        action="store_true",
        help="print only the policy simulated without overhead (no run: seconds, not minutes)",
    )
    parser.add_argument(
        "--scheduler-apart",
        action="store_true",
        help="run the Dask cluster (scheduler and workers) in a process of its own and reach it "
        "by address, so that the coordinator's CPU is rewheel's and the Dask client's only",
    )
    parser.add_argument(
        "--dask-wait",
        choices=("loop", "thread"),
        default="loop",
        help="how the bootstrap waits for a Dask task: awaited on its event loop, as DaskSteps "
        "does (default), or blocking a thread of its pool, as DaskSteps did before",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--profile", type=Path, help="cProfile the (last) run into this file")
    args = parser.parse_args(argv)

    graph = make_graph(args.packages, median=args.median, sigma=args.sigma, seed=args.seed)
    cp, chain = graph.critical_path()
    durations = sorted(graph.seconds.values())
    print(
        f"graph: {len(graph.env)} packages, depth {graph.depth()}, total work "
        f"{graph.total:.1f} s, critical path {cp:.2f} s ({' -> '.join(chain)}); builds: median "
        f"{statistics.median(durations):.3f} s, p90 {durations[int(0.9 * len(durations))]:.3f} "
        f"s, max {durations[-1]:.2f} s",
        flush=True,
    )
    modes = {
        "both": ["unknown", "known"],
        "all": ["known", "unknown", "weight1"],
    }.get(args.durations, [args.durations])
    error_mean, error_sd = args.estimate_error
    features = cold_features(
        graph, median=args.median, seed=args.seed, error_mean=error_mean, error_sd=error_sd
    )
    if args.policy_only:
        bound = {n: max(cp, graph.total / n) for n in args.workers}
        print("| durations | " + " | ".join(f"x{n} policy s (/bound)" for n in args.workers))
        print("|---" * (len(args.workers) + 1) + "|")
        for mode in modes:
            cells = []
            for n in args.workers:
                policy = simulate(graph, n, weights_of(graph, mode, features))
                cells.append(f"{policy:.2f} ({policy / bound[n]:.3f})")
            print(f"| {mode} | " + " | ".join(cells) + " |")
        return 0
    executors = ["local", "dask"] if args.executor == "both" else [args.executor]
    runs: list[Run] = []
    for executor in executors:
        for mode in modes:
            for n in args.workers:
                run = run_once(
                    graph,
                    executor,
                    n,
                    durations=mode,
                    features=features,
                    scheduler_here=not args.scheduler_apart,
                    dask_wait=args.dask_wait,
                    profile=args.profile,
                )
                runs.append(run)
                print(
                    f"{executor} x{n} durations {run.durations}: makespan {run.makespan_s:.2f} "
                    f"s, bound {run.bound_s:.2f} s (x{run.ratio:.3f}; the same policy without "
                    f"any overhead: {run.policy_s:.2f} s), coordinator CPU "
                    f"{run.process_cpu_ms_per_pkg:.2f} ms/pkg (event loop "
                    f"{run.loop_cpu_ms_per_pkg:.2f}, Dask client threads "
                    f"{run.dask_cpu_ms_per_pkg:.2f}, other {run.other_cpu_ms_per_pkg:.2f}), Dask "
                    f"round trip {run.roundtrip_ms:.1f} ms, idle Dask client "
                    f"{run.idle_dask_cpu_ms_per_s:.2f} ms CPU/s, "
                    f"violations {run.violations}, load average {run.load[0]:.2f} -> "
                    f"{run.load[1]:.2f}",
                    flush=True,
                )
    kib = memory_per_package(graph, max(args.workers))
    print()
    print(table(runs))
    print(f"\nmemory: {kib:.1f} KiB of Python allocations per package at the peak (tracemalloc)")
    met_cpu = all(r.process_cpu_ms_per_pkg < CPU_TARGET_MS for r in runs)
    met_span = all(r.ratio <= MAKESPAN_TARGET for r in runs if r.durations != "weight1")
    print(
        f"targets: coordinator CPU < {CPU_TARGET_MS} ms/pkg: {'met' if met_cpu else 'MISSED'}; "
        f"makespan within {MAKESPAN_TARGET - 1:.0%} of the bound: "
        f"{'met' if met_span else 'MISSED'} (weight1 runs, the reference, not counted)"
    )
    if args.json:
        args.json.write_text(
            json.dumps({"runs": [asdict(r) for r in runs], "kib_per_package": kib}, indent=1)
        )
    return 0 if all(r.violations == 0 for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
