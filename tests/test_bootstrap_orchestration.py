"""The bootstrap's policy with ``FakeSteps``: order, deduplication, parallelism, failures, cache."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Sequence
from typing import Any

import pytest
from fakes import FakeSteps, FakeUpstream, Projects
from packaging.requirements import Requirement
from packaging.utils import NormalizedName

from rewheel.core.bootstrap import (
    Bootstrapper,
    BootstrapResult,
    BuildWindow,
    DependencyFailed,
    NotAttempted,
    QueueWindow,
    Reporter,
    _Pass,
)
from rewheel.core.durations import PastBuild, SdistFeatures
from rewheel.core.errors import BuildError, CauseKind, ResolutionError, RewheelError
from rewheel.core.records import Why
from rewheel.core.report import Outcome

TIMEOUT = 10.0


def run(
    steps: FakeSteps,
    reqs: Sequence[str],
    *,
    jobs: int = 2,
    reporter: Reporter | None = None,
    keep_going: bool = True,
    past_builds: Callable[[NormalizedName], Sequence[PastBuild]] | None = None,
    threads: int = 32,
) -> BootstrapResult:
    """``Bootstrapper.run`` in a thread, so that a hang fails the test instead of blocking it."""
    out: list[BootstrapResult | BaseException] = []

    def target() -> None:
        try:
            boot = Bootstrapper(
                steps,
                jobs=jobs,
                reporter=reporter,
                keep_going=keep_going,
                past_builds=past_builds,
                threads=threads,
            )
            out.append(boot.run([Requirement(r) for r in reqs]))
        except BaseException as exc:
            out.append(exc)

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(TIMEOUT)
    assert not t.is_alive(), f"the bootstrap did not finish within {TIMEOUT}s"
    (result,) = out
    if isinstance(result, BaseException):
        raise result
    return result


def order_nodes(result: BootstrapResult) -> list[str]:
    return [r.node for r in result.order]


def assert_build_envs_first(result: BootstrapResult) -> None:
    position = {node: i for i, node in enumerate(order_nodes(result))}
    for i, record in enumerate(result.order):
        for w in record.build_env:
            assert position[f"{w.name}=={w.version}"] < i, (record.name, w)


# A tree where every package is built with the same tools: setuptools and wheel, both built with
# flit-core, plus cython for the ones whose backend asks for it.
TOOLS: Projects = {
    "flit-core": {"3.9": []},
    "setuptools": {"70.0": []},
    "wheel": {"0.43": []},
    "cython": {"3.0": []},
}


def shared_tools_steps(n: int) -> tuple[FakeSteps, list[str]]:
    apps = [f"app{i}" for i in range(n)]
    projects: dict[str, Any] = {**TOOLS, "meta": {"1.0": apps}}
    projects.update({a: {"1.0": []} for a in apps})
    build = {a: ["setuptools>=60", "wheel"] for a in [*apps, "meta"]}
    build.update({"setuptools": ["flit-core"], "wheel": ["flit-core"], "cython": ["setuptools"]})
    backend = {a: ["cython"] for a in apps[::2]}
    steps = FakeSteps(FakeUpstream(projects), build_requires=build, backend_requires=backend)
    return steps, apps


def test_every_node_is_built_once_even_when_many_share_build_tools() -> None:
    steps, apps = shared_tools_steps(12)
    result = run(steps, ["meta"], jobs=4)
    assert result.ok, result.failures
    expected = {f"{a}==1.0" for a in [*apps, "meta"]} | {
        "flit-core==3.9",
        "setuptools==70.0",
        "wheel==0.43",
        "cython==3.0",
    }
    assert set(steps.builds) == expected
    assert set(steps.builds.values()) == {1}
    assert set(steps.prepares.values()) == {1}
    assert result.built == len(expected) and result.reused == 0
    assert sorted(order_nodes(result)) == sorted(expected)
    assert steps.violations == []


def test_builds_start_only_after_their_build_environment_exists() -> None:
    steps, _apps = shared_tools_steps(6)
    result = run(steps, ["meta"], jobs=3)
    assert result.ok, result.failures
    assert steps.violations == []
    for node, env in steps.build_envs.items():
        for dep in env:
            assert steps.index("build-end", dep) < steps.index("build-start", node), (node, dep)
    # The backend's own requirement is in the environment the wheel was built in.
    assert "cython==3.0" in steps.build_envs["app0==1.0"]
    assert "cython==3.0" not in steps.build_envs["app1==1.0"]
    assert_build_envs_first(result)
    by_node = {r.node: r for r in result.order}
    assert by_node["app0==1.0"].backend_requires == ("cython",)
    assert by_node["app0==1.0"].build_system_requires == ("setuptools>=60", "wheel")


def test_the_graph_records_why_each_package_is_there() -> None:
    steps, _apps = shared_tools_steps(2)
    result = run(steps, ["meta"])
    edges = {(e["from"], e["to"], e["kind"]) for e in result.graph["edges"]}
    assert (None, "meta==1.0", "toplevel") in edges
    assert ("meta==1.0", "app0==1.0", "install") in edges
    assert ("app0==1.0", "setuptools==70.0", "build-system") in edges
    assert ("app0==1.0", "cython==3.0", "build-backend") in edges
    assert ("setuptools==70.0", "flit-core==3.9", "build-system") in edges
    nodes = {n["id"] for n in result.graph["nodes"]}
    assert {"meta==1.0", "app0==1.0", "app1==1.0", "flit-core==3.9"} <= nodes
    why = {r.node: r.why for r in result.order}
    assert (
        Why(package="app0==1.0", requirement="cython", kind="build-backend") in why["cython==3.0"]
    )


def test_independent_builds_overlap_up_to_jobs() -> None:
    projects: Projects = {f"leaf{i}": {"1.0": []} for i in range(6)}
    steps = FakeSteps(FakeUpstream(projects), default_duration=0.05)
    result = run(steps, list(projects), jobs=2)
    assert result.ok
    assert steps.max_concurrent_builds == 2
    assert steps.max_concurrent_busy <= 2
    assert result.max_parallel_builds == 2


def test_one_job_builds_one_at_a_time() -> None:
    projects: Projects = {f"leaf{i}": {"1.0": []} for i in range(4)}
    steps = FakeSteps(FakeUpstream(projects), default_duration=0.01)
    result = run(steps, list(projects), jobs=1)
    assert result.ok
    assert steps.max_concurrent_busy == 1
    assert result.max_parallel_builds == 1


def test_the_slot_goes_to_the_node_with_the_longest_chain_of_waiters() -> None:
    # One slot. "blocker" takes it first (its prepare is instant) and builds for a while; in the
    # meantime "shallow" (nobody waits for it) and "deep" (mid waits for it, top waits for mid)
    # both queue for the slot. When it frees, deep must go first.
    projects: Projects = {
        "blocker": {"1.0": []},
        "shallow": {"1.0": []},
        "top": {"1.0": []},
        "mid": {"1.0": []},
        "deep": {"1.0": []},
    }
    steps = FakeSteps(
        FakeUpstream(projects),
        build_requires={"top": ["mid"], "mid": ["deep"]},
        durations={"blocker": 0.3},
        prepare_durations={"shallow": 0.02, "top": 0.02, "mid": 0.02, "deep": 0.02},
    )
    result = run(steps, ["blocker", "shallow", "top"], jobs=1)
    assert result.ok
    builds = [node for event, node in steps.events if event == "build-start"]
    assert builds[0] == "blocker==1.0"
    assert builds.index("deep==1.0") < builds.index("shallow==1.0")
    gets = [node for event, node in steps.events if event == "get-requires"]
    assert gets.index("deep==1.0") < gets.index("shallow==1.0")


def _two_queued_behind_a_blocker(**kwargs: Any) -> FakeSteps:
    """One slot: "blocker" takes it and builds for a while; "light" then "heavy" (nobody waits
    for either) queue for it in that order."""
    projects: Projects = {"blocker": {"1.0": []}, "light": {"1.0": []}, "heavy": {"2.0": []}}
    return FakeSteps(
        FakeUpstream(projects),
        durations={"blocker": 0.3},
        prepare_durations={"light": 0.02, "heavy": 0.05},
        **kwargs,
    )


def _build_order(steps: FakeSteps) -> list[str]:
    return [node for event, node in steps.events if event == "build-start"]


def test_a_cold_build_is_weighed_by_what_its_sdist_holds() -> None:
    """No record of either: the sdist that holds compiled sources is estimated longer, and its
    build starts first although it asked for the slot last (by the order of asking, "light"
    would go first)."""
    compiled = SdistFeatures(compiled_bytes={"c": 500_000}, compiled_files={"c": 20})
    steps = _two_queued_behind_a_blocker(features={"heavy": compiled, "light": SdistFeatures()})
    result = run(steps, ["blocker", "light", "heavy"], jobs=1)
    assert result.ok
    assert _build_order(steps) == ["blocker==1.0", "heavy==2.0", "light==1.0"]


def test_a_build_is_weighed_by_an_earlier_version_of_its_project() -> None:
    """heavy 2.0 was never built here, but heavy 1.0 was and took 100 s: that weighs it, over
    its sdist's estimate (which says nothing here)."""
    asked: list[str] = []

    def past(name: NormalizedName) -> list[PastBuild]:
        asked.append(name)
        return [PastBuild("1.0", 100.0)] if name == "heavy" else []

    steps = _two_queued_behind_a_blocker(features={"heavy": SdistFeatures()})
    result = run(steps, ["blocker", "light", "heavy"], jobs=1, past_builds=past)
    assert result.ok
    assert _build_order(steps) == ["blocker==1.0", "heavy==2.0", "light==1.0"]
    assert sorted(asked) == ["blocker", "heavy", "light"]


