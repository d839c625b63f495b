"""The command line: parsing here, work in ``app``, errors turned into exit codes in one place."""

from __future__ import annotations

import functools
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from click.core import ParameterSource
from packaging.utils import canonicalize_name

from . import __version__, app
from .config import ENV_PREFIX, default_map, find_config, schema_from_click
from .core.errors import ConfigError, RewheelError, Step
from .core.paths import is_local_sdist_url
from .core.report import BootstrapResult
from .core.versions import normal_version
from .index.credentials import without_credentials
from .index.local import LocalSdist
from .projectdir import looks_like_path, pack_project, read_project
from .repo.repository import Repository
from .reqfile import RequirementSet, collect, parse_requirement
from .ui.progress import make_reporter
from .ui.run_summary import summary_json
from .ui.text import printable

# What only some commands need (the graph and its pages, the provenance and signing code, a
# wheel's metadata parser) is imported where they use it: a no-op re-run of bootstrap, which
# only compares, loads none of it.

if TYPE_CHECKING:
    from .core.update import UpdatePlan
    from .trust.custody import ChainReport
    from .trust.rebuild import RebuildResult
    from .trust.verify import VerifyReport

_repo_option = click.option(
    "--repo",
    type=click.Path(path_type=Path, file_okay=False),
    default=app.DEFAULT_REPO,
    show_default=True,
    envvar="REWHEEL_REPO",
    help="The local repository (wheels, index, records).",
)

_jobs_option = click.option(
    "-j",
    "--jobs",
    type=click.IntRange(min=1),
    default=os.cpu_count() or 1,
    show_default=True,
    envvar="REWHEEL_JOBS",
    help="Builds to run at once.",
)
_build_timeout_option = click.option(
    "--build-timeout",
    type=click.FloatRange(min=1),
    default=None,
    help="Seconds a single backend hook may run before it is killed [default: 3600].",
)
_no_network_isolation_option = click.option(
    "--no-network-isolation",
    is_flag=True,
    help="Let backends reach the network (by default builds run in an empty network namespace).",
)
_no_sandbox_option = click.option(
    "--no-sandbox",
    is_flag=True,
    help="Build without the bubblewrap sandbox (build code then sees and can change all that "
    "your user can); recorded in every record and provenance.",
)
_settings_option = click.option(
    "--settings",
    "settings_dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Per-package settings folder (_defaults.toml and <name>.toml files).",
)
_variant_option = click.option(
    "--variant", default=None, help="Settings variant to build (e.g. cpu, cuda)."
)


