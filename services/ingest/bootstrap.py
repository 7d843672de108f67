"""Composition root of ingest: the configured source, opened, and the job that publishes its frames."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from services.common.bus import Bus
from services.common.metrics import LatencyRecorder
from services.common.runtime import Stage, StageError
from services.ingest.config import IngestSettings
from services.ingest.ingest import IngestResult, run_ingest
from services.ingest.source import SourceError, VideoSource, open_source, resolve_fps

log = logging.getLogger(__name__)


def open_configured_source(settings: IngestSettings) -> VideoSource:
    """The source VIGIL_INGEST__SOURCE names; StageError (exit 2) when it is missing or will not open."""
    cfg = settings.ingest
    if not cfg.source:
        raise StageError(
            "no source configured: set VIGIL_INGEST__SOURCE to a video file, an image folder or an rtsp:// URL"
        )
    try:
        return open_source(cfg.source, fps=resolve_fps(cfg.source, cfg.fps), open_timeout_s=cfg.open_timeout_s)
    except SourceError as exc:
        raise StageError(str(exc)) from exc


class IngestStage(Stage):
    """A job: read the source to its end (or until stopped), publishing every sampled frame."""

    def __init__(
        self,
        settings: IngestSettings,
        bus: Bus,
        source: VideoSource,
        *,
        on_frame: Callable[[int], None] | None = None,
        latency: LatencyRecorder | None = None,
    ) -> None:
        self.settings = settings
        self.bus = bus
        self.source = source
        self.result: IngestResult | None = None
        # Frames published so far: known even when the source raises before the run returns its result.
        self.published = 0
        self._on_frame = on_frame
        self._latency = latency
        super().__init__(
            "ingest",
            loops=[("publish", self._publish)],
            closers=[source.close],
            ends_by_itself=True,
            description=f"{source.source} -> {settings.topics.frames}",
        )

    def _count(self, index: int) -> None:
        self.published += 1
        if self._on_frame is not None:
            self._on_frame(index)

    def _publish(self, stop: threading.Event) -> None:
        self.run(stop)

    def run(self, stop: threading.Event) -> IngestResult:
        """Publish the source's frames until it ends or `stop` is set; the result is also kept in `result`."""
        cfg = self.settings.ingest
        self.result = run_ingest(
            self.source,
            self.bus,
            self.settings.topics.frames,
            cfg.camera_id,
            jpeg_quality=cfg.jpeg_quality,
            max_side=cfg.max_side,
            realtime=cfg.realtime,
            stop=stop,
            on_frame=self._count,
            latency=self._latency,
            outbox_frames=cfg.outbox_frames,
            broker_wait_s=cfg.broker_wait_s,
        )
        log.info(
            "published %d frames (%d corrupt skipped, %d dropped while the broker was away)",
            self.result.published,
            self.result.stats.corrupt_frames,
            self.result.dropped,
        )
        return self.result


def build(
    settings: IngestSettings,
    bus: Bus | None,
    *,
    source: VideoSource | None = None,
    on_frame: Callable[[int], None] | None = None,
    latency: LatencyRecorder | None = None,
) -> IngestStage:
    """The ingest job; `source` may be opened by the caller (the CLI reports its own errors)."""
    if bus is None:
        raise ValueError("ingest needs a bus")
    return IngestStage(settings, bus, source or open_configured_source(settings), on_frame=on_frame, latency=latency)
