"""What a failed resolution tells the user, built from its data alone (no resolver, no index)."""

from __future__ import annotations

import copyreg

import pytest

from rewheel.core.errors import (
    CauseKind,
    Excluded,
    Exclusion,
    Link,
    NoSdistError,
    ResolutionCause,
    ResolutionError,
    RewheelError,
)
from rewheel.core.types import EdgeKind

TOP, INSTALL = EdgeKind.TOPLEVEL, EdgeKind.INSTALL
SYSTEM, BACKEND = EdgeKind.BUILD_SYSTEM, EdgeKind.BUILD_BACKEND

NOT_FOUND = ResolutionCause(
    CauseKind.NOT_FOUND,
    "python-sbom",
    chains=((Link("python-sbom[hatch]", SYSTEM),),),
    missing="HTTP 404 at https://pypi.org/simple/python-sbom/",
)


def test_a_build_requirement_not_on_the_index_in_full() -> None:
    error = ResolutionError(
        causes=[NOT_FOUND], package="platformdirs", version="4.3.8", build_env=True
    )
    # What the bootstrap adds: how the user's request led to platformdirs.
    error = error.under([Link("black==24.1.0", TOP), Link("platformdirs==4.3.8", INSTALL)])
    assert str(error) == (
        "platformdirs==4.3.8 [resolve]: no such project on the index: python-sbom "
        "(HTTP 404 at https://pypi.org/simple/python-sbom/), needed by its build environment\n"
        "  black==24.1.0 (requested) -> platformdirs==4.3.8 (install) -> "
        "python-sbom[hatch] (build-system)\n"
        "  fix: check the name 'python-sbom'; if the project is on another (private) index, pass "
        "that index with --index-url\n"
        "  or: if platformdirs builds without it, drop it in the build settings of platformdirs: "
        "in the folder given with --settings, file platformdirs.toml:\n"
        "      [build]\n"
        '      requires_remove = ["python-sbom"]\n'
        '      requires_add = ["..."]      # only to put another requirement in its place'
    )
    # The one-line forms: the message (what a summary shows) and the hint.
    assert "\n" not in error.message and "\n" not in (error.hint or "")
    assert 'requires_remove = ["python-sbom"]' in (error.hint or "")


def test_under_prefixes_a_copy() -> None:
    error = ResolutionError(causes=[NOT_FOUND], package="p", version="1", build_env=True)
    again = error.under([Link("app==1.0", TOP)])
    assert again.chains == [["app==1.0 (requested)", "python-sbom[hatch] (build-system)"]]
    assert error.chains == [["python-sbom[hatch] (build-system)"]]
    assert (again.message, again.hint, again.package) == (error.message, error.hint, "p")
    assert isinstance(again, ResolutionError)


