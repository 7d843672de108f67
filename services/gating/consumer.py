"""Kafka entrypoint of gating: decode a Frame, run the gate, publish the event; the bus commits after."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
from google.protobuf.message import DecodeError

from services.common.bus import Bus, Message, PoisonMessage
from services.common.images import MAX_IMAGE_PIXELS, check_pixels
from services.common.metrics import LatencyRecorder
from services.common.signing import Signer
from services.gating import metrics
from services.gating.convert import event_to_proto
from services.gating.pipeline import FrameGater, FrameInput, FrameOutcome
from vigil.media.v1 import frame_pb2

log = logging.getLogger(__name__)


def decode_image(data: bytes, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """JPEG/PNG bytes -> BGR image; ValueError when they are not a decodable image or decode past max_pixels."""
    if not data:
        raise ValueError("image is empty")
    check_pixels(data, max_pixels)
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"{len(data)} bytes are not a JPEG or PNG image OpenCV can decode")
    return image


@dataclass(frozen=True)
class DecodedFrame:
    """A frames-topic message, its Frame and its decoded image, ready for the gater."""

    msg: Message
    frame: frame_pb2.Frame
    image: np.ndarray
    decode_ms: float


@dataclass
class CameraCounts:
    """What gating did with one camera's frames."""

    frames: int = 0
    detector_runs: int = 0
    gated: int = 0
    events: int = 0
    dropped: int = 0


class FrameHandler:
    """Handles one message of the frames topic."""

    def __init__(
        self,
        gater: FrameGater,
        bus: Bus,
        events_topic: str,
        latency: LatencyRecorder | None = None,
        signer: Signer | None = None,
    ) -> None:
        self._gater = gater
        # The uplink forwards only events some gating signed: an event written to the topic by anyone
        # else never becomes a cloud alert.
        self._signer = signer
        self._bus = bus
        self._events_topic = events_topic
        self._latency = latency
        self.frames = 0
        self.gated = 0
        self.detector_runs = 0
        self.events = 0
        self.invalid_outputs = 0
        self.corrupt = 0
        # Structuring calls by route: "mllm" went to the configured structurer, "confident" skipped it.
        self.routed: dict[str, int] = {"mllm": 0, "confident": 0}
        # Ids of the events this handler published, in order (appended before publishing).
        self.event_ids: list[str] = []
        self.cameras: dict[str, CameraCounts] = {}

    def __call__(self, msg: Message) -> None:
        """Decode, gate, publish; undecodable payloads are poison (dead-lettered by the bus)."""
        self.handle([self.decode(msg)])

    def decode(self, msg: Message) -> DecodedFrame:
        """The message's Frame and its decoded image; PoisonMessage when either does not decode."""
        try:
            frame = frame_pb2.Frame.FromString(msg.value)
        except DecodeError as exc:
            self.corrupt += 1
            metrics.CORRUPT_FRAMES.inc()
            raise PoisonMessage(f"not a vigil.media.v1.Frame: {exc}") from exc
        t0 = time.perf_counter()
        try:
            image = decode_image(frame.jpeg)
        except ValueError as exc:
            self.corrupt += 1
            metrics.CORRUPT_FRAMES.inc()
            raise PoisonMessage(f"frame {frame.camera_id}/{frame.seq}: {exc}") from exc
        return DecodedFrame(msg, frame, image, (time.perf_counter() - t0) * 1e3)

    def handle(self, frames: Sequence[DecodedFrame]) -> None:
        """Gate decoded frames (one per camera) in one detector batch, publish the events they open."""
        outcomes = self._gater.process_batch(
            [
                FrameInput(f.frame.camera_id, f.frame.seq, f.frame.pts_s, f.frame.capture_time_ns, f.image)
                for f in frames
            ]
        )
        for decoded, outcome in zip(frames, outcomes, strict=True):
            outcome.stage_ms["decode"] = decoded.decode_ms
            self._account(decoded.frame.camera_id, outcome)
            if outcome.event is not None:
                self._publish(outcome, decoded.frame.capture_time_ns)

    def _publish(self, outcome: FrameOutcome, capture_time_ns: int) -> None:
        assert outcome.event is not None
        event = event_to_proto(outcome.event)
        self.event_ids.append(event.event_id)
        value = event.SerializeToString()
        headers = {"vigil-event-id": event.event_id}
        if self._signer is not None:
            headers |= self._signer.headers(self._events_topic, event.camera_id, value)
        self._bus.publish(self._events_topic, value, key=event.camera_id, headers=headers)
        self.events += 1
        self.camera(event.camera_id).events += 1
        metrics.EVENTS.labels(level=str(event.level)).inc()
        if self._latency is not None:
            self._latency.record("frame_to_event", (time.time_ns() - capture_time_ns) / 1e6)

    def camera(self, camera_id: str) -> CameraCounts:
        """The counts of one camera (created on first use)."""
        return self.cameras.setdefault(camera_id, CameraCounts())

    def _account(self, camera_id: str, outcome: FrameOutcome) -> None:
        counts = self.camera(camera_id)
        self.frames += 1
        counts.frames += 1
        metrics.FRAMES.inc()
        metrics.CAMERA_FRAMES.labels(camera=camera_id).inc()
        if outcome.detector_ran:
            self.detector_runs += 1
            counts.detector_runs += 1
        else:
            metrics.DETECTOR_SKIPPED.inc()
        if outcome.gate.gated:
            self.gated += 1
            counts.gated += 1
            metrics.GATED.inc()
        if outcome.route is not None:
            self.routed[outcome.route] += 1
            metrics.ROUTED.labels(route=outcome.route).inc()
        if outcome.invalid_model_output is not None:
            self.invalid_outputs += 1
            metrics.INVALID_OUTPUT.inc()
        for stage, ms in outcome.stage_ms.items():
            metrics.STAGE_SECONDS.labels(stage=stage).observe(ms / 1e3)
            if self._latency is not None:
                self._latency.record(stage, ms)
