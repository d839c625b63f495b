"""Create a virtual environment and install into it from the local repository's index alone.

Everything that could make uv look elsewhere is switched off: uv's configuration files
(``--no-config``), every inherited ``UV_*`` and ``PIP_*`` variable, the user's home and XDG
directories (``buildenv.scrubbed_environ``), uv's shared cache, options inside a constraints file
and direct-URL requirements. The only index uv sees is the one passed in.

Nothing is installed before it is checked. The requirements are first resolved
(``uv pip compile --generate-hashes``) into exact releases with the sha256 of every file uv may
take for each; the ``CustodyCheck`` is given those, and ``custody_check`` refuses unless each
file is a wheel of the repository whose chain of custody holds (``chain.verify_chain``: build
record, provenance, kept sdist, metadata, index pages, the signature with a public key, and the
same for its dependencies and build tools; hashes only, nothing is rebuilt). Only then is the
venv made and exactly those files installed, hashes required, dependencies not resolved again:
a wheel swapped after the check fails uv's hash check.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from ..build.buildenv import scrubbed_environ
from ..core.errors import ConfigError, IntegrityError, RewheelError, Step
from ..core.versions import normal_version
from ..repo.repository import Repository
from .chain import verify_chain

_STEP = Step.INSTALL
_HASH_OPTION = re.compile(r"\s--hash[=\s]\S+")

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


def _check_requirements(requirements: Sequence[str]) -> list[str]:
    if not requirements:
        raise ConfigError("nothing to install", step=_STEP)
    for text in requirements:
        _check_requirement(text, "on the command line")
    return list(requirements)


def _check_constraints(path: Path) -> None:
    """Refuse a constraints file that holds anything but requirements by name.

    A requirements-format file may carry ``--index-url``, ``--find-links`` or ``-r other.txt``
    lines, each a way around the one index.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read constraints file {path}: {exc}", step=_STEP) from exc
    for number, line in enumerate(text.replace("\\\n", "").splitlines(), start=1):
        line = _HASH_OPTION.sub("", line.split(" #", 1)[0]).strip()
        if line and not line.startswith("#"):
            _check_requirement(line, f"in {path} line {number}")


@dataclass(frozen=True)
class PinnedRelease:
    """One release the resolution chose, with the sha256 of every file uv may install for it."""

    name: str
    version: str
    sha256: tuple[str, ...]


# Called with what is about to be installed; raises to refuse (nothing is installed then).
CustodyCheck = Callable[[Sequence[PinnedRelease]], None]

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
    repo: Repository, *, public_key: Path | None = None, allow_prebuilt: bool = False
) -> CustodyCheck:
    """A check that refuses any file not a wheel of ``repo`` with its chain of custody whole."""

    def check(pins: Sequence[PinnedRelease]) -> None:
        by_sha = {w.sha256: w for w in repo.wheels()}
        # The pages list the sdists the wheels were built from too (for `pip download`): uv
        # hashes them with the release, and never builds one here (--no-build).
        sdists = {
            (canonicalize_name(r.name), normal_version(r.version), r.sdist_sha256)
            for r in repo.load_records()
            if r.sdist_sha256
        }
        problems = []
        for pin in pins:
            for sha256 in pin.sha256:
                if (canonicalize_name(pin.name), normal_version(pin.version), sha256) in sdists:
                    continue
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
            public_key=public_key,
            allow_prebuilt=allow_prebuilt,
        )
        for entry in report.entries:
            if not entry.ok:
                problems.append(f"{entry.wheel or entry.name}: " + "; ".join(entry.problems))
        problems += report.problems
        if problems:
            raise IntegrityError(
                "refusing to install, the chain of custody is broken:\n  - "
                + "\n  - ".join(problems),
                step=_STEP,
                hint="nothing was installed; `rewheel verify --repo` lists what is wrong in"
                " the repository",
            )

    return check


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(cmd: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: Path | None) -> None:
    """Run ``cmd``; its output goes to ``log``, or into the error message when there is no log."""
    try:
        proc = subprocess.run(
            cmd, env=env, cwd=cwd, capture_output=True, text=True, errors="replace", check=False
        )
    except OSError as exc:
        raise RewheelError(f"cannot run {cmd[0]}: {exc}", step=_STEP, log_path=log) from exc
    output = proc.stdout + proc.stderr
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("a", encoding="utf-8") as out:
            out.write("$ " + " ".join(cmd) + "\n" + output)
    if proc.returncode != 0:
        detail = "" if log is not None else "\n" + "\n".join(output.strip().splitlines()[-20:])
        raise RewheelError(
            f"{' '.join(cmd[:3])} exited with {proc.returncode}{detail}", step=_STEP, log_path=log
        )