_index_url_option = click.option(
    "--index-url",
    default=app.DEFAULT_INDEX,
    show_default=True,
    envvar="REWHEEL_INDEX_URL",
    help="The upstream index sdists come from (PEP 503/691). Credentials in it "
    "(https://USER:TOKEN@HOST/simple) go to that host only and are never written or shown.",
)
_pre_option = click.option("--pre", is_flag=True, help="Allow pre-releases.")
_strict_hashes_option = click.option(
    "--strict-hashes", is_flag=True, help="Refuse index files listed without sha256."
)
_keep_going_option = click.option(
    "--keep-going",
    is_flag=True,
    help="Build all that can be built after a failure, then list the failures.",
)
_signing_key_option = click.option(
    "--signing-key",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Ed25519 private key (PEM) to sign each wheel's provenance with [default: your own, "
    "made on first use in $XDG_DATA_HOME/rewheel/keys/].",
)
_no_sign_option = click.option(
    "--no-sign",
    is_flag=True,
    help="Sign nothing: verify and installers then cannot tell a rewritten repository from "
    "this one (docs/provenance.md).",
)
_work_dir_option = click.option(
    "--work-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where sdists are extracted and built [default: /dev/shm/rewheel-build-<uid>, or "
    "/tmp/rewheel-build-<uid>]; it must be a folder of yours that no one else can write. "
    "Compiled code does not name it, but a build can write it into a file (numpy's "
    "__config__.py does): keep it the same to rebuild such wheels bit for bit.",
)
_cache_url_option = click.option(
    "--cache-url",
    metavar="URL",
    default=None,
    help="Another rewheel repository (http(s) URL as `rewheel serve` or any web server serves "
    "it, or a folder) to take wheels from instead of building them: only a build signed by a "
    "trusted key that is exactly what this run would build (docs/cache.md).",
)
_refresh_option = click.option(
    "--refresh",
    is_flag=True,
    default=False,
    help="Ask the index again for every project page, even one it said is still fresh: a release "
    "of the last few minutes is then seen now (docs/inspecting.md).",
)
_cache_key_trust_option = click.option(
    "--cache-key-trust",
    "cache_key_trust",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Public key (PEM) whose signed builds --cache-url may give (repeatable) [default: "
    "only the key this run signs with].",
)
_verbose_option = click.option("-v", "--verbose", count=True, help="More output.")
_quiet_option = click.option("-q", "--quiet", count=True, help="Less output.")


_public_key_option = click.option(
    "--public-key",
    "public_keys",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Ed25519 public key (PEM), one per file (repeatable): every provenance must be signed"
    " by one of them [default: the keys the repository publishes, which proves less].",
)
_allow_prebuilt_option = click.option(
    "--allow-prebuilt", is_flag=True, help="Accept pre-built wheels (they are still marked)."
)


def _variable_of(option: click.Option) -> str | None:
    """``REWHEEL_<OPTION>``: the long option in capitals, dashes as underscores."""
    longs = [o for o in option.opts if o.startswith("--")]
    return f"{ENV_PREFIX}_{longs[0][2:].upper().replace('-', '_')}" if longs else None


class _Commands(click.Group):
    """Every command's options also read ``REWHEEL_<OPTION>`` (``REWHEEL_JOBS=8``)."""

    def add_command(self, cmd: click.Command, name: str | None = None) -> None:
        # Without this, click would name them REWHEEL_<COMMAND>_<OPTION>.
        cmd.context_settings.setdefault("auto_envvar_prefix", ENV_PREFIX)
        # And click's own names come from the parameter (REWHEEL_CONSTRAINT_FILES for
        # --constraint): each option gets the one named after it, which the docs promise.
        for param in cmd.params:
            if isinstance(param, click.Option) and not param.envvar:
                param.envvar = _variable_of(param)
        super().add_command(cmd, name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Each command's whole first sentence, wrapped, rather than cut at the terminal's width.
        rows = [
            (name, cmd.get_short_help_str(limit=200))
            for name in self.list_commands(ctx)
            if (cmd := self.get_command(ctx, name)) is not None and not cmd.hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


_EPILOG = """\b
Examples:
  rewheel bootstrap requests              build requests and its whole tree from source
  rewheel bootstrap -r requirements.txt -c constraints.txt -j 8
  rewheel install requests --venv .venv   install from the repository alone
  rewheel verify --venv .venv             check every installed file against the repository
  rewheel lock -r requirements.txt -o lock.txt   exact versions and hashes of the wheels here
  rewheel lock requests -o pylock.toml   the same as a PEP 751 lock (uv pip install -r)
  rewheel prune --keep requests --dry-run what would go, and why the rest stays
  rewheel serve --host 0.0.0.0            share the index and its pages (http://HOST:8080/)
  rewheel why setuptools                  every chain of requirements that brings it in
  rewheel graph --html graph.html         draw the dependency graph

\b
Settings: the long options, as keys of rewheel.toml or of [tool.rewheel] in
pyproject.toml, here or in the nearest folder above (jobs = 8, index-url = "..."),
or as REWHEEL_<OPTION> environment variables (REWHEEL_JOBS=8). The command line wins,
then the environment, then the file. Shell completion (bash):
eval "$(_REWHEEL_COMPLETE=bash_source rewheel)"; zsh and fish in docs/configuration.md.
Progress goes to stderr; data (why, graph --dot) to stdout. Docs: docs/ in the source.
"""


@click.group(
    cls=_Commands,
    epilog=_EPILOG,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(
    __version__, "-V", "--version", prog_name="rewheel", message="%(prog)s %(version)s"
)
def cli() -> None:
    """Rebuild a Python dependency tree from source and serve it as a package index.

    Every wheel is built from its sdist, in a build environment holding only wheels built the
    same way, build tools included.
    """


@dataclass(frozen=True)
class _Tree:
    """The options bootstrap and update share: what names a tree and how to build it."""

    requirements: tuple[str, ...]
    requirement_files: tuple[Path, ...]
    constraint_files: tuple[Path, ...]
    repo: Path
    index_url: str
    jobs: int
    pre: bool
    build_timeout: float | None
    no_network_isolation: bool
    no_sandbox: bool
    strict_hashes: bool
    settings_dir: Path | None
    variant: str | None
    keep_going: bool
    signing_key: Path | None
    no_sign: bool
    work_dir: Path | None
    cache_url: str | None
    cache_key_trust: tuple[Path, ...]
    refresh: bool

    def check(self) -> None:
        if self.no_sign and self.signing_key is not None:
            raise click.UsageError("--no-sign and --signing-key contradict each other: give one")
        ctx = click.get_current_context()
        if ctx.get_parameter_source("index_url") is ParameterSource.DEFAULT_MAP:
            # A settings file may be a cloned project's own [tool.rewheel]: its choice of the
            # upstream every sdist comes from is said, never taken silently.
            source = find_config(Path.cwd())
            where = printable(str(source.path)) if source is not None else "a settings file"
            click.echo(
                f"note: the upstream index {printable(self.index_url)} is set by {where};"
                " pass --index-url to choose another",
                err=True,
            )

    def requirement_set(
        self, named: Sequence[str] | None = None, *, project: bool = False
    ) -> RequirementSet:
        """The requirements of the command line (``named``: those it names, a project folder's
        roots in its place, ``project``) and the files, in pip's hash-checking mode when they
        have hashes; an ``--index-url`` of a file must be this run's upstream."""
        given = list(self.requirements if named is None else named)
        reqs = collect(given, list(self.requirement_files), list(self.constraint_files))
        if project and reqs.hash_checking():
            self._refuse_hashed_project(reqs)
        reqs.check_hash_mode()
        for where, url in reqs.index_urls:
            if not _same_index(url, self.index_url):
                raise ConfigError(
                    f"{where}: --index-url {url} is not the upstream of this run"
                    f" ({self.index_url})",
                    step=Step.INPUT,
                    hint=f"give it on the command line: --index-url {url}",
                )
        elsewhere = sorted(
            {url for _, url in reqs.lock_indexes if not _same_index(url, self.index_url)}
        )
        notes = list(reqs.notes)
        if elsewhere:
            notes.append(
                f"the lock's packages came from {', '.join(elsewhere)}; rewheel takes their sdists"
                f" from {self.index_url}, held to the lock's sdist hashes where it has them"
            )
        for note in notes:
            click.echo(f"note: {printable(note)}", err=True)
        return reqs

    def _refuse_hashed_project(self, reqs: RequirementSet) -> NoReturn:
        """A project folder in pip's hash-checking mode: the error that says why it cannot be
        checked and what to run instead (the file as constraints, whose hashes still hold)."""
        folder = next((r for r in self.requirements if looks_like_path(r)), ".")
        hashed = next((line.where for line in reqs.lines if line.hashed), None)
        files = [str(f) for f in self.requirement_files]
        lock = hashed.rsplit(":", 1)[0] if hashed else (files[0] if files else "FILE")
        command = click.get_current_context().info_name or "bootstrap"
        others = [f"-r {f}" for f in files if f != lock]
        rerun = " ".join(["rewheel", command, folder, *others, "-c", lock])
        raise ConfigError(
            f"the project folder {folder} cannot be hash-checked: rewheel packs it into an sdist"
            f" itself, so no hash in {lock} can name that file (pip refuses a local project in"
            " hash-checking mode too), and its requirements have none",
            step=Step.INPUT,
            hint=f"give the hashed file as constraints: `{rerun}`; it then pins the project's"
            " dependencies to its versions and holds their sdists to its hashes",
        )

    def options(self, reqs: RequirementSet, **more: Any) -> app.BootstrapOptions:
        return app.BootstrapOptions(
            requirements=reqs.requirements,
            constraints=reqs.constraints,
            sdist_hashes={str(n): frozenset(d) for n, d in reqs.sdist_hashes().items()},
            repo=self.repo,
            index_url=self.index_url,
            jobs=self.jobs,
            allow_prereleases=self.pre,
            build_timeout=self.build_timeout,
            isolate_network=not self.no_network_isolation,
            sandbox=not self.no_sandbox,
            strict_hashes=self.strict_hashes,
            settings_dir=self.settings_dir,
            variant=self.variant,
            keep_going=self.keep_going,
            signing_key=self.signing_key,
            sign=not self.no_sign,
            work_dir=self.work_dir,
            cache_url=self.cache_url,
            cache_key_trust=list(self.cache_key_trust),
            refresh=self.refresh,
            **more,
        )


_TREE_KEYS = tuple(_Tree.__dataclass_fields__)


def _same_index(a: str, b: str) -> bool:
    return a.strip().rstrip("/").lower() == b.strip().rstrip("/").lower()


def _tree_options(f: Callable[..., None]) -> Callable[..., None]:
    """The shared options, handed to the command as one ``tree`` argument."""

    @functools.wraps(f)
    def command(**kwargs: Any) -> None:
        tree = _Tree(**{key: kwargs.pop(key) for key in _TREE_KEYS})
        tree.check()
        f(tree=tree, **kwargs)

    options = [
        click.argument("requirements", nargs=-1),
        click.option(
            "-r",
            "--requirement",
            "requirement_files",
            multiple=True,
            type=click.Path(path_type=Path, dir_okay=False),
            help="Requirements from this file (repeatable): pip's format, its --hash options "
            "enforced on the sdists, or a PEP 751 pylock.toml (docs/requirement-files.md).",
        ),
        click.option(
            "-c",
            "--constraint",
            "constraint_files",
            multiple=True,
            type=click.Path(path_type=Path, dir_okay=False),
            help="Constrain versions with this file (repeatable); applies to build environments "
            "too.",
        ),
        _repo_option,
        _index_url_option,
        _jobs_option,
        _pre_option,
        _build_timeout_option,
        _no_network_isolation_option,
        _no_sandbox_option,
        _strict_hashes_option,
        _settings_option,
        _variant_option,
        _keep_going_option,
        _signing_key_option,
        _no_sign_option,
        _work_dir_option,
        _cache_url_option,
        _cache_key_trust_option,
        _refresh_option,
    ]
    wrapped: Callable[..., None] = command
    for option in reversed(options):  # click applies decorators bottom-up
        wrapped = option(wrapped)
    return wrapped


_extras_option = click.option(
    "--extra",
    "extras",
    multiple=True,
    metavar="NAME",
    help="With a project folder: build these optional dependencies of it too (repeatable).",
)
_groups_option = click.option(
    "--group",
    "groups",
    multiple=True,
    metavar="NAME",
    help="With a project folder: build this dependency group of it too (PEP 735; repeatable).",
)


def _project_roots(
    tree: _Tree, extras: Sequence[str], groups: Sequence[str]
) -> tuple[list[str], tuple[LocalSdist, ...]]:
    """The requirements named on the command line, a project folder among them turned into its
    roots (``projectdir.read_project``) and the sdist packed of it, which the run's end removes."""
    folders = [r for r in tree.requirements if looks_like_path(r)]
    named = [r for r in tree.requirements if not looks_like_path(r)]
    for r in named:
        if (Path(r) / "pyproject.toml").is_file():
            click.echo(
                f"note: {r!r} is read as a requirement; for the folder, write ./{r}", err=True
            )
    if not folders:
        ctx = click.get_current_context()
        typed = ParameterSource.COMMANDLINE
        if typed in (ctx.get_parameter_source("extras"), ctx.get_parameter_source("groups")):
            raise click.UsageError("--extra and --group go with a project folder (./project)")
        return named, ()  # set in a settings file: for the runs that name a project folder
    if len(folders) > 1:
        raise click.UsageError("give one project folder at a time")
    project = read_project(folders[0], extras=extras, groups=groups)
    packed = click.get_current_context().with_resource(
        tempfile.TemporaryDirectory(prefix="rewheel-project-")
    )
    outside = [tree.repo, *([tree.work_dir] if tree.work_dir is not None else [])]
    sdist = pack_project(project, Path(packed), exclude=outside)
    return [*named, *(str(r) for r in project.roots)], (sdist,)


@cli.command()
@_tree_options
@click.option(
    "--dask",
    "dask",
    metavar="ADDRESS",
    default=None,
    help="Run the builds on a Dask cluster: its scheduler (tcp://HOST:PORT), or local:N for N "
    "local worker processes. Needs rewheel[dask]; see docs/dask.md.",
)
@click.option(
    "--advertise-host",
    default=None,
    help="With --dask: the address of this machine that the workers can reach.",
)
@_extras_option
@_groups_option
@_verbose_option
@_quiet_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="At the end, print what became of every package as one JSON object on stdout "
    "(docs/inspecting.md).",
)
def bootstrap(
    tree: _Tree,
    dask: str | None,
    advertise_host: str | None,
    extras: tuple[str, ...],
    groups: tuple[str, ...],
    verbose: int,
    quiet: int,
    as_json: bool,
) -> None:
    """Build REQUIREMENTS and everything they need, build tools included, from source.

    A REQUIREMENT that is a path (./project, /src/project) is a project folder with a
    pyproject.toml: the project and its whole tree are built (--extra, --group choose more).
    """
    named, local = _project_roots(tree, extras, groups)
    reqs = tree.requirement_set(named, project=bool(local))
    if not reqs.requirements:
        raise click.UsageError("name at least one requirement, or give -r FILE")
    if advertise_host is not None and dask is None:
        raise click.UsageError("--advertise-host goes with --dask")
    options = tree.options(reqs, dask=dask, advertise_host=advertise_host, local_sdists=local)
    # A live display when stderr is a terminal, timestamped lines otherwise.
    reporter = make_reporter(1 + verbose - quiet)
    started = time.monotonic()
    requested = [str(r) for r in reqs.requirements]
    try:
        with reporter:
            result = _runs().bootstrap(options, reporter=reporter, notice=reporter.note)
    except (RewheelError, KeyboardInterrupt) as exc:
        if as_json:
            seconds = time.monotonic() - started
            _echo_json(summary_json(None, tree.repo, seconds, requested=requested, error=exc))
        if isinstance(exc, KeyboardInterrupt) and not isinstance(exc, Interrupted):
            # Each wheel's record is saved when it is built: a re-run reuses them.
            raise Interrupted(_KEPT) from exc
        raise
    reporter.summary(result, tree.repo)
    if as_json:
        _echo_json(summary_json(result, tree.repo, time.monotonic() - started, requested=requested))
    if not result.ok:
        sys.exit(1)


_requirement_files_option = click.option(
    "-r",
    "--requirement",
    "requirement_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Requirements from this file (repeatable); --hash options in it are enforced.",
)
_constraint_files_option = click.option(
    "-c",
    "--constraint",
    "constraint_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Constrain versions with this file (repeatable).",
)


def _no_index_lines(reqs: RequirementSet) -> None:
    """What reads the repository, not an upstream, takes no index from a file."""
    for where, url in reqs.index_urls[:1]:
        raise ConfigError(
            f"{where}: the index {url} is not used here: this command reads the repository",
            step=Step.INPUT,
            hint="remove the --index-url line (the repository is given with --repo)",
        )


def _install_request(
    requirements: Sequence[str], requirement_files: Sequence[Path], constraint_files: Sequence[Path]
) -> tuple[list[str], list[str], dict[str, set[str]]]:
    """Requirements, constraints and allowed hashes from the command line and the files."""
    reqs = collect(list(requirements), list(requirement_files), list(constraint_files))
    _no_index_lines(reqs)
    if not reqs.requirements:
        raise click.UsageError("name at least one requirement, or give -r FILE")
    hashes = {str(name): digests for name, digests in reqs.hashes.items()}
    return [str(r) for r in reqs.requirements], [str(c) for c in reqs.constraints], hashes


@cli.command()
@_tree_options
@_extras_option
@_groups_option
@_verbose_option
@_quiet_option
@click.option("--dry-run", is_flag=True, help="Print the plan; build nothing.")
def update(
    tree: _Tree,
    extras: tuple[str, ...],
    groups: tuple[str, ...],
    verbose: int,
    quiet: int,
    dry_run: bool,
) -> None:
    """Re-resolve against the upstream, print what changes, then build only that.

    Without REQUIREMENTS (and -r, -c), those of the last run. The plan lists the new versions,
    the builds whose sdist, build environment or settings changed (rebuilt, with what changed),
    what stays, and what the tree no longer reaches (`rewheel prune` removes it). A project
    folder (./project) is packed again, as bootstrap packs it, and is its name's only candidate;
    its dependencies are re-resolved against the upstream."""
    named, local = _project_roots(tree, extras, groups)
    reqs = tree.requirement_set(named, project=bool(local))
    if not reqs.requirements:
        from .ui.graph_export import read_history

        last = read_history(tree.repo).latest
        if last is None or not last.requested:
            raise click.UsageError("name what to update, or bootstrap it first")
        reqs = collect(list(last.requested), [], [])
        _refuse_local_projects(tree.repo, reqs)
        reqs.constraints = [
            parse_requirement(c, where=f"the constraints of the {last.label}")
            for c in last.constraints
        ]
        click.echo(f"updating what the {printable(last.label)} asked for", err=True)
    options = tree.options(reqs, local_sdists=local)
    _echo_plan(
        _runs().plan_update(options, notice=lambda text: click.echo(f"note: {text}", err=True)),
        options.cache_url,
    )
    if dry_run:
        click.echo("dry run: nothing was built", err=True)
        return
    reporter = make_reporter(1 + verbose - quiet)
    try:
        with reporter:
            result = _runs().bootstrap(options, reporter=reporter, notice=reporter.note)
    except KeyboardInterrupt as exc:
        raise Interrupted(_KEPT) from exc
    reporter.summary(result, tree.repo)
    if not result.ok:
        sys.exit(1)


def _refuse_local_projects(repo: Path, reqs: RequirementSet) -> None:
    """Stop ``update`` from taking an upstream project for one the last run built from a project
    folder of the same name (it asked for ``name==version``): whoever publishes that name upstream
    would have it built in its place."""
    for req in reqs.requirements:
        pinned = [s.version for s in req.specifier if s.operator == "=="]
        if len(pinned) != 1:
            continue
        record = Repository(repo).load_record(canonicalize_name(req.name), pinned[0])
        if record is not None and record.sdist_url and is_local_sdist_url(record.sdist_url):
            folder = record.sdist_url.split("#", 1)[0]
            from urllib.parse import unquote, urlsplit

            path = printable(unquote(urlsplit(folder).path))
            raise click.UsageError(
                f"the last run built {req.name} {pinned[0]} from the project folder {folder}, and"
                " without it update would take what the upstream has under that name: name the"
                f" folder (`rewheel update {path}`, with its --extra and --group), or name what"
                " to update"
            )


def _echo_plan(plan: UpdatePlan, cache_url: str | None = None) -> None:
    from .core.update import Change

    for entry in plan.entries:
        if entry.change is Change.STAYS:
            continue
        label = {
            Change.NEW: "new",
            Change.REBUILD: "rebuild",
            Change.PREBUILT: "prebuilt",
            Change.FROM_CACHE: "cache",
            Change.UNKNOWN: "UNKNOWN",
        }
        why = f": {'; '.join(entry.reasons)}" if entry.reasons else ""
        click.echo(f"{label[entry.change]:<8}{printable(entry.node)}{printable(why)}")
    stays = plan.of(Change.STAYS)
    if stays:
        click.echo(f"stays   {', '.join(sorted(printable(e.node) for e in stays))}")
    for node in plan.unreached:
        click.echo(
            f"unused  {printable(node)}: the tree no longer needs it (rewheel prune removes it)"
        )
    new, rebuild = len(plan.of(Change.NEW)), len(plan.of(Change.REBUILD))
    prebuilt, cached = len(plan.of(Change.PREBUILT)), len(plan.of(Change.FROM_CACHE))
    from_cache = f", {cached} from cache" if cache_url is not None else ""
    click.echo(
        f"plan: {new} new, {rebuild} rebuilt{from_cache}, {prebuilt} pre-built,"
        f" {len(stays)} unchanged, {len(plan.unreached)} no longer needed",
        err=True,
    )
    if cache_url is not None:
        click.echo(
            "note: the build cache was asked as a run asks it (signature by a trusted key,"
            " record and statement, the sdist's build requirements, the key of the build"
            " environment resolved here), without downloading any wheel: that the wheel it serves"
            " is the signed one and can be published is checked only when it is taken; a package"
            " whose build tools are rebuilt here is planned as rebuilt, though a reproducible"
            " rebuild may keep its key and the cache's build",
            err=True,
        )


@cli.command()
@click.argument("requirements", nargs=-1)
@_requirement_files_option
@_constraint_files_option
@click.option(
    "--venv",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="The virtual environment to install into: made when it does not exist; one that "
    "exists must have been made from the Python rewheel runs on.",
)
@_repo_option
@_public_key_option
@_allow_prebuilt_option
def install(
    requirements: tuple[str, ...],
    requirement_files: tuple[Path, ...],
    constraint_files: tuple[Path, ...],
    venv: Path,
    repo: Path,
    public_keys: tuple[Path, ...],
    allow_prebuilt: bool,
) -> None:
    """Install REQUIREMENTS into VENV from the repository alone, once the chain of custody of
    every wheel to install is checked (nothing is installed if one is broken)."""
    reqs, constraints, hashes = _install_request(requirements, requirement_files, constraint_files)
    pins = app.install(
        reqs,
        venv,
        repo_root=repo,
        constraints=constraints,
        hashes=hashes,
        public_keys=public_keys,
        allow_prebuilt=allow_prebuilt,
    )
    if not public_keys:
        from .trust.chain import signing_note

        click.echo(f"note: {signing_note(Repository(repo))}", err=True)
    installed = ", ".join(f"{p.name}=={p.version}" for p in pins)
    click.echo(f"installed {len(pins)} package(s) into {venv}: {installed}", err=True)


@cli.command()
@click.argument("requirements", nargs=-1)
@_requirement_files_option
@_constraint_files_option
@_repo_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the lock file here (default: standard output); pylock.toml or"
    " pylock.NAME.toml selects --format pylock.",
)
@click.option(
    "--format",
    "lock_format",
    type=click.Choice(["requirements", "pylock"]),
    default=None,
    help="requirements (the default): a requirements file with --hash options; pylock: a"
    " PEP 751 pylock.toml, with the sdists the wheels were built from.",
)
@click.option(
    "--base-url",
    metavar="URL",
    default=None,
    help="pylock: where the repository is served (e.g. http://HOST:8080 of `rewheel serve`);"
    " its files get URLs under it. Without it, paths (relative to the -o file).",
)
@_public_key_option
@_allow_prebuilt_option
def lock(
    requirements: tuple[str, ...],
    requirement_files: tuple[Path, ...],
    constraint_files: tuple[Path, ...],
    repo: Path,
    output: Path | None,
    lock_format: str | None,
    base_url: str | None,
    public_keys: tuple[Path, ...],
    allow_prebuilt: bool,
) -> None:
    """Pin REQUIREMENTS and all they need at run time to the repository's wheels, with hashes.

    The requirements file written has exact versions and the sha256 of each wheel, resolved
    against the repository alone for this Python, once the chain of custody of each wheel is
    checked: `pip install --require-hashes --no-deps` and `uv pip sync` install exactly those
    files from the served repository. With --format pylock, a PEP 751 pylock.toml of the same
    wheels and their sdists: `uv pip install -r pylock.toml`."""
    from packaging.pylock import is_valid_pylock_path

    from .trust.pylock import Placement, check_pylock_name

    if lock_format is None:
        named = output is not None and is_valid_pylock_path(output)
        lock_format = "pylock" if named else "requirements"
    placement = None
    if lock_format == "pylock":
        if output is not None:
            check_pylock_name(output)
        if base_url is not None:
            placement = Placement.served_at(base_url)
        else:
            placement = Placement(lock_dir=output.parent if output is not None else None)
    elif base_url is not None:
        raise click.UsageError("--base-url applies to --format pylock")
    elif output is not None and is_valid_pylock_path(output):
        raise click.UsageError(
            f"{output.name} is a PEP 751 lock file name: use --format pylock, or another name"
        )
    reqs, constraints, hashes = _install_request(requirements, requirement_files, constraint_files)
    text = app.lock(
        reqs,
        repo_root=repo,
        constraints=constraints,
        hashes=hashes,
        public_keys=public_keys,
        allow_prebuilt=allow_prebuilt,
        pylock=placement,
    )
    if output is None:
        click.echo(text, nl=False)
    else:
        from .core.fsutil import atomic_write_text

        atomic_write_text(output, text)
        click.echo(f"wrote {output}", err=True)
    if not public_keys:
        from .trust.chain import signing_note

        click.echo(f"note: {signing_note(Repository(repo))}", err=True)


@cli.command()
@click.option(
    "--keep",
    "keep",
    multiple=True,
    metavar="REQ",
    help="Keep what this requirement needs (repeatable; each is resolved on its own).",
)
@click.option(
    "-r",
    "--requirement",
    "requirement_files",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Keep what the requirements of this file need, resolved together (repeatable).",
)
@_constraint_files_option
@_repo_option
@click.option("--dry-run", is_flag=True, help="Print what would go and what stays; change nothing.")
def prune(
    keep: tuple[str, ...],
    requirement_files: tuple[Path, ...],
    constraint_files: tuple[Path, ...],
    repo: Path,
    dry_run: bool,
) -> None:
    """Remove every package the kept requirements do not reach, at run time or as build tools.

    Their wheels, sdists, records, logs and provenance go (build tools are followed recursively,
    through each record's build environment); the index pages, build-order.json and graph.json
    are updated to match. --dry-run prints the plan: what goes, what stays and why."""
    keep_sets: list[tuple[str, list[str]]] = []
    hashes: dict[str, set[str]] = {}
    constraints = [str(c) for c in collect([], [], list(constraint_files)).constraints]
    for text in keep:
        keep_sets.append((text, [str(r) for r in collect([text], [], []).requirements]))
    for path in requirement_files:
        reqs = collect([], [path], [])
        _no_index_lines(reqs)
        keep_sets.append((f"-r {path}", [str(r) for r in reqs.requirements]))
        constraints += [str(c) for c in reqs.constraints]
        for name, digests in reqs.hashes.items():
            hashes.setdefault(str(name), set()).update(digests)
    if not keep_sets:
        raise click.UsageError("say what to keep: --keep REQ or -r FILE")
    result = app.prune(
        keep_sets, repo_root=repo, constraints=constraints, hashes=hashes, dry_run=dry_run
    )
    the_plan = result.plan
    for node, why in the_plan.kept.items():
        click.echo(f"keep    {node}: {why}")
    for node, files in the_plan.remove.items():
        click.echo(f"remove  {node}: reached by no kept requirement")
        for file in files:
            click.echo(f"          {printable(str(file))}")
    for file in the_plan.left_alone:
        click.echo(f"left    {printable(str(file))}: not a file of a package")
    _echo_notes(the_plan.notes)
    count = f"{len(the_plan.removed_files)} file(s) of {len(the_plan.remove)} package(s)"
    if dry_run:
        click.echo(
            f"would remove {count}, keeping {len(the_plan.kept)} package(s); dry run: nothing"
            " was removed",
            err=True,
        )
    else:
        click.echo(
            f"removed {len(result.removed)} file(s) of {len(the_plan.remove)} package(s), kept"
            f" {len(the_plan.kept)} package(s); the index, build-order.json and graph.json are"
            " updated",
            err=True,
        )


@cli.command()
@click.option(
    "--venv",
    default=None,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="The virtual environment to check (without it: every wheel of the repository).",
)
@_repo_option
@_allow_prebuilt_option
@click.option(
    "--check-upstream",
    is_flag=True,
    help="Also compare each sdist's sha256 with what the upstream index lists now.",
)
@click.option(
    "--index-url",
    default=app.DEFAULT_INDEX,
    show_default=True,
    envvar="REWHEEL_INDEX_URL",
    help="The upstream index, for --check-upstream.",
)
@click.option(
    "--index",
    metavar="URL",
    default=None,
    help="Check the index served at URL (its root, http://HOST:PORT/simple/) from outside, "
    "over HTTP only: every file against its page's sha256, each wheel's PEP 740 provenance "
    "(signed by --public-key) and its build tools and dependencies on the index.",
)
@_public_key_option
@click.option(
    "--allow-seed",
    is_flag=True,
    help="Accept the seed packages `python -m venv` installs (pip, setuptools) when their "
    "files are the wheels of this Python's ensurepip.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the findings as one JSON object on stdout (docs/inspecting.md).",
)
def verify(
    venv: Path | None,
    repo: Path,
    allow_prebuilt: bool,
    check_upstream: bool,
    index_url: str,
    index: str | None,
    public_keys: tuple[Path, ...],
    allow_seed: bool,
    as_json: bool,
) -> None:
    """Check that every file installed in VENV comes from a wheel of the repository (its
    byte-code compiles from those files, its pyvenv.cfg, python and activation scripts are what
    its creator writes), and the chain of custody of those wheels (or of all of them): built from
    source here, their dependencies and their build tools too. With --index URL, check what an
    index serves instead of a repository on disk."""
    if index is not None:
        if venv is not None or check_upstream:
            raise click.UsageError("--index checks a served index: it goes without --venv")
        served = app.verify_index(index, public_keys=public_keys, allow_prebuilt=allow_prebuilt)
        shown = without_credentials(index)  # output may be kept or shared: no password in it
        if as_json:
            _echo_json(_verify_json(None, None, None, served, index=shown))
        else:
            _echo_chain(served, scope="INDEX")
        _echo_notes(served.notes)
        where = printable(shown)
        if not served.entries and served.ok:
            click.echo(f"no wheel is served at {where}: nothing to verify", err=True)
            sys.exit(1)
        if not served.ok:
            broken = sum(not e.ok for e in served.entries)
            also = (
                f", and {len(served.problems)} problem(s) of the index" if served.problems else ""
            )
            click.echo(
                f"chain of custody broken for {broken} of {len(served.entries)} wheel(s) served"
                f" at {where}{also}",
                err=True,
            )
            sys.exit(1)
        click.echo(
            f"chain of custody holds for {len(served.entries)} wheel(s) served at {where}: "
            "built from source, dependencies built from source, build tools built from source",
            err=True,
        )
        return
    venv_ok = True
    packages = None
    report: VerifyReport | None = None
    if venv is not None:
        report = app.verify(venv, repo_root=repo, allow_seed=allow_seed)
        if not as_json:
            _echo_venv_report(report)
        for note in report.notes:
            click.echo(f"note: {note}", err=True)
        # Seed packages are not the repository's: there is no chain of custody to follow.
        venv_ok = report.ok
        packages = [c for c in report.checked if c not in report.seeds]
    chain = app.chain_of_custody(
        repo_root=repo,
        packages=packages,
        installed_only=venv is not None,
        allow_prebuilt=allow_prebuilt,
        upstream_url=index_url if check_upstream else None,
        public_keys=public_keys,
    )
    if as_json:
        _echo_json(_verify_json(repo, venv, report, chain))
    else:
        _echo_chain(chain)
    _echo_notes(chain.notes)
    if report is not None and not venv_ok:
        click.echo(f"{len(report.problems)} problem(s) in {venv}", err=True)
    if not chain.ok:
        broken = sum(not e.ok for e in chain.entries)
        also = f", and {len(chain.problems)} problem(s) of the repository" if chain.problems else ""
        click.echo(
            f"chain of custody broken for {broken} of {len(chain.entries)} wheel(s){also}",
            err=True,
        )
    if not venv_ok or not chain.ok:
        sys.exit(1)
    if report is not None:
        seeds = (
            f" ({len(report.seeds)} of them seed packages, checked against this Python's"
            " ensurepip wheels)"
            if report.seeds
            else ""
        )
        click.echo(f"{len(report.checked)} distributions verified against {repo}{seeds}", err=True)
    click.echo(
        f"chain of custody holds for {len(chain.entries)} wheel(s): built from source, "
        "dependencies built from source, build tools built from source",
        err=True,
    )


@cli.command()
@_repo_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option(
    "--max-connections",
    type=click.IntRange(min=1),
    default=64,
    show_default=True,
    help="Requests handled at once; idle and half-sent connections hold none.",
)
@click.option(
    "--header-timeout",
    type=click.FloatRange(min=0.1),
    default=10.0,
    show_default=True,
    help="Seconds a client has to send its request headers.",
)
@click.option(
    "--access-log",
    type=click.Path(dir_okay=False, allow_dash=True),
    default=None,
    help="Log every request, one line each in the combined log format of web servers, to "
    "FILE (appended; created readable by you alone) or to stderr with -.",
)
def serve(
    repo: Path,
    host: str,
    port: int,
    max_connections: int,
    header_timeout: float,
    access_log: str | None,
) -> None:
    """Serve the repository: the index for installers and browsable pages for people."""
    app.serve(
        repo,
        host,
        port,
        max_connections=max_connections,
        header_timeout=header_timeout,
        access_log=access_log,
    )


@cli.command()
@_repo_option
@click.option(
    "--html",
    "html_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the graph as one self-contained web page (nothing fetched from elsewhere).",
)
@click.option("--dot", is_flag=True, help="Print the graph in Graphviz DOT to stdout.")
def graph(repo: Path, html_file: Path | None, dot: bool) -> None:
    """Draw the dependency graph of the last runs (up to 50), failed and unbuilt packages
    marked (a web page, or Graphviz DOT)."""
    if html_file is None and not dot:
        raise click.UsageError("give --html FILE, --dot, or both")
    from .ui.graph_export import history_graph, read_history, to_dot, to_html

    history = read_history(repo)
    _echo_notes(history.notes)
    dependency_graph = history_graph(history)
    if html_file is not None:
        html_file.write_text(to_html(dependency_graph), encoding="utf-8")
        click.echo(f"wrote {html_file}", err=True)
    if dot:
        click.echo(to_dot(dependency_graph), nl=False)


@cli.command()
@click.argument("package")
@_repo_option
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print it as one JSON object on stdout (docs/inspecting.md).",
)
def why(package: str, repo: Path, as_json: bool) -> None:
    """Show every chain of requirements that brings PACKAGE (name or name==version) in, from the
    newest of the last runs (up to 50) that had it, and what became of it there.

    It also says when its wheel is no longer in the repository (removed by prune)."""
    from .ui.graph_export import read_history, why_data, why_lines

    history = read_history(repo)
    _echo_notes(history.notes)
    in_repository = _wheel_lookup(repo)
    if as_json:
        _echo_json(why_data(history, package, in_repository=in_repository))
        return
    for line in why_lines(history, package, in_repository=in_repository):
        click.echo(line)


def _wheel_lookup(repo_root: Path) -> Callable[[str, str], bool] | None:
    """Whether the repository holds a wheel of (name, version); None without a wheels/ folder."""
    repo = Repository(repo_root)
    if not repo.wheels_dir.is_dir():
        return None
    held = {(w.name, normal_version(w.version)) for w in repo.wheels()}
    return lambda name, version: (canonicalize_name(name), normal_version(version)) in held


def _echo_json(data: object) -> None:
    # ASCII only: text from packages cannot reach a terminal as control characters (JSON
    # escapes C0 ones, and ensure_ascii the C1 ones and bidirectional overrides).
    click.echo(json.dumps(data, indent=2))


def _echo_notes(notes: Sequence[str]) -> None:
    for note in notes:
        click.echo(f"note: {printable(note)}", err=True)


def _echo_venv_report(report: VerifyReport) -> None:
    with_problems = {(p.distribution, p.version) for p in report.problems}
    for name, version in report.checked:
        if (name, version) in with_problems:
            continue
        if (name, version) in report.seeds:
            click.echo(
                f"seed    {name} {version}: seed package of the venv, not from the "
                "repository: its files are the wheel of this Python's ensurepip"
            )
        else:
            click.echo(f"ok      {name} {version}")
    for problem in report.problems:
        where = f" {problem.path}" if problem.path else ""
        version = f" {problem.version}" if problem.version else ""
        click.echo(f"PROBLEM {problem.distribution}{version}{where}: {problem.reason}")


def _echo_chain(report: ChainReport, *, scope: str = "REPO") -> None:
    # Names, URLs and messages can come from a served index: shown without terminal controls.
    for e in report.entries:
        tag = "chain  " if e.ok else "CHAIN  "
        signed = f", signed by {e.signer}" if e.signer is not None else ""
        click.echo(
            printable(
                f"{tag} {e.name} {e.version}: built from source {e.source}, "
                f"dependencies {e.dependencies}, build tools {e.build_tools}{signed}"
            )
        )
        for problem in e.problems:
            click.echo(f"          - {printable(problem)}")
    for problem in report.problems:
        click.echo(f"{scope:<7} {printable(problem)}")


def _verify_json(
    repo: Path | None,
    venv: Path | None,
    report: VerifyReport | None,
    chain: ChainReport,
    *,
    index: str | None = None,
) -> dict[str, object]:
    """``rewheel verify --json`` (docs/inspecting.md): of a repository (and a venv), or of the
    ``index`` served at a URL."""
    distributions = []
    if report is not None:
        with_problems = {(p.distribution, p.version) for p in report.problems}
        for name, version in report.checked:
            seed = (name, version) in report.seeds
            status = "problem" if (name, version) in with_problems else "ok"
            distributions.append({"name": name, "version": version, "status": status, "seed": seed})
    return {
        "format": 1,
        "ok": (report is None or report.ok) and chain.ok,
        "repository": None if repo is None else str(repo.absolute()),
        "index": index,
        "venv": None if venv is None else str(venv.absolute()),
        "distributions": distributions,
        "problems": [
            {
                "distribution": p.distribution,
                "version": p.version,
                "path": p.path,
                "reason": p.reason,
            }
            for p in (report.problems if report is not None else [])
        ],
        "notes": list(report.notes) if report is not None else [],
        "chain": {
            "ok": chain.ok,
            "wheels": [
                {
                    "name": e.name,
                    "version": e.version,
                    "wheel": e.wheel,
                    "ok": e.ok,
                    "source": e.source.name.lower(),
                    "dependencies": e.dependencies.name.lower(),
                    "build_tools": e.build_tools.name.lower(),
                    "signer": e.signer,
                    "problems": list(e.problems),
                }
                for e in chain.entries
            ],
            "problems": list(chain.problems),
            "notes": list(chain.notes),
        },
    }


@cli.command()
@click.option(
    "--venv",
    default=None,
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="Describe this virtual environment (default: the whole repository).",
)
@_repo_option
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Write the SBOM here (default: standard output).",
)
def sbom(venv: Path | None, repo: Path, output: Path | None) -> None:
    """Write a CycloneDX SBOM (JSON) of VENV or of the repository, build tools included."""
    text = app.sbom(venv=venv, repo_root=repo, output=output)
    if output is None:
        click.echo(text, nl=False)
    else:
        click.echo(f"wrote {output}", err=True)