def test_a_failure_fails_its_dependents_and_spares_the_rest() -> None:
    projects: Projects = {
        "app": {"1.0": []},
        "mid": {"1.0": []},
        "broken": {"1.0": []},
        "fine": {"1.0": []},
        "tool": {"1.0": []},
    }
    steps = FakeSteps(
        FakeUpstream(projects),
        build_requires={"app": ["mid"], "mid": ["broken"], "fine": ["tool"]},
        fail={"broken"},
    )

    class Failures(Reporter):
        def __init__(self) -> None:
            self.failed_nodes: list[str] = []

        def failed(self, node: str, error: RewheelError) -> None:
            self.failed_nodes.append(node)

    reporter = Failures()
    result = run(steps, ["app", "fine"], reporter=reporter)
    assert not result.ok
    assert list(result.failures) == ["broken==1.0"]
    assert isinstance(result.failures["broken==1.0"], BuildError)
    assert reporter.failed_nodes == ["broken==1.0"]
    assert set(order_nodes(result)) == {"fine==1.0", "tool==1.0"}
    assert "app==1.0" not in steps.builds and "mid==1.0" not in steps.builds


def test_a_build_environment_that_cannot_resolve_says_how_the_request_led_there() -> None:
    # app needs plat at run time and tool to build; tool's own build, and plat's, each ask for
    # a project the index does not have. Each failure's chain starts at what the user asked for.
    projects: Projects = {
        "app": {"1.0": ["plat"]},
        "plat": {"1.0": []},
        "tool": {"1.0": []},
        "hatchling": {"1.0": []},
    }
    steps = FakeSteps(
        FakeUpstream(projects),
        build_requires={"app": ["tool"], "tool": ["nothere"], "plat": ["hatchling"]},
        backend_requires={"plat": ["python-sbom[hatch]"]},
    )
    result = run(steps, ["app"])
    assert set(result.failures) == {"tool==1.0", "plat==1.0"}
    tool, plat = result.failures["tool==1.0"], result.failures["plat==1.0"]
    assert isinstance(tool, ResolutionError) and isinstance(plat, ResolutionError)
    assert tool.chains == [
        ["app==1.0 (requested)", "tool==1.0 (build-system)", "nothere (build-system)"]
    ]
    assert plat.chains == [
        ["app==1.0 (requested)", "plat==1.0 (install)", "python-sbom[hatch] (build-backend)"]
    ]
    assert (plat.package, plat.version, plat.causes[0].kind) == ("plat", "1.0", CauseKind.NOT_FOUND)


