"""PEP 517 hook calls for one source tree, run inside one build environment."""

from __future__ import annotations

import contextlib
import json
import os
import stat
from collections.abc import Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from pyproject_hooks import (
    BackendUnavailable,
    BuildBackendHookCaller,
    HookMissing,
    UnsupportedOperation,
)

from ..core.errors import BuildError, CommandFailed, RewheelError, Step
from ..core.fsutil import is_plain_file, remove_tree
from ..core.types import Confinement, Runner
from .buildenv import BuildEnvironment
from .diagnose import TAIL_CHARS, diagnose, mentions_network_failure
from .pyproject import BuildSystem
from .runner import UnshareProbe

_NO_NETWORK = "the build tried to reach the network; builds run without network"
_LOG_TAIL = TAIL_CHARS  # how much of a failed hook's output is searched for its cause


_MAX_HOOK_OUTPUT = 16 << 20  # the largest output.json a hook may leave for pyproject_hooks
_MAX_WARNINGS_TEXT = 64 << 10  # how much of a hook's warnings goes into the log


def _tidy_control_folder(control: Path) -> None:
    """Leave only plain ``input.json`` and ``output.json`` in a hook's control folder.

    The hook could write there; pyproject_hooks removes the folder with ``TemporaryDirectory``,
    whose cleanup in Python 3.11.7 changes the mode of whatever a link it finds points at
    (CVE-2023-6597) and fails on trees deeper than the recursion limit. What the hook left is
    removed here first, without following anything.
    """
    with contextlib.suppress(OSError):
        if stat.S_ISDIR(control.lstat().st_mode):
            control.chmod(0o700)
    with contextlib.suppress(OSError), os.scandir(control) as entries:
        left = [
            Path(e.path)
            for e in entries
            if not (e.name in ("input.json", "output.json") and e.is_file(follow_symlinks=False))
        ]
    for path in left:
        with contextlib.suppress(OSError):
            remove_tree(path)


