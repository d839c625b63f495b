"""A project folder as input: ``rewheel bootstrap ./project [--extra NAME] [--group NAME]``.

The folders are synthetic projects carrying the tests' tiny in-tree backend
(tests/support/sdists.py) with a ``[project]`` table and PEP 735 dependency groups beside it.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import Upstream, build_info
from support.sdists import SdistSpec, make_sdist

from rewheel import app
from rewheel.cli import main
from rewheel.core.errors import ConfigError
from rewheel.core.paths import sdist_filename
from rewheel.projectdir import (
    PackLimits,
    looks_like_path,
    pack_project,
    project_from_pyproject,
    read_project,
)
from rewheel.repo.repository import Repository


def make_project(folder: Path, spec: SdistSpec, project_toml: str) -> Path:
    """A project folder: ``spec``'s sdist unpacked (its PKG-INFO removed) into ``folder``, with
    ``project_toml`` (``[project]``, ``[dependency-groups]``) added to its pyproject.toml."""
    sdist = make_sdist(spec, folder.parent / f"{folder.name}-sdist")
    with tarfile.open(sdist) as tf:
        tf.extractall(folder.parent / f"{folder.name}-unpacked", filter="data")
    (top,) = (folder.parent / f"{folder.name}-unpacked").iterdir()
    top.rename(folder)
    (folder / "PKG-INFO").unlink()
    with (folder / "pyproject.toml").open("a") as f:
        f.write("\n" + project_toml)
    return folder


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    out, err = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 0 if code is None else 1), out, err


def _snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {
        str(p.relative_to(folder)): (p.lstat().st_mtime_ns, p.read_bytes())
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


_APP_TOML = """
[project]
name = "My_App"
version = "1.0"
dependencies = ["lib"]

[project.optional-dependencies]
fast = ["speedup"]
docs = ["sphinxish"]

