"""Shared fixtures: a fake upstream index of synthetic sdists, and a helper to bootstrap from it."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_sdist, make_wheel

from rewheel import app
from rewheel.core.bootstrap import BootstrapResult


class Upstream:
    """A fake upstream index plus the folder its files are made in."""

    def __init__(self, index: FakeIndex, files: Path) -> None:
        self.index = index
        self.files = files

    @property
    def url(self) -> str:
        return self.index.url

    def sdist(self, name: str, version: str, **kwargs: Any) -> Path:
        path = make_sdist(SdistSpec(name, version, **kwargs), self.files)
        self.index.add(path)
        return path

    def wheel(self, name: str, version: str, **kwargs: Any) -> Path:
        path = make_wheel(SdistSpec(name, version, **kwargs), self.files)
        self.index.add(path)
        return path


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    files = tmp_path / "upstream-files"
    files.mkdir()
    with FakeIndex() as index:
        yield Upstream(index, files)


def run_bootstrap(
    upstream: Upstream,
    repo: Path,
    requirements: Sequence[str],
    *,
    constraints: Sequence[str] = (),
    jobs: int = 2,
    keep_going: bool = False,
    settings_dir: Path | None = None,
    variant: str | None = None,
    machine: app.Machine | None = None,
) -> BootstrapResult:
    options = app.BootstrapOptions(
        requirements=[Requirement(r) for r in requirements],
        constraints=[Requirement(c) for c in constraints],
        repo=repo,
        index_url=upstream.url,
        jobs=jobs,
        work_dir=repo.parent / f"{repo.name}-work",
        keep_going=keep_going,
        settings_dir=settings_dir,
        variant=variant,
    )
    return app.bootstrap(options, machine=machine or app.Machine())


def build_info(wheel: Path) -> dict[str, Any]:
    """The evidence the synthetic backend wrote into a wheel about its build environment."""
    with zipfile.ZipFile(wheel) as zf:
        (name,) = [n for n in zf.namelist() if n.endswith("/_build_info.json")]
        data: dict[str, Any] = json.loads(zf.read(name))
        return data
