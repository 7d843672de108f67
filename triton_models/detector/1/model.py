"""Triton Python model `detector`: any YOLOv8 detection ONNX, running the in-process OnnxDetector.

Serves the DAT gate (`detector`) and, loaded by ``context_detector/1/model.py``,
the context detector: which weights is the `vigil_config`'s business
(``DetectorModelConfig``: `detector.weights`, else the shipped `detector.model`),
the class names always come from the ONNX metadata.

Thin on purpose: decoding of the request and the padding of the response are
here; letterbox, the forward pass, decoding and NMS are
``services.models.detectors.onnx_backend.OnnxDetector``, and the config, metrics
and per-request errors are ``services.models.triton_python.ServedModel``, so
Triton and the embedded mode give the same boxes for the same pixels.

The shipped export is static batch 1, so a dynamic batch runs frame by frame
through one session: batching here saves the per-call hand-off between the
server and this stub, not compute. An export with a dynamic batch axis would
let one session.run take the whole batch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


class TritonPythonModel:
    """One OnnxDetector per model instance; one response per request, errors per request."""

    def initialize(self, args: dict[str, str]) -> None:
        """Load the ONNX session of the `vigil_config` parameter (a DetectorModelConfig)."""
        # The Python backend ignores PYTHONPATH: import the checkout in `vigil_root` (empty: the one holding us).
        root = json.loads(args["model_config"]).get("parameters", {}).get("vigil_root", {}).get("string_value")
        sys.path.insert(0, root or str(Path(__file__).resolve().parents[3]))
        from services.models.detectors.base import DetectorError
        from services.models.detectors.onnx_backend import OnnxDetector
        from services.models.detectors.triton_backend import DetectorModelConfig
        from services.models.triton_python import ServedModel

        self._served = served = ServedModel(args, DetectorModelConfig, invalid=(DetectorError, ValueError))
        self._detector = OnnxDetector(served.config.detector)
        expected = served.config.class_names
        if expected is not None and expected != self._detector.class_names:
            raise ValueError(
                f"vigil_config class_names {expected} do not match the weights' "
                f"{self._detector.class_names}; re-run scripts/prepare_triton_repo.py"
            )
        self._frames = served.counter("vigil_triton_detector_frames_total", "Frames the detector ran on")
        self._detections = served.counter("vigil_triton_detector_detections_total", "Detections returned")
        served.count_rejected("vigil_triton_detector_rejected_requests_total")
        served.log_info(f"ready: {self._detector.name} classes={self._detector.class_names}")

    def _frames_of(self, request: Any) -> list[np.ndarray]:
        raw = self._served.tensor(request, "IMAGE")
        encoded = self._served.tensor(request, "IMAGE_ENCODED")
        if (raw is None) == (encoded is None):
            raise ValueError("send exactly one of IMAGE (N x H x W x 3 uint8 BGR) or IMAGE_ENCODED (JPEG/PNG bytes)")
        if raw is not None:
            return list(raw)
        import cv2

        frames = []
        for i, item in enumerate(encoded.reshape(-1)):
            data = bytes(item)
            frame = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
            if frame is None:
                raise ValueError(f"IMAGE_ENCODED[{i}] ({len(data)} bytes) is not a JPEG or PNG image")
            frames.append(frame)
        return frames

    def _one(self, request: Any) -> Any:
        frames = self._frames_of(request)
        results = [self._detector.detect(frame) for frame in frames]
        self._frames.increment(len(frames))
        self._detections.increment(sum(len(r) for r in results))
        # Padded to the longest in the request; COUNT says how many rows are real.
        n = max((len(r) for r in results), default=0)
        boxes = np.zeros((len(results), n, 4), np.float32)
        class_ids = np.full((len(results), n), -1, np.int32)
        scores = np.zeros((len(results), n), np.float32)
        for i, dets in enumerate(results):
            for j, d in enumerate(dets):
                boxes[i, j] = (d.box.x1, d.box.y1, d.box.x2, d.box.y2)
                class_ids[i, j] = d.class_id
                scores[i, j] = d.confidence
        count = np.array([[len(r)] for r in results], np.int32)
        return self._served.response({"BOXES": boxes, "CLASS_IDS": class_ids, "SCORES": scores, "COUNT": count})

    def execute(self, requests: list[Any]) -> list[Any]:
        """Detect on every frame of every request; a bad request fails alone with INVALID_ARG."""
        return self._served.execute(requests, self._one)

    def finalize(self) -> None:
        """Drop the session."""
        self._detector = None  # type: ignore[assignment]
