"""The box every untrusted build command runs in, built with bubblewrap (``bwrap``).

An sdist's build code is the least trusted thing rewheel runs, so every PEP 517 hook and every
command a recipe runs for a build gets, by default:

- a mount namespace whose root is empty but for a read-only view of the system (``/usr`` and the
  merged-usr links, an allow-list of ``/etc`` files, the interpreter's install prefix and the
  folders on ``PATH`` that hold toolchains), the paths the call names as readable (its build
  environment, the hook runner script), and the paths it names as writable (its source tree,
  output, home and temporary folders). The repository, the signing key, rewheel's own venv, the
  user's home, other builds' folders, ``/run`` (and so every filesystem socket: ssh-agent, docker,
  dbus) and ``/tmp`` of the machine are simply not there;
- its own PID namespace (it sees no parent, and everything it starts dies with it: bwrap is PID 1
  there and ``--die-with-parent`` ties it to rewheel), its own network namespace (no network, no
  abstract sockets), IPC and UTS namespaces, no capabilities, no nested user namespaces, a new
  terminal session;
- resource limits (``Limits``): a wall time per command, address space, largest file, total size
  of its writable folders, and size of its output kept in the log;
- its package's work folder (source tree, build environments, home, temporary and output
  folders) at one fixed path, ``BOX_WORK`` (``/build``), whatever the build root on the machine:
  what a build records of its own paths is then the same on every machine. Each box has its own
  mount namespace, so builds running at once each see their own folder there, and none sees
  another's (the build root is not shown at all).

This module is the pure half: what the box looks like (``SandboxPolicy``, ``bwrap_argv``). Running
it, and enforcing the limits that need watching, is ``runner.SubprocessRunner``'s job.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError, Step
from ..core.types import Relocation
from .seccomp import refused_calls

# Where every box shows its package's work folder (``Confinement.relocated``).
BOX_WORK = Path("/build")

GiB = 1 << 30
MiB = 1 << 20

# The system's programs and libraries; on merged-usr systems the top-level ones are links.
_SYSTEM_DIRS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What compilers, linkers, locale and user look-ups read in /etc. Nothing that names a secret
# (shadow, ssh, ssl private keys) or configures an installer (pip.conf, xdg/pip, npmrc).
_ETC_ALLOWED = (
    "alternatives",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "passwd",
    "group",
    "nsswitch.conf",
    "hosts",
    "host.conf",
    "localtime",
    "timezone",
    "os-release",
    "debian_version",
    "lsb-release",
    "locale.alias",
    "mime.types",
    "protocols",
    "services",
    "fonts",
)
# Environment variables a build may inherit from rewheel's environment; everything else is
# dropped (tokens, agent sockets, index passwords). A package's settings add what it needs.
ENV_ALLOWED = frozenset(
    {
        "PATH",
        "LANG",
        "LANGUAGE",
        "LC_ALL",
        "LC_CTYPE",
        "LC_COLLATE",
        "LC_MESSAGES",
        "LC_NUMERIC",
        "LC_TIME",
        "TZ",
        "TMPDIR",
        "SOURCE_DATE_EPOCH",
        # Compilers and their flags, as a user sets them for every build on the machine.
        "CC",
        "CXX",
        "CPP",
        "FC",
        "F77",
        "F90",
        "LD",
        "AR",
        "NM",
        "RANLIB",
        "STRIP",
        "CFLAGS",
        "CXXFLAGS",
        "CPPFLAGS",
        "LDFLAGS",
        "FFLAGS",
        "FCFLAGS",
        "PKG_CONFIG_PATH",
        "CMAKE_GENERATOR",
        # rustup's proxies (cargo, rustc) find their toolchains here.
        "RUSTUP_HOME",
        "RUSTUP_TOOLCHAIN",
    }
)


def allowed_environ(base: Mapping[str, str]) -> dict[str, str]:
    """The part of ``base`` a build may see (``ENV_ALLOWED``)."""
    return {k: v for k, v in base.items() if k in ENV_ALLOWED}


_toolchain: list[str | None] = []  # the memo of rust_toolchain()


def rust_toolchain(environ: Mapping[str, str]) -> str | None:
    """The Rust toolchain rustup would use outside any project, to pin every build to it.

    rustup's proxies (cargo, rustc) otherwise take the toolchain from a ``rust-toolchain.toml``
    in the folder they run in, which an sdist can ship and point at programs of its own. Asked
    once per process, from ``/``; None without rustup.
    """
    if not _toolchain:
        name = None
        rustup = shutil.which("rustup", path=environ.get("PATH"))
        if rustup is not None:
            try:
                done = subprocess.run(
                    [rustup, "show", "active-toolchain"],
                    cwd="/",
                    env={k: v for k, v in environ.items() if k != "RUSTUP_TOOLCHAIN"},
                    capture_output=True,
                    text=True,
                    timeout=30,
                    check=False,
                )
                words = done.stdout.split()
                name = words[0] if done.returncode == 0 and words else None
            except (OSError, subprocess.SubprocessError):
                name = None
        _toolchain.append(name)
    return _toolchain[0]


@dataclass(frozen=True)
class Limits:
    """What one sandboxed command may use. ``None``: no limit of that kind."""

    wall_seconds: float | None = 3600.0  # per command (one hook call)
    memory_bytes: int | None = 8 * GiB  # address space of each process (RLIMIT_AS)
    file_bytes: int | None = 4 * GiB  # the largest file it may write (RLIMIT_FSIZE)
    folder_bytes: int | None = 16 * GiB  # all its writable folders together
    output_bytes: int = 64 * MiB  # what of its output is kept in the log; the rest is dropped

    def as_record(self) -> dict[str, float | int | None]:
        return {
            "wall_seconds": self.wall_seconds,
            "memory_bytes": self.memory_bytes,
            "file_bytes": self.file_bytes,
            "folder_bytes": self.folder_bytes,
            "output_bytes": self.output_bytes,
        }


@dataclass(frozen=True)
class SandboxPolicy:
    """How builds are boxed in this run: the bwrap program (None: no sandbox) and the limits."""

    bwrap: str | None
    bwrap_version: str | None = None
    limits: Limits = field(default_factory=Limits)
    # Folders of the system made visible read-only (besides the call's own paths).
    system_paths: tuple[Path, ...] = ()

    @property
    def enabled(self) -> bool:
        return self.bwrap is not None

    @property
    def work_in_box(self) -> Path | None:
        """The fixed path at which builds see their work folder (None: no box, no relocation)."""
        return BOX_WORK if self.bwrap is not None else None

    def shows(self, path: Path) -> bool:
        """Whether ``path`` is in a folder of the machine that every box shows (read-only):
        the system folders, the allowed files of ``/etc``, ``system_paths``. A secret there (a
        signing key) can be read by build code whatever ``hidden`` says. False without a
        box (then build code sees all that the user sees)."""
        if self.bwrap is None:
            return False
        shown = [
            *(Path(d) for d in _SYSTEM_DIRS),
            *(Path("/etc") / name for name in _ETC_ALLOWED),
            *self.system_paths,
        ]
        return _under(Path(os.path.abspath(path)), shown)

    def as_record(self, *, network_isolated: bool = True) -> dict[str, Any]:
        """What the records and provenance say about how builds were contained."""
        if self.bwrap is None:
            return {"kind": "none", "limits": self.limits.as_record()}
        namespaces = ["mount", "pid", "network", "ipc", "uts", "user", "cgroup"]
        if not network_isolated:
            namespaces.remove("network")
        return {
            "kind": "bubblewrap",
            "version": self.bwrap_version,
            "namespaces": namespaces,
            "seccomp_refused": refused_calls(),
            "readonly_system": [str(p) for p in self.system_paths],
            "limits": self.limits.as_record(),
            "workFolderInBox": str(BOX_WORK),
        }


def _under(path: Path, roots: Iterable[Path]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def _clashes(path: Path) -> bool:
    """Whether showing ``path`` in the box would clash with the work folder's fixed place."""
    return _under(path, [BOX_WORK]) or _under(BOX_WORK, [path])


