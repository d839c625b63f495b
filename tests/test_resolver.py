"""The resolver against an in-memory index: sdists only, markers, extras, backtracking, errors."""

from __future__ import annotations

import pytest
from fakes import FakeUpstream, Projects, Release, StaticMetadata
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from rewheel.core.errors import NoSdistError, ResolutionError
from rewheel.core.resolver import Pin, Resolution, Resolver, TargetEnvironment
from rewheel.core.types import EdgeKind


def target(python: str) -> TargetEnvironment:
    markers: dict[str, str] = dict(default_environment())  # type: ignore[arg-type]
    markers["python_full_version"] = python
    markers["python_version"] = ".".join(python.split(".")[:2])
    return TargetEnvironment(markers)


def resolver(projects: Projects, **kwargs: object) -> Resolver:
    upstream = FakeUpstream(projects)
    kwargs.setdefault("target", target("3.11.4"))
    return Resolver(upstream, StaticMetadata(upstream), **kwargs)  # type: ignore[arg-type]


def resolve(projects: Projects, *reqs: str, **kwargs: object) -> Resolution:
    return resolver(projects, **kwargs).resolve([Requirement(r) for r in reqs])


def versions(res: Resolution) -> dict[str, str]:
    return {name: str(pin.version) for name, pin in res.pins.items()}


def test_picks_the_newest_version_that_has_an_sdist() -> None:
    projects: Projects = {
        "a": {
            "1.0": [],
            "1.5": [],
            "2.0": Release(sdist=False, wheels=("py3-none-any",)),  # wheels only: never a candidate
        }
    }
    res = resolve(projects, "a")
    assert versions(res) == {"a": "1.5"}
    assert res.pins[NormalizedName("a")].sdist.filename == "a-1.5.tar.gz"


def test_a_project_with_wheels_only_is_a_no_sdist_error_naming_it() -> None:
    projects: Projects = {
        "app": {"1.0": ["BinOnly>=1"]},
        "BinOnly": {"1.0": Release(sdist=False, wheels=("py3-none-any",))},
    }
    with pytest.raises(NoSdistError) as info:
        resolve(projects, "app")
    assert info.value.package == "binonly"
    assert "binonly" in str(info.value)


def test_requires_python_filters_versions_for_the_target() -> None:
    projects: Projects = {"a": {"1.0": Release(), "2.0": Release(requires_python=">=3.8")}}
    assert versions(resolve(projects, "a", target=target("3.7.9"))) == {"a": "1.0"}
    assert versions(resolve(projects, "a", target=target("3.12.1"))) == {"a": "2.0"}


def test_yanked_versions_are_skipped_unless_pinned_exactly() -> None:
    projects: Projects = {"a": {"1.0": Release(), "1.1": Release(yanked=True)}}
    assert versions(resolve(projects, "a")) == {"a": "1.0"}
    assert versions(resolve(projects, "a>=1.0")) == {"a": "1.0"}
    assert versions(resolve(projects, "a==1.1")) == {"a": "1.1"}
    assert versions(resolve(projects, "a===1.1")) == {"a": "1.1"}
    # PEP 592: a wildcard is not an exact pin.
    assert versions(resolve(projects, "a==1.*")) == {"a": "1.0"}


def test_prereleases_only_when_asked_or_named() -> None:
    projects: Projects = {"a": {"1.0": [], "2.0b1": []}, "b": {"1.0": ["a>=2.0b1"]}}
    assert versions(resolve(projects, "a")) == {"a": "1.0"}
    assert versions(resolve(projects, "a", allow_prereleases=True)) == {"a": "2.0b1"}
    assert versions(resolve(projects, "a>=2.0b1")) == {"a": "2.0b1"}
    # A dependency's specifier that names a pre-release admits it too.
    assert versions(resolve(projects, "b")) == {"a": "2.0b1", "b": "1.0"}


