"""Transport glue of indexing: frames-topic records -> CameraIndexer -> IndexEntry records on the index topic.

The consumer runs with manual acks: a frame's offset is committed only once the entry of the
cluster it belongs to is published and flushed, so a crash re-reads the open cluster's frames
instead of losing them. If describing, embedding or publishing fails (Triton or the broker
away), the closed clusters wait in a backlog and the next record is retried until they go
out: frames are neither lost nor pushed twice.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np
from google.protobuf.message import DecodeError

from services.common.bus import Bus, Message, PoisonMessage, RetryableError
from services.common.frames import frame_time_s
from services.indexing import metrics
from services.indexing.config import IndexingConfig
from services.indexing.stream import CameraIndexer, ClosedCluster, ClusterEmbedder, PendingFrame
from services.models.embedders.base import EmbedderError
from vigil.media.v1 import frame_pb2

log = logging.getLogger(__name__)


class IndexingHandler:
    """Bus handler for the frames topic; thread-safe (the idle flusher calls in from another thread)."""

    def __init__(
        self,
        stage: ClusterEmbedder,
        bus: Bus,
        index_topic: str,
        config: IndexingConfig,
        ack: Callable[[Any], None] | None = None,
    ) -> None:
        self.stage = stage
        self.bus = bus
        self.index_topic = index_topic
        self.config = config
        # The manual-ack consumer's ack: a frame is acknowledged once its cluster's entry is published.
        # None acks nothing (tests, tools).
        self.ack = ack
        self._indexers: dict[str, CameraIndexer] = {}
        self._backlog: list[ClosedCluster] = []
        self._lock = threading.RLock()
        self.frames = 0
        self.corrupt = 0
        self.entries_published = 0
        self.clusters_dropped = 0
        self.cond = threading.Condition()

    def _ack(self, handles: list[Any]) -> None:
        if self.ack is None:
            return
        for h in handles:
            if h is not None:
                self.ack(h)

    def __call__(self, msg: Message) -> None:
        """One frames-topic record."""
        try:
            frame = frame_pb2.Frame.FromString(msg.value)
        except DecodeError as e:
            raise PoisonMessage(f"not a vigil.media.v1.Frame: {e}") from e
        with self._lock:
            # Earlier clusters first: if they still cannot go out, this record waits (retried, not pushed).
            self._drain()
            image = cv2.imdecode(np.frombuffer(frame.jpeg, np.uint8), cv2.IMREAD_COLOR) if frame.jpeg else None
            if image is None:
                self.corrupt += 1
                metrics.CORRUPT_FRAMES.inc()
                log.warning("skipping corrupt frame %s/%d", frame.camera_id, frame.seq)
                self._ack([msg])
                self._count()
                return
            indexer = self._indexers.get(frame.camera_id)
            if indexer is None:
                indexer = self._indexers[frame.camera_id] = CameraIndexer.from_config(
                    frame.camera_id, self.config, self.stage.detector
                )
            t = time.perf_counter()
            pending = PendingFrame(
                frame_time_s(frame.live, frame.pts_s, frame.capture_time_ns),
                frame.capture_time_ns,
                frame.seq,
                frame.jpeg,
                msg,
            )
            self._backlog += indexer.push(pending, image)
            metrics.STAGE_SECONDS.labels("segment_cluster").observe(time.perf_counter() - t)
            self.frames += 1
            try:
                self._drain()
            except RetryableError as e:
                # This frame is in the indexer already; its cluster goes out with the next record.
                log.warning("index entries wait for a retry: %s", e)
        self._count()

    def _count(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def _drain(self) -> None:
        """Describe, embed and publish the backlog; ack its frames. RetryableError if it must wait."""
        if not self._backlog:
            return
        try:
            entries = self.stage.entries(self._backlog)
        except EmbedderError as e:
            # The embedder refuses these frames for good (e.g. too small): drop them loudly, do not block the stream.
            log.error("dropping %d cluster(s) the embedder refuses: %s", len(self._backlog), e)
            self.clusters_dropped += len(self._backlog)
            for cc in self._backlog:
                self._ack(cc.handles)
            self._backlog = []
            return
        except Exception as e:
            raise RetryableError(f"cannot describe/embed {len(self._backlog)} closed cluster(s): {e}") from e
        try:
            for entry in entries:
                self.bus.publish(self.index_topic, entry.SerializeToString(), key=entry.camera_id)
            self.bus.flush()
        except Exception as e:
            raise RetryableError(f"cannot publish index entries: {e}") from e
        for cc in self._backlog:
            self._ack(cc.handles)
        with self.cond:
            self.entries_published += len(entries)
            self.cond.notify_all()
        self._backlog = []

    def indexers_idle(self) -> bool:
        """No camera holds an open cluster and nothing waits to be published."""
        with self._lock:
            return not self._backlog and all(ix.open_frames == 0 for ix in self._indexers.values())

    def flush_idle(self, now: float | None = None) -> int:
        """Close the open cluster of every camera quiet for idle_flush_s; returns entries published."""
        now = time.monotonic() if now is None else now
        with self._lock:
            for indexer in self._indexers.values():
                if indexer.open_frames and now - indexer.last_push_monotonic >= self.config.idle_flush_s:
                    self._backlog += indexer.flush()
            return self._try_drain()

    def flush_all(self) -> int:
        """Close every camera's open cluster (end of input); returns entries published."""
        with self._lock:
            for indexer in self._indexers.values():
                self._backlog += indexer.flush()
            return self._try_drain()

    def _try_drain(self) -> int:
        n = len(self._backlog)
        try:
            self._drain()
        except RetryableError as e:
            log.warning("index entries wait for a retry: %s", e)
            return 0
        return n

    def run_idle_flusher(self, stop: threading.Event, period_s: float = 1.0) -> None:
        """Thread body: flush quiet cameras until `stop`."""
        while not stop.wait(period_s):
            try:
                self.flush_idle()
            except Exception:
                log.exception("idle flush failed; retrying in %.0fs", period_s)
