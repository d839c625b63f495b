"""Wires the parts together for the commands: one place that builds real objects from options."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName
from packaging.version import Version

from .bootstrap import Bootstrapper, BootstrapResult, Reporter
from .buildenv import EnvBuilder
from .errors import ConfigError
from .http import HttpClient
from .install import install_into_venv
from .metadata import MetadataSource
from .pipeline import LocalSteps, default_work_root
from .repository import Repository
from .resolver import Resolver
from .runner import SubprocessRunner
from .server import IndexServer
from .settings import Settings
from .upstream import HttpUpstream
from .verify import VerifyReport, verify_venv

DEFAULT_INDEX = "https://pypi.org/simple"
DEFAULT_REPO = Path("rewheel-repo")


@dataclass
class BootstrapOptions:
    requirements: list[Requirement]
    constraints: list[Requirement] = field(default_factory=list)
    repo: Path = DEFAULT_REPO
    index_url: str = DEFAULT_INDEX
    jobs: int = os.cpu_count() or 1
    allow_prereleases: bool = False
    build_timeout: float | None = None
    isolate_network: bool = True
    strict_hashes: bool = False
    settings_dir: Path | None = None
    variant: str | None = None
    keep_going: bool = False
    work_dir: Path | None = None


def bootstrap(
    options: BootstrapOptions,
    *,
    reporter: Reporter | None = None,
    notice: Callable[[str], None] | None = None,
) -> BootstrapResult:
    settings = Settings(options.settings_dir, variant=options.variant)
    if options.variant is not None and options.variant not in settings.variants():
        raise ConfigError(f"no settings declare the variant {options.variant!r}", step="settings")
    repo = Repository(options.repo)
    repo.ensure_layout()
    with repo.locked():
        client = HttpClient()
        try:
            upstream = HttpUpstream(
                options.index_url,
                client,
                cache_dir=repo.root / "cache" / "http",
                strict=options.strict_hashes,
            )

            def built_metadata(name: NormalizedName, version: Version) -> bytes | None:
                for ref in repo.find_wheels(name, str(version)):
                    path = repo.wheel_path(ref)
                    meta = path.with_name(path.name + ".metadata")
                    if meta.is_file():
                        return meta.read_bytes()
                return None

            metadata = MetadataSource(upstream, repo.sdists_dir, built=built_metadata)
            resolver = Resolver(
                upstream,
                metadata,
                constraints=[*settings.pins, *options.constraints],
                allow_prereleases=options.allow_prereleases,
            )
            runner = SubprocessRunner(on_notice=notice)
            with IndexServer(repo) as server:
                env_builder = EnvBuilder(
                    index_url=server.url,
                    runner=runner,
                    cache_dir=repo.root / "cache" / "uv",
                )
                steps = LocalSteps(
                    repo=repo,
                    upstream=upstream,
                    resolver=resolver,
                    metadata=metadata,
                    env_builder=env_builder,
                    runner=runner,
                    jobs=options.jobs,
                    work_root=options.work_dir or default_work_root(repo),
                    build_timeout=options.build_timeout,
                    isolate_network=options.isolate_network,
                    settings=settings,
                )
                result = Bootstrapper(
                    steps, jobs=options.jobs, reporter=reporter, keep_going=options.keep_going
                ).run(options.requirements)
        finally:
            client.close()
        repo.write_json("build-order.json", result.order)
        repo.write_json("graph.json", result.graph)
        return result


def install(
    requirements: Sequence[str],
    venv: Path,
    *,
    repo_root: Path,
    constraints: Path | None = None,
) -> None:
    repo = Repository(repo_root)
    repo.ensure_layout()
    with IndexServer(repo) as server:
        install_into_venv(
            requirements,
            venv,
            index_url=server.url,
            constraints=constraints,
            python=Path(sys.executable),
            log=repo.logs_dir / "install.log",
        )


def verify(venv: Path, *, repo_root: Path) -> VerifyReport:
    repo = Repository(repo_root)
    wheels = [(ref, repo.wheel_path(ref)) for ref in repo.wheels()]
    return verify_venv(venv, wheels)


def serve(repo_root: Path, host: str, port: int, log: Callable[[str], None] | None = None) -> None:
    repo = Repository(repo_root)
    repo.ensure_layout()
    repo.regenerate_index()
    server = IndexServer(repo, host, port, log=log)
    print(f"serving {repo.root.resolve()} at {server.url}/", file=sys.stderr, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