def test_markers_are_evaluated_against_the_target_environment() -> None:
    projects: Projects = {
        "app": {"1.0": ['backport; python_version < "3.8"', 'win; sys_platform == "win32x"']},
        "backport": {"1.0": []},
        "win": {"1.0": []},
    }
    assert versions(resolve(projects, "app", target=target("3.7.9"))) == {
        "app": "1.0",
        "backport": "1.0",
    }
    assert versions(resolve(projects, "app", target=target("3.11.4"))) == {"app": "1.0"}
    # Top-level requirements with a marker that does not apply are dropped as well.
    assert versions(resolve(projects, 'backport; python_version < "3.8"')) == {}


def test_an_extra_pulls_its_requirements_as_edges_of_the_base_package() -> None:
    projects: Projects = {
        "a": {"1.0": ["b", 'c; extra == "x"', 'd; extra == "y"']},
        "b": {"1.0": []},
        "c": {"1.0": []},
        "d": {"1.0": []},
    }
    res = resolve(projects, "a[x]")
    assert versions(res) == {"a": "1.0", "b": "1.0", "c": "1.0"}
    edges = {(str(e.parent) if e.parent else None, e.child, e.kind) for e in res.edges}
    assert edges == {
        (None, "a", EdgeKind.TOPLEVEL),
        ("a==1.0", "b", EdgeKind.INSTALL),
        ("a==1.0", "c", EdgeKind.INSTALL),
    }
    # Without the extra, c is not needed.
    assert versions(resolve(projects, "a")) == {"a": "1.0", "b": "1.0"}


def test_constraints_restrict_but_do_not_add() -> None:
    projects: Projects = {"a": {"1.0": ["b"]}, "b": {"1.0": [], "2.0": []}, "c": {"1.0": []}}
    constraints = [Requirement("b<2"), Requirement("c==1.0"), Requirement('a<1; os_name == "x"')]
    res = resolve(projects, "a", constraints=constraints)
    assert versions(res) == {"a": "1.0", "b": "1.0"}


def test_a_constraint_that_excludes_everything_is_a_conflict() -> None:
    projects: Projects = {"a": {"1.0": []}}
    with pytest.raises(ResolutionError):
        resolve(projects, "a", constraints=[Requirement("a>=2")])


def test_names_are_normalized_as_pep_503_says() -> None:
    projects: Projects = {
        "Foo_Bar": {"1.0": [], "2.0": [], "3.0": []},
        "app": {"1.0": ["FOO.bar>=2"]},
    }
    res = resolve(projects, "foo-bar<3", "Foo_Bar", "app")
    assert versions(res) == {"foo-bar": "2.0", "app": "1.0"}
    assert res.pins[NormalizedName("foo-bar")].sdist.filename == "Foo_Bar-2.0.tar.gz"


def test_backtracks_when_the_newest_choice_conflicts() -> None:
    # Greedy newest picks a 2.0, whose c==1.0 clashes with b's c>=2; a 1.0 works.
    projects: Projects = {
        "a": {"1.0": ["c"], "2.0": ["c==1.0"]},
        "b": {"1.0": ["c>=2"]},
        "c": {"1.0": [], "2.0": []},
    }
    res = resolve(projects, "a", "b")
    assert versions(res) == {"a": "1.0", "b": "1.0", "c": "2.0"}


def test_a_real_conflict_reports_the_chains_from_the_top() -> None:
    projects: Projects = {
        "a": {"1.0": ["c<2"]},
        "b": {"1.0": ["c>=2"]},
        "c": {"1.0": [], "2.0": []},
    }
    with pytest.raises(ResolutionError) as info:
        resolve(projects, "a", "b")
    chains = info.value.chains
    assert ["(requested)", "b==1.0", "c>=2"] in chains
    assert ["(requested)", "a==1.0", "c<2"] in chains
    assert "b==1.0 -> c>=2" in str(info.value)


