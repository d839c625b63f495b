"""The browsable pages and the graph page in a real headless browser (Debian's chromium).

Skipped where chromium, chromedriver or selenium is missing; CI installs them (.ci/run).
"""

from __future__ import annotations

import hashlib
import shutil
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import Upstream

from rewheel.cli import cli
from rewheel.repo.repository import Repository
from rewheel.serve.server import IndexServer
from rewheel.ui.graph_export import chains, read_graph

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="needs chromium and chromedriver (apt-get install chromium chromium-driver)",
)

webdriver = pytest.importorskip("selenium.webdriver")
By = pytest.importorskip("selenium.webdriver.common.by").By
Service = pytest.importorskip("selenium.webdriver.chrome.service").Service
WebDriverWait = pytest.importorskip("selenium.webdriver.support.ui").WebDriverWait


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--window-size=1400,1000",
    ):
        options.add_argument(arg)
    # Both paths given: Selenium Manager has nothing to look up or download.
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def built_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A real bootstrap through the command line: app needs lib; both are built with tool."""
    from support.fake_index import FakeIndex

    tmp = tmp_path_factory.mktemp("browser")
    files = tmp / "upstream-files"
    files.mkdir()
    with FakeIndex() as index:
        up = Upstream(index, files)
        up.sdist("tool", "1.0")
        up.sdist("lib", "1.0", build_requires=["tool"])
        up.sdist("app", "1.0", build_requires=["tool"], install_requires=["lib"])
        repo = tmp / "repo"
        result = CliRunner().invoke(
            cli, ["bootstrap", "app", "--repo", str(repo), "--index-url", up.url, "-j", "2"]
        )
        assert result.exit_code == 0, result.output
    yield repo


@pytest.fixture(scope="module")
def base_url(built_repo: Path) -> Iterator[str]:
    with IndexServer(Repository(built_repo)) as server:
        yield f"http://127.0.0.1:{server.port}"


def _wait_for(browser: Any, css: str) -> Any:
    return WebDriverWait(browser, 10).until(lambda d: d.find_element(By.CSS_SELECTOR, css))


def test_front_page_to_project_page_sha256_and_build_env_link(
    browser: Any, base_url: str, built_repo: Path
) -> None:
    browser.get(base_url + "/")
    assert browser.current_url == base_url + "/browse/"
    names = [a.text for a in browser.find_elements(By.CSS_SELECTOR, "#projects tbody a")]
    assert names == ["app", "lib", "tool"]
    assert browser.find_element(By.ID, "origin").text == base_url

    browser.find_element(By.LINK_TEXT, "app").click()
    assert _wait_for(browser, "h1").text == "app"
    assert browser.current_url == base_url + "/browse/app.html"

    # The sha256 shown is the wheel's, and the wheel link serves that very file.
    wheel_link = browser.find_element(By.CSS_SELECTOR, "table.files a.wheel")
    (wheel,) = (built_repo / "wheels").glob("app-1.0-*.whl")
    actual = hashlib.sha256(wheel.read_bytes()).hexdigest()
    shown = browser.find_element(By.CSS_SELECTOR, "table.files code.sha256").text
    assert shown == actual
    with urllib.request.urlopen(wheel_link.get_attribute("href"), timeout=10) as resp:
        assert hashlib.sha256(resp.read()).hexdigest() == actual

    why = browser.find_element(By.CSS_SELECTOR, "ul.why").text
    assert "requested as app" in why

    # The build log opens as text.
    log_href = browser.find_element(By.CSS_SELECTOR, "a.log").get_attribute("href")
    assert log_href == base_url + "/logs/app-1.0.log"

    # The build environment links to the page of the wheel it used.
    env_link = browser.find_element(By.CSS_SELECTOR, "table.build-env a.env-link")
    assert env_link.text == "tool 1.0"
    env_sha = browser.find_element(By.CSS_SELECTOR, "table.build-env code.sha256").text
    env_link.click()
    assert _wait_for(browser, "h1").text == "tool"
    assert browser.current_url == base_url + "/browse/tool.html#v-1.0"
    section = browser.find_element(By.ID, "v-1.0")
    assert env_sha in section.find_element(By.CSS_SELECTOR, "table.files").text
    used_by = [a.text for a in section.find_elements(By.CSS_SELECTOR, "ul.used-by a")]
    assert used_by == ["app==1.0", "lib==1.0"]

    browser.get(log_href)
    assert "rewheel build log of app==1.0" in browser.find_element(By.TAG_NAME, "body").text


def test_graph_page_draws_every_package_and_highlights_chains_on_click(
    browser: Any, base_url: str, built_repo: Path
) -> None:
    graph = read_graph(built_repo)
    browser.get(base_url + "/browse/index.html")
    browser.get_log("browser")  # forget earlier pages (a text log page asks for a favicon)
    browser.find_element(By.ID, "graph-link").click()
    _wait_for(browser, "g.node")
    assert browser.current_url == base_url + "/browse/graph.html"
    assert browser.get_log("browser") == []  # no script error
    drawn = {g.get_attribute("data-id") for g in browser.find_elements(By.CSS_SELECTOR, "g.node")}
    assert drawn == set(graph.nodes)

    # Edge kinds are told apart: build-system edges dashed, install edges solid.
    dashed = browser.find_element(By.CSS_SELECTOR, "path.edge.build-system")
    solid = browser.find_element(By.CSS_SELECTOR, "path.edge.install")
    assert dashed.value_of_css_property("stroke-dasharray") not in ("none", "")
    assert solid.value_of_css_property("stroke-dasharray") in ("none", "")
    assert dashed.get_attribute("stroke") != solid.get_attribute("stroke")

    browser.find_element(By.CSS_SELECTOR, 'g.node[data-id="tool==1.0"]').click()
    assert "focus" in browser.find_element(By.ID, "graph").get_attribute("class")
    lit = {g.get_attribute("data-id") for g in browser.find_elements(By.CSS_SELECTOR, "g.node.hl")}
    assert lit == {"app==1.0", "lib==1.0", "tool==1.0"}
    found, _ = chains(graph, "tool==1.0")
    shown = browser.find_elements(By.CSS_SELECTOR, "#chains li")
    assert len(shown) == len(found) == 2
    assert browser.find_element(By.CSS_SELECTOR, "#panel h2").text == "tool==1.0"
    # Every edge into tool (from app and from lib) is on a chain.
    lit_edges = browser.find_elements(By.CSS_SELECTOR, "path.edge.hl")
    into_tool = [e for e in graph.edges if e.child == "tool==1.0" and e.parent is not None]
    assert len(lit_edges) >= len(into_tool) + 1  # plus app -> lib

    # A click is not a drag: moving the mouse to the next package does not pan the drawing.
    lib = browser.find_element(By.CSS_SELECTOR, 'g.node[data-id="lib==1.0"]')
    before = lib.rect
    lib.click()
    assert browser.find_element(By.CSS_SELECTOR, "#panel h2").text == "lib==1.0"
    assert lib.rect == before


@pytest.fixture(scope="module")
def failed_repo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A bootstrap where ``bad`` fails and ``needs-bad``, which needs it to build, is left."""
    from support.fake_index import FakeIndex

    tmp = tmp_path_factory.mktemp("browser-failed")
    files = tmp / "upstream-files"
    files.mkdir()
    with FakeIndex() as index:
        up = Upstream(index, files)
        up.sdist("app", "1.0", install_requires=["bad", "needs-bad"])
        up.sdist("bad", "1.0", fail_build=True)
        up.sdist("needs-bad", "1.0", build_requires=["bad"])
        repo = tmp / "repo"
        result = CliRunner().invoke(
            cli,
            ["bootstrap", "app", "--repo", str(repo), "--index-url", up.url, "--keep-going"],
        )
        assert result.exit_code == 1, result.output
    yield repo


