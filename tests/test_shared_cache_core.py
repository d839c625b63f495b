"""The bootstrap's use of a shared build cache (``bootstrap.SharedCache``), with fakes: a hit is
taken only for the key this run computes for the environment it resolves; a miss or a refused
fetch is built here; what was taken counts as "from cache", never as built."""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field

from fakes import FakeSteps, FakeUpstream, Projects, node_id
from packaging.requirements import Requirement

from rewheel.core.bootstrap import Bootstrapper, BootstrapResult, CacheHint
from rewheel.core.records import BuildRecord, EnvEntry
from rewheel.core.report import Outcome, Reporter
from rewheel.core.resolver import Pin
from rewheel.core.types import WheelRef

PROJECTS: Projects = {"tool": {"1.0": []}, "lib": {"1.0": []}, "app": {"1.0": ["lib"]}}
BUILD = {"lib": ["tool"], "app": ["tool"]}


def _wheel_name(name: str, version: str) -> str:
    return f"{name.replace('-', '_')}-{version}-py3-none-any.whl"


@dataclass
class FakeCache:
    """Offers every package of ``offers`` (name -> the build environment it was built with),
    under the key ``steps`` computes for that environment (salted for ``wrong_key``)."""

    steps: FakeSteps
    offers: dict[str, list[tuple[str, str]]]
    wrong_key: set[str] = field(default_factory=set)
    refuse: set[str] = field(default_factory=set)
    # name -> what its backend asked for, in the cache's build (its environment holds those too)
    backend: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    # names whose environment's wheels, in the cache's build, are other bytes than here
    other_bytes: set[str] = field(default_factory=set)
    fetched: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def hints(self, pin: Pin) -> Sequence[CacheHint]:
        if pin.name not in self.offers:
            return []
        backend = self.backend.get(pin.name, [])
        salt = "other bytes" if pin.name in self.other_bytes else ""
        env = [
            WheelRef(
                n,  # type: ignore[arg-type]
                v,
                _wheel_name(n, v),
                hashlib.sha256((salt + _wheel_name(n, v)).encode()).hexdigest(),
            )
            for n, v in [*self.offers[pin.name], *backend]
        ]
        key = self.steps.cache_key(pin, env)
        if pin.name in self.wrong_key:
            key = "f" * 64
        return [
            CacheHint(
                cache_key=key,
                build_requires=tuple(n for n, _v in self.offers[pin.name]),
                backend_requires=tuple(n for n, _v in backend),
                build_env_sha256=tuple(sorted(w.sha256 for w in env)),
            )
        ]

    def fetch(
        self, pin: Pin, hint: CacheHint, build_env: Sequence[WheelRef], cache_key: str
    ) -> BuildRecord | None:
        assert cache_key == hint.cache_key  # the core asks only for the key it computed
        with self.lock:
            self.fetched.append(pin.name)
        if pin.name in self.refuse:
            return None
        filename = _wheel_name(pin.name, str(pin.version))
        # The bytes a build here makes (as FakeSteps name them): builds are reproducible.
        wheel = WheelRef(
            pin.name, str(pin.version), filename, hashlib.sha256(filename.encode()).hexdigest()
        )
        with self.steps.lock:
            self.steps.published[node_id(pin)] = wheel
            self.steps.published_requires[node_id(pin)] = [
                str(r) for r in self.steps.upstream.requires(pin.name, pin.version)
            ]
        return BuildRecord(
            name=pin.name,
            version=str(pin.version),
            sdist_url=pin.sdist.url,
            sdist_sha256=pin.sdist.sha256,
            wheel=wheel.filename,
            wheel_sha256=wheel.sha256,
            build_env=tuple(EnvEntry.of(w) for w in build_env),
            build_system_requires=hint.build_requires,
            cache_key=cache_key,
            from_cache="https://cache.example/",
        )


def _run(steps: FakeSteps, cache: FakeCache | None) -> BootstrapResult:
    return Bootstrapper(steps, jobs=2, shared_cache=cache).run([Requirement("app")])


def _cache(steps: FakeSteps, **kwargs: set[str]) -> FakeCache:
    return FakeCache(
        steps, {"tool": [], "lib": [("tool", "1.0")], "app": [("tool", "1.0")]}, **kwargs
    )


