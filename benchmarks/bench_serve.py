#!/usr/bin/env python3
"""Load on ``rewheel serve``: many installers at once, then many page/file fetchers at once.

1. Builds a repository of small synthetic wheels (``tests/support/sdists.py`` ``make_wheel``,
   ``Repository.publish_wheel``, ``regenerate_index``; no network), projects that depend on each
   other in a binary tree so that every install resolves several of them.
2. Starts ``python -m rewheel serve --repo REPO --port PORT`` on 127.0.0.1 (a free port picked
   here) and waits until it answers.
3. Installer pass: ``--installers`` copies of ``uv pip install -v --no-config --no-cache
   --index-url ... --target <own dir> <a few projects>`` at once, environment scrubbed of PIP_*
   and UV_*. Requests are counted from uv's own log ("Sending fresh GET request"), errors are
   non-zero exits and uv's "Transient request failure" retries.
4. Fetcher pass: a pool of ``--workers`` threads fetches pages (JSON and HTML) and files (wheels,
   ``.metadata``) with urllib for ``--seconds``, one fresh connection per fetch (as a cold
   installer opens them); every wheel is checked against the sha256 its page gives. Latency is
   per fetch, from request to the last body byte.

Prints a table: requests, seconds, requests per second, latency percentiles, errors. Needs the
dev environment (rewheel and uv importable) and is run from anywhere:

    /tmp/devenv/bin/python benchmarks/bench_serve.py [--json benchmarks/out/serve.json]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from _common import TOOL_SETTINGS, without  # noqa: E402
from support.sdists import SdistSpec, make_wheel  # noqa: E402
from uv import find_uv_bin  # noqa: E402

from rewheel.repo.repository import Repository  # noqa: E402

HOST = "127.0.0.1"  # never anything else: this is a load generator
JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "application/vnd.pypi.simple.v1+html"


@dataclass
class PassResult:
    name: str
    clients: int
    requests: int = 0
    seconds: float = 0.0
    errors: int = 0
    latencies_ms: list[float] = field(default_factory=list)  # per request, or per install
    latency_of: str = "request"
    error_samples: list[str] = field(default_factory=list)

    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def project(i: int) -> str:
    return f"bench-pkg-{i:02d}"


def build_repository(root: Path, projects: int, versions: int) -> Repository:
    """``projects`` x ``versions`` wheels; project i > 0 needs project (i - 1) // 2."""
    if root.exists():
        shutil.rmtree(root)
    repo = Repository(root / "repo")
    repo.ensure_layout()
    built = root / "built"
    for i in range(projects):
        requires = [f"{project((i - 1) // 2)}>=1.0"] if i else []
        for v in range(versions):
            spec = SdistSpec(project(i), f"1.{v}", install_requires=requires)
            repo.publish_wheel(make_wheel(spec, built))
    repo.regenerate_index()
    return repo


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def clean_environ() -> dict[str, str]:
    env = without(os.environ, TOOL_SETTINGS)
    env["NO_PROXY"] = env["no_proxy"] = HOST
    return env


def start_server(repo: Repository, port: int, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "rewheel", "serve", "--repo", str(repo.root)]
    cmd += ["--host", HOST, "--port", str(port)]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=out, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://{HOST}:{port}/simple/", timeout=2) as resp:
                if resp.status == 200:
                    return proc
        except (OSError, urllib.error.URLError):
            if proc.poll() is not None:
                break
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"the server did not come up; see {log}")


