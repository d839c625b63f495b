"""Wires the parts together for the commands: one place that builds real objects from options."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from .build.sandbox import Limits, limits_with, make_policy
from .build.settings import Settings
from .core import runstate
from .core.errors import ConfigError, RepositoryError, Step, UpstreamError
from .core.fsutil import sha256_file
from .core.history import KEEP_RUNS, RunRecord, run_id
from .core.records import BuildRecord
from .core.report import BootstrapResult, Outcome, Reporter
from .core.runstate import CACHE_FORMAT, interpreter_tag
from .core.types import Upstream, WheelRef
from .core.versions import normal_version
from .index.credentials import without_credentials
from .index.http import HttpClient, RetryPolicy
from .index.http import Limits as HttpLimits
from .index.local import LocalSdist, WithLocalSdists
from .index.upstream import HttpUpstream
from .repo.repository import Repository

if TYPE_CHECKING:
    from .build.pipeline import LocalSteps
    from .build.recipes import BuildRecipe
    from .build.runner import SubprocessRunner
    from .build.sandbox import SandboxPolicy
    from .core.bootstrap import Bootstrapper, SharedCache, Steps
    from .core.prune import PrunePlan, RepoFile
    from .core.resolver import Pin
    from .core.update import UpdatePlan
    from .repo.published_keys import PublicKey
    from .serve.server import IndexServer
    from .trust.custody import ChainReport
    from .trust.install import PinnedRelease
    from .trust.provenance import Signer
    from .trust.pylock import Placement
    from .trust.rebuild import RebuildResult
    from .trust.verify import VerifyReport

# The build machinery, the verifier and the SBOM library are imported where they are used: a
# re-run of bootstrap with nothing to do should not pay for loading them.

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
    sandbox: bool = True  # build code in bubblewrap; False only when the user says --no-sandbox
    strict_hashes: bool = False
    # The sha256 digests allowed for a project's sdist (``--hash`` options, a pylock.toml's sdist
    # entries), by normalized name: the bootstrap builds no other file of that project.
    sdist_hashes: Mapping[str, frozenset[str]] = field(default_factory=dict)
    settings_dir: Path | None = None
    variant: str | None = None
    keep_going: bool = False
    work_dir: Path | None = None
    # Sign each provenance statement (DSSE, PEP 740) with this Ed25519 key (PEM); None: with
    # the user's own key (trust.keys), made on first use. ``sign=False``: sign nothing.
    signing_key: Path | None = None
    sign: bool = True
    dask: str | None = None  # run the builds on a Dask cluster: tcp://HOST:PORT or local:N
    advertise_host: str | None = None  # the address Dask workers reach this machine at
    # Sdists made of project folders (``rewheel bootstrap ./project``): each is its project's only
    # candidate, whatever the upstream lists under that name (``index.local``).
    local_sdists: tuple[LocalSdist, ...] = ()
    # Another repository to take exact, signed builds from (trust.shared_cache), and the public
    # keys whose signatures it may carry besides the one this run signs with.
    cache_url: str | None = None
    cache_key_trust: list[Path] = field(default_factory=list)
    # Ask the index for every page, even one its max-age says is still fresh (``--refresh``).
    refresh: bool = False


# Index pages a no-op check revalidates at once: with the langchain example's 61 pages, 4 took
# half the time of one after the other (each connection's TLS handshake costs CPU: 8 no faster).
PAGE_CHECKS = 4


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Machine:
    """What a run takes from the machine and the network besides its options, each replaceable:
    tests hand in their own instead of patching rewheel's modules. ``None``: the real one."""

    http_client: Callable[[], HttpClient] = HttpClient
    limits: Callable[[float | None], Limits] = limits_with  # the sandbox's, from --build-timeout
    crates_io: Callable[[], bool] | None = None  # does crates.io answer (rust.crates_io_reachable)
    recipes: Callable[[str], BuildRecipe] | None = None  # a recipe by name (recipes.load_recipe)
    now: Callable[[], datetime] = _utc_now  # the time a run starts and ends, for its run file
    # The HTTP client that asks a shared build cache (--cache-url): shorter deadlines than an index.
    cache_client: Callable[[], HttpClient] | None = None
    # How a run hashes a repository file its hash cache does not know (tests count the calls).
    hasher: Callable[[Path], str] = sha256_file


