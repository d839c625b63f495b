"""The command line: parsing here, work in ``app``, errors turned into exit codes in one place."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from . import __version__, app
from .bootstrap import BootstrapResult, Reporter
from .errors import RewheelError
from .reqfile import collect


class LineReporter(Reporter):
    """Plain timestamped progress lines on stderr."""

    def __init__(self, verbosity: int) -> None:
        self.verbosity = verbosity
        self.start = time.monotonic()

    def _say(self, text: str, level: int = 1) -> None:
        if self.verbosity >= level:
            elapsed = time.monotonic() - self.start
            click.echo(f"[{elapsed:7.1f}s] {text}", err=True)

    def resolved(self, purpose: str, count: int) -> None:
        self._say(f"resolved {purpose}: {count} packages")

    def step(self, node: str, step: str) -> None:
        self._say(f"{node}: {step}", level=2)

    def done(self, node: str, wheel: str, *, cached: bool, seconds: float) -> None:
        if cached:
            self._say(f"{node}: reused {wheel}", level=2)
        else:
            self._say(f"{node}: built {wheel} in {seconds:.1f}s")

    def failed(self, node: str, error: RewheelError) -> None:
        self._say(f"{node}: FAILED: {error}", level=0)


def _summary(result: BootstrapResult, repo: Path, seconds: float) -> None:
    click.echo(
        f"{result.built} built, {result.reused} reused, {len(result.failures)} failed "
        f"in {seconds:.1f}s; repository {repo}",
        err=True,
    )
    for node, error in sorted(result.failures.items()):
        click.echo(f"  failed: {node}: {error}", err=True)


_repo_option = click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False),
    default=app.DEFAULT_REPO,
    show_default=True,
    envvar="REWHEEL_REPO",
    help="The local repository (wheels, index, records).",
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="rewheel")
def cli() -> None:
    """Rebuild a Python dependency tree from source and serve it as a package index."""


@cli.command()
@click.argument("requirements", nargs=-1)
@click.option(
    "-r",
    "--requirement",
    "requirement_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Install requirements from this file (repeatable).",
)
@click.option(
    "-c",
    "--constraint",
    "constraint_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Constrain versions with this file (repeatable); applies to build environments too.",
)
@_repo_option
@click.option(
    "--index-url",
    default=app.DEFAULT_INDEX,
    show_default=True,
    envvar="REWHEEL_INDEX_URL",
    help="The upstream index sdists come from (PEP 503/691).",
)
@click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default=True,
    envvar="REWHEEL_JOBS",
    help="Builds to run at once.",
)
@click.option("--pre", is_flag=True, help="Allow pre-releases.")
@click.option(
    "--build-timeout",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds a single backend hook may run before it is killed.",
)
@click.option(
    "--no-network-isolation",
    is_flag=True,
    help="Let backends reach the network (by default builds run in an empty network namespace).",
)
@click.option("--strict-hashes", is_flag=True, help="Refuse index files listed without sha256.")
@click.option(
    "--settings",
    "settings_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Per-package settings folder (_defaults.toml and <name>.toml files).",
)
@click.option("--variant", default=None, help="Settings variant to build (e.g. cpu, cuda).")
@click.option(
    "--keep-going",
    is_flag=True,
    help="Build all that can be built after a failure, then list the failures.",
)
@click.option("-v", "--verbose", count=True, help="More output.")
@click.option("-q", "--quiet", count=True, help="Less output.")
def bootstrap(
    requirements: tuple[str, ...],
    requirement_files: tuple[Path, ...],
    constraint_files: tuple[Path, ...],
    repo: Path,
    index_url: str,
    jobs: int,
    pre: bool,
    build_timeout: float | None,
    no_network_isolation: bool,
    strict_hashes: bool,
    settings_dir: Path | None,
    variant: str | None,
    keep_going: bool,
    verbose: int,
    quiet: int,
) -> None:
    """Build REQUIREMENTS and everything they need, build tools included, from source."""
    reqs = collect(list(requirements), list(requirement_files), list(constraint_files))
    if not reqs.requirements:
        raise click.UsageError("name at least one requirement, or give -r FILE")
    options = app.BootstrapOptions(
        requirements=reqs.requirements,
        constraints=reqs.constraints,
        repo=repo,
        index_url=index_url,
        jobs=jobs,
        allow_prereleases=pre,
        build_timeout=build_timeout,
        isolate_network=not no_network_isolation,
        strict_hashes=strict_hashes,
        settings_dir=settings_dir,
        variant=variant,
        keep_going=keep_going,
    )
    verbosity = 1 + verbose - quiet
    reporter = LineReporter(verbosity)
    started = time.monotonic()
    result = app.bootstrap(
        options, reporter=reporter, notice=lambda text: reporter._say(f"note: {text}")
    )
    _summary(result, repo, time.monotonic() - started)
    if not result.ok:
        sys.exit(1)


@cli.command()
@click.argument("requirements", nargs=-1, required=True)
@click.option(
    "--venv",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The virtual environment to create.",
)
@_repo_option
@click.option(
    "-c",
    "--constraint",
    "constraint",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Constraints for the install.",
)
def install(requirements: tuple[str, ...], venv: Path, repo: Path, constraint: Path | None) -> None:
    """Create VENV and install REQUIREMENTS into it from the repository alone."""
    app.install(list(requirements), venv, repo_root=repo, constraints=constraint)
    click.echo(f"installed {' '.join(requirements)} into {venv}", err=True)


@cli.command()
@click.option(
    "--venv",
    required=True,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="The virtual environment to check.",
)
@_repo_option
def verify(venv: Path, repo: Path) -> None:
    """Check that every file installed in VENV comes from a wheel of the repository."""
    report = app.verify(venv, repo_root=repo)
    for name, version in report.checked:
        click.echo(f"ok      {name} {version}")
    for problem in report.problems:
        where = f" {problem.path}" if problem.path else ""
        version = f" {problem.version}" if problem.version else ""
        click.echo(f"PROBLEM {problem.distribution}{version}{where}: {problem.reason}")
    if not report.ok:
        click.echo(f"{len(report.problems)} problem(s) in {venv}", err=True)
        sys.exit(1)
    click.echo(f"{len(report.checked)} distributions verified against {repo}", err=True)


@cli.command()
@_repo_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
def serve(repo: Path, host: str, port: int) -> None:
    """Serve the repository as a PEP 503/691 package index."""
    app.serve(repo, host, port)


def main(argv: Sequence[str] | None = None) -> None:
    try:
        cli.main(args=list(argv) if argv is not None else None, prog_name="rewheel")
    except RewheelError as exc:
        click.echo(f"rewheel: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("rewheel: interrupted; what was built is kept, run again to go on", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
