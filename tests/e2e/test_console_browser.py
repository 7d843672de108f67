"""The console in a real browser: `vigil run --console` on a short accident clip, the page opened in headless
Chromium (Selenium): an alert row with its evidence image, a question answered with keyframes, a screenshot."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.browser import artifact, chromium_or_skip
from tests.fixtures.media import shared

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]


def _stderr_match(proc: subprocess.Popen[str], pattern: str, timeout_s: float) -> re.Match[str]:
    """The first line `vigil run` prints on stderr that matches `pattern`."""
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    seen = []
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            if proc.poll() is not None:
                break
            continue
        seen.append(line)
        found = re.search(pattern, line)
        if found:
            return found
    raise AssertionError(f"vigil run printed no line matching {pattern!r}: {''.join(seen)[-3000:]}")


def test_alert_evidence_and_ask_in_chromium(tmp_path: Path) -> None:
    browser = chromium_or_skip()
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    video = shared("videos", "static_camera", "accident_cctv_test1.mp4")
    run = ["run", "--video", str(video), "--memory", str(tmp_path / "memory"), "--no-progress", "--json"]
    proc = subprocess.Popen(
        [sys.executable, "-m", "services.cli", *run, "--console", "--console-wait"],
        cwd=ROOT,
        # Streams of 2 s: the page reconnects several times (resuming from Last-Event-ID) while it is open.
        env={
            **os.environ,
            "VIGIL_UPLINK__CONSUMER_GROUP": f"e2e-console-{os.getpid()}",
            "VIGIL_CONSOLE__SSE_MAX_S": "2",
        },
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = _stderr_match(proc, r"console at (http://\S+)", timeout_s=120).group(1)
        # Opened while the video runs: the alert arrives over the live stream (or is drawn if it came first).
        browser.get(url)
        wait = WebDriverWait(browser, 120)
        image = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "tr.alert img.evidence-img")))
        loaded = "return arguments[0].complete && arguments[0].naturalWidth"
        wait.until(lambda _d: browser.execute_script(loaded, image))
        row = browser.find_element(By.CSS_SELECTOR, "tr.alert")
        assert "accident" in row.text and "detector-prior" in row.text
        assert browser.find_element(By.ID, "live-status").text == "live"
        shot = artifact("console-alerts.png")
        browser.save_screenshot(str(shot))

        # Reconnects never draw a row twice.
        wait.until(lambda _d: browser.execute_script("return window.vigilConnects") >= 3)
        ids = browser.execute_script("return [...document.querySelectorAll('tr.alert')].map(r => r.id)")
        assert ids and len(ids) == len(set(ids)), ids
        # The memory is complete once the video is done (indexing closes its last clusters at the end).
        _stderr_match(proc, r"the video is done", timeout_s=120)
        browser.find_element(By.CSS_SELECTOR, "#ask-short input[name=question]").send_keys("a car crash")
        browser.find_element(By.CSS_SELECTOR, "#ask-short button").click()
        keyframe = wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "figure.keyframe img")))
        assert browser.execute_script("return arguments[0].naturalWidth", keyframe) > 0
        assert "No VLM ran" in browser.find_element(By.CSS_SELECTOR, ".answer-text").text
        notes = browser.find_element(By.CSS_SELECTOR, "ul.notes").text
        assert "retrieval by" in notes
        assert re.search(r"p=\d\.\d{3}", browser.find_element(By.CSS_SELECTOR, "figure.keyframe figcaption").text)
        answer_shot = artifact("console-ask.png")
        browser.save_screenshot(str(answer_shot))
        print(f"screenshots: {shot} {answer_shot}")
    finally:
        browser.quit()
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, proc.stderr.read() if proc.stderr else ""