def bootstrap(
    options: BootstrapOptions,
    *,
    reporter: Reporter | None = None,
    notice: Callable[[str], None] | None = None,
    machine: Machine = Machine(),
    planning: bool = False,
) -> BootstrapResult:
    """Build what ``options`` ask for. ``planning``: resolve and read the cache for real but build
    and write nothing (``core.update.PlanningSteps``): what would be built is in the result."""
    settings = Settings(options.settings_dir, variant=options.variant)
    if options.variant is not None and options.variant not in settings.variants():
        raise ConfigError(
            f"no settings declare the variant {options.variant!r}", step=Step.SETTINGS
        )
    repo = Repository(options.repo)
    from .trust.keys import default_key_file

    key_file = (options.signing_key or default_key_file()) if options.sign else None
    # Closed when the run ends, however it ends: the client, the page checks, the lock.
    scope = contextlib.ExitStack()
    client = machine.http_client()
    scope.callback(client.close)
    try:
        upstream = HttpUpstream(
            options.index_url,
            client,
            cache_dir=repo.root / "cache" / "http",
            strict=options.strict_hashes,
            refresh=options.refresh,
        )
        fp = runstate.fingerprint(
            requirements=options.requirements,
            constraints=options.constraints,
            settings_dir=options.settings_dir,
            variant=options.variant,
            index_url=upstream.index_url,  # without credentials: a new token builds nothing
            allow_prereleases=options.allow_prereleases,
            interpreter=interpreter_tag(),
            cache_format=CACHE_FORMAT,
            sdist_hashes=options.sdist_hashes,
        )
        # A project folder can change without its version: it is packed and checked anew.
        no_op_check = options.dask is None and not options.local_sdists
        # The last run's pages are asked for now, while the sandbox is probed and the repository
        # locked: on a re-run with nothing to do they are most of its time.
        checks = _PageChecks(repo, upstream, fp) if no_op_check else None
        if checks is not None:
            scope.callback(checks.stop)
        # Before the repository is made or locked: a machine that cannot sandbox builds refuses
        # to build at all (the checks above only read the index, and need a last run).
        sandbox = make_policy(
            enabled=options.sandbox,
            limits=machine.limits(options.build_timeout),
            hidden=[repo.root.resolve(), *_key_dirs(options.signing_key)],
        )
        if key_file is not None:
            _check_key_unseen(key_file, sandbox, repo)
        repo.ensure_layout()
        # This run's own decisions (the no-op check, the index pages) take hashes from the hash
        # cache; verify and the other proofs never do (repo.hashcache).
        repo.remember_hashes(hasher=machine.hasher)
        scope.enter_context(repo.locked())
    except BaseException:
        scope.close()
        raise
    with scope:
        plan_dir: Path | None = None
        started: datetime | None = None  # set once the run may change the repository
        bootstrapper: Bootstrapper[Any] | None = None
        try:
            if checks is not None:
                same = _same_as_last_run(repo, upstream, fp, checks)
                if not planning:  # a plan writes nothing into the repository
                    repo.save_hashes()
                if same is not None:
                    return same
            if not planning:
                # From here on the repository may change: the last run's state no longer holds.
                (repo.root / runstate.LAST_RUN).unlink(missing_ok=True)
                started = machine.now()
                # Once, at the start: pages of every wheel, whatever a killed run or a hand left;
                # each publication then rewrites only its own project's pages.
                repo.regenerate_index()

            from .build.buildenv import EnvBuilder
            from .build.metadata import MetadataSource
            from .build.pipeline import default_work_root, local_steps
            from .build.recipes import load_recipe
            from .build.reproducible import claimed_work_root
            from .build.runner import SubprocessRunner
            from .build.rust import crates_io_reachable
            from .core.bootstrap import Bootstrapper
            from .core.resolver import Resolver
            from .serve.server import IndexServer
            from .trust.attest import Attestor

            # A plan signs nothing: no key is made, none is published into the repository.
            signer = None if planning else _signer(options, key_file, repo, notice)

            def built_metadata(name: NormalizedName, version: Version) -> bytes | None:
                for ref in repo.find_wheels(name, str(version)):
                    path = repo.wheel_path(ref)
                    meta = path.with_name(path.name + ".metadata")
                    if meta.is_file():
                        return meta.read_bytes()
                return None

            if planning:  # a plan writes nothing into the repository, not even sdists
                plan_dir = Path(tempfile.mkdtemp(prefix="rewheel-plan-"))
            sdists = plan_dir if plan_dir is not None else repo.sdists_dir
            source: Upstream = (
                WithLocalSdists(upstream, options.local_sdists)
                if options.local_sdists
                else upstream
            )
            sdist_hashes = {
                canonicalize_name(name): frozenset(d.lower() for d in digests)
                for name, digests in options.sdist_hashes.items()
            }
            metadata = MetadataSource(
                source, sdists, built=built_metadata, sdist_hashes=sdist_hashes
            )
            resolver = Resolver(
                source,
                metadata,
                constraints=[*settings.pins, *options.constraints],
                allow_prereleases=options.allow_prereleases,
                sdist_hashes=sdist_hashes,
            )
            runner = SubprocessRunner(on_notice=notice, sandbox=sandbox)
            # Dask workers upload their wheels to the index server: only they get this token.
            upload_token = secrets.token_urlsafe(32) if options.dask is not None else None
            with (
                IndexServer(repo, _listen_host(options), upload_token=upload_token) as server,
                claimed_work_root(options.work_dir or default_work_root(repo)) as work_root,
            ):
                env_builder = EnvBuilder(
                    index_url=server.url,
                    runner=runner,
                    cache_dir=repo.root / "cache" / "uv",
                )
                steps = local_steps(
                    repo=repo,
                    upstream=source,
                    resolver=resolver,
                    metadata=metadata,
                    env_builder=env_builder,
                    runner=runner,
                    work_root=work_root,
                    build_timeout=options.build_timeout,
                    isolate_network=options.isolate_network,
                    settings=settings,
                    witness=Attestor(
                        repo,
                        signer=signer,
                        network_isolated=options.isolate_network,
                        sandbox=sandbox.as_record(network_isolated=options.isolate_network),
                        settings=settings,
                    ),
                    sandbox=sandbox,
                    crates_io=machine.crates_io or crates_io_reachable,
                    recipes=machine.recipes or load_recipe,
                    notice=notice,
                )
                with (
                    _build_steps(options, steps, server, planning) as chosen,
                    _stop_on_interrupt(runner),
                ):
                    if planning:
                        chosen = _planning_steps(steps, repo, source, settings, work_root)
                    bootstrapper = Bootstrapper(
                        chosen,
                        jobs=options.jobs,
                        reporter=reporter,
                        # A plan goes on past what it cannot plan, to show all it can.
                        keep_going=options.keep_going or planning,
                        shared_cache=_shared_cache(
                            options,
                            repo,
                            source,
                            signer.public_key
                            if signer is not None
                            else _own_key(options, key_file),
                            machine,
                            notice,
                            steps,
                            dry_run=planning,
                        ),
                        sdist_hashes={
                            canonicalize_name(name): digests
                            for name, digests in options.sdist_hashes.items()
                        },
                        past_builds=repo.past_builds,
                    )
                    result = bootstrapper.run(options.requirements)
        except BaseException as exc:
            if started is not None:
                # What the stopped run had done, and what stopped it; never in the way of the
                # error itself.
                partial = bootstrapper.partial() if bootstrapper is not None else None
                with contextlib.suppress(RepositoryError, ValueError):
                    _remember_run(repo, options, partial, started, machine.now(), error=exc)
                    from .ui.browse_pages import write_browse

                    write_browse(repo)  # the pages list what the stopped run failed on
            raise
        finally:
            client.close()
            if plan_dir is not None:
                shutil.rmtree(plan_dir, ignore_errors=True)
        if planning:
            return result
        repo.write_json("build-order.json", [r.to_json() for r in result.order])
        repo.write_json("graph.json", result.graph)
        repo.write_json("run-stats.json", run_stats(result, options.jobs))
        assert started is not None  # a run that returns before building returned above
        _remember_run(repo, options, result, started, machine.now())
        if result.ok and not options.local_sdists:
            repo.write_json(
                runstate.LAST_RUN,
                runstate.state(fp, upstream.page_digests, upstream.page_sizes),
            )
        repo.save_hashes()
        from .ui.browse_pages import write_browse

        write_browse(repo)
        return result


