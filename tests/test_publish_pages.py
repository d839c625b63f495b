"""A publication rewrites only its project's pages (and the root's when the project is new), and
every page is byte for byte what a full ``regenerate_index`` of the same wheels writes."""

from __future__ import annotations

import json
import os
import random
import shutil
import threading
from pathlib import Path

import pytest
from conftest import Upstream, run_bootstrap
from test_faults import _fill, small_fs  # noqa: F401  (a fixture)

from rewheel.build.publisher import Publisher
from rewheel.core.errors import RepositoryError
from rewheel.repo.repository import Repository
from rewheel.repo.wheelfile import write_wheel


def _wheel(
    folder: Path,
    spelling: str,
    version: str,
    *,
    requires_python: str | None = None,
    payload: str = "",
) -> Path:
    """A tiny wheel of the project ``spelling`` (as its file name spells it)."""
    dist_info = f"{spelling}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {spelling}\nVersion: {version}\n"
    if requires_python is not None:
        metadata += f"Requires-Python: {requires_python}\n"
    folder.mkdir(parents=True, exist_ok=True)
    return write_wheel(
        folder / f"{spelling}-{version}-py3-none-any.whl",
        {
            f"{spelling.lower()}.py": f"V = {version!r}  # {payload}\n".encode(),
            f"{dist_info}/METADATA": metadata.encode(),
            f"{dist_info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        },
    )


def _pages(simple: Path) -> dict[str, bytes]:
    """Every file under ``simple`` (temporary files would be an error too)."""
    return {
        str(p.relative_to(simple)): p.read_bytes() for p in sorted(simple.rglob("*")) if p.is_file()
    }


def _full_regeneration(repo: Repository, scratch: Path) -> dict[str, bytes]:
    """The pages a full regenerate_index writes for a fresh copy of ``repo``'s wheels."""
    if scratch.exists():
        shutil.rmtree(scratch)
    shutil.copytree(repo.wheels_dir, scratch / "wheels")
    fresh = Repository(scratch)
    fresh.ensure_layout()
    fresh.regenerate_index()
    return _pages(fresh.simple_dir)


@pytest.mark.parametrize("seed", range(8))
def test_pages_after_each_publication_are_a_full_regeneration(seed: int, tmp_path: Path) -> None:
    rng = random.Random(seed)
    # Projects spelled as their wheels' file names spell them: one project spelled two ways.
    spellings = {"alpha": ["alpha"], "b-pkg": ["b_pkg", "B_Pkg"], "gamma": ["gamma"]}
    spellings |= {f"p{i}": [f"p{i}"] for i in range(5)}
    plan: list[tuple[str, str, str | None, str]] = []
    for project, spelled in spellings.items():
        for version in rng.sample(["1.0", "1.1", "2.0rc1", "2.0", "0.9"], rng.randint(1, 3)):
            plan.append((rng.choice(spelled), version, rng.choice([None, ">=3.8", "<4"]), ""))
        _ = project
    # Published again: the same bytes, and new bytes under the same file name (a rebuild).
    plan += [rng.choice(plan) for _ in range(4)]
    plan += [(s, v, rp, "rebuilt") for s, v, rp, _p in rng.sample(plan, 3)]
    rng.shuffle(plan)

    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    publisher = Publisher(repo)
    with repo.locked():
        repo.regenerate_index()  # as a run starts
        for n, (spelling, version, requires_python, payload) in enumerate(plan):
            built = _wheel(
                tmp_path / "built" / str(n),
                spelling,
                version,
                requires_python=requires_python,
                payload=payload,
            )
            publisher.publish_prebuilt(built)
            assert _pages(repo.simple_dir) == _full_regeneration(repo, tmp_path / "full"), (n, plan)
    root = json.loads((repo.simple_dir / "index.json").read_text())
    assert [p["name"] for p in root["projects"]] == sorted(spellings)


def test_a_publication_reads_no_other_project(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    publisher = Publisher(repo)
    broken = publisher.publish_prebuilt(_wheel(tmp_path / "a", "other", "1.0"))
    publisher.publish_prebuilt(_wheel(tmp_path / "b", "mine", "1.0"))
    # Another project's wheel is damaged behind the repository's back, its core metadata gone:
    # a full regeneration reads it and stops, a publication of "mine" does not read it at all.
    repo.wheel_path(broken).write_bytes(b"not a zip any more")
    repo.wheel_path(broken).with_name(f"{broken.filename}.metadata").unlink()
    before = (repo.simple_dir / "other" / "index.json").read_bytes()
    publisher.publish_prebuilt(_wheel(tmp_path / "c", "mine", "2.0"))
    page = json.loads((repo.simple_dir / "mine" / "index.json").read_text())
    assert page["versions"] == ["1.0", "2.0"]
    assert (repo.simple_dir / "other" / "index.json").read_bytes() == before
    with pytest.raises(RepositoryError, match=r"cannot index other-1\.0") as info:
        repo.regenerate_index()
    assert info.value.hint is not None and str(repo.wheel_path(broken)) in info.value.hint


def test_a_wheel_put_in_by_hand_is_listed_by_the_next_full_regeneration(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    publisher = Publisher(repo)
    publisher.publish_prebuilt(_wheel(tmp_path / "a", "demo", "1.0"))
    # By hand, while the run goes on: a publication lists wheels/ no more, so it is not seen...
    shutil.copy(_wheel(tmp_path / "b", "demo", "0.5"), repo.wheels_dir)
    publisher.publish_prebuilt(_wheel(tmp_path / "c", "demo", "2.0"))
    page = json.loads((repo.simple_dir / "demo" / "index.json").read_text())
    assert page["versions"] == ["1.0", "2.0"]
    # ...until the next run starts (a new object) or regenerates everything.
    Publisher(Repository(repo.root)).publish_prebuilt(_wheel(tmp_path / "d", "demo", "3.0"))
    page = json.loads((repo.simple_dir / "demo" / "index.json").read_text())
    assert page["versions"] == ["0.5", "1.0", "2.0", "3.0"]
    assert _pages(repo.simple_dir) == _full_regeneration(repo, tmp_path / "full")


def test_the_first_publication_of_an_object_repairs_every_page(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    # A run killed after publishing wheels and before writing their pages; a page of a project
    # whose wheels are gone.
    for n, name in enumerate(["one", "two", "three"]):
        repo.publish_wheel(_wheel(tmp_path / str(n), name, "1.0"))
    (repo.simple_dir / "gone").mkdir()
    (repo.simple_dir / "gone" / "index.json").write_text("{}")
    next_run = Repository(repo.root)
    next_run.ensure_layout()
    Publisher(next_run).publish_prebuilt(_wheel(tmp_path / "4", "four", "1.0"))
    pages = _pages(repo.simple_dir)
    assert pages == _full_regeneration(repo, tmp_path / "full")
    assert "gone/index.json" not in pages
    assert set(pages) == {
        "index.html",
        "index.json",
        *(f"{p}/index.{ext}" for p in ("one", "two", "three", "four") for ext in ("html", "json")),
    }


def test_a_project_whose_wheels_are_gone_loses_its_pages(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    publisher = Publisher(repo)
    ref = publisher.publish_prebuilt(_wheel(tmp_path / "a", "short", "1.0"))
    publisher.publish_prebuilt(_wheel(tmp_path / "b", "stays", "1.0"))
    repo.wheel_path(ref).unlink()
    repo.regenerate_project("short")
    assert not (repo.simple_dir / "short").exists()
    assert _pages(repo.simple_dir) == _full_regeneration(repo, tmp_path / "full")


@pytest.mark.parametrize("name", ["../escape", "/etc", "a/b", "a\\b", "a\x00b", ""])
def test_regenerate_project_refuses_a_name_that_is_no_folder(tmp_path: Path, name: str) -> None:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    victim = tmp_path / "escape"
    victim.mkdir()
    with pytest.raises(RepositoryError, match="not a project name"):
        repo.regenerate_project(name)
    assert victim.is_dir()


def test_pages_that_could_not_be_written_are_all_rewritten_by_the_next_publication(
    small_fs: Path,  # noqa: F811
    tmp_path: Path,
) -> None:
    repo = Repository(small_fs / "repo")
    repo.ensure_layout()
    publisher = Publisher(repo)
    publisher.publish_prebuilt(_wheel(tmp_path / "a", "first", "1.0"))
    repo.publish_wheel(_wheel(tmp_path / "b", "second", "1.0"))
    filler = _fill(small_fs)
    with pytest.raises(RepositoryError, match="No space left") as info:
        repo.regenerate_project("second")
    assert info.value.step == "index"
    filler.unlink()
    # The second project's root entry was never written: the next publication, of another
    # project, writes every page again.
    publisher.publish_prebuilt(_wheel(tmp_path / "c", "first", "2.0"))
    root = json.loads((repo.simple_dir / "index.json").read_text())
    assert [p["name"] for p in root["projects"]] == ["first", "second"]
    assert _pages(repo.simple_dir) == _full_regeneration(repo, tmp_path / "full")


def test_concurrent_publications_give_the_pages_of_a_full_regeneration(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    publisher = Publisher(repo)
    # Four threads publish versions of the same few projects at once; a fifth regenerates all.
    built = [
        _wheel(tmp_path / f"{t}-{k}", f"proj{k % 3}", f"{t}.{k}", requires_python=">=3")
        for t in range(4)
        for k in range(6)
    ]
    errors: list[BaseException] = []
    start = threading.Barrier(5)

    def publish(wheels: list[Path]) -> None:
        try:
            start.wait()
            for wheel in wheels:
                publisher.publish_prebuilt(wheel)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    def regenerate() -> None:
        try:
            start.wait()
            for _ in range(3):
                repo.regenerate_index()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(built[t::4],)) for t in range(4)]
    threads.append(threading.Thread(target=regenerate))
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _pages(repo.simple_dir) == _full_regeneration(repo, tmp_path / "full")
    for k in range(3):
        page = json.loads((repo.simple_dir / f"proj{k}" / "index.json").read_text())
        assert len(page["files"]) == 8


def test_a_run_repairs_the_pages_a_killed_run_left(upstream: Upstream, tmp_path: Path) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("app", "1.0", build_requires=["tool-a"])
    repo = tmp_path / "repo"
    assert run_bootstrap(upstream, repo, ["app"]).built == 2
    pages = _pages(repo / "simple")
    # What a run killed while writing pages leaves: no last-run state, pages missing or stale.
    (repo / "last-run.json").unlink()
    shutil.rmtree(repo / "simple" / "app")
    (repo / "simple" / "index.json").write_text('{"meta": {"api-version": "1.1"}, "projects": []}')
    again = run_bootstrap(upstream, repo, ["app"])
    assert (again.built, again.reused) == (0, 2)  # nothing published, yet every page is back
    assert _pages(repo / "simple") == pages


def test_find_wheels_lists_wheels_once(tmp_path: Path) -> None:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    first = repo.publish_wheel(_wheel(tmp_path / "a", "Demo", "1.0"))
    assert repo.find_wheels("demo", "1.0") == [first]
    # Put there by hand after this object listed wheels/: the next object finds it.
    by_hand = shutil.copy(_wheel(tmp_path / "b", "demo", "2.0"), repo.wheels_dir)
    assert repo.find_wheels("demo", "2.0") == []
    (found,) = Repository(repo.root).find_wheels("DEMO", "2.0.0")
    assert found.filename == Path(by_hand).name
    # What this object publishes it finds at once; what is gone it no longer gives.
    third = repo.publish_wheel(_wheel(tmp_path / "c", "demo", "3.0"))
    assert repo.find_wheels("demo", "3.0") == [third]
    repo.wheel_path(first).unlink()
    assert repo.find_wheels("demo", "1.0") == []


def test_a_publication_flushes_the_wheel_to_disk_and_not_the_pages(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = Repository(tmp_path / "repo")
    repo.ensure_layout()
    publisher = Publisher(repo)
    publisher.publish_prebuilt(_wheel(tmp_path / "a", "demo", "1.0"))
    flushed: list[Path] = []
    fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        flushed.append(Path(os.readlink(f"/proc/self/fd/{fd}")))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    ref = publisher.publish_prebuilt(_wheel(tmp_path / "b", "new", "1.0"))
    monkeypatch.undo()
    names = [p.name for p in flushed]
    # The wheel and its core metadata reach the disk before they are listed (and the folder
    # that names them)...
    assert any(n.startswith(f".{ref.filename}.") and n.endswith(".tmp") for n in names), names
    assert any(n.startswith(f".{ref.filename}.metadata.") for n in names), names
    assert repo.wheels_dir in flushed
    # ...the pages, made again from wheels/ when a run starts, are not waited for.
    assert not [p for p in flushed if repo.simple_dir in p.parents], flushed
    assert (repo.simple_dir / "new" / "index.json").is_file()