@cli.command()
@click.argument("packages", nargs=-1)
@click.option("--check", is_flag=True, help="Compare with the published wheels (required).")
@_repo_option
@_jobs_option
@_build_timeout_option
@_no_network_isolation_option
@_no_sandbox_option
@_settings_option
@_variant_option
@_work_dir_option
def rebuild(
    packages: tuple[str, ...],
    check: bool,
    repo: Path,
    jobs: int,
    build_timeout: float | None,
    no_network_isolation: bool,
    no_sandbox: bool,
    settings_dir: Path | None,
    variant: str | None,
    work_dir: Path | None,
) -> None:
    """Build PACKAGES (name or name==version; all when none) again from their records, in fresh
    environments of the same wheels, and compare each with the published wheel bit for bit."""
    if not check:
        raise click.UsageError("rebuild only checks (it never replaces a wheel): give --check")

    def show(result: RebuildResult) -> None:
        label = f"{result.name} {result.version} {result.wheel}"
        if result.status == "identical":
            click.echo(f"same    {label}")
        elif result.status == "different":
            click.echo(f"DIFFERS {label} (rebuilt: {result.kept})")
            for line in result.differences[:50]:
                click.echo(f"          - {line}")
            if len(result.differences) > 50:
                click.echo(f"          ... and {len(result.differences) - 50} more")
        elif result.status == "skipped":
            click.echo(f"skipped {label}: {result.reason}")
        else:
            click.echo(f"FAILED  {label}: {result.reason}")

    results = app.rebuild(
        list(packages),
        repo_root=repo,
        jobs=jobs,
        isolate_network=not no_network_isolation,
        sandbox=not no_sandbox,
        build_timeout=build_timeout,
        settings_dir=settings_dir,
        variant=variant,
        work_dir=work_dir,
        notice=lambda text: click.echo(f"note: {text}", err=True),
        progress=show,
    )
    counts = {s: sum(r.status == s for r in results) for s in ("identical", "different")}
    failed = sum(r.status == "failed" for r in results)
    click.echo(
        f"{len(results)} rebuilt: {counts['identical']} identical, {counts['different']} "
        f"different, {failed} failed",
        err=True,
    )
    if counts["different"] or failed:
        sys.exit(1)


