#!/usr/bin/env python3
"""Time no-op re-runs of ``rewheel bootstrap`` on a repository it already built.

Runs the command ``bench_bootstrap.py`` runs for a tree (the same options, the same cleaned
environment with a private HOME) ``--runs`` times on a repository whose last run built that tree,
and prints each run's wall and CPU seconds with the load average before it, then the minimum,
median and maximum against the 0.5 s target of issue 16. rewheel's bytecode is compiled first,
as ``pip install`` does (``bench_bootstrap.compile_bytecode``). Every run must build nothing: one
that does is reported, and makes the script exit with status 1.

Work on a copy of the repository: a run that is not a no-op changes it.

    cp -a OUT/langchain_0.1.11/rewheel /tmp/noop && \\
    .venv/bin/python benchmarks/bench_noop.py --example langchain --repo /tmp/noop/repo --runs 10

Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import clean_environ  # noqa: E402
from bench_bootstrap import (  # noqa: E402
    DROPPED_NAMES,
    EXAMPLES,
    NOOP_TARGET_S,
    PYPI,
    compile_bytecode,
    default_rewheel,
    split_trees,
)


def command(rewheel: Path, tree: str, repo: Path, jobs: int, example: str | None) -> list[str]:
    """The bootstrap command of ``bench_bootstrap.Bench.tool`` for rewheel."""
    argv = [str(rewheel), "bootstrap", tree, "--repo", str(repo), "-j", str(jobs)]
    argv += ["--index-url", PYPI]
    if example is not None:
        folder = HERE.parent / "examples" / example
        argv += ["-c", str(folder / "constraints.txt"), "--settings", str(folder / "settings")]
    return argv


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--repo", type=Path, required=True, help="a repository the tree was built in"
    )
    parser.add_argument("--example", choices=sorted(EXAMPLES), help="the tree of examples/NAME")
    parser.add_argument("--trees", nargs="+", default=[], metavar="REQ", help="or this tree")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("-j", "--jobs", type=int, default=2, help="as the bench's -j (default 2)")
    parser.add_argument(
        "--home", type=Path, help="the private HOME (default: the repository's sibling home/)"
    )
    parser.add_argument("--rewheel", type=Path, default=default_rewheel())
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    trees = [EXAMPLES[args.example]] if args.example else split_trees(args.trees)
    if len(trees) != 1:
        parser.error("give --example or one --trees requirement")
    repo = args.repo.resolve()
    home = (args.home or repo.parent / "home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    env = clean_environ(os.environ, home, names=DROPPED_NAMES)
    print(compile_bytecode(args.rewheel, env), flush=True)
    cmd = command(args.rewheel, trees[0], repo, args.jobs, args.example)
    print(f"command: {shlex.join(cmd)}  (cwd {repo.parent}, HOME {home})", flush=True)
    runs = []
    for n in range(1, args.runs + 1):
        load = os.getloadavg()[0]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        done = subprocess.run(
            cmd, cwd=repo.parent, env=env, capture_output=True, text=True, check=False
        )
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        said = (done.stdout + done.stderr).strip().splitlines()
        noop = done.returncode == 0 and any(" 0 built, " in f" {line}" for line in said[-3:])
        runs.append({"wall_s": wall, "cpu_s": cpu, "load1_before": load, "no_op": noop})
        print(
            f"run {n}: {wall:.3f} s wall, {cpu:.3f} s CPU, load average before {load:.2f}"
            + ("" if noop else f"  NOT A NO-OP (exit {done.returncode}): {said[-1:]}"),
            flush=True,
        )
    walls = [r["wall_s"] for r in runs]
    loads = [r["load1_before"] for r in runs]
    missed = sum(1 for w in walls if w >= NOOP_TARGET_S)
    print(
        f"no-op over {len(walls)} runs: min {min(walls):.3f} s, median "
        f"{statistics.median(walls):.3f} s, max {max(walls):.3f} s; CPU median "
        f"{statistics.median(r['cpu_s'] for r in runs):.3f} s; load average "
        f"{min(loads):.2f} to {max(loads):.2f}; target under {NOOP_TARGET_S} s: "
        + ("met by every run" if not missed else f"missed by {missed} of {len(walls)}")
    )
    if args.json:
        args.json.write_text(json.dumps({"command": cmd, "runs": runs}, indent=1) + "\n")
    return 0 if all(r["no_op"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
