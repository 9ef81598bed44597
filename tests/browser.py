"""Headless Chromium for the UI tests: Debian's chromium and chromium-driver, driven by Selenium.

The test set-up installs both with apt when it runs as root on a machine without them (as CI does);
elsewhere a missing browser skips the browser tests with the reason. Screenshots go to
``test-artifacts/screenshots/`` (or ``$MLOPS_SCREENSHOTS``), kept after the run.
"""

from __future__ import annotations

import base64
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _apt_install

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
# Without the networking flags Chromium keeps calling Google's hosts, which this network refuses.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1280,900",
    "--hide-scrollbars",
)


def screenshots_dir() -> Path:
    folder = Path(os.environ.get("MLOPS_SCREENSHOTS", ROOT / "test-artifacts" / "screenshots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def chromium() -> Iterator[Any]:
    """A Selenium driver of headless Chromium with its own empty profile."""
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        _apt_install("chromium", "chromium-driver")
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.skip(
            f"{CHROMIUM} and {CHROMEDRIVER} (Debian's chromium, chromium-driver) are missing and cannot "
            "be installed here (not root or no apt-get)"
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="mlops-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(120)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def full_page_screenshot(driver: Any, name: str) -> Path:
    """The whole page (not only the window) as ``<screenshots>/<name>.png``. Airflow's UI scrolls
    inside its main panel, not the document, so the window grows to the tallest scrolling
    element first (at most 4,000 px) and shrinks back after."""
    size = driver.get_window_size()
    tallest = driver.execute_script(
        "return Math.max(...[...document.querySelectorAll('*')].map(e => e.scrollHeight))"
    )
    driver.set_window_size(size["width"], min(max(int(tallest) + 40, size["height"]), 4000))
    try:
        metrics = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": metrics["width"], "height": metrics["height"], "scale": 1}
        shot = driver.execute_cdp_cmd("Page.captureScreenshot", {"captureBeyondViewport": True, "clip": clip})
    finally:
        driver.set_window_size(size["width"], size["height"])
    path = screenshots_dir() / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def sign_in(driver: Any, url: str, page: str, username: str, password: str, ready: str = "h1") -> None:
    """Open ``page``; Airflow's login form comes first (the plugin and Airflow's UI send browsers
    there), then the page, once it shows an element that matches the CSS selector ``ready``."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{url}{page}")
    wait = WebDriverWait(driver, 60)
    wait.until(expected_conditions.presence_of_element_located((By.NAME, "username"))).send_keys(username)
    driver.find_element(By.NAME, "password").send_keys(password)
    wait.until(expected_conditions.element_to_be_clickable((By.CSS_SELECTOR, "button[type=submit]"))).click()
    wait.until(lambda d: d.current_url.startswith(f"{url}{page}") and d.find_elements(By.CSS_SELECTOR, ready))


def image_loaded(driver: Any, alt: str) -> bool:
    """Whether the page shows the image ``alt`` (decoded, with a width)."""
    return bool(
        driver.execute_script(
            "const i = [...document.images].find(i => i.alt === arguments[0]); return !!i && i.complete && i.naturalWidth > 0",
            alt,
        )
    )


def set_theme(driver: Any, theme: str) -> None:
    """Airflow's light or dark theme (its own switch: next-themes' ``localStorage.theme``), reloaded."""
    driver.execute_script("localStorage.setItem('theme', arguments[0])", theme)
    driver.refresh()


def background_luminance(driver: Any, css: str) -> float:
    """0 (black) to 1 (white): the painted background behind the element ``css``.

    The nearest ancestor (the element included) whose background is not transparent, painted on a
    1x1 canvas so that any CSS colour syntax (Chakra's ``oklch(...)`` included) reads as sRGB; a
    page that paints none shows the browser's white canvas.
    """
    r, g, b = driver.execute_script(
        "const ctx = document.createElement('canvas').getContext('2d');"
        "for (let e = document.querySelector(arguments[0]); e; e = e.parentElement) {"
        "  const c = getComputedStyle(e).backgroundColor;"
        "  ctx.clearRect(0, 0, 1, 1); ctx.fillStyle = c; ctx.fillRect(0, 0, 1, 1);"
        "  const [r, g, b, a] = ctx.getImageData(0, 0, 1, 1).data;"
        "  if (a > 0) return [r, g, b];"
        "}"
        "return [255, 255, 255]",
        css,
    )
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255
