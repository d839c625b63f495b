"""Where Requires-Dist comes from: built wheel > upstream wheel metadata > sdist PKG-INFO."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeUpstream, Release, core_metadata, write_sdist
from packaging.tags import Tag
from packaging.utils import NormalizedName
from packaging.version import Version

from rewheel.build.metadata import MetadataSource, read_pkg_info, static_sdist_metadata
from rewheel.core.types import IndexFile

A = NormalizedName("a")
V1 = Version("1.0")
ANY = Tag("py3", "none", "any")
WIN = Tag("cp39", "cp39", "win_amd64")


def pkg_info(requires: list[str], version: str = "2.2", dynamic: tuple[str, ...] = ()) -> str:
    return core_metadata("a", "1.0", requires, metadata_version=version, dynamic=dynamic)


def sdist_of(upstream: FakeUpstream) -> IndexFile:
    (f,) = [f for f in upstream.get_project(A).files if not f.filename.endswith(".whl")]
    return f


class Repo:
    """Stands in for the repository that ``built`` reads the built wheels' METADATA from."""

    def __init__(self) -> None:
        self.wheels: dict[tuple[str, Version], bytes] = {}

    def built(self, name: NormalizedName, version: Version) -> bytes | None:
        return self.wheels.get((name, version))


def source(
    upstream: FakeUpstream, tmp_path: Path, repo: Repo | None = None, tags: list[Tag] | None = None
) -> MetadataSource:
    repo = repo or Repo()
    return MetadataSource(upstream, tmp_path / "sdists", built=repo.built, tags=tags or [ANY])


def reqs(ms: MetadataSource, upstream: FakeUpstream) -> list[str]:
    return [str(r) for r in ms.requires_dist(A, V1, sdist_of(upstream))]


# -- PKG-INFO --------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_read_pkg_info_from_a_real_sdist(tmp_path: Path, fmt: str) -> None:
    text = pkg_info(["b>=1"])
    path = write_sdist(tmp_path, "a", "1.0", text, fmt)
    assert read_pkg_info(path) == text.encode()


def test_read_pkg_info_ignores_nested_files(tmp_path: Path) -> None:
    import io
    import tarfile

    path = tmp_path / "a-1.0.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        data = pkg_info(["b"]).encode()
        info = tarfile.TarInfo("a-1.0/vendored/PKG-INFO")
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    assert read_pkg_info(path) is None


@pytest.mark.parametrize(
    ("version", "dynamic", "trusted"),
    [
        ("2.2", (), True),
        ("2.4", ("Description", "License"), True),
        ("2.1", (), False),  # before PEP 643 nothing says the field is static
        ("2.2", ("Requires-Dist",), False),
        ("2.3", ("requires-dist",), False),
        ("not-a-version", (), False),
    ],
)
def test_static_sdist_metadata(version: str, dynamic: tuple[str, ...], trusted: bool) -> None:
    data = pkg_info(["b"], version, dynamic).encode()
    assert (static_sdist_metadata(data) == data) is trusted


# -- source order ----------------------------------------------------------------------------


def test_a_built_wheel_wins_over_every_prediction(tmp_path: Path) -> None:
    upstream = FakeUpstream({"a": {"1.0": Release(("b",), wheels=("py3-none-any",))}})
    repo = Repo()
    repo.wheels[(A, V1)] = core_metadata("a", "1.0", ["truth"]).encode()
    ms = source(upstream, tmp_path, repo)
    assert reqs(ms, upstream) == ["truth"]
    assert ms.source(A, V1) == "built"
    assert upstream.metadata_requests == [] and upstream.downloads == []


def test_upstream_wheel_metadata_before_the_sdist(tmp_path: Path) -> None:
    upstream = FakeUpstream({"a": {"1.0": Release(("b>=2",), wheels=("py3-none-any",))}})
    ms = source(upstream, tmp_path)
    assert reqs(ms, upstream) == ["b>=2"]
    assert ms.source(A, V1) == "upstream-wheel-metadata"
    assert upstream.metadata_requests == ["a-1.0-py3-none-any.whl"]
    assert upstream.downloads == []


@pytest.mark.parametrize(
    ("tags", "expected"),
    [([ANY, WIN], "a-1.0-py3-none-any.whl"), ([WIN, ANY], "a-1.0-cp39-cp39-win_amd64.whl")],
)
def test_the_wheel_best_for_this_interpreter_is_asked(
    tmp_path: Path, tags: list[Tag], expected: str
) -> None:
    upstream = FakeUpstream(
        {"a": {"1.0": Release(("b",), wheels=("cp39-cp39-win_amd64", "py3-none-any"))}}
    )
    ms = source(upstream, tmp_path, tags=tags)
    reqs(ms, upstream)
    assert upstream.metadata_requests == [expected]


def test_yanked_wheels_and_other_versions_are_not_asked(tmp_path: Path) -> None:
    upstream = FakeUpstream(
        {
            "a": {
                "1.0": Release(("b",), wheels=("py3-none-any",), yanked=True),
                "2.0": Release(("c",), wheels=("py3-none-any",)),
            }
        }
    )
    ms = source(upstream, tmp_path)
    sdist = next(f for f in upstream.get_project(A).files if f.filename == "a-1.0.tar.gz")
    assert [str(r) for r in ms.requires_dist(A, V1, sdist)] == ["b"]
    assert ms.source(A, V1) == "sdist-pkg-info"
    assert upstream.metadata_requests == []


