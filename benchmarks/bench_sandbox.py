#!/usr/bin/env python3
"""What the sandbox costs per build hook: the same PEP 517 hook call, boxed and not, alternating.

1. Makes one synthetic sdist (``tests/support/sdists.py``, an in-tree backend, no network),
   extracts it and creates its build environment with rewheel's own ``EnvBuilder`` (uv, no
   packages needed).
2. Calls ``get_requires_for_build_wheel`` through rewheel's ``Backend`` (pyproject-hooks, a new
   interpreter per call) ``--calls`` times in each mode, alternating call by call so that machine
   load hits both alike:
   - ``sandbox``: bubblewrap with the run's policy (mount, PID, network, IPC, UTS, user
     namespaces, read-only system view, limits), as every build hook runs by default;
   - ``no-sandbox``: what ``--no-sandbox`` does (``unshare --net`` and ``setpriv --pdeathsig``,
     the same limits), which is how hooks ran before the sandbox existed;
   - ``bare``: no containment at all (network kept, no namespace), for the absolute cost.
3. Also times ``/bin/true`` through rewheel's runner in each mode: the fixed cost of setting up
   the box, without an interpreter's start-up around it.
4. Prints the median and 90th percentile of each, and the sandbox's cost: the difference of the
   medians against ``no-sandbox`` and against ``bare`` (target: under 50 ms per hook).

Needs bwrap (Debian: ``apt-get install bubblewrap``) and the dev environment; run from anywhere:

    .venv/bin/python benchmarks/bench_sandbox.py [--calls 40] [--json benchmarks/out/sandbox.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from support.sdists import SdistSpec, make_sdist  # noqa: E402

from rewheel.build.backend import Backend  # noqa: E402
from rewheel.build.buildenv import EnvBuilder  # noqa: E402
from rewheel.build.extract import extract_sdist  # noqa: E402
from rewheel.build.pyproject import read_build_system  # noqa: E402
from rewheel.build.runner import SubprocessRunner  # noqa: E402
from rewheel.build.sandbox import make_policy  # noqa: E402
from rewheel.core.types import Confinement  # noqa: E402


def _figures(seconds: list[float]) -> dict[str, float | int]:
    return {
        "median_ms": round(statistics.median(seconds) * 1000, 1),
        "p90_ms": round(statistics.quantiles(seconds, n=10)[-1] * 1000, 1),
        "calls": len(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=40, help="hook calls per mode")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rewheel-bench-sandbox-") as tmp:
        work = Path(tmp) / "work"
        sdist = make_sdist(SdistSpec("benchpkg", "1.0"), Path(tmp) / "files")
        source = extract_sdist(sdist, work, package="benchpkg", name="src")
        home, dist = work / "home", work / "dist"
        for d in (home, dist):
            d.mkdir(parents=True)
        policies = {
            "sandbox": make_policy(enabled=True, hidden=[Path(tmp) / "files"]),
            "no-sandbox": make_policy(enabled=False),
            "bare": make_policy(enabled=False),
        }
        env = EnvBuilder(index_url="http://127.0.0.1:9/simple", runner=SubprocessRunner()).create(
            work / "env", [], log=work / "env.log", home=home
        )
        confine = Confinement(readable=(work,), writable=(work / "src", home, dist))
        backends = {
            mode: Backend(
                source,
                read_build_system(source, package="benchpkg"),
                env,
                SubprocessRunner(sandbox=policy),
                log=work / f"{mode}.log",
                package="benchpkg",
                version="1.0",
                confine=confine if mode != "bare" else Confinement(network=True),
                isolate_network=mode != "bare",
            )
            for mode, policy in policies.items()
        }
        runners = {mode: SubprocessRunner(sandbox=policy) for mode, policy in policies.items()}
        bare_times: dict[str, list[float]] = {mode: [] for mode in runners}
        for _ in range(args.calls):
            for mode, runner in runners.items():
                started = time.perf_counter()
                runner(
                    ["/bin/true"],
                    cwd=work,
                    env={"PATH": "/usr/bin:/bin"},
                    log=work / "true.log",
                    confine=confine if mode != "bare" else Confinement(network=True),
                )
                bare_times[mode].append(time.perf_counter() - started)
        times: dict[str, list[float]] = {mode: [] for mode in backends}
        for backend in backends.values():  # one warm-up call each
            backend.get_requires_for_build_wheel()
        for _ in range(args.calls):
            for mode, backend in backends.items():
                started = time.perf_counter()
                backend.get_requires_for_build_wheel()
                times[mode].append(time.perf_counter() - started)

    figures = {mode: _figures(t) for mode, t in times.items()}
    setup = {mode: _figures(t) for mode, t in bare_times.items()}
    cost = figures["sandbox"]["median_ms"] - figures["no-sandbox"]["median_ms"]
    absolute = figures["sandbox"]["median_ms"] - figures["bare"]["median_ms"]
    bwrap = policies["sandbox"]
    print(f"get_requires_for_build_wheel, {args.calls} calls per mode, alternating")
    print(f"{'mode':<12}{'hook median':>12}{'p90':>10}{'/bin/true median':>18}{'p90':>10}")
    for mode, f in figures.items():
        t = setup[mode]
        print(
            f"{mode:<12}{f['median_ms']:>10.1f}ms{f['p90_ms']:>8.1f}ms"
            f"{t['median_ms']:>16.1f}ms{t['p90_ms']:>8.1f}ms"
        )
    print(f"sandbox cost per hook against --no-sandbox (difference of medians): {cost:.1f} ms")
    print(
        f"sandbox cost per hook against no containment at all: {absolute:.1f} ms (target < 50 ms)"
    )
    print(f"bubblewrap {bwrap.bwrap_version} at {bwrap.bwrap}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "figures": figures,
                    "bin_true": setup,
                    "sandbox_cost_ms": round(cost, 1),
                    "sandbox_cost_vs_bare_ms": round(absolute, 1),
                },
                indent=2,
            )
            + "\n"
        )


if __name__ == "__main__":
    main()
