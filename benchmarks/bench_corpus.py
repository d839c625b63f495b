#!/usr/bin/env python3
"""Bootstrap a corpus of popular PyPI packages into ONE repository and tabulate what became of each.

The corpus covers the build systems people meet: pure Python under several backends, C, C++,
Cython, meson-python, scikit-build-core (CMake), pbr and setup_requires, legacy setup.py without
a pyproject.toml, and Rust. Each package is bootstrapped on its own, one after another, into the
same repository, as a user adding packages would: what an earlier package built is reused.

The script drives the ``rewheel`` command line (a subprocess per package, ``--json`` on stdout),
never rewheel's modules. Per package it prints one row: built (with the wall time of its
bootstrap and the seconds of its own build) or failed, with the ONE cause line rewheel printed
(the diagnosis line of the failure, or the error's own message).

Standard library only, so it can run under any Python 3.11+.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# _common, beside this script, whether it is run as a script or loaded from its file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import TOOL_SETTINGS, clean_environ

PYPI = "https://pypi.org/simple"
HERE = Path(__file__).resolve().parent
# Variables that would make rewheel see more than PyPI (its own settings too).
DROPPED_PREFIXES = (*TOOL_SETTINGS, "REWHEEL_")
CAUSE_CHARS = 400


@dataclass(frozen=True)
class Entry:
    name: str
    version: str
    system: str  # the build system, as the sdist declares it
    kind: str  # the family: pure, C, C++, Cython, meson, CMake, pbr, legacy, Rust


# Versions pinned on 2026-12-01 (the newest on PyPI that day that supports Python 3.11; the
# requested package is pinned, what it needs resolves to the newest then). Left out, and why, in
# benchmarks/README.md (numpy and what needs it: ~9 min to build here; lxml: ~8 min).
CORPUS: tuple[Entry, ...] = (
    # pure Python, by backend
    Entry("click", "8.5.1", "flit-core", "pure"),
    Entry("flask", "3.1.3", "flit-core", "pure"),
    Entry("rich", "15.0.0", "poetry-core", "pure"),
    Entry("tomlkit", "0.15.2", "poetry-core", "pure"),
    Entry("httpx", "0.28.1", "hatchling", "pure"),
    Entry("attrs", "26.1.0", "hatchling + hatch-vcs", "pure"),
    Entry("python-dateutil", "4.0.0", "hatchling + hatch-vcs", "pure"),
    Entry("pygments", "2.21.0", "hatchling", "pure"),
    Entry("colorama", "0.4.6", "hatchling", "pure"),
    Entry("typer", "0.29.2", "pdm-backend", "pure"),
    Entry("requests", "2.34.2", "setuptools", "pure"),
    Entry("boto3", "1.44.8", "setuptools", "pure"),
    Entry("pytest", "9.2.0", "setuptools + setuptools-scm", "pure"),
    Entry("tqdm", "4.70.1", "setuptools + setuptools-scm", "pure"),
    Entry("tabulate", "0.10.0", "setuptools + setuptools-scm", "pure"),
    Entry("pyparsing", "3.3.3", "flit-core", "pure"),
    Entry("sphinx", "9.0.4", "flit-core", "pure"),
    # legacy: setup.py (and setup.cfg), no pyproject.toml
    Entry("six", "1.17.0", "setup.py, no pyproject", "legacy"),
    Entry("docopt", "0.6.2", "setup.py, no pyproject", "legacy"),
    Entry("pytz", "2026.6", "setup.py, no pyproject", "legacy"),
    Entry("future", "1.0.0", "setup.py, no pyproject", "legacy"),
    # pbr, with setup_requires=['pbr'] in setup.py
    Entry("stevedore", "5.10.0", "pbr.build + setup_requires", "pbr"),
    Entry("debtcollector", "3.1.0", "pbr.build + setup_requires", "pbr"),
    # C extensions
    Entry("markupsafe", "3.0.4", "setuptools, C", "C"),
    Entry("pyyaml", "6.0.4", "setuptools + Cython, C (libyaml)", "C"),
    Entry("psutil", "7.2.2", "setuptools, C", "C"),
    Entry("wrapt", "2.5.2", "setuptools, C", "C"),
    Entry("msgpack", "1.2.4", "setuptools, C", "C"),
    Entry("cffi", "2.1.1", "setuptools, C (libffi)", "C"),
    Entry("simplejson", "4.3.0", "setuptools, C", "C"),
    Entry("regex", "2026.11.19", "setuptools, C", "C"),
    Entry("ujson", "6.1.0", "setuptools + setuptools-scm, C", "C"),
    Entry("coverage", "7.17.5", "setuptools, C", "C"),
    Entry("zstandard", "0.25.0", "setuptools + cffi, C (ships a Cargo.toml)", "C"),
    Entry("psycopg2", "2.9.13", "setuptools, C (libpq, pg_config)", "C"),
    Entry("pillow", "13.0.0", "setuptools, C (libjpeg, zlib, ...)", "C"),
    # C++
    Entry("kiwisolver", "1.5.1", "setuptools + cppy, C++", "C++"),
    Entry("greenlet", "3.5.6", "setuptools, C++", "C++"),
    # Cython, and C extensions of the aio-libs family
    Entry("frozenlist", "1.8.0", "setuptools (in-tree backend) + Cython", "Cython"),
    Entry("propcache", "0.5.4", "setuptools (in-tree backend) + Cython", "Cython"),
    Entry("yarl", "1.25.1", "setuptools (in-tree backend) + Cython", "Cython"),
    Entry("multidict", "7.2.1", "setuptools, C", "C"),
    Entry("aiohttp", "3.14.5", "setuptools + Cython (llhttp)", "Cython"),
    # meson-python
    Entry("pycairo", "1.29.2", "meson-python (cairo)", "meson"),
    Entry("dbus-python", "1.5.1", "meson-python (dbus-1, glib)", "meson"),
    Entry("siphash24", "1.9", "meson-python (+ a git subproject)", "meson"),
    # scikit-build-core / CMake
    Entry("pybind11", "3.1.0", "scikit-build-core (CMake)", "CMake"),
    Entry("pyzmq", "27.3.0", "scikit-build-core + Cython (CMake, libzmq)", "CMake"),
    # Rust: its crates cannot be fetched where crates.io is out of reach
    Entry("rpds-py", "2026.9.1", "maturin (Rust)", "Rust"),
    Entry("cryptography", "50.0.2", "maturin (Rust) + cffi", "Rust"),
)

# The requests that issue 13 saw reported as "conflicting requirements" (the newest versions on
# 2026-12-01): not part of the corpus figure, checked with --conflicts, without settings by
# default, and with benchmarks/corpus-settings/conflicts to see them build.
CONFLICT_CASES: tuple[str, ...] = (
    "platformdirs==4.14.9",
    "filelock==4.3.1",
    "virtualenv==21.15.11",
    "python-discovery==1.9.6",
    "tox==4.67.15",
    "this-does-not-exist",
    "requests==999",
)


@dataclass
class Row:
    name: str
    requirement: str
    system: str
    kind: str
    result: str  # built, reused, prebuilt, failed, dependency-failed, error, timeout
    wall_seconds: float
    build_seconds: float | None  # its own build, when this run built it
    built_in_run: int  # packages this bootstrap built (the requested one and what it needed)
    cause: str | None  # the one cause line for a failure
    culprit: str | None  # the package whose failure it is (itself or a dependency)
    settings: str | None  # the settings files used by what this bootstrap built, if any
    exit_code: int
    log: str


# --------------------------------------------------------------------------- pure helpers


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def one_line(text: str) -> str:
    """The text on one printable line, at most CAUSE_CHARS long."""
    flat = " ".join(text.split())
    flat = "".join(ch if ch.isprintable() else "?" for ch in flat)
    return flat if len(flat) <= CAUSE_CHARS else flat[: CAUSE_CHARS - 3] + "..."


def error_line(error: Mapping[str, Any] | None) -> str | None:
    """The cause line rewheel printed for an error object. A failed build's hint is the diagnosis
    of its log, which names the cause: that line. Any other error's message is the cause, and its
    hint (if any) the fix: the first line of each, joined."""
    if not error:
        return None
    hint = error.get("hint")
    hint = hint.strip().splitlines()[0] if isinstance(hint, str) and hint.strip() else None
    message = error.get("message")
    message = (
        message.strip().splitlines()[0] if isinstance(message, str) and message.strip() else None
    )
    if error.get("type") == "BuildError" and hint:
        return one_line(hint)
    if message and hint:
        return one_line(f"{message}; fix: {hint}")
    if message or hint:
        return one_line(message or hint or "")
    return one_line(str(error.get("type") or "unknown error"))


def message_head(error: Mapping[str, Any] | None) -> str | None:
    if not error or not isinstance(error.get("message"), str):
        return None
    return one_line(error["message"].strip().splitlines()[0])


def classify(
    report: Mapping[str, Any] | None, name: str
) -> tuple[str, str | None, str | None, str | None]:
    """(result, cause, culprit, headline) for the requested ``name`` from bootstrap's --json
    report. ``headline`` is the failure's message when the cause is a diagnosis hint."""
    if report is None:
        return "error", "no JSON report (see the log)", None, None
    key = normalize(name)

    def mine(ids: Sequence[str]) -> bool:
        return any(normalize(node.split("==", 1)[0]) == key for node in ids)

    for result in ("built", "reused", "prebuilt"):
        if mine(report.get(result) or []):
            return result, None, None, None
    failed = report.get("failed") or []
    for node in failed:
        if normalize(str(node.get("name", ""))) == key:
            error = node.get("error")
            return "failed", error_line(error), node.get("id"), message_head(error)
    if report.get("error"):
        error = report["error"]
        return "error", error_line(error), error.get("package"), message_head(error)
    if failed:
        # The requested package was left unbuilt by a dependency's failure: that failure's line.
        node = failed[0]
        error = node.get("error")
        return "dependency-failed", error_line(error), node.get("id"), message_head(error)
    for node in report.get("not_attempted") or []:
        if normalize(str(node.get("name", ""))) == key:
            error = node.get("error")
            return "dependency-failed", error_line(error), None, message_head(error)
    if report.get("outcome") == "ok":
        return "reused", None, None, None
    return "error", f"outcome {report.get('outcome')!r}, package not in the report", None, None


