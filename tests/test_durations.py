"""core.durations: the scheduler's estimate of a build's seconds, from the sdist (counted while
it is extracted) and from earlier builds of the same project; and where they are gathered."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name
from packaging.version import Version

from rewheel.build.extract import extract_sdist
from rewheel.build.prepare import SourcePreparer
from rewheel.build.settings import Settings
from rewheel.build.workspace import Workspace
from rewheel.core.durations import (
    MAX_ESTIMATE,
    PastBuild,
    SdistFeatures,
    SourceCensus,
    estimate_build_seconds,
    seconds_from_history,
)
from rewheel.core.records import BuildRecord
from rewheel.core.resolver import Pin
from rewheel.core.types import IndexFile
from rewheel.repo.repository import Repository

# -- the estimate ----------------------------------------------------------------------------


def _census(files: dict[str, int]) -> SdistFeatures:
    census = SourceCensus()
    for path, size in files.items():
        census.file(tuple(path.split("/")), size)
    return census.features()


def test_a_pure_python_sdist_is_estimated_at_the_base() -> None:
    features = _census({"demo-1.0/demo/__init__.py": 1000, "demo-1.0/pyproject.toml": 200})
    assert features.compiled_files == {} and features.files == 2
    assert estimate_build_seconds(features) == pytest.approx(0.4, abs=0.01)


def test_compiled_sources_weigh_by_kind_files_and_size() -> None:
    one_c = _census({"x-1/x/_speedups.c": 100_000})
    one_pyx = _census({"x-1/x/_fast.pyx": 100_000})
    big_c = _census({f"x-1/src/f{i}.c": 50_000 for i in range(170)})
    # 0.4 base + 0.25/MB + 0.5 x (1 file + 100 kB / 100 kB)
    assert estimate_build_seconds(one_c) == pytest.approx(0.4 + 0.025 + 1.0)
    assert estimate_build_seconds(one_pyx) == pytest.approx(0.4 + 0.025 + 9.0)
    assert estimate_build_seconds(big_c) > 100 * estimate_build_seconds(_census({}))


def test_sources_of_tests_docs_and_examples_are_not_counted() -> None:
    # meson's sdist: 900 C files of test cases, and a build of a second.
    features = _census(
        {
            **{f"meson-1/test cases/common/{i}/main.c": 200 for i in range(900)},
            "meson-1/docs/x.c": 10,
            "meson-1/Tests/y.cpp": 10,
            "meson-1/mesonbuild/__init__.py": 10,
        }
    )
    assert features.compiled_files == {}
    assert estimate_build_seconds(features) < 1.0


def test_a_native_build_system_counts_only_at_the_root() -> None:
    at_root = _census({"np-1/meson.build": 10})
    vendored = _census({"aio-1/vendor/llhttp/CMakeLists.txt": 10})
    assert at_root.native_build == {"meson.build"}
    assert vendored.native_build == frozenset()
    assert estimate_build_seconds(at_root) == pytest.approx(0.4 + 1.5, abs=0.01)


def test_an_estimate_is_bounded_whatever_the_sdist_claims() -> None:
    """A hostile sdist may make its own estimate large (it only gets a slot earlier), never
    infinite, NaN or negative."""
    huge = SdistFeatures(
        total_bytes=1 << 60,
        compiled_bytes={"cuda": 1 << 60},
        compiled_files={"cuda": 1 << 40, "c": -5},
    )
    assert estimate_build_seconds(huge) == MAX_ESTIMATE
    negative = SdistFeatures(total_bytes=-(1 << 40), compiled_files={"c": -(1 << 30)})
    assert estimate_build_seconds(negative) == pytest.approx(0.4)
    overflow = SdistFeatures(compiled_files={"c": 10**400})  # past what a float holds
    assert estimate_build_seconds(overflow) == MAX_ESTIMATE


def test_the_estimate_ranks_the_real_builds_it_was_calibrated_on() -> None:
    """The features of the langchain example's slowest and fastest builds (counted from their
    sdists as the census counts them; seconds measured on a 2-core machine): the slow ones are
    estimated slower than every pure-Python one."""
    numpy = SdistFeatures(
        total_bytes=52_720_000,
        compiled_bytes={"c": 8_113_931, "cpp": 368_311, "cython": 503_728},
        compiled_files={"c": 174, "cpp": 17, "cython": 10},
        native_build=frozenset({"meson.build"}),
    )  # 200 s
    aiohttp = SdistFeatures(
        total_bytes=17_460_000,
        compiled_bytes={"c": 4_114_119, "cython": 43_672},
        compiled_files={"c": 8, "cython": 3},
    )  # 26 s
    yarl = SdistFeatures(
        total_bytes=900_000, compiled_bytes={"cython": 24_386}, compiled_files={"cython": 1}
    )  # 6.3 s
    langchain_community = SdistFeatures(total_bytes=7_030_000)  # 1.2 s
    order = [numpy, aiohttp, yarl, langchain_community]
    seconds = [estimate_build_seconds(f) for f in order]
    assert seconds == sorted(seconds, reverse=True)
    assert 100 < seconds[0] < 400 and seconds[-1] < 3


# -- history ---------------------------------------------------------------------------------


def test_history_takes_the_same_version_else_the_nearest_older_else_the_nearest_newer() -> None:
    past = [PastBuild("1.0", 10.0), PastBuild("2.0", 20.0), PastBuild("3.0", 30.0)]
    assert seconds_from_history("2.0", past) == 20.0
    assert seconds_from_history("2.5", past) == 20.0
    assert seconds_from_history("9", past) == 30.0
    assert seconds_from_history("0.5", past) == 10.0
    assert seconds_from_history("1.0", []) is None


def test_history_skips_what_cannot_be_a_duration_or_a_version() -> None:
    past = [
        PastBuild("not a version", 99.0),
        PastBuild("1.0", float("nan")),
        PastBuild("1.1", float("inf")),
        PastBuild("1.2", -3.0),
        PastBuild("1.3", 0.0),
        PastBuild("0.9", 7.0),
    ]
    assert seconds_from_history("2.0", past) == 7.0
    assert seconds_from_history("2.0", past[:5]) is None
    assert seconds_from_history("what", [PastBuild("1", 1.0), PastBuild("2", 2.0)]) == 2.0
    assert seconds_from_history("1", [PastBuild("0.1", 1e12)]) == MAX_ESTIMATE


# -- where the features and the history are gathered ------------------------------------------


def _tar(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def test_extraction_counts_what_it_writes(tmp_path: Path) -> None:
    sdist = _tar(
        tmp_path / "cext-1.0.tar.gz",
        {
            "cext-1.0/pyproject.toml": b"[build-system]\nrequires = []\n",
            "cext-1.0/meson.build": b"project('x')\n",
            "cext-1.0/src/a.c": b"int a;\n" * 1000,
            "cext-1.0/src/b.cpp": b"int b;\n" * 10,
            "cext-1.0/tests/t.c": b"int t;\n",
        },
    )
    census = SourceCensus()
    extract_sdist(sdist, tmp_path / "out", census=census)
    features = census.features()
    assert features.files == 5
    assert features.compiled_files == {"c": 1, "cpp": 1}
    assert features.compiled_bytes == {"c": 7000, "cpp": 70}
    assert features.native_build == {"meson.build"}
    assert features.total_bytes == sum(
        p.stat().st_size for p in (tmp_path / "out").rglob("*") if p.is_file()
    )


class _CopySdist:
    def __init__(self, sdist: Path) -> None:
        self.sdist = sdist

    def download(self, file: IndexFile, dest_dir: Path) -> Path:
        dest_dir.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(self.sdist, dest_dir / file.filename))


def test_a_prepared_sdist_carries_its_features(tmp_path: Path) -> None:
    sdist = _tar(
        tmp_path / "cext-1.0.tar.gz",
        {
            "cext-1.0/pyproject.toml": b'[build-system]\nrequires = ["setuptools"]\n',
            "cext-1.0/cext/_x.pyx": b"def f(): pass\n",
        },
    )
    preparer = SourcePreparer(
        upstream=_CopySdist(sdist),
        sdists_dir=tmp_path / "sdists",
        workspace=Workspace(work_root=tmp_path / "work", logs_dir=tmp_path / "logs"),
        runner=lambda *a, **k: None,  # type: ignore[arg-type,return-value]
        settings=Settings(),
        crates_io=lambda: False,
    )
    pin = Pin(canonicalize_name("cext"), Version("1.0"), IndexFile(sdist.name, "https://x/s", None))
    prepared = preparer.prepare(pin)
    assert prepared.features is not None
    assert prepared.features.compiled_files == {"cython": 1}
    assert estimate_build_seconds(prepared.features) > 4.5


def _record(name: str, version: str, seconds: float, *, prebuilt: bool = False) -> BuildRecord:
    return BuildRecord(
        name=canonicalize_name(name),
        version=version,
        sdist_url=None,
        sdist_sha256=None,
        wheel=f"{name}-{version}-py3-none-any.whl",
        wheel_sha256="0" * 64,
        seconds=seconds,
        prebuilt=prebuilt,
    )


def test_the_repository_lists_a_projects_past_builds_and_no_other(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.records_dir.mkdir(parents=True)
    for record in [
        _record("foo", "1.0", 12.0),
        _record("foo", "2.0", 14.0),
        _record("foo-bar", "1.0", 99.0),  # a name that starts like it
        _record("foo", "0.5", 0.3, prebuilt=True),  # a download, not a build
    ]:
        repo.save_record(record)
    (repo.records_dir / "foo-3.0.json").write_text("{not json")
    (repo.records_dir / "foo-4.0.json").write_text(json.dumps({"name": "other"}))
    past = sorted(repo.past_builds("Foo"), key=lambda b: b.version)
    assert past == [PastBuild("1.0", 12.0), PastBuild("2.0", 14.0)]
    assert repo.past_builds("nothing") == []
    assert Repository(tmp_path / "none").past_builds("foo") == []
