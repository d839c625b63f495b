from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import subprocess
import sys
import threading
import zipfile
from html.parser import HTMLParser
from pathlib import Path

import pytest
from fakes import make_record

from rewheel.core.errors import IntegrityError, RepositoryError, RewheelError
from rewheel.core.fsutil import sha256_file
from rewheel.core.types import WheelRef
from rewheel.repo.repository import Repository
from rewheel.repo.wheelfile import write_wheel


def make_wheel(
    dest_dir: Path,
    name: str = "demo_pkg",
    version: str = "1.0",
    *,
    metadata_name: str | None = None,
    metadata_version: str | None = None,
    requires_python: str | None = None,
    extra_dist_info: bool = False,
    filename: str | None = None,
) -> Path:
    """A minimal pure-Python wheel, written by hand."""
    dist = f"{name}-{version}"
    metadata = f"Metadata-Version: 2.1\nName: {metadata_name or name}\n"
    metadata += f"Version: {metadata_version or version}\n"
    if requires_python:
        metadata += f"Requires-Python: {requires_python}\n"
    files = {
        f"{name}.py": f"VERSION = {version!r}\n".encode(),
        f"{dist}.dist-info/METADATA": metadata.encode(),
        f"{dist}.dist-info/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        ),
    }
    if extra_dist_info:
        files["other-1.0.dist-info/METADATA"] = b"Name: other\nVersion: 1.0\n"
    record = ""
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record += f"{path},sha256={digest},{len(data)}\n"
    record += f"{dist}.dist-info/RECORD,,\n"
    files[f"{dist}.dist-info/RECORD"] = record.encode()
    dest_dir.mkdir(parents=True, exist_ok=True)
    path = dest_dir / (filename or f"{dist}-py3-none-any.whl")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in files.items():
            zf.writestr(member, data)
    return path


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    r = Repository(tmp_path / "repo")
    r.ensure_layout()
    return r


def _listing(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_layout(repo: Repository) -> None:
    for d in (
        repo.wheels_dir,
        repo.sdists_dir,
        repo.logs_dir,
        repo.work_dir,
        repo.records_dir,
        repo.simple_dir,
    ):
        assert d.is_dir() and d.parent == repo.root


def test_publish_copies_wheel_and_metadata(repo: Repository, tmp_path: Path) -> None:
    built = make_wheel(tmp_path / "build", "Demo_Pkg", "1.0", requires_python=">=3.8")
    ref = repo.publish_wheel(built)
    filename = "Demo_Pkg-1.0-py3-none-any.whl"
    assert ref == WheelRef("demo-pkg", "1.0", filename, sha256_file(built))
    assert repo.wheel_path(ref) == repo.wheels_dir / filename
    assert repo.wheel_path(ref).read_bytes() == built.read_bytes()
    with zipfile.ZipFile(built) as zf:
        metadata = zf.read("Demo_Pkg-1.0.dist-info/METADATA")
    assert (repo.wheels_dir / f"{filename}.metadata").read_bytes() == metadata
    assert _listing(repo.wheels_dir) == [filename, f"{filename}.metadata"]
    assert built.exists()  # copied, not moved


def test_publish_failure_leaves_nothing_behind(
    repo: Repository, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    built = make_wheel(tmp_path / "build")

    def broken_fsync(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(RepositoryError, match="No space left"):
        repo.publish_wheel(built)
    assert _listing(repo.wheels_dir) == []


def test_republish_replaces_the_file(repo: Repository, tmp_path: Path) -> None:
    first = repo.publish_wheel(make_wheel(tmp_path / "a", requires_python=">=3.8"))
    second = repo.publish_wheel(make_wheel(tmp_path / "b", requires_python=">=3.9"))
    assert first.filename == second.filename and first.sha256 != second.sha256
    assert repo.wheels() == [second]
    assert b">=3.9" in (repo.wheels_dir / f"{second.filename}.metadata").read_bytes()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"filename": "not-a-wheel.whl"}, RepositoryError, "not a valid wheel file name"),
        ({"metadata_name": "other"}, IntegrityError, "METADATA Name"),
        ({"metadata_version": "2.0"}, IntegrityError, "METADATA Version"),
        ({"extra_dist_info": True}, IntegrityError, r"2 \.dist-info"),
    ],
)
def test_publish_rejects_bad_wheels(
    repo: Repository,
    tmp_path: Path,
    kwargs: dict[str, object],
    error: type[RewheelError],
    message: str,
) -> None:
    built = make_wheel(tmp_path / "build", **kwargs)  # type: ignore[arg-type]
    with pytest.raises(error, match=message) as info:
        repo.publish_wheel(built)
    assert info.value.step == "publish"
    assert _listing(repo.wheels_dir) == []


