"""``trust.custody.CustodyWalk`` over a fake ``WheelSource``: how the verdicts of build tools and
dependencies are followed and merged, whatever the source (the repository on disk and the index
over HTTP are two; tests/test_custody_verdicts.py pins both). A hostile source is one of the
cases: build environments that need themselves, or that nest without end."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from packaging.requirements import Requirement

from rewheel.trust.custody import BuildTool, CustodyWalk, Result, Verdict


@dataclass(frozen=True)
class Wheel:
    name: str
    version: str = "1.0"

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-py3-none-any.whl"


@dataclass
class Source:
    """Wheels by name: each one's own verdict (default ok), build tools (None: unknown, BROKEN)
    and run-time requirements."""

    own: dict[str, Result] = field(default_factory=dict)
    tools: dict[str, list[str]] = field(default_factory=dict)
    requires: dict[str, list[str]] = field(default_factory=dict)
    asked: list[str] = field(default_factory=list)  # check_wheel, in order

    tool_absent = "in the fake"
    dependency_absent = "in the fake"

    def key(self, wheel: Wheel) -> str:
        return wheel.filename

    def label(self, wheel: Wheel) -> str:
        return f"{wheel.name} {wheel.version}"

    def tool_label(self, tool: BuildTool[Wheel], wheel: Wheel) -> str:
        return self.label(wheel)

    def check_wheel(self, wheel: Wheel) -> Result:
        self.asked.append(wheel.name)
        return self.own.get(wheel.name, (Verdict.OK, []))

    def unknown_tools(self, wheel: Wheel, own: Verdict) -> Result | None:
        if wheel.name in self.tools:
            return None
        if own == Verdict.PREBUILT:
            return Verdict.PREBUILT, []
        return Verdict.BROKEN, [f"{self.label(wheel)}: unknown"]

    def build_tools(self, wheel: Wheel) -> Iterator[BuildTool[Wheel]]:
        for name in self.tools[wheel.name]:
            known = name in self.tools or name in self.own
            yield BuildTool(name, "1.0", "ab" * 32, Wheel(name) if known else None)

    def requirements(self, wheel: Wheel) -> list[Requirement]:
        return [Requirement(r) for r in self.requires.get(wheel.name, [])]

    def wheels_named(self, name: str) -> list[tuple[Wheel, str]]:
        known = name in self.tools or name in self.own
        return [(Wheel(name), "1.0")] if known else []

    def signer(self, wheel: Wheel) -> str | None:
        return None


def test_a_sound_tree_holds_and_each_wheel_is_checked_once() -> None:
    source = Source(
        tools={"tool": [], "lib": ["tool"], "app": ["tool"]},
        requires={"app": ["lib>=1"]},
    )
    walk = CustodyWalk(source)
    entry = walk.entry(Wheel("app"))
    assert (entry.source, entry.dependencies, entry.build_tools) == (Verdict.OK,) * 3
    assert entry.ok and entry.problems == []
    assert (entry.name, entry.version, entry.wheel) == ("app", "1.0", "app-1.0-py3-none-any.whl")
    walk.entry(Wheel("lib"))
    assert sorted(source.asked) == ["app", "lib", "tool"]


def test_a_broken_build_tool_breaks_what_it_built_and_what_needs_that() -> None:
    source = Source(
        own={"tool": (Verdict.BROKEN, ["tool 1.0: changed"])},
        tools={"tool": [], "lib": ["tool"], "app": []},
        requires={"app": ["lib"]},
    )
    entry = CustodyWalk(source).entry(Wheel("app"))
    assert (entry.source, entry.dependencies, entry.build_tools) == (
        Verdict.OK,
        Verdict.OK,
        Verdict.BROKEN,
    )
    assert entry.problems == ["lib 1.0: build tool tool 1.0 is not sound", "tool 1.0: changed"]


def test_missing_dependencies_and_build_tools_are_named_with_where_they_were_looked_for() -> None:
    source = Source(tools={"app": ["gone-tool"]}, requires={"app": ["gone-lib<2"]})
    entry = CustodyWalk(source).entry(Wheel("app"))
    assert entry.problems == [
        "app 1.0: dependency gone-lib<2 has no wheel in the fake",
        f"app 1.0: build tool gone-tool 1.0 (sha256 {'ab' * 6}...) is not in the fake",
    ]
    assert (entry.dependencies, entry.build_tools) == (Verdict.BROKEN, Verdict.BROKEN)


def test_a_pre_built_dependency_is_the_worst_verdict_short_of_broken() -> None:
    source = Source(
        own={"lib": (Verdict.PREBUILT, [])},
        tools={"app": []},
        requires={"app": ["lib"]},
    )
    entry = CustodyWalk(source).entry(Wheel("app"))
    assert (entry.dependencies, entry.build_tools) == (Verdict.PREBUILT, Verdict.PREBUILT)
    assert entry.ok and entry.problems == []


def test_a_build_environment_that_needs_itself_is_broken_not_a_loop() -> None:
    source = Source(tools={"a": ["b"], "b": ["a"]})
    entry = CustodyWalk(source).entry(Wheel("a"))
    assert entry.build_tools == Verdict.BROKEN
    assert "a 1.0: its build environment needs itself" in entry.problems


def test_dependencies_that_need_each_other_are_followed_once() -> None:
    source = Source(tools={"a": [], "b": []}, requires={"a": ["b"], "b": ["a"]})
    entry = CustodyWalk(source).entry(Wheel("a"))
    assert entry.ok and entry.dependencies == Verdict.OK


def test_build_environments_nested_deeper_than_the_limit_are_not_followed() -> None:
    depth = 50
    source = Source(tools={f"t{i}": [f"t{i + 1}"] for i in range(depth)} | {f"t{depth}": []})
    assert CustodyWalk(source).entry(Wheel("t0")).ok
    entry = CustodyWalk(source, max_tool_depth=10).entry(Wheel("t0"))
    assert entry.build_tools == Verdict.BROKEN
    assert "t10 1.0: build environments nested deeper than 10: not followed" in entry.problems