def test_without_keep_going_the_run_stops_at_the_first_failure() -> None:
    projects: Projects = {"broken": {"1.0": []}, "slow": {"1.0": []}, "tool": {"1.0": []}}
    steps = FakeSteps(
        FakeUpstream(projects),
        build_requires={"slow": ["tool"]},
        prepare_durations={"slow": 0.3},
        fail={"broken"},
    )
    result = run(steps, ["broken", "slow"], keep_going=False)
    assert list(result.failures) == ["broken==1.0"]
    # Still being prepared when broken failed: never built, and not counted as a failure.
    assert "slow==1.0" not in steps.builds
    assert "slow==1.0" not in order_nodes(result)


def test_dependents_of_a_failure_raise_dependency_failed() -> None:
    projects: Projects = {"app": {"1.0": []}, "mid": {"1.0": []}, "broken": {"1.0": []}}
    steps = FakeSteps(
        FakeUpstream(projects),
        build_requires={"app": ["mid"], "mid": ["broken"]},
        fail={"broken"},
    )
    one = _Pass(Bootstrapper(steps, jobs=2, keep_going=True))
    result = asyncio.run(asyncio.wait_for(one.run([Requirement("app")]), TIMEOUT))
    errors = {f"{n}=={v}": t.exception() for (n, v), t in one.tasks.items()}
    assert isinstance(errors["app==1.0"], DependencyFailed)
    assert isinstance(errors["mid==1.0"], DependencyFailed)
    assert "broken==1.0" in str(errors["mid==1.0"])
    assert not isinstance(errors["broken==1.0"], DependencyFailed)
    assert list(result.failures) == ["broken==1.0"]


