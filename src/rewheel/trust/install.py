"""Install into a virtual environment from the local repository's index alone, and lock against it.

Everything that could make uv look elsewhere is switched off: uv's configuration files
(``--no-config``), every inherited ``UV_*`` and ``PIP_*`` variable, the user's home and XDG
directories (``buildenv.scrubbed_environ``), uv's shared cache, options inside a constraints file
and direct-URL requirements. The only index uv sees is the one passed in.

Nothing is installed before it is checked. The requirements are first resolved
(``resolve``: ``uv pip compile --generate-hashes``) into exact releases with the sha256 of every
file uv may take for each, kept to the hashes the requirements allow when they give some
(``--hash``); the ``CustodyCheck`` is given those, and ``custody_check`` refuses unless each
file is a wheel of the repository whose chain of custody holds (``chain.verify_chain``: build
record, provenance, kept sdist, metadata, index pages, the signature with a public key, and the
same for its dependencies and build tools; hashes only, nothing is rebuilt). Only then is the
venv made (or the existing one, made from the same interpreter, used) and exactly those files
installed, hashes required, dependencies not resolved again: a wheel swapped after the check
fails uv's hash check. The same pins, written out (``lock_text``), are what ``rewheel lock``
gives: a requirements file pip and uv install with ``--require-hashes``.

When uv fails, its own reason (the end of what it wrote, terminal escapes taken out) is in the
error; everything it wrote is in the log.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..build.buildenv import scrubbed_environ
from ..core.errors import ConfigError, IntegrityError, RewheelError, Step
from ..core.versions import normal_version
from ..repo.repository import Repository
from ..ui.text import printable
from .chain import verify_chain
from .venvfiles import pyvenv_keys

_STEP = Step.INSTALL
# What of uv's output an error message carries: its reason, not its whole story (that is the log).
MAX_REASON_LINES = 25
MAX_REASON_CHARS = 3000
# Terminal escape sequences (CSI, OSC, and the two-character ones) uv may colour its output with.
_ESCAPE = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])")
# Where uv's reason starts: "error: ..." or a diagnostic block, whose first line starts with a
# multiplication sign.
_REASON_START = re.compile(r"^\s*(?:\u00d7|error:|ERROR:)")

# What older uv versions wrote into every venv: a distutils patch run at startup through a
# ``.pth`` file. Python >= 3.10 does not need it, and `rewheel verify` accepts no file in
# site-packages that no wheel put there, so it is removed right after the venv is made.
_VIRTUALENV_PATCH = ("_virtualenv.pth", "_virtualenv.py")


def _check_requirement(text: str, where: str) -> None:
    # Only PEP 508 requirements by name: uv would read "-e ...", "--index-url=..." as options and
    # fetch a "name @ url" requirement from that URL, past the index.
    try:
        req = Requirement(text)
    except InvalidRequirement as exc:
        raise ConfigError(f"invalid requirement {text!r} {where}: {exc}", step=_STEP) from exc
    if req.url is not None:
        raise ConfigError(f"{text!r} {where}: a direct URL would bypass the repository", step=_STEP)


def _check_requirements(requirements: Sequence[str], constraints: Sequence[str]) -> list[str]:
    if not requirements:
        raise ConfigError("nothing to install", step=_STEP)
    for text in requirements:
        _check_requirement(text, "on the command line")
    for text in constraints:
        _check_requirement(text, "in the constraints")
    return list(requirements)


@dataclass(frozen=True)
class PinnedRelease:
    """One release the resolution chose, with the sha256 of every file uv may install for it."""

    name: str
    version: str
    sha256: tuple[str, ...]


# Called with what is about to be installed; raises to refuse (nothing is installed then), or
# returns what to install: the same releases, each kept to the files that may be installed.
CustodyCheck = Callable[[Sequence[PinnedRelease]], list[PinnedRelease]]

_PIN = re.compile(r"(?P<req>[^\s]+)(?P<hashes>(?:\s+--hash=sha256:[0-9a-fA-F]{64})*)")


def parse_pins(text: str) -> list[PinnedRelease]:
    """The releases of a ``uv pip compile --generate-hashes --no-header --no-annotate`` output."""
    out = []
    for line in text.replace("\\\n", " ").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        found = _PIN.fullmatch(line)
        try:
            req = Requirement(found["req"]) if found else None
        except InvalidRequirement:
            req = None
        specs = list(req.specifier) if req is not None else []
        if found is None or req is None or len(specs) != 1 or specs[0].operator != "==":
            raise RewheelError(f"unexpected line in the resolution: {line!r}", step=_STEP)
        hashes = tuple(h.lower() for h in re.findall(r"[0-9a-fA-F]{64}", found["hashes"]))
        if not hashes:
            raise RewheelError(f"no hash for {req.name} in the resolution", step=_STEP)
        out.append(PinnedRelease(req.name, specs[0].version, hashes))
    return out


def custody_check(
    repo: Repository,
    *,
    public_keys: Sequence[Path] = (),
    allow_prebuilt: bool = False,
    step: Step = _STEP,
) -> CustodyCheck:
    """A check that refuses any file not a wheel of ``repo`` with its chain of custody whole;
    its error names ``step`` (installing, or writing a lock file). The sdist a wheel was built
    from, which the index may list beside it, is not refused but left out: uv never builds here
    (``--no-build``), and a lock lists wheels only."""
    if step is Step.LOCK_FILE:
        doing, done = "lock", "no lock file was written"
    else:
        doing, done = "install", "nothing was installed"

    def check(pins: Sequence[PinnedRelease]) -> list[PinnedRelease]:
        by_sha = {w.sha256: w for w in repo.wheels()}
        problems = []
        wheels_only = []
        for pin in pins:
            # The pages list the sdists the wheels were built from too (for `pip download`): uv
            # hashes them with the release, and never builds one here (--no-build).
            record = repo.load_record(canonicalize_name(pin.name), normal_version(pin.version))
            sdist = record.sdist_sha256 if record is not None else None
            kept = tuple(h for h in pin.sha256 if h != sdist)
            wheels_only.append(replace(pin, sha256=kept))
            for sha256 in kept:
                ref = by_sha.get(sha256)
                if (
                    ref is None
                    or ref.name != canonicalize_name(pin.name)
                    or normal_version(ref.version) != normal_version(pin.version)
                ):
                    problems.append(
                        f"{pin.name} {pin.version}: the index offers a file (sha256 {sha256})"
                        " that is not a wheel of the repository"
                    )
        report = verify_chain(
            repo,
            [(p.name, p.version) for p in pins],
            installed_only=True,
            public_keys=public_keys,
            allow_prebuilt=allow_prebuilt,
        )
        for entry in report.entries:
            if not entry.ok:
                problems.append(f"{entry.wheel or entry.name}: " + "; ".join(entry.problems))
        problems += report.problems
        if problems:
            raise IntegrityError(
                f"refusing to {doing}, the chain of custody is broken:\n  - "
                + "\n  - ".join(problems),
                step=step,
                hint=f"{done}; `rewheel verify --repo` lists what is wrong in the repository",
            )
        return wheels_only

    return check


def allowed_by_hashes(
    pins: Sequence[PinnedRelease], hashes: Mapping[str, Collection[str]]
) -> list[PinnedRelease]:
    """``pins`` with each release's files kept to the sha256 that ``hashes`` (normalized name ->
    allowed sha256, from ``--hash`` options) allows for its project; a project it does not name
    is kept whole. IntegrityError when a release has no file left."""
    out = []
    for pin in pins:
        allowed = hashes.get(canonicalize_name(pin.name))
        if allowed is None:
            out.append(pin)
            continue
        kept = tuple(h for h in pin.sha256 if h in {a.lower() for a in allowed})
        if not kept:
            raise IntegrityError(
                f"{pin.name} {pin.version}: no file of it has a hash the requirements allow"
                f" (the index offers sha256 {', '.join(pin.sha256)}; --hash allows"
                f" {', '.join(sorted(allowed))})",
                package=pin.name,
                version=pin.version,
                step=_STEP,
                hint="nothing was installed; a lock made from another repository, or a wheel"
                " rebuilt since the lock was made: make the lock again with `rewheel lock`",
            )
        out.append(replace(pin, sha256=kept))
    return out


def lock_text(pins: Sequence[PinnedRelease], *, header: Sequence[str] = ()) -> str:
    """A requirements file of exactly ``pins``: ``name==version`` with a ``--hash`` for each of
    its files, sorted by name; ``header`` lines go first as comments. pip (``--require-hashes
    --no-deps``) and ``uv pip sync`` / ``uv pip install --require-hashes`` read it."""
    lines = [f"# {printable(line)}" for line in header]
    for pin in sorted(pins, key=lambda p: (canonicalize_name(p.name), normal_version(p.version))):
        lines.append(f"{canonicalize_name(pin.name)}=={pin.version} \\")
        hashes = [f"    --hash=sha256:{h}" for h in pin.sha256]
        lines.extend(f"{h} \\" for h in hashes[:-1])
        lines.append(hashes[-1])
    return "".join(f"{line}\n" for line in lines)


def installer_reason(output: str) -> str:
    """What uv said went wrong: the end of its output from its last ``error:`` or diagnostic line
    (or its last lines), terminal escapes taken out, other control characters shown as ``\\xNN``,
    at most ``MAX_REASON_LINES`` lines and ``MAX_REASON_CHARS`` characters."""
    lines = [line.rstrip() for line in _ESCAPE.sub("", output).splitlines() if line.strip()]
    starts = [i for i, line in enumerate(lines) if _REASON_START.match(line)]
    first = starts[-1] if starts else max(0, len(lines) - MAX_REASON_LINES)
    picked = lines[first:]
    if len(picked) > MAX_REASON_LINES:
        picked = [*picked[: MAX_REASON_LINES - 1], "..."]
    text = printable("\n".join(picked), newlines=True)
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 3] + "..."


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


class _Uv:
    """uv run from an empty folder with a scrubbed environment: it sees one index and no
    configuration. Its output goes to ``log``; a failure raises with its reason."""

    def __init__(
        self, uv: Path, python: Path, index_url: str, work: Path, log: Path | None, step: Step
    ) -> None:
        self.uv, self.python, self.work, self.log, self.step = uv, python, work, log, step
        home = work / "home"
        home.mkdir()
        # No colours: the reason is read out of uv's output.
        self.env = {**scrubbed_environ(os.environ, home=home), "NO_COLOR": "1"}
        # cwd is an empty directory so that no uv.toml/pyproject.toml nearby is ever consulted.
        self.common = ["--no-config", "--no-python-downloads"]
        self.index = [
            "--index-url",
            index_url,
            # Wheels only: an sdist that slipped into the index would be built here, unverified.
            "--no-build",
            "--no-cache",
        ]

    def run(self, what: str, args: Sequence[str], *, hint: str | None = None) -> None:
        cmd = [str(self.uv), *args]
        try:
            proc = subprocess.run(
                cmd,
                env=self.env,
                cwd=self.work,
                capture_output=True,
                text=True,
                errors="replace",
                check=False,
            )
        except OSError as exc:
            raise RewheelError(
                f"cannot run {cmd[0]}: {exc}", step=self.step, log_path=self.log
            ) from exc
        output = proc.stdout + proc.stderr
        if self.log is not None:
            self.log.parent.mkdir(parents=True, exist_ok=True)
            with self.log.open("a", encoding="utf-8") as out:
                out.write("$ " + " ".join(cmd) + "\n" + output)
        if proc.returncode != 0:
            reason = installer_reason(proc.stderr or proc.stdout)
            raise RewheelError(
                f"{what}: uv {' '.join(args[:2])} exited with {proc.returncode}"
                + (f":\n{reason}" if reason else ""),
                step=self.step,
                log_path=self.log,
                hint=hint,
            )

    def compile(
        self, requirements: Sequence[str], constraints: Sequence[str]
    ) -> list[PinnedRelease]:
        wanted = self.work / "requirements.in"
        wanted.write_text("".join(f"{r}\n" for r in requirements), encoding="utf-8")
        pinned = self.work / "pinned.txt"
        args = ["pip", "compile", *self.common, "--python", str(self.python), *self.index]
        args += ["--generate-hashes", "--no-header", "--no-annotate", "--quiet"]
        if constraints:
            constraints_file = self.work / "constraints.txt"
            constraints_file.write_text("".join(f"{c}\n" for c in constraints), encoding="utf-8")
            args += ["--constraint", str(constraints_file)]
        self.run(
            f"resolving {', '.join(requirements)} against the repository",
            [*args, "-o", str(pinned), str(wanted)],
            hint="the repository has no set of wheels that fits: build what is missing with"
            " `rewheel bootstrap`",
        )
        return parse_pins(pinned.read_text(encoding="utf-8"))

    def make_venv(self, venv: Path) -> None:
        self.run(
            f"making the venv {venv}",
            ["venv", *self.common, "--quiet", "--python", str(self.python), str(venv)],
        )
        for name in _VIRTUALENV_PATCH:
            for found in venv.glob(f"lib*/python*/site-packages/{name}"):
                found.unlink(missing_ok=True)

    def install(self, venv: Path, pins: Sequence[PinnedRelease]) -> None:
        locked = self.work / "locked.txt"
        locked.write_text(lock_text(pins), encoding="utf-8")
        args = ["pip", "install", *self.common, "--python", str(_venv_python(venv)), *self.index]
        # Exactly the files checked: every one pinned by its hash, nothing resolved again.
        args += ["--no-deps", "--require-hashes"]
        # Copies, not links into a cache: installed files must not change with anything else.
        args += ["--link-mode", "copy", "-r", str(locked)]
        self.run(f"installing into {venv}", args)


@contextmanager
def _uv_session(
    *, index_url: str, python: Path, uv: Path | None, log: Path | None, step: Step = _STEP
) -> Iterator[_Uv]:
    if uv is None:
        from uv import find_uv_bin

        uv = Path(find_uv_bin())
    with tempfile.TemporaryDirectory(prefix="rewheel-install-") as tmp:
        log = log.absolute() if log is not None else None
        yield _Uv(uv, python, index_url, Path(tmp), log, step)


def resolve(
    requirements: Sequence[str],
    *,
    index_url: str,
    constraints: Sequence[str] = (),
    hashes: Mapping[str, Collection[str]] | None = None,
    python: Path = Path(sys.executable),
    uv: Path | None = None,
    log: Path | None = None,
    step: Step = _STEP,
) -> list[PinnedRelease]:
    """``requirements`` resolved against ``index_url`` alone for ``python``: every release of
    their run-time closure, with the sha256 of each of its files (kept to ``hashes``, when it
    names the project). Errors name ``step``."""
    reqs = _check_requirements(requirements, constraints)
    with _uv_session(index_url=index_url, python=python, uv=uv, log=log, step=step) as session:
        return allowed_by_hashes(session.compile(reqs, constraints), hashes or {})


def _pyvenv_cfg(venv: Path) -> dict[str, str] | None:
    """The keys of ``venv/pyvenv.cfg`` (lower case), or None when it is not a plain file."""
    path = venv / "pyvenv.cfg"
    if path.is_symlink() or not path.is_file():
        return None
    try:
        return pyvenv_keys(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def _venv_facts(venv: Path) -> tuple[dict[str, str], Path] | None:
    cfg = _pyvenv_cfg(venv)
    python = _venv_python(venv)
    if cfg is None or not python.exists():
        return None
    return cfg, Path(os.path.realpath(python))


def _cfg_version(cfg: Mapping[str, str]) -> str:
    # ``python -m venv`` writes "version", uv "version_info" (which may carry "final.0").
    found = re.match(r"\d+\.\d+\.\d+", cfg.get("version_info") or cfg.get("version") or "")
    return found[0] if found else ""


def why_not_same_interpreter(venv: Path, reference: Path) -> str | None:
    """Why the venv at ``venv`` is not one made from the interpreter the venv at ``reference``
    was made from (None when it is): its pyvenv.cfg's home and Python version, and the
    interpreter its python runs, must be the same; it must not see the system's packages."""
    facts, ref = _venv_facts(venv), _venv_facts(reference)
    if facts is None:
        return "it has no pyvenv.cfg and bin/python: it is not a virtual environment"
    if ref is None:
        return "the reference environment could not be made"
    (cfg, python), (ref_cfg, ref_python) = facts, ref
    if cfg.get("include-system-site-packages", "false").lower() == "true":
        return "it sees the system's site-packages (include-system-site-packages = true)"
    if cfg.get("home") != ref_cfg.get("home") or _cfg_version(cfg) != _cfg_version(ref_cfg):
        return (
            f"it was made from Python {_cfg_version(cfg) or '?'} in {cfg.get('home', '?')}, not"
            f" {_cfg_version(ref_cfg) or '?'} in {ref_cfg.get('home', '?')}"
        )
    if python != ref_python:
        return f"its python runs {python}, not {ref_python}"
    return None


