#!/usr/bin/env python3
"""Time ``rewheel bootstrap`` against ``fromager bootstrap`` on the same trees, in the same run.

Per tree the runs alternate: rewheel cold, fromager cold, rewheel warm, fromager warm. A cold run
starts from an empty directory; a warm run repeats the command on the directories the cold run
left behind, with nothing changed. Every run goes through a fresh measuring subprocess (this
script with ``_measure``) so that ``getrusage(RUSAGE_CHILDREN)`` there covers exactly one run.

Standard library only, so it can run under any Python 3.11+.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# _common, beside this script, whether it is run as a script or loaded from its file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import PYTHON_SETUP, clean_environ

FROMAGER_VERSION = "0.77.0"
PYPI = "https://pypi.org/simple"
DEFAULT_TREES = ("requests", "attrs", "PyYAML")
# --example NAME: the tree of examples/NAME with its constraints and (rewheel's) settings.
EXAMPLES = {"langchain": "langchain==0.1.11"}
NOOP_TARGET_S = 0.5
TOOLS = ("rewheel", "fromager")
PHASES = ("cold", "warm")
MEASURE = "_measure"
TAIL_LINES = 40
# PYTHONDONTWRITEBYTECODE (set on this machine) would make every start of either tool compile
# its modules again, which a user's never does: most of a no-op re-run's time.
DROPPED_NAMES = (*PYTHON_SETUP, "PYTHONDONTWRITEBYTECODE")


# --------------------------------------------------------------------------- measuring wrapper


class CgroupCpu:
    """CPU time of this process and of everything it starts, from a cgroup made for the run.

    ``getrusage(RUSAGE_CHILDREN)`` counts only the descendants that were waited for up a chain
    of parents that were waited for too. Builds in bubblewrap's PID namespace are not: bwrap's
    init in the box reaps the build, but is itself never waited for by the bwrap rewheel starts,
    so a CPU-bound build in the box adds nothing (measured here: a 1 s loop under
    ``bwrap --unshare-pid`` gives 0.00 s; with ``--as-pid-1`` or ``unshare -f -p``, 1.05 s). A
    cgroup counts every process in it, whoever reaps it. Made below this process's own cgroup
    (cgroup v1 ``cpuacct``, else cgroup v2), joined before the command starts (its processes
    stay in it), left and removed at the end; ``None`` from ``make`` where none can be made (no
    permission): the rusage figure is then all there is.
    """

    def __init__(self, folder: Path, parent: Path, read: Callable[[Path], float]) -> None:
        self.folder, self.parent, self._read = folder, parent, read

    @classmethod
    def make(cls) -> CgroupCpu | None:
        try:
            mounts = Path("/proc/self/mounts").read_text(encoding="utf-8").splitlines()
            mine = Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
        except OSError:
            return None
        paths = {}  # controllers -> this process's cgroup path
        for line in mine:
            _, controllers, path = line.split(":", 2)
            paths[controllers] = path
        places: list[tuple[Path, Callable[[Path], float]]] = []
        for line in mounts:
            fields = line.split()
            if len(fields) < 4:
                continue
            mount, kind, options = fields[1], fields[2], fields[3].split(",")
            if kind == "cgroup" and "cpuacct" in options:
                own = next((p for c, p in paths.items() if "cpuacct" in c.split(",")), None)
                if own is not None:
                    places.insert(0, (Path(mount + own.rstrip("/")), _cpuacct_seconds))
            elif kind == "cgroup2" and "" in paths:
                places.append((Path(mount + paths[""].rstrip("/")), _cpu_stat_seconds))
        for parent, read in places:
            folder = parent / f"rewheel-bench-{os.getpid()}"
            try:
                folder.mkdir()
            except OSError:
                continue
            try:
                (folder / "cgroup.procs").write_text(str(os.getpid()), encoding="ascii")
                read(folder)
            except OSError:
                with contextlib.suppress(OSError):
                    folder.rmdir()
                continue
            return cls(folder, parent, read)
        return None

    def seconds(self) -> float:
        return self._read(self.folder)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            (self.parent / "cgroup.procs").write_text(str(os.getpid()), encoding="ascii")
        with contextlib.suppress(OSError):  # a process left behind keeps it: said by its figure
            self.folder.rmdir()


def _cpuacct_seconds(folder: Path) -> float:
    return int((folder / "cpuacct.usage").read_text(encoding="ascii")) / 1e9


def _cpu_stat_seconds(folder: Path) -> float:
    for line in (folder / "cpu.stat").read_text(encoding="ascii").splitlines():
        key, _, value = line.partition(" ")
        if key == "usage_usec":
            return int(value) / 1e6
    raise OSError(f"no usage_usec in {folder / 'cpu.stat'}")


def measure_main(argv: Sequence[str]) -> int:
    """Run one command, then write its wall time and rusage to a JSON file.

    argv: RESULT_JSON LOG_FILE TIMEOUT_SECONDS -- COMMAND...
    Runs in its own fresh process, so RUSAGE_CHILDREN holds only this command's process tree
    (those of its processes that were waited for), and the cgroup it makes (``CgroupCpu``) only
    this command and itself.
    """
    result_path, log_path, timeout_text, sep, *command = argv
    if sep != "--" or not command:
        print(f"usage: {MEASURE} RESULT LOG TIMEOUT -- COMMAND...", file=sys.stderr)
        return 2
    timeout = float(timeout_text)
    cgroup = CgroupCpu.make()
    cgroup_before = cgroup.seconds() if cgroup is not None else 0.0
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    timed_out = False
    with open(log_path, "wb") as log:
        started = time.perf_counter()
        # Own session: a timeout or Ctrl-C can then stop the whole tree, not just the top process.
        proc = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            returncode = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            returncode = _stop_group(proc)
        except BaseException:
            _stop_group(proc)
            raise
        wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cgroup_cpu = None
    if cgroup is not None:
        with contextlib.suppress(OSError):
            cgroup_cpu = cgroup.seconds() - cgroup_before
        cgroup.close()
    result = {
        "returncode": returncode,
        "timed_out": timed_out,
        "wall_s": wall,
        "user_s": after.ru_utime - before.ru_utime,
        "sys_s": after.ru_stime - before.ru_stime,
        # Every process of the run, boxed builds included (None: no cgroup could be made).
        "cgroup_cpu_s": cgroup_cpu,
        # Linux reports kilobytes; this is the largest single process of the tree.
        "max_rss_kib": after.ru_maxrss,
    }
    Path(result_path).write_text(json.dumps(result), encoding="utf-8")
    return 0


def _stop_group(proc: subprocess.Popen[bytes]) -> int:
    for sig, grace in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 30.0)):
        with contextlib.suppress(ProcessLookupError):  # already gone
            os.killpg(proc.pid, sig)
        try:
            return proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()


# --------------------------------------------------------------------------- data


@dataclass
class RunResult:
    tree: str
    tool: str
    phase: str  # "cold" or "warm"
    command: list[str]
    cwd: str
    log: str
    status: str  # "ok", "failed", "timeout", "skipped"
    returncode: int | None = None
    wall_s: float | None = None
    cpu_s: float | None = None  # the cgroup's figure where one was made, else rusage's
    rusage_cpu_s: float | None = None  # what RUSAGE_CHILDREN saw (not builds in a PID namespace)
    cpu_source: str = ""  # "cgroup" or "rusage"
    max_rss_mib: float | None = None
    utilisation: float | None = None  # CPU seconds / (wall seconds * cores)
    # rewheel only: the same ratio from its first build slot taken to its last given back, as
    # the run itself measured it (repo/run-stats.json).
    utilisation_building: float | None = None
    # rewheel only: the machine's busy share of its CPU while builds waited for a slot.
    utilisation_queued: float | None = None
    queued_s: float | None = None
    load1_before: float | None = None
    note: str = ""
    tail: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass(frozen=True)
class Tool:
    name: str
    command: list[str]
    run_dir: Path  # the working directory; wiped before the cold run
    env: dict[str, str]


# --------------------------------------------------------------------------- pure helpers


def slug(tree: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tree).strip("_") or "tree"


def split_trees(values: Sequence[str]) -> list[str]:
    trees = [part.strip() for value in values for part in value.split(",")]
    return [tree for tree in trees if tree]


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b <= 0:
        return None
    return a / b


def tail(path: Path, lines: int = TAIL_LINES) -> list[str]:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return []
    # Progress bars redraw with \r; keep only the last drawn state of each line.
    kept = [[part for part in line.split("\r") if part.strip()] for line in text.splitlines()]
    return [parts[-1] if parts else "" for parts in kept[-lines:]]


def format_table(rows: Sequence[Sequence[str]], right_from: int) -> str:
    """Plain aligned text; columns from ``right_from`` on are right-aligned (numbers)."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    out = []
    for n, row in enumerate(rows):
        cells = [
            cell.rjust(width) if i >= right_from else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells).rstrip())
        if n == 0:
            out.append("  ".join("-" * width for width in widths))
    return "\n".join(out)


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def run_cells(run: RunResult | None) -> list[str]:
    """Wall s, CPU s, utilisation, peak RSS of one run, or its status where it has no figures."""
    if run is None:
        return ["-"] * 4
    if not run.ok:
        return [run.status.upper()] + ["-"] * 3
    util = None if run.utilisation is None else f"{run.utilisation * 100:.0f}%"
    return [
        _num(run.wall_s, ".1f"),
        _num(run.cpu_s, ".1f"),
        util or "-",
        _num(run.max_rss_mib, ".0f"),
    ]


