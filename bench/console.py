"""make bench-console: how fast the console's page loads and how soon an alert reaches the screen.

Prints JSON lines. The console is the real stage (`services.console.bootstrap.build`) on uvicorn over an
in-process bus (the embedded mode's), with the real Ask path replaced by nothing (not measured here).

- "console-page-load": the alerts page with 0, 50 and 200 stored alerts (each with a 20 KB ROI JPEG):
  server render + transfer through an HTTP client (`http_ms`), and in headless Chromium the navigation
  timing's DOMContentLoaded and load event (images included), median of --loads loads.
- "console-sse-latency": alerts published on the bus one every --gap-s seconds; the latency is from the
  publish call to (a) the SSE event arriving at an HTTP client reading /events ("sse_client") and (b) the
  row being inserted in the page in headless Chromium (`window.vigilDrawn`, Date.now() in the page: the
  browser and the publisher share this machine's clock) ("screen"). p50/p95/max over --alerts alerts.

Chromium comes from Debian's `chromium` + `chromium-driver`; without them the browser rows are skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

import cv2
import httpx
import numpy as np

from services.common.bus.inprocess import InProcessBus
from services.console.bootstrap import ConsoleStage, build
from services.console.config import ConsoleConfig, ConsoleSettings
from vigil.alert.v1 import alert_pb2
from vigil.event.v1 import event_pb2

TOKEN = "bench-console-token-0123456789"


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 255, (24, 32, 3), dtype=np.uint8), (320, 240), interpolation=cv2.INTER_LINEAR)
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])
    assert ok
    return buf.tobytes()


def _publish_alert(bus: InProcessBus, settings: ConsoleSettings, event_id: str, jpeg: bytes | None) -> int:
    """Publish one alert (and its ROI), return the publish time in ms since the epoch."""
    now = time.time_ns()
    event = {"event_type": "accident", "count": 1, "severity": "severe", "level": 1, "score": 0.8}
    event.update({"objects": [{"label": "accident", "bbox": [100, 100, 400, 300]}], "summary": "bench"})
    alert = alert_pb2.Alert(
        event_id=event_id,
        camera_id=f"cam{hash(event_id) % 4}",
        capture_time_ns=now,
        created_time_ns=now,
        sent_time_ns=now,
        level=1,
        score=0.8,
        event_json=json.dumps(event),
        roi_bytes=len(jpeg) if jpeg else 0,
    )
    bus.publish(settings.topics.alerts, alert.SerializeToString(), key=event_id)
    if jpeg:
        unit = event_pb2.EvidenceUnit(kind=event_pb2.EVIDENCE_KIND_ROI, payload=jpeg, content_type="image/jpeg")
        evidence = alert_pb2.Evidence(event_id=event_id, camera_id=alert.camera_id, unit=unit, sent_time_ns=now)
        bus.publish(settings.topics.evidence, evidence.SerializeToString(), key=event_id)
    return now // 1_000_000


def _stats(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 1),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 1),
        "max_ms": round(ordered[-1], 1),
    }


def _browser() -> Any | None:
    from tests.fixtures.browser import CHROMEDRIVER, CHROMIUM

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        return None
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900"):
        options.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)


def page_load(stage: ConsoleStage, bus: InProcessBus, settings: ConsoleSettings, browser: Any, loads: int) -> None:
    """Page load at 0, 50 and 200 stored alerts."""
    client = httpx.Client(base_url=stage.url(), headers={"Authorization": f"Bearer {TOKEN}"})
    stored = 0
    for target in (0, 50, 200):
        while stored < target:
            _publish_alert(bus, settings, f"load-{stored}", _jpeg(stored))
            stored += 1
        while len(stage.state.recent()) < target:
            time.sleep(0.05)
        http_ms = []
        for _ in range(loads):
            t0 = time.perf_counter()
            resp = client.get("/")
            resp.raise_for_status()
            http_ms.append((time.perf_counter() - t0) * 1e3)
        row: dict[str, Any] = {
            "bench": "console-page-load",
            "alerts": target,
            "html_bytes": len(resp.content),
            "http": _stats(http_ms),
        }
        if browser is not None:
            dcl, load = [], []
            for _ in range(loads):
                browser.get(stage.url())
                timing = browser.execute_script(
                    "const t = performance.getEntriesByType('navigation')[0];"
                    "return [t.domContentLoadedEventEnd, t.loadEventEnd];"
                )
                dcl.append(float(timing[0]))
                load.append(float(timing[1]))
            row["browser_dom_content_loaded"] = _stats(dcl)
            row["browser_load"] = _stats(load)
        print(json.dumps(row), flush=True)


def sse_latency(
    stage: ConsoleStage, bus: InProcessBus, settings: ConsoleSettings, browser: Any, n: int, gap_s: float
) -> None:
    """Publish -> SSE event at an HTTP client, and publish -> row on screen in Chromium."""
    client_seen: dict[str, float] = {}
    ready = threading.Event()

    def read_stream() -> None:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.stream("GET", f"{stage.url()}events", headers=headers, timeout=None) as resp:
            ready.set()
            for line in resp.iter_lines():
                if line.startswith("data: ") and '"html"' in line:
                    data = json.loads(line[6:])
                    if "id" in data:
                        client_seen.setdefault(data["id"], time.time() * 1e3)
                if len(client_seen) >= n:
                    return

    reader = threading.Thread(target=read_stream, daemon=True)
    reader.start()
    ready.wait(10)
    if browser is not None:
        browser.get(stage.url())
        time.sleep(1.0)  # the EventSource connects
    published: dict[str, int] = {}
    for i in range(n):
        event_id = f"live-{uuid.uuid4().hex[:8]}-{i}"
        published[event_id] = _publish_alert(bus, settings, event_id, None)
        time.sleep(gap_s)
    reader.join(timeout=10)
    client = [client_seen[e] - t for e, t in published.items() if e in client_seen]
    print(json.dumps({"bench": "console-sse-latency", "path": "sse_client", "gap_s": gap_s, **_stats(client)}))
    if browser is not None:
        drawn: dict[str, float] = browser.execute_script("return window.vigilDrawn || {};")
        screen = [drawn[e] - t for e, t in published.items() if e in drawn]
        print(json.dumps({"bench": "console-sse-latency", "path": "screen", "gap_s": gap_s, **_stats(screen)}))


def main(argv: Sequence[str] | None = None) -> None:
    """Run both measurements and print JSON lines."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--alerts", type=int, default=40)
    ap.add_argument("--gap-s", type=float, default=0.25)
    args = ap.parse_args(argv)
    bus = InProcessBus()
    settings = ConsoleSettings(console=ConsoleConfig(port=0, token=TOKEN, max_alerts=1000))  # type: ignore[arg-type]
    stage = build(settings, bus, probes={}, mode="bench")
    stop = threading.Event()
    stage.start(stop, serve=False)
    browser = _browser()
    try:
        if browser is not None:
            browser.get(stage.url(TOKEN))  # sets the cookie
        else:
            print(json.dumps({"bench": "console", "note": "no chromium/chromium-driver: browser rows skipped"}))
        page_load(stage, bus, settings, browser, args.loads)
        sse_latency(stage, bus, settings, browser, args.alerts, args.gap_s)
    finally:
        if browser is not None:
            browser.quit()
        stop.set()
        stage.close(join_timeout_s=5)


if __name__ == "__main__":
    main()
