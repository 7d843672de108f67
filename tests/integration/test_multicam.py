"""Several cameras in one `vigil run`: every camera's frames reach gating and the memory, a failing one is reported."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.cli import main
from services.common.bus.inprocess import InProcessBus
from services.common.bus.kafka import BrokerUnavailable, PublishError
from services.common.frames import RawFrame
from services.common.runtime import StageFailed
from services.embedded import CameraFeed, EdgeSettings, EmbeddedPipeline
from services.ingest.source import ImageSequenceSource
from services.memory.config import MemoryConfig
from services.memory.frame_store import camera_dir_name
from tests.fixtures.media import shared
from vigil.memory.v1 import memory_pb2

N_IMAGES = 4


def _frames(tmp_path: Path, clip: str) -> Path:
    """Copies of the first real frames of one accident clip (the shared data stays untouched)."""
    folder = tmp_path / clip
    folder.mkdir()
    for image in sorted(shared("images", "cctv_accidents", "frames", clip).glob("*.jpg"))[:N_IMAGES]:
        shutil.copy(image, folder / image.name)
    return folder


class BreaksMidRun(ImageSequenceSource):
    """A camera whose source raises after `good` frames, as a decoder or a device that dies would."""

    def __init__(self, source: str, good: int) -> None:
        super().__init__(source)
        self.good = good

    def frames(self) -> Iterator[RawFrame]:
        """The first `good` frames, then an error."""
        for i, frame in enumerate(super().frames()):
            if i == self.good:
                raise OSError("camera unplugged")
            yield frame


def test_every_camera_reaches_gating_and_memory_and_a_failing_one_is_reported(tmp_path: Path) -> None:
    a, b = _frames(tmp_path, "test13"), _frames(tmp_path, "test12")
    mem = tmp_path / "memory"
    settings = EdgeSettings.model_validate(
        {
            "memory": {
                "store": {"type": "qdrant-edge", "path": str(mem / "qdrant")},
                "frames": {"path": str(mem / "frames")},
            }
        }
    )
    bus = InProcessBus()
    pipeline = EmbeddedPipeline(settings, bus)
    feeds = [
        CameraFeed("north", ImageSequenceSource(str(a))),
        CameraFeed("south", ImageSequenceSource(str(b))),
        CameraFeed("broken", BreaksMidRun(str(a), good=2)),
    ]
    summary = pipeline.run(feeds, drain_timeout_s=60)
    reports = {c.camera_id: c for c in summary.cameras}
    assert not reports["north"].failed and not reports["south"].failed
    assert reports["broken"].failed and "OSError: camera unplugged" in reports["broken"].error
    assert (reports["north"].frames, reports["south"].frames, reports["broken"].frames) == (N_IMAGES, N_IMAGES, 2)
    assert summary.frames_published == 2 * N_IMAGES + 2
    # Gating saw each camera's frames under its own id.
    gated = pipeline.gating.handler.cameras
    assert {cam: gated[cam].frames for cam in reports} == {cam: r.frames for cam, r in reports.items()}
    # The memory stored every frame, each under its camera, and indexed clusters of every camera.
    assert pipeline.memory is not None and pipeline.memory.memory.writer.frames_stored == summary.frames_published
    for cam in reports:
        assert any((mem / "frames").rglob(f"*{camera_dir_name(cam)}*")), cam
    entries = [memory_pb2.IndexEntry.FromString(m.value) for m in bus.messages(settings.topics.index)]
    assert {e.camera_id for e in entries} == set(reports)
    broken = summary.as_dict()["cameras"][2]
    assert broken["failed"] is True and broken["corrupt_frames"] == 0


def test_vigil_run_takes_several_videos_and_refuses_one_id_twice(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a, b = _frames(tmp_path, "test13"), _frames(tmp_path, "test12")
    args = ["run", "--video", f"lobby={a}", "--video", str(b), "--no-memory", "--json", "--no-progress"]
    assert main(args) == 0
    summary = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()][-1]
    assert summary["source"] == "2 cameras" and summary["frames"] == 2 * N_IMAGES
    assert [(c["camera_id"], c["frames"], c["failed"]) for c in summary["cameras"]] == [
        ("lobby", N_IMAGES, False),
        ("test12", N_IMAGES, False),
    ]
    assert main(["run", "--video", f"lobby={a}", "--video", f"lobby={b}", "--no-memory"]) == 2
    assert "vigil run: two sources have the camera id 'lobby'" in capsys.readouterr().err
    # A source that cannot be opened is bad input too, named by its camera.
    assert main(["run", "--video", f"lobby={a}", "--video", f"yard={tmp_path / 'none.mp4'}", "--no-memory"]) == 2
    assert "vigil run: camera yard: video file not found" in capsys.readouterr().err


class BrokerGoesAway(InProcessBus):
    """A bus whose broker stops answering after `good` frames (as KafkaBus reports it: BrokerUnavailable)."""

    def __init__(self, frames_topic: str, good: int) -> None:
        super().__init__()
        self._frames_topic, self._left = frames_topic, good

    def publish(self, topic: str, value: bytes, **kwargs: Any) -> None:
        if topic == self._frames_topic:
            if self._left <= 0:
                raise BrokerUnavailable("no broker at 127.0.0.1:9 within 1s")
            self._left -= 1
        super().publish(topic, value, **kwargs)


def test_a_broker_that_goes_away_stops_the_run_instead_of_failing_one_camera(tmp_path: Path) -> None:
    """A bus error is every camera's: run() raises it, so `vigil run` exits 3 (rerun to resume)."""
    a, b = _frames(tmp_path, "test13"), _frames(tmp_path, "test12")
    settings = EdgeSettings()
    # Ingest waits this long for the broker to come back (services/ingest/outbox.py), then gives up.
    settings.ingest = settings.ingest.model_copy(update={"broker_wait_s": 1.0})
    pipeline = EmbeddedPipeline(settings, BrokerGoesAway(settings.topics.frames, good=3), with_memory=False)
    feeds = [CameraFeed("north", ImageSequenceSource(str(a))), CameraFeed("south", ImageSequenceSource(str(b)))]
    with pytest.raises(BrokerUnavailable, match="no broker"):
        pipeline.run(feeds, drain_timeout_s=30)