def test_graph_page_marks_failed_and_unbuilt_packages_and_tells_why(
    browser: Any, failed_repo: Path
) -> None:
    with IndexServer(Repository(failed_repo)) as server:
        browser.get(f"http://127.0.0.1:{server.port}/browse/graph.html")
        browser.get_log("browser")
        _wait_for(browser, "g.node")
        assert browser.get_log("browser") == []  # the page's script still runs under its CSP
        failed = {
            g.get_attribute("data-id") for g in browser.find_elements(By.CSS_SELECTOR, "g.failed")
        }
        unbuilt = {
            g.get_attribute("data-id") for g in browser.find_elements(By.CSS_SELECTOR, "g.unbuilt")
        }
        assert (failed, unbuilt) == ({"bad==1.0"}, {"needs-bad==1.0"})
        rect = browser.find_element(By.CSS_SELECTOR, "g.node.unbuilt rect")
        assert rect.value_of_css_property("stroke-dasharray") not in ("none", "")
        assert "failed (1)" in browser.find_element(By.ID, "legend").text

        browser.find_element(By.CSS_SELECTOR, 'g.node[data-id="bad==1.0"]').click()
        status = browser.find_element(By.CSS_SELECTOR, "#panel p.status")
        assert status.text.startswith("failed: [build-wheel] backend tinybackend failed")
        assert "requested: app" in browser.find_element(By.CSS_SELECTOR, "#panel p.run").text
        # A second click: the first one's drag is over, so moving the mouse did not pan.
        browser.find_element(By.CSS_SELECTOR, 'g.node[data-id="needs-bad==1.0"]').click()
        status = browser.find_element(By.CSS_SELECTOR, "#panel p.status")
        assert status.text == (
            "not built: a dependency failed: [build-env] its build environment needs bad==1.0, "
            "which failed"
        )

        # The front page lists both, linked to their sections.
        browser.get(f"http://127.0.0.1:{server.port}/browse/index.html")
        rows = browser.find_elements(By.CSS_SELECTOR, "#not-built tbody tr")
        assert [r.find_element(By.TAG_NAME, "a").text for r in rows] == ["bad", "needs-bad"]
        rows[0].find_element(By.TAG_NAME, "a").click()
        assert browser.current_url.endswith("/browse/bad.html#v-1.0")
        assert "Failed [build-wheel]" in browser.find_element(By.CSS_SELECTOR, "p.status").text
