"""Settings from ./rewheel.toml or [tool.rewheel], REWHEEL_* variables, and their precedence."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rewheel import app
from rewheel.cli import Runs, cli, main
from rewheel.config import default_map, find_config, parse_source, schema_from_click
from rewheel.core.bootstrap import BootstrapResult
from rewheel.core.errors import ConfigError

SCHEMA = schema_from_click(cli)


def dmap(text: str, name: str = "rewheel.toml", folder: Path = Path("/proj")) -> dict[str, Any]:
    source = parse_source(folder / name, text)
    assert source is not None
    return default_map(source, SCHEMA)


def test_keys_are_the_long_options_and_apply_to_every_command_that_has_them() -> None:
    got = dmap(
        """
        repo = "build/repo"
        index-url = "https://example.org/simple"
        jobs = 3
        pre = true
        build-timeout = 60
        """
    )
    assert got["bootstrap"]["repo"] == "/proj/build/repo"  # relative to the file's folder
    assert got["serve"]["repo"] == got["install"]["repo"] == "/proj/build/repo"
    assert got["bootstrap"]["index_url"] == "https://example.org/simple"
    assert got["bootstrap"]["jobs"] == 3 and got["rebuild"]["jobs"] == 3
    assert got["bootstrap"]["pre"] is True
    assert got["bootstrap"]["build_timeout"] == 60.0
    assert "jobs" not in got["serve"]


def test_a_command_table_wins_over_the_top_level_whatever_the_order() -> None:
    got = dmap(
        """
        [serve]
        port = 9000
        repo = "served"

        [bootstrap]
        constraint = ["c1.txt", "c2.txt"]
        """.replace("[serve]", 'repo = "top"\n[serve]')
    )
    assert got["serve"] == {"port": 9000, "repo": "/proj/served"}
    assert got["bootstrap"]["repo"] == "/proj/top"
    assert got["bootstrap"]["constraint_files"] == ["/proj/c1.txt", "/proj/c2.txt"]


def test_a_key_that_only_some_commands_can_take_goes_to_those() -> None:
    # bootstrap's --constraint is repeatable; install's takes one existing file.
    got = dmap('constraint = ["a.txt", "b.txt"]')
    assert got["bootstrap"]["constraint_files"] == ["/proj/a.txt", "/proj/b.txt"]
    assert "constraint" not in got.get("install", {})


def test_pyproject_table(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\n\n[tool.rewheel]\njobs = 2\n')
    source = find_config(tmp_path)
    assert source is not None and source.prefix == "tool.rewheel."
    assert default_map(source, SCHEMA)["bootstrap"]["jobs"] == 2
    # rewheel.toml, when there is one, is the settings file.
    (tmp_path / "rewheel.toml").write_text("jobs = 5\n")
    source = find_config(tmp_path)
    assert source is not None and source.path.name == "rewheel.toml"
    assert default_map(source, SCHEMA)["bootstrap"]["jobs"] == 5


def test_no_settings(tmp_path: Path) -> None:
    assert find_config(tmp_path) is None
    (tmp_path / "pyproject.toml").write_text("[tool.black]\nline-length = 100\n")
    assert find_config(tmp_path) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("jobz = 3", r"rewheel.toml: jobz: no such option; did you mean 'jobs'\?"),
        ("index_url = 'x'", r"index_url: no such option; did you mean 'index-url'\?"),
        ("jobs = 'many'", r"rewheel.toml: jobs must be an integer, not 'many'"),
        ("jobs = 0", r"rewheel.toml: jobs: 0 is not in the range x>=1"),
        ("pre = 'yes'", r"pre must be true or false"),
        ("serve = 3", r"rewheel.toml: serve must be a table"),
        ("[serve]\njobs = 3", r"rewheel.toml: serve.jobs: no such option"),
        ("[serve]\nport = 70000", r"serve.port: 70000 is not in the range 0<=x<=65535"),
        ("jobs = [", r"rewheel.toml: not valid TOML"),
    ],
)
def test_mistakes_name_the_file_and_the_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        dmap(text)


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("no-sandbox = true\n", "rewheel.toml"),
        ("[bootstrap]\nno-sandbox = true\n", "rewheel.toml"),
        ("[tool.rewheel]\nno-sandbox = true\n", "pyproject.toml"),
        ("[tool.rewheel.rebuild]\nno-sandbox = true\n", "pyproject.toml"),
    ],
)
def test_a_file_cannot_turn_the_sandbox_off(text: str, name: str) -> None:
    # A cloned project's pyproject.toml must not switch off the sandbox for whoever builds in it.
    with pytest.raises(ConfigError, match=r"--no-sandbox cannot be set in a file") as info:
        dmap(text, name=name)
    assert "REWHEEL_NO_SANDBOX=1" in str(info.value)


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ("no-network-isolation = true\n", "REWHEEL_NO_NETWORK_ISOLATION=1"),
        ('[verify]\npublic-key = "attacker.pem"\n', "REWHEEL_PUBLIC_KEY=PATH"),
        ("[install]\nallow-prebuilt = true\n", "REWHEEL_ALLOW_PREBUILT=1"),
        ("no-sign = true\n", "REWHEEL_NO_SIGN=1"),
        ('[bootstrap]\nsigning-key = "theirs.pem"\n', "REWHEEL_SIGNING_KEY=PATH"),
        ('[verify]\nindex = "http://elsewhere.example/simple/"\n', "REWHEEL_INDEX=URL"),
        ('[bootstrap]\ncache-key-trust = ["theirs.pem"]\n', "REWHEEL_CACHE_KEY_TRUST=PATH"),
    ],
)
def test_a_file_cannot_weaken_isolation_or_verification(text: str, env: str) -> None:
    """A cloned project's settings must not give its builds the network, nor choose the key
    verify and install trust, nor make them accept pre-built wheels."""
    with pytest.raises(ConfigError, match=r"cannot be set in a file") as info:
        dmap(text, name="rewheel.toml")
    assert env in str(info.value)


def test_the_environment_can_turn_the_sandbox_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[app.BootstrapOptions] = []

    def fake_bootstrap(options: app.BootstrapOptions, **_: Any) -> BootstrapResult:
        seen.append(options)
        return BootstrapResult(order=[], graph={}, failures={})

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("REWHEEL_NO_SANDBOX", "1")
    code, _out, err = _run(["bootstrap", "pkg"], capsys, Runs(bootstrap=fake_bootstrap))
    assert code == 0, err
    assert seen[0].sandbox is False


def test_a_file_may_name_a_build_cache_but_not_the_keys_it_is_trusted_with() -> None:
    # A cache gives only builds signed by keys the user trusts: naming one is not a weakening.
    assert (
        dmap('[bootstrap]\ncache-url = "https://cache.example/"\n', name="rewheel.toml")[
            "bootstrap"
        ]["cache_url"]
        == "https://cache.example/"
    )


def test_pyproject_messages_name_the_table() -> None:
    with pytest.raises(ConfigError, match=r"pyproject.toml: tool.rewheel.serve.port must be"):
        dmap("[tool.rewheel.serve]\nport = 'x'\n", name="pyproject.toml")


# -- precedence, through the real command line ---------------------------------------------------


def _repo_with(tmp_path: Path, name: str, version: str) -> Path:
    repo = tmp_path / name
    repo.mkdir()
    node = f"app=={version}"
    graph = {
        "nodes": [{"id": node, "name": "app", "version": version}],
        "edges": [{"from": None, "to": node, "requirement": "app", "kind": "toplevel"}],
    }
    (repo / "graph.json").write_text(json.dumps(graph))
    return repo


def _run(
    argv: list[str], capsys: pytest.CaptureFixture[str], runs: Runs | None = None
) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(argv, runs=runs)
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def test_command_line_over_environment_over_file_over_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    for version in ("1", "2", "3", "4"):
        _repo_with(tmp_path, f"r{version}", version)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REWHEEL_REPO", raising=False)
    _repo_with(tmp_path, "rewheel-repo", "0")  # the built-in default

    assert _run(["why", "app"], capsys)[1].startswith("app==0:")
    (tmp_path / "rewheel.toml").write_text('repo = "r1"\n')
    assert _run(["why", "app"], capsys)[1].startswith("app==1:")
    monkeypatch.setenv("REWHEEL_REPO", "r2")
    assert _run(["why", "app"], capsys)[1].startswith("app==2:")
    assert _run(["why", "app", "--repo", "r3"], capsys)[1].startswith("app==3:")


def test_every_option_reads_rewheel_environment_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    seen: list[app.BootstrapOptions] = []

    def fake_bootstrap(options: app.BootstrapOptions, **_: Any) -> BootstrapResult:
        seen.append(options)
        return BootstrapResult(order=[], graph={}, failures={})

    monkeypatch.chdir(tmp_path)
    (tmp_path / "rewheel.toml").write_text(
        'jobs = 2\nindex-url = "https://file.example/simple"\nstrict-hashes = true\n'
    )
    monkeypatch.setenv("REWHEEL_JOBS", "7")
    monkeypatch.setenv("REWHEEL_PRE", "1")  # an option with no envvar of its own
    monkeypatch.setenv("REWHEEL_BUILD_TIMEOUT", "30")
    code, out, err = _run(
        ["bootstrap", "pkg", "--no-network-isolation"], capsys, Runs(bootstrap=fake_bootstrap)
    )
    assert code == 0, err
    (options,) = seen
    assert options.jobs == 7  # environment over file
    assert options.index_url == "https://file.example/simple"  # file over default
    assert options.strict_hashes is True
    assert options.allow_prereleases is True
    assert options.build_timeout == 30.0
    assert options.isolate_network is False  # command line
    assert out == ""  # progress and summary go to stderr
    assert "0 built, 0 reused, 0 failed" in err
    # The upstream a file chose is said, naming the file.
    assert "note: the upstream index https://file.example/simple is set by " in err
    assert f"{tmp_path / 'rewheel.toml'}; pass --index-url" in err


def test_an_upstream_chosen_by_a_projects_own_pyproject_is_said_and_the_command_line_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A cloned project's [tool.rewheel] may name the index every sdist comes from: a run inside
    # it says so instead of taking it silently; --index-url overrides it without a note.
    seen: list[app.BootstrapOptions] = []

    def fake_bootstrap(options: app.BootstrapOptions, **_: Any) -> BootstrapResult:
        seen.append(options)
        return BootstrapResult(order=[], graph={}, failures={})

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("REWHEEL_INDEX_URL", raising=False)
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "p"\nversion = "1"\n\n'
        '[tool.rewheel]\nindex-url = "https://project.example/simple"\n'
    )
    runs = Runs(bootstrap=fake_bootstrap)
    code, _, err = _run(["bootstrap", "pkg"], capsys, runs)
    assert code == 0, err
    assert seen[-1].index_url == "https://project.example/simple"
    assert "note: the upstream index https://project.example/simple is set by " in err
    assert str(tmp_path / "pyproject.toml") in err
    code, _, err = _run(
        ["bootstrap", "pkg", "--index-url", "https://pypi.org/simple"], capsys, runs
    )
    assert code == 0, err
    assert seen[-1].index_url == "https://pypi.org/simple"
    assert "upstream index" not in err


def test_a_broken_settings_file_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rewheel.toml").write_text("jobs = 'x'\n")
    code, _, err = _run(["why", "app"], capsys)
    assert code == 2
    assert "rewheel: error:" in err and "rewheel.toml: jobs must be an integer" in err


def test_help_reads_like_pip_and_uv() -> None:
    result = CliRunner().invoke(cli, ["--help"], prog_name="rewheel", terminal_width=100)
    assert result.exit_code == 0
    text = result.output
    assert text.startswith("Usage: rewheel [OPTIONS] COMMAND [ARGS]...")
    commands = text.split("Commands:")[1].split("Examples:")[0]
    for name in ("bootstrap", "install", "verify", "serve", "graph", "why"):
        assert f"\n  {name} " in commands
    assert (
        "Draw the dependency graph of the last runs (up to 50), failed and unbuilt packages "
        "marked (a web page, or Graphviz DOT)."
    ) in (" ".join(commands.split()))
    assert "rewheel bootstrap requests" in text.split("Examples:")[1]
    assert "REWHEEL_<OPTION>" in text and "[tool.rewheel]" in text


# -- where the settings file is found -------------------------------------------------------------


def test_the_nearest_folder_above_with_settings_wins(tmp_path: Path) -> None:
    deep = tmp_path / "proj" / "src" / "pkg"
    deep.mkdir(parents=True)
    (tmp_path / "rewheel.toml").write_text("jobs = 1\n")
    (tmp_path / "proj" / "pyproject.toml").write_text("[tool.rewheel]\njobs = 2\n")
    # A pyproject.toml without [tool.rewheel] on the way is passed by, as ruff does.
    (tmp_path / "proj" / "src" / "pyproject.toml").write_text("[tool.black]\n")
    source = find_config(deep)
    assert source is not None and source.path == tmp_path / "proj" / "pyproject.toml"
    assert default_map(source, SCHEMA)["bootstrap"]["jobs"] == 2
    # Relative paths stay relative to the file's own folder, not to where rewheel runs.
    (tmp_path / "proj" / "pyproject.toml").write_text('[tool.rewheel]\nrepo = "wheels"\n')
    source = find_config(deep)
    assert source is not None
    assert default_map(source, SCHEMA)["serve"]["repo"] == str(tmp_path / "proj" / "wheels")


def test_the_search_stops_at_the_top_of_a_checkout(tmp_path: Path) -> None:
    (tmp_path / "rewheel.toml").write_text("jobs = 1\n")  # outside the checkout
    checkout = tmp_path / "checkout"
    (checkout / "sub").mkdir(parents=True)
    (checkout / ".git").mkdir()
    assert find_config(checkout / "sub") is None
    assert find_config(checkout) is None
    (checkout / "rewheel.toml").write_text("jobs = 3\n")
    source = find_config(checkout / "sub")
    assert source is not None and source.path == checkout / "rewheel.toml"
    # A worktree or submodule has a .git file: the same boundary.
    (checkout / "sub" / ".git").write_text("gitdir: elsewhere\n")
    assert find_config(checkout / "sub") is None


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to give a file to another user")
def test_a_settings_file_of_another_user_is_refused(tmp_path: Path) -> None:
    # Another local user's file in a shared folder above (/tmp/rewheel.toml) would choose the
    # index and the repository for whoever runs rewheel below it.
    (tmp_path / "work").mkdir()
    planted = tmp_path / "rewheel.toml"
    planted.write_text('index-url = "https://evil.example/simple"\n')
    os.chown(planted, 65534, 65534)
    with pytest.raises(ConfigError, match=r"rewheel.toml: belongs to another user \(uid 65534\)"):
        find_config(tmp_path / "work")
    # Root's own files are fine (a system-wide folder), as are yours.
    os.chown(planted, 0, 0)
    assert find_config(tmp_path / "work") is not None


def test_the_command_line_finds_settings_in_a_folder_above(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _repo_with(tmp_path, "r5", "5")
    (tmp_path / "rewheel.toml").write_text('repo = "r5"\n')
    (tmp_path / "a" / "b").mkdir(parents=True)
    monkeypatch.chdir(tmp_path / "a" / "b")
    monkeypatch.delenv("REWHEEL_REPO", raising=False)
    assert _run(["why", "app"], capsys)[1].startswith("app==5:")
