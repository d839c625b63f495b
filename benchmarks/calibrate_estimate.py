#!/usr/bin/env python3
"""How well ``core.durations.estimate_build_seconds`` ranks real builds.

For each build record of the given repositories (prebuilt ones and those taken from a cache
left out), the sdist the record names is taken from that repository's ``sdists/``, extracted
with ``build.extract.extract_sdist`` and counted by ``core.durations.SourceCensus`` exactly as
a build's preparation does, and estimated. The script prints each build's recorded seconds
against the estimate, then, per repository, the Spearman rank correlation of estimate and
seconds, the spread of the log error (ln(estimate / seconds): mean, standard deviation, median
of its absolute value), and how many of the ten slowest builds are among the ten estimated
slowest. For comparison it gives the Spearman correlation of the sdist's size alone (weighing
every build 1, as a cold run did before, ranks nothing: every build ties).

    .venv/bin/python benchmarks/calibrate_estimate.py \\
        /work/bench-lc/langchain_0.1.11/rewheel/repo /work/lc2/repo
    .venv/bin/python benchmarks/calibrate_estimate.py REPO --exclude cython --json out.json

``bench_scaleout.py`` draws its synthetic sdists' estimate errors from a normal distribution
with the mean and standard deviation this prints (``--durations cold``).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rewheel.build.extract import extract_sdist
from rewheel.core.durations import SdistFeatures, SourceCensus, estimate_build_seconds
from rewheel.core.records import BuildRecord


def features_of(sdist: Path) -> SdistFeatures:
    census = SourceCensus()
    with tempfile.TemporaryDirectory(prefix="calibrate-") as tmp:
        extract_sdist(sdist, Path(tmp), name="src", census=census)
    return census.features()


def ranks(values: Sequence[float]) -> list[float]:
    """Ranks from 0, ties sharing their mean rank."""
    order = sorted(range(len(values)), key=values.__getitem__)
    out = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            out[order[k]] = (i + j) / 2
        i = j + 1
    return out


def spearman(a: Sequence[float], b: Sequence[float]) -> float:
    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.fmean(ra), statistics.fmean(rb)
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb, strict=True))
    var = math.sqrt(sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb))
    return cov / var if var else float("nan")


def builds(repo: Path, exclude: set[str]) -> list[tuple[BuildRecord, Path]]:
    out = []
    for path in sorted((repo / "records").glob("*.json")):
        record = BuildRecord.from_json(json.loads(path.read_text(encoding="utf-8")))
        if record.prebuilt or record.from_cache or not record.sdist_url:
            continue
        if record.name in exclude or record.seconds <= 0:
            continue
        sdist = repo / "sdists" / record.sdist_url.rsplit("/", 1)[-1].split("#")[0]
        if sdist.is_file():
            out.append((record, sdist))
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("repos", type=Path, nargs="+", help="rewheel repositories")
    parser.add_argument(
        "--exclude", action="append", default=[], help="leave out this project (repeatable)"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    features: dict[str, SdistFeatures] = {}
    summary = []
    for repo in args.repos:
        rows = []
        for record, sdist in builds(repo, set(args.exclude)):
            if sdist.name not in features:
                features[sdist.name] = features_of(sdist)
            f = features[sdist.name]
            rows.append((record, f, estimate_build_seconds(f)))
        rows.sort(key=lambda r: r[0].seconds)
        print(f"\n{repo}: {len(rows)} builds")
        print("| build | seconds | estimate | ln(estimate/seconds) |\n|---|---|---|---|")
        for record, _f, est in rows:
            error = math.log(est / record.seconds)
            print(f"| {record.node} | {record.seconds:.2f} | {est:.2f} | {error:+.2f} |")
        seconds = [r[0].seconds for r in rows]
        estimates = [r[2] for r in rows]
        errors = [math.log(e / s) for e, s in zip(estimates, seconds, strict=True)]
        slowest = {id(r) for r in sorted(rows, key=lambda r: -r[0].seconds)[:10]}
        guessed = {id(r) for r in sorted(rows, key=lambda r: -r[2])[:10]}
        figures = {
            "repo": str(repo),
            "builds": len(rows),
            "spearman": round(spearman(estimates, seconds), 3),
            "spearman_size_alone": round(
                spearman([float(r[1].total_bytes) for r in rows], seconds), 3
            ),
            "log_error_mean": round(statistics.fmean(errors), 3),
            "log_error_sd": round(statistics.pstdev(errors), 3),
            "log_error_median_abs": round(statistics.median(abs(e) for e in errors), 3),
            "top10_overlap": len(slowest & guessed),
        }
        summary.append(figures)
        print(
            f"Spearman {figures['spearman']:.3f} (sdist size alone "
            f"{figures['spearman_size_alone']:.3f}); ln(estimate/seconds): mean "
            f"{figures['log_error_mean']:+.2f}, sd {figures['log_error_sd']:.2f}, median |.| "
            f"{figures['log_error_median_abs']:.2f}; of the 10 slowest builds, "
            f"{figures['top10_overlap']} are among the 10 estimated slowest"
        )
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
