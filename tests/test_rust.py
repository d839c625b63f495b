"""Rust sdists: are their crates vendored (rust.py), and does a bootstrap refuse them early."""

from __future__ import annotations

import io
import json
import shutil
import tarfile
import threading
import tomllib
from collections.abc import Mapping, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from conftest import Upstream, run_bootstrap
from fakes import FakeRunner, RunnerCall
from packaging.utils import canonicalize_name
from packaging.version import Version
from support.sdists import SdistSpec, make_sdist

from rewheel import app
from rewheel.build import rust
from rewheel.build.prepare import SourcePreparer
from rewheel.build.rust import Crate, CratesIo, check_rust_sources, parse_lock, vendor_config
from rewheel.build.settings import Settings
from rewheel.build.workspace import Workspace
from rewheel.core.errors import BuildError, CommandFailed
from rewheel.core.resolver import Pin
from rewheel.core.types import IndexFile
from rewheel.index.http import HttpClient

CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"
CRATES = [("libc", "0.2.190"), ("once_cell", "1.21.4"), ("zmij", "1.0.23")]


def lock_text(
    crates: Sequence[tuple[str, str]], *, git: Sequence[tuple[str, str, str]] = ()
) -> str:
    out = ['version = 4\n\n[[package]]\nname = "demo"\nversion = "0.1.0"\n']
    for name, version in crates:
        out.append(
            f'[[package]]\nname = "{name}"\nversion = "{version}"\nsource = "{CRATES_IO}"\n'
            f'checksum = "{name}-{version}-sum"\n'
        )
    for name, version, source in git:
        out.append(f'[[package]]\nname = "{name}"\nversion = "{version}"\nsource = "{source}"\n')
    return "\n".join(out)


def rust_tree(
    root: Path,
    *,
    crates: Sequence[tuple[str, str]] = CRATES,
    vendored: Sequence[tuple[str, str]] | None = None,
    config: bool = True,
    subdir: str = "",
) -> Path:
    """A source tree with a Cargo.toml/Cargo.lock (in ``subdir``) and, if asked, vendored crates
    under include/cargo with a .cargo/config.toml that replaces crates.io with them."""
    base = root / subdir if subdir else root
    base.mkdir(parents=True, exist_ok=True)
    deps = "".join(f'{name} = "{version}"\n' for name, version in crates)
    (base / "Cargo.toml").write_text(
        f'[package]\nname = "demo"\nversion = "0.1.0"\n\n[dependencies]\n{deps}'
    )
    (base / "Cargo.lock").write_text(lock_text(crates))
    if vendored is not None:
        for name, version in vendored:
            vendor_crate(root / "include" / "cargo", name, version)
    if config:
        (root / ".cargo").mkdir(exist_ok=True)
        (root / ".cargo" / "config.toml").write_text(
            '[source.crates-io]\nreplace-with = "vendored-sources"\n\n'
            '[source.vendored-sources]\ndirectory = "include/cargo"\n'
        )
    return root


def vendor_crate(directory: Path, name: str, version: str, *, versioned: bool = True) -> None:
    folder = directory / (f"{name}-{version}" if versioned else name)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / ".cargo-checksum.json").write_text('{"files": {}, "package": "x"}')
    (folder / "Cargo.toml").write_text(f'[package]\nname = "{name}"\nversion = "{version}"\n')


def offline() -> bool:
    return False


def never_asked() -> bool:
    raise AssertionError("the network must not be asked about")


class FakeCargo(FakeRunner):
    """A runner that records commands; ``cargo vendor`` fills the folder unless ``fetch`` is off."""

    def __init__(self, crates: Sequence[tuple[str, str]] = CRATES, *, fetch: bool = True) -> None:
        super().__init__()
        self.crates = crates
        self.fetch = fetch

    def respond(self, call: RunnerCall) -> None:
        if self.fetch:
            for name, version in self.crates:
                vendor_crate(call.cwd / call.cmd[-1], name, version, versioned=False)


