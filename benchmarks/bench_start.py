#!/usr/bin/env python3
"""What a run pays before it builds anything, in a repository of 10,000 synthetic wheels.

Uses ``bench_publish.make_wheels`` for the wheels (kept in ``--out`` between runs) and publishes
them with ``Repository.publish_wheel`` (no pages) into a fresh repository, then times, each in a
fresh ``Repository`` object as a new run makes it:

- ``wheels()`` as ``verify`` and the other proofs call it: every wheel hashed, no cache;
- a run's start with the hash cache (``remember_hashes``): the no-op check (``wheel_sha256`` of
  each wheel of the last build order, here all of them, as ``app`` asks it), the start's
  ``regenerate_index`` and ``save_hashes``: first with no ``cache/hashes.json`` yet,
  then again with nothing changed, then after one wheel was published (one project's pages
  made again);
- the same start without the hash cache, as the code before it did it (the no-op check listed
  and hashed every wheel with ``wheels()``), for comparison.

The hasher is counted, so the figures say how many files each start read.

    .venv/bin/python benchmarks/bench_start.py [--size 10000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_publish import make_wheels  # noqa: E402

from rewheel.core.fsutil import sha256_file  # noqa: E402
from rewheel.repo.repository import Repository  # noqa: E402


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, path: Path) -> str:
        self.calls += 1
        return sha256_file(path)


def start(root: Path, *, cache: bool) -> tuple[float, int]:
    """Seconds of a run's start (no-op check's wheel listing, page regeneration) and how many
    files it hashed."""
    counting = Counting()
    t = time.perf_counter()
    repo = Repository(root)
    if cache:
        repo.remember_hashes(hasher=counting, clock=lambda: time.time() + 60)
    with repo.locked():
        if cache:
            names = sorted(p.name for p in (root / "wheels").glob("*.whl"))
            t = time.perf_counter()  # the listing stands for reading build-order.json
            held = [repo.wheel_sha256(n) for n in names]
            assert None not in held
        else:
            repo.wheels()
        repo.regenerate_index()
        repo.save_hashes()
    seconds = time.perf_counter() - t
    if not cache:  # the hasher is not used without the cache: count the files instead
        counting.calls = len(repo.wheels())
    return seconds, counting.calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=10000)
    parser.add_argument("--per-project", type=int, default=3)
    parser.add_argument("--out", type=Path, default=HERE / "out" / "start")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    wheels = make_wheels(args.out / "wheels", args.size + 1, args.per_project)
    extra = wheels.pop()
    root = args.out / "repo"
    if root.exists():
        shutil.rmtree(root)
    repo = Repository(root)
    repo.ensure_layout()
    with repo.locked():
        for w in wheels:
            repo.publish_wheel(w)
    figures: dict[str, tuple[float, int]] = {}

    t = time.perf_counter()
    n = len(Repository(root).wheels())
    figures["verify's wheels() (no cache)"] = (time.perf_counter() - t, n)
    figures["start, no hash cache (before)"] = start(root, cache=False)
    figures["start, no hash cache again (before)"] = start(root, cache=False)
    figures["start, cache not made yet"] = start(root, cache=True)
    figures["start, nothing changed"] = start(root, cache=True)
    with Repository(root).locked():
        Repository(root).publish_wheel(extra)
    figures["start, one wheel published since"] = start(root, cache=True)
    figures["start, nothing changed (again)"] = start(root, cache=True)

    print(f"{len(wheels):,} wheels ({args.per_project} per project)")
    print("| what | seconds | files hashed |")
    print("|---|---|---|")
    for what, (seconds, hashed) in figures.items():
        print(f"| {what} | {seconds:.3f} | {hashed:,} |")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