def test_publish_rejects_a_file_that_is_not_a_zip(repo: Repository, tmp_path: Path) -> None:
    bogus = tmp_path / "demo-1.0-py3-none-any.whl"
    bogus.write_bytes(b"not a zip")
    with pytest.raises(IntegrityError, match="does not start with a zip member") as info:
        repo.publish_wheel(bogus)
    assert (info.value.package, info.value.version) == ("demo", "1.0")
    assert _listing(repo.wheels_dir) == []
    # A zip file with something before it (zip readers skip it) is no wheel either.
    real = make_wheel(tmp_path / "real")
    padded = tmp_path / "padded" / real.name
    padded.parent.mkdir()
    with padded.open("wb") as f:
        f.seek(64 << 20)  # a sparse hole: nothing on the build's disk, 64 MiB in a copy
        f.write(real.read_bytes())
    with pytest.raises(IntegrityError, match="does not start with a zip member"):
        repo.publish_wheel(padded)
    assert _listing(repo.wheels_dir) == []


def test_a_metadata_bomb_is_not_read_whole(repo: Repository, tmp_path: Path) -> None:
    real = make_wheel(tmp_path / "real")
    bomb = tmp_path / "bomb" / real.name
    bomb.parent.mkdir()
    with zipfile.ZipFile(real) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as out:
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".dist-info/METADATA"):
                with out.open(info.filename, "w", force_zip64=True) as m:
                    m.write(data)
                    for _ in range(20):
                        m.write(b" " * (1 << 20))
            else:
                out.writestr(info, data)
    with pytest.raises(IntegrityError, match="METADATA file larger than 16 MiB"):
        repo.publish_wheel(bomb)
    assert _listing(repo.wheels_dir) == []


def test_publish_accepts_equivalent_metadata_name_and_version(
    repo: Repository, tmp_path: Path
) -> None:
    built = make_wheel(
        tmp_path, "demo_pkg", "1.0", metadata_name="Demo.Pkg", metadata_version="1.0.0"
    )
    assert repo.publish_wheel(built).name == "demo-pkg"


def test_publish_accepts_metadata_that_only_a_strict_parser_refuses(
    repo: Repository, tmp_path: Path
) -> None:
    # Metadata-Version 2.0 (old bdist_wheel), a wrapped Requires-Python, a field given twice.
    metadata = (
        b"Metadata-Version: 2.0\nName: Old_Thing\nVersion: 1.0\nVersion: 1.0\n"
        b"Requires-Python: >=2.7,\n !=3.0.*\nLicense-File: LICENSE\n"
    )
    built = write_wheel(
        tmp_path / "old_thing-1.0-py2.py3-none-any.whl",
        {"old_thing.py": b"", "old_thing-1.0.dist-info/METADATA": metadata},
    )
    ref = repo.publish_wheel(built)
    assert (ref.name, ref.version) == ("old-thing", "1.0")
    repo.regenerate_index()
    page = json.loads((repo.simple_dir / "old-thing" / "index.json").read_text())
    assert page["files"][0]["requires-python"] == ">=2.7,\n !=3.0.*"