def ratio_cells(a: RunResult | None, b: RunResult | None) -> list[str]:
    """a/b for wall s, CPU s and peak RSS, when both runs succeeded."""
    if a is None or b is None or not (a.ok and b.ok):
        return ["-"] * 4
    values = [
        ratio(a.wall_s, b.wall_s),
        ratio(a.cpu_s, b.cpu_s),
        None,
        ratio(a.max_rss_mib, b.max_rss_mib),
    ]
    return ["-" if v is None else f"{v:.2f}x" for v in values]


def summary_rows(
    runs: Sequence[RunResult], trees: Sequence[str], tools: Sequence[str]
) -> list[list[str]]:
    by_key = {(r.tree, r.tool, r.phase): r for r in runs}
    rows = [
        ["tree", "tool"]
        + [f"{phase} {col}" for phase in PHASES for col in ("s", "CPU s", "util", "RSS MiB")]
    ]
    for tree in trees:
        for tool in tools:
            rows.append(
                [tree, tool] + [c for p in PHASES for c in run_cells(by_key.get((tree, tool, p)))]
            )
        if list(tools) == list(TOOLS):
            cells = [
                c
                for p in PHASES
                for c in ratio_cells(
                    by_key.get((tree, TOOLS[0], p)), by_key.get((tree, TOOLS[1], p))
                )
            ]
            rows.append([tree, "rewheel/fromager", *cells])
    return rows


