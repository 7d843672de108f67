"""Kafka entrypoint of gating: decode a Frame, run the gate, publish the event; the bus commits after."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
from google.protobuf.message import DecodeError

from services.common.bus import Bus, Message, PoisonMessage
from services.common.images import MAX_IMAGE_PIXELS, check_pixels
from services.common.metrics import LatencyRecorder
from services.common.signing import Signer
from services.gating import metrics
from services.gating.checkpoint import CameraCheckpoint, FramePosition, IncidentStore
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
        store: IncidentStore | None = None,
    ) -> None:
        self._gater = gater
        # The uplink forwards only events some gating signed: an event written to the topic by anyone
        # else never becomes a cloud alert.
        self._signer = signer
        self._bus = bus
        self._events_topic = events_topic
        self._latency = latency
        self._store = store
        # Per camera: the last frame the grouper's state reflects (checkpointed, or gated by this process).
        self._positions: dict[str, FramePosition] = {}
        self._restored: set[str] = set()
        # Per camera: the incidents last written to the store (a write is skipped when nothing changed).
        self._saved: dict[str, list[dict[str, Any]]] = {}
        # Re-delivered frames skipped because the grouper already reflects them.
        self.replayed = 0
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
        """Gate decoded frames (one per camera) in one detector batch, publish and flush the events they open,
        then checkpoint the cameras' incidents: once this returns, the frames may be acknowledged.

        All or nothing for the grouper: if gating, publishing or flushing fails, the cameras' incidents are
        put back as they were, so the retry opens the same incidents and republishes the same event ids
        (an incident marked alerted whose event was never delivered would never be alerted).
        """
        todo = [f for f in frames if not self._already_gated(f)]
        if not todo:
            return
        before = {f.frame.camera_id: self._gater.incident_state(f.frame.camera_id) for f in todo}
        try:
            outcomes = self._gater.process_batch(
                [
                    FrameInput(f.frame.camera_id, f.frame.seq, f.frame.pts_s, f.frame.capture_time_ns, f.image)
                    for f in todo
                ]
            )
            published = False
            for decoded, outcome in zip(todo, outcomes, strict=True):
                outcome.stage_ms["decode"] = decoded.decode_ms
                self._account(decoded.frame.camera_id, outcome)
                if outcome.event is not None:
                    self._publish(outcome, decoded.frame.capture_time_ns)
                    published = True
            if published:
                # Durable before the checkpoint says these incidents are alerted.
                self._bus.flush()
        except BaseException:
            for camera_id, incidents in before.items():
                self._gater.restore_incidents(camera_id, incidents)
            raise
        for decoded in todo:
            self._checkpoint(decoded)

    def _already_gated(self, decoded: DecodedFrame) -> bool:
        """Restore the camera's checkpoint on its first frame; True for a frame the grouper already reflects."""
        camera_id = decoded.frame.camera_id
        if camera_id not in self._restored:
            self._restored.add(camera_id)
            self._restore(camera_id, decoded)
        position = self._positions.get(camera_id)
        if position is not None and position.covers(decoded.msg, decoded.frame.capture_time_ns):
            self.replayed += 1
            metrics.REPLAYED_SKIPPED.inc()
            return True
        return False

    def _restore(self, camera_id: str, first: DecodedFrame) -> None:
        if self._store is None:
            return
        checkpoint = self._store.load(camera_id)
        if checkpoint is None:
            return
        self._positions[camera_id] = checkpoint.position
        if first.frame.pts_s < checkpoint.pts_s and not checkpoint.position.covers(
            first.msg, first.frame.capture_time_ns
        ):
            # Stream time went back on a frame after the checkpoint: the source was restarted, a new stream.
            log.info("%s: stream time restarted since the checkpoint; its incidents are closed", camera_id)
            return
        try:
            self._gater.restore_incidents(camera_id, checkpoint.incidents)
        except ValueError as exc:
            log.error("%s: %s; starting without its incidents", camera_id, exc)
            return
        metrics.CHECKPOINTS_RESTORED.inc()
        log.info(
            "%s: restored %d open incidents as of %s[%d]@%d",
            camera_id,
            len(checkpoint.incidents),
            checkpoint.position.topic,
            checkpoint.position.partition,
            checkpoint.position.offset,
        )

    def _checkpoint(self, decoded: DecodedFrame) -> None:
        camera_id = decoded.frame.camera_id
        position = FramePosition.of(decoded.msg, decoded.frame.capture_time_ns)
        self._positions[camera_id] = position
        if self._store is None:
            return
        incidents = self._gater.incident_state(camera_id)
        # Unchanged incidents (a quiet scene) are not written again: the frames since the saved position are
        # gated again after a restart, to the same effect, since they changed nothing. Every gated frame
        # changes its incident (last seen, boxes), so no frame that counts is ever left behind.
        if self._saved.get(camera_id) == incidents:
            return
        self._store.save(CameraCheckpoint(camera_id, position, decoded.frame.pts_s, incidents))
        self._saved[camera_id] = incidents

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
