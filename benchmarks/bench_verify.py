"""How long `rewheel verify --venv` takes on a venv of about 20 packages, with and without pycs.

Hermetic: the wheels are made from distributions installed next to this script's Python (their
files, METADATA and entry points, repacked as py3-none-any wheels), installed by uv from a
folder (no index, no network) into a fresh venv, then checked with
``rewheel.trust.verify.verify_venv``; once as uv leaves it (no byte-code), once after
``python -m compileall`` (timestamp pycs for every module, as pip writes them). Only the
verify call is timed. Run it with the rewheel to measure on the path (PYTHONPATH=... for an
older checkout):

    .venv/bin/python benchmarks/bench_verify.py [--repeat 3] [--out DIR]
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import importlib.metadata
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

# _common, beside this script, whether it is run as a script or loaded from its file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import TOOL_SETTINGS, without

PACKAGES = [
    "attrs", "certifi", "click", "distributed", "fsspec", "h11", "idna", "Jinja2",
    "markdown-it-py", "mdurl", "packaging", "partd", "pathspec", "pluggy", "Pygments",
    "resolvelib", "rich", "toolz", "urllib3", "zict",
]  # fmt: skip


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest}"


def make_wheel(name: str, dest: Path) -> Path:
    dist = importlib.metadata.distribution(name)
    stem = f"{dist.metadata['Name'].replace('-', '_')}-{dist.version}"
    dist_info = f"{stem}.dist-info"
    members: dict[str, bytes] = {}
    for file in dist.files or []:
        path = str(file)
        if ".." in path or "__pycache__" in path or ".dist-info/" in path:
            continue
        members[path] = Path(str(file.locate())).read_bytes()
    members[f"{dist_info}/METADATA"] = (dist.read_text("METADATA") or "").encode()
    members[f"{dist_info}/WHEEL"] = (
        b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    entry_points = dist.read_text("entry_points.txt")
    if entry_points:
        members[f"{dist_info}/entry_points.txt"] = entry_points.encode()
    record = "".join(f"{p},{_record_hash(d)},{len(d)}\n" for p, d in members.items())
    wheel = dest / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for member, data in members.items():
            zf.writestr(member, data)
        zf.writestr(f"{dist_info}/RECORD", record + f"{dist_info}/RECORD,,\n")
    return wheel


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="keep the venv here")
    args = parser.parse_args()

    from packaging.utils import parse_wheel_filename
    from uv import find_uv_bin

    import rewheel
    from rewheel.core.types import WheelRef
    from rewheel.trust.verify import verify_venv

    work = args.out or Path(tempfile.mkdtemp(prefix="bench-verify-"))
    shutil.rmtree(work, ignore_errors=True)
    wheels_dir = work / "wheels"
    wheels_dir.mkdir(parents=True)
    paths = [make_wheel(name, wheels_dir) for name in PACKAGES]
    refs = []
    for path in paths:
        name, version, _, _ = parse_wheel_filename(path.name)
        sha = hashlib.sha256(path.read_bytes()).hexdigest()
        refs.append((WheelRef(name, str(version), path.name, sha), path))
    venv = work / "venv"
    uv = find_uv_bin()
    env = without(os.environ, (*TOOL_SETTINGS, "PYTHON"))
    subprocess.run([uv, "venv", "-q", "--no-config", "--python", sys.executable, str(venv)],
                   check=True, env=env)  # fmt: skip
    subprocess.run(
        [uv, "pip", "install", "-q", "--no-config", "--no-index", "--no-deps", "--find-links",
         str(wheels_dir), "--python", str(venv / "bin" / "python"), *PACKAGES],
        check=True, env=env,
    )  # fmt: skip
    (site,) = venv.glob("lib/python*/site-packages")
    sources = sum(1 for _ in site.rglob("*.py"))
    print(f"rewheel from {Path(rewheel.__file__).parent}; load average {os.getloadavg()[0]:.1f}")
    print(f"{len(PACKAGES)} packages, {sources} .py files in {venv}")

    def cpu() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def measure(label: str) -> None:
        times, cpus = [], []
        for _ in range(args.repeat):
            start, start_cpu = time.perf_counter(), cpu()
            report = verify_venv(venv, refs)
            times.append(time.perf_counter() - start)
            cpus.append(cpu() - start_cpu)
        assert report.ok, report.problems[:5]
        print(
            f"{label}: wall min {min(times):.2f} s, median {statistics.median(times):.2f} s;"
            f" CPU (with children) median {statistics.median(cpus):.2f} s; {args.repeat} runs"
        )

    measure("no pycs (as uv installs)")
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "compileall", "-q", str(site)], check=True, env=env
    )
    pycs = sum(1 for _ in site.rglob("*.pyc"))
    measure(f"{pycs} pycs (compileall, timestamp)")
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
