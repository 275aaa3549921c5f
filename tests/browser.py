"""Debian's headless Chromium driven by Selenium (through Debian's chromedriver): the dashboard
tests look at pages as people do.  Nothing is downloaded: Selenium Manager is never asked.

Screenshots go to ``build/screenshots/`` (ignored by git; CI keeps them as artefacts).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

SCREENSHOTS = Path(__file__).resolve().parents[1] / "build" / "screenshots"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


def have_chromium() -> bool:
    return Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()


class Browser:
    """One headless Chromium window; ``open`` waits until the dashboard has drawn the page."""

    def __init__(self, width: int = 1400, height: int = 1000) -> None:
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--use-angle=swiftshader",  # WebGL in software, so scattergl draws headless
            "--enable-unsafe-swiftshader",
            f"--window-size={width},{height}",
            "--no-first-run",
            "--disable-extensions",
        ):
            options.add_argument(argument)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.driver.set_page_load_timeout(30)
        self.base_url = ""

    def close(self) -> None:
        self.driver.quit()

    def open(self, path: str, *, ready: str = "#page > *", timeout_s: float = 20) -> None:
        """Load ``path`` and wait until the router has drawn the page (and nothing loads)."""
        self.driver.get(self.base_url + path)
        self.wait_drawn(ready, timeout_s=timeout_s)

    def wait_drawn(self, ready: str = "#page > *", *, timeout_s: float = 20) -> None:
        self.wait_for(ready, timeout_s=timeout_s)
        self.wait_until(lambda: not self.loading(), timeout_s=timeout_s, what="the page to load")

    def loading(self) -> bool:
        busy: bool = self.driver.execute_script(
            "return !!document.querySelector('[data-dash-is-loading=\"true\"]')"
            " || !document.querySelector('#page')"
        )
        return busy

    def wait_until(
        self, condition: Callable[[], Any], *, timeout_s: float = 20, what: str = "a condition"
    ) -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                value = condition()
                if value:
                    return value
            except (StaleElementReferenceException, WebDriverException):
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
            time.sleep(0.05)

    def wait_for(self, css: str, *, timeout_s: float = 20) -> WebElement:
        found: WebElement = self.wait_until(
            lambda: self.driver.find_elements(By.CSS_SELECTOR, css), timeout_s=timeout_s, what=css
        )[0]
        return found

    def find(self, css: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str = "#page") -> str:
        return self.find(css).text

    def path(self) -> str:
        location: str = self.driver.execute_script(
            "return window.location.pathname + window.location.search"
        )
        return location

    def console_errors(self) -> list[str]:
        """Console errors since the last call (the log is drained by reading it)."""
        return [
            entry["message"]
            for entry in self.driver.get_log("browser")
            if entry["level"] == "SEVERE"
        ]

    def screenshot(self, name: str, *, full_page: bool = False, max_height: int = 3200) -> Path:
        """The window (or the whole page, up to ``max_height`` px) as ``<name>.png``."""
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        target = SCREENSHOTS / f"{name}.png"
        width, height = self.driver.get_window_size().values()
        if full_page:
            page = self.script("return document.documentElement.scrollHeight")
            self.driver.set_window_size(width, min(max(page + 140, height), max_height))
        try:
            self.driver.save_screenshot(str(target))
        finally:
            if full_page:
                self.driver.set_window_size(width, height)
        return target

    def script(self, source: str, *args: Any) -> Any:
        return self.driver.execute_script(source, *args)

    def choose(self, dropdown: str, option: str) -> None:
        """Pick an option of a dcc.Dropdown (a CSS selector) as a person does: open it, click
        the option (Dash 4 draws the options in a popover outside the dropdown's element)."""
        self.find(dropdown).click()
        self.wait_until(
            lambda: [o for o in self.find_all(".dash-dropdown-option") if o.text.strip() == option],
            what=f"option {option} of {dropdown}",
        )[0].click()

    @contextmanager
    def watching(self, base_url: str) -> Iterator[Browser]:
        """Pointed at ``base_url``; fails on any console error while in use."""
        self.base_url = base_url
        self.console_errors()  # drain what earlier tests left
        yield self
        errors = self.console_errors()
        assert not errors, f"console errors: {errors}"