# --------------------------------------------------------------------------- I/O


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.out: Path = args.out.resolve()
        self.jobs: int = args.jobs
        self.timeout: float = args.timeout
        self.cores = available_cores()
        self.tools: list[str] = [args.only] if args.only else list(TOOLS)
        self.rewheel: Path = args.rewheel
        self.fromager_venv: Path = args.fromager_venv.resolve()
        self.constraints: Path | None = args.constraints
        self.settings: Path | None = args.settings
        self.runs: list[RunResult] = []

    # -- setup

    def ensure_fromager(self) -> Path:
        """The fromager executable, installing fromager==0.77.0 into its own venv if missing."""
        venv = self.fromager_venv
        exe = venv / "bin" / "fromager"
        if exe.exists() and fromager_version(exe) == FROMAGER_VERSION:
            return exe
        print(f"installing fromager=={FROMAGER_VERSION} into {venv}", flush=True)
        env = clean_environ(os.environ, Path.home(), names=DROPPED_NAMES)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, env=env)
        pip = [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "--isolated",
            "--disable-pip-version-check",
        ]
        subprocess.run(
            [*pip, "install", "--index-url", PYPI, f"fromager=={FROMAGER_VERSION}"],
            check=True,
            env=env,
        )
        found = fromager_version(exe)
        if found != FROMAGER_VERSION:
            raise SystemExit(
                f"fromager in {venv} reports version {found!r}, not {FROMAGER_VERSION}"
            )
        return exe

    def tool(self, name: str, tree: str, fromager: Path | None) -> Tool:
        run_dir = self.out / slug(tree) / name
        home = run_dir / "home"
        if name == "rewheel":
            command = [
                str(self.rewheel),
                "bootstrap",
                tree,
                "--repo",
                str(run_dir / "repo"),
                "-j",
                str(self.jobs),
                "--index-url",
                PYPI,
            ]
            if self.constraints is not None:
                command += ["-c", str(self.constraints)]
            if self.settings is not None:
                command += ["--settings", str(self.settings)]
            return Tool(
                name, command, run_dir, clean_environ(os.environ, home, names=DROPPED_NAMES)
            )
        assert fromager is not None
        # fromager runs uv from PATH, so its venv's bin goes first. Its default index is PyPI.
        command = [
            str(fromager),
            "-j",
            str(self.jobs),
            "--sdists-repo",
            "sdists-repo",
            "--wheels-repo",
            "wheels-repo",
            "--work-dir",
            "work-dir",
            # The same constraints; rewheel's settings have no fromager equivalent here (its
            # per-package settings are another format), so fromager builds without them.
            *(["-c", str(self.constraints)] if self.constraints is not None else []),
            "bootstrap",
            tree,
        ]
        env = clean_environ(os.environ, home, names=DROPPED_NAMES, path_prefix=fromager.parent)
        return Tool(name, command, run_dir, env)

    # -- running

    def run(self, tool: Tool, tree: str, phase: str) -> RunResult:
        logs = self.out / slug(tree) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        log = logs / f"{tool.name}-{phase}.log"
        result_file = logs / f"{tool.name}-{phase}.result.json"
        result_file.unlink(missing_ok=True)
        if phase == "cold" and tool.run_dir.exists():
            shutil.rmtree(tool.run_dir)
        (tool.run_dir / "home").mkdir(parents=True, exist_ok=True)
        run = RunResult(
            tree=tree,
            tool=tool.name,
            phase=phase,
            command=tool.command,
            cwd=str(tool.run_dir),
            log=str(log),
            status="failed",
            load1_before=os.getloadavg()[0],
        )
        print(
            f"[{tree}] {tool.name} {phase}: {shlex.join(tool.command)}  (cwd {tool.run_dir})",
            flush=True,
        )
        wrapper = [
            sys.executable,
            str(Path(__file__).resolve()),
            MEASURE,
            str(result_file),
            str(log),
            str(self.timeout),
            "--",
            *tool.command,
        ]
        done = subprocess.run(wrapper, cwd=tool.run_dir, env=tool.env, check=False)
        if done.returncode != 0 or not result_file.exists():
            run.note = f"measuring wrapper exited {done.returncode}"
            run.tail = tail(log)
            self._report(run)
            return run
        data: dict[str, Any] = json.loads(result_file.read_text(encoding="utf-8"))
        run.returncode = int(data["returncode"])
        run.wall_s = float(data["wall_s"])
        run.rusage_cpu_s = float(data["user_s"]) + float(data["sys_s"])
        cgroup_cpu = data.get("cgroup_cpu_s")
        if cgroup_cpu is not None:
            run.cpu_s, run.cpu_source = float(cgroup_cpu), "cgroup"
        else:
            run.cpu_s, run.cpu_source = run.rusage_cpu_s, "rusage"
        run.max_rss_mib = float(data["max_rss_kib"]) / 1024
        run.utilisation = ratio(run.cpu_s, run.wall_s * self.cores)
        stats = tool.run_dir / "repo" / "run-stats.json"
        # Only a cold run writes fresh figures: a re-run with nothing to do leaves the last ones.
        if tool.name == "rewheel" and phase == "cold" and stats.is_file():
            figures = json.loads(stats.read_text(encoding="utf-8"))
            value = figures.get("core_utilisation_while_building")
            run.utilisation_building = None if value is None else float(value)
            queued = figures.get("core_utilisation_while_queued")
            run.utilisation_queued = None if queued is None else float(queued)
            run.queued_s = figures.get("queued_seconds")
        if data["timed_out"]:
            run.status, run.note = "timeout", f"stopped after {self.timeout:.0f} s"
        elif run.returncode != 0:
            run.status, run.note = "failed", f"exit status {run.returncode}"
        else:
            run.status = "ok"
        if not run.ok:
            run.tail = tail(log)
        self._report(run)
        return run

    def _report(self, run: RunResult) -> None:
        if run.ok:
            print(
                f"[{run.tree}] {run.tool} {run.phase}: ok, {_num(run.wall_s, '.1f')} s wall, "
                f"{_num(run.cpu_s, '.1f')} s CPU, "
                f"{_num((run.utilisation or 0) * 100, '.0f')}% of {self.cores} cores"
                + (
                    f" ({run.utilisation_building * 100:.0f}% while building)"
                    if run.utilisation_building is not None
                    else ""
                )
                + ", "
                f"peak RSS {_num(run.max_rss_mib, '.0f')} MiB (load average before: "
                f"{_num(run.load1_before, '.2f')})",
                flush=True,
            )
            return
        print(f"[{run.tree}] {run.tool} {run.phase}: {run.status.upper()} ({run.note})", flush=True)
        print(f"  last {len(run.tail)} lines of {run.log}:", flush=True)
        for line in run.tail:
            print(f"  | {line}", flush=True)

    def bench_tree(self, tree: str, fromager: Path | None) -> None:
        tools = {name: self.tool(name, tree, fromager) for name in self.tools}
        cold: dict[str, RunResult] = {}
        for phase in PHASES:
            for name, tool in tools.items():
                if phase == "warm" and not cold[name].ok:
                    skipped = RunResult(
                        tree=tree,
                        tool=name,
                        phase=phase,
                        command=tool.command,
                        cwd=str(tool.run_dir),
                        log="",
                        status="skipped",
                        note="cold run did not succeed",
                    )
                    print(f"[{tree}] {name} warm: skipped (cold run did not succeed)", flush=True)
                    self.runs.append(skipped)
                    continue
                run = self.run(tool, tree, phase)
                self.runs.append(run)
                if phase == "cold":
                    cold[name] = run


