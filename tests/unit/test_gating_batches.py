"""The gating stage's fair batches on the in-process bus: every camera's frames gated, a bad frame dead-lettered."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np

from services.common.bus import Message
from services.common.bus.inprocess import InProcessBus
from services.gating import bootstrap
from services.gating.config import GatingSettings
from services.gating.pipeline import FrameGater, GatingParams
from services.models.detections import Detection
from services.models.detectors.base import Detector
from services.models.structurers.base import DetectorPriorStructurer
from vigil.media.v1 import frame_pb2


class BatchRecorder(Detector):
    """No detections; records each batch's size, and fails on every image whose first pixel is 0."""

    def __init__(self) -> None:
        self._name = "recorder"
        self._names = {0: "accident"}
        self.batches: list[int] = []

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        if int(image_bgr[0, 0, 0]) < 8:
            raise RuntimeError("cannot read this frame")
        return []

    def detect_batch(self, images_bgr):
        self.batches.append(len(images_bgr))
        return super().detect_batch(images_bgr)


def _frame(camera: str, seq: int, grey: int) -> bytes:
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), grey, np.uint8))
    assert ok
    return frame_pb2.Frame(camera_id=camera, seq=seq, pts_s=seq / 2, jpeg=jpeg.tobytes()).SerializeToString()


def test_every_camera_is_gated_in_shared_batches_and_a_failing_frame_is_dead_lettered() -> None:
    bus = InProcessBus()
    settings = GatingSettings.model_validate({"gating": {"max_batch": 8, "motion_gate": False}})
    detector = BatchRecorder()
    gater = FrameGater(detector, DetectorPriorStructurer("recorder"), GatingParams(motion_gate=False))
    done: list[Message] = []
    lock = threading.Lock()

    def on_handled(msg: Message) -> None:
        with lock:
            done.append(msg)

    stage = bootstrap.build(settings, bus, gater=gater, on_handled=on_handled)
    topics = settings.topics
    # Three cameras publish before the stage starts: the queues fill, then batches take one frame of each.
    for seq in range(3):
        for cam in ("a", "b", "c"):
            grey = 0 if (cam, seq) == ("b", 1) else 100 + seq
            bus.publish(topics.frames, _frame(cam, seq, grey), key=cam)
    stop = threading.Event()
    stage.start(stop, serve=False)
    deadline = time.monotonic() + 30
    while len(done) < 9 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    stage.close(join_timeout_s=5)
    assert len(done) == 9
    counts = stage.handler.cameras
    assert {cam: counts[cam].frames for cam in "abc"} == {"a": 3, "b": 2, "c": 3}
    # Batches mix cameras; the failed batch was retried frame by frame.
    assert max(detector.batches) > 1
    dead = bus.messages(topics.dead_letter(topics.frames))
    assert len(dead) == 1 and frame_pb2.Frame.FromString(dead[0].value).seq == 1
    assert b"cannot read this frame" in dead[0].headers["vigil-error"]
    # Every frame was acknowledged: the group's committed offset is past all of them.
    assert bus.committed(settings.gating.consumer_group, topics.frames) == 9
