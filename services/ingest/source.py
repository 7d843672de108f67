"""Sources through OpenCV: video files, live streams (RTSP/HTTP) and image sequences, as timed frames."""

from __future__ import annotations

import logging
import math
import os
import re
import socket
import time
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from services.common.frames import RawFrame

log = logging.getLogger(__name__)

_URL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
# One printf integer field, as OpenCV's image-sequence patterns use it: %d, %03d.
_PRINTF_INT = re.compile(r"%(0?\d*)d")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
_ACCEPTED = ", ".join(IMAGE_EXTENSIONS) + " (any case)"
VIDEO_DEFAULT_FPS = 5.0
SEQUENCE_DEFAULT_FPS = 1.0


class SourceError(RuntimeError):
    """The source cannot be opened or read; the message says what to fix."""


# Default ports of the stream schemes FFmpeg opens, for the reachability check below.
_STREAM_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443, "srt": 0, "udp": 0}


def stream_unreachable(url: str, timeout_s: float) -> str | None:
    """Why a stream that FFmpeg could not open is unreachable (name, refused, no route), or None if a TCP
    connection to it succeeds or times out (then it is the stream itself that did not answer)."""
    parsed = urllib.parse.urlsplit(url)
    try:
        port = parsed.port or _STREAM_PORTS.get(parsed.scheme.lower(), 0)
    except ValueError:
        return f"the URL's port is not a number: {parsed.netloc.rsplit('@', 1)[-1]!r}"
    host = parsed.hostname
    if not host or not port:
        return None  # UDP/SRT or no host: nothing to probe over TCP
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except socket.gaierror:
        return f"the host name {host!r} does not resolve (check the URL)"
    except ConnectionRefusedError:
        return f"{host}:{port} refused the connection: nothing listens there (check the port and that the camera is on)"
    except TimeoutError:
        return None
    except OSError as e:
        return f"cannot reach {host}:{port}: {e.strerror or e}"


def redact(source: str) -> str:
    """The source with any user:password@ removed, safe to log and publish."""
    return re.sub(r"(://)[^/@]+@", r"\1", source)


def _is_stream(source: str) -> bool:
    return bool(_URL.match(source)) and not source.startswith("file://")


def _check_fps(fps: float | None) -> None:
    if fps is not None and fps <= 0:
        raise SourceError(f"fps must be positive, got {fps}")


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
        _check_fps(fps)
        self.source = source
        self.is_stream = _is_stream(source)
        # A file ends by itself; a live stream's frames end only when it is lost for good.
        self.ends = not self.is_stream
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
                why = stream_unreachable(self.source, min(2.0, self._open_timeout_ms / 1000))
                if why is not None:
                    raise SourceError(f"stream {redact(self.source)}: {why}")
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


class ImageSequenceSource(VideoSource):
    """A folder of images (natural name order) or a printf-style pattern (numeric order), one frame per image.

    Every image is yielded: `fps` (default 1) defines the timeline rather than
    sampling it, so image i sits at i / fps. An image that does not decode is
    skipped with a warning and counted in `stats.corrupt_frames`; it keeps its
    slot in time, as a failed frame of a video does. A subclass of VideoSource so
    that everything typed for a video source takes a sequence too.
    """

    def __init__(self, source: str, fps: float | None = None) -> None:
        # Not VideoSource.__init__: there is no decoder to open, only the same interface to offer.
        _check_fps(fps)
        self.source = source
        self.is_stream = False
        self.ends = True
        self.target_fps = fps or SEQUENCE_DEFAULT_FPS
        self.native_fps = self.target_fps
        self.stats = SourceStats()
        self.paths = _sequence_files(Path(source.removeprefix("file://")))
        self.stats.expected_frames = len(self.paths)
        # Probe like the video path: a sequence with nothing decodable fails at open, not mid-run.
        self._first_index, first = self._probe()
        self._pending_first: np.ndarray | None = first
        self.height, self.width = first.shape[:2]

    def _read(self, path: Path) -> np.ndarray | None:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            self.stats.corrupt_frames += 1
            log.warning("%s: cannot decode %s (corrupt or not an image); skipped", self.source, path)
            return None
        return image

    def _probe(self) -> tuple[int, np.ndarray]:
        for i, path in enumerate(self.paths):
            image = self._read(path)
            if image is not None:
                return i, image
        raise SourceError(f"none of the {len(self.paths)} images of {self.source} could be decoded (all corrupt)")

    def frames(self) -> Iterator[RawFrame]:
        """Yield every image that decodes, image i at pts i / fps."""
        for i in range(self._first_index, len(self.paths)):
            if self._pending_first is not None:
                image: np.ndarray | None = self._pending_first
                self._pending_first = None
            else:
                image = self._read(self.paths[i])
            if image is None:
                continue
            self.stats.frames_read += 1
            self.stats.frames_sampled += 1
            yield RawFrame(index=i, pts_s=i / self.native_fps, image=image)

    def close(self) -> None:
        """Drop the probed image; images are read one at a time, so nothing else is held."""
        self._pending_first = None


