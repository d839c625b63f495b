"""Create a virtual environment and install into it from the local repository's index alone.

Everything that could make uv look elsewhere is switched off: uv's configuration files
(``--no-config``), every inherited ``UV_*`` and ``PIP_*`` variable, the user's home and XDG
directories (``buildenv.scrubbed_environ``), uv's shared cache, options inside a constraints file
and direct-URL requirements. The only index uv sees is the one passed in.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

from packaging.requirements import InvalidRequirement, Requirement

from ..build.buildenv import scrubbed_environ
from ..core.errors import ConfigError, RewheelError, Step

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
    constraints: Path | None = None,
    python: Path = Path(sys.executable),
    uv: Path | None = None,
    log: Path | None = None,
) -> None:
    """Create ``venv`` (no seed packages) and install ``requirements`` from ``index_url`` only.

    ``venv`` must not exist yet, or be an empty directory: a fresh environment is what
    ``rewheel verify`` can vouch for. Output of uv goes to ``log`` when given.
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
        _create_and_install(reqs, venv, index_url, constraints, python, uv, log)
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
) -> None:
    with tempfile.TemporaryDirectory(prefix="rewheel-install-") as tmp:
        work = Path(tmp)
        home = work / "home"
        home.mkdir()
        env = scrubbed_environ(os.environ, home=home)
        # cwd is an empty directory so that no uv.toml/pyproject.toml nearby is ever consulted.
        _run(
            [
                str(uv),
                "venv",
                "--no-config",
                "--no-python-downloads",
                "--quiet",
                "--python",
                str(python),
                str(venv),
            ],
            env=env,
            cwd=work,
            log=log,
        )
        for name in _VIRTUALENV_PATCH:
            for found in venv.glob(f"lib*/python*/site-packages/{name}"):
                found.unlink(missing_ok=True)
        cmd = [
            str(uv),
            "pip",
            "install",
            "--no-config",
            "--no-python-downloads",
            "--python",
            str(_venv_python(venv)),
            "--index-url",
            index_url,
            # Wheels only: an sdist that slipped into the index would be built here, unverified.
            "--no-build",
            "--no-cache",
            # Copies, not links into a cache: installed files must not change with anything else.
            "--link-mode",
            "copy",
        ]
        if constraints is not None:
            cmd += ["--constraint", str(constraints.absolute())]
        _run([*cmd, *reqs], env=env, cwd=work, log=log)