def test_the_result_says_what_became_of_every_node() -> None:
    projects: Projects = {
        "app": {"1.0": ["broken", "fine", "binary"]},
        "mid": {"1.0": []},
        "broken": {"1.0": []},
        "fine": {"1.0": []},
        "binary": {"1.0": []},
        "tool": {"1.0": []},
    }
    steps = FakeSteps(
        FakeUpstream(projects),
        build_requires={"app": ["tool"], "mid": ["broken"], "fine": ["mid"]},
        fail={"broken"},
        prebuilt_nodes={"binary"},
    )
    result = run(steps, ["app"], keep_going=True)
    assert result.outcomes == {
        "app==1.0": Outcome.BUILT,
        "tool==1.0": Outcome.BUILT,
        "binary==1.0": Outcome.PREBUILT,
        "broken==1.0": Outcome.FAILED,
        "mid==1.0": Outcome.DEPENDENCY_FAILED,
        "fine==1.0": Outcome.DEPENDENCY_FAILED,
    }
    assert (result.built, result.prebuilt, result.reused) == (2, 1, 0)
    assert set(result.unbuilt) == {"mid==1.0", "fine==1.0"}
    assert "broken==1.0" in result.unbuilt["mid==1.0"].message
    again = run(steps, ["app"], keep_going=True)
    assert again.outcomes["app==1.0"] is Outcome.REUSED
    assert again.outcomes["binary==1.0"] is Outcome.PREBUILT  # taken again: no cache key
    assert (again.built, again.prebuilt, again.reused) == (0, 1, 2)


def test_the_reporter_is_told_a_wheel_was_taken_pre_built() -> None:
    projects: Projects = {"app": {"1.0": ["binary"]}, "binary": {"1.0": []}}
    steps = FakeSteps(FakeUpstream(projects), prebuilt_nodes={"binary"})
    done: dict[str, tuple[bool, bool]] = {}

    class Done(Reporter):
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
            done[node] = (cached, prebuilt)

    run(steps, ["app"], reporter=Done())
    assert done == {"app==1.0": (False, False), "binary==1.0": (False, True)}


