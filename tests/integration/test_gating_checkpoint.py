"""The gating handler's incident checkpoint and its all-or-nothing batches, with the real detectors."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.common.bus import Message
from services.common.bus.inprocess import InProcessBus
from services.common.bus.kafka import BrokerUnavailable
from services.gating.bootstrap import build_gater
from services.gating.checkpoint import IncidentStore
from services.gating.consumer import FrameHandler
from tests.integration.test_gating_restart import clip_frames, gating_config
from vigil.event.v1 import event_pb2
from vigil.media.v1 import frame_pb2

pytestmark = pytest.mark.slow


class FlushFails(InProcessBus):
    """An in-process bus whose next `failures` flushes report the broker away, as KafkaBus does."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def flush(self, timeout_s: float | None = None) -> None:
        if self.failures:
            self.failures -= 1
            raise BrokerUnavailable("2 records not acknowledged within 5.0s")


def as_message(frame: frame_pb2.Frame) -> Message:
    # One partition, in order: the offset is the seq.
    return Message("frames", 0, frame.seq, frame.camera_id.encode(), frame.SerializeToString())


def event_ids(bus: InProcessBus) -> list[str]:
    return [event_pb2.Event.FromString(m.value).event_id for m in bus.messages("events")]


@pytest.fixture(scope="module")
def frames() -> list[frame_pb2.Frame]:
    # The first clip: frame 2 opens an incident that frames 3-8 continue (measured in test_gating_restart).
    return clip_frames()[:9]


def test_failed_flush_undoes_the_incident_so_the_retry_alerts_it(frames: list[frame_pb2.Frame]) -> None:
    """An incident marked alerted whose event was never delivered would never be alerted: it is rolled back."""
    bus = FlushFails()
    gater = build_gater(gating_config())
    handler = FrameHandler(gater, bus, "events")
    for f in frames[:2]:
        handler(as_message(f))
    assert event_ids(bus) == []
    bus.failures = 1
    with pytest.raises(BrokerUnavailable):
        handler(as_message(frames[2]))
    assert gater.incident_state(frames[2].camera_id) == []
    handler(as_message(frames[2]))  # the consumer's retry
    ids = event_ids(bus)
    # Published twice (the first copy may or may not have reached the broker), one id: one alert.
    assert len(ids) == 2 and len(set(ids)) == 1
    assert [i["event_id"] for i in gater.incident_state(frames[2].camera_id)] == [ids[0]]


def test_restart_restores_incidents_and_skips_frames_already_gated(
    frames: list[frame_pb2.Frame], tmp_path: Path
) -> None:
    store = IncidentStore(tmp_path / "state")
    bus = InProcessBus()
    first = FrameHandler(build_gater(gating_config()), bus, "events", store=store)
    for f in frames[:5]:
        first(as_message(f))
    assert len(event_ids(bus)) == 1
    # A new process: its committed offset is behind the checkpoint, so frames 3-4 come again.
    gater = build_gater(gating_config())
    second = FrameHandler(gater, bus, "events", store=store)
    for f in frames[3:]:
        second(as_message(f))
    assert second.replayed == 2 and second.frames == len(frames) - 5
    assert len(event_ids(bus)) == 1, "the restarted gater alerted the incident a second time"
    assert gater.incident_state(frames[0].camera_id)[0]["event_id"] == event_ids(bus)[0]
