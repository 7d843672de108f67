"""YOLO through ultralytics on a .pt checkpoint (the shipped YOLOv8s fall detector by default)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from services.models.detections import Box, Detection
from services.models.detectors.base import (
    Detector,
    DetectorError,
    UltralyticsDetectorConfig,
    check_image,
    shipped_weights,
)

log = logging.getLogger(__name__)


def _onnx_input_size(weights: Path) -> int | None:
    """The static input size of an ONNX export (ultralytics runs ONNX through onnxruntime at that size only)."""
    if weights.suffix != ".onnx":
        return None
    import onnxruntime as ort

    shape = ort.InferenceSession(str(weights), providers=["CPUExecutionProvider"]).get_inputs()[0].shape
    return shape[2] if isinstance(shape[2], int) else None


class UltralyticsDetector(Detector):
    """Runs `YOLO.predict` on one frame at a time; the weights are a local file, never a hub name."""

    def __init__(self, config: UltralyticsDetectorConfig) -> None:
        from ultralytics import YOLO

        weights = Path(config.weights) if config.weights else shipped_weights(config.model, "ultralytics")
        if not weights.is_file():
            raise DetectorError(f"detector weights not found: {weights}")
        self._config = config
        try:
            self._model = YOLO(str(weights), task="detect")
        except Exception as exc:  # ultralytics raises many types for a file it cannot load
            raise DetectorError(f"{weights} is not a model ultralytics can load: {exc}") from exc
        if getattr(self._model, "task", "detect") != "detect":
            raise DetectorError(f"{weights} is a {self._model.task!r} model; expected a YOLO detection model")
        self._names = {int(k): str(v) for k, v in self._model.names.items()}
        self._imgsz = config.imgsz or _onnx_input_size(weights) or 640
        self._name = f"ultralytics:{weights.name}@{self._imgsz}"
        log.info("loaded %s classes=%s", self._name, self._names)

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """One forward pass with ultralytics' own pre/post-processing and NMS."""
        check_image(image_bgr)
        # ultralytics' return types are a wide union; one image in, one Results out.
        results: Any = self._model.predict(
            image_bgr,
            imgsz=self._imgsz,
            conf=self._config.min_confidence,
            iou=self._config.iou_threshold,
            device=self._config.device,
            verbose=False,
        )
        boxes = results[0].boxes
        xyxy = boxes.xyxy.cpu().numpy()
        cls = boxes.cls.cpu().numpy().astype(int)
        conf = boxes.conf.cpu().numpy()
        dets = [
            Detection(Box(*map(float, b)), int(c), self._names.get(int(c), str(c)), float(p))
            for b, c, p in zip(xyxy, cls, conf, strict=True)
        ]
        return sorted(dets, key=lambda d: -d.confidence)