@dataclass(frozen=True)
class Runs:
    """The runs the commands start; tests pass their own to ``main`` to see the options a
    command line becomes without building anything."""

    bootstrap: Callable[..., BootstrapResult] = app.bootstrap
    plan_update: Callable[..., UpdatePlan] = app.plan_update


def _runs() -> Runs:
    obj = click.get_current_context().obj
    return obj if isinstance(obj, Runs) else Runs()


EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report a command stopped by Ctrl-C


_KEPT = "what was built is kept, run the same command again to go on"


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what a command wants to say about it (``main`` says it)."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def _interrupted(exc: BaseException | None) -> NoReturn:
    if threading.current_thread() is threading.main_thread():
        # A second Ctrl-C must not turn the exit into a traceback (or a death by SIGINT).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    what = exc.what if isinstance(exc, Interrupted) else None
    click.echo(f"rewheel: interrupted{f'; {what}' if what else ''}", err=True)
    sys.exit(EXIT_INTERRUPTED)


def _variable_set(exc: click.BadParameter) -> str | None:
    """The ``REWHEEL_*`` variable a refused value came from, if it came from the environment."""
    param, ctx = exc.param, exc.ctx
    if not isinstance(param, click.Option) or ctx is None or param.name is None:
        return None
    if ctx.get_parameter_source(param.name) is not ParameterSource.ENVIRONMENT:
        return None
    names = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar or ())
    if ctx.auto_envvar_prefix is not None:
        names.append(f"{ctx.auto_envvar_prefix}_{param.name.upper()}")
    return next((n for n in names if os.environ.get(n)), None)