def test_a_wheel_without_served_metadata_falls_back_to_static_pkg_info(tmp_path: Path) -> None:
    rel = Release(("b",), wheels=("py3-none-any",), wheel_metadata=False, pkg_info=pkg_info(["c"]))
    upstream = FakeUpstream({"a": {"1.0": rel}})
    ms = source(upstream, tmp_path)
    assert reqs(ms, upstream) == ["c"]
    assert ms.source(A, V1) == "sdist-pkg-info"
    assert upstream.downloads == ["a-1.0.tar.gz"]
    assert (tmp_path / "sdists" / "a-1.0.tar.gz").is_file()


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_static_pkg_info_of_the_sdist(tmp_path: Path, fmt: str) -> None:
    rel = Release(pkg_info=pkg_info(['b; python_version < "3.8"', "c>1"]), sdist_format=fmt)
    upstream = FakeUpstream({"a": {"1.0": rel}})
    ms = source(upstream, tmp_path)
    assert reqs(ms, upstream) == ['b; python_version < "3.8"', "c>1"]
    assert ms.source(A, V1) == "sdist-pkg-info"


@pytest.mark.parametrize(
    "text", [pkg_info(["b"], "2.1"), pkg_info(["b"], "2.2", ("Requires-Dist",))]
)
def test_untrusted_pkg_info_is_only_a_guess(tmp_path: Path, text: str) -> None:
    upstream = FakeUpstream({"a": {"1.0": Release(pkg_info=text)}})
    ms = source(upstream, tmp_path)
    assert reqs(ms, upstream) == ["b"]
    assert ms.source(A, V1) == "sdist-pkg-info-guess"


@pytest.mark.parametrize("fmt", ["tar.gz", "zip"])
def test_an_sdist_without_pkg_info_is_guessed_to_need_nothing(tmp_path: Path, fmt: str) -> None:
    upstream = FakeUpstream({"a": {"1.0": Release(("b",), has_pkg_info=False, sdist_format=fmt)}})
    ms = source(upstream, tmp_path)
    assert reqs(ms, upstream) == []
    assert ms.source(A, V1) == "guess"
    assert read_pkg_info(tmp_path / "sdists" / f"a-1.0.{fmt}") is None


def test_a_prediction_is_made_once(tmp_path: Path) -> None:
    upstream = FakeUpstream({"a": {"1.0": Release(pkg_info=pkg_info(["b"]))}})
    ms = source(upstream, tmp_path)
    assert ms.source(A, V1) is None
    for _ in range(3):
        assert reqs(ms, upstream) == ["b"]
    assert upstream.downloads == ["a-1.0.tar.gz"]


# -- drift -----------------------------------------------------------------------------------

PREDICTED = Release(("b>=1", "c"), wheels=("py3-none-any",))


@pytest.mark.parametrize(
    ("built", "drifted"),
    [
        (["c", "b >= 1"], False),  # same set, other order and spelling
        (["b>=1"], True),
        (["b>=1", "c", "d"], True),
        (["b>=2", "c"], True),
    ],
)
def test_drift_when_the_built_wheel_disagrees_with_the_prediction(
    tmp_path: Path, built: list[str], drifted: bool
) -> None:
    upstream = FakeUpstream({"a": {"1.0": PREDICTED}})
    ms = source(upstream, tmp_path)
    reqs(ms, upstream)
    assert ms.drift(A, V1, core_metadata("a", "1.0", built).encode()) is drifted


def test_no_drift_without_a_prediction(tmp_path: Path) -> None:
    upstream = FakeUpstream({"a": {"1.0": PREDICTED}})
    repo = Repo()
    ms = source(upstream, tmp_path, repo)
    other = core_metadata("a", "1.0", ["x"]).encode()
    assert not ms.drift(A, V1, other)  # never asked
    repo.wheels[(A, V1)] = other
    assert reqs(ms, upstream) == ["x"]  # read from the built wheel: the truth already
    assert not ms.drift(A, V1, other)


def test_drift_survives_a_lookup_after_the_wheel_is_published(tmp_path: Path) -> None:
    # During a bootstrap, another resolution may read the freshly published wheel between the
    # build and the drift check: the prediction the first resolution used must not be forgotten.
    upstream = FakeUpstream({"a": {"1.0": Release(("b",), wheels=("py3-none-any",))}})
    repo = Repo()
    ms = source(upstream, tmp_path, repo)
    assert reqs(ms, upstream) == ["b"]
    built = core_metadata("a", "1.0", ["b", "c"]).encode()
    repo.wheels[(A, V1)] = built
    assert reqs(ms, upstream) == ["b", "c"]
    assert ms.source(A, V1) == "built"
    assert ms.drift(A, V1, built)
    # Reported once: the next pass resolves from the built wheel and has nothing to reconcile.
    assert not ms.drift(A, V1, built)
