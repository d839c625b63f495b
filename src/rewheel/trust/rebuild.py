"""``rebuild --check``: build published wheels again and compare them, bit for bit.

Each package is built from its recorded sdist (the copy kept in ``sdists/``, checked against the
recorded sha256) in a fresh environment of exactly the wheels its record lists, the way the
bootstrap built it, and nothing is published. A wheel that differs is kept under
``work/rebuild/`` and the differences are listed: members only on one side, members whose content
differs and, when every content is equal, the zip metadata (times, permissions...) that differ.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from ..build.buildenv import EnvBuilder
from ..build.builder import WheelBuilder
from ..build.pipeline import build_parts, default_work_root
from ..build.prepare import SourcePreparer
from ..build.publisher import keep_in
from ..build.reproducible import claimed_work_root
from ..build.runner import SubprocessRunner
from ..build.sandbox import SandboxPolicy
from ..build.settings import Settings
from ..build.workspace import Workspace
from ..core.errors import ConfigError, IntegrityError, RewheelError, Step, UpstreamError
from ..core.fsutil import sha256_file
from ..core.records import BuildRecord
from ..core.resolver import Pin
from ..core.types import IndexFile, WheelRef
from ..repo.repository import Repository
from ..repo.wheelfile import WheelReader
from ..serve.server import IndexServer
from .provenance import sdist_filename

# Zip entry attributes that can differ between two archives of the same files.
_ZIP_ATTRIBUTES = (
    "date_time",
    "external_attr",
    "internal_attr",
    "compress_type",
    "create_system",
    "create_version",
    "extract_version",
    "flag_bits",
    "extra",
    "comment",
)


def diff_wheels(published: Path, rebuilt: Path) -> list[str]:
    """How two wheels differ: by member name and content hash, else by zip metadata."""
    with WheelReader(published) as a, WheelReader(rebuilt) as b:
        infos_a, infos_b = a.members, b.members
        by_a = {i.filename: i for i in infos_a}
        by_b = {i.filename: i for i in infos_b}
        out = [f"only in the published wheel: {n}" for n in sorted(by_a.keys() - by_b.keys())]
        out += [f"only in the rebuilt wheel: {n}" for n in sorted(by_b.keys() - by_a.keys())]
        common = sorted(by_a.keys() & by_b.keys())
        for name in common:
            if a.digest(name) != b.digest(name):
                out.append(f"content differs: {name}")
        if out:
            return out
        # Same members with the same contents: what differs is the archive's own metadata.
        for name in common:
            for attr in _ZIP_ATTRIBUTES:
                va, vb = getattr(by_a[name], attr), getattr(by_b[name], attr)
                if va != vb:
                    out.append(f"zip metadata differs: {name}: {attr} {va!r} != {vb!r}")
        if [i.filename for i in infos_a] != [i.filename for i in infos_b]:
            out.append("zip member order differs")
        if a.comment != b.comment:
            out.append("zip comment differs")
        if not out:
            out.append("same members, contents and metadata; the zip encoding itself differs")
        return out


@dataclass
class RebuildResult:
    name: str
    version: str
    wheel: str
    status: str  # "identical", "different", "failed" or "skipped"
    published_sha256: str | None = None
    rebuilt_sha256: str | None = None
    differences: list[str] = field(default_factory=list)
    kept: Path | None = None  # the rebuilt wheel, when it differs
    reason: str | None = None  # why it failed or was skipped


class _RecordedSdists:
    """A ``SdistSource`` that only hands out the sdists the repository already holds."""

    def __init__(self, sdists_dir: Path) -> None:
        self.sdists_dir = sdists_dir

    def download(self, file: IndexFile, dest_dir: Path) -> Path:
        path = self.sdists_dir / file.filename
        if not path.is_file():
            raise UpstreamError(
                f"{file.filename} is not in {self.sdists_dir}; run bootstrap again to fetch it",
                step=Step.REBUILD,
            )
        if file.sha256 is not None and sha256_file(path) != file.sha256:
            raise IntegrityError(
                f"{path} no longer has the recorded sha256 {file.sha256}", step=Step.REBUILD
            )
        return path


def select_records(records: Sequence[BuildRecord], packages: Sequence[str]) -> list[BuildRecord]:
    """The records named by ``packages`` ("name" or "name==version"); all when none is named."""
    if not packages:
        return sorted(records, key=lambda r: (r.name, r.version))
    chosen: list[BuildRecord] = []
    for text in packages:
        try:
            req = Requirement(text)
        except InvalidRequirement as exc:
            raise ConfigError(f"not a package name or name==version: {text!r}") from exc
        matching = [
            r
            for r in records
            if canonicalize_name(r.name) == canonicalize_name(req.name)
            and req.specifier.contains(r.version, prereleases=True)
        ]
        if not matching:
            raise ConfigError(f"the repository has no build record of {text}", step=Step.REBUILD)
        chosen.extend(r for r in matching if r not in chosen)
    return chosen


class Rebuilder:
    """Rebuilds recorded packages with the preparer and builder of a bootstrap (publishing
    nothing) and compares the results."""

    def __init__(
        self,
        repo: Repository,
        preparer: SourcePreparer,
        builder: WheelBuilder,
        keep_dir: Path,
    ) -> None:
        self.repo = repo
        self.preparer = preparer
        self.builder = builder
        self.keep_dir = keep_dir
        self.by_sha = {w.sha256: w for w in repo.wheels()}

    def check(self, record: BuildRecord) -> RebuildResult:
        result = RebuildResult(record.name, record.version, record.wheel, "failed")
        result.published_sha256 = record.wheel_sha256
        if record.prebuilt:
            result.status, result.reason = "skipped", "a pre-built wheel: nothing to rebuild"
            return result
        try:
            self._check(record, result)
        except RewheelError as exc:
            result.status, result.reason = "failed", str(exc)
        return result

    def _check(self, record: BuildRecord, result: RebuildResult) -> None:
        published = self.repo.wheels_dir / result.wheel
        if not published.is_file():
            raise ConfigError(f"the published wheel {result.wheel} is missing", step=Step.REBUILD)
        result.published_sha256 = sha256_file(published)
        url, sdist_sha256 = record.sdist_url, record.sdist_sha256
        if url is None or sdist_sha256 is None:
            raise ConfigError("the build record names no sdist", step=Step.REBUILD)
        env: list[WheelRef] = []
        for entry in record.build_env:
            ref = self.by_sha.get(entry.sha256)
            if ref is None:
                raise ConfigError(
                    f"build environment wheel {entry.name} {entry.version} is not"
                    " in the repository any more",
                    step=Step.REBUILD,
                )
            env.append(ref)
        try:
            pin = Pin(
                name=canonicalize_name(result.name),
                version=Version(result.version),
                sdist=IndexFile(filename=sdist_filename(url), url=url, sha256=sdist_sha256),
            )
        except InvalidVersion as exc:
            raise ConfigError(f"invalid version {result.version!r}", step=Step.REBUILD) from exc
        prepared = self.preparer.prepare(pin)
        handle = self.builder.create_env(prepared, env, name=record.build_env_dir or "env")
        # As in the bootstrap: the backend is asked for its requirements first (setuptools writes
        # its egg-info then), and the wheel is built in the same source tree.
        requires = self.builder.get_requires(prepared, handle)
        self.preparer.recheck_rust(prepared, requires)  # as in the bootstrap
        out = self.keep_dir / f"{pin.name}-{pin.version}"
        built = self.builder.build(prepared, handle, keep_in(out))
        rebuilt = out / built.wheel.filename
        result.rebuilt_sha256 = built.wheel.sha256
        if built.wheel.filename != result.wheel:
            result.status = "different"
            result.differences = [f"the rebuild made {built.wheel.filename}"]
            result.kept = rebuilt
        elif built.wheel.sha256 == result.published_sha256:
            result.status = "identical"
            shutil.rmtree(out, ignore_errors=True)
        else:
            result.status = "different"
            result.differences = diff_wheels(published, rebuilt)
            result.kept = rebuilt


def rebuild_check(
    repo_root: Path,
    packages: Sequence[str] = (),
    *,
    jobs: int = os.cpu_count() or 1,
    isolate_network: bool = True,
    sandbox: SandboxPolicy | None = None,
    build_timeout: float | None = None,
    settings_dir: Path | None = None,
    variant: str | None = None,
    work_dir: Path | None = None,
    notice: Callable[[str], None] | None = None,
    progress: Callable[[RebuildResult], None] | None = None,
) -> list[RebuildResult]:
    """Rebuild ``packages`` (all recorded ones when empty) and compare with what is published."""
    repo = Repository(repo_root)
    if not repo.records_dir.is_dir():
        raise ConfigError(f"{repo_root} has no build records", step=Step.REBUILD)
    records = select_records(repo.load_records(), packages)
    upstream = _RecordedSdists(repo.sdists_dir)
    settings = Settings(settings_dir, variant=variant)
    runner = SubprocessRunner(on_notice=notice, sandbox=sandbox)
    with (
        repo.locked(),
        IndexServer(repo) as server,
        claimed_work_root(work_dir or default_work_root(repo)) as work_root,
    ):
        workspace = Workspace(
            work_root=work_root,
            # Beside, not over, the logs of the builds that published the wheels.
            logs_dir=repo.root / "logs" / "rebuild",
            isolate_network=isolate_network,
            box_root=runner.sandbox.work_in_box,
        )
        parts = build_parts(
            workspace=workspace,
            sdists=upstream,
            sdists_dir=repo.sdists_dir,
            env_builder=EnvBuilder(
                index_url=server.url,
                runner=runner,
                python=Path(sys.executable),
                cache_dir=repo.root / "cache" / "uv",
            ),
            runner=runner,
            settings=settings,
            build_timeout=build_timeout,
        )
        rebuilder = Rebuilder(repo, parts.preparer, parts.builder, repo.work_dir / "rebuild")

        def one(record: BuildRecord) -> RebuildResult:
            result = rebuilder.check(record)
            if progress is not None:
                progress(result)
            return result

        with ThreadPoolExecutor(max(1, jobs), thread_name_prefix="rewheel-rebuild") as pool:
            results = list(pool.map(one, records))
    return results
