"""Signing by default: the user's key is made on first use, kept private, hidden from builds,
and its public half is published in the repository and on the front page.

Other local users are hostile: the folders and the key file are checked on what was opened (a
link, another user's folder, a folder or key others can read are refused). Tests that need a
folder of "another user" chown it, so they run only as root.
"""

from __future__ import annotations

import json
import os
import stat
import threading
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import Upstream, build_info, run_bootstrap
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from packaging.requirements import Requirement

from rewheel import app
from rewheel.build.sandbox import SandboxPolicy
from rewheel.cli import Runs, cli, main
from rewheel.core.errors import ConfigError
from rewheel.core.report import BootstrapResult
from rewheel.repo.published_keys import load_public_key, published_keys
from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer
from rewheel.trust.keys import default_key_file, user_key

OTHER_UID = 12345
as_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture
def data_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty XDG data folder of this test's own."""
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setenv("XDG_DATA_HOME", str(folder))
    return folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def _keyid_of_envelope(path: Path) -> str:
    (signature,) = json.loads(path.read_text())["signatures"]
    return str(signature["keyid"])


# ---------------------------------------------------------------- made on first use


def test_the_first_bootstrap_makes_a_key_and_the_next_one_reuses_it(
    upstream: Upstream, tmp_path: Path, data_home: Path
) -> None:
    upstream.sdist("solo", "1.0")
    upstream.sdist("other", "1.0")
    repo = tmp_path / "repo"
    notices: list[str] = []
    options = app.BootstrapOptions(
        requirements=[Requirement("solo")],
        repo=repo,
        index_url=upstream.url,
        jobs=1,
        work_dir=tmp_path / "work",
    )
    assert app.bootstrap(options, notice=notices.append).ok

    key = data_home / "rewheel" / "keys" / "signing-key.pem"
    assert key == default_key_file()
    assert _mode(key) == 0o600 and _mode(key.parent) == 0o700
    assert _mode(data_home / "rewheel") & 0o022 == 0
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    assert isinstance(private, Ed25519PrivateKey)
    keyid = user_key().signer.keyid
    (made,) = [n for n in notices if n.startswith("made a signing key")]
    assert str(key) in made and keyid in made
    published, problems = published_keys(repo)
    assert list(published) == [keyid] and problems == []
    public = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert (repo / "keys" / f"{keyid}.pub.pem").read_bytes() == public
    (solo,) = (repo / "wheels").glob("solo-*.provenance.dsse.json")
    assert _keyid_of_envelope(solo) == keyid

    notices.clear()
    options.requirements = [Requirement("other")]
    assert app.bootstrap(options, notice=notices.append).ok
    assert not [n for n in notices if "signing key" in n]  # the same key, said nothing
    assert user_key().signer.keyid == keyid and not user_key().created
    (other,) = (repo / "wheels").glob("other-*.provenance.dsse.json")
    assert _keyid_of_envelope(other) == keyid
    assert list(published_keys(repo)[0]) == [keyid]


def test_no_sign_signs_nothing_and_makes_no_key(
    upstream: Upstream, tmp_path: Path, data_home: Path
) -> None:
    upstream.sdist("solo", "1.0")
    options = app.BootstrapOptions(
        requirements=[Requirement("solo")],
        repo=tmp_path / "repo",
        index_url=upstream.url,
        jobs=1,
        work_dir=tmp_path / "work",
        sign=False,
    )
    assert app.bootstrap(options).ok
    assert not (data_home / "rewheel").exists()
    wheels = tmp_path / "repo" / "wheels"
    assert list(wheels.glob("*.provenance.json"))
    assert not list(wheels.glob("*.dsse.json")) and not list(wheels.glob("*.provenance"))
    page = json.loads((tmp_path / "repo" / "simple" / "solo" / "index.json").read_text())
    assert "provenance" not in page["files"][0]


