#!/usr/bin/env python3
"""Publishing into a large repository: the time of one publication as the repository fills.

1. Writes ``max(--sizes)`` tiny synthetic wheels once (``repo.wheelfile.write_wheel``; no
   network), ``--per-project`` versions of each project (default 3: 10,000 wheels are 3,334
   projects), with a ``Requires-Python`` so that the pages carry one.
2. For each size N: a fresh repository, locked as a run locks it, its index regenerated once (as
   a run does when it starts), then the N wheels published one by one in project order (every
   ``--per-project``-th publication adds a project, so the root page changes too) through
   ``build.publisher.Publisher.publish_prebuilt``: the wheel, its ``.metadata``, the index pages,
   exactly what a build's publication does apart from its provenance. Each publication is timed.
3. Checks that the pages written one publication at a time are byte for byte what a full
   ``regenerate_index`` of the same wheels writes into an empty copy, and times what a run pays
   once when it starts on the filled repository (``regenerate_index`` by a new object).
4. Prints the time of one publication (wall, and CPU of the publishing thread) in the first,
   middle and last ``--window`` publications of each size.

``--prefill`` publishes the wheels outside the three windows with ``Repository.publish_wheel``
only (untimed, no pages) and regenerates the index before each window: for code whose
publications are too slow to fill 10,000 wheels one by one (the figures before this change).

    .venv/bin/python benchmarks/bench_publish.py [--sizes 1000 10000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent

import rewheel  # noqa: E402
from rewheel.build.publisher import Publisher  # noqa: E402
from rewheel.repo.repository import Repository  # noqa: E402
from rewheel.repo.wheelfile import write_wheel  # noqa: E402

TARGET_MS = 10.0


@dataclass
class Window:
    size: int
    name: str
    first: int  # index of its first publication (0-based)
    timings_ms: list[float]  # wall time of each publication
    cpu_ms: list[float]  # CPU time of the publishing thread in each

    def row(self, first_mean: float) -> list[str]:
        t = sorted(self.timings_ms)
        mean = statistics.fmean(t)
        return [
            f"{self.size:,}",
            f"{self.name} {len(t)}",
            f"{self.first + 1:,}-{self.first + len(t):,}",
            f"{mean:.2f}",
            f"{t[len(t) // 2]:.2f}",
            f"{t[min(len(t) - 1, round(0.95 * len(t)))]:.2f}",
            f"{t[-1]:.2f}",
            f"{statistics.fmean(self.cpu_ms):.2f}",
            f"{mean / first_mean:.2f}x",
        ]


def project(i: int, per_project: int) -> str:
    return f"bench_p{i // per_project:05d}"


def make_wheels(folder: Path, count: int, per_project: int) -> list[Path]:
    """``count`` tiny wheels, in publication order; kept in ``folder`` between runs."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        name, version = project(i, per_project), f"1.{i % per_project}"
        dest = folder / f"{name}-{version}-py3-none-any.whl"
        if not dest.exists():
            dist_info = f"{name}-{version}.dist-info"
            metadata = (
                f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
                "Requires-Python: >=3.8\nSummary: a synthetic wheel of bench_publish.py\n"
            )
            write_wheel(
                dest,
                {
                    f"{name}/__init__.py": f"VERSION = {version!r}\n".encode(),
                    f"{dist_info}/METADATA": metadata.encode(),
                    f"{dist_info}/WHEEL": (
                        b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
                        b"Tag: py3-none-any\n"
                    ),
                },
            )
        out.append(dest)
    return out


