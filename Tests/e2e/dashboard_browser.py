"""Headless Chromium for the dashboard tests: one driver per test, a temporary profile,
fixed window sizes, screenshots (desktop and phone) under artifacts/dashboard/."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

import requests
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts" / "dashboard"
DESKTOP = (1280, 900)
PHONE = (390, 844)


class Browser:
    def __init__(self):
        self.profile = tempfile.mkdtemp(prefix="devbox-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  f"--window-size={DESKTOP[0]},{DESKTOP[1]}", f"--user-data-dir={self.profile}",
                  "--no-first-run", "--disable-extensions", "--disable-background-networking"]:
            opts.add_argument(a)
        self.log_path = os.path.join(self.profile, "chromedriver.log")
        service = Service(executable_path=os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"),
                          log_output=self.log_path)
        self.driver = webdriver.Chrome(options=opts, service=service)
        self.driver.set_window_size(*DESKTOP)
        self.pages: list[str] = []  # every page source seen, for the secret scan

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)

    # -- navigation ----------------------------------------------------------------
    def get(self, url: str) -> None:
        self.driver.get(url)
        self.remember()

    def remember(self) -> str:
        src = self.driver.page_source
        self.pages.append(src)
        return src

    def find(self, css: str):
        return self.driver.find_element(By.CSS_SELECTOR, css)

    def find_all(self, css: str):
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def wait(self, timeout: float = 30) -> WebDriverWait:
        # The page replaces nodes while it polls: a lookup that raced a replacement ("stale
        # element", or Chromium's "Node with given id does not belong to the document") is
        # tried again at the next poll, within the same timeout.
        return WebDriverWait(self.driver, timeout, poll_frequency=0.25,
                             ignored_exceptions=(StaleElementReferenceException, WebDriverException))

    def wait_for(self, css: str, timeout: float = 30):
        return self.wait(timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))

    def wait_text(self, css: str, text: str, timeout: float = 30) -> None:
        self.wait(timeout).until(EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text))

    def type(self, css: str, text: str) -> None:
        el = self.find(css)
        el.clear()
        el.send_keys(text)

    def submit(self, css: str) -> None:
        """Clicks a submit button and waits for the next page to load."""
        old = self.find("html")
        self.find(css).click()
        self.wait(60).until(lambda _: self._gone(old))
        self.wait(30).until(lambda d: d.execute_script("return document.readyState") == "complete")
        self.remember()

    @staticmethod
    def _gone(element) -> bool:
        """The element left the document. Chromium sometimes answers a check made while the
        next page replaces the document with "Node with given id does not belong to the
        document" (a plain WebDriverException) instead of a stale-element error."""
        try:
            element.is_enabled()
            return False
        except StaleElementReferenceException:
            return True
        except WebDriverException as e:
            if "does not belong to the document" in str(e) or "no such" in str(e):
                return True
            raise

    def path(self) -> str:
        return re.sub(r"^https?://[^/]+", "", self.driver.current_url)

    # -- screenshots ---------------------------------------------------------------
    def shot(self, name: str) -> list[str]:
        """Desktop and phone screenshots of the current page (full height)."""
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        out = []
        for label, (w, h) in (("desktop", DESKTOP), ("phone", PHONE)):
            self.driver.set_window_size(w, h)
            height = self.driver.execute_script("return Math.max(document.body.scrollHeight, %d)" % h)
            self.driver.set_window_size(w, min(int(height) + 120, 6000))
            self.driver.execute_script("window.scrollTo(0, 0)")
            path = ARTIFACTS / f"{name}-{label}.png"
            self.driver.save_screenshot(str(path))
            out.append(str(path))
        self.driver.set_window_size(*DESKTOP)
        return out

    def cookie(self, name: str) -> dict | None:
        return next((c for c in self.driver.get_cookies() if c["name"] == name), None)


def form_token(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "no csrf_token field in the page"
    return m.group(1)


def sign_in_requests(base: str, provider_token: str, user_token: str | None = None) -> requests.Session:
    """Signs in like a browser would, with plain requests (for the CSRF/Origin tests)."""
    http = requests.Session()
    page = http.get(base + "/login", timeout=10)
    assert page.status_code == 200
    r = http.post(base + "/login", data={"csrf_token": form_token(page.text), "provider_token": provider_token,
                                         "user_token": user_token or ""},
                  headers={"Origin": base}, allow_redirects=False, timeout=30)
    assert r.status_code == 303, r.text
    assert "devbox_session" in http.cookies
    return http