[dependency-groups]
test = ["checker", {include-group = "lint"}]
lint = ["linter>=2"]
typing = ["typer"]
"""


def _app_spec(**more: Any) -> SdistSpec:
    return SdistSpec(
        "My_App",
        "1.0",
        build_requires=["tool-a"],
        install_requires=["lib"],
        extras={"fast": ["speedup"], "docs": ["sphinxish"]},
        **more,
    )


# -- the pure part: what pyproject.toml asks for ---------------------------------------------------


def _pyproject(text: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads(text)


def test_roots_are_the_project_with_its_extras_and_the_groups_resolved(tmp_path: Path) -> None:
    project = project_from_pyproject(
        _pyproject(_APP_TOML), tmp_path, extras=["Fast"], groups=["test"]
    )
    assert project.name == "my-app" and project.version == "1.0"
    assert [str(r) for r in project.roots] == ["my-app[fast]==1.0", "checker", "linter>=2"]
    assert project.sdist_name == "my_app-1.0.tar.gz"
    assert project.pkg_info is not None
    pkg_info = project.pkg_info.decode()
    assert "Metadata-Version: 2.2" in pkg_info
    assert "Requires-Dist: lib" in pkg_info
    assert 'Requires-Dist: speedup; extra == "fast"' in pkg_info


def test_a_group_that_does_not_exist_is_named_with_the_groups_there_are(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        project_from_pyproject(_pyproject(_APP_TOML), tmp_path, groups=["tests"])
    assert "no dependency group 'tests'" in exc.value.message
    assert "lint, test, typing" in exc.value.message
    assert exc.value.package == "my-app" and exc.value.hint


def test_an_extra_that_does_not_exist_is_named_with_the_extras_there_are(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        project_from_pyproject(_pyproject(_APP_TOML), tmp_path, extras=["speed"])
    assert "no extra 'speed'" in exc.value.message and "docs, fast" in exc.value.message


def test_group_names_are_normalized_and_two_spellings_of_one_refused(tmp_path: Path) -> None:
    project = project_from_pyproject(_pyproject(_APP_TOML), tmp_path, groups=["Typing"])
    assert [str(r) for r in project.roots] == ["my-app==1.0", "typer"]
    text = _APP_TOML.replace('typing = ["typer"]', 'typing = ["typer"]\nTyping = ["other"]')
    with pytest.raises(ConfigError, match="Duplicate dependency group names"):
        project_from_pyproject(_pyproject(text), tmp_path, groups=["typing"])


def test_include_group_cycles_are_refused(tmp_path: Path) -> None:
    text = _APP_TOML.replace('lint = ["linter>=2"]', 'lint = [{include-group = "test"}]')
    with pytest.raises(ConfigError) as exc:
        project_from_pyproject(_pyproject(text), tmp_path, groups=["test"])
    assert "Cyclic" in exc.value.message and "'test'" in exc.value.message


def test_a_group_with_a_url_requirement_is_refused(tmp_path: Path) -> None:
    text = _APP_TOML.replace('"linter>=2"', '"linter @ https://example.invalid/l.tar.gz"')
    with pytest.raises(ConfigError, match="direct URL requirements are not supported"):
        project_from_pyproject(_pyproject(text), tmp_path, groups=["lint"])


def test_no_project_table_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        project_from_pyproject({"build-system": {"requires": []}}, tmp_path)
    assert "no [project] table" in exc.value.message and exc.value.hint


def test_a_dynamic_version_is_a_clear_error(tmp_path: Path) -> None:
    text = '[project]\nname = "x"\ndynamic = ["version"]\n'
    with pytest.raises(ConfigError) as exc:
        project_from_pyproject(_pyproject(text), tmp_path)
    assert "version is dynamic" in exc.value.message and exc.value.package == "x"


def test_dynamic_dependencies_leave_the_prediction_to_the_built_wheel(tmp_path: Path) -> None:
    text = '[project]\nname = "x"\nversion = "2"\ndynamic = ["dependencies"]\n'
    project = project_from_pyproject(_pyproject(text), tmp_path)
    assert project.pkg_info is None
    assert [str(r) for r in project.roots] == ["x==2"]
    # Dynamic extras too: only the built wheel can tell which exist.
    text = text.replace('"dependencies"]', '"dependencies", "optional-dependencies"]')
    project = project_from_pyproject(_pyproject(text), tmp_path, extras=["anything"])
    assert [str(r) for r in project.roots] == ["x[anything]==2"]


def test_a_path_is_told_from_a_requirement_as_pip_does() -> None:
    for path in (".", "..", "./app", "../app", "/src/app", "src/app"):
        assert looks_like_path(path), path
    for req in (
        "app",
        "app>=1",
        "app[x]==1",
        "app @ https://h/app-1.tar.gz",
        "app; os_name=='a/b'",
    ):
        assert not looks_like_path(req), req


# -- packing the folder ----------------------------------------------------------------------------


def _members(sdist: Path) -> dict[str, tarfile.TarInfo]:
    with tarfile.open(sdist) as tf:
        return {m.name: m for m in tf.getmembers()}


def test_the_folder_is_packed_without_vcs_caches_venvs_and_the_repository(tmp_path: Path) -> None:
    folder = make_project(tmp_path / "app", _app_spec(), _APP_TOML)
    (folder / ".git").mkdir()
    (folder / ".git" / "config").write_text("[core]\n")
    (folder / "venv").mkdir()
    (folder / "venv" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (folder / "rewheel-repo" / "wheels").mkdir(parents=True)
    (folder / "rewheel-repo" / "wheels" / "x.whl").write_bytes(b"x")
    (folder / "PKG-INFO").write_text("Metadata-Version: 2.1\nName: stale\nVersion: 0\n")
    (folder / "inner.txt").write_text("inner")
    (folder / "inner-link.txt").symlink_to("inner.txt")
    project = read_project(str(folder))
    out = tmp_path / "out"
    out.mkdir()
    sdist = pack_project(project, out, exclude=[folder / "rewheel-repo"])
    members = _members(sdist.path)
    assert sdist.path.name == "my_app-1.0.tar.gz" and sdist.name == "my-app"
    assert all(name.startswith("my_app-1.0/") for name in members)
    assert "my_app-1.0/pyproject.toml" in members
    assert "my_app-1.0/_backend/tinybackend.py" in members
    assert not any("/.git/" in n or "/venv/" in n or "rewheel-repo" in n for n in members)
    assert members["my_app-1.0/inner-link.txt"].isfile()  # a link inside: its file's copy
    with tarfile.open(sdist.path) as tf:
        pkg_info = tf.extractfile("my_app-1.0/PKG-INFO")
        assert pkg_info is not None and b"Name: My_App" in pkg_info.read()
    # The same folder packs to the same bytes.
    again = tmp_path / "again"
    again.mkdir()
    assert pack_project(project, again, exclude=[folder / "rewheel-repo"]).sha256 == sdist.sha256
    assert sdist_filename(sdist.url) == sdist.path.name
    assert sdist.url.startswith(folder.as_uri() + "#")


@pytest.mark.parametrize(
    "target", ["/etc/passwd", "../outside.txt", "missing.txt", "data.txt", "."]
)
def test_a_link_leading_out_of_the_folder_is_refused(tmp_path: Path, target: str) -> None:
    folder = make_project(tmp_path / "app", _app_spec(), _APP_TOML)
    (tmp_path / "outside.txt").write_text("secret")
    (folder / "my_app" / "data.txt").symlink_to(target)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError) as exc:
        pack_project(read_project(str(folder)), out)
    assert "my_app/data.txt" in exc.value.message and target in exc.value.message
    assert exc.value.package == "my-app" and exc.value.hint


def test_a_link_to_a_folder_is_refused(tmp_path: Path) -> None:
    folder = make_project(tmp_path / "app", _app_spec(), _APP_TOML)
    (folder / "home").symlink_to(Path.home())
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError, match="home in the project folder is a link"):
        pack_project(read_project(str(folder)), out)


def test_a_huge_folder_is_refused(tmp_path: Path) -> None:
    folder = make_project(tmp_path / "app", _app_spec(), _APP_TOML)
    (folder / "data.bin").write_bytes(b"\0" * 5000)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(ConfigError, match="holds more than"):
        pack_project(read_project(str(folder)), out, limits=PackLimits(max_bytes=4096))
    with pytest.raises(ConfigError, match="holds more than 3 files"):
        pack_project(read_project(str(folder)), out, limits=PackLimits(max_files=3))


def test_a_pyproject_that_is_a_link_is_not_followed(tmp_path: Path) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    (tmp_path / "elsewhere.toml").write_text(_APP_TOML)
    (folder / "pyproject.toml").symlink_to(tmp_path / "elsewhere.toml")
    with pytest.raises(ConfigError, match="a link is not followed"):
        read_project(str(folder))


# -- from the command line to the repository -------------------------------------------------------


def _bootstrap_argv(upstream: Upstream, tmp_path: Path, *args: str) -> list[str]:
    return [
        "bootstrap",
        *args,
        "--index-url",
        upstream.url,
        "--repo",
        str(tmp_path / "repo"),
        "--work-dir",
        str(tmp_path / "work"),
        "-j",
        "2",
        "-q",
    ]


def test_a_project_folder_is_built_with_its_tree_extras_and_groups(
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("tool-a", "lib", "speedup", "sphinxish", "checker", "linter", "typer"):
        upstream.sdist(
            name,
            "2.0" if name == "linter" else "1.0",
            build_requires=["tool-a"] if name != "tool-a" else [],
        )
    # The upstream's project of the same name is another one: never taken, not even its sdist
    # of the same file name, and the chain of custody does not compare the local one with it.
    upstream.sdist("my-app", "9.0", install_requires=["typer"])
    upstream.sdist("my-app", "1.0", install_requires=["typer"])
    folder = make_project(tmp_path / "app", _app_spec(), _APP_TOML)
    (folder / "rewheel-repo").mkdir()
    before = _snapshot(folder)
    monkeypatch.chdir(folder)
    code, _out, err = _run(
        _bootstrap_argv(upstream, tmp_path, ".", "--extra", "fast", "--group", "test"), capsys
    )
    assert code == 0, err
    repo = Repository(tmp_path / "repo")
    built = {(w.name, w.version) for w in repo.wheels()}
    assert built == {
        ("my-app", "1.0"),
        ("tool-a", "1.0"),
        ("lib", "1.0"),
        ("speedup", "1.0"),
        ("checker", "1.0"),
        ("linter", "2.0"),
    }
    assert _snapshot(folder) == before  # nothing written into the project folder
    record = repo.load_record("my-app", "1.0")
    assert record is not None and record.sdist_url is not None
    assert record.sdist_url == f"{folder.as_uri()}#rewheel-sdist=my_app-1.0.tar.gz"
    assert (repo.sdists_dir / "my_app-1.0.tar.gz").is_file()
    assert [w.name for w in record.build_env] == ["tool-a"]  # its backend's needs, from source
    (wheel,) = [w for w in repo.wheels() if w.name == "my-app"]
    assert build_info(repo.wheel_path(wheel))["requirements"] == {"tool-a": "1.0"}
    statement = json.loads((repo.wheels_dir / f"{wheel.filename}.provenance.json").read_text())
    source = statement["predicate"]["buildDefinition"]["externalParameters"]["source"]
    assert source == {"uri": record.sdist_url, "digest": {"sha256": record.sdist_sha256}}
    report = app.chain_of_custody(
        repo_root=tmp_path / "repo", packages=None, upstream_url=upstream.url
    )
    assert report.ok, report
    assert any("built from a local project folder" in n for n in report.notes)
    assert not any("upstream index" in n and "my-app" in n for n in report.notes)


def test_dynamic_dependencies_come_from_the_built_wheel(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("lib", "1.0")
    toml = '[project]\nname = "My_App"\nversion = "1.0"\ndynamic = ["dependencies"]\n'
    make_project(tmp_path / "app", SdistSpec("My_App", "1.0", install_requires=["lib"]), toml)
    code, _out, err = _run(_bootstrap_argv(upstream, tmp_path, str(tmp_path / "app")), capsys)
    assert code == 0, err
    built = {w.name for w in Repository(tmp_path / "repo").wheels()}
    assert built == {"my-app", "lib"}


def test_the_project_build_cannot_see_or_change_the_project_folder(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("lib", "1.0")
    folder = tmp_path / "app"
    attack = f"""