def test_wheels_and_find_wheels(repo: Repository, tmp_path: Path) -> None:
    a10 = repo.publish_wheel(make_wheel(tmp_path / "1", "alpha", "1.0"))
    a9 = repo.publish_wheel(make_wheel(tmp_path / "2", "alpha", "0.9"))
    a1rc = repo.publish_wheel(make_wheel(tmp_path / "3", "alpha", "1.0rc1"))
    b = repo.publish_wheel(make_wheel(tmp_path / "4", "Beta_Pkg", "2.0"))
    # A killed run's temporary file and unrelated files are not wheels.
    (repo.wheels_dir / ".alpha-3.0-py3-none-any.whl.x1y2.tmp").write_bytes(b"partial")
    (repo.wheels_dir / "README").write_text("hi")
    assert repo.wheels() == [a9, a1rc, a10, b]
    assert repo.find_wheels("ALPHA", "1.0.0") == [a10]
    assert repo.find_wheels("beta.pkg", "2") == [b]
    assert repo.find_wheels("alpha", "3.0") == []
    assert repo.find_wheels("gamma", "1.0") == []


def test_a_planted_link_is_never_listed_as_a_wheel(repo: Repository, tmp_path: Path) -> None:
    ref = repo.publish_wheel(make_wheel(tmp_path / "1", "alpha", "1.0"))
    elsewhere = make_wheel(tmp_path / "2", "beta", "1.0")
    (repo.wheels_dir / elsewhere.name).symlink_to(elsewhere)
    assert repo.wheels() == [ref]
    repo.regenerate_index()
    assert not (repo.root / "simple" / "beta").exists()


def test_wheels_notices_a_replaced_file(repo: Repository, tmp_path: Path) -> None:
    ref = repo.publish_wheel(make_wheel(tmp_path / "a"))
    assert repo.wheels() == [ref]
    # Replaced behind the repository's back: the cached hash must not be reused.
    other = make_wheel(tmp_path / "b", requires_python=">=3")
    os.replace(other, repo.wheel_path(ref))
    assert [r.sha256 for r in repo.wheels()] == [sha256_file(repo.wheel_path(ref))]
    assert repo.wheels()[0].sha256 != ref.sha256


def test_ensure_layout_removes_stale_temp_files(repo: Repository) -> None:
    stale = [
        repo.wheels_dir / ".demo-1.0-py3-none-any.whl.abc.tmp",
        repo.simple_dir / "demo" / ".index.html.abc.tmp",
        repo.records_dir / ".demo-1.0.json.abc.tmp",
        repo.root / ".graph.json.abc.tmp",
    ]
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("partial")
    keep = repo.sdists_dir / ".download.tmp"  # not ours: sdists/ belongs to the downloader
    keep.write_text("x")
    repo.ensure_layout()
    assert not any(p.exists() for p in stale)
    assert keep.exists()


def test_ensure_layout_keeps_temp_files_of_a_live_run(repo: Repository) -> None:
    in_flight = repo.wheels_dir / ".demo-1.0-py3-none-any.whl.abc.tmp"
    in_flight.write_text("partial")
    with Repository(repo.root).locked():
        repo.ensure_layout()
        assert in_flight.exists()
    with repo.locked():
        repo.ensure_layout()  # the lock is ours: the file is stale
    assert not in_flight.exists()


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))


def _links(path: Path) -> list[dict[str, str | None]]:
    parser = _Links()
    parser.feed(path.read_text())
    return parser.links