def test_the_command_line_takes_no_sign_and_refuses_it_with_a_key(tmp_path: Path) -> None:
    seen: list[app.BootstrapOptions] = []

    def fake(options: app.BootstrapOptions, **_: object) -> BootstrapResult:
        seen.append(options)
        return BootstrapResult(order=[], graph={}, failures={}, built=0, reused=0)

    runs = Runs(bootstrap=fake)
    repo = str(tmp_path / "repo")
    with pytest.raises(SystemExit) as done:
        main(["bootstrap", "x", "--repo", repo, "--no-sign"], runs=runs)
    assert done.value.code == 0
    assert seen[-1].sign is False and seen[-1].signing_key is None
    with pytest.raises(SystemExit) as done:
        main(["bootstrap", "x", "--repo", repo], runs=runs)
    assert seen[-1].sign is True
    key = tmp_path / "k.pem"
    key.write_text("x")
    result = CliRunner().invoke(
        cli, ["bootstrap", "x", "--repo", repo, "--no-sign", "--signing-key", str(key)], obj=runs
    )
    assert result.exit_code == 2 and "contradict" in result.output


# ---------------------------------------------------------------- kept private


def test_the_key_is_made_private_whatever_the_umask(data_home: Path) -> None:
    old = os.umask(0)
    try:
        made = user_key()
    finally:
        os.umask(old)
    assert made.created
    assert _mode(made.path) == 0o600 and _mode(made.path.parent) == 0o700


