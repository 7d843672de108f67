"""Video sources through OpenCV: files and live streams (RTSP/HTTP), sampled at a target fps."""

from __future__ import annotations

import logging
import math
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

log = logging.getLogger(__name__)

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")


class SourceError(RuntimeError):
    """The source cannot be opened or read; the message says what to fix."""


def redact(source: str) -> str:
    """The source with any user:password@ removed, safe to log and publish."""
    return re.sub(r"(://)[^/@]+@", r"\1", source)


@dataclass(frozen=True)
class RawFrame:
    """A decoded frame with its position in the source."""

    index: int
    pts_s: float
    image: np.ndarray


@dataclass
class SourceStats:
    """What the source read, skipped and could not decode."""

    frames_read: int = 0
    frames_sampled: int = 0
    corrupt_frames: int = 0
    reconnects: int = 0
    expected_frames: int = 0
    ended_early: bool = False


class VideoSource:
    """Opens a file or stream URL and yields frames sampled at `fps` (None = every frame).

    Files are read as fast as they decode; streams arrive in real time. A frame
    that fails to decode inside a file is skipped and counted (up to
    `max_consecutive_failures` in a row, after which the rest is unreadable and
    the source ends early, said in `stats`). A live stream that drops is
    reopened up to `max_reconnects` times.
    """

    def __init__(
        self,
        source: str,
        fps: float | None = None,
        open_timeout_s: float = 10.0,
        max_consecutive_failures: int = 25,
        max_reconnects: int = 5,
    ) -> None:
        if fps is not None and fps <= 0:
            raise SourceError(f"fps must be positive, got {fps}")
        self.source = source
        self.is_stream = bool(_URL.match(source)) and not source.startswith("file://")
        self.target_fps = fps
        self._open_timeout_ms = int(open_timeout_s * 1000)
        self._max_failures = max_consecutive_failures
        self._max_reconnects = max_reconnects
        self.stats = SourceStats()
        self._cap = self._open()
        native = self._cap.get(cv2.CAP_PROP_FPS)
        self.native_fps = float(native) if native and math.isfinite(native) and native > 0 else 30.0
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.stats.expected_frames = int(count) if count and count > 0 and not self.is_stream else 0
        self.width = int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        self.height = int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT))

    def _open(self) -> cv2.VideoCapture:
        path = self.source.removeprefix("file://")
        if not self.is_stream:
            p = Path(path)
            if not p.exists():
                raise SourceError(f"video file not found: {path}")
            if not p.is_file():
                raise SourceError(f"not a file: {path}")
            if not os.access(p, os.R_OK):
                raise SourceError(f"video file is not readable (permissions): {path}")
            if p.stat().st_size == 0:
                raise SourceError(f"video file is empty: {path}")
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            self._open_timeout_ms,
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            self._open_timeout_ms,
        ]
        cap = cv2.VideoCapture(path, cv2.CAP_FFMPEG, params)
        if not cap.isOpened():
            cap.release()
            if self.is_stream:
                raise SourceError(
                    f"stream {redact(self.source)} did not answer within {self._open_timeout_ms / 1000:.0f}s "
                    "(check the URL, credentials and that the camera is reachable)"
                )
            raise SourceError(
                f"OpenCV cannot decode {path}: not a video file, a truncated one (an MP4 cut short loses its "
                "index), or a codec FFmpeg lacks"
            )
        ok, first = cap.read()
        if not ok or first is None:
            cap.release()
            raise SourceError(f"{redact(self.source)} opened but no frame could be decoded (corrupt or truncated)")
        # Keep the probe frame instead of seeking back: seeking is inexact for many codecs.
        self._pending_first: np.ndarray | None = first
        return cap

    def frames(self) -> Iterator[RawFrame]:
        """Yield sampled frames until the source ends."""
        period = 1.0 / self.target_fps if self.target_fps else 0.0
        next_t = 0.0
        index = -1
        failures = 0
        t_start = time.monotonic()
        while True:
            image: np.ndarray | None
            if self._pending_first is not None:
                ok, image = True, self._pending_first
                self._pending_first = None
            else:
                ok, image = self._cap.read()
            if not ok or image is None or image.size == 0:
                if self.is_stream:
                    if not self._reconnect():
                        return
                    continue
                failures += 1
                position = int(self._cap.get(cv2.CAP_PROP_POS_FRAMES))
                at_end = self.stats.expected_frames and position >= self.stats.expected_frames
                if at_end or failures > self._max_failures:
                    if self.stats.expected_frames and self.stats.frames_read < self.stats.expected_frames - 1:
                        self.stats.ended_early = True
                    return
                index += 1  # the failed frame still occupies its slot in time
                continue
            # Failures count as corrupt frames only once a good frame follows them (not at the end).
            self.stats.corrupt_frames += failures
            failures = 0
            index += 1
            self.stats.frames_read += 1
            if self.is_stream:
                pts = time.monotonic() - t_start
            else:
                # Frame index over the container's fps: exact for CFR, and robust where POS_MSEC lies.
                pts = index / self.native_fps
            if period and pts + 1e-6 < next_t:
                continue
            next_t = (next_t + period) if period else 0.0
            if period and next_t < pts:
                next_t = pts + period
            self.stats.frames_sampled += 1
            yield RawFrame(index=index, pts_s=pts, image=image)

    def _reconnect(self) -> bool:
        while self.stats.reconnects < self._max_reconnects:
            self.stats.reconnects += 1
            log.warning(
                "stream %s dropped; reconnect %d/%d",
                redact(self.source),
                self.stats.reconnects,
                self._max_reconnects,
            )
            self._cap.release()
            time.sleep(min(2.0**self.stats.reconnects, 10.0))
            try:
                self._cap = self._open()
                return True
            except SourceError as exc:
                log.warning("%s", exc)
        log.error("stream %s lost after %d reconnects", redact(self.source), self.stats.reconnects)
        return False

    def close(self) -> None:
        """Release the decoder."""
        self._cap.release()
