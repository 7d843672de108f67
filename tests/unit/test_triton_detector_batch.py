"""The Triton detector sends a batch of cameras' frames in as few requests as the served model takes."""

from __future__ import annotations

from collections.abc import Mapping

import cv2
import numpy as np

from services.models.detectors.base import OnnxDetectorConfig
from services.models.detectors.triton_backend import (
    MAX_REQUEST_FRAMES,
    DetectorModelConfig,
    TritonDetector,
    TritonDetectorConfig,
)
from tests.fakes import FakeModelClient


class FakeDetectorServer(FakeModelClient):
    """Answers like triton_models/detector: one box per frame, whose x0 is the frame's mean grey level."""

    def __init__(self) -> None:
        config = DetectorModelConfig(detector=OnnxDetectorConfig(model="coco"), class_names={0: "car"})
        super().__init__(config.to_parameters())

    def respond(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        if "IMAGE" in inputs:
            images = list(inputs["IMAGE"])
        else:
            images = [cv2.imdecode(np.frombuffer(b[0], np.uint8), cv2.IMREAD_COLOR) for b in inputs["IMAGE_ENCODED"]]
        n = len(images)
        boxes = np.array([[[float(img.mean()), 0.0, 200.0, 10.0]] for img in images], np.float32)
        return {
            "BOXES": boxes,
            "CLASS_IDS": np.zeros((n, 1), np.int32),
            "SCORES": np.full((n, 1), 0.9, np.float32),
            "COUNT": np.ones((n, 1), np.int32),
        }


def _frames() -> list[np.ndarray]:
    # Two cameras at 64x48 and one at 32x32, interleaved.
    return [
        np.full((48, 64, 3), 10 * i, np.uint8) if i % 3 else np.full((32, 32, 3), 10 * i, np.uint8) for i in range(12)
    ]


def test_frames_of_one_size_share_a_request_and_keep_their_order() -> None:
    server = FakeDetectorServer()
    det = TritonDetector(TritonDetectorConfig(url="edge:8001"), client=server)  # type: ignore[arg-type]
    frames = _frames()
    got = det.detect_batch(frames)
    # 8 frames of 64x48 (one full request) and 4 of 32x32: two requests, none over the model's batch size.
    assert sorted(len(r["IMAGE"]) for r in server.requests) == [4, 8]
    assert all(len(r["IMAGE"]) <= MAX_REQUEST_FRAMES for r in server.requests)
    assert [round(d[0].box.x1) for d in got] == [round(float(f.mean())) for f in frames]
    assert det.detect(frames[1])[0].box.x1 == 10.0 and len(server.requests) == 3


def test_jpeg_frames_of_any_size_go_together() -> None:
    server = FakeDetectorServer()
    det = TritonDetector(TritonDetectorConfig(url="edge:8001", send_jpeg=True), client=server)  # type: ignore[arg-type]
    got = det.detect_batch(_frames()[:6])
    assert [len(r["IMAGE_ENCODED"]) for r in server.requests] == [6]
    assert len(got) == 6 and all(len(d) == 1 for d in got)
