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
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from services.common.bus import Bus, Message
from services.common.bus.kafka import PublishError
from services.common.config import CommonSettings
from services.common.metrics import LatencyRecorder
from services.common.runtime import Stage, StageError, StageFailed
from services.gating import bootstrap as gating
from services.gating.config import GatingConfig, GatingSettings
from services.gating.pipeline import FrameGater
from services.indexing import bootstrap as indexing
from services.indexing.config import IndexingConfig, IndexingSettings
from services.ingest import bootstrap as ingest
from services.ingest.config import IngestConfig, IngestSettings
from services.ingest.source import VideoSource, redact
from services.memory import bootstrap as memory
from services.memory.config import MemoryConfig, MemorySettings
from services.memory.volume import MemoryInUse
from services.models.detectors.base import Detector
from services.uplink import bootstrap as uplink
from services.uplink.config import UplinkConfig, UplinkSettings
from vigil.alert.v1 import alert_pb2

log = logging.getLogger(__name__)

ServiceSettingsT = TypeVar("ServiceSettingsT", bound=CommonSettings)


class CameraSource(BaseModel):
    """One source of a run over several cameras: its camera id and what `ingest.source` would name."""

    model_config = ConfigDict(extra="forbid")

    camera_id: str = Field(min_length=1)
    source: str = Field(min_length=1)


class EdgeSettings(CommonSettings):
    """`vigil run`'s one settings object: every edge service's block, from VIGIL_* as the services read them."""

    ingest: IngestConfig = IngestConfig()
    # Several cameras in one run (VIGIL_CAMERAS='[{"camera_id": ..., "source": ...}]'); empty = the one
    # `ingest.source` as `ingest.camera_id`. The ingest service itself stays one source per process.
    cameras: list[CameraSource] = Field(default_factory=list)
    gating: GatingConfig = Field(default_factory=GatingConfig)
    uplink: UplinkConfig = UplinkConfig()
    indexing: IndexingConfig = Field(default_factory=IndexingConfig)
    memory: MemoryConfig = MemoryConfig()

    @field_validator("cameras")
    @classmethod
    def _unique_cameras(cls, cameras: list[CameraSource]) -> list[CameraSource]:
        seen: set[str] = set()
        for cam in cameras:
            if cam.camera_id in seen:
                raise ValueError(f"two sources have the camera id {cam.camera_id!r}: give each its own id")
            seen.add(cam.camera_id)
        return cameras

    def sources(self) -> list[CameraSource]:
        """The run's cameras: `cameras`, or the one `ingest.source` under `ingest.camera_id`."""
        return list(self.cameras) or [
            CameraSource.model_construct(camera_id=self.ingest.camera_id, source=self.ingest.source)
        ]

    def camera_ingest(self, camera: CameraSource) -> IngestSettings:
        """Ingest's settings for one camera of the run: its source and id, the rest of `ingest` shared."""
        settings = self.service(IngestSettings)
        settings.ingest = self.ingest.model_copy(update={"source": camera.source, "camera_id": camera.camera_id})
        return settings

    def service(self, cls: type[ServiceSettingsT]) -> ServiceSettingsT:
        """These settings as one service's: the common fields and its block (its other fields keep their defaults)."""
        mine = type(self).model_fields
        # Every part is validated already; model_construct does not read the environment a second time.
        return cls.model_construct(**{name: getattr(self, name) for name in cls.model_fields if name in mine})


@dataclass
class CameraReport:
    """One camera of the run: what it published and what came of it; `error` says why a failed one stopped."""

    camera_id: str
    source: str
    frames: int = 0
    frames_gated: int = 0
    detector_runs: int = 0
    dropped: int = 0
    events: int = 0
    alerts: int = 0
    # Frames the source could not decode (skipped, counted), as `corrupt_frames` is for the whole run.
    corrupt_frames: int = 0
    ended_early: bool = False
    failed: bool = False
    error: str = ""


@dataclass
class CameraFeed:
    """An opened source and the camera id its frames carry."""

    camera_id: str
    source: VideoSource


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
    # Frames and clusters the memory refused for lack of disk space (memory.min_free_bytes).
    memory_refused: int = 0
    # Why a memory asked for could not be kept (the alerts went on without it).
    memory_error: str = ""
    cameras: list[CameraReport] = field(default_factory=list)

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
            "memory_refused": self.memory_refused,
            "memory_error": self.memory_error,
            "cameras": [asdict(c) for c in self.cameras],
        }


