"""benchmarks/bench_bootstrap.py: what its measuring wrapper counts, and the Python it compiles
bytecode with."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys
from pathlib import Path
from types import ModuleType

import pytest

SCRIPT = Path(__file__).parent.parent / "benchmarks" / "bench_bootstrap.py"
# Half a second of CPU, however long the machine takes to give it.
BUSY = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.5: pass\n"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_bootstrap", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_bootstrap"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_cpu_of_a_build_in_a_pid_namespace_is_counted(
    bench: ModuleType, tmp_path: Path
) -> None:
    """A CPU-bound command in bubblewrap's own PID namespace, as rewheel runs every build: the
    run's CPU figure holds its half second (getrusage alone saw nothing of it here)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        pytest.skip("bubblewrap is not installed")
    probe = bench.CgroupCpu.make()
    if probe is None:
        pytest.skip("no cgroup can be made here: the benchmark falls back to getrusage")
    probe.close()
    boxed = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    boxed += ["--unshare-pid", "--die-with-parent", sys.executable, "-c", BUSY]
    result, log = tmp_path / "result.json", tmp_path / "log"
    assert bench.measure_main([str(result), str(log), "60", "--", *boxed]) == 0
    data = json.loads(result.read_text())
    assert data["returncode"] == 0, log.read_text()
    assert data["cgroup_cpu_s"] >= 0.45, data


def test_the_python_of_a_console_script_is_read_from_its_first_line(
    bench: ModuleType, tmp_path: Path
) -> None:
    script = tmp_path / "rewheel"
    script.write_text("#!/opt/venv/bin/python3 -E\nimport sys\n")
    assert bench.interpreter_of(script) == "/opt/venv/bin/python3"
    script.write_text("#!/bin/sh\nexec true\n")
    assert bench.interpreter_of(script) is None
    script.write_bytes(b"\x7fELF\x02\x01\x01")
    assert bench.interpreter_of(script) is None
    assert bench.interpreter_of(tmp_path / "missing") is None


def test_bench_noop_runs_the_command_of_bench_bootstrap(bench: ModuleType, tmp_path: Path) -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import bench_noop
    finally:
        sys.path.remove(str(SCRIPT.parent))
    args = bench.parse_args(["--example", "langchain", "--only", "rewheel", "--out", str(tmp_path)])
    tool = bench.Bench(args).tool("rewheel", args.trees[0], None)
    repo = tmp_path / "langchain_0.1.11" / "rewheel" / "repo"
    assert bench_noop.command(args.rewheel, args.trees[0], repo, args.jobs, "langchain") == (
        tool.command
    )
