"""One process, every edge stage: ingest -> gating -> uplink (scheduled) -> alert sink, and
ingest -> indexing -> memory (Venus) when the run keeps a memory.

This is `vigil run`. Each stage is built by its service's own composition root
(`services/<svc>/bootstrap.py: build`) from one validated `EdgeSettings`, so the
environment (`VIGIL_GATING__*`, `VIGIL_BUS__*`, ...) means here what it means to the
services. The stages share one bus: the in-process bus by default, or Kafka (then the
consumer groups are the services' own, and the alert sink only reports this run's alerts).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import Field

from services.common.bus import Bus, Message
from services.common.config import CommonSettings
from services.common.metrics import LatencyRecorder
from services.common.runtime import Stage
from services.gating import bootstrap as gating
from services.gating.config import GatingConfig, GatingSettings
from services.gating.pipeline import FrameGater
from services.indexing import bootstrap as indexing
from services.indexing.config import IndexingConfig, IndexingSettings
from services.ingest import bootstrap as ingest
from services.ingest.config import IngestConfig, IngestSettings
from services.ingest.ingest import IngestResult
from services.ingest.source import VideoSource
from services.memory import bootstrap as memory
from services.memory.config import MemoryConfig, MemorySettings
from services.models.detectors.base import Detector
from services.uplink import bootstrap as uplink
from services.uplink.config import UplinkConfig, UplinkSettings
from vigil.alert.v1 import alert_pb2

log = logging.getLogger(__name__)

ServiceSettingsT = TypeVar("ServiceSettingsT", bound=CommonSettings)


class EdgeSettings(CommonSettings):
    """`vigil run`'s one settings object: every edge service's block, from VIGIL_* as the services read them."""

    ingest: IngestConfig = IngestConfig()
    gating: GatingConfig = Field(default_factory=GatingConfig)
    uplink: UplinkConfig = UplinkConfig()
    indexing: IndexingConfig = Field(default_factory=IndexingConfig)
    memory: MemoryConfig = MemoryConfig()

    def service(self, cls: type[ServiceSettingsT]) -> ServiceSettingsT:
        """These settings as one service's: the common fields and its block (its other fields keep their defaults)."""
        mine = type(self).model_fields
        # Every part is validated already; model_construct does not read the environment a second time.
        return cls.model_construct(**{name: getattr(self, name) for name in cls.model_fields if name in mine})


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

    def frame_done(self, msg: Message) -> None:
        """A frame was gated, or given up on (dead-lettered after retries)."""
        with self.cond:
            self.frames_seen.add((msg.partition, msg.offset))
            self.cond.notify_all()


def shared_detector(indexing_cfg: IndexingConfig, gating_cfg: GatingConfig, gater: FrameGater) -> Detector | None:
    """The gate's detector that indexing describes frames with, when it is the same model (loaded once)."""
    # COCO in `traffic` (the context detector), the fall model in `people` (the gate itself).
    if indexing_cfg.detector is None:
        return None
    if indexing_cfg.detector == gating_cfg.context_detector:
        return gater.context_detector
    if indexing_cfg.detector == gating_cfg.detector:
        return gater.detector
    return None


class EmbeddedPipeline:
    """The edge services' stages on one bus, run over one source to its end."""

    def __init__(
        self,
        settings: EdgeSettings,
        bus: Bus,
        *,
        with_memory: bool = True,
        on_alert: Callable[[alert_pb2.Alert, float], None] | None = None,
    ) -> None:
        """Build every stage; StageError (with a message for the user) when one cannot be built."""
        self.settings = settings
        self.bus = bus
        self.latency = LatencyRecorder()
        self._tracker = _RunTracker()
        self._on_alert = on_alert
        self.gating = gating.build(
            settings.service(GatingSettings), bus, latency=self.latency, on_handled=self._tracker.frame_done
        )
        self.uplink = uplink.build(settings.service(UplinkSettings), bus, cloud=bus)
        self.indexing: indexing.IndexingStage | None = None
        self.memory: memory.MemoryStage | None = None
        if with_memory:
            detector = shared_detector(settings.indexing, settings.gating, self.gating.gater)
            # Indexing flushes once at the end of the source, not on quiet time.
            self.indexing = indexing.build(settings.service(IndexingSettings), bus, detector=detector, idle_flush=False)
            # One embedder for both; the retention sweeper is the service's (one run of a file needs none).
            self.memory = memory.build(
                settings.service(MemorySettings), bus, embedder=self.indexing.handler.stage.embedder, sweep=False
            )

    @property
    def stages(self) -> list[Stage]:
        """The long-running stages, in the order they start."""
        return [s for s in (self.gating, self.uplink, self.indexing, self.memory) if s is not None]

    def run(
        self,
        source: VideoSource,
        *,
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
        tracker = self._tracker
        frame_handler = self.gating.handler

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

        topics = self.settings.topics
        sink = Stage(
            "alert-sink",
            consumers=[self.bus.consumer([topics.alerts], f"vigil-run-sink-{tracker.started_ns}", on_alert_msg)],
        )
        job = ingest.build(
            self.settings.service(IngestSettings), self.bus, source=source, on_frame=throttled, latency=self.latency
        )
        stages = [*self.stages, sink]
        index_entries0 = self.indexing.handler.entries_published if self.indexing else 0
        memory_before = (
            (self.indexing.handler.frames + self.indexing.handler.corrupt, self.memory.memory.writer.frames_stored)
            if self.indexing is not None and self.memory is not None
            else (0, 0)
        )
        stop = threading.Event()
        for stage in stages:
            stage.start(stop, serve=False)
        result: IngestResult | None = None
        memory_points: int | None = None
        try:
            result = job.run(stop)
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
            if self.indexing is not None and self.memory is not None:
                self._drain_memory(memory_before, result.published, drain_timeout_s)
                # Counted before the stages close: closing the memory stage closes its store.
                memory_points = self.memory.memory.count()
        finally:
            stop.set()
            for stage in stages:
                stage.close(join_timeout_s=10)
        stats = source.stats
        gater = self.gating.gater
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
            structurer=gater.structurer.producer.kind + ":" + gater.structurer.producer.name,
            detector=gater.detector.name
            + (f" + context {gater.context_detector.name}" if gater.context_detector else ""),
            latency_ms=self.latency.summary(),
        )
        if self.indexing is not None and self.memory is not None:
            summary.index_entries = self.indexing.handler.entries_published - index_entries0
            summary.memory_points = memory_points
            summary.memory_path = str(self.memory.memory.config.frames.path.parent)
        return summary

    def _drain_memory(self, before: tuple[int, int], published: int, stall_timeout_s: float) -> None:
        """Wait for indexing to see every frame, close the open clusters, wait for the memory to store it all.

        Indexing (OCR, embedding) lags gating; the wait lasts while it makes progress, so a
        long video is not cut short, and a stalled stage gives up after `stall_timeout_s`.
        """
        assert self.indexing is not None and self.memory is not None
        indexing, writer = self.indexing.handler, self.memory.memory.writer

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