def _shared_cache(
    options: BootstrapOptions,
    repo: Repository,
    upstream: Upstream,
    own_key: PublicKey | None,
    machine: Machine,
    notice: Callable[[str], None] | None,
    steps: LocalSteps,
    *,
    dry_run: bool = False,
) -> SharedCache | None:
    """The shared build cache of ``--cache-url``, trusting the pinned keys and the run's own
    (``own_key``); it offers only builds made with ``steps``' interpreter and settings. A
    ``dry_run`` one checks what it can and takes nothing (a plan)."""
    if options.cache_url is None:
        return None
    from .trust.provenance import load_public_key_file
    from .trust.shared_cache import KeyInputs, SharedBuildCache, cache_source

    trusted = [load_public_key_file(path) for path in options.cache_key_trust]
    if own_key is not None:
        trusted.append(own_key)
    source = cache_source(options.cache_url, machine.cache_client or _cache_client)

    def inputs(pin: Pin) -> KeyInputs:
        return KeyInputs(steps.tag, steps.package_settings(pin).digest())

    return SharedBuildCache(
        source,
        repo,
        trusted=trusted,
        inputs=inputs,
        upstream=upstream,
        notice=notice,
        dry_run=dry_run,
    )


def _own_key(options: BootstrapOptions, key_file: Path | None) -> PublicKey | None:
    """The public half of the key a run would sign with, for a plan, which makes no key: the
    given one, or the user's own if it exists (a key not made yet has signed nothing)."""
    if key_file is None or not key_file.is_file():
        return None
    from .trust.keys import user_key
    from .trust.provenance import Signer

    if options.signing_key is not None:
        return Signer(options.signing_key).public_key
    return user_key(key_file).signer.public_key