def interpreter_of(script: Path) -> str | None:
    """The Python a console script runs with (its ``#!`` line), or None if it is not one."""
    try:
        with open(script, "rb") as f:
            first = f.readline(4096)
    except OSError:
        return None
    if not first.startswith(b"#!"):
        return None
    words = first[2:].decode("utf-8", "replace").split()
    return words[0] if words and "python" in Path(words[0]).name else None


def compile_bytecode(rewheel: Path, env: Mapping[str, str]) -> str:
    """Write the bytecode of rewheel's own modules before anything is timed, as ``pip install``
    of a wheel does. An editable install (a checkout) has none until a run writes it, so the
    first run that imports a module would pay for compiling it. What was done, for the output."""
    python = interpreter_of(rewheel)
    if python is None:
        return f"bytecode not compiled beforehand: {rewheel} is not a Python console script"
    found = subprocess.run(
        [python, "-c", "import os, rewheel; print(os.path.dirname(rewheel.__file__))"],
        capture_output=True,
        text=True,
        env=dict(env),
        check=False,
    )
    folder = found.stdout.strip()
    if found.returncode != 0 or not folder:
        return f"bytecode not compiled beforehand: {python} cannot import rewheel"
    # Timestamp pycs, as the import system writes them (with SOURCE_DATE_EPOCH set, compileall
    # would write checked-hash ones, which make every import read and hash the source).
    command = [python, "-m", "compileall", "-q", "--invalidation-mode", "timestamp", folder]
    done = subprocess.run(command, env=dict(env), check=False, capture_output=True, text=True)
    if done.returncode != 0:
        return f"bytecode compile failed ({shlex.join(command)}): {done.stdout.strip()[-300:]}"
    return f"bytecode of rewheel compiled before timing, as pip install does: {shlex.join(command)}"