def test_what_the_first_failure_left_unbuilt_is_not_attempted() -> None:
    projects: Projects = {
        "broken": {"1.0": []},
        "slow": {"1.0": []},
        "tool": {"1.0": []},
        "waits": {"1.0": []},
    }
    steps = FakeSteps(
        FakeUpstream(projects),
        build_requires={"slow": ["tool"], "waits": ["slow"]},
        prepare_durations={"slow": 0.3},
        fail={"broken"},
    )
    result = run(steps, ["broken", "waits"], keep_going=False)
    assert result.outcomes["broken==1.0"] is Outcome.FAILED
    # Nothing ``waits`` needs failed: the run stopped before building it.
    assert result.outcomes["slow==1.0"] is Outcome.NOT_ATTEMPTED
    assert result.outcomes["waits==1.0"] is Outcome.NOT_ATTEMPTED
    assert isinstance(result.unbuilt["waits==1.0"], NotAttempted)
    assert "slow==1.0, which the run did not build" in result.unbuilt["waits==1.0"].message


def test_partial_tells_what_an_interrupted_run_had_done() -> None:
    projects: Projects = {"app": {"1.0": []}, "tool": {"1.0": []}}
    steps = FakeSteps(FakeUpstream(projects), build_requires={"app": ["tool"]})

    class Interrupt(Reporter):
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
            raise KeyboardInterrupt

    bootstrapper = Bootstrapper(steps, jobs=1, reporter=Interrupt())
    assert bootstrapper.partial() is None
    with pytest.raises(KeyboardInterrupt):
        bootstrapper.run([Requirement("app")])
    partial = bootstrapper.partial()
    assert partial is not None
    assert partial.outcomes == {"tool==1.0": Outcome.BUILT, "app==1.0": Outcome.NOT_ATTEMPTED}
    assert partial.built == 1 and [e["to"] for e in partial.graph["edges"]] == [
        "app==1.0",
        "tool==1.0",
    ]


@pytest.mark.parametrize(
    "build_requires",
    [
        {"a": ["b"], "b": ["a"]},
        {"a": ["a"]},
        {"a": ["b"], "b": ["c"], "c": ["a"]},
    ],
    ids=["two", "self", "three"],
)
def test_a_build_cycle_is_an_error_not_a_hang(build_requires: dict[str, list[str]]) -> None:
    projects: Projects = {"a": {"1.0": []}, "b": {"1.0": []}, "c": {"1.0": []}, "z": {"1.0": []}}
    steps = FakeSteps(FakeUpstream(projects), build_requires=build_requires)
    result = run(steps, ["a", "z"])
    assert not result.ok
    (error,) = result.failures.values()
    assert isinstance(error, BuildError)
    assert "cycle" in str(error)
    assert "a==1.0" in str(error)
    assert "a==1.0" not in steps.builds
    assert order_nodes(result) == ["z==1.0"]


def test_cache_hits_do_no_build_and_count_as_reused() -> None:
    steps, _apps = shared_tools_steps(3)
    first = run(steps, ["meta"])
    assert first.ok and first.reused == 0
    builds = sum(steps.builds.values())
    second = run(steps, ["meta"])
    assert second.ok
    assert sum(steps.builds.values()) == builds  # no new build
    assert second.built == 0 and second.reused == builds
    assert sorted(order_nodes(second)) == sorted(order_nodes(first))
    assert_build_envs_first(second)


def test_a_changed_cache_key_rebuilds() -> None:
    steps, _apps = shared_tools_steps(2)
    run(steps, ["meta"])
    builds = sum(steps.builds.values())
    steps.key_salt = "another interpreter"
    second = run(steps, ["meta"])
    assert second.built == builds and second.reused == 0
    assert set(steps.builds.values()) == {2}