def test_under_shares_nothing_where_exceptions_are_copied_by_reference(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Dask installs tblib, whose reducer gives a copy of an exception the original's __dict__.
    pickling = pytest.importorskip("tblib.pickling_support")
    monkeypatch.setitem(copyreg.dispatch_table, ResolutionError, pickling.pickle_exception)
    error = ResolutionError(causes=[NOT_FOUND], package="p", version="1", build_env=True)
    error.under([Link("app==1.0", TOP)])
    assert error.chains == [["python-sbom[hatch] (build-system)"]]


def test_a_requested_project_not_on_the_index_is_named_as_the_package() -> None:
    cause = ResolutionCause(
        CauseKind.NOT_FOUND,
        "nothere",
        chains=((Link("nothere", TOP),),),
        missing="HTTP 404 at https://pypi.org/simple/nothere/",
    )
    error = ResolutionError(causes=[cause])
    assert isinstance(error, RewheelError)
    assert (error.package, error.version, error.step) == ("nothere", None, "resolve")
    assert str(error).splitlines() == [
        "nothere [resolve]: no such project on the index: nothere "
        "(HTTP 404 at https://pypi.org/simple/nothere/)",
        "  nothere (requested)",
        "  fix: check the name 'nothere'; if the project is on another (private) index, pass "
        "that index with --index-url",
    ]


def test_no_version_matches_is_compact() -> None:
    versions = tuple(f"2.{i}.0" for i in range(300, 0, -1))
    cause = ResolutionCause(
        CauseKind.NO_MATCH,
        "requests",
        chains=((Link("requests==999", TOP),),),
        excluded=(
            Excluded(Exclusion.SPECIFIER, versions, "==999"),
            Excluded(Exclusion.NO_SDIST, ("1.0",)),
            Excluded(Exclusion.PYTHON, ("3.0", "3.1"), ">=3.12"),
            Excluded(Exclusion.PYTHON, ("3.2",), ">=3.13"),
        ),
        closest="2.300.0",
    )
    error = ResolutionError(causes=[cause], python="3.11.7")
    lines = str(error).splitlines()
    assert lines[0] == "requests [resolve]: no version of requests matches requests==999"
    assert lines[2] == (
        "  on the index: 304 versions, 300 outside ==999 (newest 2.300.0, 2.299.0, 2.298.0, …); "
        "1 with wheels only, no sdist (1.0); 2 need Python >=3.12 (3.0, 3.1); "
        "1 needs Python >=3.13 (3.2)"
    )
    assert len(str(error)) < 1000  # not 300 versions
    assert "newer Python than 3.11.7" in lines[3]
    assert (
        lines[-1]
        == "  or: ask for a version the index has; the newest it can build: requests==2.300.0"
    )


def test_a_pre_release_and_a_constraint_each_name_their_fix() -> None:
    cause = ResolutionCause(
        CauseKind.NO_MATCH,
        "a",
        chains=((Link("app==1.0", TOP), Link("a>=2", INSTALL)),),
        excluded=(
            Excluded(Exclusion.CONSTRAINT, ("3.0",), "<3"),
            Excluded(Exclusion.YANKED, ("2.1",)),
            Excluded(Exclusion.PRERELEASE, ("2.2b1", "2.0rc1")),
        ),
    )
    text = str(ResolutionError(causes=[cause]))
    assert "4 versions, 1 outside the constraint <3 (3.0); 1 yanked (2.1); 2 pre-releases" in text
    assert "  fix: a yanked version is taken only when pinned exactly (==version)" in text
    assert "  or: the constraint <3 leaves them out" in text
    assert "  or: pass --pre to allow pre-releases" in text
    assert "  or: pick a version of app that does not ask for it, with a constraint (-c)" in text


def test_a_conflict_lists_each_side_with_its_chain() -> None:
    cause = ResolutionCause(
        CauseKind.CONFLICT,
        "c",
        chains=(
            (Link("a==1.0", TOP), Link("c==1.0", INSTALL)),
            (Link("b==1.0", TOP), Link("x==2", INSTALL), Link("c==2.0", INSTALL)),
        ),
    )
    lines = str(ResolutionError(causes=[cause])).splitlines()
    assert lines[:3] == [
        "c [resolve]: conflicting requirements for c",
        "  a==1.0 (requested) -> c==1.0 (install)",
        "  b==1.0 (requested) -> x==2 (install) -> c==2.0 (install)",
    ]
    assert lines[3].startswith("  fix: change one of these requirements")
    assert len(lines) == 4  # no settings to change: it is not a build environment


def test_a_conflict_in_a_build_environment_offers_the_settings() -> None:
    cause = ResolutionCause(
        CauseKind.CONFLICT,
        "pathspec",
        chains=(
            (Link("pathspec>=1", SYSTEM),),
            (Link("hatchling==1.26", SYSTEM), Link("pathspec<1", INSTALL)),
        ),
    )
    error = ResolutionError(causes=[cause], package="p5", version="1.0", build_env=True)
    assert error.message == "conflicting requirements for pathspec in its build environment"
    assert "or: replace the requirement of p5 itself in the build settings of p5" in str(error)
    assert 'requires_remove = ["pathspec"]' in str(error)


def test_several_causes_are_each_reported() -> None:
    other = ResolutionCause(
        CauseKind.NOT_FOUND, "d", chains=((Link("d", TOP),),), missing="HTTP 410 at u"
    )
    conflict = ResolutionCause(
        CauseKind.CONFLICT, "c", chains=((Link("c<2", TOP),), (Link("c>=2", TOP),))
    )
    error = ResolutionError(causes=[conflict, other])
    assert error.message == "conflicting requirements for c (and 1 more problem)"
    text = str(error)
    assert "\n  and: no such project on the index: d (HTTP 410 at u)\n  d (requested)\n" in text
    assert text.count("fix:") == 1 and "check the name 'd'" in text


def test_wheels_only_is_a_no_sdist_error() -> None:
    cause = ResolutionCause(
        CauseKind.NO_MATCH,
        "torch",
        chains=((Link("torch", TOP),),),
        excluded=(Excluded(Exclusion.NO_SDIST, ("2.1", "2.0")),),
    )
    error = NoSdistError(causes=[cause])
    assert isinstance(error, ResolutionError) and cause.wheels_only
    assert error.message == (
        "no source distribution of torch: the index has wheels only, and rewheel builds from source"
    )
    assert "2 with wheels only, no sdist (2.1, 2.0)" in str(error)


def test_an_error_without_causes_is_a_plain_message() -> None:
    error = ResolutionError("gave up after 10 rounds of backtracking", package="p", version="1")
    assert str(error) == "p==1 [resolve]: gave up after 10 rounds of backtracking"
    assert error.causes == () and error.chains == [] and error.hint is None