def newest_run(repo: Path, since: float) -> dict[str, Any] | None:
    """The newest run file (docs/records.md) written after ``since``."""
    runs = sorted(
        (p for p in (repo / "runs").glob("*.json") if p.stat().st_mtime >= since),
        key=lambda p: p.stat().st_mtime,
    )
    if not runs:
        return None
    try:
        data: dict[str, Any] = json.loads(runs[-1].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data


def own_seconds(run: Mapping[str, Any] | None, name: str) -> tuple[float | None, list[str]]:
    """The seconds of ``name``'s own build in ``run`` and the names of all it built."""
    if run is None:
        return None, []
    key = normalize(name)
    seconds = None
    built: list[str] = []
    for node in run.get("nodes") or []:
        if node.get("outcome") in ("built", "prebuilt", "failed"):
            built.append(f"{node.get('outcome')}:{normalize(str(node.get('name', '')))}")
            if normalize(str(node.get("name", ""))) == key and node.get("seconds") is not None:
                seconds = float(node["seconds"])
    return seconds, built


def format_table(rows: Sequence[Row]) -> str:
    lines = [
        "| package | build system | result | time | cause (failures) |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        if row.result in ("built", "prebuilt"):
            own = f"{row.build_seconds:.1f} s" if row.build_seconds is not None else "?"
            time_text = f"{own} (run {row.wall_seconds:.0f} s, {row.built_in_run} built)"
        elif row.result == "reused":
            time_text = f"built earlier (run {row.wall_seconds:.0f} s)"
        else:
            time_text = f"{row.wall_seconds:.0f} s"
        result = row.result + (" (settings)" if row.settings else "")
        cause = (row.cause or "").replace("|", "\\|")
        if row.culprit and row.result != "failed":
            cause = f"{row.culprit}: {cause}"
        lines.append(f"| {row.requirement} | {row.system} | {result} | {time_text} | {cause} |")
    return "\n".join(lines)


def summary(rows: Sequence[Row]) -> str:
    ok = [r for r in rows if r.result in ("built", "reused")]
    with_settings = [r for r in ok if r.settings]
    prebuilt = [r for r in rows if r.result == "prebuilt"]
    failed = [r for r in rows if r.result not in ("built", "reused", "prebuilt")]
    no_cause = [r for r in failed if not r.cause]
    total = len(rows) or 1
    return (
        f"{len(ok)}/{len(rows)} built from source ({100 * len(ok) / total:.0f} %), "
        f"{len(with_settings)} of them with a settings file; {len(prebuilt)} pre-built; "
        f"{len(failed)} failed ({len(no_cause)} without a cause line)"
    )


# --------------------------------------------------------------------------- running


def rewheel_command(explicit: str | None) -> list[str]:
    if explicit:
        return [explicit]
    beside = Path(sys.executable).parent / "rewheel"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("rewheel")
    if found is None:
        sys.exit("rewheel not found: pass --rewheel PATH")
    return [found]


def run_one(
    requirement: str,
    name: str,
    *,
    rewheel: list[str],
    repo: Path,
    settings: Path | None,
    jobs: int,
    index_url: str,
    env: dict[str, str],
    logs: Path,
    work: Path,
    timeout: float,
) -> tuple[str, str | None, str | None, str | None, float, float | None, list[str], int, Path]:
    command = [
        *rewheel,
        "bootstrap",
        requirement,
        "--repo",
        str(repo),
        "-j",
        str(jobs),
        "--index-url",
        index_url,
        "--keep-going",
        "--json",
        "--work-dir",
        str(work),
    ]
    if settings is not None:
        command += ["--settings", str(settings)]
    log = logs / f"{re.sub(r'[^A-Za-z0-9._-]+', '_', requirement)}.log"
    start_wall = time.time()
    start = time.monotonic()
    with log.open("wb") as err:
        err.write(("$ " + " ".join(command) + "\n").encode())
        err.flush()
        try:
            done = subprocess.run(
                command, stdout=subprocess.PIPE, stderr=err, env=env, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            wall = time.monotonic() - start
            return (
                "timeout",
                f"stopped after {timeout:.0f} s",
                None,
                None,
                wall,
                None,
                [],
                -1,
                log,
            )
    wall = time.monotonic() - start
    try:
        report = json.loads(done.stdout.decode("utf-8"))
    except ValueError:
        report = None
    result, cause, culprit, headline = classify(report, name)
    seconds, built = own_seconds(newest_run(repo, start_wall - 1), name)
    return result, cause, culprit, headline, wall, seconds, built, done.returncode, log


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            models = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        info["cpu"] = models[0] if models else None
        with open("/proc/meminfo", encoding="utf-8") as f:
            info["mem_kib"] = int(f.readline().split()[1])
    except OSError:
        pass
    return info


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--only", action="append", default=[], metavar="NAME", help="just these packages"
    )
    parser.add_argument(
        "--conflicts",
        action="store_true",
        help="bootstrap the six 'conflict' cases of issue 13 instead of the corpus",
    )
    parser.add_argument("--repo", type=Path, default=HERE / "out" / "corpus" / "repo")
    parser.add_argument("-j", "--jobs", type=int, default=2)
    parser.add_argument("--index-url", default=PYPI)
    parser.add_argument(
        "--settings",
        type=Path,
        help="the settings folder passed to rewheel (default benchmarks/corpus-settings; none with "
        "--conflicts)",
    )
    parser.add_argument("--json", type=Path, help="also write the rows and the machine as JSON")
    parser.add_argument("--rewheel", help="the rewheel executable")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds per package")
    parser.add_argument("--fresh", action="store_true", help="delete the repository first")
    parser.add_argument("--list", action="store_true", help="print the corpus and exit")
    args = parser.parse_args(argv)

    if args.list:
        for entry in CORPUS:
            print(f"{entry.name}=={entry.version}\t{entry.kind}\t{entry.system}")
        return 0
    if args.conflicts:
        entries = []
        for req in CONFLICT_CASES:
            # requests==999 is the request itself; the others are pinned versions.
            name, _, version = req.partition("==") if req != "requests==999" else (req, "", "")
            entries.append(Entry(name, version, "(issue 13 conflict case)", "-"))
    else:
        entries = list(CORPUS)
    if args.only:
        wanted = {normalize(part) for value in args.only for part in value.split(",") if part}
        entries = [e for e in entries if normalize(re.split(r"[=<>!~]", e.name)[0]) in wanted]
        if not entries:
            parser.error("--only matched nothing in the corpus")

    repo = args.repo.resolve()
    if args.fresh and repo.exists():
        shutil.rmtree(repo)
    repo.mkdir(parents=True, exist_ok=True)
    home = repo.parent / "home"
    logs = repo.parent / "logs"
    work = repo.parent / "work"
    home.mkdir(parents=True, exist_ok=True)
    work.mkdir(mode=0o700, parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    env = clean_environ(os.environ, home, prefixes=DROPPED_PREFIXES)
    rewheel = rewheel_command(args.rewheel)
    if args.settings is None and not args.conflicts:
        args.settings = HERE / "corpus-settings"
    settings_dir = args.settings.resolve() if args.settings and args.settings.is_dir() else None

    rows: list[Row] = []
    info = machine()
    print(f"# corpus of {len(entries)} into {repo} on {info['date']}", file=sys.stderr)
    for entry in entries:
        requirement = f"{entry.name}=={entry.version}" if entry.version else entry.name
        name = re.split(r"[=<>!~ ]", entry.name)[0]
        result, cause, culprit, _head, wall, seconds, built, code, log = run_one(
            requirement,
            name,
            rewheel=rewheel,
            repo=repo,
            settings=settings_dir,
            jobs=args.jobs,
            index_url=args.index_url,
            env=env,
            logs=logs,
            work=work,
            timeout=args.timeout,
        )
        # The settings files that applied to what this bootstrap built (or tried to).
        used = sorted(
            {
                f"{touched.split(':', 1)[1]}.toml"
                for touched in built
                if settings_dir is not None
                and (settings_dir / f"{touched.split(':', 1)[1]}.toml").exists()
            }
        )
        settings_file = ", ".join(used) or None
        row = Row(
            name=name,
            requirement=requirement,
            system=entry.system,
            kind=entry.kind,
            result=result,
            wall_seconds=round(wall, 1),
            build_seconds=None if seconds is None else round(seconds, 1),
            built_in_run=sum(1 for touched in built if not touched.startswith("failed:")),
            cause=cause,
            culprit=culprit,
            settings=settings_file,
            exit_code=code,
            log=str(log),
        )
        rows.append(row)
        shown = f"{result} {wall:.0f}s" + (f": {cause}" if cause else "")
        print(f"{requirement}: {shown}", file=sys.stderr, flush=True)
        if args.json:
            write_json(args.json, rows, info, repo, settings_dir, args.jobs)

    print(format_table(rows))
    print()
    print(summary(rows))
    if args.json:
        write_json(args.json, rows, info, repo, settings_dir, args.jobs)
    return 0


def write_json(
    path: Path,
    rows: Sequence[Row],
    info: Mapping[str, Any],
    repo: Path,
    settings: Path | None,
    jobs: int,
) -> None:
    data = {
        "format": 1,
        "machine": dict(info),
        "repository": str(repo),
        "settings": str(settings) if settings else None,
        "jobs": jobs,
        "summary": summary(rows),
        "rows": [asdict(row) for row in rows],
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)


if __name__ == "__main__":
    sys.exit(main())