def install_into_venv(
    requirements: Sequence[str],
    venv: Path,
    *,
    index_url: str,
    check: CustodyCheck | None,
    constraints: Path | None = None,
    python: Path = Path(sys.executable),
    uv: Path | None = None,
    log: Path | None = None,
) -> None:
    """Create ``venv`` (no seed packages) and install ``requirements`` from ``index_url`` only.

    ``check`` is given what the resolution chose before anything is made; None checks nothing
    (for an index that is not a repository). ``venv`` must not exist yet, or be an empty
    directory: a fresh environment is what ``rewheel verify`` can vouch for. Output of uv goes
    to ``log`` when given.
    """
    reqs = _check_requirements(requirements)
    venv = venv.absolute()
    if venv.exists() and (not venv.is_dir() or any(venv.iterdir())):
        raise RewheelError(f"{venv} already exists and is not empty", step=_STEP)
    if constraints is not None:
        _check_constraints(constraints)
    if uv is None:
        from uv import find_uv_bin

        uv = Path(find_uv_bin())
    log = log.absolute() if log is not None else None
    existed = venv.exists()
    try:
        _create_and_install(reqs, venv, index_url, constraints, python, uv, log, check)
    except BaseException:
        # Leave nothing half made behind that a later verify or install could mistake for real.
        if existed:
            for child in venv.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
        else:
            shutil.rmtree(venv, ignore_errors=True)
        raise


def _create_and_install(
    reqs: Sequence[str],
    venv: Path,
    index_url: str,
    constraints: Path | None,
    python: Path,
    uv: Path,
    log: Path | None,
    check: CustodyCheck | None,
) -> None:
    with tempfile.TemporaryDirectory(prefix="rewheel-install-") as tmp:
        work = Path(tmp)
        home = work / "home"
        home.mkdir()
        env = scrubbed_environ(os.environ, home=home)
        # cwd is an empty directory so that no uv.toml/pyproject.toml nearby is ever consulted.
        common = ["--no-config", "--no-python-downloads"]
        index = [
            "--index-url",
            index_url,
            # Wheels only: an sdist that slipped into the index would be built here, unverified.
            "--no-build",
            "--no-cache",
        ]
        wanted = work / "requirements.in"
        wanted.write_text("".join(f"{r}\n" for r in reqs), encoding="utf-8")
        pinned = work / "pinned.txt"
        cmd = [str(uv), "pip", "compile", *common, "--python", str(python), *index]
        cmd += ["--generate-hashes", "--no-header", "--no-annotate", "--quiet"]
        if constraints is not None:
            cmd += ["--constraint", str(constraints.absolute())]
        _run([*cmd, "-o", str(pinned), str(wanted)], env=env, cwd=work, log=log)
        pins = parse_pins(pinned.read_text(encoding="utf-8"))
        if check is not None:
            check(pins)
        _run(
            [str(uv), "venv", *common, "--quiet", "--python", str(python), str(venv)],
            env=env,
            cwd=work,
            log=log,
        )
        for name in _VIRTUALENV_PATCH:
            for found in venv.glob(f"lib*/python*/site-packages/{name}"):
                found.unlink(missing_ok=True)
        cmd = [str(uv), "pip", "install", *common, "--python", str(_venv_python(venv)), *index]
        # Exactly the files checked: every one pinned by its hash, nothing resolved again.
        cmd += ["--no-deps", "--require-hashes"]
        # Copies, not links into a cache: installed files must not change with anything else.
        cmd += ["--link-mode", "copy", "-r", str(pinned)]
        if constraints is not None:  # the hashes it may give are checked here
            cmd += ["--constraint", str(constraints.absolute())]
        _run(cmd, env=env, cwd=work, log=log)
