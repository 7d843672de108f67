"""ingest -> gating -> uplink -> alerts, each service its own process, through the real Kafka-protocol broker."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from services.common.bus.kafka import KafkaBus
from services.common.config import BusConfig
from services.gating.bootstrap import build_gater
from services.gating.config import GatingConfig
from services.gating.consumer import decode_image
from services.ingest.config import IngestConfig
from services.ingest.ingest import encode_frame
from services.ingest.source import VideoSource
from services.models.structurers.base import validate_event
from tests.fixtures.media import shared
from vigil.alert.v1 import alert_pb2

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
FPS = 10.0


def _expected_frame_seqs(video: Path) -> list[int]:
    """The same code in-process on the same JPEG frames: which frames open incidents (the services must agree)."""
    gater = build_gater(GatingConfig())
    src = VideoSource(str(video), fps=FPS)
    seqs = []
    for f in src.frames():
        cfg = IngestConfig()
        image = decode_image(encode_frame(f, "cam-e2e", str(video), cfg.jpeg_quality, cfg.max_side).jpeg)
        if gater.process("cam-e2e", f.index, f.pts_s, 0, image).event:
            seqs.append(f.index)
    src.close()
    return seqs


def test_alert_path_across_processes(tansu, tmp_path) -> None:
    video = shared("videos", "static_camera", "accident_cctv_test1.mp4")
    expected = _expected_frame_seqs(video)
    assert expected, "the detector should trigger on this clip at tau_g=0.25"
    suffix = uuid.uuid4().hex[:8]
    env = {
        **os.environ,
        "VIGIL_BUS__KIND": "kafka",
        "VIGIL_BUS__BOOTSTRAP": tansu.bootstrap,
        "VIGIL_TOPICS__FRAMES": f"e2e.frames.{suffix}",
        "VIGIL_TOPICS__EVENTS": f"e2e.events.{suffix}",
        "VIGIL_TOPICS__ALERTS": f"e2e.alerts.{suffix}",
        "VIGIL_TOPICS__EVIDENCE": f"e2e.evidence.{suffix}",
        "VIGIL_GATING__CONSUMER_GROUP": f"e2e-gating-{suffix}",
        "VIGIL_UPLINK__CONSUMER_GROUP": f"e2e-uplink-{suffix}",
        "VIGIL_GRPC_ADDRESS": "127.0.0.1:0",
        "VIGIL_INGEST__SOURCE": str(video),
        "VIGIL_INGEST__CAMERA_ID": "cam-e2e",
        "VIGIL_INGEST__FPS": str(FPS),
    }
    # Topics exist before any consumer subscribes: a group that joins a topic not yet created can wait out
    # a whole metadata refresh and rebalance (seen once in four runs here), which this test is not about.
    setup = KafkaBus(BusConfig(kind="kafka", bootstrap=tansu.bootstrap))
    setup.create_topics([env[f"VIGIL_TOPICS__{t}"] for t in ("FRAMES", "EVENTS", "ALERTS", "EVIDENCE")])
    setup.close()
    logs = {name: (tmp_path / f"{name}.log").open("wb") for name in ("gating", "uplink", "ingest")}
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            cwd=ROOT,
            env=env,
            stdout=logs[name],
            stderr=subprocess.STDOUT,
        )
        for name in ("gating", "uplink")
    ]
    try:
        ingest = subprocess.run(
            [sys.executable, "-m", "services.ingest"],
            cwd=ROOT,
            env=env,
            stdout=logs["ingest"],
            stderr=subprocess.STDOUT,
            timeout=120,
        )
        assert ingest.returncode == 0, (tmp_path / "ingest.log").read_text()

        bus = KafkaBus(BusConfig(kind="kafka", bootstrap=tansu.bootstrap))
        alerts: dict[str, alert_pb2.Alert] = {}

        def on_alert(msg) -> None:
            a = alert_pb2.Alert.FromString(msg.value)
            alerts[a.event_id] = a

        consumer = bus.consumer([env["VIGIL_TOPICS__ALERTS"]], f"e2e-reader-{suffix}", on_alert)
        deadline = time.monotonic() + 120
        while len(alerts) < len(expected) and time.monotonic() < deadline:
            consumer.poll(1.0)
            for p in procs:
                assert p.poll() is None, f"a service died: {[f.read_text() for f in tmp_path.glob('*.log')]}"
        consumer.close()
        bus.close()
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
        for f in logs.values():
            f.close()
    assert sorted(a.frame_seq for a in alerts.values()) == expected, (tmp_path / "gating.log").read_text()
    for a in alerts.values():
        event = validate_event(a.event_json, gamma=0.5)
        assert a.level == event["level"] and a.producer.kind == "detector-prior"
        assert a.camera_id == "cam-e2e" and a.box_bytes > a.roi_bytes > 0
        # The default traffic profile: the accident detector gates, COCO adds the vehicles around it.
        assert event["event_type"] == "accident" and event["objects"][0]["label"] == "accident"
        assert "in view:" in event["summary"]
    # SIGTERM stops the services cleanly.
    assert all(p.returncode == 0 for p in procs), [f.read_text() for f in tmp_path.glob("*.log")]