def test_conflict_chain_goes_through_intermediate_packages() -> None:
    projects: Projects = {
        "x": {"1.0": ["b"]},
        "b": {"1.0": ["c>=2"]},
        "c": {"1.0": [], "2.0": []},
    }
    with pytest.raises(ResolutionError) as info:
        resolve(projects, "x", "c<2")
    chains = info.value.chains
    assert ["(requested)", "x==1.0", "b==1.0", "c>=2"] in chains
    assert ["(requested)", "c<2"] in chains


def test_conflict_chain_is_the_shortest_path_to_a_requested_package() -> None:
    # b is asked for directly and by a (which is pinned first): the chain must not go the long
    # way round through a.
    projects: Projects = {
        "a": {"1.0": ["b"]},
        "b": {"1.0": ["c>=2"]},
        "c": {"1.0": [], "2.0": []},
    }
    with pytest.raises(ResolutionError) as info:
        resolve(projects, "a", "b", "c<2")
    assert ["(requested)", "b==1.0", "c>=2"] in info.value.chains
    assert ["(requested)", "c<2"] in info.value.chains


def test_an_unknown_project_is_a_resolution_error() -> None:
    with pytest.raises(ResolutionError) as info:
        resolve({"a": {"1.0": ["nothere"]}}, "a")
    assert not isinstance(info.value, NoSdistError)
    assert ["(requested)", "a==1.0", "nothere"] in info.value.chains


def test_preferred_versions_are_chosen_when_they_fit() -> None:
    projects: Projects = {"a": {"1.0": [], "2.0": [], "3.0": []}}
    r = resolver(projects)
    prefer = {NormalizedName("a"): Version("2.0")}
    assert versions(r.resolve([Requirement("a")], preferred=prefer)) == {"a": "2.0"}
    # A preferred version that does not fit is passed over for the newest that does.
    assert versions(r.resolve([Requirement("a<2")], preferred=prefer)) == {"a": "1.0"}
    assert versions(r.resolve([Requirement("a")])) == {"a": "3.0"}


def test_edges_carry_the_kinds_of_a_build_environment() -> None:
    projects: Projects = {
        "setuptools": {"70.0": ["wheel-helper"]},
        "wheel-helper": {"1.0": []},
        "cython": {"3.0": []},
        "pkg": {"1.0": []},
    }
    r = resolver(projects)
    top = r.resolve([Requirement("pkg")])
    pkg = top.pins[canonicalize_name("pkg")]
    assert isinstance(pkg, Pin)
    env = r.resolve(
        [Requirement("setuptools>=60"), Requirement("cython")],
        kind=EdgeKind.BUILD_SYSTEM,
        parent=pkg,
        kinds={"cython": EdgeKind.BUILD_BACKEND},
        purpose="the build environment of pkg==1.0",
    )
    edges = {(str(e.parent), e.requirement, e.child, e.kind) for e in env.edges}
    assert edges == {
        ("pkg==1.0", "setuptools>=60", "setuptools", EdgeKind.BUILD_SYSTEM),
        ("pkg==1.0", "cython", "cython", EdgeKind.BUILD_BACKEND),
        ("setuptools==70.0", "wheel-helper", "wheel-helper", EdgeKind.INSTALL),
    }
    assert [e.kind for e in top.edges] == [EdgeKind.TOPLEVEL]
    assert top.edges[0].parent is None


def test_sorted_pins_and_each_page_fetched_through_the_upstream() -> None:
    upstream = FakeUpstream({"b": {"1.0": ["a"]}, "a": {"1.0": []}})
    res = Resolver(upstream, StaticMetadata(upstream), target=target("3.11.4")).resolve(
        [Requirement("b")]
    )
    assert [str(p) for p in res.sorted_pins()] == ["a==1.0", "b==1.0"]
    assert set(upstream.page_requests) == {"a", "b"}
    assert upstream.downloads == []  # resolving downloads nothing by itself