def system_view(
    environ: Mapping[str, str],
    *,
    python_prefix: Path,
    hidden: Sequence[Path] = (),
) -> tuple[Path, ...]:
    """The folders outside the system tree a build needs to see, read-only.

    The interpreter's install prefix (a venv's ``python`` links into it), every folder on
    ``PATH`` outside the system tree that is not in ``hidden`` (toolchains such as rustup's
    ``~/.cargo/bin``), and rustup's home when its proxies are on ``PATH``. ``hidden`` holds what
    must never be shown (rewheel's own venv, the repository, the build root).
    """
    system = [Path(d) for d in _SYSTEM_DIRS]
    out: list[Path] = [python_prefix]
    for entry in environ.get("PATH", "").split(os.pathsep):
        if not entry or not os.path.isabs(entry):
            continue
        path = Path(os.path.normpath(entry))
        if _under(path, system) or _under(path, hidden) or not path.is_dir():
            continue
        if any(_under(h, [path]) for h in hidden):
            continue  # showing it would show something hidden below it
        if _clashes(path):
            continue  # the work folder's place in the box: not the machine's
        if path not in out:
            out.append(path)
        if (path / "rustup").exists():
            home = Path(environ.get("RUSTUP_HOME") or Path.home() / ".rustup")
            if home.is_dir() and home not in out:
                out.append(home)
    return tuple(out)


