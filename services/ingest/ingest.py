"""Ingest: sample a source, JPEG-encode each frame and publish it as a vigil.media.v1.Frame."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import cv2

from services.common.bus import Bus
from services.common.frames import RawFrame
from services.common.metrics import LatencyRecorder
from services.ingest import metrics
from services.ingest.outbox import FrameOutbox, OutgoingFrame
from services.ingest.source import SourceStats, VideoSource, redact
from vigil.media.v1 import frame_pb2

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class IngestResult:
    """How a run over a source ended."""

    published: int
    stats: SourceStats
    # Live frames dropped (oldest first) while the broker was away, and frames left when stopped during one.
    dropped: int = 0
    abandoned: int = 0


def encode_frame(
    raw: RawFrame, camera_id: str, source: str, jpeg_quality: int, max_side: int, live: bool = False
) -> frame_pb2.Frame:
    """Downscale to `max_side` if larger, JPEG-encode and wrap as a Frame message."""
    image = raw.image
    h, w = image.shape[:2]
    if max_side and max(h, w) > max_side:
        s = max_side / max(h, w)
        image = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
        h, w = image.shape[:2]
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, jpeg_quality])
    if not ok:
        raise ValueError(f"JPEG encoding failed for frame {raw.index}")
    return frame_pb2.Frame(
        camera_id=camera_id,
        seq=raw.index,
        pts_s=raw.pts_s,
        capture_time_ns=time.time_ns(),
        width=w,
        height=h,
        jpeg=buf.tobytes(),
        source=redact(source),
        live=live,
    )


def run_ingest(
    source: VideoSource,
    bus: Bus,
    topic: str,
    camera_id: str,
    *,
    jpeg_quality: int = 90,
    max_side: int = 1280,
    realtime: bool = False,
    stop: threading.Event | None = None,
    on_frame: Callable[[int], None] | None = None,
    latency: LatencyRecorder | None = None,
    outbox_frames: int = 250,
    broker_wait_s: float = 600.0,
) -> IngestResult:
    """Publish every sampled frame of `source` to `topic`, keyed by camera; return counts.

    Frames go through a :class:`FrameOutbox` whose sender thread rides out a broker outage;
    `on_frame` is called (on that thread) for each frame once the broker acknowledged it.
    """
    stop = stop or threading.Event()
    outbox = FrameOutbox(
        bus,
        topic,
        camera_id,
        outbox_frames,
        live=source.is_stream,
        on_delivered=on_frame,
        max_wait_s=broker_wait_s,
    )
    sender = threading.Thread(target=outbox.run, args=(stop,), name=f"ingest-send-{camera_id}", daemon=True)
    sender.start()
    try:
        _read(source, outbox, camera_id, jpeg_quality, max_side, realtime, stop, latency)
    finally:
        outbox.close()
        sender.join()
    if outbox.error is not None:
        raise outbox.error
    if outbox.dropped:
        log.warning(
            "%s: dropped %d frames (oldest first) while the broker was away", redact(source.source), outbox.dropped
        )
    if source.stats.corrupt_frames:
        log.warning("%s: skipped %d corrupt frames", redact(source.source), source.stats.corrupt_frames)
    if source.stats.ended_early:
        log.warning(
            "%s ended after %d of %d frames: the file is truncated or damaged past that point",
            redact(source.source),
            source.stats.frames_read,
            source.stats.expected_frames,
        )
    return IngestResult(
        published=outbox.delivered, stats=source.stats, dropped=outbox.dropped, abandoned=outbox.abandoned
    )


def _read(
    source: VideoSource,
    outbox: FrameOutbox,
    camera_id: str,
    jpeg_quality: int,
    max_side: int,
    realtime: bool,
    stop: threading.Event,
    latency: LatencyRecorder | None,
) -> None:
    """The reader: sample, encode and queue frames until the source ends or `stop` is set."""
    t0 = time.monotonic()
    corrupt_seen = 0
    for raw in source.frames():
        if stop.is_set():
            break
        if realtime and not source.is_stream:
            delay = raw.pts_s - (time.monotonic() - t0)
            if delay > 0:
                time.sleep(delay)
        t = time.perf_counter()
        msg = encode_frame(raw, camera_id, source.source, jpeg_quality, max_side, live=source.is_stream)
        encode_ms = (time.perf_counter() - t) * 1e3
        metrics.ENCODE_SECONDS.observe(encode_ms / 1e3)
        if latency is not None:
            latency.record("ingest_encode", encode_ms)
        outbox.put(OutgoingFrame(raw.index, msg.SerializeToString()), stop)
        metrics.FRAMES_READ.inc()
        if source.stats.corrupt_frames > corrupt_seen:
            metrics.CORRUPT_FRAMES.inc(source.stats.corrupt_frames - corrupt_seen)
            corrupt_seen = source.stats.corrupt_frames