def test_drift_makes_a_second_pass_with_the_built_metadata() -> None:
    # The index says app needs nothing; the wheel built from its sdist says it needs "late".
    projects: Projects = {"app": {"1.0": []}, "late": {"1.0": []}, "tool": {"1.0": []}}
    steps = FakeSteps(
        FakeUpstream(projects),
        build_requires={"app": ["tool"]},
        drift={"app": ["late"]},
    )
    result = run(steps, ["app"])
    assert result.ok, result.failures
    assert steps.resolves.count("the requested packages") == 2
    assert result.drifted == []  # the second pass agreed with itself
    assert set(order_nodes(result)) == {"app==1.0", "late==1.0", "tool==1.0"}
    # Counted over the whole run: all three were built here, each once (the second pass
    # reused app and tool from the first).
    assert result.built == 3 and result.reused == 0
    assert result.built_nodes == {"app==1.0", "late==1.0", "tool==1.0"}
    assert set(steps.builds.values()) == {1}


def test_no_second_pass_without_drift() -> None:
    steps = FakeSteps(FakeUpstream({"app": {"1.0": []}}))
    result = run(steps, ["app"])
    assert result.ok and result.drifted == []
    assert steps.resolves.count("the requested packages") == 1


def test_nodes_started_by_a_node_that_then_hit_a_cycle_still_finish() -> None:
    # z needs b, b needs a-new and z (cycle: b fails after starting a-new). a-new, slow to
    # prepare, starts aa and then finds its own cycle through b. Nobody awaits aa any more, but
    # the pass must still let it finish rather than close its thread pool under it.
    projects: Projects = {n: {"1.0": []} for n in ["z", "b", "a-new", "aa"]}
    steps = FakeSteps(
        FakeUpstream(projects),
        build_requires={"z": ["b"], "b": ["a-new", "z"], "a-new": ["aa", "b"]},
        prepare_durations={"a-new": 0.05, "aa": 0.03},
    )
    result = run(steps, ["z"])
    assert set(result.failures) == {"b==1.0", "a-new==1.0"}
    assert all("cycle" in str(e) for e in result.failures.values())
    assert order_nodes(result) == ["aa==1.0"]


def test_build_window_measures_from_first_slot_to_last() -> None:
    ticks = iter([10.0, 14.0, 20.0])
    cpu = iter([1.0, 5.0, 13.0])
    window = BuildWindow(clock=lambda: next(ticks), cpu_clock=lambda: next(cpu))
    assert (window.seconds, window.cpu_seconds) == (0.0, 0.0)
    window.opened()
    window.opened()  # a second build starting does not move the start
    window.closed()
    window.closed()
    assert (window.seconds, window.cpu_seconds) == (10.0, 12.0)


def test_a_run_reports_its_build_window() -> None:
    projects: Projects = {"app": {"1.0": []}, "tool": {"1.0": []}}
    steps = FakeSteps(FakeUpstream(projects), build_requires={"app": ["tool"]})
    result = run(steps, ["app"])
    assert result.ok
    assert result.build_window_seconds > 0


def test_queue_window_counts_cpu_only_while_work_waits_for_a_slot() -> None:
    ticks = iter([0.0, 4.0, 10.0, 11.0])
    samples = iter([(100, 200), (180, 300), (200, 400), (290, 500)])
    window = QueueWindow(sample=lambda: next(samples), clock=lambda: next(ticks))
    window.changed(False)  # nothing was waiting: nothing to close
    window.changed(True)
    window.changed(False)
    window.changed(True)
    window.changed(False)
    assert window.seconds == 5.0
    assert (window.busy, window.total) == (80 + 90, 100 + 100)


def test_a_build_that_needs_nothing_more_keeps_the_slot_of_its_get_requires() -> None:
    """Once its backend asked for nothing more, a node builds in the slot it holds instead of
    queueing again behind every other node (on Dask the get-requires task has even built the
    wheel already, and the second turn only published it, late)."""
    projects: Projects = {name: {"1.0": []} for name in ("a", "b", "c")}
    steps = FakeSteps(FakeUpstream(projects), default_duration=0.01)
    result = run(steps, ["a", "b", "c"], jobs=1)
    assert result.ok
    seen = [
        (event, node) for event, node in steps.events if event in ("get-requires", "build-start")
    ]
    for i in range(0, len(seen), 2):
        (first, node), (then, same) = seen[i], seen[i + 1]
        assert (first, then, same) == ("get-requires", "build-start", node), seen


