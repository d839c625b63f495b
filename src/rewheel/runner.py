"""Running build commands: output to a log, own process group, timeout, optional network cut-off."""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from .errors import CommandFailed

_log = logging.getLogger(__name__)

_probe_lock = threading.Lock()
_probe_result: list[str] | None = None  # the prefix that works, [] if none; None: not probed
_PROBE_TIMEOUT = 10.0


def _network_prefix() -> list[str]:
    """The command prefix that puts a process in an empty network namespace, [] if none works.

    ``--map-root-user`` creates a user namespace too, so that this works without root where the
    kernel allows unprivileged user namespaces. Probed once per process.
    """
    global _probe_result
    with _probe_lock:
        if _probe_result is None:
            _probe_result = _probe_unshare()
        return list(_probe_result)


def _probe_unshare() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    prefix = [unshare, "--net", "--map-root-user"]
    return prefix if _probe([*prefix, "true"]) else []


_guard_result: list[str] | None = None


def _orphan_guard_prefix() -> list[str]:
    """The prefix that kills a command when rewheel dies (even by SIGKILL), [] if none works.

    Commands run in their own session (so that a timeout can kill their group), which also means
    that killing rewheel's process group does not reach them: without this, a killed run would
    leave a backend writing into the folders the next run builds in. ``setpriv --pdeathsig``
    (util-linux) asks the kernel to send SIGKILL when the thread that started it ends.
    """
    global _guard_result
    with _probe_lock:
        if _guard_result is None:
            setpriv = shutil.which("setpriv")
            prefix = [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
            if prefix and not _probe([*prefix, "true"]):
                prefix = []
            _guard_result = prefix
        return list(_guard_result)


def _probe(cmd: list[str]) -> bool:
    """Whether ``cmd`` (a prefix and a last program found on PATH) runs and exits 0."""
    true = shutil.which(cmd[-1])
    if true is None:
        return False
    try:
        done = subprocess.run(
            [*cmd[:-1], true],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=_PROBE_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return done.returncode == 0


def _findable(program: str, env: Mapping[str, str]) -> bool:
    """Whether ``program`` can be executed as the first word of a command run with ``env``.

    Checked before a prefix runs it, so that a missing program still fails as one that cannot
    be run, not as one that exited with 127."""
    return shutil.which(program, path=env.get("PATH", os.defpath)) is not None


def network_isolation_available() -> bool:
    """Whether commands can be run without network access on this machine."""
    return bool(_network_prefix())


def _kill_group(pgid: int) -> None:
    # ProcessLookupError: the group is already gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


class SubprocessRunner:
    """The real :class:`rewheel.types.Runner`.

    ``on_notice`` receives, once per runner, the news that network isolation was asked for but is
    not available here (default: a logging warning).
    """

    def __init__(self, *, on_notice: Callable[[str], None] | None = None) -> None:
        self._on_notice = on_notice or _log.warning
        self._notice_lock = threading.Lock()
        self._noticed = False

    def __call__(
        self,
        cmd: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log: Path,
        timeout: float | None = None,
        isolate_network: bool = False,
    ) -> None:
        cmd = [str(c) for c in cmd]
        shown = cmd  # what the log shows: the command and its network prefix
        if isolate_network:
            prefix = _network_prefix()
            if prefix:
                shown = prefix + cmd
            else:
                self._notice_once(
                    "network isolation is not available on this machine "
                    "(unshare --net --map-root-user failed); running builds with network access"
                )
        guard = _orphan_guard_prefix()
        if guard and not _findable(cmd[0], env):
            guard = []  # let Popen report the missing program itself
        full = shown[: len(shown) - len(cmd)] + guard + cmd

        try:
            log.parent.mkdir(parents=True, exist_ok=True)
            out = log.open("ab")
        except OSError as exc:
            raise CommandFailed(
                f"cannot open log {log}: {exc}", cmd=cmd, returncode=None, log_path=log
            ) from exc
        with out:
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            out.write(f"\n=== {stamp} in {cwd}\n$ {shlex.join(shown)}\n".encode())
            out.flush()
            try:
                proc = subprocess.Popen(
                    full,
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    # Its own process group, so that a timeout can kill everything it started.
                    start_new_session=True,
                )
            except OSError as exc:
                out.write(f"=== cannot run: {exc}\n".encode())
                raise CommandFailed(
                    f"cannot run {cmd[0]}: {exc}", cmd=cmd, returncode=None, log_path=log
                ) from exc

            try:
                returncode = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid)
                proc.wait()
                out.write(f"=== timed out after {timeout:g}s, process group killed\n".encode())
                raise CommandFailed(
                    f"{cmd[0]} timed out after {timeout:g}s",
                    cmd=cmd,
                    returncode=None,
                    log_path=log,
                    timed_out=True,
                ) from None
            except BaseException:
                _kill_group(proc.pid)
                proc.wait()
                raise
            # Whatever it left running in the background (build servers, daemons) would outlive
            # the build environment it uses and keep writing to the log.
            _kill_group(proc.pid)

            out.write(f"=== exit status {returncode}\n".encode())
        if returncode != 0:
            if returncode < 0:
                what = f"was killed by signal {-returncode}"
            else:
                what = f"exited with status {returncode}"
            raise CommandFailed(f"{cmd[0]} {what}", cmd=cmd, returncode=returncode, log_path=log)

    def _notice_once(self, message: str) -> None:
        with self._notice_lock:
            if self._noticed:
                return
            self._noticed = True
        self._on_notice(message)