def test_regenerate_index(repo: Repository, tmp_path: Path) -> None:
    ref = repo.publish_wheel(make_wheel(tmp_path / "1", "Demo_Pkg", "1.0", requires_python=">=3.8"))
    old = repo.publish_wheel(make_wheel(tmp_path / "2", "Demo_Pkg", "0.5"))
    other = repo.publish_wheel(make_wheel(tmp_path / "3", "other", "2.0"))
    repo.regenerate_index()

    root = json.loads((repo.simple_dir / "index.json").read_text())
    assert root["projects"] == [{"name": "demo-pkg"}, {"name": "other"}]
    assert [link["href"] for link in _links(repo.simple_dir / "index.html")] == [
        "demo-pkg/",
        "other/",
    ]

    page = json.loads((repo.simple_dir / "demo-pkg" / "index.json").read_text())
    assert page["name"] == "demo-pkg"
    assert page["versions"] == ["0.5", "1.0"]
    files = {f["filename"]: f for f in page["files"]}
    assert set(files) == {ref.filename, old.filename}
    entry = files[ref.filename]
    metadata = (repo.wheels_dir / f"{ref.filename}.metadata").read_bytes()
    assert entry["hashes"] == {"sha256": ref.sha256}
    assert entry["size"] == repo.wheel_path(ref).stat().st_size
    assert entry["requires-python"] == ">=3.8"
    assert entry["core-metadata"] == {"sha256": hashlib.sha256(metadata).hexdigest()}
    assert entry["url"] == f"../../wheels/{ref.filename}"
    # The relative URL resolves, from the page's directory, to the published wheel.
    assert (repo.simple_dir / "demo-pkg" / entry["url"]).resolve() == repo.wheel_path(ref).resolve()

    links = _links(repo.simple_dir / "demo-pkg" / "index.html")
    by_href = {str(link["href"]).split("#")[0]: link for link in links}
    link = by_href[f"../../wheels/{ref.filename}"]
    assert link["href"] == f"../../wheels/{ref.filename}#sha256={ref.sha256}"
    assert link["data-requires-python"] == ">=3.8"
    assert link["data-core-metadata"] == f"sha256={hashlib.sha256(metadata).hexdigest()}"

    # A project whose wheels are gone loses its page and its root entry.
    repo.wheel_path(other).unlink()
    repo.regenerate_index()
    assert not (repo.simple_dir / "other").exists()
    root = json.loads((repo.simple_dir / "index.json").read_text())
    assert root["projects"] == [{"name": "demo-pkg"}]
    assert not list(repo.simple_dir.rglob("*.tmp"))


def test_regenerate_index_writes_missing_metadata(repo: Repository, tmp_path: Path) -> None:
    built = make_wheel(tmp_path, "hand", "1.0")
    (repo.wheels_dir / built.name).write_bytes(built.read_bytes())  # dropped in by hand
    repo.regenerate_index()
    assert (repo.wheels_dir / f"{built.name}.metadata").exists()
    page = json.loads((repo.simple_dir / "hand" / "index.json").read_text())
    assert page["files"][0]["core-metadata"] != False  # noqa: E712


def test_regenerate_index_on_empty_repository(repo: Repository) -> None:
    repo.regenerate_index()
    assert json.loads((repo.simple_dir / "index.json").read_text())["projects"] == []


def test_concurrent_publish_and_regenerate(repo: Repository, tmp_path: Path) -> None:
    built = [make_wheel(tmp_path / str(i), f"pkg{i}", "1.0") for i in range(8)]
    errors: list[BaseException] = []

    def publish(path: Path) -> None:
        try:
            repo.publish_wheel(path)
            repo.regenerate_index()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(p,)) for p in built]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    root = json.loads((repo.simple_dir / "index.json").read_text())
    assert [p["name"] for p in root["projects"]] == [f"pkg{i}" for i in range(8)]
    assert not [p for p in repo.root.rglob("*.tmp")]


def test_lock_is_exclusive(repo: Repository) -> None:
    other = Repository(repo.root)
    with (
        repo.locked(),
        pytest.raises(RepositoryError, match="another rewheel run uses this repository"),
        other.locked(),
    ):
        pass  # pragma: no cover
    with Repository(repo.root).locked():  # released: free again
        pass


def test_lock_is_reentrant_for_its_holder(repo: Repository) -> None:
    with repo.locked():
        with repo.locked():
            repo.ensure_layout()
        # Still held after the inner block: another object cannot take it.
        with pytest.raises(RepositoryError), Repository(repo.root).locked():
            pass  # pragma: no cover
    with Repository(repo.root).locked():
        pass


def test_regenerate_index_reports_a_corrupt_wheel(repo: Repository) -> None:
    (repo.wheels_dir / "bad-1.0-py3-none-any.whl").write_bytes(b"not a zip")
    with pytest.raises(RepositoryError, match=r"cannot index bad-1\.0") as info:
        repo.regenerate_index()
    assert (info.value.package, info.value.step) == ("bad", "index")


def test_lock_held_by_another_process(repo: Repository) -> None:
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from rewheel.repo.repository import Repository\n"
        "with Repository(Path(sys.argv[1])).locked():\n"
        "    print('locked', flush=True)\n"
        "    sys.stdin.readline()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script, str(repo.root)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "locked\n"
        with pytest.raises(RepositoryError, match="another rewheel run") as info, repo.locked():
            pass  # pragma: no cover
        assert info.value.step == "lock"
    finally:
        proc.communicate("done\n", timeout=10)
    assert proc.returncode == 0
    with repo.locked():
        pass