def test_runs_starting_together_end_up_with_one_key(data_home: Path) -> None:
    results = []
    lock = threading.Lock()

    def make() -> None:
        made = user_key()
        with lock:
            results.append((made.signer.keyid, made.created))

    threads = [threading.Thread(target=make) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({keyid for keyid, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert [p.name for p in (data_home / "rewheel" / "keys").iterdir()] == ["signing-key.pem"]


def _refused(*words: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        user_key()
    text = str(info.value)
    assert info.value.step == "sign"
    assert "--signing-key" in text and "--no-sign" in text  # the ways out
    for word in words:
        assert word in text, text
    return info.value


def test_a_key_others_can_read_is_refused(data_home: Path) -> None:
    made = user_key()
    os.chmod(made.path, 0o644)
    _refused("can be read by other users", "remove")


def test_a_keys_folder_open_to_others_is_refused(data_home: Path) -> None:
    made = user_key()
    os.chmod(made.path.parent, 0o755)
    _refused("is open to other users")


def test_a_link_in_place_of_the_folder_or_the_key_is_refused(
    data_home: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir(mode=0o700)
    (data_home / "rewheel").mkdir(mode=0o700)
    (data_home / "rewheel" / "keys").symlink_to(elsewhere)
    _refused("is not a folder rewheel can use")
    (data_home / "rewheel" / "keys").unlink()
    planted = tmp_path / "planted.pem"
    planted.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    os.chmod(planted, 0o600)
    (data_home / "rewheel" / "keys").mkdir(mode=0o700)
    (data_home / "rewheel" / "keys" / "signing-key.pem").symlink_to(planted)
    _refused("cannot open the signing key")


@as_root
def test_a_folder_another_user_made_is_refused(data_home: Path) -> None:
    (data_home / "rewheel").mkdir(mode=0o755)
    os.chown(data_home / "rewheel", OTHER_UID, OTHER_UID)
    _refused("belongs to another user")


def test_a_data_folder_others_can_write_is_refused_unless_sticky(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)
    monkeypatch.setenv("XDG_DATA_HOME", str(shared))
    _refused("can be written by other users")
    os.chmod(shared, 0o1777)  # like /tmp: others cannot rename our folder away
    assert user_key().created


# ---------------------------------------------------------------- never where a build can see it


def test_the_sandbox_says_which_folders_every_box_shows(tmp_path: Path) -> None:
    policy = SandboxPolicy(bwrap="/usr/bin/bwrap", system_paths=(tmp_path / "prefix",))
    assert policy.shows(Path("/usr/local/keys"))
    assert policy.shows(tmp_path / "prefix" / "share" / "rewheel" / "keys")
    assert not policy.shows(tmp_path / "data" / "rewheel" / "keys")
    assert not policy.shows(Path("/etc/keys"))  # only /etc's allowed files are shown
    assert not SandboxPolicy(bwrap=None).shows(Path("/usr/local/keys"))


def test_a_signing_key_inside_the_repository_is_refused_before_anything_is_built(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("solo", "1.0")
    repo = tmp_path / "repo"
    repo.mkdir()
    key = repo / "signing.pem"
    key.write_bytes(
        Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    options = app.BootstrapOptions(
        requirements=[Requirement("solo")],
        repo=repo,
        index_url=upstream.url,
        jobs=1,
        work_dir=tmp_path / "work",
        signing_key=key,
    )
    with pytest.raises(ConfigError, match="inside the repository"):
        app.bootstrap(options)
    assert not (repo / "wheels").exists()


ATTACK = r"""
import json, os

P = json.loads(PARAMS)


def attack(hook):
    if hook != "build_wheel":
        return None
    out = {}
    for label, path in P.items():
        try:
            if os.path.isdir(path):
                out[label] = sorted(os.listdir(path))
            else:
                with open(path, "rb") as f:
                    out[label] = f.read().decode("ascii", "replace")
        except OSError as exc:
            out[label] = None
    return out
"""


@pytest.fixture
def data_home_on_path(data_home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The data folder is also a folder of tools on PATH, which the sandbox shows to builds
    unless something hidden is below it."""
    (data_home / "tool").write_text("#!/bin/sh\n")
    monkeypatch.setenv("PATH", f"{data_home}{os.pathsep}{os.environ['PATH']}")
    yield data_home


def test_a_build_cannot_read_the_key_made_for_the_user(
    upstream: Upstream, tmp_path: Path, data_home_on_path: Path
) -> None:
    made = user_key()  # made before the run: the build knows where it is
    params = {
        "key": str(made.path),
        "keys_folder": str(made.path.parent),
        "data_folder": str(data_home_on_path),
    }
    code = ATTACK.replace("PARAMS", repr(json.dumps(params)))
    upstream.sdist("evil", "1.0", attack=code)
    repo = tmp_path / "repo"
    result = run_bootstrap(upstream, repo, ["evil"], jobs=1)
    assert result.ok, result.failures
    (ref,) = Repository(repo).find_wheels("evil", "1.0")
    found = build_info(repo / "wheels" / ref.filename)["attack"]
    assert found == {"key": None, "keys_folder": None, "data_folder": None}, found
    # It was signed with that key all the same.
    (envelope,) = (repo / "wheels").glob("evil-*.dsse.json")
    assert _keyid_of_envelope(envelope) == made.signer.keyid


# ---------------------------------------------------------------- published


@pytest.fixture(scope="module")
def signed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    from support.fake_index import FakeIndex

    base = tmp_path_factory.mktemp("signed")
    files = base / "files"
    files.mkdir()
    with FakeIndex() as index:
        up = Upstream(index, files)
        up.sdist("solo", "1.0")
        repo = base / "repo"
        assert run_bootstrap(up, repo, ["solo"]).ok
    (keyid,) = published_keys(repo)[0]
    yield repo, keyid


def test_the_front_page_shows_the_fingerprint_and_links_the_public_key(
    signed: tuple[Path, str],
) -> None:
    repo, keyid = signed
    page = (repo / "browse" / "index.html").read_text()
    assert f'<code class="fingerprint">{keyid}</code>' in page
    assert f'href="../keys/{keyid}.pub.pem"' in page
    assert "--public-key" in page
    with IndexServer(Repository(repo)) as server:
        root = server.url.removesuffix("/simple")
        with urllib.request.urlopen(f"{root}/keys/{keyid}.pub.pem") as answer:
            assert answer.headers["Content-Type"] == "application/x-pem-file"
            assert load_public_key(answer.read()).keyid == keyid
        for bad in (f"/keys/{keyid}.pem", "/keys/", "/keys/../wheels/x.whl"):
            with pytest.raises(urllib.error.HTTPError):
                urllib.request.urlopen(root + bad)


def test_the_front_page_of_an_unsigned_repository_says_so(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.sdist("solo", "1.0")
    options = app.BootstrapOptions(
        requirements=[Requirement("solo")],
        repo=tmp_path / "repo",
        index_url=upstream.url,
        jobs=1,
        work_dir=tmp_path / "work",
        sign=False,
    )
    assert app.bootstrap(options).ok
    page = (tmp_path / "repo" / "browse" / "index.html").read_text()
    assert "No signing key is published here" in page
    assert "fingerprint" not in page
