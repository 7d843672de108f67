"""Prometheus metrics over HTTP, named vigil_<service>_<thing>_<unit>."""

from __future__ import annotations

import urllib.request

import numpy as np

from services.common.bus.inprocess import InProcessBus
from services.common.frames import RawFrame
from services.common.metrics import start_metrics_server
from services.gating.bootstrap import build_gater
from services.gating.config import GatingConfig
from services.gating.consumer import FrameHandler
from services.ingest.ingest import encode_frame
from tests.fixtures.tcp_proxy import free_port


def test_gating_metrics_are_scraped() -> None:
    port = free_port()
    start_metrics_server(port)
    bus = InProcessBus()
    handler = FrameHandler(build_gater(GatingConfig()), bus, "events")
    frame = encode_frame(RawFrame(0, 0.0, np.zeros((64, 64, 3), np.uint8)), "cam", "test", 90, 0)
    bus.publish("frames", frame.SerializeToString())
    consumer = bus.consumer(["frames"], "g", handler)
    consumer.poll(1.0)
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert "vigil_gating_frames_total" in body
    assert 'vigil_gating_stage_seconds_bucket{le="0.001",stage="detect"}' in body
    # Per camera: the dashboard's frames/s per camera and the "camera silent" rule.
    # (Other tests in the session may have counted frames of "cam" before: the series, not its value.)
    assert 'vigil_gating_camera_frames_total{camera="cam"} ' in body
