"""`python -m services.notifier` between a real Tansu broker and a local HTTP receiver that fails, then accepts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from services.common.bus import Message
from services.common.bus.kafka import KafkaBus
from services.common.config import BusConfig
from services.notifier.delivery import verify
from tests.fixtures.tcp_proxy import free_port
from vigil.alert.v1 import alert_pb2

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SECRET = "integration-secret-0123456789"


class Receiver:
    """A webhook on 127.0.0.1: 503 twice per event (once with Retry-After), then 200; 400 for `reject-*` events.

    Every request's signature is checked as a receiver would (docs/notifier.md).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[dict[str, Any]] = []
        self.accepted: list[str] = []
        self.bad_signatures = 0
        # While set, `wait-*` events get 503 with Retry-After: 300 (a receiver asking for five minutes).
        self.hold = True
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                status, extra = receiver.answer(self.path, dict(self.headers), body)
                self.send_response(status)
                for k, v in extra.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks/vigil?token=do-not-log-me"

    def answer(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, dict[str, str]]:
        ok = verify(SECRET.encode(), headers["X-Vigil-Timestamp"], body, headers["X-Vigil-Signature"], time.time(), 300)
        event_id = json.loads(body)["event_id"]
        with self.lock:
            self.requests.append({"event_id": event_id, "attempt": headers["X-Vigil-Attempt"], "path": path})
            if not ok:
                self.bad_signatures += 1
                return 401, {}
            if event_id.startswith("reject-"):
                return 400, {}
            if event_id.startswith("wait-"):
                if self.hold:
                    return 503, {"Retry-After": "300"}
                self.accepted.append(event_id)
                return 200, {}
            tries = sum(1 for r in self.requests if r["event_id"] == event_id)
            if tries == 1:
                return 503, {"Retry-After": "1"}
            if tries == 2:
                return 503, {}
            self.accepted.append(event_id)
            return 200, {}

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def alert(event_id: str) -> bytes:
    event = {"event_type": "accident", "count": 1, "severity": "high", "summary": "a car hits a pole"}
    return alert_pb2.Alert(
        event_id=event_id, camera_id="cam-n", level=3, score=0.8, event_json=json.dumps(event), sent_time_ns=1
    ).SerializeToString()