class _RunTracker:
    """Progress of this run: frames gated and events alerted (completion ignores older traffic)."""

    def __init__(self) -> None:
        self.started_ns = time.time_ns()
        self.frames_seen: set[tuple[int, int]] = set()
        # Frames done per camera (the frames topic's key is the camera id): each camera's ingest paces on its own.
        self.camera_done: dict[str, int] = {}
        self.alerted: set[str] = set()
        self.camera_alerts: dict[str, int] = {}
        self.cond = threading.Condition()

    def frame_done(self, msg: Message) -> None:
        """A frame was gated, dropped, or given up on (dead-lettered after retries)."""
        camera = msg.key.decode() if msg.key else ""
        with self.cond:
            if (msg.partition, msg.offset) not in self.frames_seen:
                self.frames_seen.add((msg.partition, msg.offset))
                self.camera_done[camera] = self.camera_done.get(camera, 0) + 1
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
        self.gating = gating.build(settings.service(GatingSettings), bus, latency=self.latency, on_handled=self._gated)
        self.uplink = uplink.build(settings.service(UplinkSettings), bus, cloud=bus)
        self.indexing: indexing.IndexingStage | None = None
        self.memory: memory.MemoryStage | None = None
        # Why the run keeps no memory although asked to ("" when it does, or was told not to).
        self.memory_error = ""
        if with_memory:
            detector = shared_detector(settings.indexing, settings.gating, self.gating.gater)
            # Indexing flushes once at the end of the source, not on quiet time.
            self.indexing = indexing.build(settings.service(IndexingSettings), bus, detector=detector, idle_flush=False)
            # One embedder for both; the retention sweeper is the service's (one run of a file needs none).
            memory_settings = settings.service(MemorySettings)
            # Readers of this memory (`vigil ask` while the run lasts) come in through its Retrieve, on loopback
            # only; the address is written into the memory's lock file (services/memory/volume.py).
            memory_settings.grpc_address = "127.0.0.1:0"
            try:
                self.memory = memory.build(
                    memory_settings, bus, embedder=self.indexing.handler.stage.embedder, sweep=False
                )
            except StageError as exc:
                if isinstance(exc.__cause__, MemoryInUse):
                    raise  # another run holds this memory: the user picks another --memory, or waits
                # A memory that cannot open (a full disk, a broken store) must not take the alerts with it.
                log.error("%s: this run raises alerts but keeps no memory", exc)
                self.memory_error = str(exc)
                self.indexing = None

    def _gated(self, msg: Message) -> None:
        """A frame left gating (gated, dropped or dead-lettered): its wait and work since ingest published it."""
        self.latency.record("frame_to_gated", time.time() * 1e3 - msg.timestamp_ms)
        self._tracker.frame_done(msg)

    @property
    def stages(self) -> list[Stage]:
        """The long-running stages, in the order they start."""
        return [s for s in (self.gating, self.uplink, self.indexing, self.memory) if s is not None]

    def run(
        self,
        sources: VideoSource | Sequence[CameraFeed],
        *,
        on_frame: Callable[[int], None] | None = None,
        drain_timeout_s: float = 120.0,
        max_inflight: int = 2,
        settle_evidence: bool = False,
    ) -> RunSummary:
        """Ingest every source to its end, each on its own thread, wait until every frame is gated and
        every event alerted, summarise.

        A file decodes far faster than the detector runs; a camera's ingest waits while more than
        `max_inflight` of its frames are ungated, as a camera's bounded buffer would, so the
        latencies measure processing rather than an ever-growing backlog (0 = no limit: a paced
        replay then shows the backlog when the pipeline cannot keep up). One camera waiting never
        holds another. A source that raises mid-run is reported in its camera's summary and the
        others go on. `settle_evidence` also waits until the uplink finished every event (its
        evidence sent or expired), for a consumer of the evidence topic such as the console.
        """
        feeds = (
            [CameraFeed(self.settings.ingest.camera_id, sources)] if isinstance(sources, VideoSource) else list(sources)
        )
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
                    tracker.camera_alerts[alert.camera_id] = tracker.camera_alerts.get(alert.camera_id, 0) + 1
                    tracker.cond.notify_all()
            if mine:
                self.latency.record("uplink_queue", (alert.sent_time_ns - alert.created_time_ns) / 1e6)
                delivered_ms = (time.time_ns() - alert.capture_time_ns) / 1e6
                self.latency.record("frame_to_delivered", delivered_ms)
                if self._on_alert is not None:
                    self._on_alert(alert, delivered_ms)

        done0 = dict(tracker.camera_done)
        published: dict[str, int] = {}

        def throttled(camera_id: str) -> Callable[[int], None]:
            def on_published(index: int) -> None:
                with tracker.cond:
                    published[camera_id] = published.get(camera_id, 0) + 1
                    if max_inflight:
                        tracker.cond.wait_for(
                            lambda: (
                                published[camera_id] - (tracker.camera_done.get(camera_id, 0) - done0.get(camera_id, 0))
                                <= max_inflight
                            ),
                            timeout=drain_timeout_s,
                        )
                if on_frame is not None:
                    on_frame(index)

            return on_published

        topics = self.settings.topics
        sink = Stage(
            "alert-sink",
            consumers=[self.bus.consumer([topics.alerts], f"vigil-run-sink-{tracker.started_ns}", on_alert_msg)],
        )
        reports = {f.camera_id: CameraReport(f.camera_id, redact(f.source.source)) for f in feeds}
        jobs = [
            (
                f.camera_id,
                ingest.build(
                    self.settings.camera_ingest(
                        CameraSource.model_construct(camera_id=f.camera_id, source=f.source.source)
                    ),
                    self.bus,
                    source=f.source,
                    on_frame=throttled(f.camera_id),
                    latency=self.latency,
                ),
            )
            for f in feeds
        ]
        stages = [*self.stages, sink]
        index_entries0 = self.indexing.handler.entries_published if self.indexing else 0
        memory_before = (
            (self.indexing.handler.frames + self.indexing.handler.corrupt, self.memory.memory.writer.frames_done)
            if self.indexing is not None and self.memory is not None
            else (0, 0)
        )
        stop = threading.Event()
        # The memory's path (indexing -> memory) stops on its own event: a stage of it that fails costs the
        # memory (the summary says why), never the alerts.
        memory_path = [s for s in (self.indexing, self.memory) if s is not None]
        memory_stop = threading.Event()
        for stage in stages:
            # Only the memory serves: its Retrieve is the way in for readers while the run holds the memory.
            stage.start(memory_stop if stage in memory_path else stop, serve=stage is self.memory)
        memory_points: int | None = None
        total_published = 0
        bus_errors: list[PublishError] = []
        try:
            threads = [
                threading.Thread(
                    target=self._ingest_camera,
                    args=(job, reports[cam], stop, bus_errors),
                    name=f"ingest-{cam}",
                    daemon=True,
                )
                for cam, job in jobs
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.5)
            if bus_errors:
                # The broker went away: no camera can go on, and `vigil run` says to rerun (committed offsets resume).
                raise bus_errors[0]
            total_published = sum(r.frames for r in reports.values())
            deadline = time.monotonic() + drain_timeout_s
            with tracker.cond:
                while len(tracker.frames_seen) < total_published or not set(frame_handler.event_ids) <= tracker.alerted:
                    remaining = deadline - time.monotonic()
                    if stop.is_set():
                        break  # a stage failed (Stage.fail): raised below, not waited out
                    if remaining <= 0:
                        log.error("pipeline did not drain within %.0fs", drain_timeout_s)
                        break
                    tracker.cond.wait(min(remaining, 0.5))
            if settle_evidence:
                self._settle_uplink(drain_timeout_s)
            if self.indexing is not None and self.memory is not None and not memory_stop.is_set():
                self._drain_memory(memory_before, total_published, drain_timeout_s, memory_stop)
                if not memory_stop.is_set():
                    # Counted before the stages close: closing the memory stage closes its store.
                    memory_points = self.memory.memory.count()
        finally:
            stop.set()
            memory_stop.set()
            for stage in stages:
                stage.close(join_timeout_s=10)
        memory_failures = [s.failure for s in memory_path if s.failure is not None]
        if memory_failures:
            self.memory_error = "; ".join(memory_failures)
            log.error("the memory failed mid-run, the alerts went on: %s", self.memory_error)
        failures = [stage.failure for stage in stages if stage.failure is not None and stage not in memory_path]
        if failures:
            # A dead consumer or loop means frames went ungated or alerts unsent: no summary pretends otherwise.
            raise StageFailed("; ".join(failures))
        gater = self.gating.gater
        for cam, report in reports.items():
            counts = frame_handler.camera(cam)
            report.frames_gated, report.detector_runs = counts.gated, counts.detector_runs
            report.events, report.dropped = counts.events, counts.dropped
            report.alerts = tracker.camera_alerts.get(cam, 0)
        all_stats = [f.source.stats for f in feeds]
        summary = RunSummary(
            source=feeds[0].source.source if len(feeds) == 1 else f"{len(feeds)} cameras",
            frames_read=sum(st.frames_read for st in all_stats),
            frames_published=total_published,
            corrupt_frames=sum(st.corrupt_frames for st in all_stats) + frame_handler.corrupt,
            ended_early=any(st.ended_early for st in all_stats),
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
            cameras=list(reports.values()),
            memory_error=self.memory_error,
        )
        if self.indexing is not None and self.memory is not None:
            summary.index_entries = self.indexing.handler.entries_published - index_entries0
            summary.memory_points = memory_points
            summary.memory_path = str(self.memory.memory.config.frames.path.parent)
            writer = self.memory.memory.writer
            summary.memory_refused = writer.frames_refused + writer.entries_refused
        return summary

    @staticmethod
    def _ingest_camera(
        job: ingest.IngestStage, report: CameraReport, stop: threading.Event, bus_errors: list[PublishError]
    ) -> None:
        """One camera's ingest thread: publish its frames; a source failure ends this camera only, and is
        reported; a bus failure (the broker went away) is every camera's, so it stops the run."""
        try:
            result = job.run(stop)
        except PublishError as exc:
            report.failed, report.error = True, f"{type(exc).__name__}: {exc}"
            bus_errors.append(exc)
            stop.set()
        except Exception as exc:  # any source error: the other cameras must go on
            log.exception("camera %s failed mid-run", report.camera_id)
            report.failed, report.error = True, f"{type(exc).__name__}: {exc}"
        else:
            report.ended_early = result.stats.ended_early
            if not job.source.ends and not stop.is_set():
                # A live stream has no end: it returns only once it is lost and every reconnect failed.
                report.failed, report.error = True, f"stream lost after {result.stats.reconnects} reconnects"
        finally:
            # What the camera published before it ended or failed (the pipeline still gates all of it).
            report.frames = job.published
            report.corrupt_frames = job.source.stats.corrupt_frames
            job.source.close()

    def _settle_uplink(self, timeout_s: float) -> None:
        """Wait until the uplink holds no pending event: every visual unit was sent or dropped at its deadline."""
        dispatcher = getattr(self.uplink, "dispatcher", None)
        if dispatcher is None:  # pass-through mode sends everything at once
            return
        deadline = time.monotonic() + timeout_s
        while len(dispatcher) and time.monotonic() < deadline:
            time.sleep(0.1)

    def _drain_memory(
        self, before: tuple[int, int], published: int, stall_timeout_s: float, failed: threading.Event
    ) -> None:
        """Wait for indexing to see every frame, close the open clusters, wait for the memory to store it all.

        Indexing (OCR, embedding) lags gating; the wait lasts while it makes progress, so a
        long video is not cut short, and a stalled stage gives up after `stall_timeout_s`.
        """
        assert self.indexing is not None and self.memory is not None
        indexing, writer = self.indexing.handler, self.memory.memory.writer

        def progress() -> tuple[int, int, int, int]:
            return (
                indexing.frames + indexing.corrupt - before[0],
                writer.frames_done - before[1],
                indexing.entries_published,
                writer.entries_done,
            )

        def wait(done: Callable[[tuple[int, int, int, int]], bool], what: str) -> None:
            last, deadline = progress(), time.monotonic() + stall_timeout_s
            while not done(now := progress()):
                if failed.is_set():
                    return  # a stage of the memory's path failed: nothing more will be stored
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
