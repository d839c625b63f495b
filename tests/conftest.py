"""Shared fixtures: a fake upstream index of synthetic sdists, and a helper to bootstrap from it."""

from __future__ import annotations

import functools
import json
import os
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from packaging.requirements import Requirement
from support.fake_index import FakeIndex
from support.sdists import SdistSpec, make_sdist, make_wheel

from rewheel import app
from rewheel.core.bootstrap import BootstrapResult
from rewheel.trust.provenance import PROVENANCE_SUFFIX, schema


@pytest.fixture(scope="session", autouse=True)
def _private_data_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Bootstraps sign by default with the user's key, made on first use in
    ``$XDG_DATA_HOME/rewheel/keys``: the tests make theirs in a folder of the session, never in
    the home folder of whoever runs them. A test that needs a key of its own sets the variable
    itself (monkeypatch)."""
    folder = tmp_path_factory.mktemp("xdg-data")
    saved = os.environ.get("XDG_DATA_HOME")
    os.environ["XDG_DATA_HOME"] = str(folder)
    try:
        yield folder
    finally:
        if saved is None:
            os.environ.pop("XDG_DATA_HOME", None)
        else:
            os.environ["XDG_DATA_HOME"] = saved


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


# -- every provenance rewheel writes in a test matches its JSON Schema -----------------------------


@functools.cache
def provenance_validator() -> jsonschema.protocols.Validator:
    """The validator of ``trust/provenance.schema.json`` (itself checked against its metaschema)."""
    document = schema()
    cls = jsonschema.validators.validator_for(document)
    cls.check_schema(document)
    validator: jsonschema.protocols.Validator = cls(document)
    return validator


def schema_errors(statement: Any) -> list[str]:
    """Why ``statement`` does not match the provenance schema ([] when it does)."""
    return sorted(
        f"{'/'.join(str(p) for p in e.absolute_path) or '(top)'}: {e.message}"
        for e in provenance_validator().iter_errors(statement)
    )


def _provenance_files(folder: Path, depth: int = 5) -> list[Path]:
    """The provenance files at most ``depth`` folders below ``folder`` (repositories sit at
    ``<test folder>/.../repo/wheels/``), not following links; trees a hostile test build left
    (deeper than PATH_MAX, unreadable) are skipped, not walked."""
    found = []
    for parent, folders, files in os.walk(folder, onerror=lambda _exc: None):
        if len(Path(parent).relative_to(folder).parts) >= depth:
            folders.clear()
        found += [Path(parent) / f for f in files if f.endswith(PROVENANCE_SUFFIX)]
    return sorted(found)


def _check_provenance_under(folder: Path, seen: set[Path]) -> list[str]:
    problems = []
    for path in _provenance_files(folder):
        if path in seen or path.is_symlink() or not path.is_file():
            continue  # rewheel writes plain files: a link is a test's planted trap
        seen.add(path)
        try:
            statement = json.loads(path.read_bytes())
        except ValueError as exc:
            problems.append(f"{path}: not JSON: {exc}")
            continue
        problems += [f"{path}: {e}" for e in schema_errors(statement)]
    return problems


@pytest.fixture
def broken_provenance() -> None:
    """Requested by a test that writes a provenance file that is wrong on purpose: its folder is
    then not checked against the schema."""


@pytest.fixture(scope="session")
def _provenance_seen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[set[Path]]:
    """At the end of the session, every provenance file left in pytest's temporary folders
    (module fixtures write there too) that no test checked must match the schema."""
    seen: set[Path] = set()
    yield seen
    problems = _check_provenance_under(tmp_path_factory.getbasetemp(), seen)
    assert not problems, "provenance that does not match its schema:\n" + "\n".join(problems)


@pytest.fixture(autouse=True)
def _provenance_matches_schema(
    request: pytest.FixtureRequest, _provenance_seen: set[Path]
) -> Iterator[None]:
    """After each test that had a temporary folder: every provenance rewheel wrote in it
    matches ``trust/provenance.schema.json``."""
    # Asked now: by this fixture's teardown, tmp_path's is over.
    folder = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if not isinstance(folder, Path):
        return
    if "broken_provenance" in request.fixturenames:
        _provenance_seen.update(_provenance_files(folder))
        return
    problems = _check_provenance_under(folder, _provenance_seen)
    assert not problems, "provenance that does not match its schema:\n" + "\n".join(problems)
