"""The detector on a Triton server (triton_models/detector) through tritonclient gRPC.

Same interface as the in-process backends; the server runs the same OnnxDetector
code, so results match on the same pixels (send_jpeg trades that exactness for
fewer bytes on the wire). The server is the judge of bad input: an image it
rejects (INVALID_ARGUMENT) is a DetectorError here; an unreachable server or an
unready model is a TritonError, never an empty detection list.
"""

from __future__ import annotations

import logging
from typing import ClassVar

import cv2
import numpy as np

from services.models.detections import Box, Detection
from services.models.detectors.base import Detector, DetectorError, OnnxDetectorConfig, TritonDetectorConfig
from services.models.triton import TritonModelClient, TritonRequestError
from services.models.triton_python import ServedConfig

__all__ = ["DetectorModelConfig", "TritonDetector", "TritonDetectorConfig"]

log = logging.getLogger(__name__)

OUTPUTS = ("BOXES", "CLASS_IDS", "SCORES", "COUNT")


class DetectorModelConfig(ServedConfig):
    """`vigil_config` of triton_models/detector and context_detector: the in-process OnnxDetector's config."""

    prepare_args: ClassVar[str] = "--models detector[,context_detector]"
    # `weights` (a file) wins over the shipped `model`, as in-process.
    detector: OnnxDetectorConfig
    # From the ONNX metadata at preparation; the model refuses to load when its weights disagree.
    class_names: dict[int, str] | None = None


class TritonDetector(Detector):
    """f_s on Triton: one frame per request (the server's dynamic batcher groups cameras' frames)."""

    def __init__(self, config: TritonDetectorConfig, client: TritonModelClient | None = None) -> None:
        self._config = config
        self._client = client or TritonModelClient(config, config.model_name)
        self._client.wait_ready()
        served = DetectorModelConfig.from_parameters(self._client.parameters(), config.model_name)
        self._names = dict(served.class_names or {})
        weights = served.detector.weights.name if served.detector.weights else "default"
        self._name = f"triton:{config.model_name}@{config.url}({weights})"
        log.info("using %s classes=%s", self._name, self._names)

    def close(self) -> None:
        """Close the gRPC channel."""
        self._client.close()

    def _inputs(self, image_bgr: np.ndarray) -> dict[str, np.ndarray]:
        if self._config.send_jpeg and image_bgr.size:
            ok, buf = cv2.imencode(".jpg", image_bgr, [cv2.IMWRITE_JPEG_QUALITY, self._config.jpeg_quality])
            if not ok:
                raise DetectorError(f"cannot JPEG-encode an image of shape {image_bgr.shape}")
            return {"IMAGE_ENCODED": np.array([[buf.tobytes()]], dtype=np.object_)}
        if image_bgr.ndim != 3:
            # A tensor of the wrong rank never reaches the model: say what was wrong here.
            raise DetectorError(f"expected an HxWx3 uint8 BGR image, got shape {image_bgr.shape}")
        return {"IMAGE": np.ascontiguousarray(image_bgr, dtype=np.uint8)[None]}

    def detect(self, image_bgr: np.ndarray) -> list[Detection]:
        """Detections above the server's and this config's minimum confidence, best first."""
        if image_bgr.dtype != np.uint8:
            raise DetectorError(f"expected an HxWx3 uint8 BGR image, got dtype {image_bgr.dtype}")
        try:
            out = self._client.infer(self._inputs(image_bgr), OUTPUTS)
        except TritonRequestError as exc:
            if exc.invalid_argument:
                raise DetectorError(exc.message) from exc
            raise
        n = int(out["COUNT"][0, 0])
        dets = []
        for box, cls, score in zip(out["BOXES"][0, :n], out["CLASS_IDS"][0, :n], out["SCORES"][0, :n], strict=True):
            if score < self._config.min_confidence:
                continue
            c = int(cls)
            dets.append(Detection(Box(*map(float, box)), c, self._names.get(c, str(c)), float(score)))
        return dets