def test_what_the_cache_offers_under_the_key_computed_here_is_taken_and_nothing_built() -> None:
    steps = FakeSteps(FakeUpstream(PROJECTS), build_requires=BUILD)
    cache = _cache(steps)
    result = _run(steps, cache)
    assert result.ok, result.failures
    assert not steps.builds and not steps.prepares
    assert sorted(cache.fetched) == ["app", "lib", "tool"]
    assert (result.built, result.from_cache, result.reused) == (0, 3, 0)
    assert set(result.outcomes.values()) == {Outcome.FROM_CACHE}
    assert all(r.from_cache == "https://cache.example/" for r in result.order)
    assert not steps.violations  # every build environment's wheels were there before


def test_another_key_or_a_refused_fetch_is_built_here() -> None:
    steps = FakeSteps(FakeUpstream(PROJECTS), build_requires=BUILD)
    cache = _cache(steps, wrong_key={"lib"}, refuse={"app"})
    result = _run(steps, cache)
    assert result.ok, result.failures
    assert set(steps.builds) == {"lib==1.0", "app==1.0"}
    assert "lib" not in cache.fetched  # another key: not even asked for
    assert result.outcomes == {
        "tool==1.0": Outcome.FROM_CACHE,
        "lib==1.0": Outcome.BUILT,
        "app==1.0": Outcome.BUILT,
    }
    assert (result.built, result.from_cache) == (2, 1)


def test_a_second_run_reuses_what_the_first_took_from_the_cache() -> None:
    steps = FakeSteps(FakeUpstream(PROJECTS), build_requires=BUILD)
    _run(steps, _cache(steps))
    again = _cache(steps)
    result = _run(steps, again)
    assert not again.fetched and not steps.builds
    assert (result.built, result.from_cache, result.reused) == (0, 0, 3)
    assert set(result.outcomes.values()) == {Outcome.REUSED}


def test_without_a_cache_everything_is_built() -> None:
    steps = FakeSteps(FakeUpstream(PROJECTS), build_requires=BUILD)
    result = _run(steps, None)
    assert (result.built, result.from_cache) == (3, 0)


def test_the_reporter_is_told_what_came_from_the_cache() -> None:
    steps = FakeSteps(FakeUpstream(PROJECTS), build_requires=BUILD)
    told: dict[str, tuple[bool, bool]] = {}

    class Told(Reporter):
        def done(
            self,
            node: str,
            wheel: str,
            *,
            cached: bool,
            seconds: float,
            prebuilt: bool = False,
            from_cache: bool = False,
        ) -> None:
            told[node] = (cached, from_cache)

    cache = _cache(steps, refuse={"app"})
    Bootstrapper(steps, jobs=2, shared_cache=cache, reporter=Told()).run([Requirement("app")])
    assert told == {
        "tool==1.0": (True, True),
        "lib==1.0": (True, True),
        "app==1.0": (False, False),  # refused: built here
    }


def _shape(result: BootstrapResult) -> tuple[list[str], object, list[str]]:
    edges = sorted(f"{e['from']} -> {e['to']} ({e['kind']})" for e in result.graph["edges"])
    return sorted(r.node for r in result.order), result.graph["nodes"], edges


def test_a_miss_on_other_build_tools_leaves_the_run_as_without_a_cache() -> None:
    # The cache built app with other bytes of tool (another build of it) and a backend that
    # asked for extra as well. Here tool is this run's: its key cannot be the offer's, so
    # neither extra nor an edge to it may appear, and it is not built or waited for.
    projects: Projects = {**PROJECTS, "extra": {"1.0": []}}

    def run(cache: bool) -> tuple[FakeSteps, BootstrapResult]:
        steps = FakeSteps(FakeUpstream(projects), build_requires=BUILD)
        offered = FakeCache(
            steps,
            {"app": [("tool", "1.0")]},
            backend={"app": [("extra", "1.0")]},
            other_bytes={"app"},
        )
        return steps, _run(steps, offered if cache else None)

    plain_steps, plain = run(cache=False)
    steps, result = run(cache=True)
    assert result.ok, result.failures
    assert "extra==1.0" not in steps.builds
    assert _shape(result) == _shape(plain)
    assert steps.builds == plain_steps.builds