import os
def attack(hook):
    found = {{}}
    for path in ({str(folder / "pyproject.toml")!r}, {str(folder / "planted.py")!r}):
        try:
            with open(path, "a") as f:
                f.write("# planted by the build\\n")
            found[path] = "written"
        except OSError as exc:
            found[path] = type(exc).__name__
    return found
"""
    make_project(folder, _app_spec(attack=attack), _APP_TOML)
    before = _snapshot(folder)
    code, _out, err = _run(_bootstrap_argv(upstream, tmp_path, str(folder)), capsys)
    assert code == 0, err
    assert _snapshot(folder) == before
    assert not (folder / "planted.py").exists()
    repo = Repository(tmp_path / "repo")
    (wheel,) = [w for w in repo.wheels() if w.name == "my-app"]
    found = build_info(repo.wheel_path(wheel))["attack"]
    assert set(found.values()) <= {"FileNotFoundError", "PermissionError", "OSError"}, found


def test_a_project_folder_without_a_project_table_is_refused_before_anything(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "app"
    folder.mkdir()
    (folder / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n')
    code, _out, err = _run(_bootstrap_argv(upstream, tmp_path, str(folder)), capsys)
    assert code != 0 and "no [project] table" in err
    assert not (tmp_path / "repo").exists()


def test_extras_and_groups_need_a_project_folder(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _out, err = _run(_bootstrap_argv(upstream, tmp_path, "lib", "--group", "test"), capsys)
    assert code == 2 and "go with a project folder" in err


def test_a_name_that_is_also_a_folder_stays_a_requirement(
    upstream: Upstream,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("lib", "1.0")
    make_project(
        tmp_path / "lib", SdistSpec("lib", "7.0"), '[project]\nname = "lib"\nversion = "7.0"\n'
    )
    monkeypatch.chdir(tmp_path)
    code, _out, err = _run(_bootstrap_argv(upstream, tmp_path, "lib"), capsys)
    assert code == 0, err
    assert "'lib' is read as a requirement; for the folder, write ./lib" in err
    assert {(w.name, w.version) for w in Repository(tmp_path / "repo").wheels()} == {("lib", "1.0")}
    assert os.path.isdir(tmp_path / "lib")


def test_a_changed_folder_is_built_again_at_the_same_version(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("lib", "1.0")
    folder = make_project(tmp_path / "app", SdistSpec("My_App", "1.0"), _APP_TOML)
    argv = _bootstrap_argv(upstream, tmp_path, str(folder))
    assert _run(argv, capsys)[0] == 0
    repo = Repository(tmp_path / "repo")
    first = repo.load_record("my-app", "1.0")
    assert _run(argv, capsys)[0] == 0  # unchanged: the same sdist, the wheel reused
    again = repo.load_record("my-app", "1.0")
    assert first is not None and again is not None
    assert again.sdist_sha256 == first.sdist_sha256 and again.wheel_sha256 == first.wheel_sha256
    with (folder / "my_app" / "__init__.py").open("a") as f:
        f.write("CHANGED = True\n")
    code, _out, err = _run(argv, capsys)
    assert code == 0, err
    changed = repo.load_record("my-app", "1.0")
    assert changed is not None and changed.sdist_sha256 != first.sdist_sha256
    (wheel,) = [w for w in repo.wheels() if w.name == "my-app"]
    assert wheel.sha256 == changed.wheel_sha256 != first.wheel_sha256


def test_update_does_not_take_the_upstream_project_of_a_folder_built_before(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("lib", "1.0")
    # Someone publishes a project of the same name and version upstream (dependency confusion).
    upstream.sdist("my-app", "1.0", install_requires=["lib"])
    folder = make_project(tmp_path / "app", SdistSpec("My_App", "1.0"), _APP_TOML)
    assert _run(_bootstrap_argv(upstream, tmp_path, str(folder)), capsys)[0] == 0
    argv = _bootstrap_argv(upstream, tmp_path)
    argv[0] = "update"
    code, _out, err = _run(argv, capsys)
    assert code == 2 and f"from the project folder {folder.as_uri()}" in err
    assert f"`rewheel update {folder}`" in err
    record = Repository(tmp_path / "repo").load_record("my-app", "1.0")
    assert record is not None and record.sdist_url is not None
    assert record.sdist_url.startswith(folder.as_uri())


def test_update_takes_a_project_folder_as_bootstrap_does(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``rewheel update ./project``: the folder packed again and its only candidate (the
    upstream's project of the same name never taken), its dependencies re-resolved."""
    upstream.sdist("tool-a", "1.0")
    upstream.sdist("lib", "1.0")
    upstream.sdist("speedup", "1.0")
    upstream.sdist("my-app", "1.0", install_requires=["lib"])  # dependency confusion
    upstream.sdist("my-app", "9.0")
    folder = make_project(tmp_path / "app", _app_spec(), _APP_TOML)
    assert _run(_bootstrap_argv(upstream, tmp_path, str(folder)), capsys)[0] == 0
    upstream.sdist("lib", "2.0")
    update = _bootstrap_argv(upstream, tmp_path, str(folder), "--extra", "fast")
    update[0] = "update"
    code, out, err = _run([*update, "--dry-run"], capsys)
    assert code == 0, err
    assert "new     lib==2.0" in out and "new     speedup==1.0" in out
    assert "my-app" not in out.split("stays")[0]  # the folder did not change: it stays
    assert "stays   " in out and "my-app==1.0" in out.split("stays")[1]
    code, out, err = _run(update, capsys)
    assert code == 0, err
    repo = Repository(tmp_path / "repo")
    assert {(w.name, w.version) for w in repo.wheels()} >= {("lib", "2.0"), ("speedup", "1.0")}
    assert ("my-app", "9.0") not in {(w.name, w.version) for w in repo.wheels()}
    record = repo.load_record("my-app", "1.0")
    assert record is not None and record.sdist_url == (
        f"{folder.as_uri()}#rewheel-sdist=my_app-1.0.tar.gz"
    )
    # A new version of the folder is planned from the sdist packed of it, not fetched upstream.
    toml = (folder / "pyproject.toml").read_text().replace('version = "1.0"', 'version = "1.1"')
    (folder / "pyproject.toml").write_text(toml)
    code, out, err = _run([*update, "--dry-run"], capsys)
    assert code == 0, err
    assert "new     my-app==1.1" in out
    assert not [path for _, path in upstream.index.requests if path.startswith("/files/my_app")]