class Backend:
    """The build backend of ``source_dir``, called through ``runner`` with ``env``'s Python.

    ``unshare`` says whether ``isolate_network`` could cut the hooks off from the network, for
    the message of a hook that failed to reach it (default: probed here when first needed).
    """

    def __init__(
        self,
        source_dir: Path,
        build_system: BuildSystem,
        env: BuildEnvironment,
        runner: Runner,
        *,
        log: Path,
        package: str,
        version: str,
        timeout: float | None = None,
        isolate_network: bool = True,
        confine: Confinement | None = None,
        unshare: UnshareProbe | None = None,
        removed: Collection[str] = (),
    ) -> None:
        self._source_dir = source_dir
        self._build_system = build_system
        self._env = env
        self._runner = runner
        self._log = log
        self._package = package
        self._removed = tuple(removed)  # build requirements its settings drop (requires_remove)
        self._version = version
        self._timeout = timeout
        self._isolate_network = isolate_network
        self._unshare = unshare or UnshareProbe()
        # What the hooks may see: by default the source tree (writable) and the environment.
        self._confine = confine or Confinement(
            readable=(env.path,), writable=(source_dir,), network=not isolate_network
        )
        self._hook_log_start = 0  # where the output of the last hook call begins in the log
        with self._translated(Step.BACKEND_SETUP):
            self._caller = BuildBackendHookCaller(
                str(source_dir),
                build_system.backend,
                backend_path=list(build_system.backend_path) or None,
                runner=self._run_hook,
                python_executable=str(env.python),
            )

    def get_requires_for_build_wheel(
        self, config_settings: Mapping[str, Any] | None = None
    ) -> list[str]:
        """What the backend needs, beyond build-system.requires, to build a wheel."""
        with self._translated(Step.GET_REQUIRES):
            result = self._caller.get_requires_for_build_wheel(config_settings)
            if not isinstance(result, list) or not all(isinstance(r, str) for r in result):
                raise self._error(Step.GET_REQUIRES, f"hook returned {result!r}, not a list of str")
            for req in result:
                try:
                    Requirement(req)
                except InvalidRequirement as exc:
                    raise self._error(Step.GET_REQUIRES, f"invalid requirement {req!r}") from exc
            return list(result)

    def build_wheel(self, out_dir: Path, config_settings: Mapping[str, Any] | None = None) -> Path:
        """Build a wheel into ``out_dir`` and return its path."""
        with self._translated(Step.BUILD_WHEEL):
            out_dir.mkdir(parents=True, exist_ok=True)
            # Named as the hook sees it (in the box, the work folder is at a fixed path).
            name = self._caller.build_wheel(str(self._confine.in_box(out_dir)), config_settings)
            if not isinstance(name, str) or "/" in name or not name.endswith(".whl"):
                raise self._error(
                    Step.BUILD_WHEEL, f"hook returned {name!r}, not a wheel file name"
                )
            wheel = out_dir / name
            if not wheel.is_file():
                raise self._error(Step.BUILD_WHEEL, f"the backend did not write {name}")
            if not is_plain_file(wheel):
                # A link would make rewheel publish whatever file it points at.
                raise self._error(Step.BUILD_WHEEL, f"{name} is not a plain file (a link?)")
            return wheel

    def _network_was_cut(self) -> bool:
        # Without a working unshare the hook ran with network: its network errors are real ones.
        return self._isolate_network and self._unshare.available()

    def _hook_output(self) -> str:
        """The end of what the last hook call wrote to the log."""
        try:
            with self._log.open("rb") as f:
                size = f.seek(0, 2)
                f.seek(max(self._hook_log_start, size - _LOG_TAIL))
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _error(self, step: str, message: str) -> BuildError:
        return BuildError(
            message, package=self._package, version=self._version, step=step, log_path=self._log
        )

    @contextlib.contextmanager
    def _translated(self, step: str) -> Iterator[None]:
        """Every way a hook call can fail, as one BuildError naming the package, step and log."""
        backend = self._build_system.backend
        try:
            yield
        except BuildError:
            raise
        except CommandFailed as exc:
            why = "timed out" if exc.timed_out else f"failed ({exc.message})"
            message = f"backend {backend} {why}"
            output = self._hook_output()
            offline = self._network_was_cut()
            if offline and mentions_network_failure(output):
                message += f": {_NO_NETWORK}"
            error = self._error(step, message)
            if not exc.timed_out and exc.limit is None:
                # What the hook's own output shows of the cause, as one line with its fix.
                found = diagnose(
                    output, package=self._package, offline=offline, removed=self._removed
                )
                error.hint = found.line() if found is not None else None
            raise error from exc
        except BackendUnavailable as exc:
            self._append_log(f"=== cannot import backend {backend}\n{exc}\n")
            detail = str(exc).splitlines()[0] if str(exc) else "cannot import it"
            raise self._error(step, f"backend {backend} is unavailable: {detail}") from exc
        except HookMissing as exc:
            raise self._error(step, f"backend {backend} has no hook {exc.hook_name}") from exc
        except UnsupportedOperation as exc:
            self._append_log(f"=== unsupported operation\n{exc.traceback}\n")
            raise self._error(step, f"backend {backend} does not support this") from exc
        except (RewheelError, OSError, ValueError, KeyError, TypeError) as exc:
            # Unreadable hook output, a bad backend-path, a file system failure.
            raise self._error(step, f"{type(exc).__name__}: {exc}") from exc

    def _run_hook(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        """The subprocess runner handed to pyproject_hooks."""
        environ = dict(self._env.environ)
        environ.update(extra_environ or {})
        try:
            self._hook_log_start = self._log.stat().st_size
        except OSError:
            self._hook_log_start = 0
        # pyproject_hooks runs [python, its _in_process.py, hook name, control folder]: the
        # hook reads the script and writes its answer into the control folder.
        control = Path(cmd[-1])
        output = control / "output.json"
        try:
            self._runner(
                cmd,
                cwd=Path(cwd) if cwd else self._source_dir,
                env=environ,
                log=self._log,
                timeout=self._timeout,
                isolate_network=self._isolate_network,
                confine=self._confine.adding(readable=[Path(cmd[1])], writable=[control]),
            )
            # No output at all is for pyproject_hooks to report.
            if os.path.lexists(output) and not is_plain_file(output, max_size=_MAX_HOOK_OUTPUT):
                # pyproject_hooks would open it next: a link to a device or FIFO, or a huge
                # file, would hang rewheel or fill its memory.
                raise self._error(
                    Step.HOOK_OUTPUT,
                    f"the hook's output.json is not a plain file of at most "
                    f"{_MAX_HOOK_OUTPUT >> 20} MiB",
                )
        finally:
            # Whether the hook succeeded, failed or was killed: pyproject_hooks cleans up next.
            _tidy_control_folder(control)
        self._move_warnings_to_log(output)

    def _move_warnings_to_log(self, output: Path) -> None:
        """Put the backend's warnings in the build log instead of re-raising them here.

        pyproject_hooks re-emits them with warnings.warn in this process, where they would reach
        the user's terminal (or fail a test run with warnings as errors) out of context.
        """
        try:
            data = json.loads(output.read_text(encoding="utf-8"))
            found = data.pop("warnings", None) if isinstance(data, dict) else None
            if not found:
                return
            # The hook wrote these: one line each (no forged "=== exit status 0" line), and
            # no more of them than the log keeps of any output.
            lines = [
                "=== backend warning: "
                + repr(f"{w.get('filename')}:{w.get('lineno')}: {w.get('message')}")[1:-1]
                for w in found
                if isinstance(w, dict)
            ]
            text = "\n".join(lines)
            if len(text) > _MAX_WARNINGS_TEXT:
                text = text[:_MAX_WARNINGS_TEXT] + "\n=== more backend warnings dropped"
            self._append_log(text + "\n")
            output.write_text(json.dumps(data), encoding="utf-8")
        except (OSError, ValueError):
            return  # leave the output alone; pyproject_hooks reports what it can

    def _append_log(self, text: str) -> None:
        with contextlib.suppress(OSError), self._log.open("a", encoding="utf-8") as f:
            f.write(text)