def installer_pass(
    url: str, out: Path, installers: int, per_install: int, projects: int
) -> PassResult:
    result = PassResult("uv pip install", installers, latency_of="install")
    uv = find_uv_bin()
    rng = random.Random(1)
    env = clean_environ()
    jobs = []
    for n in range(installers):
        # Mostly leaves of the tree: each install resolves a few levels of dependencies.
        wanted = rng.sample(range(projects // 2, projects), per_install)
        target = out / f"target-{n}"
        cmd = [uv, "pip", "install", "-v", "--no-config", "--no-cache", "--python", sys.executable]
        cmd += ["--index-url", url, "--target", str(target), *(project(i) for i in wanted)]
        jobs.append((cmd, out / f"install-{n}.log"))

    lock = threading.Lock()

    def run(job: tuple[list[str], Path]) -> None:
        cmd, log = job
        started = time.perf_counter()
        with log.open("wb") as f:
            code = subprocess.run(cmd, env=env, stdout=f, stderr=subprocess.STDOUT).returncode
        elapsed = (time.perf_counter() - started) * 1000
        text = log.read_text(errors="replace")
        with lock:
            result.latencies_ms.append(elapsed)
            result.requests += text.count("Sending fresh GET request")
            retries = text.count("Transient request failure")
            if code != 0 or retries:
                result.errors += (code != 0) + retries
                result.error_samples.append(f"{log.name}: exit {code}, {retries} retries")

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=installers) as pool:
        list(pool.map(run, jobs))
    result.seconds = time.perf_counter() - started
    return result


def fetcher_pass(base: str, workers: int, seconds: float) -> PassResult:
    result = PassResult("urllib fetch", workers)
    with urllib.request.urlopen(
        urllib.request.Request(f"{base}/simple/", headers={"Accept": JSON_TYPE}), timeout=10
    ) as resp:
        names = [p["name"] for p in json.load(resp)["projects"]]
    files: list[tuple[str, str]] = []  # (wheel file name, sha256)
    for name in names:
        request = urllib.request.Request(f"{base}/simple/{name}/", headers={"Accept": JSON_TYPE})
        with urllib.request.urlopen(request, timeout=10) as resp:
            files += [(f["filename"], f["hashes"]["sha256"]) for f in json.load(resp)["files"]]

    lock = threading.Lock()
    deadline = time.monotonic() + seconds

    def fetch_one(rng: random.Random) -> tuple[float, str | None]:
        kind = rng.random()
        expected = None
        if kind < 0.4:
            accept = JSON_TYPE if rng.random() < 0.7 else HTML_TYPE
            request = urllib.request.Request(
                f"{base}/simple/{rng.choice(names)}/", headers={"Accept": accept}
            )
        elif kind < 0.45:
            request = urllib.request.Request(f"{base}/simple/", headers={"Accept": JSON_TYPE})
        else:
            filename, sha = rng.choice(files)
            metadata = kind < 0.7
            request = urllib.request.Request(
                f"{base}/wheels/{filename}" + (".metadata" if metadata else "")
            )
            expected = None if metadata else sha
        started = time.perf_counter()
        try:
            with urllib.request.urlopen(request, timeout=30) as resp:
                body = resp.read()
                status = resp.status
        except (OSError, urllib.error.URLError) as exc:
            return (time.perf_counter() - started) * 1000, f"{request.full_url}: {exc}"
        elapsed = (time.perf_counter() - started) * 1000
        if status != 200:
            return elapsed, f"{request.full_url}: HTTP {status}"
        if expected is not None and hashlib.sha256(body).hexdigest() != expected:
            return elapsed, f"{request.full_url}: sha256 mismatch"
        return elapsed, None

    def worker(n: int) -> None:
        rng = random.Random(n)
        while time.monotonic() < deadline:
            elapsed, error = fetch_one(rng)
            with lock:
                result.requests += 1
                result.latencies_ms.append(elapsed)
                if error:
                    result.errors += 1
                    if len(result.error_samples) < 10:
                        result.error_samples.append(error)

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(worker, range(workers)))
    result.seconds = time.perf_counter() - started
    return result


def table(results: list[PassResult]) -> str:
    head = ["pass", "clients", "requests", "s", "req/s", "latency of", "p50 ms", "p95 ms"]
    head += ["max ms", "errors"]
    rows = [head]
    for r in results:

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.0f}"

        rows.append(
            [
                r.name,
                str(r.clients),
                str(r.requests),
                f"{r.seconds:.1f}",
                f"{r.rate():.0f}",
                r.latency_of,
                ms(percentile(r.latencies_ms, 50)),
                ms(percentile(r.latencies_ms, 95)),
                ms(max(r.latencies_ms) if r.latencies_ms else None),
                str(r.errors),
            ]
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    lines = []
    for n, row in enumerate(rows):
        cells = [
            c.ljust(w) if i in (0, 5) else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        lines.append("  ".join(cells))
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--projects", type=int, default=24, help="projects (default 24)")
    parser.add_argument("--versions", type=int, default=2, help="versions of each (default 2)")
    parser.add_argument("--installers", type=int, default=50, help="uv installs at once")
    parser.add_argument("--packages", type=int, default=3, help="projects named per install")
    parser.add_argument("--workers", type=int, default=50, help="fetcher threads")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the fetch pass")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "serve", help="work folder")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.projects < 4 or args.packages > args.projects // 2:
        parser.error("need --projects >= 4 and --packages <= projects / 2")

    out: Path = args.out
    load_before = os.getloadavg()[0]
    repo = build_repository(out, args.projects, args.versions)
    wheels = len(repo.wheels())
    port = free_port()
    server = start_server(repo, port, out / "serve.log")
    base = f"http://{HOST}:{port}"
    print(f"serving {wheels} wheels of {args.projects} projects at {base}/simple/", flush=True)
    try:
        installs = out / "installs"
        installs.mkdir()
        results = [
            installer_pass(
                f"{base}/simple", installs, args.installers, args.packages, args.projects
            )
        ]
        print(f"installer pass done in {results[0].seconds:.1f}s", flush=True)
        results.append(fetcher_pass(base, args.workers, args.seconds))
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
    print()
    print(table(results))
    load = os.getloadavg()[0]
    print(
        f"\n{os.cpu_count()} cores, 1-minute load average {load_before:.1f} before, {load:.1f} "
        f"after; command: {' '.join(sys.argv)}"
    )
    errors = [s for r in results for s in r.error_samples]
    for sample in errors[:10]:
        print(f"error: {sample}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        data = {
            "wheels": wheels,
            "load_average_before": load_before,
            "load_average_after": load,
            "passes": [
                {
                    **asdict(r),
                    "latencies_ms": None,
                    "p50_ms": percentile(r.latencies_ms, 50),
                    "p95_ms": percentile(r.latencies_ms, 95),
                    "req_per_s": r.rate(),
                }
                for r in results
            ],
        }
        args.json.write_text(json.dumps(data, indent=2) + "\n")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