def test_update_of_a_project_folder_names_what_does_not_go_with_it(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = _bootstrap_argv(upstream, tmp_path, "lib", "--group", "test")
    argv[0] = "update"
    code, _out, err = _run(argv, capsys)
    assert code == 2 and "go with a project folder" in err


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("command", ["bootstrap", "update"])
def test_a_project_folder_in_hash_checking_mode_says_why_and_what_to_run(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str], command: str
) -> None:
    lib = upstream.sdist("lib", "1.0")
    folder = make_project(tmp_path / "app", SdistSpec("My_App", "1.0"), _APP_TOML)
    lock = tmp_path / "locked.txt"
    lock.write_text(f"lib==1.0 --hash=sha256:{_sha(lib)}\n")
    argv = _bootstrap_argv(upstream, tmp_path, str(folder), "-r", str(lock))
    argv[0] = command
    code, _out, err = _run(argv, capsys)
    assert code == 2
    assert f"the project folder {folder} cannot be hash-checked" in err
    assert "pip refuses a local project in hash-checking mode too" in err
    assert f"`rewheel {command} {folder} -c {lock}`" in err
    assert "has no --hash" not in err  # not the generic message
    assert not (tmp_path / "repo").exists()


def test_a_hashed_file_as_constraints_pins_and_checks_a_project_folders_dependencies(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """What the refusal above says to run works: the file's versions and hashes hold."""
    tool = upstream.sdist("tool-a", "1.0")
    lib = upstream.sdist("lib", "1.0")
    upstream.sdist("lib", "2.0")  # newer than the lock: not taken
    folder = make_project(tmp_path / "app", _app_spec(), _APP_TOML)
    lock = tmp_path / "locked.txt"
    lock.write_text(f"lib==1.0 --hash=sha256:{_sha(lib)}\ntool-a==1.0 --hash=sha256:{_sha(tool)}\n")
    code, _out, err = _run(
        _bootstrap_argv(upstream, tmp_path, str(folder), "-c", str(lock)), capsys
    )
    assert code == 0, err
    built = {(w.name, w.version) for w in Repository(tmp_path / "repo").wheels()}
    assert built == {("my-app", "1.0"), ("lib", "1.0"), ("tool-a", "1.0")}
    lock.write_text(f"lib==1.0 --hash=sha256:{'0' * 64}\n")
    code, _out, err = _run(
        _bootstrap_argv(upstream, tmp_path, str(folder), "-c", str(lock)), capsys
    )
    assert code == 2 and f"lib==1.0 [download]: sdist lib-1.0.tar.gz has sha256 {_sha(lib)}" in err