class CloudRefuses(InProcessBus):
    """A bus whose cloud side refuses every alert for good (not an outage: waiting will not cure it)."""

    def __init__(self, alerts_topic: str) -> None:
        super().__init__()
        self._alerts = alerts_topic

    def publish(self, topic: str, value: bytes, **kwargs: Any) -> None:
        if topic == self._alerts:
            raise PublishError(f"publish to {topic!r} refused: MessageSizeTooLargeError")
        super().publish(topic, value, **kwargs)


def test_a_stage_whose_thread_dies_fails_the_run(tmp_path: Path) -> None:
    """Issue 13: the uplink's interval thread died and the process went on as if nothing happened."""
    settings = EdgeSettings()
    pipeline = EmbeddedPipeline(settings, CloudRefuses(settings.topics.alerts), with_memory=False)
    # test2 opens an incident within its first frames (test13's first four open none).
    feeds = [CameraFeed("north", ImageSequenceSource(str(_frames(tmp_path, "test2"))))]
    with pytest.raises(StageFailed, match="uplink-intervals died: PublishError"):
        pipeline.run(feeds, drain_timeout_s=60)


class MemoryDies(InProcessBus):
    """A bus on which the memory's frames consumer dies at once (its thread raises), as a broken disk would."""

    def consumer(self, topics: Any, group: str, handler: Any, **kwargs: Any) -> Any:
        consumer = super().consumer(topics, group, handler, **kwargs)
        if group == MemoryConfig().frames_consumer_group:

            def run(stop: Any, idle_timeout_s: float = 0.2) -> None:
                raise RuntimeError("the memory's disk controller is gone")

            consumer.run = run  # type: ignore[method-assign]
        return consumer


def test_a_memory_that_dies_costs_the_memory_not_the_alerts(tmp_path: Path) -> None:
    """Issue 13: in embedded mode the memory's failures are isolated from the alert path."""
    mem = tmp_path / "memory"
    settings = EdgeSettings.model_validate(
        {
            "memory": {
                "store": {"type": "qdrant-edge", "path": str(mem / "qdrant")},
                "frames": {"path": str(mem / "frames")},
            }
        }
    )
    pipeline = EmbeddedPipeline(settings, MemoryDies())
    feeds = [CameraFeed("north", ImageSequenceSource(str(_frames(tmp_path, "test2"))))]
    summary = pipeline.run(feeds, drain_timeout_s=60)
    assert summary.alerts == summary.events > 0
    assert "memory-consumer-0 died: RuntimeError: the memory's disk controller is gone" in summary.memory_error
    assert summary.memory_points is None