def bwrap_argv(
    policy: SandboxPolicy,
    cmd: Sequence[str],
    *,
    cwd: Path,
    readable: Sequence[Path],
    writable: Sequence[Path],
    network: bool = False,
    seccomp_fd: int | None = None,
    relocated: Relocation | None = None,
) -> list[str]:
    """The bwrap command line that runs ``cmd`` in the box (pure: it looks at no file).

    Readable paths are mounted before writable ones, so a writable folder inside a readable one
    (a source tree inside its read-only work folder) is writable, and nothing else there is.
    With ``relocated``, the paths under its host folder are mounted at their place under its box
    folder (``cmd`` and ``cwd`` must already name them there).
    """

    def at(p: Path) -> str:
        return str(p if relocated is None else relocated.path(p))

    if policy.bwrap is None:
        raise ValueError("no sandbox program")
    argv = [
        policy.bwrap,
        "--unshare-user",
        "--unshare-ipc",
        "--unshare-pid",
        "--unshare-uts",
        "--unshare-cgroup-try",
        *([] if network else ["--unshare-net"]),
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--cap-drop",
        "ALL",
        "--hostname",
        "rewheel-build",
        *(["--seccomp", str(seccomp_fd)] if seccomp_fd is not None else []),
        "--proc",
        "/proc",
        # A minimal /dev (null, zero, random, tty, ...), read-only but for a small /dev/shm:
        # bwrap makes it a tmpfs of half the memory, which a build could otherwise fill.
        "--dev",
        "/dev",
        "--perms",
        "1777",
        "--size",
        str(64 * MiB),
        "--tmpfs",
        "/dev/shm",
        "--perms",
        "1777",
        "--size",
        str(512 * MiB),
        "--tmpfs",
        "/tmp",
        "--perms",
        "1777",
        "--size",
        str(64 * MiB),
        "--tmpfs",
        "/var/tmp",
    ]
    for d in _SYSTEM_DIRS:
        argv += ["--ro-bind-try", d, d]
    for name in _ETC_ALLOWED:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    for p in policy.system_paths:
        argv += ["--ro-bind-try", str(p), str(p)]
    for p in readable:
        argv += ["--ro-bind", str(p), at(p)]
    for p in writable:
        argv += ["--bind", str(p), at(p)]
    # The root itself (a tmpfs bwrap makes) read-only: nothing can be written outside the paths
    # named writable and the two small temporary folders.
    argv += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", str(cwd), "--", *cmd]
    return argv