def is_image_sequence(source: str) -> bool:
    """Whether `source` names a folder of images or a printf-style pattern such as frames/%03d.jpg."""
    if _is_stream(source):
        return False
    path = Path(source.removeprefix("file://"))
    if path.is_dir() or source.endswith(("/", os.sep)):
        return True
    # An existing file is a video even if its name happens to contain a %d.
    return not path.is_file() and len(_PRINTF_INT.findall(path.name)) == 1


def resolve_fps(source: str, fps: float | None, video_default: float | None = VIDEO_DEFAULT_FPS) -> float | None:
    """The fps to open `source` at: `fps` if set (0 = every frame), else the default for a video or a sequence."""
    if fps is None:
        return SEQUENCE_DEFAULT_FPS if is_image_sequence(source) else video_default
    return fps or None


def open_source(source: str, fps: float | None = None, open_timeout_s: float = 10.0) -> VideoSource:
    """An ImageSequenceSource for a folder or %d pattern, else a VideoSource for a file or stream URL."""
    if is_image_sequence(source):
        return ImageSequenceSource(source, fps=fps)
    return VideoSource(source, fps=fps, open_timeout_s=open_timeout_s)


def _natural_key(name: str) -> tuple[list[int | str], str]:
    # Digit runs compare by value (img2 before img10); re.split puts them at the odd positions.
    parts = re.split(r"(\d+)", name)
    return [int(p) if i % 2 else p.casefold() for i, p in enumerate(parts)], name


def _listdir(folder: Path, what: str) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_file()]
    except FileNotFoundError:
        raise SourceError(f"{what}: folder {folder} does not exist") from None
    except OSError as exc:
        raise SourceError(f"{what}: cannot list folder {folder} ({exc.strerror})") from None


def _sequence_files(path: Path) -> list[Path]:
    """The images a folder or a printf-style pattern names, in playback order; SourceError if there are none."""
    field = None if path.is_dir() else _PRINTF_INT.search(path.name)
    return _folder_images(path) if field is None else _pattern_images(path, field)


def _folder_images(folder: Path) -> list[Path]:
    # macOS leaves hidden ._name.jpg companions beside the real images: they are no frames.
    files = [
        p
        for p in _listdir(folder, "image sequence")
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    ]
    if not files:
        raise SourceError(f"no images in folder {folder} (looked for {_ACCEPTED})")
    return sorted(files, key=lambda p: _natural_key(p.name))


def _pattern_images(pattern: Path, field: re.Match[str]) -> list[Path]:
    head, tail = pattern.name[: field.start()], pattern.name[field.end() :]
    if not tail.lower().endswith(IMAGE_EXTENSIONS):
        raise SourceError(f"pattern {pattern} does not name images (accepted: {_ACCEPTED})")
    candidate = re.compile(re.escape(head) + r"(\d+)" + re.escape(tail))
    numbered: list[tuple[int, Path]] = []
    for p in _listdir(pattern.parent, f"pattern {pattern}"):
        m = candidate.fullmatch(p.name)
        # %03d writes 7 as 007, never 7 or 0007: keep only the names the pattern itself produces.
        if m and field.group(0) % int(m.group(1)) == m.group(1):
            numbered.append((int(m.group(1)), p))
    if not numbered:
        raise SourceError(
            f"no files match pattern {pattern} (a printf-style pattern such as frames/%03d.jpg; images: {_ACCEPTED})"
        )
    numbered.sort()
    first, last = numbered[0][0], numbered[-1][0]
    if last - first + 1 != len(numbered):
        # OpenCV would stop at the first gap; playing on keeps every image, back to back.
        log.warning("%s: %d numbers missing between %d and %d", pattern, last - first + 1 - len(numbered), first, last)
    return [p for _, p in numbered]
