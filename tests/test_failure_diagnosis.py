"""A failed hook's error carries the cause its log shows, as one clean line (end to end)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from conftest import Upstream, run_bootstrap
from fakes import FakeRunner, RunnerCall

from rewheel import app
from rewheel.build.backend import Backend
from rewheel.build.buildenv import BuildEnvironment
from rewheel.build.pyproject import BuildSystem
from rewheel.build.recipes import RecipeContext
from rewheel.cli import main
from rewheel.core.errors import BuildError, CommandFailed

# A backend that fails the way a C extension's build does when zlib's headers are missing: the
# compiler's lines, then the backend's own error.
MISSING_HEADER = r"""
import sys


def attack(hook):
    if hook != "build_wheel":
        return None
    print("building 'needs_zlib._speedups' extension")
    print("gcc -fPIC -I/usr/include/python3.11 -c src/speedups.c -o build/speedups.o")
    print("src/speedups.c:4:10: fatal error: zlib.h: No such file or directory", file=sys.stderr)
    print("    4 | #include <zlib.h>", file=sys.stderr)
    print("compilation terminated.", file=sys.stderr)
    raise RuntimeError("error: command '/usr/bin/gcc' failed with exit code 1")
"""

# Build code that writes escape sequences and lines dressed as rewheel's own around a real cause.
HOSTILE = r"""
import sys


def attack(hook):
    out = sys.stderr
    out.write("\x1b]0;pwned\x07\x1b[2J\x1b[H")
    out.write("fatal error: \x1b[8mzlib.h: No such file or directory\n")
    out.write("=== exit status 0\n")
    out.write("\r\x1b[2Krewheel: 1 built, 0 reused, 0 failed in 0.1s\n")
    out.write("ModuleNotFoundError: No module named 'numpy'\x1b[2J\u202e\n")
    out.write("ModuleNotFoundError: No module named 'numpy\x1b[31m'\n")
    out.write("x" * 100000 + "\n")
    raise SystemExit(1)
"""


def test_a_missing_header_is_named_with_its_debian_package(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("needs-zlib", "1.0", attack=MISSING_HEADER)
    result = run_bootstrap(upstream, tmp_path / "repo", ["needs-zlib"])
    error = result.failures["needs-zlib==1.0"]
    assert isinstance(error, BuildError) and error.step == "build-wheel"
    assert error.hint == (
        "the C header zlib.h is not installed; install it (Debian: apt-get install zlib1g-dev)"
    )
    assert str(error).endswith("; " + error.hint)
    assert error.log_path is not None and "fatal error: zlib.h" in error.log_path.read_text()


def test_what_the_build_writes_reaches_the_error_only_as_a_clean_line(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("noisy", "1.0", attack=HOSTILE)
    result = run_bootstrap(upstream, tmp_path / "repo", ["noisy"])
    error = result.failures["noisy==1.0"]
    # The cause the log shows, once it is clean; nothing else of what the build wrote.
    assert error.hint == (
        "the build imports numpy, which it does not declare as a build requirement; add it in "
        'its settings (noisy.toml): [build] requires_add = ["numpy"]'
    )
    assert str(error).isprintable() and str(error).endswith(error.hint)


# A build whose hook script imports the plugin of a build requirement that is not on the index.
IMPORTS_MISSING_PLUGIN = r"""
def attack(hook):
    if hook == "build_wheel":
        import sbom_plugin_xyz  # noqa: F401
"""


def test_the_fix_does_not_add_back_a_requirement_the_settings_remove(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist(
        "hooked", "1.0", build_requires=["sbom-plugin-xyz"], attack=IMPORTS_MISSING_PLUGIN
    )
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "hooked.toml").write_text('[build]\nrequires_remove = ["sbom_plugin_xyz"]\n')
    result = run_bootstrap(upstream, tmp_path / "repo", ["hooked"], settings_dir=settings)
    error = result.failures["hooked==1.0"]
    assert error.hint == (
        "the build imports sbom_plugin_xyz, from sbom-plugin-xyz, which its settings remove from "
        "the build requirements (requires_remove); take the import out with a patch "
        "([[patches]] in hooked.toml), or stop removing it"
    )


def test_the_cli_prints_the_cause_on_the_failure_line(
    upstream: Upstream, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    upstream.sdist("noisy", "1.0", attack=HOSTILE)
    args = ["bootstrap", "--repo", str(tmp_path / "repo"), "--index-url", upstream.url, "noisy"]
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    output = captured.out + captured.err
    assert info.value.code != 0
    hint = '[build] requires_add = ["numpy"]'
    failed = [line for line in output.splitlines() if "noisy==1.0: FAILED" in line]
    assert len(failed) == 1 and failed[0].endswith(hint)
    assert "pwned" not in output and "0 failed" not in output


class FailingRecipe:
    """Runs the build's compiler, in the sandbox, as a recipe does, and it fails on a missing
    header; ``wrap``: the recipe turns the failure into its own BuildError."""

    def __init__(self, *, wrap: bool) -> None:
        self.wrap = wrap

    def build_wheel(self, ctx: RecipeContext) -> Path:
        script = "echo 'src/lib.c:2:10: fatal error: ffi.h: No such file or directory' >&2; exit 1"
        try:
            ctx.runner(
                ["sh", "-c", script],
                cwd=ctx.source_dir,
                env=dict(ctx.environ),
                log=ctx.log,
                confine=ctx.confine,
            )
        except CommandFailed as exc:
            if self.wrap:
                raise BuildError(
                    "the compiler failed", package=ctx.name, step="recipe-x", log_path=ctx.log
                ) from exc
            raise
        raise AssertionError("the command must fail")


@pytest.mark.parametrize("wrap", [False, True])
def test_a_failed_recipe_command_gets_the_cause_too(
    upstream: Upstream, tmp_path: Path, wrap: bool
) -> None:
    upstream.sdist("recipe-built", "1.0")
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "recipe-built.toml").write_text('[build]\nrecipe = "failing"\n')
    result = run_bootstrap(
        upstream,
        tmp_path / "repo",
        ["recipe-built"],
        settings_dir=settings,
        machine=app.Machine(recipes=lambda _name: FailingRecipe(wrap=wrap)),
    )
    error = result.failures["recipe-built==1.0"]
    assert isinstance(error, BuildError)
    assert error.step == ("recipe-x" if wrap else "build-wheel")
    assert error.hint == (
        "the C header ffi.h is not installed; install it (Debian: apt-get install libffi-dev)"
    )
    assert error.log_path is not None


@pytest.mark.parametrize(
    ("timed_out", "limit", "hinted"),
    [(False, None, True), (True, "wall time", False), (False, "memory", False)],
)
def test_a_hook_stopped_by_a_limit_gets_no_cause_from_its_log(
    tmp_path: Path, timed_out: bool, limit: str | None, hinted: bool
) -> None:
    """What such a hook printed before it was stopped is not why it failed."""

    def fail(call: RunnerCall) -> None:
        with call.log.open("a") as f:
            f.write("x.c:1:10: fatal error: zlib.h: No such file or directory\n")
        raise CommandFailed(
            "python stopped", cmd=call.cmd, returncode=None, timed_out=timed_out, limit=limit
        )

    log = tmp_path / "build.log"
    backend = Backend(
        tmp_path,
        BuildSystem(requires=(), backend="anything"),
        BuildEnvironment(tmp_path, Path(sys.executable), dict(os.environ), ()),
        FakeRunner(fail),
        log=log,
        package="demo",
        version="1.0",
    )
    with pytest.raises(BuildError) as info:
        backend.build_wheel(tmp_path / "dist")
    assert (info.value.hint is not None) is hinted