def test_a_tree_without_cargo_toml_is_not_rust(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    assert check_rust_sources(tmp_path, package="p", version="1", network=never_asked) is None


def test_vendored_crates_are_counted_and_recorded(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=CRATES)
    found = check_rust_sources(tree, package="demo", version="0.1.0", network=never_asked)
    assert found is not None
    assert found.crates == 3  # the tree's own crate (no source) is not one of them
    assert found.vendored_dir == "include/cargo"
    assert found.vendored_by == "sdist"
    assert found.manifests == ("Cargo.toml",) and found.lockfiles == ("Cargo.lock",)
    assert found.lock_sha256 == rust.lock_digest(parse_lock(lock_text(CRATES)))
    assert json.loads(json.dumps(found.as_record()))["crates"] == 3


def test_the_lock_digest_changes_with_a_checksum(tmp_path: Path) -> None:
    one = parse_lock(lock_text(CRATES))
    other = parse_lock(lock_text(CRATES).replace("libc-0.2.190-sum", "tampered"))
    assert rust.lock_digest(one) != rust.lock_digest(other)
    assert rust.lock_digest(one) == rust.lock_digest(reversed(one))


def test_missing_crates_without_network_fail_with_what_to_do(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=None, config=False)
    with pytest.raises(BuildError) as info:
        check_rust_sources(tree, package="maturin", version="1.16.0", network=offline)
    err = info.value
    assert err.step == "rust-vendor" and err.package == "maturin"
    text = str(err)
    assert text.startswith("maturin==1.16.0 [rust-vendor]: Rust sdist: 3 of 3 crates")
    assert "crates.io cannot be reached" in text and "libc 0.2.190" in text
    assert "[build] prebuilt = true" in text and "vendor the crates with a patch" in text


def test_partly_vendored_counts_only_the_missing(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=CRATES[:2])
    with pytest.raises(BuildError, match=r"1 of 3 crates are not vendored \(zmij 1\.0\.23\)"):
        check_rust_sources(tree, package="demo", version="0.1.0", network=offline)


def test_plain_folders_must_hold_the_locked_version(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=CRATES[1:])
    vendor_crate(tree / "include" / "cargo", "libc", "0.2.190", versioned=False)
    assert check_rust_sources(tree, package="d", version="1", network=never_asked) is not None
    vendor_crate(tree / "include" / "cargo", "libc", "0.2.1", versioned=False)
    with pytest.raises(BuildError, match="1 of 3"):
        check_rust_sources(tree, package="d", version="1", network=offline)


def test_a_folder_without_checksum_file_is_not_vendored(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=CRATES)
    (tree / "include" / "cargo" / "zmij-1.0.23" / ".cargo-checksum.json").unlink()
    with pytest.raises(BuildError, match="1 of 3"):
        check_rust_sources(tree, package="d", version="1", network=offline)


def test_replacement_is_followed_through_legacy_config_and_chains(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=None, config=False)
    for name, version in CRATES:
        vendor_crate(tree / "third_party" / "crates", name, version)
    (tree / ".cargo").mkdir()
    (tree / ".cargo" / "config").write_text(
        '[source.crates-io]\nreplace-with = "mirror"\n'
        '[source.mirror]\nreplace-with = "local"\n'
        '[source.local]\ndirectory = "third_party/crates"\n'
    )
    found = check_rust_sources(tree, package="d", version="1", network=never_asked)
    assert found is not None and found.vendored_dir == "third_party/crates"


def test_the_manifest_named_by_tool_maturin_is_used(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=CRATES, subdir="src/rust")
    (tree / "pyproject.toml").write_text('[tool.maturin]\nmanifest-path = "src/rust/Cargo.toml"\n')
    found = check_rust_sources(tree, package="d", version="1", network=never_asked)
    assert found is not None
    assert found.manifests == ("src/rust/Cargo.toml",) and found.crates == 3


def test_manifests_two_levels_down_are_found_but_not_vendored_crates(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=CRATES, subdir="rust/ext")
    # A vendored crate's own Cargo.toml and Cargo.lock (two levels down) are not the build's.
    (tree / "include" / "cargo" / "libc-0.2.190" / "Cargo.lock").write_text(lock_text([("x", "1")]))
    assert rust.find_manifests(tree) == [tree / "rust" / "ext" / "Cargo.toml"]
    found = check_rust_sources(tree, package="d", version="1", network=never_asked)
    assert found is not None and found.crates == 3


def test_no_lockfile(tmp_path: Path) -> None:
    (tmp_path / "Cargo.toml").write_text('[package]\nname = "d"\nversion = "1.0.0"\n')
    found = check_rust_sources(tmp_path, package="d", version="1", network=never_asked)
    assert found is not None and found.crates == 0 and found.vendored_dir is None
    (tmp_path / "Cargo.toml").write_text(
        '[package]\nname = "d"\nversion = "1.0.0"\n[dependencies]\nlibc = "0.2"\n'
    )
    with pytest.raises(BuildError, match=r"has dependencies but no Cargo\.lock"):
        check_rust_sources(tmp_path, package="d", version="1", network=never_asked)


def test_with_network_cargo_vendor_fetches_and_config_is_written(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=None, config=False)
    cargo = FakeCargo()
    log = tmp_path / "build.log"
    found = check_rust_sources(
        tree, package="d", version="1", network=lambda: True, runner=cargo, log=log
    )
    assert found is not None
    assert (found.crates, found.vendored_by, found.vendored_dir) == (
        3,
        "cargo vendor",
        rust.VENDOR_DIR,
    )
    [call] = cargo.calls
    cmd, cwd, env = call.cmd, call.cwd, call.env
    manifest = str(tree / "Cargo.toml")
    assert cmd == ["cargo", "vendor", "--locked", "--manifest-path", manifest, rust.VENDOR_DIR]
    assert cwd == tree and "CARGO_NET_OFFLINE" not in env
    config = tomllib.loads((tree / ".cargo" / "config.toml").read_text())
    assert config["source"]["crates-io"]["replace-with"] == "rewheel-vendored"
    assert config["source"]["rewheel-vendored"]["directory"] == rust.VENDOR_DIR


def test_cargo_vendor_that_fetches_nothing_is_caught(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=None, config=False)
    with pytest.raises(BuildError, match="left 3 of 3 crates missing"):
        check_rust_sources(
            tree,
            package="d",
            version="1",
            network=lambda: True,
            runner=FakeCargo(fetch=False),
            log=tmp_path / "log",
        )


def test_cargo_vendor_failure_is_a_build_error(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=None, config=False)

    def failing(cmd: Sequence[str], **_kw: object) -> None:
        raise CommandFailed("cargo exited with status 101", cmd=cmd, returncode=101)

    with pytest.raises(BuildError, match="`cargo vendor` failed") as info:
        check_rust_sources(
            tree, package="d", version="1", network=lambda: True, runner=failing, log=tmp_path
        )
    assert info.value.step == "rust-vendor"


def test_an_incomplete_replacement_of_its_own_is_not_merged(tmp_path: Path) -> None:
    tree = rust_tree(tmp_path, vendored=CRATES[:1])
    cargo = FakeCargo()
    with pytest.raises(BuildError, match="does not hold every crate"):
        check_rust_sources(
            tree, package="d", version="1", network=lambda: True, runner=cargo, log=tmp_path
        )
    assert cargo.calls == []


def test_git_crates_and_their_replacement(tmp_path: Path) -> None:
    source = "git+https://example.org/a/b?branch=main#0123abcd"
    crates = parse_lock(lock_text([("libc", "0.2.190")], git=[("b", "0.3.0", source)]))
    assert [c.origin for c in crates] == ["git+https://example.org/a/b?branch=main", "crates-io"]
    tables = tomllib.loads(vendor_config(crates, "v"))["source"]
    git_table = tables["git+https://example.org/a/b?branch=main"]
    assert git_table == {
        "git": "https://example.org/a/b",
        "branch": "main",
        "replace-with": "rewheel-vendored",
    }
    # The replacement found again from a table keyed by another name, as users write them.
    for_b = {"mine": {"git": "https://example.org/a/b", "branch": "main", "replace-with": "v"}}
    tables2 = {**for_b, "v": {"directory": str(tmp_path)}}
    assert rust.replacement_dir(tables2, crates[0].origin) == tmp_path
    assert rust.replacement_dir(tables2, "git+https://example.org/a/b?branch=dev") is None


def test_lock_format_1_checksums(tmp_path: Path) -> None:
    text = (
        f'[[package]]\nname = "libc"\nversion = "0.2.1"\nsource = "{CRATES_IO}"\n\n'
        f'[metadata]\n"checksum libc 0.2.1 ({CRATES_IO})" = "abc"\n'
    )
    assert parse_lock(text) == [Crate("libc", "0.2.1", CRATES_IO, "abc")]


class CountingClient:
    """Answers ``reachable`` with ``answer``, recording what it was asked."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.asked: list[tuple[str, float]] = []

    def reachable(self, url: str, timeout: float) -> bool:
        self.asked.append((url, timeout))
        return self.answer


@pytest.mark.parametrize("answer", [True, False])
def test_the_crates_io_probe_asks_once(answer: bool) -> None:
    client = CountingClient(answer)
    probe = CratesIo(client, "https://crates.example/config.json", timeout=1.5)
    assert probe.reachable() is answer
    assert probe.reachable() is answer
    assert client.asked == [("https://crates.example/config.json", 1.5)]


# -- in a bootstrap ------------------------------------------------------------------------


def add_to_sdist(sdist: Path, files: Mapping[str, str]) -> None:
    """Rewrites a synthetic .tar.gz sdist with more files in its top folder."""
    members: list[tuple[tarfile.TarInfo, bytes]] = []
    with tarfile.open(sdist) as tf:
        for member in tf:
            handle = tf.extractfile(member)
            members.append((member, handle.read() if handle is not None else b""))
    top = members[0][0].name.split("/", 1)[0]
    with tarfile.open(sdist, "w:gz") as tf:
        for member, data in members:
            tf.addfile(member, io.BytesIO(data))
        for name, text in files.items():
            info = tarfile.TarInfo(f"{top}/{name}")
            info.size = len(text.encode())
            info.mtime = members[0][0].mtime
            tf.addfile(info, io.BytesIO(text.encode()))


def test_bootstrap_refuses_an_unvendored_rust_sdist_before_building(
    upstream: Upstream, tmp_path: Path
) -> None:
    # maturin is not even on the index: the sdist is refused before its build environment.
    sdist = make_rust_sdist(tmp_path, "rusty", vendored=False, build_requires=["maturin>=1"])
    upstream.index.add(sdist)
    result = run_bootstrap(
        upstream, tmp_path / "repo", ["rusty"], machine=app.Machine(crates_io=offline)
    )
    [failure] = result.failures.values()
    assert failure.step == "rust-vendor" and "3 of 3 crates" in str(failure)
    assert "Rust sdist (its build requires maturin): 3 of 3 crates" in str(failure)
    assert not list((tmp_path / "repo" / "wheels").glob("*.whl"))


def test_bootstrap_records_the_vendored_crates(upstream: Upstream, tmp_path: Path) -> None:
    upstream.sdist("maturin", "1.0")
    sdist = make_rust_sdist(tmp_path, "rusty", vendored=True, build_requires=["maturin"])
    upstream.index.add(sdist)
    result = run_bootstrap(
        upstream, tmp_path / "repo", ["rusty"], machine=app.Machine(crates_io=never_asked)
    )
    assert not result.failures
    record = json.loads((tmp_path / "repo" / "records" / "rusty-1.0.json").read_text())
    assert record["rust"]["crates"] == 3 and record["rust"]["vendored_dir"] == "include/cargo"


# zstandard's setup.py: a Rust backend only when asked, with its own extension class.
ZSTD_LIKE_SETUP = """\
import sys
import setup_zstd
RUST_BACKEND = False
if "--rust-backend" in sys.argv:
    RUST_BACKEND = True
    sys.argv.remove("--rust-backend")
extensions = []
if RUST_BACKEND:
    extensions.append(setup_zstd.get_rust_extension())
"""


def test_a_cargo_toml_that_the_build_does_not_use_is_not_checked(
    upstream: Upstream, tmp_path: Path
) -> None:
    """As zstandard: setuptools and cffi, with a Cargo.toml for a backend built on request."""
    upstream.sdist("setuptools", "70.0")
    upstream.sdist("cffi", "1.17")
    sdist = make_rust_sdist(
        tmp_path,
        "zstd-like",
        vendored=False,
        build_requires=["setuptools", "cffi"],
        files={"setup.py": ZSTD_LIKE_SETUP},
    )
    upstream.index.add(sdist)
    result = run_bootstrap(
        upstream, tmp_path / "repo", ["zstd-like"], machine=app.Machine(crates_io=never_asked)
    )
    assert not result.failures
    record = json.loads((tmp_path / "repo" / "records" / "zstd-like-1.0.json").read_text())
    assert record["rust"] is None


def test_rust_extensions_in_setup_py_make_a_rust_build(upstream: Upstream, tmp_path: Path) -> None:
    setup = "from setuptools_rust import RustExtension\nsetup(rust_extensions=[])\n"
    sdist = make_rust_sdist(tmp_path, "rusty", vendored=False, files={"setup.py": setup})
    upstream.index.add(sdist)
    result = run_bootstrap(
        upstream, tmp_path / "repo", ["rusty"], machine=app.Machine(crates_io=offline)
    )
    [failure] = result.failures.values()
    assert failure.step == "rust-vendor"
    assert "Rust sdist (its setup.py uses setuptools_rust): 3 of 3 crates" in str(failure)


def test_a_rust_build_tool_the_backend_asks_for_is_checked_before_the_build(
    upstream: Upstream, tmp_path: Path
) -> None:
    sdist = make_rust_sdist(
        tmp_path, "rusty", vendored=False, dynamic_requires=["setuptools-rust>=1.5"]
    )
    upstream.index.add(sdist)
    result = run_bootstrap(
        upstream, tmp_path / "repo", ["rusty"], machine=app.Machine(crates_io=offline)
    )
    [failure] = result.failures.values()
    assert failure.step == "rust-vendor"
    assert "Rust sdist (its backend asks for setuptools-rust): 3 of 3" in str(failure)


def make_rust_sdist(
    tmp_path: Path,
    name: str,
    *,
    vendored: bool,
    files: Mapping[str, str] | None = None,
    **spec: Any,
) -> Path:
    """A synthetic sdist (tinybackend) with a Rust tree added: Cargo.toml, Cargo.lock; and
    ``files`` ({path: text}) added next to them."""
    out = tmp_path / "rust-sdists"
    out.mkdir(exist_ok=True)
    sdist = make_sdist(SdistSpec(name, "1.0", **spec), out)
    tree = rust_tree(tmp_path / "tree", vendored=CRATES if vendored else None, config=vendored)
    added = {
        str(p.relative_to(tree)): p.read_text() for p in sorted(tree.rglob("*")) if p.is_file()
    }
    add_to_sdist(sdist, {**added, **(files or {})})
    return sdist


def test_the_probe_says_whether_the_index_answers() -> None:
    class Ok(BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            pass

    with HttpClient() as client:
        with ThreadingHTTPServer(("127.0.0.1", 0), Ok) as server:
            threading.Thread(target=server.serve_forever, daemon=True).start()
            url = f"http://127.0.0.1:{server.server_address[1]}/config.json"
            assert CratesIo(client, url).reachable() is True
            server.shutdown()
        # Nothing listens there any more.
        assert CratesIo(client, url).reachable() is False


# -- is it a Rust build? -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "requires", "backend", "recipe", "reason"),
    [
        ({}, ["maturin>=1,<2"], "maturin", None, "its build requires maturin"),
        ({}, ["setuptools", "setuptools_rust"], "x", None, "its build requires setuptools-rust"),
        ({}, ["setuptools"], "maturin", None, "its build backend is maturin"),
        ({}, [], "x", "maturin-cargo", "its recipe maturin-cargo builds with cargo"),
        ({"pyproject.toml": "[tool.maturin]\n"}, [], "x", None, "[tool.maturin]"),
        (
            {"pyproject.toml": '[[tool.setuptools-rust.ext-modules]]\ntarget = "a"\n'},
            [],
            "x",
            None,
            "[tool.setuptools-rust]",
        ),
        ({"setup.py": "setup(rust_extensions=[ext])"}, [], "x", None, "setup.py uses rust_ext"),
        ({"setup.py": "x = RustExtension('a.b')"}, [], "x", None, "uses RustExtension"),
        ({"setup.cfg": "[options]\nsetup_requires = setuptools-rust\n"}, [], "x", None, "cfg"),
        # Not Rust: a Cargo.toml, a Rust backend built only on request, other tools.
        (
            {"Cargo.toml": "[package]\n"},
            ["setuptools", "cffi"],
            "setuptools.build_meta",
            None,
            None,
        ),
        ({"setup.py": ZSTD_LIKE_SETUP}, ["setuptools"], "setuptools.build_meta", None, None),
        ({"setup.py": "# RustExtensionS\nmy_rust_extensions_x = 1"}, [], "x", None, None),
        ({}, ["maturin-ish", "not a requirement !"], "maturinx", "tiny", None),
        ({"pyproject.toml": "not toml ["}, [], "x", None, None),
    ],
)
def test_rust_build_reason(
    tmp_path: Path,
    files: Mapping[str, str],
    requires: list[str],
    backend: str,
    recipe: str | None,
    reason: str | None,
) -> None:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    found = rust.rust_build_reason(tmp_path, requires=requires, backend=backend, recipe=recipe)
    if reason is None:
        assert found is None
    else:
        assert found is not None and reason in found


def test_a_linked_setup_py_is_not_followed(tmp_path: Path) -> None:
    (tmp_path / "elsewhere.py").write_text("setup(rust_extensions=[])")
    (tmp_path / "setup.py").symlink_to(tmp_path / "elsewhere.py")
    assert rust.rust_build_reason(tmp_path, requires=[], backend="x") is None


class CopySdist:
    """A ``SdistSource`` that hands out one local sdist."""

    def __init__(self, sdist: Path) -> None:
        self.sdist = sdist

    def download(self, file: IndexFile, dest_dir: Path) -> Path:
        dest_dir.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy(self.sdist, dest_dir / file.filename))


def test_a_tree_prepared_again_is_checked_again(tmp_path: Path) -> None:
    """The crates `cargo vendor` fetched went with the last tree: a new one needs them again."""
    sdist = make_rust_sdist(tmp_path, "rusty", vendored=False)
    cargo = FakeCargo()
    preparer = SourcePreparer(
        upstream=CopySdist(sdist),
        sdists_dir=tmp_path / "sdists",
        workspace=Workspace(work_root=tmp_path / "work", logs_dir=tmp_path / "logs"),
        runner=cargo,
        settings=Settings(),
        crates_io=lambda: True,
    )
    pin = Pin(
        canonicalize_name("rusty"), Version("1.0"), IndexFile(sdist.name, "https://x/s", None)
    )
    for _round in range(2):
        prepared = preparer.prepare(pin)
        assert preparer.rust(pin) is None  # nothing says Rust yet
        preparer.recheck_rust(prepared, ["setuptools-rust"])
        found = preparer.rust(pin)
        assert found is not None and found.vendored_by == "cargo vendor"
        preparer.recheck_rust(prepared, ["setuptools-rust"])  # checked once per tree
    assert [c.cmd[:2] for c in cargo.calls] == [["cargo", "vendor"]] * 2
