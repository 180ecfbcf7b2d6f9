"""Fixtures of the browser tests: headless Chromium (Debian's chromium and
chromium-driver, driven by Selenium; nothing is downloaded), a real Redis
and a real Redis Cluster."""

from __future__ import annotations

import os
import typing as t
from pathlib import Path

import pytest

from tests.redisserver import _shared_redis_cluster as _shared_redis_cluster  # noqa: F401
from tests.redisserver import redis_cluster as redis_cluster  # noqa: F401
from tests.redisserver import redis_server as redis_server  # noqa: F401

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
#: Flags that work as root in a container, with no network but loopback.
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1100,750",
)


@pytest.fixture
def browser(tmp_path: Path) -> t.Iterator[t.Callable[[], t.Any]]:
    """``browser()`` opens a headless Chromium with a fresh profile (so its
    own cookies) and returns its Selenium driver; all are closed after the
    test. Skipped where Chromium is not installed, except in CI (``CI``
    set), where ``.ci/run`` installs it and its absence is a failure."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not os.access(path, os.X_OK)]
    if missing:
        message = f"{' and '.join(missing)} not installed (apt-get install chromium chromium-driver; .ci/run does it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    drivers: list[t.Any] = []

    def open_browser() -> t.Any:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for flag in CHROMIUM_FLAGS:
            options.add_argument(flag)
        profile = tmp_path / f"chromium-profile-{len(drivers)}"
        options.add_argument(f"--user-data-dir={profile}")
        # The DevTools Network events (tests/browser/devtools.py reads them):
        # what the WebSocket handshakes negotiated, seen from the browser.
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        service = Service(CHROMEDRIVER, log_output=str(tmp_path / f"chromedriver-{len(drivers)}.log"))
        driver = webdriver.Chrome(service=service, options=options)
        driver.set_page_load_timeout(15)
        drivers.append(driver)
        return driver

    yield open_browser
    for driver in drivers:
        driver.quit()
