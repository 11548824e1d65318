"""The nightly site and a run page as a person opens them: Debian's headless Chromium driven through its
chromedriver, pages loaded from ``file://`` with every other scheme blocked.  A page fails on any console
error or any request that is not ``file://``, and must show the grid, the plot labels and a fault band."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from synthetic_runs import sample_store

from harness.site import write_site
from harness.store import RunStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(binary).exists():
            pytest.fail(f"{binary} is missing: `./run setup` installs Debian's {package} "
                        f"(or apt-get install {package})")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1600", "--proxy-server=127.0.0.1:9", "--host-resolver-rules=MAP * ~NOTFOUND"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    # the browser's profile and scratch dirs in the test's own temp dir (chromium leaves org.chromium.* in /tmp)
    scratch = tmp_path_factory.mktemp("chromium")
    driver = webdriver.Chrome(options=opts, service=Service(CHROMEDRIVER, env={**os.environ, "TMPDIR": str(scratch)}))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> RunStore:
    store = sample_store(tmp_path_factory.mktemp("nightly"))
    write_site(store)
    return store


def _open(driver: Any, path: Path) -> None:
    driver.get_log("performance")   # drop what earlier pages logged
    driver.get_log("browser")
    driver.get(path.as_uri())
    _assert_offline_and_quiet(driver)


def _assert_offline_and_quiet(driver: Any) -> None:
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    foreign = [u for u in urls if not u.startswith(("file://", "data:", "about:"))]
    assert not foreign, f"the page asked the network for {foreign}"
    errors = [e for e in driver.get_log("browser") if e["level"] == "SEVERE"]
    assert not errors, f"console errors: {errors}"


def test_index_grid_marks_and_links(browser: Any, site: RunStore) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, site.directory / "index.html")
    rows = browser.find_elements(By.CSS_SELECTOR, "tr.scenario")
    assert {r.get_attribute("data-scenario") for r in rows} == {"baseline", "taskmanager_kill",
                                                                "teeth_no_dedup_connect_kill"}
    assert len(browser.find_elements(By.CSS_SELECTOR, "th.session")) == 4
    tm_cells = browser.find_elements(By.CSS_SELECTOR, "td.cell[data-scenario='taskmanager_kill']")
    assert [len(c.find_elements(By.CSS_SELECTOR, "a.run")) for c in tm_cells] == [2, 2, 2, 2]
    safety = browser.find_elements(By.CSS_SELECTOR, "a.run.safety")
    assert len(safety) == 1 and safety[0].is_displayed()
    baseline = browser.find_element(By.CSS_SELECTOR, "tr.scenario[data-scenario='baseline']")
    assert "NEW" in baseline.text and "flaky" not in baseline.text
    tm = browser.find_element(By.CSS_SELECTOR, "tr.scenario[data-scenario='taskmanager_kill']")
    assert "flaky" in tm.text
    windows = browser.find_element(By.ID, "windows").text
    assert "checkpoint in flight" in windows and "8 of 16" in windows
    # a person clicks a run mark and lands on that run's page, still offline
    safety[0].click()
    _assert_offline_and_quiet(browser)
    assert "baseline" in browser.title and "ANOMALIES" in browser.find_element(By.TAG_NAME, "h1").text


def test_run_page_plots_fault_band_logs_and_replay(browser: Any, site: RunStore) -> None:
    from selenium.webdriver.common.by import By

    run = site.runs(scenario="taskmanager_kill")[0]
    _open(browser, Path(run.report_dir) / "report.html")
    text = browser.find_element(By.TAG_NAME, "body").text
    for label in ("Changes committed per second", "Consumer lag of the job", "Freshness", "Checkpoint duration",
                  "Operation timeline", "taskmanager-kill"):
        assert label in text, label
    band = browser.find_element(By.CSS_SELECTOR, "#run-figure [id='fault-band-0']")
    assert band.size["width"] > 5 and band.size["height"] > 5 and band.is_displayed()
    assert browser.find_element(By.ID, "replay").text == run.replay
    logs = [a.get_attribute("href") for a in browser.find_elements(By.CSS_SELECTOR, "#logs a")]
    assert any(h.endswith("flink-taskmanager-1.log") for h in logs) and all(h.startswith("file://") for h in logs)
    browser.find_element(By.LINK_TEXT, "index").click()
    _assert_offline_and_quiet(browser)
    assert browser.find_elements(By.CSS_SELECTOR, "tr.scenario")


def test_trends_show_the_band_and_flag_the_slow_night(browser: Any, site: RunStore) -> None:
    from selenium.webdriver.common.by import By

    _open(browser, site.directory / "trends.html")
    rec = browser.find_element(By.ID, "recovery_s")
    assert "Recovery" in rec.text
    assert "outside the band: 20261104-020000" in browser.find_element(By.TAG_NAME, "body").text
    assert browser.find_elements(By.CSS_SELECTOR, "[id='noise-band']")
    assert browser.find_elements(By.CSS_SELECTOR, "[id='trend-flag']")


def test_the_page_checks_catch_a_network_request_and_a_console_error(browser: Any, tmp_path: Path) -> None:
    """The two page checks can fail: a page that loads a CDN script, and one that logs an error."""
    cdn = tmp_path / "cdn.html"
    cdn.write_text("<!doctype html><script src='https://cdn.example.com/plot.js'></script><p>x</p>")
    with pytest.raises(AssertionError, match=r"asked the network for .*cdn\.example\.com"):
        _open(browser, cdn)
    noisy = tmp_path / "noisy.html"
    noisy.write_text("<!doctype html><script>console.error('broken plot')</script>")
    with pytest.raises(AssertionError, match="broken plot"):
        _open(browser, noisy)