def install_into_venv(
    requirements: Sequence[str],
    venv: Path,
    *,
    index_url: str,
    check: CustodyCheck | None,
    constraints: Sequence[str] = (),
    hashes: Mapping[str, Collection[str]] | None = None,
    python: Path = Path(sys.executable),
    uv: Path | None = None,
    log: Path | None = None,
) -> list[PinnedRelease]:
    """Install ``requirements`` into ``venv`` from ``index_url`` only; return what was installed.

    ``venv`` is made (with no seed packages) when it does not exist or is an empty folder; a
    venv that exists must have been made from ``python`` (``why_not_same_interpreter``), and
    what it already holds stays, but for the releases installed. ``check`` is given what the
    resolution chose before anything is made or installed; None checks nothing (for an index
    that is not a repository). ``hashes`` (normalized name -> allowed sha256) keeps each
    project to those files. Output of uv goes to ``log`` when given.
    """
    reqs = _check_requirements(requirements, constraints)
    venv = venv.absolute()
    with _uv_session(index_url=index_url, python=python, uv=uv, log=log) as session:
        existing = venv.exists() and (not venv.is_dir() or any(venv.iterdir()))
        if existing:
            reference = session.work / "reference-venv"
            session.make_venv(reference)
            why = why_not_same_interpreter(venv, reference)
            if why is not None:
                raise ConfigError(
                    f"{venv} exists and is not a virtual environment made from {python}: {why}",
                    step=_STEP,
                    hint="give --venv a new folder, or a venv made with"
                    f" `{python} -m venv` (or by rewheel install)",
                )
        was_empty_folder = venv.is_dir() and not existing
        try:
            pins = allowed_by_hashes(session.compile(reqs, constraints), hashes or {})
            if check is not None:
                pins = check(pins)
            if not existing:
                session.make_venv(venv)
            session.install(venv, pins)
        except BaseException:
            # Leave nothing half made behind that a later verify or install could mistake for
            # real; a venv that was there before is left as uv left it.
            if was_empty_folder:
                for child in venv.iterdir():
                    if child.is_dir() and not child.is_symlink():
                        shutil.rmtree(child, ignore_errors=True)
                    else:
                        child.unlink(missing_ok=True)
            elif not existing:
                shutil.rmtree(venv, ignore_errors=True)
            raise
    return pins
