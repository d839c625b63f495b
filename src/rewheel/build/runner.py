"""Running commands: output to a log, own process group, limits; build code in the sandbox.

Commands that run build code (``confine=...``) go through ``sandbox.bwrap_argv`` when the run has a
sandbox, and get the run's ``sandbox.Limits`` in every case: a wall time, per-process limits set
with util-linux ``prlimit``, a watch on the size of their writable folders, and a cap on the
output kept in the log. They also run with address space randomization off (util-linux
``setarch -R``), so that what a build tool derives from addresses comes out the same every time.

Every command gets the same umask (``reproducible.BUILD_UMASK`` by default), whatever the user's:
the modes of the files a build writes end up in its wheel.

A confinement with a ``relocated`` folder (the package's work folder, shown at
``sandbox.BOX_WORK``) has the command's arguments, working folder and variables rewritten to the
paths the box shows; it needs the sandbox (without one there is nothing to mount it with).
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import select
import shlex
import shutil
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from ..core.errors import CommandFailed
from ..core.types import Confinement
from .reproducible import BUILD_UMASK
from .sandbox import Limits, SandboxPolicy, bwrap_argv
from .seccomp import build_filter

_log = logging.getLogger(__name__)

_probe_lock = threading.Lock()
_PROBE_TIMEOUT = 10.0


def _probe_unshare() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        return []
    prefix = [unshare, "--net", "--map-root-user"]
    return prefix if _probe([*prefix, "true"]) else []


class UnshareProbe:
    """Whether commands can be cut off from the network here, and the prefix that does it.

    util-linux ``unshare --net`` puts a command in an empty network namespace;
    ``--map-root-user`` creates a user namespace too, so that this works without root where the
    kernel allows unprivileged user namespaces. ``find`` returns the prefix that works ([] if
    none): it is asked once per instance, on first use.
    """

    def __init__(self, find: Callable[[], Sequence[str]] = _probe_unshare) -> None:
        self._find = find
        self._lock = threading.Lock()
        self._prefix: list[str] | None = None

    def prefix(self) -> list[str]:
        """The command prefix that cuts a command off from the network, [] if none works."""
        with self._lock:
            if self._prefix is None:
                self._prefix = list(self._find())
            return list(self._prefix)

    def available(self) -> bool:
        """Whether commands can be run without network access on this machine."""
        return bool(self.prefix())


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


_setarch_result: list[str] | None = None


def fixed_layout_prefix() -> list[str]:
    """The prefix that runs a command with address space randomization off, [] if none works.

    util-linux ``setarch <machine> -R`` sets ``ADDR_NO_RANDOMIZE`` in the command's personality,
    which every process it starts inherits. A build tool that names things by an object's
    address (meson calls an unnamed dependency ``dep<id>``) then gets the same names whenever
    everything before it is the same; with randomization, never. Randomization protects a
    process from hostile input; build code is the untrusted party itself, so it loses nothing.
    """
    global _setarch_result
    with _probe_lock:
        if _setarch_result is None:
            setarch = shutil.which("setarch")
            prefix = [setarch, platform.machine(), "-R"] if setarch else []
            if prefix and not _probe([*prefix, "true"]):
                prefix = []
            _setarch_result = prefix
        return list(_setarch_result)


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


def _kill_group(pgid: int) -> None:
    # ProcessLookupError: the group is already gone.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


_prlimit_result: list[str] | None = None


def _prlimit() -> str | None:
    """util-linux ``prlimit``, which sets resource limits on the command it runs."""
    global _prlimit_result
    with _probe_lock:
        if _prlimit_result is None:
            found = shutil.which("prlimit")
            _prlimit_result = [found] if found and _probe([found, "true"]) else []
        return _prlimit_result[0] if _prlimit_result else None


def _rlimit_prefix(limits: Limits) -> list[str]:
    """The prefix that applies ``limits``' per-process limits (inherited by every child)."""
    prlimit = _prlimit()
    if prlimit is None:
        return []
    args = [prlimit, "--core=0"]
    if limits.memory_bytes is not None:
        args.append(f"--as={limits.memory_bytes}")
    if limits.file_bytes is not None:
        args.append(f"--fsize={limits.file_bytes}")
    return [*args, "--"]


def _seccomp_fd() -> int | None:
    """A new file descriptor holding the seccomp program for bwrap (which reads it once)."""
    program = build_filter()
    if program is None:
        return None
    fd = os.memfd_create("rewheel-seccomp", 0)
    os.write(fd, program)
    os.lseek(fd, 0, os.SEEK_SET)
    return fd