def test_records(repo: Repository) -> None:
    demo = make_record("Demo_Pkg", "1.0", seconds=2.5)
    alpha = make_record("alpha", "2.0+local.1", backend_requires=("cython",))
    repo.save_record(demo)
    repo.save_record(alpha)
    assert _listing(repo.records_dir) == ["alpha-2.0+local.1.json", "demo-pkg-1.0.json"]
    assert repo.load_records() == [alpha, demo]
    assert repo.load_record("demo-pkg", "1.0") == demo
    repo.save_record(dataclasses.replace(alpha, backend_requires=()))
    assert repo.load_records()[0].backend_requires == ()


@pytest.mark.parametrize(
    ("name", "version"), [("demo", "../../escape"), ("../x", "1.0"), ("demo", "1.0/../2")]
)
def test_save_record_rejects(repo: Repository, name: str, version: str) -> None:
    with pytest.raises(RepositoryError):
        repo.save_record(make_record(name, version))
    assert _listing(repo.records_dir) == []


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"version": "1.0"},
        {"name": "demo", "version": 1, "wheel": "w", "wheel_sha256": "s"},
        {"name": "demo", "version": "1.0", "wheel": "w", "wheel_sha256": "s", "build_env": [1]},
    ],
)
def test_load_records_reports_a_record_of_the_wrong_shape(repo: Repository, data: object) -> None:
    repo.records_dir.mkdir(parents=True, exist_ok=True)
    (repo.records_dir / "demo-1.0.json").write_text(json.dumps(data))
    with pytest.raises(RepositoryError, match=r"demo-1\.0\.json is not a build record"):
        repo.load_records()
    assert repo.load_record("demo", "1.0") is None  # for the cache: no usable record


def test_load_records_reports_a_corrupt_record(repo: Repository) -> None:
    (repo.records_dir / "demo-1.0.json").write_text("{not json")
    with pytest.raises(RepositoryError, match=r"demo-1\.0\.json"):
        repo.load_records()


def test_write_json(repo: Repository) -> None:
    repo.write_json("build-order.json", [{"name": "a"}])
    repo.write_json("sub/graph.json", {"nodes": []})
    assert json.loads((repo.root / "build-order.json").read_text()) == [{"name": "a"}]
    assert json.loads((repo.root / "sub" / "graph.json").read_text()) == {"nodes": []}
    for bad in ("../outside.json", "/etc/x.json", "a/../../b.json", ""):
        with pytest.raises(RepositoryError):
            repo.write_json(bad, {})
    assert not (repo.root.parent / "outside.json").exists()


# -- the sdists the wheels were built from, on the index ----------------------------------------


def _built_from_sdist(
    repo: Repository, tmp_path: Path, content: bytes = b"sdist bytes", **record: object
) -> tuple[WheelRef, Path]:
    """A published wheel of demo-pkg 1.0, its sdist in sdists/, and a record naming both."""
    ref = repo.publish_wheel(make_wheel(tmp_path / "build", requires_python=">=3.8"))
    sdist = repo.sdists_dir / "demo_pkg-1.0.tar.gz"
    sdist.write_bytes(content)
    fields: dict[str, object] = {
        "wheel": ref.filename,
        "wheel_sha256": ref.sha256,
        "sdist_sha256": hashlib.sha256(content).hexdigest(),
        "sdist_url": "https://files.example/packages/demo_pkg-1.0.tar.gz",
    }
    fields.update(record)
    repo.save_record(make_record("demo-pkg", "1.0", **fields))
    return ref, sdist


def _project_files(repo: Repository) -> dict[str, dict[str, object]]:
    page = json.loads((repo.simple_dir / "demo-pkg" / "index.json").read_text())
    return {f["filename"]: f for f in page["files"]}


