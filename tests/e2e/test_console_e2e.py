"""The console in a real browser: Debian's headless Chromium driven by Selenium, against
real processes (both demo backends and ``cutover run``, with traffic on two migrations).

Sign in (a wrong token first), see both migrations, inject a fault under trade-engine's
prefix and watch its row turn rolled_back in the same document, roll strategies back from
its page with a reason and find it in the history with the role, kill -9 the proxy and
start it again under the open page (the stream reconnects, the page goes on updating), then
the view token: no buttons, and a POST with its own session and a valid CSRF token
refused. From Chromium's performance log: no request leaves the admin listener, and a page
weighs under 300 KB.
Screenshots of each page (and of the failure) go to the directory the test prints."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from cutover.console.sessions import COOKIE, Sessions
from tests.processes import (
    Backends,
    ProxyPorts,
    ProxyProcess,
    TrafficDriver,
    running_backends,
    wait_until,
    write_config,
)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
ADMIN_TOKEN = "e2e-console-admin-token-0123"
VIEW_TOKEN = "e2e-console-view-token-0123"
FAULTS_TOKEN = "e2e-console-faults-token-0123"
TRADE, STRATEGIES = "trade-engine", "strategies"
TRADE_PREFIX, STRATEGIES_PATH = "/api/v1/backtests/", "/api/v1/strategies"
INTERVAL = 1.0  # the guard's
DEADLINE = 30.0
LIVE_WITHIN = 1.5  # s from a transition to the page showing it (1 s, plus this test's polls)
MAX_PAGE_BYTES = 300 * 1024
SHUTDOWN_GRACE = 10.0  # shutdown.grace: an event stream left open would hold the stop this long
ROOT = Path(__file__).resolve().parents[2]
# Set, the overview's screenshot replaces docs/console-overview.png (the README's), taken
# once the sparklines have a few samples (one every 10 s).
UPDATE_SCREENSHOT = bool(os.environ.get("CONSOLE_UPDATE_SCREENSHOT"))


def settled(action: Any, timeout: float = 10.0) -> Any:
    """``action()`` again when a live update replaced the element it held (the page swaps
    fragments in as the migration changes: a user sees the new one, a test may hold the old)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except StaleElementReferenceException:
            if time.monotonic() > deadline:
                raise


def config_for(backends: Backends, ports: ProxyPorts, tmp_path: Path) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": ports.listen},
        "admin": {"host": "127.0.0.1", "port": ports.admin},
        "backends": {
            "legacy": {"url": backends.legacy.url, "metrics_url": f"{backends.legacy.url}/metrics"},
            "new": {"url": backends.new.url, "metrics_url": f"{backends.new.url}/metrics"},
        },
        "split": {"sticky": "header:X-User-Id"},
        "migrations": [
            {
                "name": TRADE,
                "match": {"prefix": TRADE_PREFIX, "methods": ["POST"]},
                "from": "legacy",
                "to": "new",
                "rollout": {"stages": [25, 50, 100], "hold": 300},
            },
            {
                "name": STRATEGIES,
                "match": {"prefix": STRATEGIES_PATH},
                "from": "legacy",
                "to": "new",
                "rollout": {"stages": [25, 100], "hold": 300},
                "deprecation": {
                    "deprecated_at": "2026-01-01T00:00:00Z",
                    "sunset_at": "2030-01-01T00:00:00Z",
                },
            },
        ],
        "guard": {
            "interval": INTERVAL,
            "window": 3,
            "min_requests": 10,
            "failures_to_rollback": 2,
            "max_latency_ratio": 10,
        },
        "state": {"path": str(tmp_path / "state.json")},
        "shutdown": {"grace": SHUTDOWN_GRACE},
    }


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = os.environ.get("CONSOLE_TEST_ARTIFACTS")
    path = Path(where) if where else tmp_path_factory.mktemp("console-screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nconsole screenshots: {path}")
    return path