def wait_for(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


class Notifier:
    """The service as a process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.log = log
        with log.open("ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.notifier"], cwd=ROOT, env=env, stdout=f, stderr=subprocess.STDOUT
            )

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=60)


def scrape(port: int) -> dict[str, float]:
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith("vigil_") and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            out[name] = float(value)
    return out


def test_notifier_retries_signs_deduplicates_and_dead_letters(
    tansu: Any, unique_topic: Callable[[str], str], receiver: Receiver, tmp_path: Path
) -> None:
    alerts = unique_topic("alerts")
    dlq = alerts + ".dlq"
    bus = KafkaBus(BusConfig(kind="kafka", bootstrap=tansu.bootstrap, publish_timeout_s=15.0))
    # One partition: records are handled in publish order, which the restart check below relies on.
    bus.create_topics([alerts, dlq], num_partitions=1)
    metrics_port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")]),
        "VIGIL_BUS__KIND": "kafka",
        "VIGIL_BUS__BOOTSTRAP": tansu.bootstrap,
        "VIGIL_TOPICS__ALERTS": alerts,
        "VIGIL_METRICS_PORT": str(metrics_port),
        "VIGIL_NOTIFIER__CONSUMER_GROUP": unique_topic("notifier"),
        "VIGIL_NOTIFIER__WEBHOOKS": json.dumps([{"name": "ops", "url": receiver.url}]),
        "VIGIL_NOTIFIER__HMAC_SECRET": SECRET,
        "VIGIL_NOTIFIER__INITIAL_BACKOFF_S": "0.05",
        "VIGIL_NOTIFIER__MAX_BACKOFF_S": "0.2",
    }
    log = tmp_path / "notifier.log"
    for value in (alert("e-1"), alert("e-1"), b"\x0a\xff garbage", alert("reject-2"), alert("e-3")):
        bus.publish(alerts, value, key="k")
    bus.flush()
    notifier = Notifier(env, log)
    dead: list[Message] = []
    dlq_reader = bus.consumer([dlq], unique_topic("dlq-reader"), dead.append)
    try:
        wait_for(lambda: receiver.accepted == ["e-1", "e-3"], 90, f"deliveries; log:\n{log.read_text()}")
        wait_for(lambda: dlq_reader.poll(0.5) >= 0 and len(dead) >= 2, 60, "two dead letters")
        # Counters reach /metrics as the handler goes; the last alert was delivered, so all are in.
        delivered = 'vigil_notifier_alerts_total{outcome="delivered"}'
        wait_for(lambda: scrape(metrics_port).get(delivered) == 2, 10, "metrics")
        m = scrape(metrics_port)
        assert m['vigil_notifier_alerts_total{outcome="duplicate"}'] == 1
        assert m['vigil_notifier_alerts_total{outcome="malformed"}'] == 1
        assert m['vigil_notifier_alerts_total{outcome="dead_lettered"}'] == 1
        assert m['vigil_notifier_attempts_total{result="5xx",webhook="ops"}'] == 4
        assert m['vigil_notifier_attempts_total{result="4xx",webhook="ops"}'] == 1
        assert m['vigil_notifier_deliveries_total{outcome="failed",webhook="ops"}'] == 1
        assert m[f'vigil_bus_dead_lettered_total{{reason="poison",topic="{alerts}"}}'] == 2
        assert notifier.stop() == 0
        # A restart of the same group resumes after what was committed: only the new alert arrives.
        bus.publish(alerts, alert("e-4"), key="k")
        bus.flush()
        notifier = Notifier(env, log)
        wait_for(lambda: receiver.accepted[-1:] == ["e-4"], 90, f"delivery after restart; log:\n{log.read_text()}")
    finally:
        code = notifier.stop()
        dlq_reader.close()
        bus.close()
    assert code == 0
    assert receiver.bad_signatures == 0
    assert receiver.accepted == ["e-1", "e-3", "e-4"]
    # e-1: 503 (Retry-After), 503, 200; reject-2: 400 once (permanent, no retry); the duplicate of e-1: nothing.
    assert [r["attempt"] for r in receiver.requests if r["event_id"] == "e-1"] == ["1", "2", "3"]
    assert [r["attempt"] for r in receiver.requests if r["event_id"] == "reject-2"] == ["1"]
    errors = [d.headers["vigil-error"].decode() for d in dead]
    assert dead[0].value == b"\x0a\xff garbage" and "not a vigil.alert.v1.Alert" in errors[0]
    assert "reject-2 undeliverable to ops: HTTP 400 after 1 attempt" in errors[1]
    # The webhook URL carries a token and the secret signs requests: neither reaches the log.
    text = log.read_text()
    assert "do-not-log-me" not in text and SECRET not in text


def test_sigterm_during_back_off_leaves_the_alert_for_the_next_start(
    tansu: Any, unique_topic: Callable[[str], str], receiver: Receiver, tmp_path: Path
) -> None:
    """A receiver asking for five minutes does not hold a shutdown; the alert is neither lost nor dead-lettered."""
    alerts = unique_topic("alerts")
    bus = KafkaBus(BusConfig(kind="kafka", bootstrap=tansu.bootstrap, publish_timeout_s=15.0))
    bus.create_topics([alerts, alerts + ".dlq"], num_partitions=1)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "gen" / "python")]),
        "VIGIL_BUS__KIND": "kafka",
        "VIGIL_BUS__BOOTSTRAP": tansu.bootstrap,
        "VIGIL_TOPICS__ALERTS": alerts,
        "VIGIL_NOTIFIER__CONSUMER_GROUP": unique_topic("notifier"),
        "VIGIL_NOTIFIER__WEBHOOKS": json.dumps([{"name": "ops", "url": receiver.url}]),
        "VIGIL_NOTIFIER__HMAC_SECRET": SECRET,
    }
    log = tmp_path / "notifier.log"
    bus.publish(alerts, alert("wait-1"), key="k")
    bus.flush()
    dead: list[Message] = []
    try:
        notifier = Notifier(env, log)
        try:
            wait_for(lambda: len(receiver.requests) == 1, 60, f"the first attempt; log:\n{log.read_text()}")
        finally:
            assert notifier.stop() == 0
        # The back-off ended with the stop: the consumer thread was joined, not abandoned.
        assert "did not stop within" not in log.read_text()
        receiver.hold = False
        notifier = Notifier(env, log)
        try:
            wait_for(lambda: receiver.accepted == ["wait-1"], 60, f"delivery after restart; log:\n{log.read_text()}")
        finally:
            assert notifier.stop() == 0
        reader = bus.consumer([alerts + ".dlq"], unique_topic("dlq-reader"), dead.append)
        reader.poll(3.0)
        reader.close()
    finally:
        bus.close()
    assert [r["attempt"] for r in receiver.requests] == ["1", "1"]
    assert dead == [] and "dead-lettering" not in log.read_text()