_VERSION = re.compile(r"bubblewrap (\S+)")


def data_home(environ: Mapping[str, str] | None = None) -> Path:
    """``$XDG_DATA_HOME``, or ``~/.local/share`` (the XDG base directory rules)."""
    environ = os.environ if environ is None else environ
    value = environ.get("XDG_DATA_HOME", "")
    if value and os.path.isabs(value):
        return Path(value)
    home = environ.get("HOME") or str(Path.home())
    return Path(home) / ".local" / "share"


def rewheel_data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """rewheel's folder of the user's data: hidden from every build."""
    return data_home(environ) / "rewheel"


_HINT = (
    "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install "
    "bubblewrap), or pass --no-sandbox to build without one (build code can then read and "
    "write everything your user can)"
)


def probe_bwrap(program: str | None = None) -> tuple[str, str] | str:
    """``(path, version)`` of a bwrap that can build a box here, or why there is none."""
    path = program or shutil.which("bwrap")
    if path is None:
        return "bubblewrap (bwrap) is not installed"
    true = shutil.which("true") or "/bin/true"
    probe = SandboxPolicy(bwrap=path)
    argv = bwrap_argv(probe, [true], cwd=Path("/"), readable=(), writable=())
    try:
        # Its version is asked while the probe box runs: each start of a program costs a run
        # with nothing to do some milliseconds.
        with ThreadPoolExecutor(1, thread_name_prefix="rewheel-bwrap-version") as pool:
            asked = pool.submit(
                subprocess.run,
                [path, "--version"],
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
            )
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=10,
                check=False,
                stdin=subprocess.DEVNULL,
            )
            version = asked.result()
    except (OSError, subprocess.SubprocessError) as exc:
        return f"{path} cannot be run: {exc}"
    if done.returncode != 0:
        why = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        return f"{path} cannot create a sandbox on this machine ({why})"
    found = _VERSION.search(version.stdout)
    return path, found.group(1) if found else "unknown"


def limits_with(wall_seconds: float | None) -> Limits:
    """The default limits, with the wall time the user chose (``--build-timeout``)."""
    return Limits(wall_seconds=wall_seconds) if wall_seconds is not None else Limits()


def make_policy(
    *,
    enabled: bool,
    limits: Limits | None = None,
    hidden: Sequence[Path] = (),
    environ: Mapping[str, str] | None = None,
    bwrap: str | None = None,
) -> SandboxPolicy:
    """The run's sandbox, or a ConfigError that says how to get one (or to go without).

    Besides ``hidden``, the box never shows rewheel's own venv nor the user's data folder
    (``rewheel_data_dir``, where the signing key is made), whoever makes the policy: a local
    run, a rebuild, a Dask worker (whose user's data folder it is then)."""
    limits = limits or Limits()
    if not enabled:
        return SandboxPolicy(bwrap=None, limits=limits)
    found = probe_bwrap(bwrap)
    if isinstance(found, str):
        raise ConfigError(f"cannot sandbox builds: {found}", step=Step.SANDBOX, hint=_HINT)
    path, version = found
    environ = os.environ if environ is None else environ
    prefix = Path(sys.base_prefix).resolve()
    if _clashes(prefix):
        raise ConfigError(
            f"cannot sandbox builds: the interpreter is installed in {prefix}, where every "
            f"sandbox shows the build's own work folder ({BOX_WORK})",
            step=Step.SANDBOX,
            hint="run rewheel with an interpreter installed elsewhere",
        )
    view = system_view(
        environ,
        python_prefix=prefix,
        hidden=[Path(sys.prefix).resolve(), rewheel_data_dir(environ).resolve(), *hidden],
    )
    return SandboxPolicy(bwrap=path, bwrap_version=version, limits=limits, system_paths=view)