def tool_version(command: Sequence[str]) -> str:
    try:
        out = subprocess.run(
            [*command, "--version"], capture_output=True, text=True, check=False, timeout=120
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown ({exc})"
    lines = (out.stdout or out.stderr).strip().splitlines()
    return lines[-1] if lines else ""


def fromager_version(exe: Path) -> str | None:
    match = re.search(r"(\d+(?:\.\d+)+\S*)", tool_version([str(exe)]))
    return match.group(1) if match else None


def default_rewheel() -> Path:
    beside = Path(sys.executable).parent / "rewheel"
    if beside.exists():
        return beside
    found = shutil.which("rewheel")
    return Path(found) if found else beside


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(
        description="Compare rewheel and fromager bootstrap times (cold and warm) on PyPI trees."
    )
    parser.add_argument(
        "--trees",
        nargs="+",
        default=list(DEFAULT_TREES),
        metavar="REQ",
        help=f"requirements to bootstrap, one tree each (default: {' '.join(DEFAULT_TREES)})",
    )
    parser.add_argument(
        "--example",
        choices=sorted(EXAMPLES),
        help="the tree of examples/NAME with its constraints.txt (both tools) and settings/ "
        "(rewheel); replaces --trees, --constraints and --settings",
    )
    parser.add_argument(
        "--constraints", type=Path, metavar="FILE", help="constraints file, given to both tools"
    )
    parser.add_argument(
        "--settings", type=Path, metavar="DIR", help="rewheel's per-package settings folder"
    )
    parser.add_argument("--only", choices=TOOLS, help="run just this tool")
    parser.add_argument(
        "-j",
        "--jobs",
        type=int,
        default=available_cores(),
        help="parallel jobs passed to both tools (default: cores available, %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=here / "out",
        help="work directory for all runs (default: %(default)s)",
    )
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the figures here")
    parser.add_argument(
        "--rewheel",
        type=Path,
        default=default_rewheel(),
        help="rewheel executable (default: %(default)s)",
    )
    parser.add_argument(
        "--fromager-venv",
        type=Path,
        default=None,
        help=f"venv with fromager {FROMAGER_VERSION}, made if missing (default: OUT/fromager-venv)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=7200.0,
        help="seconds one run may take (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if args.example is not None:
        folder = here.parent / "examples" / args.example
        args.trees = [EXAMPLES[args.example]]
        args.constraints = folder / "constraints.txt"
        args.settings = folder / "settings"
    for option in ("constraints", "settings"):
        path = getattr(args, option)
        if path is not None:
            if not path.exists():
                parser.error(f"--{option}: {path} does not exist")
            setattr(args, option, path.resolve())  # the tools run in their own folders
    args.trees = split_trees(args.trees)
    if not args.trees:
        parser.error("--trees: no requirement given")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.fromager_venv is None:
        args.fromager_venv = args.out / "fromager-venv"
    return args


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == [MEASURE]:
        return measure_main(argv[1:])
    args = parse_args(argv)
    command_line = shlex.join([sys.executable, sys.argv[0], *argv])
    bench = Bench(args)
    if "rewheel" in bench.tools and not bench.rewheel.exists():
        raise SystemExit(f"rewheel executable not found: {bench.rewheel} (use --rewheel)")
    bench.out.mkdir(parents=True, exist_ok=True)
    fromager = bench.ensure_fromager() if "fromager" in bench.tools else None
    versions = {}
    bytecode = None
    if "rewheel" in bench.tools:
        bytecode = compile_bytecode(
            bench.rewheel, clean_environ(os.environ, Path.home(), names=DROPPED_NAMES)
        )
        print(bytecode, flush=True)
        versions["rewheel"] = tool_version([str(bench.rewheel)])
    if fromager is not None:
        versions["fromager"] = tool_version([str(fromager)])
    load = os.getloadavg()
    print(
        f"{platform.node()}: {bench.cores} cores available, load average "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; jobs={bench.jobs}; "
        + "; ".join(f"{k}: {v}" for k, v in versions.items()),
        flush=True,
    )
    started = time.time()
    for tree in args.trees:
        bench.bench_tree(tree, fromager)

    print()
    print(format_table(summary_rows(bench.runs, args.trees, bench.tools), right_from=2))
    print()
    sources = {r.cpu_source for r in bench.runs if r.cpu_s is not None}
    how = (
        "of every process of the run, from a cgroup made for it (builds in bubblewrap included)"
        if sources == {"cgroup"}
        else "of the processes that were waited for (getrusage: builds in bubblewrap's PID "
        "namespace are missed)" + (" where no cgroup could be made" if "cgroup" in sources else "")
    )
    print(
        f"s = wall seconds; CPU s = user+sys seconds {how};\n"
        f"util = CPU s / (wall s x {bench.cores} cores); "
        "RSS MiB = peak RSS of the largest single process in the tree;\n"
        "x = rewheel/fromager ratio (below 1 means rewheel is faster or smaller). "
        "Load average before each run: progress lines above and the JSON."
    )
    building = [
        f"{r.tree} {r.utilisation_building * 100:.0f}%"
        for r in bench.runs
        if r.tool == "rewheel" and r.phase == "cold" and r.utilisation_building is not None
    ]
    if building:
        print("rewheel, cold, cores busy while builds were under way: " + ", ".join(building))
    queued = [
        f"{r.tree} {r.utilisation_queued * 100:.0f}% over {r.queued_s or 0:.1f} s"
        for r in bench.runs
        if r.tool == "rewheel" and r.phase == "cold" and r.utilisation_queued is not None
    ]
    if queued:
        print("rewheel, cold, cores busy while builds waited for a slot: " + ", ".join(queued))
    noop = [
        f"{r.tree} {r.wall_s:.2f} s ({'met' if r.wall_s < NOOP_TARGET_S else 'missed'})"
        for r in bench.runs
        if r.tool == "rewheel" and r.phase == "warm" and r.ok and r.wall_s is not None
    ]
    if noop:
        print(f"rewheel no-op re-run (warm), target under {NOOP_TARGET_S} s: " + ", ".join(noop))
    print(f"command: {command_line}")
    if args.json:
        payload = {
            "command": command_line,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(started)),
            "host": platform.node(),
            "python": sys.version.split()[0],
            "cores": bench.cores,
            "jobs": bench.jobs,
            "versions": versions,
            "bytecode": bytecode,
            "runs": [asdict(run) for run in bench.runs],
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"figures written to {args.json}")
    return 0 if all(run.ok for run in bench.runs) else 1


if __name__ == "__main__":
    sys.exit(main())
