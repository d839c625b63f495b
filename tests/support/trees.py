"""One small tree, bootstrapped once per test module that imports these fixtures: tool-a builds
itself; lib-b and App are built with it; App needs lib-b at run time.

Import the fixtures into a test module to use them (``from support.trees import built_tree,
tree_copy, served_tree``); tests ask for them by the names ``built`` (the repository, shared
by the module's tests: only read it), ``repo`` (a copy of it of the test's own, to tamper
with) and ``served`` (that copy served over HTTP, the URL of its ``/simple/``).
``published_key`` is the public key file such a repository publishes.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Upstream, run_bootstrap

from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer
from support.fake_index import FakeIndex


@pytest.fixture(scope="module", name="built")
def built_tree(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("tree")
    files = base / "upstream-files"
    files.mkdir()
    with FakeIndex() as index:
        up = Upstream(index, files)
        up.sdist("tool-a", "1.0")
        up.sdist("lib-b", "1.0", build_requires=["tool-a"])
        up.sdist("App", "1.0", build_requires=["tool-a"], install_requires=["lib-b"])
        repo = base / "repo"
        result = run_bootstrap(up, repo, ["app"])
        assert result.ok, result.failures
        yield repo


@pytest.fixture(name="repo")
def tree_copy(built: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(built, copy)
    return copy


@pytest.fixture(name="served")
def served_tree(repo: Path) -> Iterator[str]:
    with IndexServer(Repository(repo)) as server:
        yield server.url + "/"


def published_key(repo: Path) -> Path:
    """The one public key file the repository publishes (``keys/*.pub.pem``)."""
    (key,) = (repo / "keys").glob("*.pub.pem")
    return key
