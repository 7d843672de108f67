"""One process, every edge stage: ingest -> gating -> uplink (scheduled) -> alert sink, and
ingest -> indexing -> memory (Venus) when a memory is given.

This is `vigil run`. The stages are the same handlers the distributed services
run, connected by a bus: the in-process bus by default, or Kafka when a
bootstrap is given (then the stages' consumer groups are the services' own,
and the alert sink only reports the alerts this run produced).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from services.common.bus import Bus, Message
from services.common.config import TopicsConfig
from services.common.metrics import LatencyRecorder
from services.gating.consumer import FrameHandler
from services.gating.pipeline import FrameGater
from services.indexing.consumer import IndexingHandler
from services.ingest.ingest import IngestResult, run_ingest
from services.ingest.source import VideoSource
from services.memory.service import Memory
from services.uplink.bootstrap import ScheduledUplink
from services.uplink.config import UplinkConfig
from vigil.alert.v1 import alert_pb2

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What `vigil run` reports at the end."""

    source: str
    frames_read: int = 0
    frames_published: int = 0
    corrupt_frames: int = 0
    ended_early: bool = False
    frames_gated: int = 0
    detector_runs: int = 0
    mllm_calls: int = 0
    confident_events: int = 0
    events: int = 0
    invalid_model_outputs: int = 0
    alerts: int = 0
    wall_s: float = 0.0
    structurer: str = ""
    detector: str = ""
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    # Venus memory (None when the run built no memory).
    index_entries: int | None = None
    memory_points: int | None = None
    memory_path: str = ""

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready summary with the derived shares."""
        n = max(self.frames_published, 1)
        return {
            "type": "summary",
            "source": self.source,
            "frames_read": self.frames_read,
            "frames": self.frames_published,
            "corrupt_frames": self.corrupt_frames,
            "ended_early": self.ended_early,
            "frames_gated": self.frames_gated,
            "gated_share": round(self.frames_gated / n, 4),
            "detector_runs": self.detector_runs,
            "motion_skip_rate": round(1 - self.detector_runs / n, 4) if self.frames_published else 0.0,
            "mllm_calls": self.mllm_calls,
            "mllm_load": round(self.mllm_calls / n, 4),
            "confident_events": self.confident_events,
            "events": self.events,
            "invalid_model_outputs": self.invalid_model_outputs,
            "alerts": self.alerts,
            "wall_s": round(self.wall_s, 2),
            "fps": round(self.frames_published / self.wall_s, 2) if self.wall_s else 0.0,
            "detector": self.detector,
            "structurer": self.structurer,
            "latency_ms": self.latency_ms,
            "index_entries": self.index_entries,
            "memory_points": self.memory_points,
            "memory_path": self.memory_path,
        }


class _RunTracker:
    """Progress of this run: frames gated and events alerted (completion ignores older traffic)."""

    def __init__(self) -> None:
        self.started_ns = time.time_ns()
        self.frames_seen: set[tuple[int, int]] = set()
        self.alerted: set[str] = set()
        self.cond = threading.Condition()


class EmbeddedPipeline:
    """Wires the stages on one bus and runs a source to its end."""

    def __init__(
        self,
        bus: Bus,
        gater: FrameGater,
        topics: TopicsConfig,
        *,
        camera_id: str = "cam0",
        group_prefix: str = "vigil",
        on_alert: Callable[[alert_pb2.Alert, float], None] | None = None,
        uplink: UplinkConfig | None = None,
        indexing: IndexingHandler | None = None,
        memory: Memory | None = None,
    ) -> None:
        self.bus = bus
        self.uplink_config = uplink or UplinkConfig()
        self.gater = gater
        self.topics = topics
        self.camera_id = camera_id
        self.latency = LatencyRecorder()
        self._group_prefix = group_prefix
        self._on_alert = on_alert
        if (indexing is None) != (memory is None):
            raise ValueError("indexing and memory go together: pass both or neither")
        self.indexing = indexing
        self.memory = memory

    def run(
        self,
        source: VideoSource,
        *,
        jpeg_quality: int = 90,
        max_side: int = 1280,
        realtime: bool = False,
        on_frame: Callable[[int], None] | None = None,
        drain_timeout_s: float = 120.0,
        max_inflight: int = 2,
    ) -> RunSummary:
        """Ingest the whole source, wait until every frame is gated and every event alerted, summarise.

        A file decodes far faster than the detector runs; ingest waits while more than
        `max_inflight` frames are ungated, as a camera's bounded buffer would, so the
        latencies measure processing rather than an ever-growing backlog (0 = no limit).
        """
        t0 = time.monotonic()
        tracker = _RunTracker()
        frame_handler = FrameHandler(self.gater, self.bus, self.topics.events, self.latency)
        uplink_cfg = self.uplink_config.model_copy(update={"consumer_group": f"{self._group_prefix}-uplink"})
        uplink = ScheduledUplink(self.bus, self.bus, self.topics, uplink_cfg)

        def on_frame_msg(msg: Message) -> None:
            try:
                frame_handler(msg)
            finally:
                # A frame counts as done once handled or given up on (dead-lettered after retries).
                with tracker.cond:
                    tracker.frames_seen.add((msg.partition, msg.offset))
                    tracker.cond.notify_all()

        def on_alert_msg(msg: Message) -> None:
            alert = alert_pb2.Alert.FromString(msg.value)
            with tracker.cond:
                # Only this run's events: a shared Kafka topic may hold older alerts.
                mine = alert.event_id in frame_handler.event_ids and alert.event_id not in tracker.alerted
                if mine:
                    tracker.alerted.add(alert.event_id)
                    tracker.cond.notify_all()
            if mine:
                self.latency.record("uplink_queue", (alert.sent_time_ns - alert.created_time_ns) / 1e6)
                delivered_ms = (time.time_ns() - alert.capture_time_ns) / 1e6
                self.latency.record("frame_to_delivered", delivered_ms)
                if self._on_alert is not None:
                    self._on_alert(alert, delivered_ms)

        published = [0]

        def throttled(index: int) -> None:
            published[0] += 1
            if max_inflight:
                with tracker.cond:
                    tracker.cond.wait_for(
                        lambda: published[0] - len(tracker.frames_seen) <= max_inflight, timeout=drain_timeout_s
                    )
            if on_frame is not None:
                on_frame(index)

        p = self._group_prefix
        dlq = self.topics.dead_letter
        consumers = [
            self.bus.consumer(
                [self.topics.frames], f"{p}-gating", on_frame_msg, dead_letter_topic=dlq(self.topics.frames)
            ),
            self.bus.consumer([self.topics.alerts], f"{p}-run-sink-{tracker.started_ns}", on_alert_msg),
        ]
        if self.indexing is not None and self.memory is not None:
            index_consumer = self.bus.consumer(
                [self.topics.frames],
                f"{p}-indexing",
                self.indexing,
                dead_letter_topic=dlq(self.topics.frames),
                manual_ack=True,
            )
            self.indexing.ack = index_consumer.ack
            consumers += [
                index_consumer,
                self.bus.consumer(
                    [self.topics.frames],
                    f"{p}-memory-frames",
                    self.memory.writer.on_frame,
                    dead_letter_topic=dlq(self.topics.frames),
                ),
                self.bus.consumer(
                    [self.topics.index],
                    f"{p}-memory-index",
                    self.memory.writer.on_index_entry,
                    dead_letter_topic=dlq(self.topics.index),
                ),
            ]
        index_entries0 = self.indexing.entries_published if self.indexing else 0
        memory_before = (
            (self.indexing.frames + self.indexing.corrupt, self.memory.writer.frames_stored)
            if self.indexing is not None and self.memory is not None
            else (0, 0)
        )
        stop = threading.Event()
        threads = [
            threading.Thread(target=c.run, args=(stop,), daemon=True, name=f"stage-{i}")
            for i, c in enumerate(consumers)
        ]
        for t in threads:
            t.start()
        uplink.start(stop)
        result: IngestResult | None = None
        try:
            result = run_ingest(
                source,
                self.bus,
                self.topics.frames,
                self.camera_id,
                jpeg_quality=jpeg_quality,
                max_side=max_side,
                realtime=realtime,
                on_frame=throttled,
                latency=self.latency,
            )
            deadline = time.monotonic() + drain_timeout_s
            with tracker.cond:
                while (
                    len(tracker.frames_seen) < result.published or not set(frame_handler.event_ids) <= tracker.alerted
                ):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        log.error("pipeline did not drain within %.0fs", drain_timeout_s)
                        break
                    tracker.cond.wait(min(remaining, 0.5))
            if self.indexing is not None:
                self._drain_memory(memory_before, result.published, drain_timeout_s)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=10)
            for c in consumers:
                c.close()
            uplink.join()
        stats = source.stats
        summary = RunSummary(
            source=source.source,
            frames_read=stats.frames_read,
            frames_published=result.published if result else 0,
            corrupt_frames=stats.corrupt_frames + frame_handler.corrupt,
            ended_early=stats.ended_early,
            frames_gated=frame_handler.gated,
            detector_runs=frame_handler.detector_runs,
            mllm_calls=frame_handler.routed["mllm"],
            confident_events=frame_handler.routed["confident"],
            events=frame_handler.events,
            invalid_model_outputs=frame_handler.invalid_outputs,
            alerts=len(tracker.alerted),
            wall_s=time.monotonic() - t0,
            structurer=self.gater.structurer.producer.kind + ":" + self.gater.structurer.producer.name,
            detector=self.gater.detector.name
            + (f" + context {self.gater.context_detector.name}" if self.gater.context_detector else ""),
            latency_ms=self.latency.summary(),
        )
        if self.indexing is not None and self.memory is not None:
            summary.index_entries = self.indexing.entries_published - index_entries0
            summary.memory_points = self.memory.count()
            summary.memory_path = str(self.memory.config.frames.path.parent)
        return summary

    def _drain_memory(self, before: tuple[int, int], published: int, stall_timeout_s: float) -> None:
        """Wait for indexing to see every frame, close the open clusters, wait for the memory to store it all.

        Indexing (OCR, embedding) lags gating; the wait lasts while it makes progress, so a
        long video is not cut short, and a stalled stage gives up after `stall_timeout_s`.
        """
        assert self.indexing is not None and self.memory is not None
        indexing, writer = self.indexing, self.memory.writer

        def progress() -> tuple[int, int, int, int]:
            return (
                indexing.frames + indexing.corrupt - before[0],
                writer.frames_stored - before[1],
                indexing.entries_published,
                writer.entries_stored,
            )

        def wait(done: Callable[[tuple[int, int, int, int]], bool], what: str) -> None:
            last, deadline = progress(), time.monotonic() + stall_timeout_s
            while not done(now := progress()):
                if now != last:
                    last, deadline = now, time.monotonic() + stall_timeout_s
                if time.monotonic() > deadline:
                    log.error("memory did not finish %s within %.0fs of no progress: %s", what, stall_timeout_s, now)
                    return
                with writer.cond:
                    writer.cond.wait(0.25)

        wait(lambda p: p[0] >= published, "indexing")
        indexing.flush_all()
        wait(lambda p: p[1] >= published and p[3] >= p[2], "storing")