def test_a_build_that_needs_more_waits_for_it_and_queues_again() -> None:
    projects: Projects = {"tool": {"1.0": []}, "app": {"1.0": []}}
    steps = FakeSteps(FakeUpstream(projects), backend_requires={"app": ["tool"]})
    result = run(steps, ["app"], jobs=1)
    assert result.ok
    assert steps.index("build-end", "tool==1.0") < steps.index("build-start", "app==1.0")
    assert steps.index("get-requires", "app==1.0") < steps.index("build-start", "tool==1.0")


class _AwaitedSteps(FakeSteps):
    """``FakeSteps`` that offer ``AwaitedSteps``, as ``DaskSteps`` does: the remote task is
    awaited on the event loop, the rest goes through ``io``."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.awaited_in: list[str] = []  # the thread each awaited step started in
        self.io_in: list[str] = []  # the thread each call given to io ran in
        self.remote = 0  # remote tasks running now
        self.max_remote = 0
        self.remote_seconds = 0.001

    async def _remote_task(self) -> None:
        """The task on a worker: no thread of the bootstrap held meanwhile."""
        self.remote += 1
        self.max_remote = max(self.max_remote, self.remote)
        try:
            await asyncio.sleep(self.remote_seconds)
        finally:
            self.remote -= 1

    def _in_io(self, fn: Any, *args: Any) -> Any:
        self.io_in.append(threading.current_thread().name)
        return fn(*args)

    async def get_requires_async(self, prepared: Any, env: Any, io: Any) -> list[str]:
        self.awaited_in.append(threading.current_thread().name)
        await self._remote_task()
        requires: list[str] = await io(self._in_io, self.get_requires, prepared, env)
        return requires

    async def build_async(self, prepared: Any, env: Any, io: Any) -> Any:
        self.awaited_in.append(threading.current_thread().name)
        await self._remote_task()
        return await io(self._in_io, self.build, prepared, env)


def test_steps_that_await_remote_work_are_awaited_on_the_event_loop() -> None:
    """Steps that offer get-requires and build as coroutines (``AwaitedSteps``) are awaited in
    the event loop's thread, holding no pool thread while the remote work lasts; what they give
    ``io`` runs in the pool; the orchestration is the same (order, slots)."""
    projects: Projects = {"tool": {"1.0": []}, "app": {"1.0": []}, "lib": {"1.0": []}}
    steps = _AwaitedSteps(FakeUpstream(projects), backend_requires={"app": ["tool"]})
    result = run(steps, ["app", "lib"], jobs=1)
    assert result.ok and result.built == 3
    # get-requires of three nodes, builds of three: each awaited, each through io.
    assert len(steps.awaited_in) == 6 and len(steps.io_in) == 6
    (loop_thread,) = set(steps.awaited_in)  # the thread run() runs the event loop in
    assert not loop_thread.startswith("rewheel")
    assert all(name.startswith("rewheel") for name in steps.io_in)
    assert steps.index("build-end", "tool==1.0") < steps.index("build-start", "app==1.0")
    assert steps.max_concurrent_builds == 1


def test_remote_builds_in_flight_are_not_capped_by_the_pools_threads() -> None:
    """With builds awaited on the event loop, ``-j`` remote builds run at once whatever the
    size of the bootstrap's thread pool (a pool thread blocked per Dask task capped them at the
    pool's 32 threads, less what resolution and downloads took)."""
    projects: Projects = {f"p{i}": {"1.0": []} for i in range(8)}
    steps = _AwaitedSteps(FakeUpstream(projects))
    steps.remote_seconds = 0.2
    result = run(steps, list(projects), jobs=8, threads=2)
    assert result.ok and result.built == 8
    assert steps.max_remote == 8