def windows_of(size: int, width: int) -> list[tuple[str, int]]:
    width = min(width, size)
    return [("first", 0), ("middle", max(0, size // 2 - width // 2)), ("last", size - width)]


def pages(simple: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(simple)): p.read_bytes()
        for p in sorted(simple.rglob("*"))
        if p.is_file() and not p.name.startswith(".")
    }


def fill(
    root: Path, wheels: list[Path], width: int, prefill: bool
) -> tuple[list[Window], float, Path]:
    """Publish ``wheels`` into a fresh repository under ``root``; the timed windows, the seconds
    of the whole fill, and the repository."""
    if root.exists():
        shutil.rmtree(root)
    repo = Repository(root)
    repo.ensure_layout()
    size = len(wheels)
    spans = windows_of(size, width)
    windows = [Window(size, name, first, [], []) for name, first in spans]
    timed = {
        first + k: w for w, (_n, first) in zip(windows, spans, strict=True) for k in range(width)
    }
    starts = {first for _n, first in spans}
    started = time.perf_counter()
    with repo.locked():
        repo.regenerate_index()  # a run's start
        publisher = Publisher(repo)
        for i, wheel in enumerate(wheels):
            window = timed.get(i)
            if window is None and prefill:
                repo.publish_wheel(wheel)
                continue
            if prefill and i in starts:
                repo.regenerate_index()  # the pages of what was pre-filled, untimed
            t0, c0 = time.perf_counter(), time.thread_time()
            publisher.publish_prebuilt(wheel)
            elapsed, cpu = (time.perf_counter() - t0) * 1000, (time.thread_time() - c0) * 1000
            if window is not None:
                window.timings_ms.append(elapsed)
                window.cpu_ms.append(cpu)
            if (i + 1) % 1000 == 0:
                print(f"  {i + 1:,} of {size:,} published", flush=True)
    return windows, time.perf_counter() - started, root


def run_start(root: Path) -> float:
    """The seconds a run pays once, when it starts on ``root``: ``regenerate_index`` by a new
    object (every wheel hashed, every page rendered and compared; none changed, none written)."""
    before = pages(root / "simple")
    t0 = time.perf_counter()
    Repository(root).regenerate_index()
    seconds = time.perf_counter() - t0
    assert pages(root / "simple") == before
    return seconds


def same_as_full(root: Path) -> bool:
    """Whether a full regeneration into an empty copy of ``root`` writes the same pages."""
    copy = root.with_name(root.name + "-full")
    if copy.exists():
        shutil.rmtree(copy)
    copy.mkdir()
    fresh = Repository(copy)
    fresh.wheels_dir = root / "wheels"  # the same wheels, read in place; the pages anew
    fresh.ensure_layout()
    fresh.regenerate_index()
    same = pages(root / "simple") == pages(copy / "simple")
    shutil.rmtree(copy)
    return same


def table(windows: list[Window]) -> str:
    head = ["wheels", "window", "publications", "mean ms", "p50 ms", "p95 ms", "max ms"]
    head += ["CPU ms", "x first"]
    rows = [head]
    firsts = {w.size: statistics.fmean(w.timings_ms) for w in windows if w.name == "first"}
    rows += [w.row(firsts[w.size]) for w in windows]
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i == 1 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def code_version() -> str:
    src = Path(rewheel.__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        head = "?"
    return f"rewheel from {src} (commit {head})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--per-project", type=int, default=3, help="wheels per project")
    parser.add_argument("--window", type=int, default=100, help="publications per window")
    parser.add_argument("--prefill", action="store_true", help="time only the windows")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "publish", help="work folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)

    out: Path = args.out
    load_before = os.getloadavg()[0]
    print(code_version(), flush=True)
    all_wheels = make_wheels(out / "wheels", max(args.sizes), args.per_project)
    windows: list[Window] = []
    summary = []
    ok = True
    for size in sorted(args.sizes):
        print(f"publishing {size:,} wheels{' (pre-filled)' if args.prefill else ''}", flush=True)
        got, seconds, root = fill(
            out / f"repo-{size}", all_wheels[:size], args.window, args.prefill
        )
        same, start_s = same_as_full(root), run_start(root)
        ok = ok and same
        windows += got
        summary.append(
            {
                "wheels": size,
                "fill_seconds": seconds,
                "run_start_seconds": start_s,
                "same": same,
            }
        )
        print(
            f"  filled in {seconds:.1f} s; pages identical to a full regeneration: "
            f"{'yes' if same else 'NO'}; a run's start (regenerate_index by a new object): "
            f"{start_s * 1000:.0f} ms",
            flush=True,
        )
    print()
    print(table(windows))
    load = os.getloadavg()[0]
    biggest = max(args.sizes)
    last = [
        statistics.fmean(w.timings_ms) for w in windows if w.size == biggest and w.name == "last"
    ]
    met = bool(last) and last[0] < TARGET_MS
    print(
        f"\ntarget: under {TARGET_MS:.0f} ms per publication at {biggest:,} wheels: "
        f"{'met' if met else 'NOT met'} ({last[0]:.2f} ms, mean of the last window)"
    )
    print(
        f"{os.cpu_count()} cores, 1-minute load average {load_before:.1f} before, {load:.1f} "
        f"after; command: {' '.join(sys.argv)}"
    )
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "code": code_version(),
            "prefill": args.prefill,
            "load_average_before": load_before,
            "load_average_after": load,
            "sizes": summary,
            "windows": [
                {
                    **asdict(w),
                    "mean_ms": statistics.fmean(w.timings_ms),
                    "cpu_mean_ms": statistics.fmean(w.cpu_ms),
                    "p50_ms": sorted(w.timings_ms)[len(w.timings_ms) // 2],
                }
                for w in windows
            ],
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
