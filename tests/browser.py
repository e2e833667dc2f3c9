"""Driving the dream page in headless Chromium (Debian's chromium and chromium-driver, via Selenium)."""

from __future__ import annotations

import io
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest


@contextmanager
def dream_page(session: Any) -> Iterator[Any]:
    """Serves ``session`` on a free local port and yields a headless Chromium showing the page."""
    webdriver = pytest.importorskip("selenium.webdriver")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("chromium and chromium-driver are not installed (make test installs them)")
    from dreamworld.tools.dream import serve

    server = serve(session, "127.0.0.1", 0)
    assert server.server_address[0] == "127.0.0.1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1000,700",
    ):
        options.add_argument(flag)
    browser = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver_path))
    try:
        browser.get(f"http://127.0.0.1:{server.server_address[1]}/")
        yield browser
    finally:
        browser.quit()
        server.shutdown()
        server.server_close()
        session.close()


def wait_for(condition: Callable[[], Any], seconds: float = 20.0) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("timed out waiting for the page")


def shown_step(browser: Any) -> int:
    step = browser.find_element("id", "status").get_attribute("data-step")
    return int(step) if step not in (None, "") else -1


def check_dream_page(browser: Any, key: str) -> None:
    """Loads, a key press changes the imagined frame, agent mode advances alone, the page is not blank."""
    from selenium.webdriver.common.action_chains import ActionChains

    wait_for(lambda: shown_step(browser) == 0)
    imagined = browser.find_element("id", "imagined")
    first = imagined.get_attribute("src")
    assert first.startswith("data:image/png")
    ActionChains(browser).send_keys(key).perform()
    wait_for(lambda: shown_step(browser) == 1)
    assert imagined.get_attribute("src") != first
    browser.find_element("id", "mode").click()
    assert browser.find_element("id", "mode").text == "the agent drives"
    wait_for(lambda: shown_step(browser) >= 4)
    import imageio.v3 as iio

    screenshot = iio.imread(io.BytesIO(browser.get_screenshot_as_png()))
    assert screenshot.std() > 10 and len(np.unique(screenshot.reshape(-1, screenshot.shape[-1]), axis=0)) > 20


def check_vector_dream_page(browser: Any, key: str, drawn: bool) -> None:
    """A task learned from vectors: the simulator draws the dream where it can (``drawn``), and the
    live plots of observation, reward and continuation change with every step."""
    from selenium.webdriver.common.action_chains import ActionChains

    wait_for(lambda: shown_step(browser) == 0)
    imagined, plot = browser.find_element("id", "imagined"), browser.find_element("id", "plot")
    assert imagined.is_displayed() == drawn
    assert browser.find_element("id", "undrawable").is_displayed() != drawn
    assert plot.is_displayed() and plot.get_attribute("src").startswith("data:image/png")
    first = (imagined.get_attribute("src"), plot.get_attribute("src"))
    ActionChains(browser).send_keys(key).perform()
    wait_for(lambda: shown_step(browser) == 1)
    assert plot.get_attribute("src") != first[1]
    if drawn:
        assert imagined.get_attribute("src") != first[0]
    browser.find_element("id", "mode").click()
    wait_for(lambda: shown_step(browser) >= 3)