def test_the_sdist_a_wheel_was_built_from_is_listed_with_its_hash(
    repo: Repository, tmp_path: Path
) -> None:
    ref, sdist = _built_from_sdist(repo, tmp_path)
    repo.regenerate_index()
    files = _project_files(repo)
    assert set(files) == {ref.filename, sdist.name}
    listed = files[sdist.name]
    assert listed["url"] == "../../sdists/demo_pkg-1.0.tar.gz"
    assert listed["hashes"] == {"sha256": sha256_file(sdist)}
    assert listed["size"] == sdist.stat().st_size
    assert listed["requires-python"] == ">=3.8"
    assert listed["core-metadata"] is False  # no PEP 658 metadata for an sdist
    html = (repo.simple_dir / "demo-pkg" / "index.html").read_text()
    assert f'href="../../sdists/demo_pkg-1.0.tar.gz#sha256={sha256_file(sdist)}"' in html
    assert json.loads((repo.simple_dir / "demo-pkg" / "index.json").read_text())["versions"] == [
        "1.0"
    ]


@pytest.mark.parametrize(
    "case", ["no record", "hash differs", "other wheel", "prebuilt", "link", "hidden", "no wheel"]
)
def test_an_sdist_is_listed_only_as_the_record_of_a_listed_wheel_says(
    repo: Repository, tmp_path: Path, case: str
) -> None:
    ref, sdist = _built_from_sdist(
        repo,
        tmp_path,
        **(
            {"sdist_sha256": "0" * 64}
            if case == "hash differs"
            else {"wheel": "demo_pkg-1.0-1-py3-none-any.whl"}
            if case == "other wheel"
            else {"prebuilt": True}
            if case == "prebuilt"
            else {}
        ),
    )
    if case == "no record":  # downloaded to read its metadata, never built
        repo.record_path("demo-pkg", "1.0").unlink()
    elif case == "link":  # planted: it would list (and serve) another file under its hash
        target = tmp_path / "elsewhere.tar.gz"
        target.write_bytes(sdist.read_bytes())
        sdist.unlink()
        sdist.symlink_to(target)
    elif case == "hidden":  # a download in progress
        sdist.rename(sdist.with_name(".demo_pkg-1.0.tar.gz.abc.part"))
    elif case == "no wheel":
        repo.wheel_path(ref).unlink()
    repo.regenerate_index()
    if case == "no wheel":
        assert not (repo.simple_dir / "demo-pkg").exists()
    else:
        assert set(_project_files(repo)) == {ref.filename}


def test_a_changed_record_or_sdist_is_seen_at_the_next_regeneration(
    repo: Repository, tmp_path: Path
) -> None:
    ref, sdist = _built_from_sdist(repo, tmp_path)
    repo.regenerate_index()
    assert sdist.name in _project_files(repo)
    sdist.write_bytes(b"something else")  # no longer what was built
    repo.regenerate_index()
    assert set(_project_files(repo)) == {ref.filename}
    repo.save_record(
        make_record(
            "demo-pkg",
            "1.0",
            wheel=ref.filename,
            sdist_sha256=hashlib.sha256(b"something else").hexdigest(),
        )
    )
    repo.regenerate_index()
    assert sdist.name in _project_files(repo)


def test_a_record_saved_after_the_publish_puts_its_sdist_on_the_page_at_once(
    repo: Repository, tmp_path: Path
) -> None:
    # The order of a build: publish (pages regenerated), then the record is saved. The last
    # build of a run gets no later regeneration: its sdist must be listed all the same.
    ref = repo.publish_wheel(make_wheel(tmp_path / "build"))
    repo.regenerate_index()
    sdist = repo.sdists_dir / "demo_pkg-1.0.tar.gz"
    sdist.write_bytes(b"sdist bytes")
    assert set(_project_files(repo)) == {ref.filename}
    repo.save_record(
        make_record("demo-pkg", "1.0", wheel=ref.filename, sdist_sha256=sha256_file(sdist))
    )
    assert set(_project_files(repo)) == {ref.filename, sdist.name}
    html = (repo.simple_dir / "demo-pkg" / "index.html").read_text()
    assert "../../sdists/demo_pkg-1.0.tar.gz#sha256=" in html
    # The same as a full regeneration writes.
    before = (repo.simple_dir / "demo-pkg" / "index.json").read_bytes()
    repo.regenerate_index()
    assert (repo.simple_dir / "demo-pkg" / "index.json").read_bytes() == before