def folder_usage(paths: Sequence[Path], stop_at: int | None = None) -> tuple[int, int]:
    """``(space taken, largest file)`` under ``paths``: what the build has written there.

    Walked by folder descriptor, never by path and never through a link, so that paths longer
    than PATH_MAX are counted too; a folder the owner cannot read is given owner read and search
    permission first (it is the build's own). Stops counting once past ``stop_at``.
    """
    total = largest = 0
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    for top in paths:
        try:
            stack = [os.open(top, flags)]
        except OSError:
            continue
        while stack:
            fd = stack.pop()
            try:
                with os.scandir(fd) as entries:
                    for entry in entries:
                        try:
                            st = entry.stat(follow_symlinks=False)
                        except OSError:
                            continue
                        total += st.st_blocks * 512
                        if stat.S_ISREG(st.st_mode):
                            largest = max(largest, st.st_size)
                        elif stat.S_ISDIR(st.st_mode):
                            with contextlib.suppress(OSError):
                                stack.append(_open_readable_dir(entry.name, fd, st.st_mode))
            except OSError:
                pass
            finally:
                os.close(fd)
            if stop_at is not None and total > stop_at:
                for left in stack:
                    os.close(left)
                return total, largest
    return total, largest


def _open_readable_dir(name: str, dir_fd: int, mode: int) -> int:
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        os.chmod(name, stat.S_IMODE(mode) | stat.S_IRUSR | stat.S_IXUSR, dir_fd=dir_fd)
        return os.open(name, flags, dir_fd=dir_fd)