@pytest.fixture
def proxy(tmp_path: Path) -> Iterator[ProxyProcess]:
    with running_backends(tmp_path, FAULTS_TOKEN) as backends:
        ports = ProxyPorts.pick()
        config_path = tmp_path / "cutover.yaml"
        write_config(config_path, config_for(backends, ports, tmp_path))
        proxy = ProxyProcess(tmp_path, config_path, ports, ADMIN_TOKEN)
        proxy.env["CUTOVER_VIEW_TOKEN"] = VIEW_TOKEN
        proxy.companions = [backends.legacy, backends.new]
        proxy.faults = backends.faults  # type: ignore[attr-defined]
        try:
            yield proxy.start()
        finally:
            proxy.close()


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.skip("chromium and chromium-driver are not installed (.ci/run installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1500,900",
                     "--no-first-run", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync"):  # fmt: skip
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    service = webdriver.ChromeService(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    # Every page is weighed whole: nothing comes from the cache.
    driver.execute_cdp_cmd("Network.enable", {})
    driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
    try:
        yield driver
    finally:
        driver.quit()


class Network:
    """What the browser fetched, from Chromium's performance log (read and drained)."""

    def __init__(self, driver: Any) -> None:
        self.driver = driver
        self.urls: list[str] = []

    def read(self) -> tuple[list[str], int]:
        """The URLs requested and the bytes received since the last read."""
        urls, size = [], 0
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
            elif message["method"] == "Network.loadingFinished":
                # Bytes over the wire, headers included (the event stream never finishes).
                size += message["params"].get("encodedDataLength", 0)
        self.urls += urls
        return urls, size


def row_phase(driver: Any, name: str) -> str:
    """In one script: the live updates replace the rows, an element found before may be gone."""
    script = "return document.querySelector(arguments[0]).dataset.phase;"
    return driver.execute_script(script, f'tr[data-migration="{name}"]')


def live_class(driver: Any) -> str:
    return driver.execute_script("return document.getElementById('live').className;")


def live_on(driver: Any, proxy: ProxyProcess) -> None:
    wait_until(lambda: live_class(driver) == "live on", 10, "the live stream", proxy)


def spark_points(driver: Any, name: str) -> int:
    script = (
        "const line = document.querySelector(arguments[0]);"
        "return line ? line.getAttribute('points').split(' ').length : 0;"
    )
    return driver.execute_script(
        script, f'tr[data-migration="{name}"] .spark-row + .spark-row polyline'
    )


def unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def test_the_console_in_chromium(proxy: ProxyProcess, browser: Any, artifacts: Path) -> None:
    driver, admin = browser, proxy.admin_url
    network = Network(driver)
    shots: list[Path] = []

    def shot(name: str) -> None:
        path = artifacts / f"{name}.png"
        driver.save_screenshot(str(path))
        shots.append(path)

    trades = TrafficDriver(proxy.url, rate=60.0, workers=6)
    reads = TrafficDriver(proxy.url, rate=30.0, workers=4, method="GET", path=STRATEGIES_PATH)
    trades.start()
    reads.start()
    try:
        # A wrong token is refused.
        driver.get(f"{admin}/")
        assert driver.current_url == f"{admin}/console/signin"
        driver.find_element(By.ID, "token").send_keys("not-the-token")
        driver.find_element(By.ID, "signin").click()
        refused = wait_until(
            lambda: driver.find_elements(By.ID, "signin-error"), 10, "the refusal", proxy
        )
        assert "not valid" in refused[0].text
        shot("signin-refused")

        # The admin token signs in: both migrations, progressing.
        driver.find_element(By.ID, "token").send_keys(ADMIN_TOKEN)
        driver.find_element(By.ID, "signin").click()
        wait_until(lambda: driver.current_url == f"{admin}/", 10, "the overview", proxy)
        network.read()  # the sign-in's requests are checked with the rest at the end
        driver.refresh()
        assert {row_phase(driver, TRADE), row_phase(driver, STRATEGIES)} == {"progressing"}
        urls, size = network.read()
        assert f"{admin}/console/static/console.js" in urls, urls
        assert size < MAX_PAGE_BYTES, f"the overview weighs {size} bytes"
        print(f"the overview: {size} bytes")
        live_on(driver, proxy)

        if UPDATE_SCREENSHOT:
            wait_until(lambda: spark_points(driver, STRATEGIES) >= 5, 90, "samples", proxy)

        # A fault under trade-engine's prefix: its row turns rolled_back, no reload.
        driver.execute_script("window.cutoverSameDocument = 'yes';")
        proxy.faults.set(error_rate=1.0, path_prefix=TRADE_PREFIX)  # type: ignore[attr-defined]
        seen = wait_until(
            lambda: row_phase(driver, TRADE) == "rolled_back" and time.time(),
            DEADLINE, "trade-engine's row to turn rolled_back", proxy, interval=0.05,
        )  # fmt: skip
        assert driver.execute_script("return window.cutoverSameDocument;") == "yes"
        rollback = proxy.migrations()[TRADE]["history"][-1]
        assert (rollback["kind"], rollback["actor"]) == ("rollback", "guard"), rollback
        lag = seen - unix(rollback["at"])
        print(f"the row showed the guard's rollback {lag:.3f} s after it was made")
        assert lag <= LIVE_WITHIN, lag
        assert row_phase(driver, STRATEGIES) == "progressing"
        badge = f'tr[data-migration="{TRADE}"] .badge'
        assert driver.execute_script(f"return document.querySelector('{badge}').innerText;") == (
            "rolled back"
        )
        shot("overview")
        if UPDATE_SCREENSHOT:
            shutil.copy(artifacts / "overview.png", ROOT / "docs" / "console-overview.png")

        # strategies rolled back from its page, with a reason, confirmed.
        driver.find_element(By.LINK_TEXT, STRATEGIES).click()
        wait_until(lambda: driver.find_elements(By.ID, "act-rollback"), 10, "its page", proxy)
        urls, size = network.read()
        assert size < MAX_PAGE_BYTES, f"the migration page weighs {size} bytes"
        print(f"the migration page: {size} bytes")
        restart = settled(
            lambda: driver.find_element(By.ID, "act-restart").get_attribute("disabled")
        )
        assert restart == "true"
        settled(
            lambda: driver.find_element(By.ID, "rollback-reason").send_keys(
                "checkout errors in canary"
            )
        )
        settled(lambda: driver.find_element(By.ID, "act-rollback").click())
        dialog = driver.find_element(By.ID, "confirm")
        assert dialog.get_attribute("open") == "true" and "Roll strategies back" in dialog.text
        driver.find_element(By.ID, "confirm-ok").click()
        wait_until(
            lambda: driver.find_elements(By.CSS_SELECTOR, '#history li[data-kind="rollback"]'),
            10, "the rollback in the history", proxy,
        )  # fmt: skip

        def latest() -> tuple[str | None, str]:
            item = driver.find_element(By.CSS_SELECTOR, "#history li")
            return item.get_attribute("data-role"), item.text

        role, text = settled(latest)
        assert role == "admin"
        assert "checkout errors in canary" in text and "(admin, console)" in text
        assert (
            settled(lambda: driver.find_element(By.ID, "act-restart").get_attribute("disabled"))
            is None
        )
        document = proxy.migrations()[STRATEGIES]
        assert (document["phase"], document["history"][-1]["role"]) == ("rolled_back", "admin")

        def clients_listed() -> list[Any]:
            rows = driver.find_elements(By.CSS_SELECTOR, "table.clients tbody tr")
            if not rows:
                driver.refresh()  # the usage store is written every second
            return rows

        row = wait_until(clients_listed, 10, "the old API's clients", proxy)[0]
        assert int(row.find_elements(By.TAG_NAME, "td")[1].text) > 0, row.text
        shot("migration")

        # The stream dropped (the proxy killed and started again): the page reconnects and
        # goes on updating, the session still valid (its key comes from the tokens).
        driver.get(f"{admin}/")
        live_on(driver, proxy)
        driver.execute_script("window.cutoverSameDocument = 'again';")
        proxy.kill9()
        wait_until(lambda: live_class(driver) == "live off", 10, "the stream to drop", proxy)
        proxy.restart()
        live_on(driver, proxy)
        assert proxy.admin.post(f"/migrations/{STRATEGIES}/restart").status_code == 200
        wait_until(
            lambda: row_phase(driver, STRATEGIES) == "progressing", 10,
            "strategies' row after the reconnect", proxy, interval=0.05,
        )  # fmt: skip
        assert driver.execute_script("return window.cutoverSameDocument;") == "again"

        # The view token: no action, and its own forged POST is refused.
        driver.find_element(By.CSS_SELECTOR, "form.signout button").click()
        signin = f"{admin}/console/signin"
        wait_until(lambda: driver.current_url == signin, 10, "the sign-in page", proxy)
        wait_until(lambda: driver.find_elements(By.ID, "token"), 10, "the token field", proxy)
        driver.find_element(By.ID, "token").send_keys(VIEW_TOKEN)
        driver.find_element(By.ID, "signin").click()
        wait_until(lambda: driver.current_url == f"{admin}/", 10, "the overview", proxy)
        driver.get(f"{admin}/console/m/{TRADE}")
        assert "read-only" in driver.find_element(By.CSS_SELECTOR, "header").text
        assert driver.find_elements(By.CSS_SELECTOR, "form.act, button[id^=act-]") == []
        shot("migration-read-only")
        cookie = driver.get_cookie(COOKIE)
        assert cookie["httpOnly"] is True and cookie["sameSite"] == "Strict"
        session = Sessions(SecretStr(ADMIN_TOKEN), SecretStr(VIEW_TOKEN)).read(cookie["value"])
        assert session is not None and session.role == "viewer"
        forged = httpx.post(
            f"{admin}/console/m/{TRADE}/restart", data={"csrf": session.csrf},
            cookies={COOKIE: cookie["value"]}, trust_env=False,
        )  # fmt: skip
        assert forged.status_code == 403, forged.text
        assert proxy.migrations()[TRADE]["phase"] == "rolled_back"

        # Nothing the pages asked for left the admin listener.
        network.read()
        outside = [url for url in network.urls if not url.startswith((f"{admin}/", "data:"))]
        assert network.urls and outside == [], outside

        # An open page does not hold up a clean stop: its stream ends at once.
        live_on(driver, proxy)
        stopping = time.monotonic()
        proxy.stop()
        took = time.monotonic() - stopping
        assert proxy.popen is not None and proxy.popen.returncode == 0, proxy.describe()
        assert took < SHUTDOWN_GRACE, f"the stop took {took:.2f} s"
    except BaseException:
        shot("failure")
        raise
    finally:
        trades.stop()
        reads.stop()
        print(f"screenshots: {', '.join(str(path) for path in shots)}")
