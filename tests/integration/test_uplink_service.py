"""The uplink service between two real Tansu brokers, over an emulated trace-shaped link."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest

from services.common.bus.kafka import KafkaBus
from services.common.config import BusConfig
from services.uplink.scheduler import PendingEvent
from tests.fixtures.tansu import TansuBroker
from vigil.alert.v1 import alert_pb2
from vigil.event.v1 import event_pb2

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BETA = 0.5


@pytest.fixture(scope="module")
def cloud_broker():
    broker = TansuBroker().start()
    yield broker
    broker.close()


def make_event(i: int, level: int, score: float, created_ns: int, roi_bytes: int = 1500) -> event_pb2.Event:
    js = json.dumps({"event_type": "fall", "i": i, "pad": "x" * 200}).encode()
    roi, box = b"r" * roi_bytes, b"b" * 30_000
    return event_pb2.Event(
        event_id=str(uuid.UUID(int=i + 1)),
        camera_id="cam-u",
        frame_seq=i,
        created_time_ns=created_ns,
        level=level,
        score=score,
        json=event_pb2.EvidenceUnit(kind=event_pb2.EVIDENCE_KIND_JSON, size_bytes=len(js), payload=js),
        roi=event_pb2.EvidenceUnit(kind=event_pb2.EVIDENCE_KIND_ROI, size_bytes=len(roi), payload=roi),
        box=event_pb2.EvidenceUnit(kind=event_pb2.EVIDENCE_KIND_BOX, size_bytes=len(box), payload=box),
    )


def priority(e: event_pb2.Event) -> float:
    return PendingEvent(e.event_id, 0, e.level, e.score, 1, 1, 1).priority(BETA)


class Uplink:
    """`python -m services.uplink` as a process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self._env, self._log = env, log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self._log.open("ab") as f:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "services.uplink"], cwd=ROOT, env=self._env, stdout=f, stderr=subprocess.STDOUT
            )

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


def read_cloud(bus: KafkaBus, topic: str, group: str, until, timeout_s: float) -> list:
    got: list = []
    consumer = bus.consumer([topic], group, lambda m: got.append(m))
    deadline = time.monotonic() + timeout_s
    while not until(got) and time.monotonic() < deadline:
        consumer.poll(0.5)
    consumer.close()
    return got


def test_burst_over_a_slow_link_with_a_restart(tansu, cloud_broker, tmp_path, unique_topic) -> None:
    # A 24 kbit/s link (3000 B/s, Pensieve format): a 40-event burst needs several seconds.
    trace = tmp_path / "slow.trace"
    trace.write_text("".join(f"{t} 0.024\n" for t in range(600)))
    topics = {k: unique_topic(k) for k in ("events", "alerts", "evidence")}
    env = {
        **os.environ,
        "VIGIL_BUS__KIND": "kafka",
        "VIGIL_BUS__BOOTSTRAP": tansu.bootstrap,
        "VIGIL_TOPICS__EVENTS": topics["events"],
        "VIGIL_TOPICS__ALERTS": topics["alerts"],
        "VIGIL_TOPICS__EVIDENCE": topics["evidence"],
        "VIGIL_UPLINK__CONSUMER_GROUP": unique_topic("uplink"),
        "VIGIL_UPLINK__CLOUD_BUS": json.dumps({"kind": "kafka", "bootstrap": cloud_broker.bootstrap}),
        "VIGIL_UPLINK__EMULATED_LINK_TRACE": str(trace),
        "VIGIL_UPLINK__PRIOR_BANDWIDTH_BPS": "3000",
        "VIGIL_UPLINK__METHOD": "dat",
        # Half-second intervals keep a lone event's wait for the boundary well inside D_vis = 1.5 s.
        "VIGIL_UPLINK__INTERVAL_S": "0.5",
        "VIGIL_UPLINK__STATE_DIR": str(tmp_path / "state"),
    }
    uplink = Uplink(env, tmp_path / "uplink.log")
    edge = KafkaBus(BusConfig(kind="kafka", bootstrap=tansu.bootstrap))
    cloud = KafkaBus(BusConfig(kind="kafka", bootstrap=cloud_broker.bootstrap))
    try:
        # The whole burst is in the queue (the events topic) before the uplink reads it, so every
        # interval chooses among the same events: the send order is the phi order.
        now = time.time_ns()
        levels = [(i % 2, 0.1 + 0.8 * ((i * 7) % 40) / 40) for i in range(40)]
        events = [make_event(i, lvl, sc if lvl == 0 else 0.5 + sc / 2, now) for i, (lvl, sc) in enumerate(levels)]
        for e in events:
            edge.publish(topics["events"], e.SerializeToString(), key=e.camera_id)
        edge.flush()
        uplink.start()
        first = read_cloud(cloud, topics["alerts"], unique_topic("r"), lambda g: len(g) >= 5, 60)
        assert len(first) >= 5, (tmp_path / "uplink.log").read_text()
        assert uplink.stop() == 0, (tmp_path / "uplink.log").read_text()  # mid-burst
        restart_ns = time.time_ns()
        uplink.start()
        alerts = read_cloud(cloud, topics["alerts"], unique_topic("r"), lambda g: len({m.key for m in g}) >= 40, 90)
        # The burst used every byte for alerts, so DAT sent no evidence; a lone event on the idle
        # link gets its small ROI within the deadline.
        lone_ns = time.time_ns()
        lone = make_event(99, 1, 0.9, lone_ns, roi_bytes=200)
        edge.publish(topics["events"], lone.SerializeToString(), key=lone.camera_id)
        edge.flush()
        evidence = read_cloud(cloud, topics["evidence"], unique_topic("r"), lambda g: len(g) >= 1, 30)
    finally:
        if uplink.proc and uplink.proc.poll() is None:
            uplink.stop()
        edge.close()
        cloud.close()
    log = (tmp_path / "uplink.log").read_text()
    parsed = [alert_pb2.Alert.FromString(m.value) for m in alerts]
    counts = Counter(a.event_id for a in parsed)
    assert set(counts) >= {e.event_id for e in events}, log  # nothing lost
    assert max(counts.values()) == 1, counts  # nothing twice, across the restart
    # Every interval sends the best remaining phi = S / c_json first (DAT Algorithm 1): within each
    # process lifetime, alerts leave in non-increasing phi.
    phi = {e.event_id: priority(e) / e.json.size_bytes for e in events}
    by_send = sorted((a for a in parsed if a.event_id in phi), key=lambda a: a.sent_time_ns)
    for lifetime in (
        [a for a in by_send if a.sent_time_ns < restart_ns],
        [a for a in by_send if a.sent_time_ns >= restart_ns],
    ):
        order = [phi[a.event_id] for a in lifetime]
        assert order and order == sorted(order, reverse=True), log
    assert (by_send[-1].sent_time_ns - by_send[0].sent_time_ns) / 1e9 > 2, "the burst should need several intervals"
    # Evidence only within its deadline, counted from the event's arrival to the cloud broker's
    # record timestamp (the emulated link publishes when the last byte has crossed it).
    got = [alert_pb2.Evidence.FromString(m.value) for m in evidence]
    assert [e.event_id for e in got] == [lone.event_id], log
    assert all(m.timestamp_ms * 1e6 - lone_ns <= 1.5e9 for m in evidence)