def _cache_client() -> HttpClient:
    """A build cache is asked before each build: one that does not answer at once is not
    waited for (the package is built here instead)."""
    return HttpClient(
        limits=HttpLimits(page_seconds=30.0, download_seconds=300.0),
        policy=RetryPolicy(attempts=2, connect_timeout=5.0, read_timeout=15.0, hash_retries=0),
    )


@contextlib.contextmanager
def _stop_on_interrupt(runner: SubprocessRunner) -> Iterator[None]:
    """Ctrl-C stops the builds under way too: their commands run in sessions of their own, out
    of the terminal's reach, and the run would otherwise wait for each to end (and publish it
    with no record). Only the main thread can take SIGINT; elsewhere this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    stopping = False

    def interrupted(_signum: int, _frame: object) -> None:
        nonlocal stopping
        runner.stop()
        # Once: a second Ctrl-C while the run stops (writing its run file, closing its pool)
        # would break that off in a traceback; it only stops the builds again.
        if not stopping:
            stopping = True
            raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        yield
    finally:
        # After an interrupt, later ones are ignored until the process has said so and exited.
        signal.signal(signal.SIGINT, signal.SIG_IGN if stopping else previous)


def plan_update(
    options: BootstrapOptions,
    *,
    notice: Callable[[str], None] | None = None,
    machine: Machine = Machine(),
) -> UpdatePlan:
    """What a bootstrap of ``options`` would do now, found without building (``core.update``):
    the new versions, the rebuilds and why, what stays, and the packages of the repository the
    tree no longer reaches. ``rewheel update`` prints it, then bootstraps: the cache keys
    rebuild exactly what changed."""
    from .core.update import plan

    planned = bootstrap(options, notice=notice, machine=machine, planning=True)
    repo = Repository(options.repo)
    recorded = {
        r.node: record
        for r in planned.order
        if (record := repo.load_record(r.name, r.version)) is not None
    }
    held = [f"{w.name}=={normal_version(w.version)}" for w in repo.wheels()]
    return plan(planned, recorded=recorded, held=held)


def _planning_steps(
    steps: LocalSteps, repo: Repository, upstream: Upstream, settings: Settings, work: Path
) -> Steps[Any]:
    """``steps`` that build nothing (``core.update.PlanningSteps``); a new version's build
    requirements are read from its sdist (a project folder's: the one packed of it), downloaded
    into ``work`` (not the repository)."""
    from .build.prepare import peek_build_requires
    from .core.update import PlanningSteps

    def peek(pin: Pin) -> tuple[str, ...]:
        with tempfile.TemporaryDirectory(prefix="plan-", dir=work) as folder:
            return peek_build_requires(upstream, pin, settings, Path(folder))

    return PlanningSteps(
        steps,
        recorded=lambda pin: repo.load_record(pin.name, str(pin.version)),
        prebuilt_allowed=lambda pin: steps.package_settings(pin).prebuilt,
        peek=peek,
    )


def _remember_run(
    repo: Repository,
    options: BootstrapOptions,
    result: BootstrapResult | None,
    started: datetime,
    finished: datetime,
    *,
    error: BaseException | None = None,
) -> None:
    """Write the run's file in ``runs/`` (``core.history``): what it was asked for and what became
    of every package, so that ``why`` and the pages know it after later runs."""
    record = RunRecord.of(
        result,
        id=run_id(started, secrets.token_hex(4)),
        started=started,
        finished=finished,
        requested=[str(r) for r in options.requirements],
        constraints=[str(c) for c in options.constraints],
        error=error,
    )
    repo.write_run(record, keep=KEEP_RUNS)


def _key_dirs(key: Path | None) -> list[Path]:
    """The folder of the signing key: never shown to a build, even if it is on PATH."""
    return [] if key is None else [key.resolve().parent]


def _check_key_unseen(key_file: Path, sandbox: SandboxPolicy, repo: Repository) -> None:
    """Refuse a signing key that build code or the index could read: in a folder every box
    shows (``hidden`` cannot take a key out of ``/usr`` or the interpreter's prefix), or in the
    repository, which is served."""
    folder = key_file.resolve().parent
    where = "" if folder == key_file.parent else f" (really {folder})"
    hint = (
        "keep the signing key elsewhere: --signing-key FILE, or XDG_DATA_HOME for the key"
        " rewheel makes; or build without signing (--no-sign)"
    )
    if sandbox.shows(folder):
        raise ConfigError(
            f"the signing key {key_file} is in {key_file.parent}{where}, which the sandbox"
            " shows to every build (read-only): build code could read it",
            step=Step.SIGN,
            hint=hint,
        )
    root = repo.root.resolve()
    if folder == root or root in folder.parents:
        raise ConfigError(
            f"the signing key {key_file} is inside the repository {repo.root}, whose files are"
            " served",
            step=Step.SIGN,
            hint=hint,
        )


def _signer(
    options: BootstrapOptions,
    key_file: Path | None,
    repo: Repository,
    notice: Callable[[str], None] | None,
) -> Signer | None:
    """The run's signer (None with ``sign=False``): the given key, or the user's own, made on
    first use; its public key is published in the repository (``keys/<keyid>.pub.pem``)."""
    if key_file is None:
        return None
    from .repo.published_keys import publish_key
    from .trust.keys import user_key
    from .trust.provenance import Signer

    if options.signing_key is not None:
        signer = Signer(options.signing_key)
    else:
        made = user_key(key_file)
        signer = made.signer
        if made.created and notice is not None:
            notice(
                f"made a signing key for you at {made.path} (Ed25519; keep it, back it up):"
                f" fingerprint {signer.keyid}"
            )
    try:
        publish_key(repo.root, signer.public_key)
    except OSError as exc:
        raise RepositoryError(
            f"cannot publish the public key in {repo.root}: {exc}", step=Step.SIGN
        ) from exc
    if notice is not None and not options.sandbox:
        notice(
            f"--no-sandbox: build code runs as you and can read the signing key {key_file};"
            " its signatures then prove less (docs/threat-model.md)"
        )
    return signer


class _PageChecks:
    """The last run's index pages, asked for a few at a time (``PAGE_CHECKS``), the largest
    first, from when it is made: when ``fp`` is the last run's fingerprint, and only then."""

    def __init__(self, repo: Repository, upstream: HttpUpstream, fp: str) -> None:
        last = runstate.load(repo.root)
        self._pool: ThreadPoolExecutor | None = None
        self._asked: list[Future[str | None]] = []
        if last is None or last.get("fingerprint") != fp:
            return  # what makes the run changed: no page needs asking for
        self._pool = ThreadPoolExecutor(PAGE_CHECKS, thread_name_prefix="rewheel-noop")
        self._asked = [
            self._pool.submit(_page_digest, upstream, name) for name in runstate.largest_first(last)
        ]

    def wait(self) -> None:
        wait(self._asked)

    def stop(self) -> None:
        """Ask for no more pages; wait for those being fetched."""
        for future in self._asked:
            future.cancel()
        if self._pool is not None:
            self._pool.shutdown(wait=True)


def _same_as_last_run(
    repo: Repository, upstream: HttpUpstream, fp: str, checks: _PageChecks
) -> BootstrapResult | None:
    """The last run's result, when nothing that made it has changed (see ``runstate``). The
    pages ``checks`` asks for (one after the other they were most of a no-op run's time) are
    fetched while the repository is read; a wheel gone stops them."""
    last = runstate.load(repo.root)  # again, now that the repository is locked
    if last is None or last.get("fingerprint") != fp:
        return None
    held = _last_order_held(repo)
    if held is None:
        checks.stop()
        return None
    checks.wait()
    order, graph, wheels = held
    # A page the checks did not ask for (the last run's file changed since) is asked for here.
    if not runstate.unchanged(
        last, fp, page_digest=upstream.page_digest, order=order, wheels=wheels
    ):
        return None
    return BootstrapResult(
        order=order,
        graph=graph,
        failures={},
        built=0,
        reused=len(order),
        outcomes={r.node: Outcome.REUSED for r in order},
    )


def _last_order_held(
    repo: Repository,
) -> tuple[list[BuildRecord], dict[str, Any], list[WheelRef]] | None:
    """The last run's build order and graph, and those of its wheels the repository still holds
    (with their sha256); None when they cannot be read or a wheel is gone."""
    try:
        listed = json.loads((repo.root / "build-order.json").read_text())
        graph = json.loads((repo.root / "graph.json").read_text())
        if not isinstance(listed, list) or not isinstance(graph, dict):
            return None
        order = [BuildRecord.from_json(entry) for entry in listed]
    except (OSError, ValueError):  # RecordError is a ValueError
        return None
    # Only the wheels the last run listed are looked at, not every wheel of the repository.
    held = []
    for r in order:
        sha = repo.wheel_sha256(r.wheel)
        if sha is None:
            return None
        held.append(WheelRef(canonicalize_name(r.name), r.version, r.wheel, sha))
    return order, graph, held


def _page_digest(upstream: HttpUpstream, name: object) -> str | None:
    try:
        return upstream.page_digest(canonicalize_name(str(name)))
    except UpstreamError:
        return None  # runstate.unchanged asks again and takes the error as "changed"


def run_stats(result: BootstrapResult, jobs: int) -> dict[str, object]:
    """Figures of the last run, for people and benchmarks: how much was built and how busy the
    cores were while builds were under way."""
    cores = os.cpu_count() or 1
    window = result.build_window_seconds
    busy = result.queued_cpu[0]
    return {
        "built": result.built,
        "reused": result.reused,
        "prebuilt": result.prebuilt,
        "failed": len(result.failures),
        "jobs": jobs,
        "cores": cores,
        "max_parallel_builds": result.max_parallel_builds,
        "build_window_seconds": round(window, 3),
        "build_window_cpu_seconds": round(result.build_window_cpu_seconds, 3),
        "core_utilisation_while_building": (
            round(result.build_window_cpu_seconds / (window * cores), 3) if window > 0 else None
        ),
        # While builds were queued for a slot: the machine's busy share of its CPU time.
        "queued_seconds": round(result.queued_seconds, 3),
        "core_utilisation_while_queued": (
            round(busy / total, 3) if (total := result.queued_cpu[1]) > 0 else None
        ),
    }


def _listen_host(options: BootstrapOptions) -> str:
    """The index server listens on loopback, unless Dask workers elsewhere must reach it."""
    host = options.advertise_host if options.dask is not None else None
    if host is None:
        return "127.0.0.1"
    return "::" if ":" in host else "0.0.0.0"


@contextlib.contextmanager
def _build_steps(
    options: BootstrapOptions, local: LocalSteps, server: IndexServer, planning: bool = False
) -> Iterator[Steps[Any]]:
    """``local`` itself, or with ``options.dask`` steps that run its builds on a Dask cluster
    (not for ``planning``: nothing is built)."""
    if options.dask is None or planning:
        yield local
        return
    try:
        from .dask.dask_steps import dask_steps  # an optional dependency: rewheel[dask]
    except ImportError as exc:
        raise ConfigError(
            f"--dask needs dask.distributed (pip install 'rewheel[dask]'): {exc}", step=Step.DASK
        ) from exc
    with dask_steps(
        local, options.dask, server=server, advertise_host=options.advertise_host
    ) as steps:
        yield steps


def install(
    requirements: Sequence[str],
    venv: Path,
    *,
    repo_root: Path,
    constraints: Sequence[str] = (),
    hashes: Mapping[str, Collection[str]] | None = None,
    public_keys: Sequence[Path] = (),
    allow_prebuilt: bool = False,
) -> list[PinnedRelease]:
    """Install from the repository's index, after checking the chain of custody of every wheel
    the resolution chose (with ``public_keys``, that one of them signed each); what was
    installed."""
    repo = _existing_repository(repo_root, Step.INSTALL)
    from .serve.server import IndexServer

    with IndexServer(repo) as server:
        from .trust.install import custody_check, install_into_venv

        return install_into_venv(
            requirements,
            venv,
            index_url=server.url,
            check=custody_check(repo, public_keys=public_keys, allow_prebuilt=allow_prebuilt),
            constraints=constraints,
            hashes=hashes,
            python=Path(sys.executable),
            log=repo.logs_dir / "install.log",
        )


def lock(
    requirements: Sequence[str],
    *,
    repo_root: Path,
    constraints: Sequence[str] = (),
    hashes: Mapping[str, Collection[str]] | None = None,
    public_keys: Sequence[Path] = (),
    allow_prebuilt: bool = False,
    pylock: Placement | None = None,
) -> str:
    """A requirements file of exact versions and the sha256 of the repository's wheels for
    ``requirements`` and their whole run-time closure (resolved against the repository alone,
    for this interpreter), once the chain of custody of each is checked. With ``pylock`` (where
    its readers find the repository's files), a PEP 751 ``pylock.toml`` of the same wheels, with
    the sdists they were built from."""
    repo = _existing_repository(repo_root, Step.LOCK_FILE)
    from .serve.server import IndexServer
    from .trust.install import custody_check, lock_text, resolve

    with IndexServer(repo) as server:
        pins = resolve(
            requirements,
            index_url=server.url,
            constraints=constraints,
            hashes=hashes,
            python=Path(sys.executable),
            log=repo.logs_dir / "install.log",
            step=Step.LOCK_FILE,
        )
    check = custody_check(
        repo, public_keys=public_keys, allow_prebuilt=allow_prebuilt, step=Step.LOCK_FILE
    )
    pins = check(pins)  # wheels only: not the sdist an index may list beside one
    asked = ", ".join([*requirements, *(f"-c {c}" for c in constraints)])
    if pylock is not None:
        return _pylock(repo, pins, pylock, requirements, asked)
    return lock_text(
        pins,
        header=[
            f"rewheel lock of {asked}",
            f"from the repository {repo.root.resolve()}, for {_interpreter_label()}",
            "pip install --require-hashes --no-deps --index-url URL/simple -r THIS-FILE",
            "uv pip sync --require-hashes --index-url URL/simple THIS-FILE",
            "(URL: where the repository is served, e.g. `rewheel serve`)",
        ],
    )


def _pylock(
    repo: Repository,
    pins: Sequence[PinnedRelease],
    placement: Placement,
    requirements: Sequence[str],
    asked: str,
) -> str:
    from packaging.markers import default_environment

    from .trust.pylock import lock_packages, pylock_document, pylock_text

    environment = {key: str(value) for key, value in default_environment().items()}
    packages = lock_packages(
        repo, pins, placement=placement, roots=requirements, environment=environment
    )
    if placement.base_url is not None:
        where = f"served at {placement.base_url}"
    else:
        where = "files by path" + (", relative to this file" if placement.lock_dir else "")
    document = pylock_document(packages, environment=environment, index_url=placement.index_url())
    return pylock_text(
        document,
        header=[
            f"rewheel lock of {asked}",
            f"from the repository {repo.root.resolve()} ({where}), for {_interpreter_label()}",
            "uv pip install -r THIS-FILE (or uv pip sync THIS-FILE); chains of custody checked",
        ],
    )


def _interpreter_label() -> str:
    import platform
    import sysconfig

    return (
        f"{platform.python_implementation()} {platform.python_version()}"
        f" on {sysconfig.get_platform()}"
    )


def _existing_repository(repo_root: Path, step: Step) -> Repository:
    """The repository at ``repo_root``, which must be one (a mistyped --repo is not made)."""
    repo = Repository(repo_root)
    repo.require_existing(step=step)
    return repo


@dataclass(frozen=True)
class PruneResult:
    plan: PrunePlan
    removed: list[RepoFile]  # what was removed (nothing on a dry run)
    dry_run: bool


def prune(
    keep_sets: Sequence[tuple[str, Sequence[str]]],
    *,
    repo_root: Path,
    constraints: Sequence[str] = (),
    hashes: Mapping[str, Collection[str]] | None = None,
    dry_run: bool = False,
) -> PruneResult:
    """Remove the wheels, sdists, records, logs and provenance of the packages no kept
    requirement reaches, at run time or as a build tool (recursively), under the repository's
    lock. ``keep_sets``: (what to call it, its requirements), each resolved against the
    repository on its own (a ``--keep REQ``, or a whole ``-r`` file), ``constraints`` applying
    to each. A kept package whose record cannot be read stops it: its build tools are unknown.
    """
    from .core.prune import file_node, keep, plan
    from .repo.prune import after_removal, build_envs, list_files, remove_files
    from .serve.server import IndexServer
    from .trust.install import resolve

    if not keep_sets:
        raise ConfigError("name what to keep", step=Step.PRUNE)
    repo = _existing_repository(repo_root, Step.PRUNE)
    with repo.locked():
        roots: dict[str, list[str]] = {}
        with IndexServer(repo) as server:
            for label, requirements in keep_sets:
                pins = resolve(
                    requirements,
                    index_url=server.url,
                    constraints=constraints,
                    hashes=hashes,
                    python=Path(sys.executable),
                    log=None,  # a dry run changes nothing; uv's reason is in its error
                    step=Step.PRUNE,
                )
                roots[label] = [
                    f"{canonicalize_name(p.name)}=={normal_version(p.version)}" for p in pins
                ]
        files, folder_notes = list_files(repo)
        envs, unreadable = build_envs(repo, files)
        kept = keep(roots, envs)
        blocking = sorted(why for node, why in unreadable.items() if node in kept)
        if blocking:
            raise RepositoryError(
                "refusing to prune: the build tools of a kept package are unknown, "
                + "; ".join(blocking),
                step=Step.PRUNE,
                hint="nothing was removed; restore the record (or remove that package's wheel"
                " and build it again)",
            )
        listed = {node for f in files if (node := file_node(f)) is not None}
        notes = folder_notes + [
            f"{node} ({why}) is not in the repository"
            for node, why in sorted(kept.items())
            if node not in listed
        ]
        the_plan = plan(files, kept, notes=notes)
        removed: list[RepoFile] = []
        if not dry_run and the_plan.remove:
            removed = remove_files(repo, the_plan.removed_files)
            after_removal(repo, the_plan.remove)
            from .ui.browse_pages import write_browse

            write_browse(repo)
        return PruneResult(the_plan, removed, dry_run)


def verify(venv: Path, *, repo_root: Path, allow_seed: bool = False) -> VerifyReport:
    """Check ``venv`` against the repository; the seed packages ``python -m venv`` installs
    (pip, setuptools) are checked against this interpreter's ensurepip wheels, and accepted
    with ``allow_seed``."""
    repo = Repository(repo_root)
    wheels = [(ref, repo.wheel_path(ref)) for ref in repo.wheels()]
    from .trust.seed import seed_wheels
    from .trust.verify import verify_venv

    python = Path(sys.executable)
    return verify_venv(
        venv, wheels, python=python, seeds=seed_wheels(python), allow_seed=allow_seed
    )


def serve(
    repo_root: Path,
    host: str,
    port: int,
    log: Callable[[str], None] | None = None,
    *,
    max_connections: int = 64,
    header_timeout: float = 10.0,
    access_log: str | None = None,
) -> None:
    """Serve an existing repository until interrupted; ``access_log``: a file, or ``-`` for
    stderr. A repository that is not there, a port in use or a bad host is a ConfigError
    before anything is written."""
    repo = Repository(repo_root)
    repo.require_existing(step=Step.SERVE)
    from .serve.server import AccessLog, IndexServer
    from .ui.browse_pages import write_browse

    requests = AccessLog.open(access_log) if access_log is not None else None
    try:
        server = IndexServer(
            repo,
            host,
            port,
            log=log,
            max_connections=max_connections,
            header_timeout=header_timeout,
            access_log=requests,
        )
        repo.ensure_layout()
        repo.regenerate_index()
        write_browse(repo)
        print(f"serving {repo.root.resolve()} at {server.url}/", file=sys.stderr, flush=True)
        server.serve_forever()
    finally:
        if requests is not None:
            requests.close()


def chain_of_custody(
    *,
    repo_root: Path,
    packages: Sequence[tuple[str, str]] | None,
    installed_only: bool = False,
    allow_prebuilt: bool = False,
    upstream_url: str | None = None,
    public_keys: Sequence[Path] = (),
) -> ChainReport:
    """``verify_chain`` on the repository; ``upstream_url`` also checks sdists against the index."""
    from .trust.chain import verify_chain

    repo = Repository(repo_root)
    if not repo.wheels_dir.is_dir():
        raise ConfigError(f"{repo_root} is not a rewheel repository (no wheels/)", step=Step.VERIFY)
    client = HttpClient() if upstream_url is not None else None
    try:
        upstream = (
            # A proof asks the index about every page, however fresh the cached one is.
            HttpUpstream(upstream_url, client, cache_dir=repo.root / "cache" / "http", refresh=True)
            if upstream_url is not None and client is not None
            else None
        )
        return verify_chain(
            repo,
            packages,
            allow_prebuilt=allow_prebuilt,
            upstream=upstream,
            public_keys=public_keys,
            installed_only=installed_only,
        )
    finally:
        if client is not None:
            client.close()


def verify_index(
    index_url: str,
    *,
    public_keys: Sequence[Path] = (),
    allow_prebuilt: bool = False,
    machine: Machine = Machine(),
) -> ChainReport:
    """``served.verify_index`` on the index at ``index_url``, over HTTP; downloads go through
    a private temporary folder."""
    import tempfile

    from .trust.provenance import load_public_key_files
    from .trust.served import verify_index as check

    if urlsplit(index_url).scheme not in ("http", "https"):
        raise ConfigError(
            "--index takes the URL of an index (http:// or https://), not "
            f"{without_credentials(index_url)!r}",
            step=Step.VERIFY,
        )
    keys = list(load_public_key_files(public_keys).values())
    client = machine.http_client()
    try:
        with tempfile.TemporaryDirectory(prefix="rewheel-verify-") as scratch:
            return check(
                client,
                index_url,
                scratch=Path(scratch),
                public_keys=keys,
                allow_prebuilt=allow_prebuilt,
            )
    finally:
        client.close()


def sbom(*, venv: Path | None, repo_root: Path, output: Path | None) -> str:
    """A CycloneDX SBOM (JSON) of ``venv``, or of the repository when no venv is given."""
    from .trust.sbom import write_sbom

    return write_sbom(output, venv=venv, repo_root=repo_root)


def rebuild(
    packages: Sequence[str],
    *,
    repo_root: Path,
    jobs: int,
    isolate_network: bool = True,
    sandbox: bool = True,
    build_timeout: float | None = None,
    settings_dir: Path | None = None,
    variant: str | None = None,
    work_dir: Path | None = None,
    notice: Callable[[str], None] | None = None,
    progress: Callable[[RebuildResult], None] | None = None,
) -> list[RebuildResult]:
    """Build ``packages`` (all when none) again without publishing; compare with the repository.

    ``work_dir``: the build root (default: the same one a bootstrap uses)."""
    from .trust.rebuild import rebuild_check

    return rebuild_check(
        repo_root,
        packages,
        jobs=jobs,
        isolate_network=isolate_network,
        sandbox=make_policy(
            enabled=sandbox,
            limits=limits_with(build_timeout),
            # The user's data folder, with the signing key, make_policy hides in every box.
            hidden=[repo_root.resolve()],
        ),
        build_timeout=build_timeout,
        settings_dir=settings_dir,
        variant=variant,
        work_dir=work_dir,
        notice=notice,
        progress=progress,
    )