def main(argv: Sequence[str] | None = None, *, runs: Runs | None = None) -> None:
    """The entry point: every outcome becomes an exit code here (0 done, 1 some packages failed
    or problems found, 2 an error that stopped the command, 130 interrupted)."""
    try:
        # Defaults from rewheel.toml or pyproject.toml in this folder or the nearest above it;
        # the environment and the command line override them (click: command line >
        # environment > default_map > default).
        source = find_config(Path.cwd())
        defaults = default_map(source, schema_from_click(cli)) if source is not None else None
        code = cli.main(
            args=list(argv) if argv is not None else None,
            prog_name="rewheel",
            auto_envvar_prefix=ENV_PREFIX,
            default_map=defaults,
            obj=runs or Runs(),
            # Exceptions come here: click's own handling turns Ctrl-C into exit code 1.
            standalone_mode=False,
        )
    except click.BadParameter as exc:
        variable = _variable_set(exc)
        if variable is None:
            exc.show()
            sys.exit(exc.exit_code)
        # Named as the user set it, not as the option it stands for.
        click.echo(f"rewheel: error: {variable}: {exc.message}", err=True)
        sys.exit(2)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            _interrupted(exc.__cause__)
        click.echo("rewheel: aborted", err=True)  # end of input at a prompt
        sys.exit(1)
    except RewheelError as exc:
        click.echo(f"rewheel: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt as exc:
        _interrupted(exc)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
