"""Headless Chromium for the pages the gateway makes (Debian's chromium and chromium-driver, driven by selenium):
a test without them SKIPs and says how to install them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def chromium(profile: Path, size: str = "1200,900") -> Iterator:
    """A headless Chromium with a profile of its own at `profile` and a window of `size` pixels, quit at the end."""
    binary, driver_bin = shutil.which("chromium"), shutil.which("chromedriver")
    if not binary or not driver_bin:
        pytest.skip("Debian chromium/chromium-driver not installed (scripts/install-test-tools.sh installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
                f"--user-data-dir={profile}", f"--window-size={size}"):
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_bin), options=opts)
    try:
        yield driver
    finally:
        driver.quit()
