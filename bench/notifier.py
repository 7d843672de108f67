"""The notifier's delivery rate: alerts through its real stage (consumer, signing, urllib) to local receivers.

Each case publishes `--alerts` alerts on an in-process bus at once and times the stage until every
receiver accepted every alert: alerts/s, and per alert the time from publish to the last webhook's
2xx (p50/p95; queueing included, since they are published together). Cases: one webhook; two
webhooks (side by side); two where one answers 503 to a share of first attempts (retried after the
back-off). Receivers are ThreadingHTTPServer on 127.0.0.1 that check every signature.
Usage: python -m bench.notifier [--alerts 300]
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bench.harness import emit, machine_info, percentiles
from services.common.bus.inprocess import InProcessBus
from services.common.config import TopicsConfig
from services.notifier.bootstrap import build
from services.notifier.config import NotifierConfig, NotifierSettings
from services.notifier.delivery import verify
from vigil.alert.v1 import alert_pb2

SECRET = "bench-secret-0123456789abcdef"


class Receiver:
    """A webhook that accepts every alert, or answers 503 to `fail_share` of first attempts."""

    def __init__(self, fail_share: float, seed: int) -> None:
        self.accepted: dict[str, float] = {}
        self.bad_signatures = 0
        self.lock = threading.Lock()
        rng = random.Random(seed)
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify(
                    SECRET.encode(), self.headers["X-Vigil-Timestamp"], body, self.headers["X-Vigil-Signature"],
                    time.time(), 300,
                )  # fmt: skip
                with receiver.lock:
                    if not ok:
                        receiver.bad_signatures += 1
                    first = self.headers["X-Vigil-Attempt"] == "1"
                    status = 503 if ok and first and rng.random() < fail_share else (200 if ok else 401)
                    if status == 200:
                        receiver.accepted.setdefault(json.loads(body)["event_id"], time.monotonic())
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        """Where the notifier posts."""
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def close(self) -> None:
        """Stop serving."""
        self.server.shutdown()
        self.server.server_close()


def run(case: str, fail_shares: list[float], n_alerts: int, seed: int) -> dict[str, Any]:
    """Publish `n_alerts` alerts and time the notifier stage until every receiver has every one."""
    receivers = [Receiver(share, seed + i) for i, share in enumerate(fail_shares)]
    topics = TopicsConfig()
    settings = NotifierSettings(
        topics=topics,
        notifier=NotifierConfig.model_validate(
            {
                "webhooks": [{"name": f"hook{i}", "url": r.url} for i, r in enumerate(receivers)],
                "hmac_secret": SECRET,
                "initial_backoff_s": 0.05,
                "max_backoff_s": 0.2,
            }
        ),
    )
    bus = InProcessBus()
    stage = build(settings, bus)
    event = json.dumps({"event_type": "accident", "count": 2, "severity": "high", "summary": "two cars collide"})
    published: dict[str, float] = {}
    t0 = time.monotonic()
    for i in range(n_alerts):
        alert = alert_pb2.Alert(event_id=f"bench-{i:05d}", camera_id="bench", level=3, score=0.9, event_json=event)
        published[alert.event_id] = time.monotonic()
        bus.publish(topics.alerts, alert.SerializeToString(), key=alert.event_id)
    stop = threading.Event()
    stage.start(stop)
    try:
        while any(len(r.accepted) < n_alerts for r in receivers):
            time.sleep(0.01)
        wall = time.monotonic() - t0
    finally:
        stop.set()
        stage.close()
        for r in receivers:
            r.close()
    latency_ms = [1e3 * (max(r.accepted[e] for r in receivers) - t) for e, t in published.items()]
    p50, p95 = percentiles(latency_ms)
    return {
        "bench": "notifier",
        "case": case,
        "webhooks": len(receivers),
        "first_attempt_503_share": fail_shares,
        "alerts": n_alerts,
        "wall_s": round(wall, 2),
        "alerts_per_s": round(n_alerts / wall, 1),
        "publish_to_delivered_ms_p50": round(p50, 1),
        "publish_to_delivered_ms_p95": round(p95, 1),
        "bad_signatures": sum(r.bad_signatures for r in receivers),
        **machine_info(),
    }


def main(argv: list[str] | None = None) -> int:
    """Every case, one JSON line each."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alerts", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    # The flaky case logs every 503 it retries; the figures are the output here.
    logging.basicConfig(level=logging.ERROR)
    for case, shares in (("one webhook", [0.0]), ("two webhooks", [0.0, 0.0]), ("two, one flaky", [0.0, 0.1])):
        emit(run(case, shares, args.alerts, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