def unlinked_bytes(root_pid: int) -> int:
    """The space held by files that the processes below ``root_pid`` keep open but that have no
    name any more (deleted, or memfd): invisible to a walk of the folders, real memory on a
    RAM-backed build folder."""
    children: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                ppid = int(f.read().rsplit(b")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    total, seen = 0, set()
    todo = [root_pid]
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, ()))
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                st = os.stat(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if stat.S_ISREG(st.st_mode) and st.st_nlink == 0 and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_blocks * 512
    return total


def _size_text(n: int) -> str:
    if n >= 1 << 30:
        return f"{n / (1 << 30):g} GiB"
    return f"{n / (1 << 20):g} MiB" if n >= 1 << 20 else f"{n} bytes"


_EFBIG = b"[Errno 27] File too large"


class _Pump(threading.Thread):
    """Copies a command's output from a pipe into its log, keeping at most ``cap`` bytes.

    A pipe, not the log file itself, is what the command gets: it cannot reopen, truncate or
    grow the log past the cap. Stops at end of file, or once ``stop`` is set and nothing more
    is waiting (a left-over process outside the sandbox may hold the pipe open).
    """

    def __init__(self, fd: int, out: BinaryIO, cap: int) -> None:
        super().__init__(daemon=True)
        self._fd = fd
        self._out = out
        self._left = cap
        self.stop = threading.Event()
        self.dropped = 0
        # EFBIG as Python prints it (Python ignores SIGXFSZ, so its writes fail instead).
        self.file_too_large = False

    def run(self) -> None:
        try:
            while True:
                ready, _, _ = select.select([self._fd], [], [], 0.1)
                if not ready:
                    if self.stop.is_set():
                        return
                    continue
                data = os.read(self._fd, 1 << 16)
                if not data:
                    return
                self.file_too_large = self.file_too_large or _EFBIG in data
                kept = data[: max(self._left, 0)]
                self._left -= len(kept)
                self.dropped += len(data) - len(kept)
                if kept:
                    self._out.write(kept)
                    self._out.flush()
        except OSError:
            return
        finally:
            os.close(self._fd)


class SubprocessRunner:
    """The real :class:`rewheel.core.types.Runner`.

    ``sandbox`` is how confined commands (``confine=...``: build code) run: inside bubblewrap
    when it has a bwrap, and in every case under its limits. ``on_notice`` receives, once per
    runner, the news that network isolation was asked for but is not available here (default: a
    logging warning). ``unshare`` cuts commands run outside the sandbox off from the network
    (default: an ``UnshareProbe`` of the runner's own, probed when first needed). ``umask`` is
    the one every command gets (None: rewheel's own); ``fixed_layout`` the prefix that turns
    address space randomization off for build code (default: ``fixed_layout_prefix()``, probed
    when first needed; [] for none).
    """

    def __init__(
        self,
        *,
        on_notice: Callable[[str], None] | None = None,
        sandbox: SandboxPolicy | None = None,
        poll_seconds: float = 1.0,
        unshare: UnshareProbe | None = None,
        umask: int | None = BUILD_UMASK,
        fixed_layout: Callable[[], Sequence[str]] = fixed_layout_prefix,
    ) -> None:
        self._unshare = unshare or UnshareProbe()
        self._on_notice = on_notice or _log.warning
        self._notice_lock = threading.Lock()
        self._noticed: set[str] = set()
        self.sandbox = sandbox or SandboxPolicy(bwrap=None)
        self._poll = poll_seconds
        self.umask = umask
        self._fixed_layout = fixed_layout
        # The process groups of the commands running now, for ``stop``.
        self._running: set[int] = set()
        self._running_lock = threading.Lock()
        self._stopped = False

    def stop(self) -> None:
        """Kill every command running now and refuse to start more (Ctrl-C): each one fails
        with ``CommandFailed`` at once instead of the run waiting for its builds to end."""
        with self._running_lock:
            self._stopped = True
            groups = list(self._running)
        for pgid in groups:
            _kill_group(pgid)

    def _refuse_if_stopped(self, cmd: Sequence[str], log: Path) -> None:
        if self._stopped:
            raise CommandFailed(
                f"{cmd[0]} not run: the run was interrupted", cmd=cmd, returncode=None, log_path=log
            )

    def __call__(
        self,
        cmd: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        log: Path,
        timeout: float | None = None,
        isolate_network: bool = False,
        confine: Confinement | None = None,
    ) -> None:
        cmd = [str(c) for c in cmd]
        self._refuse_if_stopped(cmd, log)
        limits = self.sandbox.limits if confine is not None else None
        if limits is not None and limits.wall_seconds is not None:
            timeout = limits.wall_seconds if timeout is None else min(timeout, limits.wall_seconds)
        pass_fds: tuple[int, ...] = ()
        layout: list[str] = []
        if confine is not None:
            layout = list(self._fixed_layout())
            if not layout:
                self._notice_once(
                    "address space randomization cannot be turned off for builds here "
                    "(util-linux setarch -R failed); builds whose tools record addresses "
                    "will not be reproducible",
                    key="setarch",
                )
        if confine is not None and confine.relocated is not None and not self.sandbox.enabled:
            raise ValueError("a relocated work folder needs the sandbox")
        if confine is not None and self.sandbox.enabled:
            moved = confine.relocated
            if moved is not None:
                # What the box shows: the work folder at its fixed path, nowhere else.
                cmd = [moved.text(c) for c in cmd]
                env = {k: moved.text(v) for k, v in env.items()}
            seccomp = _seccomp_fd()
            pass_fds = () if seccomp is None else (seccomp,)
            full = _rlimit_prefix(self.sandbox.limits) + bwrap_argv(
                self.sandbox,
                layout + cmd,
                cwd=confine.in_box(cwd),
                readable=confine.readable,
                writable=confine.writable,
                network=confine.network,
                seccomp_fd=seccomp,
                relocated=moved,
            )
            shown = full
        else:
            network_prefix: list[str] = []
            if isolate_network or (confine is not None and not confine.network):
                network_prefix = self._unshare.prefix()
                if not network_prefix:
                    self._notice_once(
                        "network isolation is not available on this machine "
                        "(unshare --net --map-root-user failed); "
                        "running builds with network access",
                        key="unshare",
                    )
            guard = _orphan_guard_prefix()
            if not _findable(cmd[0], env):
                guard = layout = []  # let Popen report the missing program itself
            # What the log shows: the command and the prefixes that change what it sees.
            shown = network_prefix + layout + cmd
            rlimits = _rlimit_prefix(limits) if limits is not None else []
            full = rlimits + network_prefix + guard + layout + cmd
        watched = tuple(confine.writable) if confine is not None else ()
        folder_cap = limits.folder_bytes if limits is not None else None
        output_cap = limits.output_bytes if limits is not None else 1 << 40

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
            read_end, write_end = os.pipe()
            try:
                proc = subprocess.Popen(
                    full,
                    cwd=cwd,
                    env=dict(env),
                    stdin=subprocess.DEVNULL,
                    stdout=write_end,
                    stderr=subprocess.STDOUT,
                    # Its own process group, so that a timeout can kill everything it started.
                    start_new_session=True,
                    pass_fds=pass_fds,
                    umask=-1 if self.umask is None else self.umask,
                )
            except OSError as exc:
                os.close(read_end)
                out.write(f"=== cannot run: {exc}\n".encode())
                raise CommandFailed(
                    f"cannot run {cmd[0]}: {exc}", cmd=cmd, returncode=None, log_path=log
                ) from exc
            finally:
                os.close(write_end)
                for fd in pass_fds:
                    os.close(fd)
            with self._running_lock:
                self._running.add(proc.pid)
                if self._stopped:  # stop() came between the check above and now
                    _kill_group(proc.pid)
            pump = _Pump(read_end, out, output_cap)
            pump.start()
            try:
                returncode, stopped = self._wait(proc, timeout, watched, folder_cap)
            except BaseException:
                _kill_group(proc.pid)
                proc.wait()
                raise
            finally:
                # Whatever it left running in the background (build servers, daemons) would
                # outlive the build environment it uses and keep writing to the log.
                _kill_group(proc.pid)
                with self._running_lock:
                    self._running.discard(proc.pid)
                pump.stop.set()
                pump.join()
            if pump.dropped:
                out.write(
                    f"=== {pump.dropped} more bytes of output dropped "
                    f"(the log keeps {_size_text(output_cap)} per command)\n".encode()
                )
            if stopped is not None:
                limit, message = stopped
                out.write(f"=== {message}, process group killed\n".encode())
                raise CommandFailed(
                    f"{cmd[0]} {message}",
                    cmd=cmd,
                    returncode=None,
                    log_path=log,
                    timed_out=limit == "wall time",
                    limit=limit,
                )
            out.write(f"=== exit status {returncode}\n".encode())
        if returncode != 0:
            hit: str | None = None
            # Said by the signal, or by Python (which ignores SIGXFSZ and gets EFBIG), and then
            # only believed when a file of that size is there: the output is the build's.
            too_large = returncode in (-signal.SIGXFSZ, 128 + signal.SIGXFSZ) or (
                pump.file_too_large
                and limits is not None
                and limits.file_bytes is not None
                and folder_usage(watched)[1] >= limits.file_bytes
            )
            if too_large and limits is not None and limits.file_bytes is not None:
                hit = "file size"
                what = f"wrote a file larger than the limit of {_size_text(limits.file_bytes)}"
            elif returncode < 0:
                what = f"was killed by signal {-returncode}"
            else:
                what = f"exited with status {returncode}"
            raise CommandFailed(
                f"{cmd[0]} {what}", cmd=cmd, returncode=returncode, log_path=log, limit=hit
            )

    def _wait(
        self,
        proc: subprocess.Popen[bytes],
        timeout: float | None,
        watched: Sequence[Path],
        folder_cap: int | None,
    ) -> tuple[int, tuple[str, str] | None]:
        """Wait for ``proc``; ``(status, None)``, or ``(status, (limit, message))`` if it was
        stopped for going past its wall time or the size of its writable folders.

        The wait itself blocks (no polling that would add latency to every hook); a watchdog
        thread checks the limits and kills the process group when one is passed.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        watching = bool(watched) and folder_cap is not None
        stopped: list[tuple[str, str]] = []
        done = threading.Event()

        def watch() -> None:
            while True:
                wait = self._poll if watching else None
                if deadline is not None:
                    left = max(deadline - time.monotonic(), 0.0)
                    wait = left if wait is None else min(wait, left)
                if done.wait(wait):
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    stopped.append(("wall time", f"timed out after {timeout:g}s"))
                elif watching and folder_cap is not None:
                    used, _largest = folder_usage(watched, stop_at=folder_cap)
                    if used <= folder_cap and used + unlinked_bytes(proc.pid) <= folder_cap:
                        continue
                    stopped.append(
                        (
                            "folder size",
                            f"wrote more than the limit of {_size_text(folder_cap)} "
                            "into its folders",
                        )
                    )
                else:
                    continue
                _kill_group(proc.pid)
                return

        watchdog = None
        if deadline is not None or watching:
            watchdog = threading.Thread(target=watch, name="rewheel-limits", daemon=True)
            watchdog.start()
        try:
            returncode = proc.wait()
        finally:
            done.set()
            if watchdog is not None:
                watchdog.join()
        return returncode, (stopped[0] if stopped else None)

    def _notice_once(self, message: str, *, key: str) -> None:
        with self._notice_lock:
            if key in self._noticed:
                return
            self._noticed.add(key)
        self._on_notice(message)
